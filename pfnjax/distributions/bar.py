r"""Riemann ("bar") distribution: the regression output of a PFN.

The real line is cut by ``borders: f32[K+1]`` (strictly increasing) into ``K`` buckets
``[borders[k], borders[k+1])``. A network emits ``logits: f32[..., K]``; the bucket masses are
``p = softmax(logits)`` and inside bucket ``k`` the density is uniform, ``p_k / width_k``.

**Full support** (``full_support=True``, the default everywhere, as in the PFN paper): the two edge
buckets are replaced by half-normals anchored at the *inner* edges. The left mass ``p_0`` is spread
over ``(-inf, borders[1])`` as ``borders[1] - s_L |Z|`` and the right mass ``p_{K-1}`` over
``[borders[K-1], inf)`` as ``borders[K-1] + s_R |Z|``, with ``Z ~ N(0, 1)`` and
``s = width / HalfNormal.icdf(0.5)``: the half-normal's median sits on the outer border, so half
of the edge mass stays inside the original edge bucket. Every finite target gets a finite density
(until ``((y - anchor) / s)**2`` overflows the float type).

With ``full_support=False`` the support is exactly ``[borders[0], borders[K]]``; outside it
``log_prob`` is ``-inf``, ``pdf`` is 0 and ``cdf`` is 0 or 1.

Conventions shared by all functions:

* ``logits: [..., K]``; any leading batch dims ``...`` broadcast with those of ``y`` / ``best_f``.
* A target exactly on a border belongs to the bucket on its right (``y == borders[K]`` belongs
  to the last bucket). With full support, bucket 0 is ``(-inf, borders[1])`` and bucket ``K-1``
  is ``[borders[K-1], inf)``.
* Everything except :func:`borders_from_samples` and the ``validate_*`` helpers is pure and
  jit-compatible; shape errors are raised at trace time, value checks are left to the helpers.

Module layout: this module holds the density functionals; borders and validation live in
:mod:`pfnjax.distributions.borders`, EI / PI / UCB in :mod:`pfnjax.distributions.acquisition` and the
:class:`BarDistribution` object in :mod:`pfnjax.distributions.bar_distribution`. All of them are
reachable from here (``bar.expected_improvement``, ``bar.BarDistribution``, ...).
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
from jax.scipy.special import erfc, ndtri

from pfnjax.distributions.borders import (  # noqa: F401  (re-exported)
    borders_from_samples,
    check_shapes as _check_shapes,
    validate_borders,
    validate_logits,
)
from pfnjax.types import Array, PRNGKey

# HalfNormal(1).icdf(0.5) = sqrt(2) * erfinv(0.5): the median of |N(0, 1)|.
HALF_NORMAL_MEDIAN = 0.6744897501960817
_SQRT2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)  # mean of |N(0, 1)|
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)  # standard normal pdf at 0
_LOG_SQRT_2_OVER_PI = 0.5 * math.log(2.0 / math.pi)  # log of the half-normal pdf at 0 (unit scale)
_HN_ENTROPY = 0.5 * math.log(math.pi / 2.0) + 0.5  # differential entropy of |N(0, 1)|
_HN_VAR = 1.0 - 2.0 / math.pi  # variance of |N(0, 1)|
PHI_1 = 0.8413447460685429  # Phi(1): the quantile level of "mean + 1 sigma" for a Gaussian

# Public functions are jitted: eager use then costs one compile per shape instead of one dispatch
# (and one tiny compile) per primitive. Flags that change the program are static.
_jit = functools.partial(jax.jit, static_argnames=("full_support",))
_jit_max = functools.partial(jax.jit, static_argnames=("maximize", "full_support"))


# ----------------------------------------------------------------------------- geometry helpers


def _geometry(borders: Array, full_support: bool):
    """Per-bucket constants ``[K]``: widths, first moment, variance, log peak density offset,
    entropy offset and mode location, with the half-normal tails patched in when full support."""
    w = jnp.diff(borders)
    centre = 0.5 * (borders[:-1] + borders[1:])
    m1, var = centre, w**2 / 12.0
    log_peak = -jnp.log(w)  # log density at the peak, minus log p_k
    ent = jnp.log(w)  # differential entropy of the normalised piece
    loc = centre
    if full_support:
        s_l, s_r = w[0] / HALF_NORMAL_MEDIAN, w[-1] / HALF_NORMAL_MEDIAN
        a_l, a_r = borders[1], borders[-2]

        def patch(v, left, right):
            return jnp.concatenate([jnp.reshape(left, (1,)), v[1:-1], jnp.reshape(right, (1,))])

        m1 = patch(m1, a_l - s_l * _SQRT_2_OVER_PI, a_r + s_r * _SQRT_2_OVER_PI)
        var = patch(var, s_l**2 * _HN_VAR, s_r**2 * _HN_VAR)
        log_peak = patch(log_peak, _LOG_SQRT_2_OVER_PI - jnp.log(s_l), _LOG_SQRT_2_OVER_PI - jnp.log(s_r))
        ent = patch(ent, jnp.log(s_l) + _HN_ENTROPY, jnp.log(s_r) + _HN_ENTROPY)
        loc = patch(loc, a_l, a_r)
    return w, m1, var, log_peak, ent, loc


def _tail_scales(borders: Array) -> tuple[Array, Array]:
    return (borders[1] - borders[0]) / HALF_NORMAL_MEDIAN, (borders[-1] - borders[-2]) / HALF_NORMAL_MEDIAN


def _gather_last(x: Array, idx: Array) -> Array:
    """``x[..., idx]`` elementwise, broadcasting ``x: [..., K]`` against ``idx: [...]``."""
    x = jnp.broadcast_to(x, jnp.broadcast_shapes(x.shape[:-1], idx.shape) + x.shape[-1:])
    idx = jnp.broadcast_to(idx, x.shape[:-1])
    return jnp.take_along_axis(x, idx[..., None], axis=-1)[..., 0]


@jax.jit
def bucket_index(borders: Array, y: Array) -> Array:
    """``i32[...]``: bucket of each ``y``, clipped to ``[0, K-1]`` (right-open buckets)."""
    k = borders.shape[0] - 1
    return jnp.clip(jnp.searchsorted(borders, y, side="right") - 1, 0, k - 1)


def _reflect(borders: Array, logits: Array) -> tuple[Array, Array]:
    """The distribution of ``-y``: negated, reversed borders and reversed logits."""
    return -borders[::-1], logits[..., ::-1]


# ----------------------------------------------------------------------------- density and cdf


@jax.jit
def probs(borders: Array, logits: Array) -> Array:
    """Bucket masses ``softmax(logits)``: ``[..., K]`` (``borders`` only checks the shape)."""
    _check_shapes(borders, logits, False)
    return jax.nn.softmax(logits, axis=-1)


@_jit
def log_prob(borders: Array, logits: Array, y: Array, full_support: bool = True) -> Array:
    """Log density ``log p(y)``: ``logits [..., K]``, ``y [...]`` -> ``[...]`` (broadcast).

    The PFN training loss is ``-log_prob``. Built on ``log_softmax`` so it is stable and its
    gradient w.r.t. ``logits`` is ``onehot(bucket) - softmax(logits)``. Without full support, ``y``
    outside ``[borders[0], borders[K]]`` gets ``-inf``. NaN ``y`` gives NaN.
    """
    _check_shapes(borders, logits, full_support)
    y = jnp.asarray(y)
    idx = bucket_index(borders, y)
    lp = _gather_last(jax.nn.log_softmax(logits, axis=-1), idx)
    w = jnp.diff(borders)
    out = lp - jnp.log(w[idx])
    if full_support:
        k = borders.shape[0] - 1
        s_l, s_r = _tail_scales(borders)
        # Half-normal log density: log 2 - log s + log phi(z) = log sqrt(2/pi) - log s - z^2/2.
        z_l = (borders[1] - y) / s_l
        z_r = (y - borders[-2]) / s_r
        out = jnp.where(idx == 0, lp + _LOG_SQRT_2_OVER_PI - jnp.log(s_l) - 0.5 * z_l**2, out)
        out = jnp.where(idx == k - 1, lp + _LOG_SQRT_2_OVER_PI - jnp.log(s_r) - 0.5 * z_r**2, out)
    else:
        outside = (y < borders[0]) | (y > borders[-1])
        out = jnp.where(outside, -jnp.inf, out)
    return jnp.where(jnp.isnan(y), jnp.nan, out)


@_jit
def pdf(borders: Array, logits: Array, y: Array, full_support: bool = True) -> Array:
    """Density ``p(y)`` (not ``1/p``): ``[...]``. See :func:`log_prob`."""
    return jnp.exp(log_prob(borders, logits, y, full_support))


def _cdf(borders: Array, logits: Array, y: Array, full_support: bool) -> Array:
    k = borders.shape[0] - 1
    p = jax.nn.softmax(logits, axis=-1)
    c = jnp.cumsum(p, axis=-1)  # c[j] = P(bucket <= j); c[-1] ~ 1
    idx = bucket_index(borders, y)
    p_b = _gather_last(p, idx)
    c_below = _gather_last(c, idx) - p_b  # mass of buckets left of idx
    w = jnp.diff(borders)
    frac = jnp.clip((y - borders[idx]) / w[idx], 0.0, 1.0)  # clip handles y outside the borders
    out = c_below + p_b * frac
    if full_support:
        s_l, s_r = _tail_scales(borders)
        z_l = jnp.maximum(borders[1] - y, 0.0) / s_l
        z_r = jnp.maximum(y - borders[-2], 0.0) / s_r
        # Left: P(y' < y) = p_0 P(|Z| > z). Right: 1 - p_{K-1} P(|Z| > z), written from the total so
        # the upper tail keeps its relative precision and icdf inverts it exactly.
        out = jnp.where(idx == 0, p[..., 0] * erfc(z_l / _SQRT2), out)
        out = jnp.where(idx == k - 1, c[..., -1] - p[..., -1] * erfc(z_r / _SQRT2), out)
    out = jnp.clip(out, 0.0, 1.0)  # the float cumsum may end a few ulp above 1
    return jnp.where(jnp.isnan(y), jnp.nan, out)


@_jit
def cdf(borders: Array, logits: Array, y: Array, full_support: bool = True) -> Array:
    """``P(Y <= y)``: ``logits [..., K]``, ``y [...]`` -> ``[...]``. Closed form, no recursion."""
    _check_shapes(borders, logits, full_support)
    return _cdf(borders, logits, jnp.asarray(y), full_support)


def _sf(borders: Array, logits: Array, y: Array, full_support: bool) -> Array:
    """``P(Y > y)`` as the cdf of ``-Y`` at ``-y``: accurate where ``1 - cdf`` would cancel."""
    rb, rl = _reflect(borders, logits)
    return _cdf(rb, rl, -y, full_support)


# ----------------------------------------------------------------------------- quantiles


def _icdf_elementwise(borders: Array, logits: Array, q: Array, full_support: bool) -> Array:
    """Quantile with ``q`` broadcast elementwise against ``logits.shape[:-1]``."""
    k = borders.shape[0] - 1
    batch = jnp.broadcast_shapes(logits.shape[:-1], q.shape)
    p = jnp.broadcast_to(jax.nn.softmax(logits, axis=-1), batch + (k,))
    q = jnp.broadcast_to(q, batch).astype(p.dtype)
    c = jnp.cumsum(p, axis=-1)
    # Bucket = number of inner cumulative edges c[0..K-2] <= q. A vmapped binary search keeps memory
    # O(batch) instead of the O(batch * K) of a comparison against all edges.
    flat_c, flat_q = c.reshape(-1, k), q.reshape(-1)
    idx = jax.vmap(lambda cc, qq: jnp.searchsorted(cc[:-1], qq, side="right"))(flat_c, flat_q).reshape(batch)
    p_b = _gather_last(p, idx)
    c_below = _gather_last(c, idx) - p_b
    w = jnp.diff(borders)
    tiny = jnp.finfo(p.dtype).tiny
    frac = jnp.clip((q - c_below) / jnp.maximum(p_b, tiny), 0.0, 1.0)
    out = borders[idx] + frac * w[idx]
    if full_support:
        s_l, s_r = _tail_scales(borders)
        # Inverse of the tail cdfs in _cdf; arguments are clipped into ndtri's domain so the branch
        # that jnp.where discards cannot inject NaN into gradients.
        u_l = jnp.clip(q / jnp.maximum(2.0 * p[..., 0], tiny), 0.0, 0.5)
        u_r = jnp.clip((c[..., -1] - q) / jnp.maximum(2.0 * p[..., -1], tiny), 0.0, 0.5)
        out = jnp.where(idx == 0, borders[1] + s_l * ndtri(u_l), out)
        out = jnp.where(idx == k - 1, borders[-2] - s_r * ndtri(u_r), out)
    return out


@_jit
def icdf(borders: Array, logits: Array, q: Array | float | Sequence[float], full_support: bool = True) -> Array:
    """Quantile function (tails included).

    Shape convention: ``logits [..., K]``; a scalar ``q`` gives ``[...]``; an array ``q`` of shape
    ``S`` gives ``[..., *S]`` (every distribution evaluated at every level), e.g.
    ``quantile(borders, logits, [0.05, 0.95]) -> [..., 2]``. For one level per batch element, use
    ``jax.vmap``. ``q = 0`` / ``1`` map to ``-inf`` / ``inf`` with full support, else to the outer
    borders.
    """
    _check_shapes(borders, logits, full_support)
    q = jnp.asarray(q)
    if q.ndim == 0:
        return _icdf_elementwise(borders, logits, q, full_support)
    out = _icdf_elementwise(borders, logits[..., None, :], q.reshape(-1), full_support)
    return out.reshape(logits.shape[:-1] + q.shape)


quantile = icdf


@_jit
def median(borders: Array, logits: Array, full_support: bool = True) -> Array:
    """Median ``icdf(0.5)``: ``[...]``."""
    return icdf(borders, logits, 0.5, full_support)


# ----------------------------------------------------------------------------- moments, mode, entropy


@_jit
def mean(borders: Array, logits: Array, full_support: bool = True) -> Array:
    """``E[y]``: ``[...]`` (bucket centres, half-normal tail means ``anchor -/+ s sqrt(2/pi)``)."""
    _check_shapes(borders, logits, full_support)
    _, m1, _, _, _, _ = _geometry(borders, full_support)
    return jnp.sum(jax.nn.softmax(logits, axis=-1) * m1, axis=-1)


@_jit
def variance(borders: Array, logits: Array, full_support: bool = True) -> Array:
    """``Var[y]``: ``[...]``, by the law of total variance (no ``E[y^2] - E[y]^2`` cancellation)."""
    _check_shapes(borders, logits, full_support)
    _, m1, var, _, _, _ = _geometry(borders, full_support)
    p = jax.nn.softmax(logits, axis=-1)
    m = jnp.sum(p * m1, axis=-1, keepdims=True)
    return jnp.sum(p * (var + (m1 - m) ** 2), axis=-1)


@_jit
def mode(borders: Array, logits: Array, full_support: bool = True) -> Array:
    """Location of the highest density: ``[...]``.

    The centre of the bucket with the largest ``p_k / width_k``; for a half-normal tail the peak
    density is ``p sqrt(2/pi) / s`` at its anchor (inner border), which is then the location.
    """
    _check_shapes(borders, logits, full_support)
    _, _, _, log_peak, _, loc = _geometry(borders, full_support)
    return loc[jnp.argmax(jax.nn.log_softmax(logits, axis=-1) + log_peak, axis=-1)]


@_jit
def entropy(borders: Array, logits: Array, full_support: bool = True) -> Array:
    """Differential entropy ``-int p log p``: ``[...]``.

    Each piece of mass ``p_k`` with normalised shape entropy ``h_k`` contributes
    ``-p_k log p_k + p_k h_k``; ``h = log width`` (uniform) or ``log s + (1 + log(pi/2)) / 2``
    (half-normal).
    """
    _check_shapes(borders, logits, full_support)
    _, _, _, _, ent, _ = _geometry(borders, full_support)
    ls = jax.nn.log_softmax(logits, axis=-1)
    p = jnp.exp(ls)
    plogp = jnp.where(p > 0, p * ls, 0.0)  # 0 log 0 = 0, also for logits of -inf
    return jnp.sum(p * ent - plogp, axis=-1)


# ----------------------------------------------------------------------------- sampling


def sample(
    key: PRNGKey, borders: Array, logits: Array, shape: Sequence[int] = (), full_support: bool = True
) -> Array:
    """Draw samples: ``logits [..., K]`` -> ``[*shape, ...]`` (sample dims first).

    A bucket is drawn from ``softmax(logits)``, then a point inside it: uniform in inner buckets, the
    half-normal inverse cdf ``s * |ndtri(v / 2)|``, ``v`` uniform in ``(0, 1]``, away from the
    anchor in the tails.
    """
    return _sample(key, borders, logits, tuple(shape), full_support)


@functools.partial(jax.jit, static_argnames=("shape", "full_support"))
def _sample(key: PRNGKey, borders: Array, logits: Array, shape: tuple[int, ...], full_support: bool) -> Array:
    _check_shapes(borders, logits, full_support)
    k = borders.shape[0] - 1
    out_shape = shape + logits.shape[:-1]
    k_cat, k_u = jax.random.split(key)
    idx = jax.random.categorical(k_cat, logits, axis=-1, shape=out_shape)
    u = jax.random.uniform(k_u, out_shape, dtype=borders.dtype)
    w = jnp.diff(borders)
    out = borders[idx] + u * w[idx]
    if full_support:
        s_l, s_r = _tail_scales(borders)
        # |Z| = -ndtri(v / 2) with v = 1 - u in (0, 1]: the half-normal inverse cdf, finite for all draws.
        z = -ndtri(0.5 * (1.0 - u))
        out = jnp.where(idx == 0, borders[1] - s_l * z, out)
        out = jnp.where(idx == k - 1, borders[-2] + s_r * z, out)
    return out


# ----------------------------------------------------------------------------- ensembles


@functools.partial(jax.jit, static_argnames=("axis",))
def average_distributions(logits_stack: Array, axis: int = 0) -> Array:
    """Logits of the equal-weight mixture of distributions over the same borders.

    ``logits_stack`` has the members along ``axis``; returns ``log(mean_i softmax(logits_i))``
    (normalised log-probs, valid as logits) with that axis removed.
    """
    ls = jax.nn.log_softmax(logits_stack, axis=-1)
    n = logits_stack.shape[axis]
    return jax.scipy.special.logsumexp(ls, axis=axis) - jnp.log(n).astype(ls.dtype)


# The acquisition functions and the object wrapper import this module, so they are re-exported
# lazily (PEP 562) rather than imported here.
_LAZY = {
    "expected_improvement": "pfnjax.distributions.acquisition",
    "probability_of_improvement": "pfnjax.distributions.acquisition",
    "ucb": "pfnjax.distributions.acquisition",
    "BarDistribution": "pfnjax.distributions.bar_distribution",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "HALF_NORMAL_MEDIAN",
    "PHI_1",
    "BarDistribution",
    "average_distributions",
    "borders_from_samples",
    "bucket_index",
    "cdf",
    "entropy",
    "expected_improvement",
    "icdf",
    "log_prob",
    "mean",
    "median",
    "mode",
    "pdf",
    "probability_of_improvement",
    "probs",
    "quantile",
    "sample",
    "ucb",
    "validate_borders",
    "validate_logits",
    "variance",
]
