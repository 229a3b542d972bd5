"""Training: the loss falls, checkpoints round-trip exactly, resume continues the run,
and bad inputs to load/predict raise clear errors."""

import dataclasses
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pfnjax
from pfnjax import checkpoint as ckpt
from pfnjax.checkpoint import CheckpointError
from pfnjax.config import TrainConfig
from pfnjax.predict import PFN, load
from pfnjax.presets import preset_config
from pfnjax.priors.from_config import build_prior
from pfnjax.training import init_state, make_mesh, make_train_step, train
from conftest import small_cfg as _cfg, trees_equal as _params_equal


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
    assert meta["train"] == json.loads(cfg.to_json())
    assert TrainConfig.from_dict(meta["train"]) == cfg
    assert int(restored.step) == 10
    assert _params_equal(result.state.params, restored.params)
    assert _params_equal(result.state.opt_state, restored.opt_state)
    mesh = make_mesh(jax.devices()[:1])
    step = make_train_step(cfg, build_prior(cfg.prior), result.graphdef, mesh, result.head)
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


def test_length_curriculum_switches_shapes_and_resumes_exactly(tmp_path, monkeypatch):
    # from step 6 on, datasets have 48 rows in batches of 4; a run cut at the switch resumes bitwise
    from pfnjax.training import step as trainer

    traced = []

    def recording(prior, keys, shape, **kwargs):
        traced.append((shape.seq_len, keys.shape[0]))
        return sample_datasets(prior, keys, shape, **kwargs)

    sample_datasets = trainer.sample_datasets
    monkeypatch.setattr(trainer, "sample_datasets", recording)
    cfg = _cfg(steps=10, log_every=2, stages=((6, 48, 4),))
    assert [(s, c.data.seq_len, c.data.batch_size) for s, c in cfg.stage_configs()] == [(0, 32, 8), (6, 48, 4)]
    straight = train(cfg, tmp_path / "a", progress=False)
    assert traced == [(32, 8), (48, 4)]  # each stage's step was traced once, with its own batch shape
    train(cfg, tmp_path / "b", progress=False, stop_after=6)
    resumed = train(cfg, tmp_path / "b", progress=False)
    assert traced[2:] == [(32, 8), (48, 4)]  # the resumed run starts in the second stage
    assert _params_equal(straight.state.params, resumed.state.params)
    with pytest.raises(ValueError, match="beyond the run"):
        _cfg(steps=5, stages=((6, 48, 4),)).stage_configs()


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
    assert dist.logits.shape == (5, trained_pfn.io.num_outputs)
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
    """Every exported name is the object its defining module holds (not a copy or a stub), and
    unknown names raise AttributeError."""
    import importlib

    assert pfnjax.__all__ == sorted(pfnjax._EXPORTS)
    for name, module in pfnjax._EXPORTS.items():
        value = getattr(pfnjax, name)
        if module == "pfnjax":
            assert value is importlib.import_module(f"pfnjax.{name}")
        else:
            assert value is getattr(importlib.import_module(module), name), name
    assert pfnjax.train is pfnjax.training.trainer.train and pfnjax.load is pfnjax.predict.load
    assert pfnjax.Trainer is pfnjax.training.trainer.Trainer
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        pfnjax.trian  # noqa: B018


def test_classification_run_learns_and_round_trips_exactly(tmp_path):
    """A classification (SCM prior) run learns, and its checkpoint (no bar borders) loads bit for bit."""
    from pfnjax.evaluators import evaluate_classification, held_out_source

    cfg = _cfg(prior="scm", steps=120, num_features=3, batch_size=16, lr=3e-3, warmup_steps=10, log_every=20,
               checkpoint_every=60)
    result = train(cfg, tmp_path / "run", progress=False)
    losses = [h["loss"] for h in result.history]
    assert np.mean(losses[-2:]) < losses[0] - 0.1, losses
    pfn = load(tmp_path / "run")
    assert pfn.task == "classification" and pfn.max_classes == 10
    assert _params_equal(pfn.params, result.state.params)
    rng = np.random.default_rng(0)
    x_ctx, y_ctx, x_qry = rng.normal(size=(12, 3)), np.arange(12) % 3, rng.normal(size=(4, 3))
    probs = np.asarray(pfn.predict(x_ctx, y_ctx, x_qry).probs)
    np.testing.assert_array_equal(probs, np.asarray(PFN.from_train_result(result).predict(x_ctx, y_ctx, x_qry).probs))
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    # held-out prior datasets: far better than at initialisation, and (after only 120 steps) at
    # least as good as predicting the context's class frequencies
    prior, key, n_features = held_out_source(pfn)
    assert prior == build_prior(cfg.prior)  # the run's prior, rebuilt from its saved spec
    initial = dataclasses.replace(pfn, params=init_state(cfg, prior)[1].params)
    kwargs = dict(context_sizes=(40,), num_datasets=64, num_queries=20, num_features_sampler=n_features)
    (row,) = evaluate_classification(pfn, prior, key, **kwargs)
    (row0,) = evaluate_classification(initial, prior, key, **kwargs)
    assert row.pfn_nll < row0.pfn_nll - 0.2 and row.pfn_nll < row.baseline_nll + 0.02, (row, row0)


def test_attention_impl_is_saved_with_the_run_and_honoured_by_load(tmp_path):
    from pfnjax.cli import main

    assert main(["train", "--prior", "gp", "--preset", "test", "--steps", "2", "--attention", "xla",
                 "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert meta["train"]["model"]["attention_impl"] == "xla" and meta["model"]["attention_impl"] == "xla"
    pfn = load(tmp_path / "run")
    assert pfn.model_config.attention_impl == "xla" and pfn.train_config.model.attention_impl == "xla"
    auto = load(tmp_path / "run", attention_impl="auto")
    assert auto.model_config.attention_impl == "auto"
    x = np.random.default_rng(0).uniform(size=(12, 2)).astype(np.float32)
    y = np.sin(3 * x.sum(1)).astype(np.float32)
    # "auto" is the matmul formulation on the CPU: the same attention up to float rounding
    with jax.default_matmul_precision("highest"):
        np.testing.assert_allclose(np.asarray(pfn.logits(x[:8], y[:8], x[8:])),
                                   np.asarray(auto.logits(x[:8], y[:8], x[8:])), rtol=1e-4, atol=1e-5)
    # default: auto; runs saved before the field existed (the shipped models) load as auto
    assert preset_config("test").model.attention_impl == "auto"
    assert load("reg-tiny").model_config.attention_impl == "auto"
    with pytest.raises(ValueError, match="attention_impl"):
        preset_config("test", attention_impl="flash")
