"""Matmul precision for numerically sensitive code, and a guard that checks it.

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


__all__ = ["SENSITIVE", "low_precision_dots", "matmul"]
