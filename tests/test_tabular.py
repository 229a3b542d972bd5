"""Tabular estimator features (output codes for many classes, bucketed shapes, categorical columns,
pickling, reproducibility, bad input), the regression prior bag, and the offline tabular benchmark."""

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from pfnjax import predict as predict_module
from pfnjax.sklearn import PFNClassifier, PFNRegressor, ecoc_codebook
from pfnjax.sklearn.members import member_columns

ROOT = Path(__file__).resolve().parents[1]


def _load_tabular_run():
    """experiments/tabular/run.py under its own module name (other experiments also have a ``run``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tabular_run", ROOT / "experiments" / "tabular" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tab_run = _load_tabular_run()
tab_data = tab_run.data

pytestmark = pytest.mark.usefixtures("full_precision")


# --------------------------------------------------------------------------- many classes


def test_ecoc_codebook_columns_are_balanced_groupings_with_distinct_rows():
    book = ecoc_codebook(23, 10, np.random.default_rng(0))
    assert book.shape == (23, 4 * 2)  # ceil(log 23 / log 10) = 2 digits, redundancy 4
    assert len(np.unique(book, axis=0)) == 23
    for col in book.T:
        counts = np.bincount(col, minlength=10)
        assert counts.max() - counts.min() <= 1  # 23 classes over 10 groups: 2 or 3 each


def test_many_classes_via_output_codes_match_logistic_regression():
    """15 well-separated classes on a 10-class model: output codes reach logistic regression's
    accuracy and log loss within a small margin, and the probabilities are a distribution."""
    x, y = make_blobs(600, n_features=4, centers=15, cluster_std=0.7, random_state=0)
    labels = np.array([f"c{k:02d}" for k in y])
    clf = PFNClassifier(model="cls-tiny", n_estimators=2, random_state=0).fit(x[:300], labels[:300])
    proba = clf.predict_proba(x[300:])
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-9)
    assert clf.ecoc_codebook_.shape[0] == 15 and len(clf.ecoc_members_) == clf.ecoc_codebook_.shape[1]
    lr = LogisticRegression(max_iter=5000).fit(x[:300], labels[:300])
    acc = (clf.predict(x[300:]) == labels[300:]).mean()
    assert acc >= lr.score(x[300:], labels[300:]) - 0.03, acc
    assert acc > 0.9
    codes = np.searchsorted(clf.classes_, labels[300:])
    assert log_loss(codes, proba, labels=range(15)) < 0.5
    with pytest.raises(ValueError, match="15 classes, but model 'cls-tiny' supports at most 10"):
        PFNClassifier(model="cls-tiny", many_classes="error").fit(x[:300], labels[:300])


# --------------------------------------------------------------------------- shapes and reproducibility


def test_predict_proba_does_not_recompile_per_query_count_and_is_batch_invariant():
    x, y = make_blobs(400, n_features=5, centers=3, random_state=1)
    clf = PFNClassifier(model="cls-tiny", n_estimators=3, chunk_size=128, random_state=7).fit(x[:200], y[:200])
    full = clf.predict_proba(x[200:])
    compiled = predict_module._decode_jit._cache_size()
    pieces = [clf.predict_proba(x[200 + s:200 + e]) for s, e in ((0, 1), (1, 6), (6, 133), (133, 200))]
    assert predict_module._decode_jit._cache_size() == compiled  # 1, 5, 127 and 67 rows: no new program
    np.testing.assert_array_equal(np.concatenate(pieces), full)
    again = PFNClassifier(model="cls-tiny", n_estimators=3, chunk_size=128, random_state=7).fit(x[:200], y[:200])
    np.testing.assert_array_equal(again.predict_proba(x[200:]), full)
    other = PFNClassifier(model="cls-tiny", n_estimators=3, chunk_size=128, random_state=8).fit(x[:200], y[:200])
    assert not np.array_equal(other.predict_proba(x[200:]), full)  # the seed matters (permutations)


# --------------------------------------------------------------------------- categorical columns


def _categorical_frame(n, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "num": rng.normal(size=n),
        "colour": pd.Categorical(rng.choice(["red", "green", "blue"], n), categories=["red", "green", "blue"]),
        "size": rng.choice(["S", "M", "L"], n).astype(object),
    })
    y = ((frame["colour"] == "red").to_numpy() * 1.5 + frame["num"].to_numpy() > 0.5).astype(int)
    return frame, y


def test_categorical_columns_equal_their_ordinal_codes():
    frame, y = _categorical_frame(200)
    clf = PFNClassifier(model="cls-tiny", categorical_encoding="ordinal", random_state=0).fit(frame[:120], y[:120])
    assert clf.categorical_encoder_.categories_ == {1: ["red", "green", "blue"], 2: ["L", "M", "S"]}
    codes = np.column_stack([frame["num"], frame["colour"].cat.codes, frame["size"].map({"L": 0, "M": 1, "S": 2})])
    ref = PFNClassifier(model="cls-tiny", random_state=0).fit(codes[:120].astype(float), y[:120])
    np.testing.assert_array_equal(clf.predict_proba(frame[120:]), ref.predict_proba(codes[120:].astype(float)))
    assert clf.score(frame[120:], y[120:]) > 0.85
    # an unseen level is a missing value, imputed like NaN
    unseen = frame[120:].copy()
    unseen["size"] = "XL"
    nan = codes[120:].astype(float)
    nan[:, 2] = np.nan
    np.testing.assert_array_equal(clf.predict_proba(unseen), ref.predict_proba(nan))


def test_onehot_members_equal_a_model_fitted_on_indicator_columns():
    frame, y = _categorical_frame(200)
    kw = dict(model="cls-tiny", n_estimators=1, feature_shuffling="none", svd_features="none", random_state=0)
    clf = PFNClassifier(categorical_encoding="onehot", **kw).fit(frame[:120], y[:120])
    assert clf.ensemble_[0]["onehot"] == {1: 3, 2: 3}

    def indicators(part):
        colour = part["colour"].cat.codes.to_numpy()[:, None] == np.arange(3)
        size = part["size"].map({"L": 0, "M": 1, "S": 2}).to_numpy()[:, None] == np.arange(3)
        return np.column_stack([part["num"], colour, size]).astype(float)

    ref = PFNClassifier(**kw).fit(indicators(frame[:120]), y[:120])
    np.testing.assert_allclose(clf.predict_proba(frame[120:]), ref.predict_proba(indicators(frame[120:])), atol=1e-6)
    # the defaults ("mixed"): members 2 and 3 of 4 see one-hot columns (7) and whitened principal
    # components (3 more fit cls-tiny's 10 columns), so the members' widths differ; each member's
    # logits equal the PFN's on that member's columns alone
    mixed = PFNClassifier(model="cls-tiny", n_estimators=4, random_state=0).fit(frame[:120], y[:120])
    assert [bool(m["onehot"]) for m in mixed.ensemble_] == [False, False, True, True]
    assert [m["svd"] for m in mixed.ensemble_] == [False, False, True, True]
    assert np.asarray(mixed._context_cache.num_features).tolist() == [3, 3, 10, 10]
    x_train, x_test = mixed._validate_X(frame[:120]), mixed._validate_X(frame[120:])
    member_logits = mixed._member_logits(x_test)
    for i, (m, scaler) in enumerate(zip(mixed.ensemble_, mixed.scalers_)):
        # the member alone, at its own width, through the plain PFN API
        x_ctx = scaler.transform_rows(member_columns(x_train, m))
        x_qry = scaler.transform_rows(member_columns(x_test, m))
        alone = mixed.pfn_.logits(x_ctx, m["class_permutation"][y[:120]], x_qry)
        np.testing.assert_allclose(member_logits[i], np.asarray(alone), atol=2e-4, err_msg=f"member {i}")
    # one-hot members fall back to codes when the indicators would not fit the model's width
    wide = PFNClassifier(model="cls-tiny", categorical_encoding="onehot", svd_features="all", n_estimators=1,
                         random_state=0)
    many = frame.assign(**{f"n{k}": frame["num"] * k for k in range(1, 6)})
    wide.fit(many[:120], y[:120])
    assert wide.ensemble_[0]["onehot"] == {} and np.asarray(wide._context_cache.num_features).tolist() == [10]  # 8 columns + 2 components
    with pytest.raises(ValueError, match="categorical_encoding"):
        PFNClassifier(model="cls-tiny", categorical_encoding="binary").fit(frame[:120], y[:120])
    with pytest.raises(ValueError, match="svd_features"):
        PFNClassifier(model="cls-tiny", svd_features=True).fit(frame[:120], y[:120])


def test_fitted_estimator_pickles_with_its_encoded_context(monkeypatch):
    frame, y = _categorical_frame(150, seed=1)
    clf = PFNClassifier(model="cls-tiny", random_state=0).fit(frame[:100], y[:100])
    expected = clf.predict_proba(frame[100:])
    blob = pickle.dumps(clf)

    def fail(*args, **kwargs):
        raise AssertionError("unpickling must not re-encode the training data")

    monkeypatch.setattr(predict_module.PFN, "encode", fail)
    loaded = pickle.loads(blob)
    np.testing.assert_array_equal(loaded.predict_proba(frame[100:]), expected)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("Est,model", [(PFNRegressor, "reg-tiny"), (PFNClassifier, "cls-tiny")])
def test_degenerate_columns_and_rows_raise_clear_errors(Est, model):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = rng.normal(size=40) if Est is PFNRegressor else np.arange(40) % 2
    const = x.copy()
    const[:, 1] = 3.0
    # by default a constant column is dropped with a warning, as a real table with one fits out of the box
    with pytest.warns(UserWarning, match=r"columns \[1\] are constant in the training rows.*dropped"):
        dropped = Est(model=model, random_state=0).fit(const, y)
    kept = Est(model=model, random_state=0).fit(x[:, [0, 2]], y)
    np.testing.assert_array_equal(dropped.predict(const), kept.predict(x[:, [0, 2]]))
    with pytest.raises(ValueError, match=r"columns \[1\] are constant"):
        Est(model=model, constant_columns="error").fit(const, y)
    with pytest.raises(ValueError, match="constant_columns"):
        Est(model=model, constant_columns="keep").fit(x, y)
    with pytest.raises(ValueError, match="n_samples=1"):
        Est(model=model).fit(x[:1], y[:1] if Est is PFNRegressor else np.array([0]))
    if Est is PFNClassifier:  # cls-tiny was trained with missing values
        gone = x.copy()
        gone[:, 2] = np.nan
        with pytest.raises(ValueError, match=r"columns \[2\] are entirely missing"):
            Est(model=model).fit(gone, y)


# --------------------------------------------------------------------------- the regression prior bag


def test_scm_regression_targets_are_standardised_and_the_mix_draws_every_component():
    import jax

    from pfnjax.priors import get_prior
    from pfnjax.priors.base import make_batch_sampler, uniform_feature_count
    from pfnjax.types import BatchShape

    shape = BatchShape(batch_size=64, seq_len=64, num_features=8)
    batch = make_batch_sampler(get_prior("scm_regression"), shape,
                               num_features_sampler=uniform_feature_count(1))(jax.random.key(0))
    y = np.asarray(batch.y)
    assert y.dtype == np.float32 and np.isfinite(y).all()
    std = y.std(1)
    np.testing.assert_allclose(y.mean(1), 0.0, atol=1e-4)
    assert np.all((np.abs(std - 1) < 1e-3) | (std < 1e-6))  # z-scored (or a constant target)
    mix = get_prior("tabular_regression_mix")
    assert mix.task == "regression"
    comps = np.asarray(jax.vmap(mix.sample_component)(jax.random.split(jax.random.key(1), 4000)))
    freq = np.bincount(comps, minlength=3) / comps.size
    np.testing.assert_allclose(freq, [0.5, 0.3, 0.2], atol=3 * np.sqrt(0.25 / 4000))
    # every component's targets are z-scored, the GP's by the StandardizedTargets wrapper
    gp_part = mix.priors[1]
    y = np.asarray(make_batch_sampler(gp_part, shape, num_features_sampler=uniform_feature_count(1))(
        jax.random.key(2)).y)
    np.testing.assert_allclose(y.mean(1), 0.0, atol=1e-4)
    np.testing.assert_allclose(y.std(1), 1.0, atol=1e-3)
    raw = np.asarray(make_batch_sampler(gp_part.base, shape, num_features_sampler=uniform_feature_count(1))(
        jax.random.key(2)).y)
    np.testing.assert_allclose(y, (raw - raw.mean(1, keepdims=True)) / raw.std(1, keepdims=True), atol=1e-4)


def test_tabular_gp_component_has_signal_on_wide_tables():
    """A random forest fitted on 150 rows explains held-out variance of the regression bag's GP
    component at 24 features; with lengthscales that do not grow with the width it does not (the GP
    is close to white noise there, which taught a first reg-small that wide tables are noise)."""
    import dataclasses

    import jax

    from sklearn.ensemble import RandomForestRegressor
    from sklearn.metrics import r2_score

    from pfnjax.priors import get_prior
    from pfnjax.priors.base import sample_batch
    from pfnjax.types import BatchShape

    gp_part = get_prior("tabular_regression_mix").priors[1]
    unscaled = dataclasses.replace(gp_part, base=dataclasses.replace(gp_part.base, lengthscale_dim_scaling=False))
    fractions = []
    for prior in (gp_part, unscaled):
        batch = jax.jit(lambda k, p=prior: sample_batch(p, k, BatchShape(12, 250, 24)))(jax.random.key(24))
        scores = []
        for x, y in zip(np.asarray(batch.x), np.asarray(batch.y)):
            rf = RandomForestRegressor(40, min_samples_leaf=3, random_state=0, n_jobs=1).fit(x[:150], y[:150])
            scores.append(r2_score(y[150:], rf.predict(x[150:])))
        fractions.append(np.mean(np.array(scores) > 0.2))
    assert fractions[0] >= 1 / 3 and fractions[1] < 1 / 6, fractions


# --------------------------------------------------------------------------- the benchmark


def test_benchmark_datasets_meet_the_protocol_limits():
    cls_names, reg_names = tab_data.names("classification"), tab_data.names("regression")
    assert len(cls_names) >= 20 and len(reg_names) >= 10
    for name in cls_names + reg_names:
        ds = tab_data.load(name)
        assert len(ds.y) <= 2000 and ds.X.shape[1] <= 100, name
        if ds.task == "classification":
            assert 2 <= ds.n_classes <= 10 and np.unique(ds.y, return_counts=True)[1].min() >= 2, name
        else:
            assert np.isfinite(ds.y).all(), name
    penguins = tab_data.load("penguins")
    assert penguins.categorical == ["island", "sex"] and penguins.X["bill_length_mm"].isna().sum() == 2


def test_split_protocol_and_single_member_classes():
    ds = tab_data.load("mass_fgl")
    splits = list(tab_data.splits(ds, 5, seed=0))
    assert len(splits) == 5
    for train, test in splits:
        assert abs(len(train) - len(test)) <= 1 and not set(train) & set(test)
        assert set(ds.y[train]) == set(ds.y[test]) == set(ds.y)
    single = tab_data.TabularDataset("t", "classification", "test", ds.X.iloc[:11], np.array([0] * 5 + [1] * 5 + [2]))
    with pytest.raises(ValueError, match=r"classes \[2\] have a single member"):
        next(tab_data.splits(single))


def test_ece_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(3), size=500)
    y = np.array([rng.choice(3, p=p) for p in proba])  # calibrated by construction
    assert tab_run.ece(proba, y) < 0.06
    confident = np.tile([0.99, 0.005, 0.005], (500, 1))
    assert abs(tab_run.ece(confident, y) - (0.99 - (y == 0).mean())) < 1e-12


def test_benchmark_smoke_runs_and_writes_tables_and_figures(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "experiments" / "tabular" / "run.py"), "--smoke",
                          "--methods", "pfn", "logistic", "ridge", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    text = (tmp_path / "results_classification_smoke.md").read_text()
    assert "| pfn |" in text and "| logistic |" in text and "wins / ties / losses" in text
    assert (tmp_path / "classification_ranks_smoke.png").stat().st_size > 10_000
    reg = (tmp_path / "results_regression_smoke.md").read_text()
    assert "| pfn |" in reg and "| ridge |" in reg
    import json

    records = json.loads((tmp_path / "results_classification_smoke.json").read_text())["records"]
    assert records["pfn"]["iris"][0]["auc"] > 0.95  # iris is easy for every method


# --------------------------------------------------------------------------- the default models


def test_default_models_handle_wide_tables_like_tuned_linear_models():
    """The defaults take 19-30 features (cls-tiny and reg-tiny stopped at 10) and match linear models."""
    from sklearn.datasets import load_breast_cancer, load_diabetes
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from pfnjax import sklearn as pfn_sklearn

    assert (pfn_sklearn.DEFAULT_CLASSIFIER, pfn_sklearn.DEFAULT_REGRESSOR) == ("cls-small", "reg-small")
    x, y = load_breast_cancer(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.5, stratify=y, random_state=0)
    clf = PFNClassifier(random_state=0).fit(x_tr, y_tr)
    assert clf.pfn_.max_features == 100
    lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(x_tr, y_tr)
    assert clf.score(x_te, y_te) >= lr.score(x_te, y_te) - 0.03
    assert log_loss(y_te, clf.predict_proba(x_te)) < 0.2
    x, y = load_diabetes(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.5, random_state=0)
    reg = PFNRegressor(random_state=0).fit(x_tr, y_tr)
    ridge = make_pipeline(StandardScaler(), RidgeCV()).fit(x_tr, y_tr)
    assert reg.score(x_te, y_te) >= ridge.score(x_te, y_te) - 0.05
    inside = (reg.predict_quantiles(x_te, (0.05, 0.95)) - y_te[:, None]) * [[1, -1]]
    assert 0.8 <= np.mean((inside <= 0).all(1)) <= 0.99  # 90% intervals cover about 90%
    # Hitters: 19 columns (3 categorical), log salary; the PFN is well ahead of ridge on it (R² 0.76 vs 0.47)
    ds = tab_data.load("isl_hitters")
    train, test = next(tab_data.splits(ds))
    reg = PFNRegressor(random_state=0).fit(ds.X.iloc[train], ds.y[train])
    assert reg.pfn_.max_features == 50
    x_num = pd.get_dummies(ds.X, dtype=float).to_numpy()
    ridge = make_pipeline(StandardScaler(), RidgeCV()).fit(x_num[train], ds.y[train])
    assert reg.score(ds.X.iloc[test], ds.y[test]) >= ridge.score(x_num[test], ds.y[test]) + 0.1
