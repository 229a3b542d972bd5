"""Training: the loss falls, checkpoints round-trip exactly, resume continues the run,
and bad inputs to load/predict raise clear errors."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pfnjax
from pfnjax.predict import PFN, load
from pfnjax.train import CheckpointError, preset_config, train
from pfnjax.train import checkpoint as ckpt
from pfnjax.train.trainer import build_prior, make_mesh, make_train_step


def _cfg(**kw):
    base = dict(num_features=2, seq_len=32, batch_size=8, steps=20, d_model=32, num_layers=2, num_heads=2,
                d_ff=64, num_buckets=50, border_samples=5000, checkpoint_every=10, log_every=5)
    base.update(kw)
    return preset_config("test", **base)


def _params_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_short_training_lowers_the_loss():
    cfg = _cfg(steps=150, lr=3e-3, warmup_steps=10, log_every=10, batch_size=16)
    result = train(cfg, None, progress=False)
    losses = [h["loss"] for h in result.history]
    assert np.mean(losses[-3:]) < np.mean(losses[:2]) - 0.3, losses


def test_checkpoint_round_trip_gives_identical_params_and_next_loss(tmp_path):
    cfg = _cfg(steps=10)
    result = train(cfg, tmp_path / "run", progress=False)
    abstract = ckpt.abstract_like(result.state, jax.sharding.SingleDeviceSharding(jax.devices()[0]))
    restored, meta = ckpt.restore(tmp_path / "run", abstract)
    assert meta["train"] == cfg.to_dict()
    assert int(restored.step) == 10
    assert _params_equal(result.state.params, restored.params)
    assert _params_equal(result.state.opt_state, restored.opt_state)
    mesh = make_mesh(jax.devices()[:1])
    step = make_train_step(cfg, build_prior(cfg), result.graphdef, mesh, "regression")
    _, m1 = step(jax.tree.map(jnp.copy, result.state))
    _, m2 = step(restored)
    assert float(m1["loss"]) == float(m2["loss"])


def test_resume_continues_the_run_exactly(tmp_path):
    cfg = _cfg(steps=20)
    straight = train(cfg, tmp_path / "a", progress=False)
    first = train(cfg, tmp_path / "b", progress=False, stop_after=10)
    assert int(first.state.step) == 10
    resumed = train(cfg, tmp_path / "b", progress=False)
    assert int(resumed.state.step) == 20
    assert _params_equal(straight.state.params, resumed.state.params)
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(s)["step"] for s in lines] == [5, 10, 15, 20]


def test_resume_with_a_different_config_is_refused(tmp_path):
    train(_cfg(steps=10), tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="different config"):
        train(_cfg(steps=10, lr=5e-4), tmp_path / "run", progress=False)


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a pfnjax run"):
        load(tmp_path / "empty")
    train(_cfg(steps=10), tmp_path / "run", progress=False)
    # Corrupt the only checkpoint: its array data is gone.
    state_dir = tmp_path / "run" / "checkpoints" / "10" / "state"
    shutil.rmtree(state_dir)
    state_dir.mkdir()
    with pytest.raises(CheckpointError, match="could not restore"):
        load(tmp_path / "run")


@pytest.fixture(scope="module")
def trained_pfn(tmp_path_factory):
    run = tmp_path_factory.mktemp("pfn") / "run"
    train(_cfg(steps=10), run, progress=False)
    return load(run)


def test_loaded_pfn_matches_training_result_and_predicts(trained_pfn, tmp_path):
    rng = np.random.default_rng(0)
    x_ctx, y_ctx, x_qry = rng.uniform(size=(7, 2)), rng.normal(size=7), rng.uniform(size=(5, 2))
    dist = trained_pfn.predict(x_ctx, y_ctx, x_qry)
    assert dist.logits.shape == (5, trained_pfn.model_config.num_outputs)
    mean, q = np.asarray(dist.mean()), np.asarray(dist.quantile(jnp.array([0.05, 0.95])))
    assert np.all(np.isfinite(mean)) and np.all(q[..., 0] < q[..., 1])
    # batched input gives the same answer per dataset
    batched = trained_pfn.predict(x_ctx[None].repeat(2, 0), y_ctx[None].repeat(2, 0), x_qry[None].repeat(2, 0))
    np.testing.assert_allclose(batched.logits[1], dist.logits, atol=1e-5)
    # cached/chunked logits equal the full forward pass of the training model
    model = jax.tree.map(lambda a: a, trained_pfn)
    full = _full_forward(trained_pfn, x_ctx, y_ctx, x_qry)
    np.testing.assert_allclose(trained_pfn.logits(x_ctx, y_ctx, x_qry, chunk_size=2), full, atol=1e-4)
    del model


def _full_forward(pfn: PFN, x_ctx, y_ctx, x_qry):
    from flax import nnx

    model = nnx.merge(pfn.graphdef, pfn.params)
    x = jnp.concatenate([x_ctx, x_qry])[None].astype(jnp.float32)
    y = jnp.concatenate([y_ctx, np.zeros(len(x_qry))])[None].astype(jnp.float32)
    out = model(x, y, jnp.array([len(x_ctx)]), jnp.array([x.shape[-1]]))
    return np.asarray(out[0, len(x_ctx):])


def test_predict_rejects_bad_input(trained_pfn):
    rng = np.random.default_rng(0)
    xc, yc, xq = rng.uniform(size=(7, 2)), rng.normal(size=7), rng.uniform(size=(5, 2))
    with pytest.raises(ValueError, match="rows"):
        trained_pfn.predict(xc, yc[:5], xq)
    with pytest.raises(ValueError, match="NaN"):
        trained_pfn.predict(np.where(np.arange(14).reshape(7, 2) == 3, np.nan, xc), yc, xq)
    with pytest.raises(ValueError, match="NaN"):
        trained_pfn.predict(xc, np.r_[yc[:6], np.nan], xq)
    with pytest.raises(ValueError, match="at most 2"):
        trained_pfn.predict(rng.uniform(size=(7, 3)), yc, rng.uniform(size=(5, 3)))
    with pytest.raises(ValueError, match="empty"):
        trained_pfn.predict(xc[:0], yc[:0], xq)
    with pytest.raises(ValueError, match="features"):
        trained_pfn.predict(xc, yc, xq[:, :1])


def test_public_api_exports():
    for name in ("train", "load", "TrainConfig", "preset_config", "sample_batch", "get_prior", "BatchShape"):
        assert hasattr(pfnjax, name), name


def test_classification_run_checkpoints_and_loads(tmp_path):
    """A classification (SCM prior) run saves, resumes and loads (its state has no bar borders)."""
    cfg = _cfg(prior="scm", steps=10, num_features=3)
    train(cfg, tmp_path / "run", progress=False)
    pfn = load(tmp_path / "run")
    assert pfn.task == "classification" and pfn.max_classes == 10
    rng = np.random.default_rng(0)
    probs = pfn.predict(rng.normal(size=(12, 3)), np.arange(12) % 3, rng.normal(size=(4, 3))).probs
    np.testing.assert_allclose(np.asarray(probs).sum(-1), 1.0, rtol=1e-5)
    assert probs.shape == (4, 3)
