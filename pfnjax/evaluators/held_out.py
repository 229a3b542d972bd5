"""Held-out evaluation on prior datasets (``{"type": "held_out"}``): NLL per context size, the gap
to the exact posterior where the prior has one (:meth:`pfnjax.priors.base.Prior.exact_predictive`),
and accuracy next to a class-frequency baseline where the predictive distribution is over classes.

For every context size ``n`` the same held-out datasets and the same query rows are used:
rows ``[0, n)`` are the context and the last ``num_queries`` rows are the queries, so NLL
curves over ``n`` are paired comparisons. Datasets may use fewer features than ``F_max`` (the
run's feature-count distribution, as in training); each is scored from its used columns (the
model zeroes the others and rescales by the used fraction, as in training). The data lives on
the device and every context size runs through one compiled predict function (contexts padded
to the largest size with a key-length mask).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pfnjax.distributions.categorical import CategoricalDistribution
from pfnjax.evaluators.base import EvalContext, PredictFn, make_predict_fn, register_evaluator
from pfnjax.heads import BarHead, ClassHead, Head
from pfnjax.priors.base import Prior, all_features, prior_from_spec, sample_batch
from pfnjax.priors.common import gaussian_nll
from pfnjax.priors.from_config import FeatureCountSampler, feature_count_sampler
from pfnjax.runs import STREAM_EVAL, stream_key
from pfnjax.types import Array, BatchShape

DEFAULT_CONTEXT_SIZES = (1, 5, 10, 20, 50, 100)
CHUNK = 128  # datasets per call: bounds the memory of the per-layer caches


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """Held-out prior datasets: ``x f32[B, T, F_max]`` (unused columns zero), ``y [B, T]``,
    ``num_features i32[B]``; the last ``num_queries`` rows of each dataset are its queries."""

    x: np.ndarray
    y: np.ndarray
    num_features: np.ndarray
    num_queries: int

    @property
    def num_datasets(self) -> int:
        return self.x.shape[0]

    def context(self, idx: np.ndarray, n: int, f: int) -> tuple[np.ndarray, np.ndarray]:
        """The first ``n`` rows and ``f`` columns of datasets ``idx`` (for baselines)."""
        return self.x[idx, :n, :f], self.y[idx, :n]

    def queries(self, idx: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
        return self.x[idx, -self.num_queries:, :f], self.y[idx, -self.num_queries:]

    def feature_groups(self):
        """``(f, indices)`` of the datasets that use ``f`` features, for every ``f`` present."""
        for f in np.unique(self.num_features):
            yield int(f), np.flatnonzero(self.num_features == f)


def held_out_datasets(prior: Prior, key: jax.Array, context_sizes: Sequence[int], num_datasets: int,
                      num_queries: int, num_features: int,
                      num_features_sampler: FeatureCountSampler = all_features) -> HeldOut:
    """``num_datasets`` prior datasets of ``max(context_sizes) + num_queries`` rows and
    ``num_features`` (F_max) columns each."""
    shape = BatchShape(num_datasets, max(context_sizes) + num_queries, num_features)
    batch = jax.jit(lambda k: sample_batch(prior, k, shape, num_features_sampler=num_features_sampler))(key)
    return HeldOut(np.asarray(batch.x), np.asarray(batch.y), np.asarray(batch.num_features), num_queries)


def held_out_source(pfn: Any) -> tuple[Prior, jax.Array, FeatureCountSampler]:
    """A trained PFN's held-out data source: its prior rebuilt from the saved spec, the run's
    evaluation PRNG stream (independent of the training stream), and its feature-count distribution."""
    if pfn.train_config is None or pfn.prior_spec is None:
        raise ValueError("this PFN has no saved run config and prior (was it built with PFN.init?)")
    cfg = pfn.train_config
    return prior_from_spec(pfn.prior_spec), stream_key(cfg.seed, STREAM_EVAL), feature_count_sampler(cfg.data)


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


def query_logits(predict: PredictFn, params: Any, data: HeldOut, n: int, n_max: int):
    """``(dataset indices, logits [chunk, Q, outputs], y_qry [chunk, Q])`` per chunk of datasets, with
    the first ``n`` rows as the context (padded to ``n_max`` rows, one compiled program for every
    ``n``). Chunks are padded to one size: only the first ``len(indices)`` rows are real."""
    size, q = min(CHUNK, data.num_datasets), data.num_queries
    for idx in _chunks(data.num_datasets, size):
        x, y, nf = _padded(data.x, idx, size), _padded(data.y, idx, size), _padded(data.num_features, idx, size)
        logits = predict(params, x[:, :n_max], y[:, :n_max], jnp.full((size,), n, jnp.int32), nf, x[:, -q:])
        yield idx, logits, y[:, -q:]


def _chunks(n: int, size: int):
    for start in range(0, n, size):
        yield np.arange(start, min(start + size, n))


def _padded(a: np.ndarray, idx: np.ndarray, size: int) -> jax.Array:
    """Rows ``idx`` of ``a``, padded to ``size`` rows with copies of the first (dropped afterwards),
    so every chunk has one shape and one compiled program."""
    rows = np.concatenate([idx, np.full(size - len(idx), idx[0])]) if len(idx) < size else idx
    return jnp.asarray(a[rows])


@register_evaluator("held_out")
@dataclasses.dataclass
class HeldOutEvaluator:
    """Scores parameters on fixed held-out prior datasets (drawn once, at construction)."""

    @dataclasses.dataclass(frozen=True)
    class Config:
        """Settings of ``{"type": "held_out"}``."""

        num_datasets: int = 64
        num_queries: int = 50
        context_sizes: tuple[int, ...] = (5, 20, 50)

        def __post_init__(self) -> None:
            object.__setattr__(self, "context_sizes", tuple(int(n) for n in self.context_sizes))
            if self.num_datasets < 1 or self.num_queries < 1:
                raise ValueError(f"held_out: num_datasets and num_queries must be >= 1, got {self.num_datasets}, "
                                 f"{self.num_queries}")
            if not self.context_sizes or min(self.context_sizes) < 1:
                raise ValueError(f"held_out: context_sizes must be positive ints, got {self.context_sizes}")

    data: HeldOut
    context_sizes: tuple[int, ...]
    head: Head
    oracle: Callable | None  # the prior's exact_predictive, if it has one
    graphdef: Any = None
    _oracle_nll: dict = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def from_config(cls, settings: "HeldOutEvaluator.Config", context: EvalContext) -> "HeldOutEvaluator":
        data = held_out_datasets(context.prior, context.key, settings.context_sizes, settings.num_datasets,
                                 settings.num_queries, context.io.max_features, context.num_features_sampler)
        return cls(data, settings.context_sizes, context.head, getattr(context.prior, "exact_predictive", None),
                   context.graphdef)

    @classmethod
    def for_pfn(cls, pfn: Any, prior: Prior, key: jax.Array, *,
                context_sizes: Sequence[int] = DEFAULT_CONTEXT_SIZES, num_datasets: int = 200,
                num_queries: int = 50, num_features: int | None = None,
                num_features_sampler: FeatureCountSampler = all_features) -> "HeldOutEvaluator":
        """The evaluator of a trained :class:`pfnjax.PFN` on datasets of ``prior``."""
        num_features = pfn.max_features if num_features is None else num_features
        data = held_out_datasets(prior, key, context_sizes, num_datasets, num_queries, num_features,
                                 num_features_sampler)
        return cls(data, tuple(int(n) for n in context_sizes), pfn.head, getattr(prior, "exact_predictive", None),
                   pfn.graphdef)

    # ------------------------------------------------------------------ scoring
    def _predict_for(self, predict: PredictFn | None) -> PredictFn:
        if predict is not None:
            return predict
        if self.graphdef is None:
            raise ValueError("pass the predict function (make_predict_fn(graphdef))")
        return make_predict_fn(self.graphdef)

    def _scores(self, predict: PredictFn, params: Any, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-dataset mean query NLL at context size ``n`` and, for classes, the query probabilities."""
        data = self.data
        nll = np.zeros(data.num_datasets)
        probs = None
        for idx, logits, y_q in query_logits(predict, params, data, n, max(self.context_sizes)):
            # every outcome the head can predict, so a query's class never falls outside the softmax
            dist = self.head.full_distribution(logits)
            nll[idx] = -np.asarray(dist.log_prob(y_q)).mean(axis=1)[: len(idx)]
            if isinstance(dist, CategoricalDistribution):
                if probs is None:
                    probs = np.zeros((data.num_datasets, data.num_queries, dist.num_classes), np.float32)
                probs[idx] = np.asarray(dist.probs)[: len(idx)]
        return nll, probs

    def rows(self, params: Any, predict: PredictFn | None = None) -> list[EvalRow]:
        """Per-context-size scores of the model with ``params``."""
        predict = self._predict_for(predict)
        rows = []
        for n in self.context_sizes:
            nll, probs = self._scores(predict, params, n)
            row = EvalRow(n, float(nll.mean()), ci95(nll))
            if self.oracle is not None:
                exact = self.exact_nll(n)
                row.exact_nll, row.gap, row.gap_ci95 = float(exact.mean()), float((nll - exact).mean()), ci95(nll - exact)
            if probs is not None:
                self._score_classes(row, probs, n)
            rows.append(row)
        return rows

    def run(self, predict: PredictFn | None, params: Any) -> dict[str, float]:
        """Scores averaged over the context sizes, plus the NLL at each size (``nll@n``)."""
        rows = self.rows(params, predict)
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
        if self.oracle is None:
            raise ValueError("this prior has no exact_predictive: there is no exact NLL")
        if n not in self._oracle_nll:
            data, n_max, q = self.data, max(self.context_sizes), self.data.num_queries
            out = np.zeros(data.num_datasets)
            size = min(CHUNK, data.num_datasets)
            for idx in _chunks(data.num_datasets, size):
                x, y = _padded(data.x, idx, size), _padded(data.y, idx, size)
                out[idx] = np.asarray(_exact_nll(self.oracle, x[:, :n_max], y[:, :n_max], x[:, -q:], y[:, -q:],
                                                 jnp.int32(n)))[: len(idx)]
            self._oracle_nll[n] = out
        return self._oracle_nll[n]

    def _score_classes(self, row: EvalRow, probs: np.ndarray, n: int) -> None:
        y = self.data.y.astype(np.int64)
        y_q, n_cls = y[:, -self.data.num_queries:], probs.shape[-1]
        row.accuracy = float((probs.argmax(-1) == y_q).mean())
        counts = np.stack([np.bincount(r, minlength=n_cls) for r in y[:, :n]]) + 1.0  # add-one smoothing
        freq = counts / counts.sum(-1, keepdims=True)
        row.baseline_nll = float(-np.log(np.take_along_axis(freq, y_q, -1)).mean())
        row.baseline_accuracy = float((freq.argmax(-1)[:, None] == y_q).mean())


def _exact_nll_impl(oracle: Callable, x_ctx: Array, y_ctx: Array, x_qry: Array, y_qry: Array, n: Array) -> Array:
    """Per-dataset mean query NLL of ``oracle`` (a prior's ``exact_predictive``) on the first ``n``
    context rows; the rest of the padded context is masked out."""
    mask = jnp.arange(x_ctx.shape[1]) < n

    def one(xc, yc, xq, yq):
        mean, var = oracle(xc, yc, xq, ctx_mask=mask)
        return gaussian_nll(yq, mean, var).mean()

    return jax.vmap(one)(x_ctx, y_ctx, x_qry, y_qry)


# the oracle (a bound method of a frozen, hashable prior) is static: one compile per prior and shape
_exact_nll = jax.jit(_exact_nll_impl, static_argnums=0)


def evaluate(pfn: Any, prior: Prior, key: jax.Array, **kwargs: Any) -> list[EvalRow]:
    """Per-context-size scores of a trained PFN on held-out datasets of ``prior`` (see
    :meth:`HeldOutEvaluator.for_pfn` for the keyword arguments)."""
    return HeldOutEvaluator.for_pfn(pfn, prior, key, **kwargs).rows(pfn.params)


def evaluate_against_oracle(pfn: Any, prior: Prior, key: jax.Array, **kwargs: Any) -> list[EvalRow]:
    """Mean per-dataset NLL of a real-valued PFN (and of the exact posterior, if known) per context size."""
    if not isinstance(pfn.head, BarHead):
        raise ValueError("evaluate_against_oracle is for bar-distribution (regression) PFNs")
    return evaluate(pfn, prior, key, **kwargs)


def evaluate_classification(pfn: Any, prior: Prior, key: jax.Array, **kwargs: Any) -> list[EvalRow]:
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


__all__ = ["DEFAULT_CONTEXT_SIZES", "EvalRow", "HeldOut", "HeldOutEvaluator", "ci95", "evaluate",
           "evaluate_against_oracle", "evaluate_classification", "format_classification_table", "format_table",
           "held_out_datasets", "held_out_source", "query_logits"]
