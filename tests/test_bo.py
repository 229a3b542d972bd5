"""pfnjax.bo: input checks, the maximiser against a dense grid of the same acquisition, scaling
invariances, the kriging-believer batch and the minimisation loop. The shipped ``reg-tiny`` PFN
(a bar head over 10 features) stands in for a BO model: these tests check the optimiser, not
the model's BO quality (that is experiments/bayesopt)."""

import jax
import numpy as np
import pytest

import pfnjax
from pfnjax import bo


@pytest.fixture(scope="module")
def pfn():
    return pfnjax.load("reg-tiny")


def _data(n=6, d=1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, d))
    return X, np.sin(6 * X).sum(1) + 0.1 * rng.normal(size=n)


@pytest.mark.parametrize("kwargs, match", [
    (dict(bounds=[[1.0, 0.0]]), "lower bound must be below"),
    (dict(bounds=[[0.0, 1.0], [0.0, 1.0]]), r"X must have shape \[n, 2\]"),
    (dict(X=np.full((6, 1), np.nan)), "NaN"),
    (dict(y=np.array([np.inf] * 6)), "NaN"),
    (dict(X=np.zeros((0, 1)), y=np.zeros(0)), "at least one observation"),
    (dict(X=np.full((6, 1), 2.0)), "inside bounds"),
    (dict(bounds=[[0.0, 1.0]] * 11, X=np.zeros((6, 11))), "at most 10"),
    (dict(acquisition="thompson"), "acquisition must be one of"),
    (dict(num_restarts=0), "num_restarts"),
])
def test_bad_input_raises(pfn, kwargs, match):
    X, y = _data()
    args = dict(X=X, y=y, bounds=[[0.0, 1.0]], acquisition="ei")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        bo.suggest(pfn, args["X"], args["y"], args["bounds"], jax.random.key(0), args["acquisition"],
                   **{k: v for k, v in kwargs.items() if k == "num_restarts"})


def test_classification_pfn_is_rejected():
    X, y = _data()
    with pytest.raises(ValueError, match="bar-distribution head"):
        bo.suggest(pfnjax.load("cls-tiny"), X, y, [[0.0, 1.0]], jax.random.key(0))


@pytest.mark.parametrize("acquisition", bo.ACQUISITIONS)
def test_suggestion_maximises_the_acquisition_on_a_dense_grid(pfn, acquisition):
    """In 1-D the acquisition is cheap on a 4001-point grid: the suggestion must score at least
    the grid maximum (up to the grid's resolution)."""
    X, y = _data(n=7)
    x_next = bo.suggest(pfn, X, y, [[0.0, 1.0]], jax.random.key(1), acquisition)
    z = bo.standardize_for_maximization(y)
    cache = pfn.encode(X, z)
    grid = np.linspace(0, 1, 4001)[:, None]
    dist = pfn.predict_from_cache(cache, np.concatenate([grid, x_next]))
    values = {"ei": dist.ei(z.max()), "pi": dist.pi(z.max()), "ucb": dist.ucb()}[acquisition]
    values = np.asarray(values)
    assert values[-1] >= values[:-1].max() - 1e-4 * max(1.0, abs(values[:-1].max()))
    assert 0.0 <= x_next[0, 0] <= 1.0


def test_scaling_invariances(pfn):
    """Only the unit-cube inputs and the standardised targets reach the model."""
    X, y = _data(n=8, d=2, seed=3)
    key = jax.random.key(7)
    base = bo.suggest(pfn, X, y, [[0.0, 1.0], [0.0, 1.0]], key)
    bounds = np.array([[-5.0, 5.0], [100.0, 102.0]])
    moved = bo.suggest(pfn, bo.from_unit(X, bounds), 3.0 * y - 40.0, bounds, key)
    np.testing.assert_allclose(bo.to_unit(moved, bounds), base, atol=1e-5)
    assert np.all(moved >= bounds[:, 0]) and np.all(moved <= bounds[:, 1])


def test_batch_uses_the_kriging_believer(pfn):
    X, y = _data(n=6, d=2, seed=4)
    bounds = [[0.0, 1.0], [0.0, 1.0]]
    key = jax.random.key(2)
    one = bo.suggest(pfn, X, y, bounds, key)
    batch = bo.suggest(pfn, X, y, bounds, key, batch_size=3)
    assert batch.shape == (3, 2)
    np.testing.assert_allclose(batch[0], one[0], atol=1e-6)  # the first point is the plain suggestion
    # the second point maximises EI against the context extended by the first and its believed
    # mean: there it scores at least as high as the first point and as any point of a grid
    U, z = np.asarray(X), bo.standardize_for_maximization(y)
    believed = float(pfn.predict(U, z, batch[:1]).mean()[0])
    U2, z2 = np.concatenate([U, batch[:1]]), np.append(z, believed)
    grid = np.stack(np.meshgrid(np.linspace(0, 1, 41), np.linspace(0, 1, 41)), -1).reshape(-1, 2)
    ei = np.asarray(pfn.predict(U2, z2, np.concatenate([grid, batch[:2]])).ei(z2.max()))
    assert ei[-1] >= ei[-2] and ei[-1] >= ei[:-2].max() - 1e-4
    assert not np.allclose(batch[1], batch[0])


def test_duplicate_observations_are_fine(pfn):
    X, y = _data(n=4)
    X, y = np.concatenate([X, X]), np.concatenate([y, y])
    x_next = bo.suggest(pfn, X, y, [[0.0, 1.0]], jax.random.key(0))
    assert np.all(np.isfinite(x_next))


def test_minimize_loop_is_deterministic_and_tracks_the_best(pfn):
    f = lambda x: float(np.sum((x - 0.3) ** 2))
    hist = bo.minimize(f, [[0.0, 1.0], [0.0, 1.0]], pfn, 4, jax.random.key(5), n_initial=3, progress=False,
                       num_raw=64, steps=10)
    again = bo.minimize(f, [[0.0, 1.0], [0.0, 1.0]], pfn, 4, jax.random.key(5), n_initial=3, progress=False,
                        num_raw=64, steps=10)
    assert hist.X.shape == (7, 2) and len(hist.suggest_seconds) == 4
    np.testing.assert_array_equal(hist.X, again.X)
    np.testing.assert_allclose(hist.y, [f(x) for x in hist.X])
    assert np.all(np.diff(hist.best_so_far) <= 0) and hist.best_so_far[-1] == hist.y.min()
    assert f(hist.x_best) == hist.y.min()


def test_shipped_bo_model_fits_its_prior():
    """``bo-hebo``: a bar-head PFN for up to 6 dimensions trained on the HEBO-style GP prior; on
    held-out functions of that prior its NLL falls as observations accumulate, and it beats a
    Gaussian with the context's mean and variance."""
    from pfnjax.evaluators import HeldOutEvaluator, held_out_source, make_predict_fn
    from pfnjax.priors.gp import GPHyperPrior

    pfn = pfnjax.load("bo-hebo")
    assert pfn.max_features == 6 and pfn.head.num_outputs == 1000
    prior, key, sampler = held_out_source(pfn)
    assert isinstance(prior, GPHyperPrior) and prior.kernel == "matern32" and prior.noise_prior == "lognormal"
    ev = HeldOutEvaluator.for_pfn(pfn, prior, key, context_sizes=(5, 50), num_datasets=64, num_queries=20,
                                  num_features_sampler=sampler)
    metrics = ev.run(make_predict_fn(pfn.graphdef), pfn.params)
    assert metrics["nll@50"] < metrics["nll@5"] - 0.3
    # the context-moment Gaussian on the same held-out rows
    y = ev.data.y.astype(np.float64)
    mu, sd = y[:, :50].mean(1, keepdims=True), y[:, :50].std(1, keepdims=True)
    gauss = np.mean(0.5 * np.log(2 * np.pi * sd**2) + 0.5 * ((y[:, -20:] - mu) / sd) ** 2)
    assert metrics["nll@50"] < gauss - 0.3
