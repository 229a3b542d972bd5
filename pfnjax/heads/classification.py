"""Classification head: softmax logits over ``max_classes``; context labels are embedded classes."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from pfnjax.distributions.categorical import CategoricalDistribution
from pfnjax.heads.base import Head, register_head
from pfnjax.types import Array


@dataclasses.dataclass(frozen=True)
class ClassHeadConfig:
    """Settings of the classification head."""

    max_classes: int = dataclasses.field(default=10, metadata={
        "help": "the largest number of classes the model predicts"})

    def __post_init__(self) -> None:
        if isinstance(self.max_classes, bool) or not isinstance(self.max_classes, int) or self.max_classes < 2:
            raise ValueError(f"ClassHeadConfig.max_classes must be an int >= 2, got {self.max_classes!r}")


@register_head("class")
@struct.dataclass
class ClassHead(Head):
    """Logits over ``max_classes`` classes; the loss is the cross-entropy. No arrays to save."""

    max_classes: int = struct.field(pytree_node=False)
    task = "classification"
    Config = ClassHeadConfig

    @property
    def num_outputs(self) -> int:
        return self.max_classes

    @property
    def y_vocab(self) -> int:
        return self.max_classes

    def loss(self, logits: Array, y: Array) -> Array:
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.take_along_axis(logp, y.astype(jnp.int32)[..., None], axis=-1)[..., 0]

    def check_labels(self, y: np.ndarray) -> np.ndarray:
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError("classification y_ctx must hold integer class indices")
        if y.min() < 0 or y.max() >= self.max_classes:
            raise ValueError(f"class indices must lie in [0, {self.max_classes}); got [{y.min()}, {y.max()}]")
        return y.astype(np.int32)

    def label_summary(self, y: np.ndarray) -> int:
        """The number of classes the context shows: ``max(y) + 1``."""
        return int(np.max(y)) + 1

    def distribution(self, logits: Array, label_summary: int = -1, *, num_classes: int | None = None,
                     **options: Any) -> CategoricalDistribution:
        """Softmax over the first ``num_classes`` classes (default: those the context shows)."""
        if options:
            raise ValueError(f"unknown classification options {sorted(options)}")
        n_cls = label_summary if num_classes is None else int(num_classes)
        if not 1 <= n_cls <= self.max_classes:
            raise ValueError(f"num_classes={n_cls} is outside [1, {self.max_classes}] supported by this model")
        return CategoricalDistribution(logits[..., :n_cls])

    def full_distribution(self, logits: Array) -> CategoricalDistribution:
        return CategoricalDistribution(logits)

    def metadata(self) -> dict:
        return {"kind": self.kind, "max_classes": self.max_classes}

    @classmethod
    def from_metadata(cls, data: dict) -> "ClassHead":
        return cls(int(data["max_classes"]))

    @classmethod
    def fit(cls, settings: ClassHeadConfig, y_samples: np.ndarray | None = None) -> "ClassHead":
        return cls(settings.max_classes)
