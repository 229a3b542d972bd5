"""Regression head: the Riemann ("bar") distribution over equal-mass buckets of the prior's y."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import struct

from pfnjax.distributions import bar
from pfnjax.distributions.bar_distribution import BarDistribution
from pfnjax.heads.base import Head, register_head
from pfnjax.types import Array


@register_head("bar")
@struct.dataclass
class BarHead(Head):
    """Logits over the ``K`` buckets between ``borders f32[K+1]``; y is embedded as a real value.

    The loss is the bar-distribution NLL with half-normal tails beyond the outer borders (full
    support), so any real y has a finite loss.
    """

    borders: Array
    task = "regression"

    @property
    def num_outputs(self) -> int:
        return int(self.borders.shape[0]) - 1

    @property
    def y_vocab(self) -> int:
        return 0

    def loss(self, logits: Array, y: Array) -> Array:
        return -bar.log_prob(self.borders, logits, y)

    def check_labels(self, y: np.ndarray) -> np.ndarray:
        if not np.all(np.isfinite(y)):
            raise ValueError("y_ctx contains NaN or inf")
        return y.astype(np.float32)

    def distribution(self, logits: Array, label_summary: int = -1, **options: Any) -> BarDistribution:
        if options:
            raise ValueError(f"a bar-distribution head takes no options, got {sorted(options)}")
        return BarDistribution(borders=self.borders, logits=logits)

    def metadata(self) -> dict:
        # float32 -> Python float -> JSON round-trips exactly
        return {"kind": self.kind, "borders": [float(b) for b in np.asarray(self.borders)]}

    @classmethod
    def from_metadata(cls, data: dict) -> "BarHead":
        return cls(jnp.asarray(np.asarray(data["borders"], np.float32)))

    @classmethod
    def equally_spaced(cls, num_buckets: int, low: float = -3.0, high: float = 3.0) -> "BarHead":
        """Borders equally spaced on ``[low, high]`` (for randomly initialised models)."""
        return cls(jnp.linspace(low, high, num_buckets + 1, dtype=jnp.float32))

    @classmethod
    def for_training(cls, prior: Any, cfg: Any, key: Any) -> "BarHead":
        """Equal-mass borders from ``cfg.head.border_samples`` prior draws of y."""
        import jax

        from pfnjax.priors.from_config import feature_count_sampler
        from pfnjax.priors.base import sample_batch
        from pfnjax.types import BatchShape

        data = cfg.data
        shape = BatchShape(max(1, -(-cfg.head.border_samples // data.seq_len)), data.seq_len, data.num_features)
        sampler = jax.jit(lambda k: sample_batch(prior, k, shape, split=data.split,
                                                 num_features_sampler=feature_count_sampler(data)))
        y = np.asarray(sampler(key).y).reshape(-1)
        return cls(bar.borders_from_samples(y, cfg.head.num_buckets))
