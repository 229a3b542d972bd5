"""pfnjax: Prior-Data Fitted Networks in JAX/Flax.

Function-level API::

    import pfnjax, jax
    prior = pfnjax.get_prior("gp")
    batch = pfnjax.sample_batch(prior, jax.random.key(0), pfnjax.BatchShape(8, 100, 1))
    result = pfnjax.train(pfnjax.preset_config("tiny", steps=200), run_dir=None)
    pfn = pfnjax.PFN.from_train_result(result)          # or pfnjax.load("runs/gp-tiny")
    dist = pfn.predict(x_ctx, y_ctx, x_qry)             # a BarDistribution
    dist.mean(), dist.quantile(jax.numpy.array([0.05, 0.95]))
"""

from pfnjax import numerics
from pfnjax.distributions.bar import BarDistribution
from pfnjax.distributions.categorical import CategoricalDistribution
from pfnjax.model import ModelConfig, PFNTransformer
from pfnjax.predict import PFN, ClassProbabilities, load
from pfnjax.priors import get_prior, make_batch_sampler, prior_names, sample_batch
from pfnjax.train import CheckpointError, TrainConfig, preset_config, train
from pfnjax.types import Batch, BatchShape

__version__ = "0.1.0"

__all__ = [
    "Batch",
    "BarDistribution",
    "BatchShape",
    "CategoricalDistribution",
    "CheckpointError",
    "ClassProbabilities",
    "ModelConfig",
    "PFN",
    "PFNTransformer",
    "TrainConfig",
    "get_prior",
    "load",
    "make_batch_sampler",
    "numerics",
    "preset_config",
    "prior_names",
    "sample_batch",
    "train",
]
