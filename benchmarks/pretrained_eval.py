"""The shipped pretrained models on held-out datasets from their own training prior.

For each model (``reg-tiny``, ``cls-tiny``), draw ``--num-datasets`` datasets from the prior it was
trained on, with 1..F_max used features as in training (the eval PRNG stream of its config), and
predict ``--num-queries`` held-out rows from contexts of each size, including sizes beyond the
training sequence length (192 rows), which is what the estimators' ``max_context_size=1024`` relies on.

* regression: y is standardised with the context's mean and std (as ``PFNRegressor`` does) and the
  NLL is reported in the original units, next to a Gaussian with the context's mean and variance;
  plus the median R² of the predictive mean over datasets.
* classification: NLL and accuracy next to predicting the context's class frequencies (add-one).

    python benchmarks/pretrained_eval.py --markdown benchmarks/results/pretrained_eval_cpu.md
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import pfnjax
from pfnjax.priors import sample_batch
from pfnjax.train.trainer import _STREAM_EVAL, build_prior, feature_count_sampler, stream_key
from pfnjax.types import BatchShape

from _results import write_markdown  # a sibling: a script's own folder is on sys.path

CONTEXT_SIZES = (5, 20, 50, 100, 190, 300, 500, 1000)


def held_out(pfn: pfnjax.PFN, num_datasets: int, n_rows: int):
    """``(x, y, num_features)`` of datasets from the model's training prior, feature counts as in training."""
    cfg = pfn.train_config
    shape = BatchShape(num_datasets, n_rows, cfg.num_features)
    sampler = feature_count_sampler(cfg)
    batch = jax.jit(lambda k: sample_batch(build_prior(cfg), k, shape, num_features_sampler=sampler))(
        stream_key(cfg.seed, _STREAM_EVAL))
    return np.asarray(batch.x), np.asarray(batch.y), np.asarray(batch.num_features)


def _by_feature_count(num_features: np.ndarray):
    """Dataset indices grouped by their used feature count (each group is one batched call)."""
    for f in np.unique(num_features):
        yield int(f), np.flatnonzero(num_features == f)


def eval_regression(pfn: pfnjax.PFN, sizes, num_datasets: int, num_queries: int) -> list[dict]:
    x, y, nf = held_out(pfn, num_datasets, max(sizes) + num_queries)
    xq, yq = x[:, -num_queries:], y[:, -num_queries:]
    rows = []
    for n in sizes:
        nll, base, r2 = np.zeros(num_datasets), np.zeros(num_datasets), np.zeros(num_datasets)
        for f, idx in _by_feature_count(nf):
            yc = y[idx, :n]
            mu, sd = yc.mean(1, keepdims=True), np.maximum(yc.std(1, keepdims=True), 1e-6)
            dist = pfn.predict(x[idx, :n, :f], (yc - mu) / sd, xq[idx, :, :f])
            z = jnp.asarray((yq[idx] - mu) / sd)
            nll[idx] = (-np.asarray(dist.log_prob(z)) + np.log(sd)).mean(1)
            base[idx] = (0.5 * np.log(2 * np.pi * sd**2) + 0.5 * ((yq[idx] - mu) / sd) ** 2).mean(1)
            pred = np.asarray(dist.mean()) * sd + mu
            ss_res = ((yq[idx] - pred) ** 2).sum(1)
            ss_tot = np.maximum(((yq[idx] - yq[idx].mean(1, keepdims=True)) ** 2).sum(1), 1e-12)
            r2[idx] = 1 - ss_res / ss_tot
        rows.append({"context": n, "nll": nll.mean(), "nll_ci": 1.96 * nll.std(ddof=1) / np.sqrt(num_datasets),
                     "baseline_nll": base.mean(), "median_r2": float(np.median(r2))})
    return rows


def eval_classification(pfn: pfnjax.PFN, sizes, num_datasets: int, num_queries: int) -> list[dict]:
    x, y, nf = held_out(pfn, num_datasets, max(sizes) + num_queries)
    y = y.astype(np.int64)
    xq, yq = x[:, -num_queries:], y[:, -num_queries:]
    rows = []
    for n in sizes:
        nll, acc = np.zeros(num_datasets), np.zeros(num_datasets)
        for f, idx in _by_feature_count(nf):
            logits = jnp.asarray(pfn.logits(x[idx, :n, :f], y[idx, :n], xq[idx, :, :f]))
            logp = np.asarray(jax.nn.log_softmax(logits, axis=-1))
            nll[idx] = -np.take_along_axis(logp, yq[idx][..., None], -1)[..., 0].mean(1)
            acc[idx] = (logp.argmax(-1) == yq[idx]).mean(1)
        counts = np.stack([np.bincount(r, minlength=pfn.max_classes) for r in y[:, :n]]) + 1.0
        freq = counts / counts.sum(-1, keepdims=True)
        rows.append({"context": n, "nll": nll.mean(), "accuracy": acc.mean(),
                     "baseline_nll": -np.log(np.take_along_axis(freq, yq, -1)).mean(),
                     "baseline_accuracy": (freq.argmax(-1)[:, None] == yq).mean()})
    return rows


def markdown(name: str, pfn: pfnjax.PFN, rows: list[dict]) -> str:
    cfg = pfn.train_config
    head = f"### `{name}` (prior `{cfg.prior}`, trained on sequences of {cfg.seq_len} rows)\n\n"
    if pfn.task == "regression":
        lines = ["| context | PFN NLL (95% CI) | Gaussian(context mean, var) NLL | median R² |", "|---:|---:|---:|---:|"]
        lines += [f"| {r['context']} | {r['nll']:.3f} ± {r['nll_ci']:.3f} | {r['baseline_nll']:.3f} | "
                  f"{r['median_r2']:.2f} |" for r in rows]
    else:
        lines = ["| context | PFN NLL | PFN accuracy | class-frequency NLL | class-frequency accuracy |",
                 "|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['context']} | {r['nll']:.3f} | {r['accuracy']:.3f} | {r['baseline_nll']:.3f} | "
                  f"{r['baseline_accuracy']:.3f} |" for r in rows]
    return head + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["reg-tiny", "cls-tiny"])
    parser.add_argument("--context-sizes", default=",".join(map(str, CONTEXT_SIZES)))
    parser.add_argument("--num-datasets", type=int, default=200)
    parser.add_argument("--num-queries", type=int, default=50)
    parser.add_argument("--markdown", help="write the tables (with date, device, command) to this file")
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.context_sizes.split(","))
    t0 = time.perf_counter()
    tables = []
    for name in args.models:
        pfn = pfnjax.load(name)
        evaluate = eval_regression if pfn.task == "regression" else eval_classification
        tables.append(markdown(name, pfn, evaluate(pfn, sizes, args.num_datasets, args.num_queries)))
    text = (f"{args.num_datasets} held-out prior datasets per model, {args.num_queries} queries each, "
            "1..F_max used features as in training.\n\n" + "\n\n".join(tables))
    print(text)
    if args.markdown:
        write_markdown(args.markdown, "Pretrained models on held-out prior data", text, time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
