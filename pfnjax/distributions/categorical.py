"""The classification output of a PFN: a categorical distribution over the context's classes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from pfnjax.types import Array


@struct.dataclass
class CategoricalDistribution:
    """Predictive class distribution from ``logits f32[..., M, C]``: ``softmax(logits)`` over ``C`` classes.

    A pytree (the logits are its only leaf), so it passes through ``jit``, ``vmap`` and ``grad``.
    """

    logits: Array

    @property
    def probs(self) -> Array:
        """Class probabilities ``f32[..., C]``."""
        return jax.nn.softmax(self.logits, axis=-1)

    @property
    def num_classes(self) -> int:
        return self.logits.shape[-1]

    def predict(self) -> Array:
        """Most probable class per query."""
        return jnp.argmax(self.logits, axis=-1)

    def log_prob(self, y: Array) -> Array:
        """``log p(y)`` for integer classes ``y`` broadcastable with the batch shape."""
        logp = jax.nn.log_softmax(self.logits, axis=-1)
        return jnp.take_along_axis(logp, jnp.asarray(y, jnp.int32)[..., None], axis=-1)[..., 0]

    def entropy(self) -> Array:
        """Shannon entropy (nats) per query."""
        logp = jax.nn.log_softmax(self.logits, axis=-1)
        return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


__all__ = ["CategoricalDistribution"]
