"""Data-parallel training on 4 fake CPU devices: equivalence with 1 device and with gradient
accumulation, restoring onto another device count, and surviving SIGKILL mid-run."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from pfnjax.train import checkpoint as ckpt
from pfnjax.train import preset_config, train
from pfnjax.train.trainer import build_prior, init_state, make_mesh, make_train_step

CFG = dict(num_features=2, seq_len=32, batch_size=8, steps=20, d_model=32, num_layers=2, num_heads=2, d_ff=64,
           num_buckets=50, border_samples=5000, checkpoint_every=10, log_every=5, lr=3e-3, warmup_steps=2)


def _cfg(**kw):
    return preset_config("test", **{**CFG, **kw})


def _one_step(cfg, devices):
    prior = build_prior(cfg)
    graphdef, state, model_cfg = init_state(cfg, prior)
    mesh = make_mesh(devices)
    state = jax.device_put(state, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    step = make_train_step(cfg, prior, graphdef, mesh, model_cfg.task)
    for _ in range(2):
        state, metrics = step(state)
    return jax.device_get(state.params), float(metrics["loss"])


def _max_abs_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_four_devices_equal_one_device():
    assert jax.device_count() == 4
    cfg = _cfg()
    p1, l1 = _one_step(cfg, jax.devices()[:1])
    p4, l4 = _one_step(cfg, jax.devices())
    assert abs(l1 - l4) < 1e-5
    assert _max_abs_diff(p1, p4) < 1e-5
    # The same test with another global batch must differ (the comparison can fail).
    p_other, _ = _one_step(_cfg(seed=1), jax.devices())
    assert _max_abs_diff(p1, p_other) > 1e-3


def test_gradient_accumulation_equals_one_big_batch():
    big, _ = _one_step(_cfg(batch_size=16, accum_steps=1), jax.devices())
    accumulated, _ = _one_step(_cfg(batch_size=4, accum_steps=4), jax.devices())
    assert _max_abs_diff(big, accumulated) < 1e-5


def test_indivisible_batch_is_rejected():
    cfg = _cfg(batch_size=6)
    prior = build_prior(cfg)
    graphdef, _, model_cfg = init_state(cfg, prior)
    with pytest.raises(ValueError, match="divisible"):
        make_train_step(cfg, prior, graphdef, make_mesh(jax.devices()), model_cfg.task)


def test_checkpoint_from_four_devices_restores_on_one(tmp_path):
    cfg = _cfg(steps=10)
    on4 = train(cfg, tmp_path / "run", progress=False, devices=jax.devices())
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    restored, _ = ckpt.restore(tmp_path / "run", ckpt.abstract_like(on4.state, one))
    assert {d for leaf in jax.tree.leaves(restored.params) for d in leaf.devices()} == {jax.devices()[0]}
    assert _max_abs_diff(on4.state.params, restored.params) == 0.0
    # ...and training continues there: 4-device start, 1-device finish = 1-device straight run.
    finished = train(cfg.replace(steps=10), tmp_path / "run", progress=False, devices=jax.devices()[:1])
    assert int(finished.state.step) == 10


def test_kept_checkpoints_are_latest_k_plus_best(tmp_path):
    cfg = _cfg(steps=50, checkpoint_every=5, keep_checkpoints=2)
    train(cfg, tmp_path / "run", progress=False)
    steps = ckpt.all_steps(tmp_path / "run")
    assert steps[-2:] == [45, 50]
    assert len(steps) <= 3


_CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax
    from pfnjax.train import preset_config, train
    cfg = preset_config("test", **{cfg!r})

    def on_step(step, record):
        if step == {hang_at}:
            {action}

    train(cfg, sys.argv[1], progress=False, on_step=on_step)
    """
)


def _spawn(run_dir, hang_at, action):
    code = _CHILD.format(cfg=CFG, hang_at=hang_at, action=action)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen([sys.executable, "-c", code, str(run_dir)], env=env)


@pytest.mark.slow
def test_sigkill_and_resume_matches_uninterrupted_run(tmp_path):
    straight = train(_cfg(), tmp_path / "straight", progress=False)
    run = tmp_path / "killed"
    # The child hangs after step 12, i.e. after checkpoint 10 was started; we SIGKILL it once
    # checkpoint 10 is committed.
    child = _spawn(run, 12, "time.sleep(600)")
    deadline = time.time() + 240
    while time.time() < deadline and 10 not in _committed(run):
        assert child.poll() is None, "child exited early"
        time.sleep(0.2)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert _committed(run) == [10]
    resumed = train(_cfg(), run, progress=False)
    assert int(resumed.state.step) == 20
    assert _max_abs_diff(straight.state.params, resumed.state.params) < 1e-6


@pytest.mark.slow
def test_half_written_checkpoint_is_never_loaded(tmp_path):
    straight = train(_cfg(), tmp_path / "straight", progress=False)
    run = tmp_path / "run"
    # SIGKILL right after the async save of step 20 is started: its write (and maybe that of
    # step 10) is still in flight, so only fully committed steps may be listed.
    child = _spawn(run, 20, "os.kill(os.getpid(), signal.SIGKILL)")
    assert child.wait() == -signal.SIGKILL
    committed = _committed(run)
    assert set(committed) <= {10, 20}
    # A leftover partial directory (as a crash mid-write leaves it) is not a checkpoint either.
    partial = run / "checkpoints" / "30.orbax-checkpoint-tmp-1234"
    partial.mkdir(parents=True)
    (partial / "garbage").write_text("half written")
    assert ckpt.latest_step(run) == (max(committed) if committed else None)
    resumed = train(_cfg(), run, progress=False)
    assert int(resumed.state.step) == 20
    assert _max_abs_diff(straight.state.params, resumed.state.params) < 1e-6


def _committed(run_dir):
    return ckpt.all_steps(run_dir) if (run_dir / "checkpoints").is_dir() else []
