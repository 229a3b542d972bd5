"""The tuned baselines of the tabular benchmark and the small random search that tunes them.

Each baseline is a scikit-learn pipeline (imputation, one-hot categorical columns, and z-scoring
for the distance and kernel methods) and a search space. :func:`tune` draws configurations from the
space, scores each by cross-validation on the training split (ROC AUC OVO for classification,
RMSE for regression) until ``n_iter`` are done or the ``budget_s`` time budget is spent, then refits
the best on the whole training split. The GP models (Matern-5/2 with a constant scale, fitted by
maximising the marginal likelihood, which is their tuning) fit at most ``GP_MAX_ROWS`` training rows
(a random subsample above it): their cost grows with the cube of the rows. The search sizes are
small because the whole benchmark runs on a 2-core CPU next to model training.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Any, Callable

import numpy as np
from scipy.stats import loguniform, randint, uniform

GP_MAX_ROWS = 300
CV_FOLDS = 3


@dataclasses.dataclass(frozen=True)
class Baseline:
    """A model family: ``make(params, categorical columns, seed)`` builds a fitted-to-be pipeline."""

    name: str
    make: Callable[[dict, list[str], int], Any]
    space: dict[str, Any]
    n_iter: int
    probabilistic: bool = False  # regression: has a predictive normal (NLL, intervals)
    max_rows: int | None = None


def _pipeline(model, categorical: list[str], scale: bool):
    from sklearn.compose import ColumnTransformer, make_column_selector
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [SimpleImputer(strategy="median")] + ([StandardScaler()] if scale else [])
    columns = ColumnTransformer(
        [("num", make_pipeline(*numeric), make_column_selector(dtype_include="number")),
         ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                               OneHotEncoder(handle_unknown="ignore", sparse_output=False)), categorical)],
        sparse_threshold=0.0)
    return make_pipeline(columns, model)


def _gp_kernel(name: str):
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel

    base = {"rbf": RBF(), "matern15": Matern(nu=1.5), "matern25": Matern(nu=2.5)}[name]
    return ConstantKernel() * base, WhiteKernel


def classification_baselines() -> list[Baseline]:
    """Logistic regression, kNN, random forest, GP classifier, XGBoost, CatBoost, LightGBM."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.gaussian_process import GaussianProcessClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    def xgb(p, cat, seed):
        from xgboost import XGBClassifier

        return _pipeline(XGBClassifier(**p, tree_method="hist", n_jobs=1, random_state=seed, verbosity=0), cat, False)

    def catboost(p, cat, seed):
        from catboost import CatBoostClassifier

        return _pipeline(CatBoostClassifier(**p, thread_count=1, random_seed=seed, verbose=0,
                                            allow_writing_files=False), cat, False)

    def lightgbm(p, cat, seed):
        from lightgbm import LGBMClassifier

        return _pipeline(LGBMClassifier(**p, n_jobs=1, random_state=seed, verbose=-1), cat, False)

    return [
        Baseline("logistic", lambda p, cat, seed: _pipeline(LogisticRegression(**p, max_iter=2000), cat, True),
                 {"C": loguniform(1e-3, 1e3)}, 8),
        Baseline("knn", lambda p, cat, seed: _pipeline(KNeighborsClassifier(**p), cat, True),
                 {"n_neighbors": randint(1, 51), "weights": ["uniform", "distance"], "p": [1, 2]}, 8),
        Baseline("random_forest",
                 lambda p, cat, seed: _pipeline(RandomForestClassifier(**p, n_estimators=200, n_jobs=1,
                                                                      random_state=seed), cat, False),
                 {"max_features": ["sqrt", 0.3, 0.6, 1.0], "min_samples_leaf": [1, 2, 4, 8],
                  "max_depth": [None, 8, 16]}, 3),
        Baseline("gp", lambda p, cat, seed: _pipeline(GaussianProcessClassifier(
            kernel=_gp_kernel(p["kernel"])[0], random_state=seed), cat, True),
                 {"kernel": ["matern25"]}, 1, max_rows=GP_MAX_ROWS),
        Baseline("xgboost", xgb, {"n_estimators": randint(50, 400), "learning_rate": loguniform(0.01, 0.3),
                                  "max_depth": randint(2, 8), "subsample": uniform(0.5, 0.5),
                                  "colsample_bytree": uniform(0.5, 0.5), "min_child_weight": loguniform(1, 20),
                                  "reg_lambda": loguniform(1e-2, 10)}, 4),
        Baseline("catboost", catboost, {"iterations": randint(100, 300), "learning_rate": loguniform(0.02, 0.3),
                                        "depth": randint(3, 8), "l2_leaf_reg": loguniform(1, 10)}, 3),
        Baseline("lightgbm", lightgbm, {"n_estimators": randint(50, 400), "learning_rate": loguniform(0.01, 0.3),
                                        "num_leaves": randint(4, 64), "min_child_samples": randint(3, 40),
                                        "subsample": uniform(0.5, 0.5), "subsample_freq": [1],
                                        "colsample_bytree": uniform(0.5, 0.5)}, 4),
    ]


def regression_baselines() -> list[Baseline]:
    """Ridge, random forest, XGBoost, CatBoost and GP regression (the one with a predictive normal)."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.linear_model import Ridge

    def gp(p, cat, seed):
        kernel, white = _gp_kernel(p["kernel"])
        return _pipeline(GaussianProcessRegressor(kernel=kernel + white(), normalize_y=True, random_state=seed),
                         cat, True)

    def xgb(p, cat, seed):
        from xgboost import XGBRegressor

        return _pipeline(XGBRegressor(**p, tree_method="hist", n_jobs=1, random_state=seed, verbosity=0), cat, False)

    def catboost(p, cat, seed):
        from catboost import CatBoostRegressor

        return _pipeline(CatBoostRegressor(**p, thread_count=1, random_seed=seed, verbose=0,
                                           allow_writing_files=False), cat, False)

    return [
        Baseline("ridge", lambda p, cat, seed: _pipeline(Ridge(**p), cat, True), {"alpha": loguniform(1e-3, 1e3)}, 8),
        Baseline("random_forest",
                 lambda p, cat, seed: _pipeline(RandomForestRegressor(**p, n_estimators=200, n_jobs=1,
                                                                     random_state=seed), cat, False),
                 {"max_features": [0.3, 0.6, 1.0], "min_samples_leaf": [1, 2, 4, 8], "max_depth": [None, 8, 16]}, 3),
        Baseline("xgboost", xgb, {"n_estimators": randint(50, 400), "learning_rate": loguniform(0.01, 0.3),
                                  "max_depth": randint(2, 8), "subsample": uniform(0.5, 0.5),
                                  "colsample_bytree": uniform(0.5, 0.5), "min_child_weight": loguniform(1, 20)}, 4),
        Baseline("catboost", catboost, {"iterations": randint(100, 300), "learning_rate": loguniform(0.02, 0.3),
                                        "depth": randint(3, 8), "l2_leaf_reg": loguniform(1, 10)}, 3),
        Baseline("gp", gp, {"kernel": ["matern25"]}, 1, probabilistic=True,
                 max_rows=GP_MAX_ROWS),
    ]


def _cv_score(model, X, y, classification: bool, seed: int) -> float:
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score

    if classification:
        folds = min(CV_FOLDS, int(np.unique(y, return_counts=True)[1].min()))
        if folds < 2:
            return 0.0  # a class with one training row: no CV, every configuration ties
        cv, scoring = StratifiedKFold(folds, shuffle=True, random_state=seed), "roc_auc_ovo"
    else:
        cv, scoring = KFold(CV_FOLDS, shuffle=True, random_state=seed), "neg_root_mean_squared_error"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = cross_val_score(model, X, y, cv=cv, scoring=scoring, error_score=np.nan)
    return float(np.nanmean(scores)) if np.isfinite(scores).any() else -np.inf


def tune(baseline: Baseline, X, y, categorical: list[str], classification: bool, seed: int,
         budget_s: float, max_configs: int | None = None, max_rows: int | None = None) -> tuple[Any, dict, int]:
    """Random search (at most ``baseline.n_iter`` draws, or ``max_configs`` if smaller, stopping once
    ``budget_s`` is spent; ``max_rows`` lowers a row-capped baseline's cap) by
    cross-validation, then a refit of the best on all of ``(X, y)``. Returns ``(model, params, tried)``."""
    from sklearn.model_selection import ParameterSampler

    cap = baseline.max_rows if max_rows is None or baseline.max_rows is None else min(baseline.max_rows, max_rows)
    if cap is not None and len(y) > cap:
        from sklearn.model_selection import train_test_split

        keep, _ = train_test_split(np.arange(len(y)), train_size=cap, random_state=seed,
                                   stratify=y if classification else None)
        X, y = X.iloc[np.sort(keep)], y[np.sort(keep)]
    start, best, best_score, tried = time.perf_counter(), None, -np.inf, 0
    n_iter = baseline.n_iter if max_configs is None else min(baseline.n_iter, max_configs)
    for params in ParameterSampler(baseline.space, n_iter, random_state=seed):
        if n_iter == 1:  # nothing to choose between: no cross-validation
            best, tried = params, 1
            break
        score = _cv_score(baseline.make(params, categorical, seed), X, y, classification, seed)
        tried += 1
        if best is None or score > best_score:
            best, best_score = params, score
        if time.perf_counter() - start > budget_s:
            break
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = baseline.make(best, categorical, seed).fit(X, y)
    return model, best, tried
