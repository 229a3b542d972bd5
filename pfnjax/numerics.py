"""Numerics written once: matmul precision for sensitive code (and a guard that checks it), and
the z-scoring and soft outlier clipping that the priors (training) and the estimators'
preprocessing (inference) share.

**Z-scoring and clipping.** :func:`standardization` / :func:`standardize` and
:func:`soft_clip_bounds` / :func:`soft_clip` / :func:`soft_clip_outliers` take numpy arrays (the
host-side preprocessing, float64) and jax arrays (the priors, float32, under ``jit``) alike: one
implementation, so a model sees real data scaled as its prior scaled its training data.

Accelerators do not compute float32 matmuls in float32 by default: NVIDIA GPUs use TF32
(10-bit mantissa) and TPUs bfloat16 passes at ``Precision.DEFAULT``. That is right for the
transformer, whose matmuls should stay fast, and wrong for kernel matrices, Cholesky-based
samplers, posterior oracles and the prior networks: a GP kernel matrix built in TF32 is not
positive definite and its Cholesky factor is NaN. The CPU ignores the setting, so CPU tests
cannot see the difference.

The rule in pfnjax: every matmul in a prior sampler, an oracle or a bar-distribution
functional states ``precision=HIGHEST`` (through :func:`matmul` or ``precision=SENSITIVE``).
No global JAX config is changed. :func:`low_precision_dots` walks a function's jaxpr and lists
the float matmuls that do not, so a test can fail on the CPU when someone adds one (see
``tests/test_precision.py``); run it on your own prior too::

    assert not pfnjax.numerics.low_precision_dots(lambda k: pfnjax.sample_batch(my_prior, k, shape), key)
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from pfnjax.types import Array

#: The precision of every matmul whose result feeds a Cholesky, a posterior or a prior draw.
SENSITIVE = jax.lax.Precision.HIGHEST


def matmul(a: Array, b: Array) -> Array:
    """``a @ b`` at full float32 precision on every backend (``Precision.HIGHEST``)."""
    return jnp.matmul(a, b, precision=SENSITIVE)


def _is_full_precision(precision: Any) -> bool:
    if precision is None:
        return False
    if isinstance(precision, tuple):
        return all(p == jax.lax.Precision.HIGHEST for p in precision)
    if precision == jax.lax.Precision.HIGHEST:
        return True
    # An explicit dot algorithm (jax.lax.DotAlgorithmPreset) states its precision; accept the f32/f64 ones.
    name = str(getattr(precision, "name", precision)).upper()
    return name.startswith(("F32_F32", "F64_F64"))


def _sub_jaxprs(value: Any):
    """Jaxprs nested in an equation parameter (jit, scan, cond branches, custom_jvp/vjp, ...)."""
    if hasattr(value, "eqns"):
        yield value
    elif hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):
        yield value.jaxpr
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _sub_jaxprs(item)


def _where(eqn: Any) -> str:
    try:  # source locations are not public API; fall back to the equation text
        from jax._src import source_info_util

        return source_info_util.summarize(eqn.source_info)
    except Exception:  # pragma: no cover - depends on the JAX version
        return str(eqn)[:200]


def _walk(jaxpr: Any, found: list[str]) -> None:
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            dtypes = [np.dtype(v.aval.dtype) for v in eqn.invars]
            floating = all(np.issubdtype(d, np.floating) for d in dtypes)
            if floating and not all(d == np.float64 for d in dtypes) and not _is_full_precision(eqn.params.get("precision")):
                shapes = " x ".join(str(tuple(v.aval.shape)) for v in eqn.invars)
                found.append(f"dot_general {shapes} precision={eqn.params.get('precision')} at {_where(eqn)}")
        for param in eqn.params.values():
            for sub in _sub_jaxprs(param):
                _walk(sub, found)


def low_precision_dots(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[str]:
    """The floating-point matmuls in ``fn(*args, **kwargs)`` that do not run at full precision.

    Traces ``fn`` with :func:`jax.make_jaxpr` (nothing is computed), walks every nested jaxpr
    and reports each ``dot_general`` on float operands whose precision is not ``HIGHEST`` (or an
    f32/f64 dot algorithm), with its source location. An empty list means the function computes
    the same matmuls on a GPU or TPU as on a CPU, whatever JAX's default matmul precision is.
    """
    closed = jax.make_jaxpr(fn)(*args, **kwargs)
    found: list[str] = []
    _walk(closed.jaxpr, found)
    return found


# --------------------------------------------------------------------------- z-scoring and clipping


def _xp(x: Any):
    """The array namespace of ``x``: ``jax.numpy`` for jax arrays and tracers, else ``numpy``."""
    return jnp if isinstance(x, jax.Array) else np


def _quiet(xp):
    """numpy warns on all-NaN columns (empty means); those give 0 by definition here."""
    if xp is jnp:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore", RuntimeWarning)
    stack.enter_context(np.errstate(all="ignore"))
    return stack


def nan_mean_std(x: Array, axis: int = 0, keepdims: bool = False) -> tuple[Array, Array]:
    """Means and population stds along ``axis``, ignoring NaN; all-NaN slices give ``(0, 0)``."""
    xp = _xp(x)
    with _quiet(xp):
        mean = xp.nanmean(x, axis=axis, keepdims=keepdims)
        std = xp.nanstd(x, axis=axis, keepdims=keepdims)
    return xp.nan_to_num(mean), xp.nan_to_num(std)


def _standardization_passes(x: Array, axis: int, min_std: float) -> tuple[Array, ...]:
    """``(big, mean1, std1, mean2, std2)``: the prescale and the two passes' statistics (keepdims)."""
    xp = _xp(x)
    with _quiet(xp):
        big = xp.nan_to_num(xp.nanmax(xp.abs(x), axis=axis, keepdims=True))
    big = xp.where(big > 0, big, 1.0)
    mean1, std1 = nan_mean_std(x / big, axis, keepdims=True)
    constant = std1 * big <= min_std
    std1 = xp.where(constant, 1.0 / big, std1)  # a constant slice keeps its units: scale 1
    mean2, std2 = nan_mean_std((x / big - mean1) / std1, axis, keepdims=True)
    std2 = xp.where(constant | (std2 == 0), 1.0, std2)
    return big, mean1, std1, mean2, std2


def standardization(x: Array, axis: int = 0, min_std: float = 0.0) -> tuple[Array, Array]:
    """``(center, scale)`` (keepdims) with which ``(x - center) / scale`` is z-scored along ``axis``,
    ignoring NaN; a slice whose std is ``<= min_std`` is only centred (scale 1: constant columns
    become 0). For statistics fitted on some rows and applied to others (the estimators' context).

    Values are first divided by the slice's max ``|x|`` (hidden units of a random network reach
    ``1e15``; a constant slice then becomes exactly 1, so it centres to exactly 0), and the
    statistics are taken twice: for a column whose offset dwarfs its spread, the first pass's
    mean is off by a sizeable fraction of the spread, which the second pass (on values of order 1)
    removes. The two passes compose into this one affine map.
    """
    big, mean1, std1, mean2, std2 = _standardization_passes(x, axis, min_std)
    return big * (mean1 + std1 * mean2), big * std1 * std2


def standardize(x: Array, axis: int = 0, min_std: float = 0.0) -> Array:
    """``x`` z-scored along ``axis`` with the statistics of :func:`standardization` (NaN ignored and
    kept), applied pass by pass: in float32 this keeps the mean at zero to rounding even for a
    column whose offset dwarfs its spread, which the composed map would not."""
    big, mean1, std1, mean2, std2 = _standardization_passes(x, axis, min_std)
    return ((x / big - mean1) / std1 - mean2) / std2


def soft_clip_bounds(x: Array, n_sigma: float) -> tuple[Array, Array]:
    """TabPFN v1's robust bounds per column: mean ± n_sigma·std, with the statistics recomputed
    on the inliers of a first pass (NaN ignored)."""
    xp = _xp(x)
    mean, std = nan_mean_std(x)
    with _quiet(xp):
        inlier = xp.abs(x - mean) <= n_sigma * std
    mean, std = nan_mean_std(xp.where(inlier, x, xp.nan))
    return mean - n_sigma * std, mean + n_sigma * std


def soft_clip(x: Array, lower: Array, upper: Array) -> Array:
    """Values beyond a bound grow only logarithmically: ``min(x, upper + log1p(|x|))`` and likewise
    below (TabPFN v1's ``remove_outliers``). NaN stays NaN."""
    xp = _xp(x)
    with _quiet(xp):
        x = xp.maximum(-xp.log1p(xp.abs(x)) + lower, x)
        return xp.minimum(xp.log1p(xp.abs(x)) + upper, x)


def soft_clip_outliers(x: Array, n_sigma: float) -> Array:
    """Soft-clip each column of ``x`` at ``n_sigma`` robust std devs of its own values."""
    return soft_clip(x, *soft_clip_bounds(x, n_sigma))


__all__ = ["SENSITIVE", "low_precision_dots", "matmul", "nan_mean_std", "soft_clip", "soft_clip_bounds",
           "soft_clip_outliers", "standardization", "standardize"]
