"""Held-out evaluation: PFN negative log-likelihood against the prior's exact posterior.

For every context size ``n`` the same held-out datasets and the same query rows are used:
rows ``[0, n)`` are the context and the last ``num_queries`` rows are the queries, so NLL
curves over ``n`` are paired comparisons. Datasets may use fewer features than ``F_max`` (pass the
run's ``num_features_sampler``, as in training); each is predicted from its used columns only,
one batched call per feature count, so the model's used-feature rescaling matches training.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pfnjax.predict import PFN
from pfnjax.priors.base import Prior, all_features, sample_batch
from pfnjax.train.config import TrainConfig
from pfnjax.train.trainer import _STREAM_EVAL, build_prior, feature_count_sampler, stream_key
from pfnjax.types import Array, BatchShape

DEFAULT_CONTEXT_SIZES = (1, 5, 10, 20, 50, 100)

OracleNLL = Callable[[Array, Array, Array, Array], Array]


def oracle_for(prior: Prior) -> OracleNLL | None:
    """Per-query exact NLL ``(x_ctx, y_ctx, x_qry, y_qry) -> f32[M]`` for priors that have one."""
    from pfnjax.priors import gp

    if isinstance(prior, gp.GPPrior):
        hyper, kernel = prior.hyper(), prior.kernel
        return lambda xc, yc, xq, yq: gp.exact_nll(xc, yc, xq, yq, hyper, kernel)
    try:
        from pfnjax.priors import linear
    except ImportError:  # pragma: no cover - linear prior not installed
        return None
    if isinstance(prior, getattr(linear, "LinearPrior", ())) and hasattr(linear, "exact_nll"):
        return lambda xc, yc, xq, yq: linear.exact_nll(xc, yc, xq, yq, prior)
    return None


NumFeaturesSampler = Callable[[jax.Array, int], Array]


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


def run_held_out_source(cfg: TrainConfig) -> tuple[Prior, jax.Array, NumFeaturesSampler]:
    """A run's held-out data source: its prior, its evaluation PRNG stream (independent of the
    training stream), and its training feature-count distribution."""
    return build_prior(cfg), stream_key(cfg.seed, _STREAM_EVAL), feature_count_sampler(cfg)


def held_out_datasets(pfn: PFN, prior: Prior, key: jax.Array, context_sizes: Sequence[int], num_datasets: int,
                      num_queries: int, num_features: int | None = None,
                      num_features_sampler: NumFeaturesSampler = all_features) -> HeldOut:
    """``num_datasets`` prior datasets of ``max(context_sizes) + num_queries`` rows each."""
    num_features = pfn.max_features if num_features is None else num_features
    shape = BatchShape(num_datasets, max(context_sizes) + num_queries, num_features)
    batch = jax.jit(lambda k: sample_batch(prior, k, shape, num_features_sampler=num_features_sampler))(key)
    return HeldOut(np.asarray(batch.x), np.asarray(batch.y), np.asarray(batch.num_features), num_queries)


@dataclasses.dataclass
class EvalRow:
    context_size: int
    pfn_nll: float
    pfn_ci95: float
    exact_nll: float | None
    gap: float | None
    gap_ci95: float | None


def evaluate_against_oracle(
    pfn: PFN,
    prior: Prior,
    key: jax.Array,
    *,
    context_sizes: Sequence[int] = DEFAULT_CONTEXT_SIZES,
    num_datasets: int = 200,
    num_queries: int = 50,
    num_features: int | None = None,
    num_features_sampler: NumFeaturesSampler = all_features,
) -> list[EvalRow]:
    """Mean per-dataset NLL of the PFN (and of the exact posterior, if known) at each context size."""
    if pfn.task != "regression":
        raise ValueError("evaluate_against_oracle is for regression PFNs")
    data = held_out_datasets(pfn, prior, key, context_sizes, num_datasets, num_queries, num_features,
                             num_features_sampler)
    oracle = oracle_for(prior)
    oracle_batched = None if oracle is None else jax.jit(jax.vmap(oracle))

    rows = []
    for n in context_sizes:
        pfn_nll, exact = np.zeros(num_datasets), np.zeros(num_datasets)
        for f, idx in data.feature_groups():
            (x_c, y_c), (x_q, y_q) = data.context(idx, n, f), data.queries(idx, f)
            dist = pfn.predict(x_c, y_c, x_q)
            pfn_nll[idx] = -np.asarray(dist.log_prob(jnp.asarray(y_q))).mean(axis=1)
            if oracle_batched is not None:
                exact[idx] = np.asarray(oracle_batched(x_c, y_c, x_q, y_q)).mean(axis=1)
        row = EvalRow(n, float(pfn_nll.mean()), ci95(pfn_nll), None, None, None)
        if oracle_batched is not None:
            row.exact_nll = float(exact.mean())
            row.gap = float((pfn_nll - exact).mean())
            row.gap_ci95 = ci95(pfn_nll - exact)
        rows.append(row)
    return rows


def ci95(values: np.ndarray) -> float:
    """Half-width of the normal-approximation 95% confidence interval of the mean of ``values``."""
    return float(1.96 * values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def format_table(rows: list[EvalRow]) -> str:
    """A markdown table of the rows plus the mean gap."""
    lines = ["| context | PFN NLL | exact NLL | gap (PFN - exact) |", "|---:|---:|---:|---:|"]
    for r in rows:
        exact = "n/a" if r.exact_nll is None else f"{r.exact_nll:.4f}"
        gap = "n/a" if r.gap is None else f"{r.gap:+.4f} ± {r.gap_ci95:.4f}"
        lines.append(f"| {r.context_size} | {r.pfn_nll:.4f} ± {r.pfn_ci95:.4f} | {exact} | {gap} |")
    gaps = [r.gap for r in rows if r.gap is not None]
    if gaps:
        lines.append(f"\nmean gap over context sizes: {np.mean(gaps):.4f} nats")
    return "\n".join(lines)


@dataclasses.dataclass
class ClassificationEvalRow:
    context_size: int
    pfn_nll: float
    pfn_accuracy: float
    baseline_nll: float
    baseline_accuracy: float


def evaluate_classification(
    pfn: PFN,
    prior: Prior,
    key: jax.Array,
    *,
    context_sizes: Sequence[int] = DEFAULT_CONTEXT_SIZES,
    num_datasets: int = 200,
    num_queries: int = 50,
    num_features: int | None = None,
    num_features_sampler: NumFeaturesSampler = all_features,
) -> list[ClassificationEvalRow]:
    """PFN NLL and accuracy on held-out prior datasets, next to a baseline that predicts the
    context's class frequencies (add-one smoothed) for every query."""
    if pfn.task != "classification":
        raise ValueError("evaluate_classification is for classification PFNs")
    data = held_out_datasets(pfn, prior, key, context_sizes, num_datasets, num_queries, num_features,
                             num_features_sampler)
    y = data.y.astype(np.int64)
    y_q = y[:, -num_queries:]
    n_cls = pfn.max_classes
    rows = []
    for n in context_sizes:
        logp = np.zeros((num_datasets, num_queries, n_cls), np.float32)
        for f, idx in data.feature_groups():
            x_c, _ = data.context(idx, n, f)
            x_q, _ = data.queries(idx, f)
            logp[idx] = np.asarray(jax.nn.log_softmax(pfn.logits(x_c, y[idx, :n], x_q), axis=-1))
        nll = -np.take_along_axis(logp, y_q[..., None], -1)[..., 0].mean()
        acc = (logp.argmax(-1) == y_q).mean()
        counts = np.stack([np.bincount(row, minlength=n_cls) for row in y[:, :n]]) + 1.0
        freq = counts / counts.sum(-1, keepdims=True)
        base_nll = -np.log(np.take_along_axis(freq, y_q, -1)).mean()
        base_acc = (freq.argmax(-1)[:, None] == y_q).mean()
        rows.append(ClassificationEvalRow(n, float(nll), float(acc), float(base_nll), float(base_acc)))
    return rows


def format_classification_table(rows: list[ClassificationEvalRow]) -> str:
    lines = ["| context | PFN NLL | PFN accuracy | class-frequency NLL | class-frequency accuracy |",
             "|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.context_size} | {r.pfn_nll:.4f} | {r.pfn_accuracy:.3f} | {r.baseline_nll:.4f} | "
                     f"{r.baseline_accuracy:.3f} |")
    return "\n".join(lines)
