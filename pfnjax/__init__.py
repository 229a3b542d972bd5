"""pfnjax: Prior-Data Fitted Networks in JAX/Flax.

Function-level API::

    import pfnjax, jax
    prior = pfnjax.get_prior("gp")
    batch = pfnjax.sample_batch(prior, jax.random.key(0), pfnjax.BatchShape(8, 100, 1))
    result = pfnjax.train(pfnjax.preset_config("tiny", steps=200), run_dir=None)
    pfn = pfnjax.PFN.from_train_result(result)          # or pfnjax.load("runs/gp-tiny")
    dist = pfn.predict(x_ctx, y_ctx, x_qry)             # a BarDistribution
    dist.mean(), dist.quantile(jax.numpy.array([0.05, 0.95]))

``pfnjax.train`` is the training function; the training package is :mod:`pfnjax.training`.
The names below are imported on first use, so ``import pfnjax.predict`` loads neither the
training code nor the priors.
"""

import importlib
from typing import Any

__version__ = "0.2.0"

# public name -> the module that defines it
_EXPORTS = {
    "numerics": "pfnjax",
    "CheckpointError": "pfnjax.checkpoint",
    "TrainConfig": "pfnjax.config",
    "BarDistribution": "pfnjax.distributions.bar_distribution",
    "CategoricalDistribution": "pfnjax.distributions.categorical",
    "BarHead": "pfnjax.heads",
    "ClassHead": "pfnjax.heads",
    "Head": "pfnjax.heads",
    "ClassicConfig": "pfnjax.model",
    "ModelIO": "pfnjax.model",
    "PFNTransformer": "pfnjax.model",
    "build_model": "pfnjax.model",
    "model_names": "pfnjax.model",
    "register_model": "pfnjax.model",
    "register_evaluator": "pfnjax.evaluators",
    "register_head": "pfnjax.heads",
    "register_prior": "pfnjax.priors",
    "Trainer": "pfnjax.training",
    "finetune": "pfnjax.fine_tuning",
    "PFN": "pfnjax.predict",
    "ClassProbabilities": "pfnjax.predict",
    "load": "pfnjax.predict",
    "shipped_models": "pfnjax.predict",
    "PRESETS": "pfnjax.presets",
    "preset_config": "pfnjax.presets",
    "get_prior": "pfnjax.priors",
    "make_batch_sampler": "pfnjax.priors",
    "prior_names": "pfnjax.priors",
    "sample_batch": "pfnjax.priors",
    "train": "pfnjax.training",
    "Batch": "pfnjax.types",
    "BatchShape": "pfnjax.types",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pfnjax' has no attribute {name!r}")
    module = _EXPORTS[name]
    value = importlib.import_module(f"pfnjax.{name}" if module == "pfnjax" else module)
    if module != "pfnjax":
        value = getattr(value, name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
