"""Held-out evaluation on prior datasets: an evaluator object (``run(params) -> metrics``) that
serves training (``TrainConfig.loop.eval_every``), ``pfnjax eval`` and the benchmarks.

For every context size ``n`` the same held-out datasets and the same query rows are used:
rows ``[0, n)`` are the context and the last ``num_queries`` rows are the queries, so NLL
curves over ``n`` are paired comparisons. Datasets may use fewer features than ``F_max`` (the
run's feature-count distribution, as in training); each is predicted from its used columns only,
one batched call per feature count, so the model's used-feature rescaling matches training.

Metrics: the mean NLL for every head; the gap to the exact posterior NLL where the prior has
one (``gp``, ``linear``); accuracy and a class-frequency baseline where the predictive
distribution is over classes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pfnjax.config import TrainConfig
from pfnjax.distributions.categorical import CategoricalDistribution
from pfnjax.heads import BarHead, ClassHead, Head
from pfnjax.model import ModelConfig
from pfnjax.predict import PFN
from pfnjax.priors.base import Prior, all_features, prior_from_spec, prior_spec, sample_batch
from pfnjax.priors.from_config import FeatureCountSampler, feature_count_sampler
from pfnjax.runs import STREAM_EVAL, RunInfo, stream_key
from pfnjax.types import Array, BatchShape

DEFAULT_CONTEXT_SIZES = (1, 5, 10, 20, 50, 100)

OracleNLL = Callable[[Array, Array, Array, Array], Array]


class Evaluator(Protocol):
    """Anything that scores parameters: ``run(params) -> {metric: float}``."""

    def run(self, params: Any) -> dict[str, float]: ...


def oracle_for(prior: Prior) -> OracleNLL | None:
    """Per-query exact NLL ``(x_ctx, y_ctx, x_qry, y_qry) -> f32[M]`` for priors that have one."""
    from pfnjax.priors import gp, linear

    if isinstance(prior, gp.GPPrior):
        hyper, kernel = prior.hyper(), prior.kernel
        return lambda xc, yc, xq, yq: gp.exact_nll(xc, yc, xq, yq, hyper, kernel)
    if isinstance(prior, linear.LinearPrior):
        return lambda xc, yc, xq, yq: linear.exact_nll(xc, yc, xq, yq, prior)
    return None


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """Held-out prior datasets: ``x f32[B, T, F_max]`` (unused columns zero), ``y [B, T]``,
    ``num_features i32[B]``; the last ``num_queries`` rows of each dataset are its queries."""

    x: np.ndarray
    y: np.ndarray
    num_features: np.ndarray
    num_queries: int

    def feature_groups(self):
        """``(f, indices)`` of the datasets that use ``f`` features, for every ``f`` present."""
        for f in np.unique(self.num_features):
            yield int(f), np.flatnonzero(self.num_features == f)

    def context(self, idx: np.ndarray, n: int, f: int) -> tuple[np.ndarray, np.ndarray]:
        return self.x[idx, :n, :f], self.y[idx, :n]

    def queries(self, idx: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
        return self.x[idx, -self.num_queries:, :f], self.y[idx, -self.num_queries:]


def held_out_source(pfn: PFN) -> tuple[Prior, jax.Array, FeatureCountSampler]:
    """A trained PFN's held-out data source: its prior rebuilt from the saved spec, the run's
    evaluation PRNG stream (independent of the training stream), and its feature-count distribution."""
    if pfn.train_config is None or pfn.prior_spec is None:
        raise ValueError("this PFN has no saved run config and prior (was it built with PFN.init?)")
    cfg = pfn.train_config
    return prior_from_spec(pfn.prior_spec), stream_key(cfg.seed, STREAM_EVAL), feature_count_sampler(cfg.data)


def held_out_datasets(pfn: PFN, prior: Prior, key: jax.Array, context_sizes: Sequence[int], num_datasets: int,
                      num_queries: int, num_features: int | None = None,
                      num_features_sampler: FeatureCountSampler = all_features) -> HeldOut:
    """``num_datasets`` prior datasets of ``max(context_sizes) + num_queries`` rows each."""
    num_features = pfn.max_features if num_features is None else num_features
    shape = BatchShape(num_datasets, max(context_sizes) + num_queries, num_features)
    batch = jax.jit(lambda k: sample_batch(prior, k, shape, num_features_sampler=num_features_sampler))(key)
    return HeldOut(np.asarray(batch.x), np.asarray(batch.y), np.asarray(batch.num_features), num_queries)


@dataclasses.dataclass
class EvalRow:
    """Scores at one context size. ``exact_nll``/``gap`` need an oracle; ``accuracy`` and the
    class-frequency baseline need a distribution over classes."""

    context_size: int
    pfn_nll: float
    pfn_ci95: float
    exact_nll: float | None = None
    gap: float | None = None
    gap_ci95: float | None = None
    accuracy: float | None = None
    baseline_nll: float | None = None
    baseline_accuracy: float | None = None


@dataclasses.dataclass
class HeldOutEvaluator:
    """Scores parameters on fixed held-out prior datasets (drawn once, at construction)."""

    data: HeldOut
    context_sizes: tuple[int, ...]
    model_config: ModelConfig
    graphdef: nnx.GraphDef
    head: Head
    oracle: OracleNLL | None
    trained_with_missing: bool = False
    _oracle_nll: dict = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def for_pfn(cls, pfn: PFN, prior: Prior, key: jax.Array, *,
                context_sizes: Sequence[int] = DEFAULT_CONTEXT_SIZES, num_datasets: int = 200,
                num_queries: int = 50, num_features: int | None = None,
                num_features_sampler: FeatureCountSampler = all_features) -> "HeldOutEvaluator":
        data = held_out_datasets(pfn, prior, key, context_sizes, num_datasets, num_queries, num_features,
                                 num_features_sampler)
        return cls(data, tuple(context_sizes), pfn.model_config, pfn.graphdef, pfn.head, oracle_for(prior),
                   pfn.trained_with_missing)

    @classmethod
    def for_run(cls, cfg: TrainConfig, prior: Prior, model_config: ModelConfig, graphdef: nnx.GraphDef,
                head: Head, *, num_queries: int = 50) -> "HeldOutEvaluator":
        """The in-training evaluator of ``cfg.loop``: ``eval_datasets`` datasets from the run's eval stream."""
        missing = RunInfo(cfg, model_config, head, prior_spec(prior)).trained_with_missing
        pfn = PFN(model_config, graphdef, None, head, cfg, trained_with_missing=missing)
        return cls.for_pfn(pfn, prior, stream_key(cfg.seed, STREAM_EVAL),
                           context_sizes=cfg.loop.eval_context_sizes, num_datasets=cfg.loop.eval_datasets,
                           num_queries=num_queries, num_features_sampler=feature_count_sampler(cfg.data))

    def rows(self, params: Any) -> list[EvalRow]:
        """Per-context-size scores of the model with ``params``."""
        pfn = PFN(self.model_config, self.graphdef, params, self.head, trained_with_missing=self.trained_with_missing)
        data, num_datasets = self.data, self.data.x.shape[0]
        rows = []
        for n in self.context_sizes:
            nll = np.zeros(num_datasets)
            probs = None
            for f, idx in data.feature_groups():
                (x_c, y_c), (x_q, y_q) = data.context(idx, n, f), data.queries(idx, f)
                # every outcome the head can predict, so a query's class never falls outside the softmax
                dist = self.head.full_distribution(pfn.logits_from_cache(pfn.encode(x_c, y_c), x_q))
                nll[idx] = -np.asarray(dist.log_prob(jnp.asarray(y_q))).mean(axis=1)
                if isinstance(dist, CategoricalDistribution):
                    if probs is None:
                        probs = np.zeros((num_datasets, data.num_queries, dist.num_classes), np.float32)
                    probs[idx] = np.asarray(dist.probs)
            row = EvalRow(n, float(nll.mean()), ci95(nll))
            if self.oracle is not None:
                exact = self.exact_nll(n)
                row.exact_nll, row.gap, row.gap_ci95 = float(exact.mean()), float((nll - exact).mean()), ci95(nll - exact)
            if probs is not None:
                self._score_classes(row, probs, n)
            rows.append(row)
        return rows

    def run(self, params: Any) -> dict[str, float]:
        """Scores averaged over the context sizes, plus the NLL at each size (``nll@n``)."""
        rows = self.rows(params)
        metrics = {"nll": float(np.mean([r.pfn_nll for r in rows]))}
        metrics.update({f"nll@{r.context_size}": r.pfn_nll for r in rows})
        for name in ("gap", "accuracy", "baseline_nll"):
            values = [getattr(r, name) for r in rows if getattr(r, name) is not None]
            if values:
                metrics[name] = float(np.mean(values))
        return metrics

    def exact_nll(self, n: int) -> np.ndarray:
        """Per-dataset mean query NLL of the exact posterior at context size ``n`` (needs an oracle;
        computed once per size and cached, as it does not depend on the parameters)."""
        if n not in self._oracle_nll:  # the oracle does not depend on params: compute once per size
            exact = np.zeros(self.data.x.shape[0])
            batched = jax.jit(jax.vmap(self.oracle))
            for f, idx in self.data.feature_groups():
                (x_c, y_c), (x_q, y_q) = self.data.context(idx, n, f), self.data.queries(idx, f)
                exact[idx] = np.asarray(batched(x_c, y_c, x_q, y_q)).mean(axis=1)
            self._oracle_nll[n] = exact
        return self._oracle_nll[n]

    def _score_classes(self, row: EvalRow, probs: np.ndarray, n: int) -> None:
        y = self.data.y.astype(np.int64)
        y_q, n_cls = y[:, -self.data.num_queries:], probs.shape[-1]
        row.accuracy = float((probs.argmax(-1) == y_q).mean())
        counts = np.stack([np.bincount(r, minlength=n_cls) for r in y[:, :n]]) + 1.0  # add-one smoothing
        freq = counts / counts.sum(-1, keepdims=True)
        row.baseline_nll = float(-np.log(np.take_along_axis(freq, y_q, -1)).mean())
        row.baseline_accuracy = float((freq.argmax(-1)[:, None] == y_q).mean())


def evaluate(pfn: PFN, prior: Prior, key: jax.Array, **kwargs: Any) -> list[EvalRow]:
    """Per-context-size scores of a trained PFN on held-out datasets of ``prior`` (see
    :meth:`HeldOutEvaluator.for_pfn` for the keyword arguments)."""
    return HeldOutEvaluator.for_pfn(pfn, prior, key, **kwargs).rows(pfn.params)


def evaluate_against_oracle(pfn: PFN, prior: Prior, key: jax.Array, **kwargs: Any) -> list[EvalRow]:
    """Mean per-dataset NLL of a real-valued PFN (and of the exact posterior, if known) per context size."""
    if not isinstance(pfn.head, BarHead):
        raise ValueError("evaluate_against_oracle is for bar-distribution (regression) PFNs")
    return evaluate(pfn, prior, key, **kwargs)


def evaluate_classification(pfn: PFN, prior: Prior, key: jax.Array, **kwargs: Any) -> list[EvalRow]:
    """PFN NLL and accuracy on held-out prior datasets, next to a baseline that predicts the
    context's class frequencies (add-one smoothed) for every query."""
    if not isinstance(pfn.head, ClassHead):
        raise ValueError("evaluate_classification is for classification PFNs")
    return evaluate(pfn, prior, key, **kwargs)


def ci95(values: np.ndarray) -> float:
    """Half-width of the normal-approximation 95% confidence interval of the mean of ``values``."""
    return float(1.96 * values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def format_table(rows: list[EvalRow]) -> str:
    """A markdown table of the rows (with the columns the rows have), plus the mean gap."""
    if rows and rows[0].accuracy is not None:
        return format_classification_table(rows)
    lines = ["| context | PFN NLL | exact NLL | gap (PFN - exact) |", "|---:|---:|---:|---:|"]
    for r in rows:
        exact = "n/a" if r.exact_nll is None else f"{r.exact_nll:.4f}"
        gap = "n/a" if r.gap is None else f"{r.gap:+.4f} ± {r.gap_ci95:.4f}"
        lines.append(f"| {r.context_size} | {r.pfn_nll:.4f} ± {r.pfn_ci95:.4f} | {exact} | {gap} |")
    gaps = [r.gap for r in rows if r.gap is not None]
    if gaps:
        lines.append(f"\nmean gap over context sizes: {np.mean(gaps):.4f} nats")
    return "\n".join(lines)


def format_classification_table(rows: list[EvalRow]) -> str:
    lines = ["| context | PFN NLL | PFN accuracy | class-frequency NLL | class-frequency accuracy |",
             "|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.context_size} | {r.pfn_nll:.4f} | {r.accuracy:.3f} | {r.baseline_nll:.4f} | "
                     f"{r.baseline_accuracy:.3f} |")
    return "\n".join(lines)

