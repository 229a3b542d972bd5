"""The per-feature (TabPFN v2 style) and column→row (TabICL style) architectures against their
definitions: invariance to the order of the context rows (and of the features, which both
claim), equivariance in the queries, no query depending on another, cached inference equal to
the uncached forward pass, the training path equal to the masked definition; and each trains,
loads and serves the estimators and Bayesian optimisation."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import pfnjax
from pfnjax.heads import BarHead, ClassHead
from pfnjax.model import ModelIO, SplitLayout, build_model, model_config
from pfnjax.training import apply_model, pfn_loss, train_loss
from pfnjax.types import Batch

pytestmark = pytest.mark.usefixtures("full_precision")

SMALL = {
    "per_feature": dict(d_model=16, num_layers=2, num_heads=2),
    "column_row": dict(d_model=16, num_layers=2, num_heads=2, cell_dim=8, num_inducing=4, num_cls=2, thinking_rows=2),
}
CASES = [(arch, task) for arch in SMALL for task in ("regression", "classification")]


def _model(arch, task, **extra):
    io = ModelIO(5, 11) if task == "regression" else ModelIO(5, 4, 4)
    model = build_model(model_config(arch, **{**SMALL[arch], **extra}), io, nnx.Rngs(0))
    graphdef, state = nnx.split(model, nnx.Param)
    leaves, treedef = jax.tree.flatten(state)
    rng = np.random.default_rng(1)  # numpy: one compiled normal per leaf shape would cost seconds
    return nnx.merge(graphdef, jax.tree.unflatten(treedef, [p + 0.2 * rng.normal(size=p.shape).astype(np.float32)
                                                            for p in leaves]))


def _data(task, b=2, t=14, f=5, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(b, t, f)), jnp.float32)
    y = (jnp.asarray(rng.normal(size=(b, t)), jnp.float32) if task == "regression"
         else jnp.asarray(rng.integers(0, 4, (b, t)), jnp.int32))
    return x, y


@pytest.mark.parametrize("arch,task", CASES)
def test_context_order_query_independence_and_equivariance(arch, task):
    model = _model(arch, task)
    x, y = _data(task)
    sep, nf = jnp.array([6, 8]), jnp.array([5, 4])
    out = np.asarray(model(x, y, sep, nf))
    # context rows in another order: the same predictions
    perm = np.r_[np.random.default_rng(0).permutation(8), np.arange(8, 14)]
    permuted = np.asarray(model(x[:, perm], y[:, perm], sep, nf))
    np.testing.assert_allclose(permuted[1, 8:], out[1, 8:], atol=2e-5)
    # queries in another order: the predictions in that order; changing other queries changes nothing
    qperm = np.r_[np.arange(8), 8 + np.random.default_rng(1).permutation(6)]
    np.testing.assert_allclose(np.asarray(model(x[:, qperm], y, sep, nf))[1, 8:], out[1, qperm[8:]], atol=2e-5)
    moved = np.asarray(model(x.at[:, 9:].set(7.0), y.at[:, 8:].set(y[0, 0]), sep, nf))
    np.testing.assert_allclose(moved[:, 8], out[:, 8], atol=2e-5)
    # the control: a context label does change them
    y2 = y.at[:, 1].set(3 if task == "classification" else 9.0)
    assert np.abs(np.asarray(model(x, y2, sep, nf))[:, 8:] - out[:, 8:]).max() > 1e-3


@pytest.mark.parametrize("arch,task", CASES)
def test_invariant_to_the_order_of_the_features(arch, task):
    """Both designs share their weights over the columns and carry no feature position."""
    model = _model(arch, task)
    x, y = _data(task)
    sep, nf = jnp.array([6, 8]), jnp.array([5, 5])
    perm = np.array([3, 0, 4, 1, 2])
    np.testing.assert_allclose(np.asarray(model(x[..., perm], y, sep, nf)), np.asarray(model(x, y, sep, nf)),
                               atol=2e-5)
    # controls: the classic model, which has an input projection per column, is not invariant,
    # nor is the per-feature model with feature groups (a group's encoder sees its columns in order)
    from pfnjax.model import ClassicConfig

    classic = build_model(ClassicConfig(d_model=16, num_layers=1, num_heads=2), ModelIO(5, 11), nnx.Rngs(0))
    xr, yr = _data("regression")
    assert np.abs(np.asarray(classic(xr[..., perm], yr, sep, nf) - classic(xr, yr, sep, nf))).max() > 1e-4
    if arch == "per_feature":
        grouped = _model(arch, task, group_size=2)
        assert np.abs(np.asarray(grouped(x[..., perm], y, sep, nf) - grouped(x, y, sep, nf))).max() > 1e-4


@pytest.mark.parametrize("arch,task", CASES)
def test_cached_inference_and_the_training_path_equal_the_masked_forward(arch, task):
    model = _model(arch, task)
    x, y = _data(task, t=16)
    sep, nf = jnp.array([5, 9]), jnp.array([5, 3])
    full = np.asarray(model(x, y, sep, nf))
    cache = model.encode_context(x[:, :9], y[:, :9], sep, nf)  # a padded context, masked by sep
    cached = np.asarray(model.predict_queries(cache, x, sep, nf))
    np.testing.assert_allclose(cached[0, 5:], full[0, 5:], atol=2e-5)
    np.testing.assert_allclose(cached[1, 9:], full[1, 9:], atol=2e-5)
    graphdef, params = nnx.split(model, nnx.Param)
    head = BarHead.equally_spaced(11) if task == "regression" else ClassHead(4)
    batch = Batch(x=x, y=y, single_eval_pos=sep, num_features=nf)
    # jitted: op by op, every primitive compiles on its own and the test takes a minute longer
    loss_ref, grad_ref = jax.jit(jax.value_and_grad(
        lambda p: pfn_loss(apply_model(graphdef, p, batch), batch, head)))(params)
    loss, grad = jax.jit(jax.value_and_grad(
        lambda p: train_loss(graphdef, p, batch, head, SplitLayout(5, 9))))(params)
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-6)
    for g, r in zip(jax.tree.leaves(grad), jax.tree.leaves(grad_ref)):
        np.testing.assert_allclose(g, r, rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_each_architecture_trains_loads_and_serves_the_estimators_and_bo(arch, tmp_path):
    from pfnjax import bo
    from pfnjax.sklearn import PFNClassifier, PFNRegressor

    small = {k: v for k, v in SMALL[arch].items()}
    reg = pfnjax.train(pfnjax.preset_config("test", model=arch, steps=40, lr=3e-3, **small), tmp_path / "reg",
                       progress=False)
    losses = [h["loss"] for h in reg.history]
    assert np.mean(losses[-2:]) < losses[0], losses
    pfn = pfnjax.load(tmp_path / "reg")
    assert pfn.model_config.name == arch
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(30, 2))
    y = np.sin(6 * X[:, 0])
    est = PFNRegressor(model=pfn, n_estimators=2, random_state=0).fit(X[:20], y[:20])
    assert np.isfinite(est.predict(X[20:])).all()
    point = bo.suggest(pfn, X[:10], y[:10], np.array([[0.0, 1.0], [0.0, 1.0]]), jax.random.key(0), steps=3, num_raw=32)
    assert point.shape == (1, 2) and np.all((point >= 0) & (point <= 1))
    # bnn_binary: a classification prior that compiles in seconds (an SCM's sampler takes 40 s)
    pfnjax.train(pfnjax.preset_config("test", prior="bnn_binary", model=arch, steps=10, **small), tmp_path / "cls",
                 progress=False)
    clf = PFNClassifier(model=str(tmp_path / "cls"), n_estimators=2, random_state=0).fit(X[:20], (X[:20, 0] > 0.5).astype(int))
    proba = clf.predict_proba(X[20:])
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    assert dataclasses.asdict(pfn.model_config)  # the saved architecture is the run's config
