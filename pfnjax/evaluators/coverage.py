"""Calibration of a bar-head PFN's predictive intervals (``{"type": "quantile_coverage"}``): how often
the central ``level`` interval of the predictive distribution covers the held-out query label.

A calibrated model covers a fraction ``level`` of the labels at every context size; the metrics
are each level's coverage averaged over the context sizes (``coverage90``), per size
(``coverage90@20``), and the mean absolute miscalibration ``|coverage - level|``
(``calibration_error``). Runs during training like any evaluator, on held-out prior datasets of
the run's eval stream.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

from pfnjax.evaluators.base import EvalContext, PredictFn, register_evaluator
from pfnjax.evaluators.held_out import HeldOut, held_out_datasets, query_logits
from pfnjax.heads import BarHead


@register_evaluator("quantile_coverage")
@dataclasses.dataclass
class QuantileCoverage:
    """Coverage of central predictive intervals on fixed held-out prior datasets."""

    @dataclasses.dataclass(frozen=True)
    class Config:
        """Settings of ``{"type": "quantile_coverage"}``."""

        levels: tuple[float, ...] = (0.5, 0.9)
        num_datasets: int = 64
        num_queries: int = 50
        context_sizes: tuple[int, ...] = (5, 20, 50)

        def __post_init__(self) -> None:
            object.__setattr__(self, "levels", tuple(float(v) for v in self.levels))
            object.__setattr__(self, "context_sizes", tuple(int(n) for n in self.context_sizes))
            if not self.levels or any(not 0.0 < v < 1.0 for v in self.levels):
                raise ValueError(f"quantile_coverage: levels must lie in (0, 1), got {self.levels}")
            if self.num_datasets < 1 or self.num_queries < 1 or not self.context_sizes or min(self.context_sizes) < 1:
                raise ValueError("quantile_coverage: num_datasets, num_queries and context_sizes must be positive")

    data: HeldOut
    head: BarHead
    levels: tuple[float, ...]
    context_sizes: tuple[int, ...]

    @classmethod
    def from_config(cls, settings: "QuantileCoverage.Config", context: EvalContext) -> "QuantileCoverage":
        if not isinstance(context.head, BarHead):
            raise ValueError(f"quantile_coverage needs a bar-distribution head, this run has a "
                             f"{type(context.head).__name__}")
        data = held_out_datasets(context.prior, context.key, settings.context_sizes, settings.num_datasets,
                                 settings.num_queries, context.io.max_features, context.num_features_sampler)
        return cls(data, context.head, settings.levels, settings.context_sizes)

    def coverage(self, predict: PredictFn, params: Any) -> np.ndarray:
        """``[len(context_sizes), len(levels)]``: the fraction of query labels inside each central interval."""
        probs = jnp.asarray([[(1 - v) / 2, (1 + v) / 2] for v in self.levels], jnp.float32).reshape(-1)
        out = np.zeros((len(self.context_sizes), len(self.levels)))
        for i, n in enumerate(self.context_sizes):
            inside, count = np.zeros(len(self.levels)), 0
            for idx, logits, y_q in query_logits(predict, params, self.data, n, max(self.context_sizes)):
                q = np.asarray(self.head.distribution(logits).quantile(probs))[: len(idx)]  # [chunk, Q, 2L]
                lo, hi = q[..., 0::2], q[..., 1::2]
                y = np.asarray(y_q)[: len(idx), :, None]
                inside += ((lo <= y) & (y <= hi)).sum(axis=(0, 1))
                count += y.shape[0] * y.shape[1]
            out[i] = inside / count
        return out

    def run(self, predict: PredictFn, params: Any) -> dict[str, float]:
        cov = self.coverage(predict, params)
        metrics: dict[str, float] = {}
        for j, level in enumerate(self.levels):
            name = f"coverage{100 * level:g}"
            metrics[name] = float(cov[:, j].mean())
            metrics.update({f"{name}@{n}": float(cov[i, j]) for i, n in enumerate(self.context_sizes)})
        metrics["calibration_error"] = float(np.abs(cov - np.asarray(self.levels)[None]).mean())
        return metrics


__all__ = ["QuantileCoverage"]
