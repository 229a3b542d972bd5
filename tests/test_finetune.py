"""Fine-tuning (pfnjax.finetune and the estimators' fine_tune_steps): it lowers the NLL of unseen
rows of the table it was tuned on, zero steps change nothing, early stopping returns the starting
model when tuning hurts, the batch follows its definition, and bad input is refused."""

import pickle
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pfnjax
from pfnjax.fine_tuning import heldout_nll, split_batch
from pfnjax.sklearn import PFNClassifier, PFNRegressor


@pytest.fixture(scope="module")
def reg():
    return pfnjax.load("reg-tiny")


@pytest.fixture(scope="module")
def cls():
    return pfnjax.load("cls-tiny")


def _gp_table(n: int, seed: int):
    """One dataset of the ``gp`` prior (3 features, short lengthscale): a function reg-tiny's BNN prior fits poorly."""
    prior = pfnjax.get_prior("gp", lengthscale=0.4, noise=0.01)
    batch = pfnjax.sample_batch(prior, jax.random.key(seed), pfnjax.BatchShape(1, n, 3))
    return np.asarray(batch.x[0], np.float64), np.asarray(batch.y[0], np.float64)


def _fresh_nll(pfn, x_ctx, y_ctx, x_new, y_new) -> float:
    """Mean NLL of new rows given the context, standardised as the regressor does."""
    mu, sd = x_ctx.mean(0), x_ctx.std(0)
    m, s = y_ctx.mean(), y_ctx.std()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        logits = pfn.logits((x_ctx - mu) / sd, (y_ctx - m) / s, (x_new - mu) / sd)
    return float(jnp.mean(pfn.head.loss(logits, jnp.asarray((y_new - m) / s))))


def test_finetune_lowers_the_nll_of_unseen_rows_of_a_prior_dataset(reg):
    x, y = _gp_table(500, seed=3)
    x_fit, y_fit, x_new, y_new = x[:120], y[:120], x[120:], y[120:]
    before = _fresh_nll(reg, x_fit, y_fit, x_new, y_new)
    tuned, history = pfnjax.finetune(reg, (x_fit, y_fit), 40, key=0, progress=False, return_history=True)
    after = _fresh_nll(tuned, x_fit, y_fit, x_new, y_new)
    assert history.best_step > 0
    # 380 rows the fine-tune never saw; the held-out rows it chose weights on are its own 24
    assert after < before - 0.1, (before, after)
    # the original is unchanged
    assert _fresh_nll(reg, x_fit, y_fit, x_new, y_new) == before


def test_zero_steps_returns_the_model_and_identical_predictions(reg):
    x, y = _gp_table(60, seed=1)
    assert pfnjax.finetune(reg, (x, y), 0) is reg
    kw = dict(model=reg, n_estimators=2, random_state=0)
    plain = PFNRegressor(**kw).fit(x[:40], y[:40]).predict(x[40:])
    zero = PFNRegressor(**kw, fine_tune_steps=0).fit(x[:40], y[:40]).predict(x[40:])
    np.testing.assert_array_equal(plain, zero)


def test_early_stopping_returns_the_starting_model_when_tuning_hurts(cls):
    # made to overfit: 16 rows of noise labels and a learning rate 3,000x the default's scale
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 3)), rng.integers(0, 2, 16)
    tuned, history = pfnjax.finetune(cls, (x, y), 20, key=0, lr=0.3, eval_every=5, progress=False,
                                     return_history=True)
    nlls = [r.heldout_nll for r in history.records]
    assert min(nlls[1:]) > nlls[0]  # every tuned model is worse on the held-out rows...
    assert tuned is cls and history.best_step == 0  # ...so the starting one comes back
    # patience stops the run after that many evaluations without improvement
    _, short = pfnjax.finetune(cls, (x, y), 20, key=0, lr=0.3, eval_every=5, patience=1, progress=False,
                               return_history=True)
    assert [r.step for r in short.records] == [0, 5]


def test_the_returned_model_is_the_best_evaluated_one(reg):
    x, y = _gp_table(100, seed=2)
    tuned, history = pfnjax.finetune(reg, (x, y), 20, key=1, eval_every=5, progress=False, return_history=True)
    best = min(history.records, key=lambda r: r.heldout_nll)
    assert history.best_step == best.step
    # the same key reproduces the same fine-tune
    again = pfnjax.finetune(reg, (x, y), 20, key=1, eval_every=5, progress=False)
    jax.tree.map(np.testing.assert_array_equal, tuned.params, again.params)


def test_split_batch_follows_its_definition():
    v, n_rows, f = 3, 64, 2
    n_fit = np.array([10, 40, 64], np.int32)
    x = np.zeros((v, n_rows, f), np.float32)
    for i in range(v):  # row r of view i holds the value 1000 i + r (padding rows: -1)
        x[i, :, 0] = np.where(np.arange(n_rows) < n_fit[i], 1000 * i + np.arange(n_rows), -1)
    y = x[..., 0].copy()
    xb, yb, sep, nf, query = jax.jit(split_batch, static_argnums=(5, 6, 7))(
        jnp.asarray(x), jnp.asarray(y), jnp.asarray(n_fit), jnp.asarray([2, 2, 1], np.int32), jax.random.key(0),
        4000, 32, (0.5, 0.9))
    xb, sep, query, nf = map(np.asarray, (xb, sep, query, nf))
    view = (xb[:, 0, 0] // 1000).astype(int)
    n = np.minimum(n_fit[view], 32)
    assert np.bincount(view, minlength=v).min() > 1200  # views drawn uniformly
    np.testing.assert_array_equal(nf, np.array([2, 2, 1])[view])
    for b in range(0, 4000, 97):  # the rows are distinct real rows of the view, padding only past n
        rows = xb[b, :n[b], 0]
        assert len(set(rows)) == n[b] and rows.min() >= 1000 * view[b] and np.all(rows - 1000 * view[b] < n_fit[view[b]])
    lo, hi = np.clip(np.floor(0.5 * n), 1, n - 1), np.clip(np.ceil(0.9 * n), 1, n - 1)
    assert np.all((sep >= lo) & (sep <= hi))
    # the query rows are exactly the rows from sep to n
    np.testing.assert_array_equal(query.sum(1), n - sep)
    # sep uniform on [lo, hi] within each view: a chi-square test against the uniform counts
    from scipy import stats
    for i in range(v):
        s = sep[view == i]
        values = np.arange(lo[view == i][0], hi[view == i][0] + 1)
        counts = np.array([(s == k).sum() for k in values])
        assert stats.chisquare(counts).pvalue > 1e-3


def test_estimator_fine_tunes_pickles_and_reproduces(cls):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(90, 4))
    y = (x[:, 0] * x[:, 1] > 0).astype(int)
    kw = dict(model=cls, n_estimators=2, random_state=0, fine_tune_steps=10)
    est = PFNClassifier(**kw).fit(x[:60], y[:60])
    assert est.fine_tune_history_ is not None and est.fine_tune_history_.records[0].step == 0
    proba = est.predict_proba(x[60:])
    np.testing.assert_array_equal(PFNClassifier(**kw).fit(x[:60], y[:60]).predict_proba(x[60:]), proba)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(est)).predict_proba(x[60:]), proba)
    if est.fine_tune_history_.improved:
        assert est.pfn_ is not cls
    # the estimator's model is untouched
    plain = PFNClassifier(model=cls, n_estimators=2, random_state=0).fit(x[:60], y[:60]).predict_proba(x[60:])
    np.testing.assert_array_equal(PFNClassifier(model=cls, n_estimators=2, random_state=0).fit(x[:60], y[:60])
                                  .predict_proba(x[60:]), plain)


def test_fine_tuned_estimator_passes_check_estimator(reg):
    from sklearn.utils.estimator_checks import check_estimator

    # a trained model: check_estimator asks a regressor for R² > 0.5 on its training rows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_estimator(PFNRegressor(model=reg, n_estimators=1, fine_tune_steps=2, random_state=0))


@pytest.mark.parametrize("name", ["classic", "per_feature", "column_row"])
def test_every_architecture_fine_tunes(name):
    from pfnjax.model import ModelIO
    from pfnjax.model.base import MODELS

    small = {"classic": {}, "per_feature": {}, "column_row": {"cell_dim": 8, "num_inducing": 4}}[name]
    config = MODELS[name](d_model=16, num_layers=1, num_heads=2, d_ff=32, **small)
    pfn = pfnjax.PFN.init(config, ModelIO(max_features=3, num_outputs=20, y_vocab=0))
    x, y = _gp_table(48, seed=5)
    tuned, history = pfnjax.finetune(pfn, (x, y), 10, key=0, lr=1e-3, eval_every=5, progress=False,
                                     return_history=True)
    # an untrained model gains from any fitting: the held-out NLL falls and the weights are new
    assert history.best_step > 0 and min(r.heldout_nll for r in history.records) < history.records[0].heldout_nll
    assert not all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), tuned.params, pfn.params)))


@pytest.mark.parametrize("bad, message", [
    (dict(rows=1), "at least 4"),
    (dict(one_class=True), "single class"),
    (dict(nan=True), "not trained with missing"),
    (dict(lr=0.0), "lr must be"),
    (dict(lr=-1e-3), "lr must be"),
    (dict(steps=-1), "steps must be"),
    (dict(fraction=(0.9, 0.5)), "context_fraction"),
])
def test_bad_input_is_refused(reg, cls, bad, message):
    rng = np.random.default_rng(0)
    rows = bad.get("rows", 30)
    x = rng.normal(size=(rows, 3))
    if bad.get("nan"):
        x[2, 1] = np.nan
    if bad.get("one_class"):
        model, y = cls, np.zeros(rows, int)
    else:
        model, y = reg, rng.normal(size=rows)
    if bad.get("nan"):
        assert not reg.trained_with_missing
    with pytest.raises(ValueError, match=message):
        pfnjax.finetune(model, (x, y), bad.get("steps", 2), lr=bad.get("lr", 1e-4),
                        context_fraction=bad.get("fraction", (0.5, 0.95)), progress=False)
    with pytest.raises(ValueError, match="fine_tune_lr"):
        PFNRegressor(model=reg, fine_tune_steps=2, fine_tune_lr=0.0).fit(x, rng.normal(size=rows))


def test_heldout_nll_is_the_mean_nll_of_the_heldout_rows(reg):
    from pfnjax.fine_tuning import _Views

    x, y = _gp_table(50, seed=6)
    views = _Views(None, None, None, None, [(x[:30].astype(np.float32), y[:30].astype(np.float32),
                                             x[30:].astype(np.float32), y[30:].astype(np.float32))])
    dist = reg.predict(x[:30], y[:30], x[30:])
    # the bar distribution's log density of each held-out label, independently of head.loss
    expected = -np.mean(np.asarray(dist.log_prob(jnp.asarray(y[30:], jnp.float32))))
    assert heldout_nll(reg, views) == pytest.approx(expected, rel=1e-5, abs=1e-5)
