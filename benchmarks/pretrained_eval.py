"""The shipped pretrained models on held-out datasets from their own training prior.

For each model (default ``reg-tiny``, ``cls-tiny``; ``--models`` names others), draw ``--num-datasets`` datasets from the prior it was
trained on, with 1..F_max used features as in training (the eval PRNG stream of its config), and
predict ``--num-queries`` held-out rows from contexts of each size, including sizes beyond the
training sequence length (192 rows for the tiny models), which is what the estimators' ``max_context_size=1024`` relies on.

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

import jax.numpy as jnp
import numpy as np

import pfnjax
from pfnjax.evaluators import ci95, evaluate_classification, held_out_datasets, held_out_source

from _results import report  # a sibling: a script's own folder is on sys.path

CONTEXT_SIZES = (5, 20, 50, 100, 190, 300, 500, 1000)


def eval_regression(pfn: pfnjax.PFN, sizes, num_datasets: int, num_queries: int) -> list[dict]:
    prior, key, num_features_sampler = held_out_source(pfn)
    data = held_out_datasets(prior, key, sizes, num_datasets, num_queries, pfn.max_features,
                             num_features_sampler=num_features_sampler)
    rows = []
    for n in sizes:
        nll, base, r2 = np.zeros(num_datasets), np.zeros(num_datasets), np.zeros(num_datasets)
        for f, idx in data.feature_groups():
            (x_c, y_c), (x_q, y_q) = data.context(idx, n, f), data.queries(idx, f)
            mu, sd = y_c.mean(1, keepdims=True), np.maximum(y_c.std(1, keepdims=True), 1e-6)
            dist = pfn.predict(x_c, (y_c - mu) / sd, x_q)
            nll[idx] = (-np.asarray(dist.log_prob(jnp.asarray((y_q - mu) / sd))) + np.log(sd)).mean(1)
            base[idx] = (0.5 * np.log(2 * np.pi * sd**2) + 0.5 * ((y_q - mu) / sd) ** 2).mean(1)
            pred = np.asarray(dist.mean()) * sd + mu
            ss_tot = np.maximum(((y_q - y_q.mean(1, keepdims=True)) ** 2).sum(1), 1e-12)
            r2[idx] = 1 - ((y_q - pred) ** 2).sum(1) / ss_tot
        rows.append({"context": n, "nll": nll.mean(), "nll_ci": ci95(nll),
                     "baseline_nll": base.mean(), "median_r2": float(np.median(r2))})
    return rows


def eval_classification(pfn: pfnjax.PFN, sizes, num_datasets: int, num_queries: int) -> list[dict]:
    prior, key, num_features_sampler = held_out_source(pfn)
    rows = evaluate_classification(pfn, prior, key, context_sizes=sizes, num_datasets=num_datasets,
                                   num_queries=num_queries, num_features_sampler=num_features_sampler)
    return [{"context": r.context_size, "nll": r.pfn_nll, "accuracy": r.accuracy, "baseline_nll": r.baseline_nll,
             "baseline_accuracy": r.baseline_accuracy} for r in rows]


def markdown(name: str, pfn: pfnjax.PFN, rows: list[dict]) -> str:
    cfg = pfn.train_config
    lengths = " then ".join(f"{c.data.seq_len}" for _, c in cfg.stage_configs())
    head = f"### `{name}` (prior `{cfg.prior.name}`, trained on sequences of {lengths} rows)\n\n"
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
    report(text, args.markdown, "Pretrained models on held-out prior data", time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
