"""Ablations of the PFN's inference options on the tabular benchmark (same datasets and splits as ``run.py``).

Each variant is ``PFNClassifier`` / ``PFNRegressor`` with one setting changed from the defaults; the
table reports the mean over datasets of each metric and the mean ROC AUC (normalised RMSE) difference to the
defaults with its paired 95% interval over datasets. Results are cached per variant in
``results/cache/ablation_<task>/<variant>/`` (``run.evaluate``'s cache).

    python experiments/tabular/ablation.py                       # classification, every variant
    python experiments/tabular/ablation.py --task regression --variants default svd_none
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.append(str(Path(__file__).resolve().parents[1]))
sys.path.append(str(Path(__file__).resolve().parent))

from common import device_name  # noqa: E402
import datasets as data  # noqa: E402
import run as tabular  # noqa: E402

HERE = Path(__file__).parent
# name -> (estimator options, what it changes)
VARIANTS: dict[str, tuple[dict, str]] = {
    "default": ({}, "the defaults: 4 members, power transform on odd members, one-hot and SVD columns on members 2, 3"),
    "svd_none": ({"svd_features": "none"}, "no whitened principal components"),
    "svd_all": ({"svd_features": "all"}, "whitened principal components on every member"),
    "ordinal": ({"categorical_encoding": "ordinal"}, "categorical columns as ordinal codes only"),
    "onehot": ({"categorical_encoding": "onehot"}, "one-hot categorical columns on every member"),
    "members_1": ({"n_estimators": 1}, "a single member (no ensemble)"),
    "members_8": ({"n_estimators": 8}, "8 members"),
    "members_16": ({"n_estimators": 16}, "16 members"),
    "no_power": ({"preprocessing": "standard"}, "z-scoring only (no power transform)"),
    "temperature_1": ({"softmax_temperature": 1.0}, "softmax temperature 1 (classification only)"),
    "temperature_0.6": ({"softmax_temperature": 0.6}, "softmax temperature 0.6 (classification only)"),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=tabular.TASKS, default="classification")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--datasets", nargs="+")
    parser.add_argument("--model", help="the PFN (default: the estimator's default)")
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    variants = [v for v in args.variants if not (args.task == "regression" and v.startswith("temperature"))]
    if "default" not in variants:
        variants.insert(0, "default")
    names = args.datasets or data.names(args.task)
    metric, larger = tabular.HEADLINE[args.task]
    # RMSE is in each dataset's units; the normalised RMSE can be compared across datasets
    compare = "nrmse" if args.task == "regression" else metric
    results = {}
    for variant in variants:
        run_args = argparse.Namespace(model=args.model, n_estimators=None, pfn_options=VARIANTS[variant][0],
                                      out=args.out, splits=args.splits, seed=args.seed, fresh=False, smoke=False)
        cache_dir = args.out / "cache" / f"ablation_{args.task}" / variant
        results[variant] = tabular.evaluate(args.task, ["pfn"], names, run_args, cache_dir=cache_dir)["pfn"]
    text = table(args.task, results, names, compare, larger, args)
    (args.out / f"ablation_{args.task}.md").write_text(text + "\n")
    print(text)


def table(task: str, results: dict, names: list[str], metric: str, larger: bool, args) -> str:
    keys = ["auc", "acc", "logloss", "ece", "seconds"] if task == "classification" else ["nrmse", "nll", "cover90",
                                                                                         "seconds"]
    per = {v: np.array([np.mean([r[metric] for r in res[n]]) for n in names]) for v, res in results.items()}
    lines = [f"## PFN inference ablations, {task}: {len(names)} datasets x {args.splits} splits, device {device_name()}",
             "", f"Model: {args.model or 'the estimator default'}. Difference: the variant's mean {metric} minus the "
             "defaults', with a paired 95% interval over datasets (positive = the variant is "
             f"{'better' if larger else 'worse'}).", "",
             "| variant | change | " + " | ".join(keys) + f" | Δ{metric} vs default |", "|---|---|" + "---:|" * (len(keys) + 1)]
    for v, res in results.items():
        cells = [f"{np.mean([np.mean([r[k] for r in res[n]]) for n in names]):.4f}" for k in keys]
        d = per[v] - per["default"]
        half = 1.96 * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else 0.0
        delta = "" if v == "default" else f"{d.mean():+.4f} ± {half:.4f}"
        lines.append(f"| {v} | {VARIANTS[v][1]} | " + " | ".join(cells) + f" | {delta} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
