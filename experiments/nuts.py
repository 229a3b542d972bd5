"""NUTS on one dataset as a single jitted function of the data, with numpyro's sampler.

``numpyro.infer.MCMC.run`` re-initialises the model in Python on every call, a fixed cost of
about two seconds per dataset on the 2-core CPU that does not depend on the number of samples.
The baselines of the paper experiments run NUTS on hundreds of datasets of the same shape, so
they build numpyro's NUTS kernel once (``numpyro.infer.hmc.hmc`` with a potential generated from
the data) and run warm-up (step size and diagonal mass adaptation) and sampling in one compiled
``lax.scan``: the timing is the sampler's, not the set-up's.
"""

from __future__ import annotations

from typing import Any, Callable

import jax


class JittedNUTS:
    """``samples(key, *data)`` -> constrained posterior samples ``{site: [samples, ...]}``.

    ``model(*data)`` is a numpyro model; ``example_data`` fixes the shapes (a dataset of another
    shape compiles once more). Chains start from ``init_to_uniform`` drawn for ``example_data``
    and mapped back to the constrained space, so they are valid for every dataset of the model.
    """

    def __init__(self, model: Callable, example_data: tuple, warmup: int, samples: int, max_tree_depth: int = 10):
        from numpyro.infer.hmc import hmc
        from numpyro.infer.util import initialize_model

        info = initialize_model(jax.random.key(0), model, model_args=example_data, dynamic_args=True)
        self._init_params = info.param_info.z
        self._postprocess = info.postprocess_fn
        self._init_kernel, self._sample_kernel = hmc(potential_fn_gen=info.potential_fn, algo="NUTS")
        self.warmup, self.num_samples, self.max_tree_depth = warmup, samples, max_tree_depth
        self._run = jax.jit(self._samples)

    def _samples(self, key: jax.Array, *data: Any) -> dict:
        state = self._init_kernel(self._init_params, self.warmup, model_args=data, rng_key=key,
                                  max_tree_depth=self.max_tree_depth)

        def step(s, _):
            s = self._sample_kernel(s, model_args=data)
            return s, s.z

        state, _ = jax.lax.scan(step, state, None, length=self.warmup)  # adapts while s.i < warmup
        _, z = jax.lax.scan(step, state, None, length=self.num_samples)
        return jax.vmap(self._postprocess(*data))(z)

    def samples(self, key: jax.Array, *data: Any) -> dict:
        return self._run(key, *data)
