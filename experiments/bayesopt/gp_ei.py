"""The GP-EI baseline, written with pfnjax's own exact GP and optax (no BO library):

* model: zero-mean Matern-5/2 ARD GP on the unit cube with standardised targets;
* hyperparameters: MLE-II at every step, maximising the log marginal likelihood with Adam from
  ``restarts`` starts (log-parameters, lengthscales clipped to [0.01, 20], noise variance to
  [1e-4, 1]), keeping the best;
* acquisition: expected improvement of the latent function over the best observation, maximised
  like :func:`pfnjax.bo.suggest` (same candidates, same projected Adam ascents).

Observations are padded to a multiple of 8 rows with a mask (the padded rows get an identity
covariance and zero targets, which leaves the exact GP on the real rows unchanged), so a run
compiles once per 8 observations rather than once per step.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.linalg import cho_solve, solve_triangular
from jax.scipy.stats import norm

from pfnjax.bo import candidate_points, from_unit, maximize_acquisition, standardize_for_maximization, to_unit
from pfnjax.numerics import matmul
from pfnjax.optimize import best_start, multistart_minimize
from pfnjax.priors.gp import kernel_matrix

# the noise floor 1e-4 (of the standardised targets' variance) keeps the float32 Cholesky stable
# with near-duplicate observations, as BoTorch's minimum inferred noise level does
_LOG_BOUNDS = {"ls": (np.log(0.01), np.log(20.0)), "os": (np.log(1e-3), np.log(100.0)),
               "noise": (np.log(1e-4), np.log(1.0))}


def _clip(params: dict) -> dict:
    return {k: jnp.clip(v, *_LOG_BOUNDS[k]) for k, v in params.items()}


def _masked_cov(params: dict, x, mask):
    cov = kernel_matrix("matern52", x, x, jnp.exp(params["ls"]), jnp.exp(params["os"]))
    cov = cov + (jnp.exp(params["noise"]) + 1e-6) * jnp.eye(x.shape[0])
    both = mask[:, None] * mask[None, :]
    return cov * both + jnp.diag(1.0 - mask)


def neg_log_marginal_likelihood(params: dict, x, y, mask):
    """``-log p(y | x, params)`` of the real (masked-in) rows, at full matmul precision."""
    chol = jnp.linalg.cholesky(_masked_cov(_clip(params), x, mask))
    alpha = cho_solve((chol, True), y * mask)
    n = jnp.sum(mask)
    return 0.5 * jnp.dot(y * mask, alpha, precision="highest") + jnp.sum(jnp.log(jnp.diag(chol))) + 0.5 * n * jnp.log(2 * jnp.pi)


@functools.partial(jax.jit, static_argnames=("restarts", "steps"))
def fit_mle2(key, x, y, mask, *, restarts: int = 4, steps: int = 150) -> dict:
    """MLE-II hyperparameters (log scale) from ``restarts`` Adam runs of ``steps`` steps."""
    d = x.shape[1]
    k_ls, k_os = jax.random.split(key)
    init = {"ls": jnp.log(0.3) + 0.7 * jax.random.normal(k_ls, (restarts, d)),
            "os": 0.3 * jax.random.normal(k_os, (restarts,)),
            "noise": jnp.full((restarts,), jnp.log(1e-2))}
    loss = lambda p: neg_log_marginal_likelihood(p, x, y, mask)
    fitted, losses = multistart_minimize(loss, init, optax.adam(0.05), steps, project=_clip)
    return best_start(fitted, losses)


def posterior_f(params: dict, x, y, mask, x_qry):
    """Mean and variance of the latent function at ``x_qry`` (exact GP on the real rows)."""
    params = _clip(params)
    chol = jnp.linalg.cholesky(_masked_cov(params, x, mask))
    k_qc = kernel_matrix("matern52", x_qry, x, jnp.exp(params["ls"]), jnp.exp(params["os"])) * mask[None, :]
    mean = matmul(k_qc, cho_solve((chol, True), y * mask))
    v = solve_triangular(chol, k_qc.T, lower=True)
    var = jnp.exp(params["os"]) - jnp.sum(v**2, axis=0)
    return mean, jnp.maximum(var, 1e-12)


def expected_improvement(mean, var, best):
    """EI of a Gaussian over ``best`` (maximisation)."""
    sd = jnp.sqrt(var)
    u = (mean - best) / sd
    return sd * norm.pdf(u) + (mean - best) * norm.cdf(u)


@functools.partial(jax.jit, static_argnames=("num_restarts", "steps"))
def _suggest_unit(key, x, y, mask, candidates, *, num_restarts: int, steps: int):
    params = fit_mle2(key, x, y, mask)
    best = jnp.max(jnp.where(mask > 0, y, -jnp.inf))
    acq = lambda u: expected_improvement(*posterior_f(params, x, y, mask, u), best)
    point, _ = maximize_acquisition(acq, candidates, num_restarts=num_restarts, steps=steps, lr=0.05)
    return point


def suggest(X, y, bounds, key, *, num_raw: int = 512, num_restarts: int = 8, steps: int = 40) -> np.ndarray:
    """The next point (``float64[d]`` inside ``bounds``) for minimising, by GP-EI."""
    bounds = np.asarray(bounds, np.float64)
    U, z = to_unit(np.asarray(X, np.float64), bounds), standardize_for_maximization(np.asarray(y, np.float64))
    n, d = U.shape
    n_pad = -(-n // 8) * 8
    x = np.zeros((n_pad, d), np.float32)
    x[:n] = U
    yz = np.zeros(n_pad, np.float32)
    yz[:n] = z
    mask = (np.arange(n_pad) < n).astype(np.float32)
    k_fit, k_cand = jax.random.split(key)
    candidates = candidate_points(k_cand, U[np.argmax(z)], num_raw).astype(np.float32)
    point = np.asarray(_suggest_unit(k_fit, jnp.asarray(x), jnp.asarray(yz), jnp.asarray(mask),
                                     jnp.asarray(candidates), num_restarts=num_restarts, steps=steps), np.float64)
    if not np.all(np.isfinite(point)):  # a failed factorisation: fall back to a random candidate
        point = candidates[0].astype(np.float64)
    return from_unit(np.clip(point, 0.0, 1.0), bounds)
