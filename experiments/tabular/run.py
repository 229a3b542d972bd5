"""The TabPFN v1 protocol on offline data: ``PFNClassifier`` and ``PFNRegressor`` against tuned baselines.

For every dataset (``datasets.py``; 23 classification, 12 regression) and each of 5 stratified
50/50 train/test splits, every method is fitted on the training half and scored on the test half:

* classification: ROC AUC (one-vs-one for multiclass, as TabPFN v1), accuracy, log loss, ECE
  (15 equal-width confidence bins, top label) and fit+predict seconds;
* regression: RMSE (and RMSE / the training split's target std, to average over datasets), and for the probabilistic models (PFN, GP) the NLL of the test targets in units
  of the training split's target standard deviation and the coverage of the central 90% interval.

Baselines are tuned per split by a small random search under 3-fold cross-validation with a time
budget (``baselines.py``; their seconds include the search). The PFN does no tuning: its seconds are
``fit`` + ``predict`` after one warm-up fit per dataset (XLA compiles once per shape bucket).

Results are cached per method in ``<out>/cache/`` (a rerun computes only what is missing; ``--fresh``
discards the cache) and written as ``results_<task>.md`` / ``.json`` and ``<task>_ranks.png``.

    python experiments/tabular/run.py                      # both tasks, all methods (about an hour on 2 cores)
    python experiments/tabular/run.py --task classification --methods pfn
    python experiments/tabular/run.py --smoke              # seconds: 3 datasets, 1 split, 1 configuration
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

# Appended, not prepended: imported from tests, this folder must not shadow other experiments' ``run``.
sys.path.append(str(Path(__file__).resolve().parents[1]))  # experiments/common.py
sys.path.append(str(Path(__file__).resolve().parent))

from common import device_name, pyplot, require  # noqa: E402
import baselines as bl  # noqa: E402
import datasets as data  # noqa: E402

HERE = Path(__file__).parent
TASKS = ("classification", "regression")
SMOKE_DATASETS = {"classification": ["iris", "penguins"], "regression": ["mass_cpus"]}
SMOKE_GP_ROWS = 100  # --smoke: the GP baselines fit at most this many rows
# Studentized range q_{0.05} for the Nemenyi test, by number of methods (Demšar 2006, Table 5a).
NEMENYI_Q05 = {2: 1.960, 3: 2.343, 4: 2.569, 5: 2.728, 6: 2.850, 7: 2.949, 8: 3.031, 9: 3.102, 10: 3.164}
# Each task's headline metric and whether larger is better.
HEADLINE = {"classification": ("auc", True), "regression": ("rmse", False)}


# --------------------------------------------------------------------------- metrics
def ece(proba: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of the top label over equal-width confidence bins."""
    conf, pred = proba.max(1), proba.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    err = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            err += sel.mean() * abs((pred[sel] == y[sel]).mean() - conf[sel].mean())
    return float(err)


def classification_metrics(proba: np.ndarray, y_codes: np.ndarray, n_classes: int) -> dict:
    from sklearn.metrics import log_loss, roc_auc_score

    proba = np.clip(proba, 1e-12, 1)
    proba = proba / proba.sum(1, keepdims=True)
    auc = (roc_auc_score(y_codes, proba[:, 1]) if n_classes == 2
           else roc_auc_score(y_codes, proba, multi_class="ovo", labels=np.arange(n_classes)))
    return {"auc": float(auc), "acc": float((proba.argmax(1) == y_codes).mean()),
            "logloss": float(log_loss(y_codes, proba, labels=np.arange(n_classes))), "ece": ece(proba, y_codes)}


def regression_metrics(pred: np.ndarray, y: np.ndarray, y_scale: float, nll: np.ndarray | None = None,
                       interval: np.ndarray | None = None) -> dict:
    rmse = float(np.sqrt(np.mean((pred - y) ** 2)))
    out = {"rmse": rmse, "nrmse": rmse / y_scale}  # nrmse: comparable across datasets
    if nll is not None:
        out["nll"] = float(np.mean(nll) - np.log(y_scale))  # per-row NLL of y / y_scale
        out["cover90"] = float(np.mean((y >= interval[:, 0]) & (y <= interval[:, 1])))
    return out


# --------------------------------------------------------------------------- methods
def run_pfn(ds, train, test, split: int, args) -> dict:
    from pfnjax.sklearn import PFNClassifier, PFNRegressor

    X_tr, X_te, y_tr, y_te = ds.X.iloc[train], ds.X.iloc[test], ds.y[train], ds.y[test]
    kw = dict(constant_columns="drop", random_state=split)
    if args.model:
        kw["model"] = args.model
    if args.n_estimators:
        kw["n_estimators"] = args.n_estimators
    kw.update(getattr(args, "pfn_options", None) or {})
    if ds.task == "classification":
        model = PFNClassifier(**kw)
        start = time.perf_counter()
        proba = model.fit(X_tr, y_tr).predict_proba(X_te)
        seconds = time.perf_counter() - start
        codes = np.searchsorted(model.classes_, y_te)
        return {**classification_metrics(proba, codes, len(model.classes_)), "seconds": seconds}
    model = PFNRegressor(**kw)
    start = time.perf_counter()
    model.fit(X_tr, y_tr)
    dist = model.predict_distribution(X_te)
    pred = np.asarray(dist.mean(), np.float64)
    seconds = time.perf_counter() - start
    nll = np.asarray(dist.nll(np.asarray(y_te, np.float32)), np.float64)
    interval = np.asarray(dist.icdf([0.05, 0.95]), np.float64).reshape(-1, 2)
    return {**regression_metrics(pred, y_te, float(np.std(y_tr)), nll, interval), "seconds": seconds}


def run_baseline(baseline: bl.Baseline, ds, train, test, split: int, args) -> dict:
    X_tr, X_te, y_tr, y_te = ds.X.iloc[train], ds.X.iloc[test], ds.y[train], ds.y[test]
    classification = ds.task == "classification"
    if classification:  # integer codes: XGBoost and LightGBM want 0..C-1
        classes = np.unique(ds.y)
        y_tr, y_te = np.searchsorted(classes, y_tr), np.searchsorted(classes, y_te)
    start = time.perf_counter()
    model, params, tried = bl.tune(baseline, X_tr, y_tr, ds.categorical, classification, split, args.budget_s,
                                   args.max_configs, args.max_rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if classification:
            proba = model.predict_proba(X_te)
            seconds = time.perf_counter() - start
            full = np.zeros((len(y_te), len(classes)))
            full[:, model.classes_] = proba  # a class missing from a subsample gets probability 0
            return {**classification_metrics(full, y_te, len(classes)), "seconds": seconds, "tried": tried,
                    "params": {k: str(v) for k, v in params.items()}}
        if baseline.probabilistic:
            mu, sd = model.predict(X_te, return_std=True)
            seconds = time.perf_counter() - start
            sd = np.maximum(sd, 1e-9)
            nll = 0.5 * np.log(2 * np.pi * sd**2) + 0.5 * ((y_te - mu) / sd) ** 2
            interval = np.stack([mu - 1.6449 * sd, mu + 1.6449 * sd], 1)
            metrics = regression_metrics(mu, y_te, float(np.std(y_tr)), nll, interval)
        else:
            pred = model.predict(X_te)
            seconds = time.perf_counter() - start
            metrics = regression_metrics(pred, y_te, float(np.std(y_tr)))
    return {**metrics, "seconds": seconds, "tried": tried, "params": {k: str(v) for k, v in params.items()}}


# --------------------------------------------------------------------------- the loop
def evaluate(task: str, methods: list[str], names: list[str], args, cache_dir: Path | None = None) -> dict:
    """``records[method][dataset] = [metrics of split 0, 1, ...]``, reusing and extending the cache
    (``<cache_dir>/<method>.json``, by default ``<out>/cache/<task>``)."""
    base = {b.name: b for b in (bl.classification_baselines() if task == "classification" else bl.regression_baselines())}
    cache_dir = cache_dir or args.out / "cache" / task
    records = {}
    for method in methods:
        path = cache_dir / f"{method}.json"
        cached = json.loads(path.read_text()) if path.exists() and not (args.fresh or args.smoke) else {}
        for name in names:
            ds = data.load(name)
            runs = cached.get(name, [])
            todo = list(enumerate(data.splits(ds, args.splits, args.seed)))[len(runs):]
            if method == "pfn" and todo:  # warm-up: XLA compiles once per shape bucket
                run_pfn(ds, *todo[0][1], todo[0][0], args)
            for split, (train, test) in todo:
                out = run_pfn(ds, train, test, split, args) if method == "pfn" else run_baseline(
                    base[method], ds, train, test, split, args)
                runs.append(out)
                print(f"{task} {method:14s} {name:20s} split {split}: " + ", ".join(
                    f"{k} {v:.3f}" for k, v in out.items() if isinstance(v, float)), flush=True)
            cached[name] = runs
            if not args.smoke:
                cache_dir.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(cached, indent=1))
        records[method] = {name: cached[name] for name in names}
    return records


def per_dataset(records: dict, metric: str) -> tuple[list[str], list[str], np.ndarray]:
    """``(methods, datasets, mean over splits [dataset, method])``."""
    methods = list(records)
    names = list(next(iter(records.values())))
    table = np.array([[np.mean([r[metric] for r in records[m][n]]) for m in methods] for n in names])
    return methods, names, table


def relative_gain(ours: np.ndarray, theirs: np.ndarray, larger_is_better: bool) -> np.ndarray:
    """How much better ``ours`` is, relative to ``theirs`` (positive: better)."""
    return (ours - theirs) / np.maximum(np.abs(theirs), 1e-12) * (1 if larger_is_better else -1)


def ranks(table: np.ndarray, larger_is_better: bool) -> np.ndarray:
    from scipy.stats import rankdata

    return np.stack([rankdata(-row if larger_is_better else row) for row in table])


def summary(task: str, records: dict, args) -> str:
    metric, larger = HEADLINE[task]
    methods, names, table = per_dataset(records, metric)
    r = ranks(table, larger)
    metrics = (["auc", "acc", "logloss", "ece", "seconds"] if task == "classification"
               else ["nrmse", "nll", "cover90", "seconds"])
    lines = [f"## {task}: {len(names)} datasets x {args.splits} splits, device {device_name()}", "",
             f"Mean rank by {metric} (1 = best; ties share ranks), then each metric's mean over datasets "
             "(NLL and coverage only for the probabilistic models; seconds = fit + predict, including the "
             "baselines' tuning).", "",
             "| method | mean rank | " + " | ".join(metrics) + " |", "|---|---:|" + "---:|" * len(metrics)]
    for j in np.argsort(r.mean(0)):
        cells = []
        for k in metrics:
            vals = [np.mean([x[k] for x in records[methods[j]][n]]) for n in names if k in records[methods[j]][n][0]]
            cells.append(f"{np.mean(vals):.3f}" if vals else "")
        lines.append(f"| {methods[j]} | {r.mean(0)[j]:.2f} | " + " | ".join(cells) + " |")
    lines += ["", f"Per dataset: {metric} (mean over splits; best in bold).", "",
              "| dataset | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
    for i, n in enumerate(names):
        best = table[i].max() if larger else table[i].min()
        lines.append(f"| {n} | " + " | ".join(f"**{v:.3f}**" if v == best else f"{v:.3f}" for v in table[i]) + " |")
    if "pfn" in methods:
        j = methods.index("pfn")
        lines += ["", f"PFN wins / ties / losses by {metric} (tie: relative difference < {args.tie:g}):", ""]
        for k, m in enumerate(methods):
            if m != "pfn":
                d = relative_gain(table[:, j], table[:, k], larger)
                lines.append(f"- vs {m}: {(d > args.tie).sum()} / {(abs(d) <= args.tie).sum()} / {(d < -args.tie).sum()}")
    return "\n".join(lines)


def plot(task: str, records: dict, args, path: Path) -> None:
    """Critical-difference diagram (Nemenyi, alpha 0.05) and PFN's wins/ties/losses per baseline."""
    plt = pyplot()
    metric, larger = HEADLINE[task]
    methods, names, table = per_dataset(records, metric)
    avg = ranks(table, larger).mean(0)
    k, n = len(methods), len(names)
    cd = NEMENYI_Q05.get(k, 3.2) * np.sqrt(k * (k + 1) / (6 * n))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [1.4, 1]})
    order = np.argsort(avg)
    for pos, j in enumerate(order):
        y = 0.9 - pos * 0.8 / max(k - 1, 1)
        ax.plot([avg[j], avg[j]], [1.0, y], color="k", lw=0.8)
        ax.plot([avg[j], k + 0.5 if pos >= k / 2 else 0.5], [y, y], color="k", lw=0.8)
        ax.text(k + 0.55 if pos >= k / 2 else 0.45, y, f"{methods[j]} ({avg[j]:.2f})", va="center",
                ha="left" if pos >= k / 2 else "right", fontsize=9, fontweight="bold" if methods[j] == "pfn" else None)
    ax.plot([1, 1 + cd], [1.12, 1.12], color="tab:red", lw=3)
    ax.text(1 + cd / 2, 1.16, f"CD = {cd:.2f}", ha="center", color="tab:red", fontsize=9)
    ax.set_xlim(-1.5, k + 2.5)
    ax.set_ylim(0, 1.25)
    ax.set_xticks(range(1, k + 1))
    ax.spines[["left", "right", "bottom"]].set_visible(False)
    ax.xaxis.tick_top()
    ax.set_yticks([])
    ax.set_title(f"{task}: mean rank by {metric} over {n} datasets (lower is better)", fontsize=10, pad=18)
    if "pfn" in methods:
        j = methods.index("pfn")
        others = [m for m in methods if m != "pfn"]
        wins, ties, losses = [], [], []
        for m in others:
            d = relative_gain(table[:, j], table[:, methods.index(m)], larger)
            wins.append((d > args.tie).sum()), ties.append((abs(d) <= args.tie).sum()), losses.append((d < -args.tie).sum())
        yy = np.arange(len(others))
        bx.barh(yy, wins, color="tab:green", label="PFN better")
        bx.barh(yy, ties, left=wins, color="lightgray", label=f"tie (relative < {args.tie:g})")
        bx.barh(yy, losses, left=np.add(wins, ties), color="tab:red", label="PFN worse")
        bx.set_yticks(yy, [f"vs {m}" for m in others])
        bx.set_xlabel("datasets")
        bx.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)
        bx.set_title(f"PFN wins / ties / losses by {metric}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=(*TASKS, "both"), default="both")
    parser.add_argument("--methods", nargs="+", help="subset of: pfn and the baselines (default: all)")
    parser.add_argument("--datasets", nargs="+", help="subset of the task's datasets")
    parser.add_argument("--model", help="the PFN: a shipped name or a run directory (default: the estimators' "
                        "defaults, cls-small and reg-small)")
    parser.add_argument("--n-estimators", type=int, help="PFN ensemble members (default: the estimator's, 4)")
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--budget-s", type=float, default=6.0, help="each baseline's search budget per split")
    parser.add_argument("--tie", type=float, default=0.002, help="win/tie/loss threshold: relative difference in the headline metric")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="3 datasets, 1 split, one configuration per baseline")
    parser.add_argument("--fresh", action="store_true", help="ignore cached results")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--max-configs", type=int, help="cap on each baseline's search draws")
    parser.add_argument("--max-rows", type=int, help="cap on the GP baselines' training rows")
    args = parser.parse_args(argv)
    require("sklearn")
    known = {"pfn"} | {b.name for b in bl.classification_baselines() + bl.regression_baselines()}
    if args.methods and set(args.methods) - known:
        parser.error(f"unknown methods {sorted(set(args.methods) - known)}; choose from {sorted(known)}")
    tasks = TASKS if args.task == "both" else (args.task,)
    for task in tasks:
        all_methods = ["pfn"] + [b.name for b in (bl.classification_baselines() if task == "classification"
                                                   else bl.regression_baselines())]
        methods = [m for m in args.methods if m in all_methods] if args.methods else all_methods
        if not methods:
            continue
        names = args.datasets or data.names(task)
        if args.datasets and set(names) - set(data.names(task)):
            names = [n for n in names if n in data.names(task)]
        if args.smoke:
            names, args.splits, args.max_configs, args.budget_s = SMOKE_DATASETS[task], 1, 1, 0.0
            args.max_rows = SMOKE_GP_ROWS
        if not names:
            continue
        records = evaluate(task, methods, names, args)
        suffix = "_smoke" if args.smoke else ""
        args.out.mkdir(parents=True, exist_ok=True)
        text = summary(task, records, args)
        (args.out / f"results_{task}{suffix}.md").write_text(text + "\n")
        (args.out / f"results_{task}{suffix}.json").write_text(json.dumps(
            {"seed": args.seed, "splits": args.splits, "n_estimators": args.n_estimators, "budget_s": args.budget_s,
             "device": device_name(), "records": records}, indent=1))
        if len(methods) > 1:
            plot(task, records, args, args.out / f"{task}_ranks{suffix}.png")
        print(text, flush=True)


if __name__ == "__main__":
    main()
