"""Emulate TensorFloat-32 matmuls on the CPU, so CPU tests see what a GPU's defaults do.

On NVIDIA GPUs (Ampere and later) XLA computes float32 matmuls at ``Precision.DEFAULT`` in TF32:
each operand is rounded to a 10-bit mantissa, products are accumulated in float32. The CPU
ignores the precision setting and always computes full float32, so a kernel matrix that loses
positive-definiteness on a GPU stays fine in CPU tests. :func:`emulate_tf32` swaps the CPU
lowering of ``dot_general`` for one that rounds float32 operands to TF32 (``reduce_precision``,
8 exponent / 10 mantissa bits) whenever the dot's precision is DEFAULT, and leaves dots that
ask for HIGH/HIGHEST (or a dot algorithm) untouched, as a GPU does.

It uses JAX internals (the lowering registry), so it lives with the tests, not in the package.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Iterator

import jax
import numpy as np
from jax._src.interpreters import mlir
from jax._src.lax import lax as lax_internal

TF32_MANTISSA_BITS = 10
_DEFAULT = (None, jax.lax.Precision.DEFAULT)


def _is_default(precision) -> bool:
    if precision is None:
        return True
    if isinstance(precision, tuple):
        return all(p in _DEFAULT for p in precision)
    return precision in _DEFAULT


def _tf32_dot_general_lower(ctx, lhs, rhs, *, dimension_numbers, precision, preferred_element_type,
                            out_sharding=None, **kwargs):
    params = dict(dimension_numbers=dimension_numbers, preferred_element_type=preferred_element_type,
                  out_sharding=out_sharding, **kwargs)
    lhs_aval, rhs_aval = ctx.avals_in
    if not _is_default(precision) or lhs_aval.dtype != np.float32 or rhs_aval.dtype != np.float32:
        return lax_internal._dot_general_lower(ctx, lhs, rhs, precision=precision, platform="cpu", **params)

    def rounded_dot(a, b):
        a = jax.lax.reduce_precision(a, exponent_bits=8, mantissa_bits=TF32_MANTISSA_BITS)
        b = jax.lax.reduce_precision(b, exponent_bits=8, mantissa_bits=TF32_MANTISSA_BITS)
        # HIGHEST on the CPU is plain float32 (and keeps this rule from recursing).
        highest = (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGHEST)
        return lax_internal.dot_general_p.bind(a, b, precision=highest, **params)

    return mlir.lower_fun(rounded_dot, multiple_results=False)(ctx, lhs, rhs)


_installed = False


def installed() -> bool:
    """Whether CPU matmuls are being rounded to TF32 now."""
    return _installed


def install() -> None:
    """Make every later CPU compilation emulate TF32 (see module docstring)."""
    global _installed
    jax.clear_caches()
    mlir.register_lowering(lax_internal.dot_general_p, _tf32_dot_general_lower, platform="cpu")
    _installed = True


def uninstall() -> None:
    """Restore JAX's own CPU lowering of ``dot_general``."""
    global _installed
    jax.clear_caches()
    mlir.register_lowering(
        lax_internal.dot_general_p, functools.partial(lax_internal._dot_general_lower, platform="cpu"), platform="cpu"
    )
    _installed = False


@contextlib.contextmanager
def emulate_tf32() -> Iterator[None]:
    """Within the block, CPU float32 matmuls at DEFAULT precision are computed as on a GPU (TF32).

    Nests inside a whole-suite emulation (``PFNJAX_EMULATE_TF32=1``) without ending it.
    """
    if _installed:
        yield
        return
    install()
    try:
        yield
    finally:
        uninstall()
