"""Fine-tuning the PFN on the tabular benchmark (same datasets, splits and tuned baselines as ``run.py``).

Two experiments:

* **per dataset** (default): ``PFNClassifier`` / ``PFNRegressor`` with ``fine_tune_steps`` of each
  ``--steps`` budget, fine-tuned inside ``fit`` on each split's training half, against the same
  estimator without fine-tuning and against the tuned baselines (cached by ``run.py``). Reports the
  metrics, the mean rank among the PFN variant and the baselines, the seconds fine-tuning adds per
  split and the datasets where it hurts (by more than 0.005 ROC AUC, or 1% RMSE).
* **corpus** (``--corpus``): leave one dataset out, fine-tune the PFN once on the union of the
  other datasets' tables (every row; each table through the estimators' preprocessing), and score
  the held-out dataset with the tuned model and the estimator's defaults: does a prior-trained
  model gain from real tables it was not tested on?

PFN results are cached per variant in ``results/cache/ablation_<task>/<variant>/`` (``run.evaluate``'s
cache); the tables go to ``results/finetune_<task>.md`` (``finetune_corpus_<task>.md``).

    python experiments/tabular/finetune.py --task classification --steps 20 50
    python experiments/tabular/finetune.py --task regression --corpus --corpus-steps 300
    python experiments/tabular/finetune.py --smoke                 # 2 datasets, 1 split, 5 steps
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.append(str(Path(__file__).resolve().parents[1]))
sys.path.append(str(Path(__file__).resolve().parent))

from common import device_name  # noqa: E402
import datasets as data  # noqa: E402
import run as tabular  # noqa: E402

HERE = Path(__file__).parent
HURT = {"classification": 0.005, "regression": 0.01}  # the bar: ROC AUC points, relative RMSE
METRICS = {"classification": ["auc", "acc", "logloss", "ece", "seconds"],
           "regression": ["nrmse", "nll", "cover90", "seconds"]}


def run_args(args, options: dict, model=None) -> argparse.Namespace:
    return argparse.Namespace(model=model or args.model, n_estimators=None, pfn_options=options, out=args.out,
                              splits=args.splits, seed=args.seed, fresh=args.smoke, smoke=args.smoke, budget_s=6.0,
                              max_configs=None, max_rows=None)


def mean_per_dataset(records: dict, names: list[str], metric: str) -> np.ndarray:
    return np.array([np.mean([r[metric] for r in records[n]]) for n in names])


def per_dataset_experiment(args, names: list[str]) -> str:
    task = args.task
    metric, larger = tabular.HEADLINE[task]
    compare = "nrmse" if task == "regression" else metric
    variants = {"default": {}, **{f"finetune_{s}": {"fine_tune_steps": s} for s in args.steps}}
    results = {}
    for variant, options in variants.items():
        cache = args.out / "cache" / f"ablation_{task}" / variant
        results[variant] = tabular.evaluate(task, ["pfn"], names, run_args(args, options), cache_dir=cache)["pfn"]
    baselines = {}
    if not args.smoke:
        every = tabular.bl.classification_baselines() if task == "classification" else tabular.bl.regression_baselines()
        methods = [b.name for b in every if (args.out / "cache" / task / f"{b.name}.json").exists()]
        baselines = tabular.evaluate(task, methods, names, run_args(args, {}))
    keys = METRICS[task]
    default = mean_per_dataset(results["default"], names, compare)
    lines = [f"## Fine-tuning the PFN per dataset, {task}: {len(names)} datasets x {args.splits} splits, "
             f"device {device_name()}", "",
             f"Model: {args.model or 'the estimator default'}. `finetune_S`: `fine_tune_steps=S` (early-stopped "
             "on 20% of each training half). Δ: the variant's mean minus the defaults', with a paired 95% interval "
             f"over datasets. Mean rank: by {metric} among the variant and the tuned baselines "
             f"({', '.join(baselines) or 'none cached'}). Added s: fine-tuning's seconds per split (fit + predict "
             "minus the defaults'). Hurt: datasets worse than the defaults by more than "
             f"{HURT[task]:g} {'ROC AUC' if task == 'classification' else 'relative RMSE'}.", "",
             "| variant | " + " | ".join(keys) + f" | Δ{compare} | mean rank | added s | hurt |",
             "|---|" + "---:|" * (len(keys) + 4)]
    hurt_lists = {}
    for variant, res in results.items():
        cells = [f"{mean_per_dataset(res, names, k).mean():.4f}" for k in keys]
        ours = mean_per_dataset(res, names, compare)
        d = ours - default
        half = 1.96 * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else 0.0
        if task == "classification":
            hurt = [(n, x) for n, x in zip(names, d) if x < -HURT[task]]
        else:
            hurt = [(n, x / max(b, 1e-12)) for n, x, b in zip(names, d, default) if x / max(b, 1e-12) > HURT[task]]
        hurt_lists[variant] = hurt
        rank = ""
        if baselines:
            table = np.stack([mean_per_dataset(res, names, metric)] +
                             [mean_per_dataset(baselines[m], names, metric) for m in baselines], axis=1)
            rank = f"{tabular.ranks(table, larger)[:, 0].mean():.2f}"
        added = (mean_per_dataset(res, names, "seconds") - mean_per_dataset(results["default"], names, "seconds"))
        lines.append(f"| {variant} | " + " | ".join(cells) + f" | {'' if variant == 'default' else f'{d.mean():+.4f} ± {half:.4f}'}"
                     f" | {rank} | {'' if variant == 'default' else f'{added.mean():.1f} (max {added.max():.1f})'}"
                     f" | {'' if variant == 'default' else len(hurt)} |")
    lines += ["", "Datasets where fine-tuning hurts (difference to the defaults):", ""]
    for variant, hurt in hurt_lists.items():
        if variant != "default":
            lines.append(f"- {variant}: " + (", ".join(f"{n} {x:+.4f}" for n, x in hurt) if hurt else "none"))
    return "\n".join(lines)


def corpus_tables(task: str, names: list[str], pfn) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every dataset as the numeric table the estimators see (categorical codes, constant columns
    dropped; class codes, or raw targets), skipping those the model cannot take whole."""
    from sklearn.preprocessing import LabelEncoder

    from pfnjax.sklearn import PFNClassifier, PFNRegressor

    tables = {}
    for name in names:
        ds = data.load(name)
        est = PFNClassifier(model=pfn) if task == "classification" else PFNRegressor(model=pfn)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            X, y = est._validate_X_y(ds.X, ds.y, pfn)
        if task == "classification":
            y = LabelEncoder().fit_transform(y).astype(np.int32)
            if y.max() + 1 > pfn.max_classes:
                continue  # output codes would need one fine-tune per code column
        tables[name] = (X, y)
    return tables


def corpus_experiment(args, names: list[str]) -> str:
    import jax

    import pfnjax
    from pfnjax.sklearn.base import DEFAULT_CLASSIFIER, DEFAULT_REGRESSOR

    task = args.task
    metric, larger = tabular.HEADLINE[task]
    compare = "nrmse" if task == "regression" else metric
    base_name = args.model or (DEFAULT_CLASSIFIER if task == "classification" else DEFAULT_REGRESSOR)
    pfn = pfnjax.load(base_name)
    tables = corpus_tables(task, names, pfn)
    default = tabular.evaluate(task, ["pfn"], names, run_args(args, {}),
                               cache_dir=args.out / "cache" / f"ablation_{task}" / "default")["pfn"]
    cache_path = args.out / "cache" / f"ablation_{task}" / f"corpus_{args.corpus_steps}" / "pfn.json"
    cached = json.loads(cache_path.read_text()) if cache_path.exists() and not args.smoke else {}
    seconds = {}
    for i, name in enumerate(names):
        if name in cached:
            continue
        others = [tables[n] for n in names if n != name and n in tables]
        start = time.perf_counter()
        tuned, history = pfnjax.finetune(pfn, others, args.corpus_steps, key=jax.random.key(args.seed + i),
                                         lr=args.corpus_lr, views=2, eval_every=max(1, args.corpus_steps // 10),
                                         progress=not args.smoke, return_history=True)
        seconds[name] = time.perf_counter() - start
        print(f"{task} corpus fine-tune without {name}: best step {history.best_step}, held-out NLL "
              f"{history.records[0].heldout_nll:.4f} -> {min(r.heldout_nll for r in history.records):.4f}, "
              f"{seconds[name]:.0f} s", flush=True)
        scratch = run_args(args, {}, model=tuned)
        scratch.fresh = True  # scored afresh: this tuned model is not the one of any earlier run
        with tempfile.TemporaryDirectory() as tmp:
            cached[name] = tabular.evaluate(task, ["pfn"], [name], scratch, cache_dir=Path(tmp))["pfn"][name]
        for r in cached[name]:
            r["finetune_seconds"], r["best_step"] = seconds[name], history.best_step
        if not args.smoke:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache_path.write_text(json.dumps(cached, indent=1))
    ours, base = mean_per_dataset(cached, names, compare), mean_per_dataset(default, names, compare)
    d = ours - base
    better = d > 0 if larger else d < 0
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else 0.0
    lines = [f"## Fine-tuning on a corpus of real tables, {task}: leave one dataset out, {len(names)} datasets x "
             f"{args.splits} splits, device {device_name()}", "",
             f"Model: {base_name}, fine-tuned {args.corpus_steps} steps (lr {args.corpus_lr:g}) on the other datasets' "
             f"tables, early-stopped on 20% of their rows; scored with the estimator's defaults.", "",
             f"Mean {compare}: corpus-tuned {ours.mean():.4f}, as shipped {base.mean():.4f}, difference "
             f"{d.mean():+.4f} ± {half:.4f} (paired 95% interval); better on {int(better.sum())} of {len(names)}.", "",
             f"| dataset | as shipped | corpus-tuned | best step |", "|---|---:|---:|---:|"]
    for n, a, b in zip(names, base, ours):
        lines.append(f"| {n} | {a:.4f} | {b:.4f} | {cached[n][0].get('best_step', '')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=tabular.TASKS, default="classification")
    parser.add_argument("--steps", type=int, nargs="+", default=[20, 50], help="fine_tune_steps budgets")
    parser.add_argument("--datasets", nargs="+")
    parser.add_argument("--model", help="the PFN (default: the estimator's default)")
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", action="store_true", help="the leave-one-dataset-out corpus experiment")
    parser.add_argument("--corpus-steps", type=int, default=300)
    parser.add_argument("--corpus-lr", type=float, default=3e-5)
    parser.add_argument("--smoke", action="store_true", help="2 datasets, 1 split, 5 steps, nothing cached")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    names = args.datasets or data.names(args.task)
    if args.smoke:
        names, args.splits, args.steps, args.corpus_steps = tabular.SMOKE_DATASETS[args.task][:2], 1, [5], 5
    if any(s < 1 for s in args.steps) or args.corpus_steps < 1:
        parser.error("step budgets must be >= 1")
    text = corpus_experiment(args, names) if args.corpus else per_dataset_experiment(args, names)
    if not args.smoke:
        name = f"finetune_corpus_{args.task}.md" if args.corpus else f"finetune_{args.task}.md"
        (args.out / name).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
