"""Bar-distribution borders: equal-mass borders from prior samples, and host-side validation."""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np

from pfnjax.types import Array


def validate_borders(borders: Array | np.ndarray | Sequence[float]) -> np.ndarray:
    """Check ``borders: [K+1]`` on the host; return them as a numpy array.

    Raises ``ValueError`` if they are not 1-D, have fewer than 2 entries, contain NaN/inf or are
    not strictly increasing. Call outside ``jit``.
    """
    b = np.asarray(borders)
    if b.ndim != 1:
        raise ValueError(f"borders must be 1-D [K+1], got shape {b.shape}")
    if b.shape[0] < 2:
        raise ValueError(f"borders need at least 2 entries (1 bucket), got {b.shape[0]}")
    if not np.all(np.isfinite(b)):
        raise ValueError("borders contain NaN or inf")
    bad = np.nonzero(np.diff(b) <= 0)[0]
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"borders must be strictly increasing; borders[{i}]={b[i]!r} >= borders[{i + 1}]={b[i + 1]!r} "
            f"({bad.size} violation(s))"
        )
    return b


def validate_logits(borders: Array | np.ndarray, logits: Array | np.ndarray, full_support: bool = True) -> None:
    """Check ``borders`` (see :func:`validate_borders`) and that ``logits.shape[-1] == len(borders) - 1``.

    Also rejects NaN logits and ``full_support`` with a single bucket. Call outside ``jit``.
    """
    b = validate_borders(borders)
    check_shapes(b, logits, full_support)
    if np.any(np.isnan(np.asarray(logits))):
        raise ValueError("logits contain NaN")


def check_shapes(borders: Array, logits: Array, full_support: bool) -> None:
    """Raise ``ValueError`` unless ``logits [..., K]`` fit ``borders [K+1]``; static shapes only,
    so it runs (free) under ``jit`` and catches the most common mistake."""
    if borders.ndim != 1 or borders.shape[0] < 2:
        raise ValueError(f"borders must have shape [K+1] with K >= 1, got {tuple(borders.shape)}")
    k = borders.shape[0] - 1
    if logits.ndim < 1 or logits.shape[-1] != k:
        raise ValueError(
            f"logits last dim must equal len(borders) - 1 = {k}; got logits shape {tuple(logits.shape)} "
            f"and borders shape {tuple(borders.shape)}"
        )
    if full_support and k < 2:
        raise ValueError("full_support=True needs at least 2 buckets (one half-normal tail per side)")


def borders_from_samples(y_samples: Array | np.ndarray, num_buckets: int = 1000) -> Array:
    """Equal-mass bucket borders from a large prior sample of targets.

    Args:
      y_samples: any shape; flattened.
      num_buckets: requested number of buckets ``K``.

    Returns:
      ``f32[K'+1]`` with ``K' <= num_buckets``: the ``0, 1/K, ..., 1`` empirical quantiles with
      duplicates merged (a point mass in the prior makes several quantiles coincide). Runs on host.

    Raises ``ValueError`` on NaN/inf samples, fewer than 2 distinct values or ``num_buckets < 1``.
    """
    y = np.asarray(y_samples, dtype=np.float64).ravel()
    if num_buckets < 1:
        raise ValueError(f"num_buckets must be >= 1, got {num_buckets}")
    if y.size == 0 or not np.all(np.isfinite(y)):
        raise ValueError("y_samples must be non-empty and contain no NaN or inf")
    if np.unique(y).size < 2:
        raise ValueError("y_samples need at least 2 distinct values to define buckets")
    b = np.quantile(y, np.linspace(0.0, 1.0, num_buckets + 1))
    # Merge after the cast: values distinct in float64 may collide in float32.
    b = np.unique(b.astype(np.float32))
    if b.size < 2:
        raise ValueError("y_samples collapse to fewer than 2 distinct float32 values")
    return jnp.asarray(b)


__all__ = ["borders_from_samples", "check_shapes", "validate_borders", "validate_logits"]
