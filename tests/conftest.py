"""Test setup: 4 fake CPU devices (for data-parallel tests) and strict typed PRNG keys.

The XLA flag must be set before JAX initialises its backends, hence at import time here.
"""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_legacy_prng_key", "error")


@pytest.fixture
def key():
    return jax.random.key(0)
