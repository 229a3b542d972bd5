"""Test setup: 4 fake CPU devices (for data-parallel tests) and strict typed PRNG keys.

The XLA flag must be set before JAX initialises its backends, hence at import time here.
"""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent XLA cache per test run, shared by the xdist workers and the subprocesses they
# start (they inherit the controller's environment): many tests compile the same prior samplers
# and steps. Per run, so timings stay honest and no stale programs pile up; the controller made
# it and removes it at the end. A cache directory the user set is used and kept.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ and "PYTEST_XDIST_WORKER" not in os.environ
if _OWN_CACHE:
    import tempfile

    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="pfnjax-test-xla-cache-")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_legacy_prng_key", "error")

if os.environ.get("PFNJAX_EMULATE_TF32") == "1":
    # Run the whole suite as a GPU would compute float32 matmuls at default precision (TF32).
    import tf32_emulation  # noqa: E402

    tf32_emulation.install()


def pytest_sessionfinish(session, exitstatus):
    if _OWN_CACHE:
        import shutil

        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture
def full_precision():
    """Run the test's matmuls at full float32 precision on every backend.

    For tests asserting that two algebraically equal paths (cached vs full forward, chunked vs
    whole, an ensemble vs its members, permuted contexts) agree to float32 accuracy. At default
    precision a GPU computes float32 matmuls in TF32: operands are rounded to 10 mantissa bits, and
    two programs of different shapes round differently (about 1e-3 relative), which is noise of the
    backend, not a property of the algebra under test. On the CPU nothing changes (it always
    computes float32); under ``PFNJAX_EMULATE_TF32=1`` these tests see what a GPU sees.
    """
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture
def cpu4():
    """Four CPU devices, asked for by platform, so data-parallel tests also run on a GPU machine
    (``JAX_PLATFORMS=cuda,cpu``), where the default backend has one device."""
    devices = jax.devices("cpu")
    if len(devices) < 4:
        pytest.skip(f"needs 4 CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=4), have {len(devices)}")
    return devices[:4]


# --------------------------------------------------------------------------- shared scaffolding

# A run that trains in seconds on a CPU: the training, parallel and multi-process tests build on it.
SMALL_RUN = dict(num_features=2, seq_len=32, batch_size=8, steps=20, d_model=32, num_layers=2, num_heads=2,
                 d_ff=64, num_buckets=50, border_samples=5000, checkpoint_every=10, log_every=5)


def small_cfg(**overrides):
    """The ``test`` preset at :data:`SMALL_RUN` sizes, with ``overrides``."""
    from pfnjax.presets import preset_config

    return preset_config("test", **{**SMALL_RUN, **overrides})


# Put after `import jax` in a child process's code: a suite run under PFNJAX_EMULATE_TF32=1
# emulates TF32 in its child processes too, so their results compare with the parent's.
CHILD_TF32_PRELUDE = (
    "import os as _os, sys as _sys\n"
    "if _os.environ.get('PFNJAX_EMULATE_TF32') == '1':\n"
    f"    _sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
    "    import tf32_emulation\n"
    "    tf32_emulation.install()\n"
)


def env_without_xla_flags(**extra: str) -> dict:
    """This process's environment without the suite's fake-device flag, for a child process that
    runs as a user would (one CPU device), plus ``extra``."""
    return {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"} | extra


def max_abs_diff(a, b) -> float:
    """Largest absolute difference between two pytrees of arrays with the same structure."""
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def assert_same_training(params_a, params_b, lr: float) -> None:
    """Two runs on the same data whose gradients were summed in different orders (all-reduce over
    another device count, gloo vs in-process collectives) agree to float noise.

    Adam divides by sqrt(v): for an element whose gradient is mostly float noise, that noise moves
    it by a fraction of lr a step (measured: up to ~1e-4 after 10-20 steps for well under 1% of the
    elements). Different data would move every element by ~lr, so the typical element must agree
    to float precision and none may differ by more than a tenth of a step.
    """
    diffs = np.concatenate([np.abs(np.asarray(x) - np.asarray(y)).ravel()
                            for x, y in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b))])
    assert np.median(diffs) < 1e-7 and np.mean(diffs < 1e-6) > 0.99, np.sort(diffs)[-10:]
    assert diffs.max() < 0.1 * lr, diffs.max()


def trees_equal(a, b) -> bool:
    """Whether two pytrees hold bitwise-identical arrays."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))
