"""Core data types and shape conventions.

Every array is batch-first:

* ``x``: ``f32[B, T, F]`` features; columns ``>= num_features[b]`` are zero.
* ``y``: ``f32[B, T]`` (regression) or ``i32[B, T]`` (class index).
* ``single_eval_pos``: ``i32[B]``; positions ``< single_eval_pos[b]`` are the
  labelled context, the rest are queries. The split is a mask, never a slice,
  so one compiled program serves every split point.
* ``num_features``: ``i32[B]``, number of used feature columns per dataset.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

Array = jax.Array
PRNGKey = jax.Array


@struct.dataclass
class Batch:
    """A batch of synthetic (or real) datasets, each split into context and queries."""

    x: Array
    y: Array
    single_eval_pos: Array
    num_features: Array

    @property
    def batch_size(self) -> int:
        return self.x.shape[0]

    @property
    def seq_len(self) -> int:
        return self.x.shape[1]

    @property
    def max_features(self) -> int:
        return self.x.shape[2]

    def context_mask(self) -> Array:
        """``bool[B, T]``: True where a position belongs to the context."""
        positions = jnp.arange(self.seq_len)[None, :]
        return positions < self.single_eval_pos[:, None]

    def query_mask(self) -> Array:
        """``bool[B, T]``: True where a position is a query."""
        return ~self.context_mask()


@dataclasses.dataclass(frozen=True)
class BatchShape:
    """Static shape of a batch: number of datasets, rows per dataset, feature columns."""

    batch_size: int
    seq_len: int
    num_features: int

    def __post_init__(self) -> None:
        for name in ("batch_size", "seq_len", "num_features"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"BatchShape.{name} must be a positive int, got {value!r}")
        if self.seq_len < 2:
            raise ValueError(f"BatchShape.seq_len must be >= 2 (one context row and one query), got {self.seq_len}")
