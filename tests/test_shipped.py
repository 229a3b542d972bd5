"""The shipped models predict as they did before the platform redesign: logits and estimator
outputs against reference files written by the code of the previous release
(``tests/data/shipped_logits.npz``, ``shipped_estimators.npz``; made with commit 27fc912).

On the machine that wrote them the logits were bitwise equal before the CPU attention became batched
matmuls, which sum in another order; the tolerance (1e-4 on logits of size ~20, i.e. ~5e-6 of their
scale) allows that and another CPU's float kernels, and is far below any change of weights or code path. The estimators' preprocessing now z-scores with the priors' own
implementation (``pfnjax.numerics.standardization``), which moves their outputs by ~3e-7."""

import warnings
from pathlib import Path

import numpy as np
import pytest

import pfnjax

DATA = Path(__file__).parent / "data"
REFERENCE = np.load(DATA / "shipped_logits.npz")


@pytest.mark.parametrize("name", sorted({key.split("/")[0] for key in REFERENCE.files}))
def test_shipped_model_logits_are_unchanged(name):
    assert name in pfnjax.shipped_models()
    pfn = pfnjax.load(name)
    x, y = REFERENCE[f"{name}/x"], REFERENCE[f"{name}/y"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # some references use fewer features than trained on
        logits = np.asarray(pfn.logits(x[:40], y, x[40:]))
    np.testing.assert_allclose(logits, REFERENCE[f"{name}/logits"], rtol=1e-5, atol=1e-4)


def test_default_estimators_predict_as_before():
    from sklearn.datasets import load_diabetes, load_iris

    from pfnjax.sklearn import PFNClassifier, PFNRegressor

    ref = np.load(DATA / "shipped_estimators.npz")
    X, y = load_iris(return_X_y=True)
    idx = np.random.default_rng(0).permutation(len(y))
    proba = PFNClassifier(random_state=0).fit(X[idx[:100]], y[idx[:100]]).predict_proba(X[idx[100:]])
    np.testing.assert_allclose(proba, ref["iris_proba"], rtol=1e-5, atol=1e-6)
    Xd, yd = load_diabetes(return_X_y=True)
    reg = PFNRegressor(random_state=0).fit(Xd[:200], yd[:200])
    np.testing.assert_allclose(reg.predict(Xd[200:260]), ref["diabetes_mean"], rtol=1e-5)
    np.testing.assert_allclose(reg.predict_quantiles(Xd[200:260]), ref["diabetes_quantiles"], rtol=1e-5, atol=1e-4)
