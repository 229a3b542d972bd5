"""A per-dataset stream of random numbers, handed out as slices of a few large draws.

The tabular priors (:mod:`pfnjax.priors.scm`, :mod:`pfnjax.priors.tabular`) need many small draws
per dataset; taking them from one :class:`RandomStream` keeps XLA:CPU compile times at seconds.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from pfnjax.types import Array, PRNGKey


class RandomStream:
    """Random numbers for one dataset, handed out as slices of a few large draws.

    XLA:CPU compile time grows with the number of separate ``jax.random`` calls (each is its own
    threefry computation; sixty small draws took ~16 s to compile on a 2-core CPU, one pooled draw
    ~3 s). The priors here need many small draws, so they take them from this stream: small requests
    are cut from shared chunks of ``chunk_size`` uniforms or normals; large ones get their own call.
    Everything is static-shaped and deterministic given the key and the order of requests.
    """

    def __init__(self, key: PRNGKey, chunk_size: int = 2048, max_calls: int = 64):
        self._keys = jax.random.split(key, max_calls)
        self._calls = 0
        self._chunk_size = chunk_size
        self._buffers: dict[str, Array | None] = {"uniform": None, "normal": None}
        self._offsets = {"uniform": 0, "normal": 0}

    def key(self) -> PRNGKey:
        """A fresh key (for the rare draw that needs ``jax.random`` directly)."""
        if self._calls >= self._keys.shape[0]:
            raise RuntimeError("RandomStream ran out of keys; raise max_calls")
        k = self._keys[self._calls]
        self._calls += 1
        return k

    def keys(self, n: int) -> PRNGKey:
        """``n`` fresh keys as a key array of shape ``[n]``."""
        if self._calls + n > self._keys.shape[0]:
            raise RuntimeError("RandomStream ran out of keys; raise max_calls")
        ks = self._keys[self._calls : self._calls + n]
        self._calls += n
        return ks

    def _draw(self, kind: str, n: int) -> Array:
        k = self.key()
        return jax.random.uniform(k, (n,)) if kind == "uniform" else jax.random.normal(k, (n,))

    def _take(self, kind: str, shape: tuple[int, ...]) -> Array:
        n = math.prod(shape)
        if n > self._chunk_size // 2:
            return self._draw(kind, n).reshape(shape)
        buf, off = self._buffers[kind], self._offsets[kind]
        if buf is None or off + n > self._chunk_size:
            buf, off = self._draw(kind, self._chunk_size), 0
        self._buffers[kind], self._offsets[kind] = buf, off + n
        return buf[off : off + n].reshape(shape)

    def uniform(self, shape: tuple[int, ...] = (), minval=0.0, maxval=1.0) -> Array:
        """``U[minval, maxval)`` draws."""
        return minval + (maxval - minval) * self._take("uniform", shape)

    def normal(self, shape: tuple[int, ...] = ()) -> Array:
        """Standard normal draws."""
        return self._take("normal", shape)

    def bernoulli(self, p, shape: tuple[int, ...] = ()) -> Array:
        return self.uniform(shape) < p

    def randint(self, shape: tuple[int, ...], low, high) -> Array:
        """``U{low..high-1}`` (``low``/``high`` may be traced and broadcast against ``shape``)."""
        low = jnp.asarray(low, jnp.int32)
        high = jnp.maximum(jnp.asarray(high, jnp.int32), low + 1)
        draw = jnp.floor(low + self.uniform(shape) * (high - low)).astype(jnp.int32)
        return jnp.clip(draw, low, high - 1)

    def truncated_normal_lower(self, lower: Array, shape: tuple[int, ...] = ()) -> Array:
        """Standard normal truncated to ``[lower, inf)``, by inverse CDF."""
        p_low = jax.scipy.special.ndtr(lower)
        u = self.uniform(shape)
        p = jnp.clip(p_low + u * (1.0 - p_low), 1e-7, 1.0 - 1e-7)
        return jnp.maximum(jax.scipy.special.ndtri(p), lower)

    def gamma(self, a: Array, tries: int = 8) -> Array:
        """``Gamma(a, 1)`` for ``a f32[n]`` (Marsaglia-Tsang with a fixed number of vectorised tries).

        Each try is accepted with probability > 0.95, so all ``tries`` fail with probability < 1e-10
        (then the mean ``a`` is returned). ``a < 1`` uses ``G(a) = G(a + 1) U^(1/a)``.
        """
        a = jnp.asarray(a, jnp.float32)
        boost = a < 1.0
        aa = jnp.where(boost, a + 1.0, a)
        d = aa - 1.0 / 3.0
        c = 1.0 / jnp.sqrt(9.0 * d)
        z = self.normal((tries,) + a.shape)
        u = self.uniform((tries,) + a.shape)
        v = (1.0 + c * z) ** 3
        ok = (v > 0) & (jnp.log(jnp.maximum(u, 1e-30)) < 0.5 * z**2 + d - d * v + d * jnp.log(jnp.maximum(v, 1e-30)))
        first = jnp.argmax(ok, axis=0)
        sample = jnp.take_along_axis(d * v, first[None], axis=0)[0]
        sample = jnp.where(jnp.any(ok, axis=0), sample, aa)
        u_boost = jnp.maximum(self.uniform(a.shape), 1e-30)
        return jnp.where(boost, sample * u_boost ** (1.0 / a), sample)

    def categorical(self, probs: Array, num: int) -> Array:
        """``i32[num, K]``: ``num`` iid draws from each row of ``probs f32[K, n]`` (rows need not sum to 1)."""
        cdf = jnp.cumsum(probs, axis=-1)
        cdf = cdf / cdf[:, -1:]
        u = self.uniform((num, probs.shape[0]))
        return jnp.sum(u[:, :, None] > cdf[None, :, :-1], axis=-1).astype(jnp.int32)


__all__ = ["RandomStream"]
