"""The scikit-learn estimators on real data that ships with scikit-learn (offline), against baselines.

For every dataset and each of ``--splits`` random 70/30 train/test splits (stratified for
classification; the split seed also seeds the estimators), fit :class:`pfnjax.sklearn.PFNRegressor`
or :class:`pfnjax.sklearn.PFNClassifier` with their defaults (the shipped ``reg-small`` / ``cls-small``
models, up to 100 features, 4 ensemble members; all of each dataset's columns) next to a linear model (z-scored features) and a 200-tree random forest.

Reported as mean ± std over the splits: R² (regression) or accuracy, plus the test NLL (classification:
log loss; regression: the PFN's bar-distribution density in the units of y vs a Gaussian with the
training set's residual variance for the linear model), the PFN regressor's 90% interval coverage,
and fit+predict wall time per split.

    python benchmarks/sklearn_real_data.py --markdown benchmarks/results/sklearn_real_data_cpu.md
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine, make_friedman1
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import accuracy_score, log_loss, r2_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pfnjax.sklearn import PFNClassifier, PFNRegressor

from _results import report  # a sibling: a script's own folder is on sys.path


@dataclass(frozen=True)
class Dataset:
    name: str
    task: str  # "regression" | "classification"
    load: Callable[[], tuple[np.ndarray, np.ndarray]]


DATASETS = {
    "diabetes": Dataset("diabetes (442 rows, 10 features)", "regression", lambda: load_diabetes(return_X_y=True)),
    "friedman1": Dataset("friedman1 (600 rows, 10 features, noise 1)", "regression",
                         lambda: make_friedman1(n_samples=600, n_features=10, noise=1.0, random_state=0)),
    "iris": Dataset("iris (150 rows, 4 features, 3 classes)", "classification", lambda: load_iris(return_X_y=True)),
    "wine": Dataset("wine (178 rows, 13 features, 3 classes)", "classification", lambda: load_wine(return_X_y=True)),
    "breast_cancer": Dataset("breast_cancer (569 rows, 30 features, 2 classes)", "classification",
                             lambda: load_breast_cancer(return_X_y=True)),
}


def _gaussian_nll(y: np.ndarray, mean: np.ndarray, var: float) -> float:
    return float(np.mean(0.5 * np.log(2 * np.pi * var) + 0.5 * (y - mean) ** 2 / var))


def _models(task: str, seed: int) -> dict:
    if task == "regression":
        return {"PFN": PFNRegressor(random_state=seed),
                "linear": make_pipeline(StandardScaler(), LinearRegression()),
                "forest": RandomForestRegressor(n_estimators=200, random_state=seed, n_jobs=1)}
    return {"PFN": PFNClassifier(random_state=seed),
            "linear": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
            "forest": RandomForestClassifier(n_estimators=200, random_state=seed, n_jobs=1)}


def evaluate_split(ds: Dataset, seed: int) -> dict[str, dict[str, float]]:
    """Fit every model on one split; ``{model: {metric: value}}``."""
    x, y = ds.load()
    stratify = y if ds.task == "classification" else None
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=seed, stratify=stratify)
    out = {}
    for name, model in _models(ds.task, seed).items():
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model.fit(x_tr, y_tr)
            pred = model.predict(x_te)
            proba = model.predict_proba(x_te) if ds.task == "classification" else None
        seconds = time.perf_counter() - t0
        if ds.task == "classification":
            res = {"score": accuracy_score(y_te, pred), "nll": log_loss(y_te, proba, labels=model.classes_)}
        else:
            res = {"score": r2_score(y_te, pred)}
            if name == "PFN":
                dist = model.predict_distribution(x_te)
                res["nll"] = float(-np.mean(np.asarray(dist.log_prob(jnp.asarray(y_te, jnp.float32)))))
                q = model.predict_quantiles(x_te, (0.05, 0.95))
                res["coverage90"] = float(np.mean((y_te >= q[:, 0]) & (y_te <= q[:, 1])))
            elif name == "linear":
                resid_var = float(np.mean((y_tr - model.predict(x_tr)) ** 2))
                res["nll"] = _gaussian_nll(y_te, pred, resid_var)
        res["seconds"] = seconds
        out[name] = res
    return out


def run(datasets: list[str], splits: int) -> dict[str, list[dict]]:
    results = {}
    for key in datasets:
        results[key] = [evaluate_split(DATASETS[key], seed) for seed in range(splits)]
        print(f"{key}: done ({splits} splits)", file=sys.stderr)
    return results


def _ms(values) -> str:
    values = np.asarray(values, np.float64)
    return f"{values.mean():.3f} ± {values.std():.3f}"


def markdown(results: dict[str, list[dict]], splits: int) -> str:
    lines = [
        f"Mean ± std over {splits} random 70/30 splits (stratified for classification); estimators at their "
        "defaults (`reg-small` / `cls-small`, 4 ensemble members, power transform for half of them, "
        "`random_state=split`). Linear model = z-scoring + `LinearRegression` / `LogisticRegression`; "
        "forest = 200 trees.",
        "",
        "| dataset | metric | PFN estimator | linear model | random forest |",
        "|---|---|---:|---:|---:|",
    ]
    for key, per_split in results.items():
        ds = DATASETS[key]
        metric = "R²" if ds.task == "regression" else "accuracy"
        cells = [_ms([s[m]["score"] for s in per_split]) for m in ("PFN", "linear", "forest")]
        lines.append(f"| {ds.name} | {metric} | " + " | ".join(cells) + " |")
        nll = [(_ms([s[m]["nll"] for s in per_split]) if "nll" in per_split[0][m] else "n/a")
               for m in ("PFN", "linear", "forest")]
        lines.append("| | test NLL | " + " | ".join(nll) + " |")
        secs = [f"{np.mean([s[m]['seconds'] for s in per_split]):.2f}" for m in ("PFN", "linear", "forest")]
        lines.append("| | fit+predict s | " + " | ".join(secs) + " |")
    cover = {k: _ms([s["PFN"]["coverage90"] for s in v]) for k, v in results.items() if "coverage90" in v[0]["PFN"]}
    if cover:
        lines += ["", "PFNRegressor 90% interval coverage (`predict_quantiles(X, (0.05, 0.95))`) on the test rows: "
                  + "; ".join(f"{k} {v}" for k, v in cover.items()) + "."]
    lines += ["", "Regression NLL: the PFN's bar-distribution density in the units of y; the linear model's is a "
              "Gaussian with the training residual variance. The first PFN split includes compilation."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--markdown", help="write the table (with date, device, command) to this file")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    results = run(args.datasets, args.splits)
    table = markdown(results, args.splits)
    report(table, args.markdown, "scikit-learn estimators on real data", time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
