"""scikit-learn estimators: sklearn's own estimator checks, agreement with manual computations
from the raw PFN, ensembling invariances, accuracy with the shipped models, and bad input."""

import pickle
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris, make_blobs
from sklearn.exceptions import NotFittedError
from sklearn.metrics import r2_score
from sklearn.utils.estimator_checks import parametrize_with_checks

import pfnjax
from pfnjax.distributions import bar
from pfnjax.sklearn import PFNClassifier, PFNRegressor, resolve_model

# Most tests here compare an estimator with a manual computation from the raw PFN, or predictions
# on permuted / subset inputs (sklearn's invariance checks): see conftest.full_precision.
pytestmark = pytest.mark.usefixtures("full_precision")


# Most tests pin the small shipped models (10 features): fast, and compared with their raw PFNs.
TINY = {PFNRegressor: "reg-tiny", PFNClassifier: "cls-tiny"}


@pytest.fixture(scope="module")
def reg_pfn():
    return resolve_model("reg-tiny")


@pytest.fixture(scope="module")
def cls_pfn():
    return resolve_model("cls-tiny")


def _smooth_problem(n, f=3, seed=0, noise=0.05):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(n, f))
    y = np.sin(1.5 * x[:, 0]) + 0.5 * x[:, 1] ** 2 - 0.7 * x[:, 2] + noise * rng.normal(size=n)
    return x, 100.0 + 20.0 * y  # an offset and scale far from standard units


# --------------------------------------------------------------------------- sklearn's checks


@parametrize_with_checks([PFNRegressor(random_state=0), PFNClassifier(random_state=0)])
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        check(estimator)


# --------------------------------------------------------------------------- regression


def test_single_member_without_preprocessing_equals_the_raw_pfn(reg_pfn):
    """n_estimators=1, preprocessing='none': the model sees the raw X and the standardised y, and
    the returned distribution is the raw PFN's with borders mapped to the units of y."""
    x, y = _smooth_problem(120)
    xc, yc, xq = x[:80], y[:80], x[80:]
    est = PFNRegressor(model="reg-tiny", n_estimators=1, preprocessing="none", random_state=0).fit(xc, yc)
    mu, sigma = yc.mean(), yc.std()
    raw = reg_pfn.predict(xc, (yc - mu) / sigma, xq)  # BarDistribution in standard units
    dist = est.predict_distribution(xq)
    np.testing.assert_allclose(np.exp(dist.logits), jax_softmax(raw.logits), atol=1e-5)
    np.testing.assert_allclose(dist.borders, np.asarray(reg_pfn.borders) * sigma + mu, rtol=1e-5)
    # mean and quantiles in the original units are the standard-unit ones mapped by sigma * . + mu
    np.testing.assert_allclose(est.predict(xq), sigma * np.asarray(raw.mean()) + mu, rtol=1e-4)
    qs = (0.05, 0.5, 0.95)
    np.testing.assert_allclose(est.predict_quantiles(xq, qs),
                               sigma * np.asarray(raw.quantile(jnp.asarray(qs))) + mu, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(dist.median()), sigma * np.asarray(raw.median()) + mu, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(dist.stddev()), sigma * np.asarray(raw.stddev()), rtol=1e-3)


def jax_softmax(logits):
    logits = np.asarray(logits, np.float64)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_regression_ensemble_equals_manual_mixture_of_members(reg_pfn):
    """Three members with random feature permutations and z-scoring: the prediction is the mixture
    of the raw PFN's predictions on the manually z-scored, permuted columns."""
    x, y = _smooth_problem(100, f=4, seed=1)
    xc, yc, xq = x[:70], y[:70], x[70:]
    est = PFNRegressor(model="reg-tiny", n_estimators=3, preprocessing="standard", outlier_sigma=None,
                       svd_features="none", random_state=3).fit(xc, yc)
    mean, std = xc.mean(0), xc.std(0)
    ys = (yc - yc.mean()) / yc.std()
    members = []
    for m in est.ensemble_:
        perm = m["feature_permutation"]
        members.append(reg_pfn.logits(((xc - mean) / std)[:, perm], ys, ((xq - mean) / std)[:, perm]))
    perms = [tuple(m["feature_permutation"]) for m in est.ensemble_]
    assert perms[0] == (0, 1, 2, 3) and len(set(perms)) > 1
    manual = bar.average_distributions(jnp.stack(members), axis=0)
    np.testing.assert_allclose(est.predict_distribution(xq).logits, manual, atol=2e-5)


def test_rotation_ensemble_is_invariant_to_rotating_the_columns():
    """With one member per cyclic rotation, rotating the input columns permutes the members only."""
    x, y = _smooth_problem(90, f=3, seed=2)
    kw = dict(n_estimators=3, preprocessing="standard", feature_shuffling="rotate", svd_features="none", random_state=0)
    a = PFNRegressor(model="reg-tiny", **kw).fit(x[:60], y[:60]).predict(x[60:])
    rot = [1, 2, 0]
    b = PFNRegressor(model="reg-tiny", **kw).fit(x[:60, rot], y[:60]).predict(x[60:, rot])
    np.testing.assert_allclose(a, b, rtol=1e-5)
    c = PFNRegressor(model="reg-tiny", **{**kw, "feature_shuffling": "none"}).fit(x[:60, rot], y[:60]).predict(x[60:, rot])
    assert np.abs(a - c).max() > 1e-4  # without the rotations the column order does matter


def test_regressor_beats_the_mean_and_quantiles_are_ordered():
    x, y = _smooth_problem(300, seed=3)
    est = PFNRegressor(model="reg-tiny", random_state=0).fit(x[:200], y[:200])
    pred = est.predict(x[200:])
    assert r2_score(y[200:], pred) > 0.3
    q = est.predict_quantiles(x[200:], (0.05, 0.5, 0.95))
    assert q.shape == (100, 3) and np.all(np.diff(q, axis=1) > 0)
    coverage = np.mean((y[200:] >= q[:, 0]) & (y[200:] <= q[:, 2]))
    assert coverage > 0.6, coverage
    dist = est.predict_distribution(x[200:])
    assert np.all(np.asarray(dist.ei(best_f=float(y[:200].max()))) >= 0)
    with pytest.raises(ValueError, match="quantiles"):
        est.predict_quantiles(x[:3], (0.5, 1.0))


def test_context_subsampling_warns_and_caps_the_context():
    x, y = _smooth_problem(150, seed=4)
    with pytest.warns(UserWarning, match="max_context_size=64"):
        est = PFNRegressor(model="reg-tiny", n_estimators=2, max_context_size=64, random_state=0).fit(x, y)
    assert est.n_context_ == 64
    rows = [m["context_rows"] for m in est.ensemble_]
    assert all(len(r) == 64 for r in rows) and not np.array_equal(rows[0], rows[1])
    assert np.isfinite(est.predict(x[:5])).all()


def test_fitted_regressor_pickles_and_clones():
    x, y = _smooth_problem(60, seed=5)
    est = PFNRegressor(model="reg-tiny", random_state=0).fit(x[:40], y[:40])
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict(x[40:]), est.predict(x[40:]))
    np.testing.assert_array_equal(clone(est).fit(x[:40], y[:40]).predict(x[40:]), est.predict(x[40:]))


# --------------------------------------------------------------------------- classification


@pytest.mark.parametrize("class_shuffling", ["shift", "random"])
def test_classifier_ensemble_equals_manual_logit_average_with_relabelled_classes(cls_pfn, class_shuffling):
    """Members with relabelled classes: the probabilities are softmax(mean of the members' logits,
    each read back in the original class order, / T)."""
    x, y = make_blobs(n_samples=80, centers=4, n_features=3, random_state=0)
    xc, yc, xq = x[:60], y[:60], x[60:]
    est = PFNClassifier(model="cls-tiny", n_estimators=3, preprocessing="standard", outlier_sigma=None, feature_shuffling="none",
                        class_shuffling=class_shuffling, softmax_temperature=0.7, svd_features="none",
                        random_state=1).fit(xc, yc)
    perms = [m["class_permutation"] for m in est.ensemble_]
    np.testing.assert_array_equal(perms[0], np.arange(4))
    assert len({tuple(p) for p in perms}) == 3 and all(sorted(p) == [0, 1, 2, 3] for p in perms)
    if class_shuffling == "shift":
        for i, p in enumerate(perms):
            np.testing.assert_array_equal(p, (np.arange(4) + i) % 4)
    xs_c, xs_q = (xc - xc.mean(0)) / xc.std(0), (xq - xc.mean(0)) / xc.std(0)
    logits = []
    for p in perms:
        lg = np.asarray(cls_pfn.logits(xs_c, p[yc], xs_q))[:, :4]
        logits.append(lg[:, p])  # the member's logit of class c sits at column p[c]
    expected = jax_softmax(np.mean(logits, axis=0) / 0.7)
    np.testing.assert_allclose(est.predict_proba(xq), expected, atol=1e-5)
    assert np.mean(est.predict(xq) == y[60:]) > 0.9


def test_classifier_single_member_equals_raw_pfn_probabilities(cls_pfn):
    x, y = make_blobs(n_samples=50, centers=2, n_features=2, random_state=3)
    est = PFNClassifier(model="cls-tiny", n_estimators=1, preprocessing="none", softmax_temperature=1.0).fit(x[:30], y[:30])
    raw = cls_pfn.predict(x[:30], y[:30], x[30:]).probs
    np.testing.assert_allclose(est.predict_proba(x[30:]), raw, atol=1e-5)


def test_classifier_accuracy_on_iris_and_blobs():
    x, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(y))
    tr, te = idx[:100], idx[100:]
    # The default model (cls-small) with its default ensemble; logistic regression scores 0.96.
    est = PFNClassifier(random_state=0).fit(x[tr], y[tr])
    assert est.score(x[te], y[te]) > 0.92
    proba = est.predict_proba(x[te])
    assert proba.shape == (50, 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-6)
    xb, yb = make_blobs(n_samples=300, centers=4, n_features=5, cluster_std=1.5, random_state=0)
    assert PFNClassifier(model="cls-tiny", random_state=0).fit(xb[:200], yb[:200]).score(xb[200:], yb[200:]) > 0.9


def test_string_labels_round_trip_and_proba_columns_follow_classes():
    x, y = make_blobs(n_samples=90, centers=3, n_features=2, random_state=1)
    names = np.array(["setosa", "virginica", "versicolor"])[y]
    est = PFNClassifier(model="cls-tiny", random_state=0).fit(x[:60], names[:60])
    assert list(est.classes_) == ["setosa", "versicolor", "virginica"]
    pred = est.predict(x[60:])
    assert pred.dtype.kind == "U" and set(pred) <= set(names)
    assert np.mean(pred == names[60:]) > 0.9
    # relabel so the sorted class order changes: columns move with classes_
    other = np.array(["c", "a", "b"])[y]
    est2 = PFNClassifier(model="cls-tiny", random_state=0).fit(x[:60], other[:60])
    p1, p2 = est.predict_proba(x[60:]), est2.predict_proba(x[60:])
    # A PFN is only approximately invariant to relabelling (each class index has its own
    # embedding; the class-shift ensemble covers cyclic shifts, not this reflection), so the
    # tolerance is loose; swapped columns would differ by ~0.9.
    for orig, new in (("setosa", "c"), ("virginica", "a"), ("versicolor", "b")):
        i, j = list(est.classes_).index(orig), list(est2.classes_).index(new)
        np.testing.assert_allclose(p1[:, i], p2[:, j], atol=0.1)


def test_classifier_imputes_missing_values_with_the_context_mean():
    """cls-tiny was trained with missing values: NaN in a query equals the context column mean."""
    x, y = make_blobs(n_samples=70, centers=2, n_features=3, random_state=2)
    est = PFNClassifier(model="cls-tiny", n_estimators=2, preprocessing="standard", outlier_sigma=None, random_state=0)
    est.fit(x[:50], y[:50])
    q = x[50:].copy()
    q_nan = q.copy()
    q_nan[::2, 1] = np.nan
    q[::2, 1] = x[:50, 1].mean()
    np.testing.assert_allclose(est.predict_proba(q_nan), est.predict_proba(q), atol=1e-5)
    x_ctx = x[:50].copy()
    x_ctx[::5, 0] = np.nan
    assert np.isfinite(est.fit(x_ctx, y[:50]).predict_proba(q_nan)).all()
    with pytest.raises(ValueError, match="infinity"):
        est.predict(np.where(np.isnan(q_nan), np.inf, q_nan))


def test_classifier_subsample_keeps_every_class():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    y = np.r_[np.zeros(197, int), [1, 2, 2]]
    x[197:] += 5
    with pytest.warns(UserWarning, match="max_context_size"):
        est = PFNClassifier(model="cls-tiny", n_estimators=3, max_context_size=32, random_state=0).fit(x, y)
    for m in est.ensemble_:
        assert set(y[m["context_rows"]]) == {0, 1, 2}


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("Est", [PFNRegressor, PFNClassifier])
def test_bad_input_raises_clear_errors(Est):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3))
    y = rng.normal(size=30) if Est is PFNRegressor else rng.integers(0, 3, size=30)
    with pytest.raises(NotFittedError):
        Est(model=TINY[Est]).predict(x)
    with pytest.raises(ValueError, match="supports at most 10"):
        Est(model=TINY[Est]).fit(rng.normal(size=(30, 11)), y)
    with pytest.raises(ValueError, match="0 sample"):
        Est(model=TINY[Est]).fit(x[:0], y[:0])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        Est(model=TINY[Est]).fit(x, y[:20])
    with pytest.raises(ValueError, match="infinity"):
        Est(model=TINY[Est]).fit(np.where(x > 2, np.inf, x), y)
    est = Est(model=TINY[Est], random_state=0).fit(x, y)
    with pytest.raises(ValueError, match="3 features"):
        est.predict(x[:, :2])
    with pytest.raises(ValueError, match="n_estimators"):
        Est(model=TINY[Est], n_estimators=0).fit(x, y)
    with pytest.raises(ValueError, match="preprocessing"):
        Est(model=TINY[Est], preprocessing="log").fit(x, y)
    wrong = "cls-tiny" if Est is PFNRegressor else "reg-tiny"
    with pytest.raises(ValueError, match="needs a"):
        Est(model=wrong).fit(x, y)
    with pytest.raises(pfnjax.CheckpointError):
        Est(model="/no/such/run").fit(x, y)


def test_regressor_rejects_nan_because_its_model_never_saw_missing_values():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 3)), rng.normal(size=30)
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        PFNRegressor(model="reg-tiny").fit(x, y)
    est = PFNRegressor(model="reg-tiny").fit(np.nan_to_num(x), y)
    with pytest.raises(ValueError, match="NaN"):
        est.predict(x)
    with pytest.raises(ValueError, match="NaN"):
        PFNRegressor(model="reg-tiny").fit(np.nan_to_num(x), np.r_[y[:-1], np.nan])


def test_classifier_class_count_errors():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    with pytest.raises(ValueError, match="only one class"):
        PFNClassifier(model="cls-tiny").fit(x, np.full(40, "a"))
    with pytest.raises(ValueError, match="11 classes, but model 'cls-tiny' supports at most 10"):
        PFNClassifier(model="cls-tiny", many_classes="error").fit(x, np.arange(40) % 11)
    with pytest.raises(ValueError, match="Unknown label type"):
        PFNClassifier(model="cls-tiny").fit(x, rng.normal(size=40))
    with pytest.raises(ValueError, match="class_shuffling"):
        PFNClassifier(model="cls-tiny", class_shuffling="sorted").fit(x, np.arange(40) % 2)
    with pytest.raises(ValueError, match="softmax_temperature"):
        PFNClassifier(model="cls-tiny", softmax_temperature=0).fit(x, np.arange(40) % 2)


def test_missing_scikit_learn_gives_a_clear_install_hint():
    import subprocess
    import sys

    code = "import sys; sys.modules['sklearn'] = None\ntry:\n    import pfnjax.sklearn\nexcept ImportError as e:\n    print('ERR', e)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "pip install 'pfnjax[sklearn]'" in out.stdout, out.stdout + out.stderr
    # the core package imports without it
    out = subprocess.run([sys.executable, "-c", "import sys; sys.modules['sklearn'] = None; import pfnjax; print('OK')"],
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "OK", out.stderr
