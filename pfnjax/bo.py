"""Bayesian optimisation with a PFN: the acquisition in one forward pass, maximised by gradients.

``suggest(pfn, X, y, bounds, key)`` returns the next point(s) to evaluate for **minimising** an
expensive function, given the evaluations so far:

1. **Scaling.** Inputs are mapped to the unit cube by the box ``bounds`` and the targets are
   standardised with their mean and std (a std of 0, one observation or all equal, counts as 1),
   then negated, so the PFN sees a maximisation problem on the scale its prior was trained on.
2. **Context.** The observations are encoded once (per-layer keys and values,
   :meth:`pfnjax.predict.PFN.encode`); every acquisition evaluation after that is a query against
   the cache. Duplicated rows of ``X`` need no special care: a PFN conditions on its context by
   attention, not by inverting a kernel matrix, so repeated points are simply repeated evidence.
3. **Acquisition.** ``ei`` (expected improvement over the best observation), ``pi``
   (probability of improvement) or ``ucb`` (the ``beta_quantile`` quantile), all closed-form on
   the bar distribution (:mod:`pfnjax.distributions.acquisition`).
4. **Maximisation**, all in one jitted function: the acquisition is scored on ``num_raw``
   candidates (a scrambled Sobol set, uniform draws, and Gaussian perturbations of the best
   observation), the ``num_restarts`` best start a projected Adam ascent (optax; ``steps`` steps,
   the step size decaying from ``lr``, every iterate clipped back into the cube, so optima on its
   faces are reached exactly), and the best point found, among the ascents and the raw
   candidates, is returned.
5. **Batches** (``batch_size > 1``) use the *kriging believer*: after choosing a point, its
   predicted mean is added to the context as if it had been observed, and the next point is
   chosen against that context. The believed values never leave :func:`suggest`.

:func:`minimize` runs the whole loop on a Python function with a progress bar and returns the
history. Everything is pure with explicit keys: the same inputs give the same suggestions.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Callable, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from scipy.stats import qmc

from pfnjax.heads import BarHead
from pfnjax.model.base import pad_features
from pfnjax.optimize import multistart_minimize
from pfnjax.predict import PFN
from pfnjax.types import Array, PRNGKey

Acquisition = Literal["ei", "pi", "ucb"]
ACQUISITIONS = ("ei", "pi", "ucb")


def _check_inputs(pfn: PFN, X, y, bounds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated float64 copies of ``X [n, d]``, ``y [n]`` and ``bounds [d, 2]``."""
    if not isinstance(pfn.head, BarHead):
        raise ValueError(f"Bayesian optimisation needs a PFN with a bar-distribution head, got {type(pfn.head).__name__}")
    bounds = np.asarray(bounds, np.float64)
    if bounds.ndim != 2 or bounds.shape[1] != 2:
        raise ValueError(f"bounds must have shape [d, 2] (a lower and an upper bound per dimension), got {bounds.shape}")
    if not np.all(np.isfinite(bounds)):
        raise ValueError("bounds must be finite")
    if np.any(bounds[:, 0] >= bounds[:, 1]):
        bad = np.flatnonzero(bounds[:, 0] >= bounds[:, 1]).tolist()
        raise ValueError(f"every lower bound must be below its upper bound; not so in dimensions {bad}")
    d = bounds.shape[0]
    if d > pfn.max_features:
        raise ValueError(f"{d} dimensions, but this PFN supports at most {pfn.max_features}")
    X, y = np.asarray(X, np.float64), np.asarray(y, np.float64)
    if X.ndim != 2 or X.shape[1] != d:
        raise ValueError(f"X must have shape [n, {d}] to match bounds, got {X.shape}")
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have shape [{X.shape[0]}] (one value per row of X), got {y.shape}")
    if X.shape[0] < 1:
        raise ValueError("suggest needs at least one observation; evaluate a random point first")
    if not np.all(np.isfinite(X)) or not np.all(np.isfinite(y)):
        raise ValueError("X and y must not contain NaN or inf")
    if np.any(X < bounds[:, 0]) or np.any(X > bounds[:, 1]):
        raise ValueError("every row of X must lie inside bounds")
    return X, y, bounds


def to_unit(X: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Map points in the box ``bounds [d, 2]`` to the unit cube."""
    return (np.asarray(X) - bounds[:, 0]) / (bounds[:, 1] - bounds[:, 0])


def from_unit(U: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Map points in the unit cube back to the box ``bounds [d, 2]``."""
    return bounds[:, 0] + np.asarray(U) * (bounds[:, 1] - bounds[:, 0])


def standardize_for_maximization(y: np.ndarray) -> np.ndarray:
    """``-(y - mean) / std``: minimisation targets on the standard scale, as a maximisation."""
    std = float(np.std(y))
    return -(y - np.mean(y)) / (std if std > 0 else 1.0)


def _sobol(key: PRNGKey, n: int, d: int) -> np.ndarray:
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    return qmc.Sobol(d, scramble=True, seed=seed).random(n)


def maximize_acquisition(acq: Callable[[Array], Array], candidates: Array, *, num_restarts: int, steps: int,
                         lr: float | Array) -> tuple[Array, Array]:
    """``argmax`` and ``max`` over ``[0, 1]^d`` of a differentiable ``acq: f32[M, d] -> f32[M]``.

    Scores ``candidates [N, d]``, then runs projected Adam ascents from the ``num_restarts`` best
    (step size decaying from ``lr`` so the last steps refine; clipping to the cube reaches its
    faces); returns the best of the ascents and the best candidate. Pure: call it under ``jit``.
    """
    raw = acq(candidates)
    starts = candidates[jnp.argsort(-raw)[:num_restarts]]
    tx = optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=0.01))
    ascended, _ = multistart_minimize(lambda u: -acq(u), starts, tx, steps, batched_loss=True,
                                      project=lambda u: jnp.clip(u, 0.0, 1.0))
    points = jnp.concatenate([ascended, candidates[jnp.argmax(raw)][None]])
    values = acq(points)
    return points[jnp.argmax(values)], jnp.max(values)


def candidate_points(key: PRNGKey, best_u: np.ndarray, num_raw: int) -> np.ndarray:
    """``num_raw`` starting candidates in ``[0, 1]^d``: half scrambled Sobol, a quarter uniform, and
    a quarter Gaussian perturbations (std 0.05) of the best observation ``best_u``."""
    d = best_u.shape[0]
    k_sobol, k_uniform, k_local = jax.random.split(key, 3)
    n_sobol, n_uniform = num_raw // 2, num_raw // 4
    local = np.clip(best_u + 0.05 * np.asarray(jax.random.normal(k_local, (num_raw - n_sobol - n_uniform, d))),
                    0.0, 1.0)
    return np.concatenate([_sobol(k_sobol, n_sobol, d), np.asarray(jax.random.uniform(k_uniform, (n_uniform, d))),
                           local])


@functools.partial(jax.jit, static_argnames=("graphdef", "acquisition", "num_restarts", "steps"))
def _maximize(graphdef: nnx.GraphDef, params, head: BarHead, caches, context_len: Array, num_features: Array,
              best: Array, candidates: Array, lr: float, beta_quantile: float, *, acquisition: str,
              num_restarts: int, steps: int) -> tuple[Array, Array]:
    """The PFN acquisition's best point in ``[0, 1]^d`` (and its value)."""
    model = nnx.merge(graphdef, params)

    def acq(u: Array) -> Array:  # u: [M, d] in the unit cube -> [M]
        x = pad_features(u, model.io.max_features)[None]
        dist = head.distribution(model.predict_queries(caches, x, context_len, num_features)[0])
        if acquisition == "ei":
            return dist.ei(best)
        if acquisition == "pi":
            return dist.pi(best)
        return dist.ucb(beta_quantile)

    return maximize_acquisition(acq, candidates, num_restarts=num_restarts, steps=steps, lr=lr)


def suggest(
    pfn: PFN,
    X,
    y,
    bounds,
    key: PRNGKey,
    acquisition: Acquisition = "ei",
    *,
    num_restarts: int = 8,
    num_raw: int = 512,
    steps: int = 40,
    lr: float = 0.05,
    batch_size: int = 1,
    beta_quantile: float = 0.841,
) -> np.ndarray:
    """The next ``batch_size`` points to evaluate, for minimising a function observed at ``(X, y)``.

    Args:
        pfn: a PFN with a bar-distribution head, trained on a prior of functions on the unit cube
            (``bo-hebo``, or any run of the ``gp``/``gp_hyper`` priors).
        X: ``[n, d]`` evaluated points inside ``bounds`` (``n >= 1``; duplicates are fine).
        y: ``[n]`` their function values (to be minimised).
        bounds: ``[d, 2]`` lower and upper bound of each dimension.
        key: a ``jax.random.key``.
        acquisition: ``ei``, ``pi`` or ``ucb``.
        num_restarts: gradient ascents, started from the best raw candidates.
        num_raw: raw candidates scored first (half Sobol, a quarter uniform, a quarter near the best).
        steps, lr: Adam steps and initial step size of each ascent (in unit-cube coordinates).
        batch_size: points to return, chosen one after another by the kriging believer.
        beta_quantile: the quantile that ``ucb`` maximises.
    Returns:
        ``float64[batch_size, d]`` points inside ``bounds``.
    """
    X, y, bounds = _check_inputs(pfn, X, y, bounds)
    if acquisition not in ACQUISITIONS:
        raise ValueError(f"acquisition must be one of {ACQUISITIONS}, got {acquisition!r}")
    for name, value in (("num_restarts", num_restarts), ("num_raw", num_raw), ("steps", steps),
                        ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if num_restarts > num_raw:
        raise ValueError(f"num_restarts={num_restarts} exceeds num_raw={num_raw}")
    U, z = to_unit(X, bounds), standardize_for_maximization(y)
    chosen = []
    for i in range(batch_size):
        candidates = candidate_points(jax.random.fold_in(key, i), U[np.argmax(z)], num_raw)
        cache = pfn.encode(U, z)
        point, _ = _maximize(pfn.graphdef, pfn.params, pfn.head, cache.caches, cache.context_len, cache.num_features,
                             jnp.float32(z.max()), jnp.asarray(candidates, jnp.float32), lr, beta_quantile,
                             acquisition=acquisition, num_restarts=num_restarts, steps=steps)
        point = np.clip(np.asarray(point, np.float64), 0.0, 1.0)
        chosen.append(point)
        if i + 1 < batch_size:  # kriging believer: pretend the predicted mean was observed
            believed = float(pfn.predict_from_cache(cache, point[None]).mean()[0])
            U, z = np.concatenate([U, point[None]]), np.append(z, believed)
    return from_unit(np.stack(chosen), bounds)


@dataclasses.dataclass
class BOHistory:
    """What :func:`minimize` did: every evaluated point and value, in order."""

    X: np.ndarray  # [n, d]
    y: np.ndarray  # [n]
    num_initial: int
    suggest_seconds: list[float]  # wall time of each suggest call

    @property
    def best_so_far(self) -> np.ndarray:
        """``[n]`` the running minimum of ``y``."""
        return np.minimum.accumulate(self.y)

    @property
    def x_best(self) -> np.ndarray:
        return self.X[int(np.argmin(self.y))]


def minimize(
    f: Callable[[np.ndarray], float],
    bounds,
    pfn: PFN,
    n_iter: int,
    key: PRNGKey,
    *,
    n_initial: int = 5,
    acquisition: Acquisition = "ei",
    progress: bool = True,
    **suggest_options,
) -> BOHistory:
    """Minimise ``f`` over the box ``bounds``: ``n_initial`` uniform random points, then ``n_iter``
    suggestions of :func:`suggest`, one evaluation each. Returns the :class:`BOHistory`."""
    bounds = np.asarray(bounds, np.float64)
    if not isinstance(n_initial, int) or n_initial < 1 or not isinstance(n_iter, int) or n_iter < 0:
        raise ValueError(f"need n_initial >= 1 and n_iter >= 0, got {n_initial}, {n_iter}")
    k_init, k_loop = jax.random.split(key)
    U0 = np.asarray(jax.random.uniform(k_init, (n_initial, bounds.shape[0])), np.float64)
    X = from_unit(U0, bounds)
    y = np.array([float(f(x)) for x in X])
    seconds = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_iter, desc=f"BO ({acquisition})", unit="eval", dynamic_ncols=True)
    try:
        for i in range(n_iter):
            start = time.perf_counter()
            x_next = suggest(pfn, X, y, bounds, jax.random.fold_in(k_loop, i), acquisition, **suggest_options)[0]
            seconds.append(time.perf_counter() - start)
            X, y = np.concatenate([X, x_next[None]]), np.append(y, float(f(x_next)))
            if not np.isfinite(y[-1]):
                raise FloatingPointError(f"f returned {y[-1]} at {x_next}")
            if bar is not None:
                bar.update(1)
                bar.set_postfix(best=f"{y.min():.4g}")
    finally:
        if bar is not None:
            bar.close()
    return BOHistory(X, y, n_initial, seconds)


__all__ = ["ACQUISITIONS", "BOHistory", "candidate_points", "from_unit", "maximize_acquisition", "minimize",
           "standardize_for_maximization", "suggest", "to_unit"]
