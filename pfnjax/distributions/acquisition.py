"""Acquisition functions of a bar distribution, for Bayesian optimisation: EI, PI and UCB.

Each is exact for the piecewise-uniform buckets plus the half-normal tails, pure and jittable,
and differentiable in the logits (so in the query points through :func:`pfnjax.predict.query_logits`).
They are also reachable as ``pfnjax.distributions.bar.expected_improvement`` etc. and as
:class:`~pfnjax.distributions.bar.BarDistribution` methods.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import erf, erfc

from pfnjax.distributions.bar import (
    PHI_1,
    _INV_SQRT_2PI,
    _SQRT2,
    _cdf,
    _jit_max,
    _reflect,
    _sf,
    _tail_scales,
    icdf,
)
from pfnjax.distributions.borders import check_shapes
from pfnjax.types import Array


@_jit_max
def ucb(
    borders: Array,
    logits: Array,
    beta_quantile: float = PHI_1,
    maximize: bool = True,
    full_support: bool = True,
) -> Array:
    """Upper confidence bound as a high quantile: ``icdf(beta_quantile)``: ``[...]``.

    The default level ``Phi(1) ~ 0.841`` equals ``mean + 1 sigma`` for a Gaussian. With
    ``maximize=False`` it returns the lower bound ``icdf(1 - beta_quantile)`` (for minimisation).
    """
    return icdf(borders, logits, beta_quantile if maximize else 1.0 - beta_quantile, full_support)


def _norm_pdf(z: Array) -> Array:
    return _INV_SQRT_2PI * jnp.exp(-0.5 * z**2)


def _ei_max(borders: Array, logits: Array, best_f: Array, full_support: bool) -> Array:
    """``E[max(y - f, 0)]`` summed from closed forms per bucket."""
    f = jnp.asarray(best_f)[..., None]
    a, b = borders[:-1], borders[1:]
    lo = jnp.clip(f, a, b)
    # Uniform on [a, b]: int_lo^b (y - f) dy / w, factored to avoid cancelling squares.
    e = (b - lo) * (b + lo - 2.0 * f) / (2.0 * (b - a))
    if full_support:
        s_l, s_r = _tail_scales(borders)
        f0 = f[..., 0]
        # Right tail y = a + s|Z|, t = (f - a)/s. For t <= 0 it is the whole mean minus f; for t > 0
        # E = 2 s [phi(t) - t Phi(-t)] (normal EI over the positive half-line, doubled).
        a_r = borders[-2]
        t = jnp.maximum((f0 - a_r) / s_r, 0.0)
        e_r = 2.0 * s_r * (_norm_pdf(t) - t * 0.5 * erfc(t / _SQRT2)) + jnp.maximum(a_r - f0, 0.0)
        # Left tail y = a - s|Z|, u = (a - f)/s > 0: E = int_0^u (a - f - s z) 2 phi(z) dz
        #   = (a - f) erf(u / sqrt2) - 2 s (phi(0) - phi(u)); expm1 keeps small u accurate.
        a_l = borders[1]
        u = jnp.maximum((a_l - f0) / s_l, 0.0)
        e_l = s_l * u * erf(u / _SQRT2) + 2.0 * s_l * _INV_SQRT_2PI * jnp.expm1(-0.5 * u**2)
        e_l = jnp.maximum(e_l, 0.0)
        e = jnp.concatenate([e_l[..., None], e[..., 1:-1], e_r[..., None]], axis=-1)
    return jnp.sum(jax.nn.softmax(logits, axis=-1) * e, axis=-1)


@_jit_max
def expected_improvement(
    borders: Array, logits: Array, best_f: Array | float, maximize: bool = True, full_support: bool = True
) -> Array:
    """Expected improvement ``E[max(y - f*, 0)]`` (or ``E[max(f* - y, 0)]`` if not maximising).

    ``logits [..., K]``, ``best_f`` broadcastable with ``[...]`` -> ``[...]``. Exact: closed form
    per uniform bucket plus the half-normal tails.
    """
    check_shapes(borders, logits, full_support)
    best_f = jnp.asarray(best_f)
    if maximize:
        return _ei_max(borders, logits, best_f, full_support)
    rb, rl = _reflect(borders, logits)  # minimising y is maximising -y
    return _ei_max(rb, rl, -best_f, full_support)


@_jit_max
def probability_of_improvement(
    borders: Array, logits: Array, best_f: Array | float, maximize: bool = True, full_support: bool = True
) -> Array:
    """``P(y > f*)`` (``maximize``) or ``P(y < f*)``: ``[...]``; equals ``1 - cdf(f*)`` / ``cdf(f*)``."""
    check_shapes(borders, logits, full_support)
    best_f = jnp.asarray(best_f)
    if maximize:
        return _sf(borders, logits, best_f, full_support)
    return _cdf(borders, logits, best_f, full_support)


__all__ = ["expected_improvement", "probability_of_improvement", "ucb"]
