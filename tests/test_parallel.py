"""Data-parallel training on 4 fake CPU devices: equivalence with 1 device and with gradient
accumulation, restoring onto another device count, and surviving SIGKILL mid-run."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import chex
import jax
import numpy as np
import pytest

from pfnjax import checkpoint as ckpt
from pfnjax.priors.from_config import build_prior
from pfnjax.training import init_state, make_mesh, make_train_step, train
from conftest import CHILD_TF32_PRELUDE, SMALL_RUN, assert_same_training, max_abs_diff as _max_abs_diff, small_cfg

CFG = {**SMALL_RUN, "lr": 3e-3, "warmup_steps": 2}


def _cfg(**kw):
    return small_cfg(**{**CFG, **kw})


def _one_step(cfg, devices):
    prior = build_prior(cfg.prior)
    graphdef, state, _, head = init_state(cfg, prior)
    mesh = make_mesh(devices)
    state = jax.device_put(state, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    step = make_train_step(cfg, prior, graphdef, mesh, head)
    for _ in range(2):
        state, metrics = step(state)
    return jax.device_get(state.params), float(metrics["loss"])


def test_four_devices_equal_one_device(cpu4):
    cfg = _cfg()
    p1, l1 = _one_step(cfg, cpu4[:1])
    p4, l4 = _one_step(cfg, cpu4)
    assert abs(l1 - l4) < 1e-5
    chex.assert_trees_all_close(p1, p4, atol=1e-5, rtol=0)
    # The same test with another global batch must differ (the comparison can fail).
    p_other, _ = _one_step(_cfg(seed=1), cpu4)
    assert _max_abs_diff(p1, p_other) > 1e-3


def test_gradient_accumulation_equals_one_big_batch(cpu4):
    big, _ = _one_step(_cfg(batch_size=16, accum_steps=1), cpu4)
    accumulated, _ = _one_step(_cfg(batch_size=4, accum_steps=4), cpu4)
    chex.assert_trees_all_close(big, accumulated, atol=1e-5, rtol=0)


def test_indivisible_batch_is_rejected(cpu4):
    cfg = _cfg(batch_size=6)
    prior = build_prior(cfg.prior)
    graphdef, _, _, head = init_state(cfg, prior)
    with pytest.raises(ValueError, match="divisible"):
        make_train_step(cfg, prior, graphdef, make_mesh(cpu4), head)


def test_checkpoint_from_four_devices_restores_on_one(tmp_path, cpu4, full_precision):
    # full_precision: the 4-device all-reduce sums in another order than 1 device; at TF32 (only
    # under PFNJAX_EMULATE_TF32=1, these run on CPU devices everywhere) the last-bit differences
    # would be rounded up to ~1e-3 of an operand, backend noise that is not what this test checks.
    cfg = _cfg(steps=20)
    on4 = train(cfg, tmp_path / "run", progress=False, devices=cpu4, stop_after=10)
    assert int(on4.state.step) == 10
    one = jax.sharding.SingleDeviceSharding(cpu4[0])
    restored, _ = ckpt.restore(tmp_path / "run", ckpt.abstract_like(on4.state, one))
    assert {d for leaf in jax.tree.leaves(restored.params) for d in leaf.devices()} == {cpu4[0]}
    chex.assert_trees_all_equal(on4.state.params, restored.params)
    # ...and training continues there: a 4-device start and a 1-device finish (steps 11-20) equal
    # a 1-device straight run, up to the float noise of the 4-device all-reduce.
    finished = train(cfg, tmp_path / "run", progress=False, devices=cpu4[:1])
    assert int(finished.state.step) == 20
    straight = train(cfg, tmp_path / "straight", progress=False, devices=cpu4[:1])
    assert_same_training(finished.state.params, straight.state.params, cfg.optim.lr)
    assert _max_abs_diff(finished.state.params, on4.state.params) > 1e-3  # steps 11-20 did run


def test_checkpoint_policy_keeps_the_latest_k_plus_the_best(tmp_path):
    manager = ckpt.make_manager(tmp_path / "run", keep=2)
    losses = {5: 1.0, 10: 0.2, 15: 0.9, 20: 0.8, 25: 0.7, 30: 0.6}  # the best (10) is not among the latest
    for step, loss in losses.items():
        ckpt.save(manager, step, {"w": np.full(3, step, np.float32)}, {"step": step}, metrics={"loss": loss})
    manager.wait_until_finished()
    manager.close()
    assert ckpt.all_steps(tmp_path / "run") == [10, 25, 30]


def test_training_keeps_the_latest_k_plus_the_best_by_logged_loss(tmp_path):
    cfg = _cfg(steps=50, checkpoint_every=5, keep_checkpoints=2)
    train(cfg, tmp_path / "run", progress=False)
    logged = {r["step"]: r["loss"] for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())}
    best = min(range(5, 51, 5), key=lambda s: logged[s])
    assert ckpt.all_steps(tmp_path / "run") == sorted({45, 50, best})


_CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax
    {prelude}
    from pfnjax.presets import preset_config
    from pfnjax.training import train
    cfg = preset_config("test", **{cfg!r})

    def on_step(step, record):
        if step == {hang_at}:
            {action}

    train(cfg, sys.argv[1], progress=False, on_step=on_step)
    """
)


def _spawn(run_dir, hang_at, action):
    code = _CHILD.format(cfg=CFG, hang_at=hang_at, action=action, prelude=CHILD_TF32_PRELUDE)
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
    chex.assert_trees_all_close(straight.state.params, resumed.state.params, atol=1e-6, rtol=0)


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
    chex.assert_trees_all_close(straight.state.params, resumed.state.params, atol=1e-6, rtol=0)


def _committed(run_dir):
    return ckpt.all_steps(run_dir) if (run_dir / "checkpoints").is_dir() else []
