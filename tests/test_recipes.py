"""Training recipes: Muon on the matrix parameters, weight averaging (and that inference uses the
averaged weights), thinking rows and residual decay, each checked against its definition."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import pfnjax
from pfnjax.model import ClassicConfig, ModelIO, build_model
from pfnjax.predict import PFN
from pfnjax.training import Trainer, make_optimizer
from conftest import small_cfg

pytestmark = pytest.mark.usefixtures("full_precision")


def test_muon_orthogonalises_matrix_updates_and_adams_the_rest():
    """One Muon step on a random gradient: a matrix's update has (nearly) equal singular values,
    the gradient's do not; a vector's update is Adam's (the gradient's sign times the rate)."""
    cfg = small_cfg(optimizer="muon", muon_lr=0.02, lr=1e-3, warmup_steps=0, clip_norm=1e9).optim
    tx = make_optimizer(cfg)
    rng = np.random.default_rng(0)
    params = {"w": jnp.zeros((16, 8)), "b": jnp.zeros(8)}
    grads = {"w": jnp.asarray(rng.normal(size=(16, 8)) * np.logspace(0, 2, 8), jnp.float32),
             "b": jnp.asarray(rng.normal(size=8), jnp.float32)}
    updates, _ = tx.update(grads, tx.init(params), params)
    sv_update = np.linalg.svd(np.asarray(updates["w"]), compute_uv=False)
    sv_grad = np.linalg.svd(np.asarray(grads["w"]), compute_uv=False)
    assert sv_update.max() / sv_update.min() < 2.0 < 10 < sv_grad.max() / sv_grad.min()
    # the vector gets an Adam-style update: the gradient's sign at one step size per coordinate
    ub = np.asarray(updates["b"])
    assert np.all(np.sign(ub) == -np.sign(np.asarray(grads["b"])))
    assert np.ptp(np.abs(ub)) < 1e-6 and 0.5e-3 < np.abs(ub).mean() < 2e-3


@pytest.mark.parametrize("averaging", ["ema", "tail"])
def test_averaged_weights_are_the_average_of_the_trained_ones_and_what_load_uses(averaging, tmp_path):
    cfg = small_cfg(steps=12, averaging=averaging, ema_decay=0.7, tail_fraction=0.5, checkpoint_every=12)
    seen = []
    trainer = Trainer(cfg, tmp_path / "run", progress=False,
                      hooks=[lambda t, step, record: seen.append(jax.tree.map(np.asarray, t.state.params))])
    with trainer:
        result = trainer.run()
    initial = jax.tree.map(np.asarray, pfnjax.training.init_state(cfg, trainer.prior)[1].params)
    if averaging == "ema":
        expected = initial
        for p in seen:
            expected = jax.tree.map(lambda a, b: 0.7 * a + 0.3 * b, expected, p)
    else:  # the mean of the weights after steps 7..12
        expected = jax.tree.map(lambda *ps: np.mean(ps, axis=0), *seen[6:])
    for got, want in zip(jax.tree.leaves(result.params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)
    assert any(np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-4
               for a, b in zip(jax.tree.leaves(result.params), jax.tree.leaves(result.state.params)))
    loaded = pfnjax.load(tmp_path / "run")
    for a, b in zip(jax.tree.leaves(loaded.params), jax.tree.leaves(result.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _perturbed(cfg, seed=0):
    model = build_model(cfg, ModelIO(3, 12), nnx.Rngs(seed))
    graphdef, state = nnx.split(model, nnx.Param)
    leaves, treedef = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    return nnx.merge(graphdef, jax.tree.unflatten(treedef, [p + 0.2 * jax.random.normal(k, p.shape)
                                                            for p, k in zip(leaves, keys)]))


def test_thinking_rows_are_context_rows_and_keep_the_masked_definition():
    cfg = ClassicConfig(d_model=16, num_layers=2, num_heads=2, thinking_rows=3)
    model = _perturbed(cfg)
    rng = np.random.default_rng(0)
    x, y = jnp.asarray(rng.normal(size=(2, 14, 3)), jnp.float32), jnp.asarray(rng.normal(size=(2, 14)), jnp.float32)
    sep, nf = jnp.array([5, 9]), jnp.array([3, 2])
    full = model(x, y, sep, nf)
    assert full.shape == (2, 14, 12)
    # cached inference equals the full forward with the same thinking rows
    cached = model.predict_queries(model.encode_context(x[:, :9], y[:, :9], sep, nf), x, sep, nf)
    np.testing.assert_allclose(cached[0, 5:], full[0, 5:], atol=1e-5)
    np.testing.assert_allclose(cached[1, 9:], full[1, 9:], atol=1e-5)
    # queries do not see each other; the thinking rows matter (they are learned context)
    moved = model(x.at[:, 12:].set(5.0), y, sep, nf)
    np.testing.assert_allclose(moved[:, 9:12], full[:, 9:12], atol=1e-5)
    other = nnx.merge(*nnx.split(model))
    other.thinking[...] = other.thinking[...] + jax.random.normal(jax.random.key(9), other.thinking[...].shape)
    assert np.abs(np.asarray(other(x, y, sep, nf) - full)).max() > 1e-3


def test_residual_decay_scales_the_stream_and_is_the_identity_at_one():
    base = _perturbed(ClassicConfig(d_model=16, num_layers=2, num_heads=2))
    decayed = nnx.merge(*nnx.split(base))
    rng = np.random.default_rng(1)
    x, y = jnp.asarray(rng.normal(size=(1, 10, 3)), jnp.float32), jnp.asarray(rng.normal(size=(1, 10)), jnp.float32)
    sep, nf = jnp.array([6]), jnp.array([3])
    cfg = dataclasses.replace(base.cfg, residual_decay=0.5)
    for module in [decayed, *decayed.layers]:
        module.cfg = cfg
    layer = base.layers[0]
    h = jax.random.normal(jax.random.key(0), (1, 10, 16))
    # h <- 0.5 h + attn(h), then h <- 0.5 h + mlp(h): written out against the plain layer's pieces
    plain = layer.self_attend(h, sep)
    q, k, v = layer._qkv(h)
    from pfnjax.model.attention import context_attention

    attn = layer.attn_out(context_attention(q, k, v, sep).reshape(1, 10, 16))
    mid = 0.5 * h + attn
    want = 0.5 * mid + layer.ff_out(jax.nn.gelu(layer.ff_in(layer.norm_ff(mid))))
    np.testing.assert_allclose(decayed.layers[0].self_attend(h, sep), want, atol=1e-5)
    assert np.abs(np.asarray(plain - want)).max() > 1e-3
    assert np.abs(np.asarray(decayed(x, y, sep, nf) - base(x, y, sep, nf))).max() > 1e-3


def test_recipe_settings_are_checked_at_config_time():
    for bad, match in [(dict(optimizer="sgd"), "optimizer must be one of"), (dict(averaging="swa"), "averaging"),
                       (dict(ema_decay=1.0), "ema_decay"), (dict(thinking_rows=-1), "thinking_rows"),
                       (dict(residual_decay=0.0), "residual_decay"), (dict(muon_lr=0.0), "muon_lr")]:
        with pytest.raises(ValueError, match=match):
            small_cfg(**bad)
    cfg = small_cfg(optimizer="muon", averaging="ema", thinking_rows=2)
    assert pfnjax.TrainConfig.from_dict(cfg.to_dict()) == cfg
