"""Regression head: the Riemann ("bar") distribution over equal-mass buckets of the prior's y."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import struct

from pfnjax.distributions import bar
from pfnjax.distributions.bar_distribution import BarDistribution
from pfnjax.heads.base import Head, register_head
from pfnjax.types import Array


@dataclasses.dataclass(frozen=True)
class BarHeadConfig:
    """Settings of the bar-distribution head."""

    num_buckets: int = dataclasses.field(default=1000, metadata={"help": "bar buckets between equal-mass borders"})
    border_samples: int = dataclasses.field(default=200_000, metadata={
        "help": "prior draws of y that place the bar borders"})

    def __post_init__(self) -> None:
        for name in ("num_buckets", "border_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"BarHeadConfig.{name} must be a positive int, got {value!r}")


@register_head("bar")
@struct.dataclass
class BarHead(Head):
    """Logits over the ``K`` buckets between ``borders f32[K+1]``; y is embedded as a real value.

    The loss is the bar-distribution NLL with half-normal tails beyond the outer borders (full
    support), so any real y has a finite loss.
    """

    borders: Array
    task = "regression"
    Config = BarHeadConfig

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
    def from_samples(cls, y: np.ndarray, num_buckets: int) -> "BarHead":
        """Equal-mass borders: ``num_buckets`` buckets between quantiles of the sample ``y``."""
        return cls(bar.borders_from_samples(np.asarray(y).reshape(-1), num_buckets))

    @classmethod
    def label_samples(cls, settings: BarHeadConfig) -> int:
        return settings.border_samples

    @classmethod
    def fit(cls, settings: BarHeadConfig, y_samples: np.ndarray | None = None) -> "BarHead":
        if y_samples is None:
            raise ValueError("a bar head is fitted to prior draws of y (y_samples)")
        return cls.from_samples(y_samples, settings.num_buckets)
