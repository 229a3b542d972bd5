"""Prior samplers: each prior is a frozen config with ``sample_dataset``; see :mod:`pfnjax.priors.base`."""

from pfnjax.priors.base import (
    Prior,
    get_prior,
    get_split_sampler,
    make_batch_sampler,
    paper_split,
    prior_names,
    register_prior,
    sample_batch,
    sample_datasets,
    loguniform_split,
    uniform_split,
)

__all__ = [
    "Prior", "get_prior", "get_split_sampler", "loguniform_split", "make_batch_sampler", "paper_split",
    "prior_names", "register_prior", "sample_batch", "sample_datasets", "uniform_split",
    "bnn", "bnn_binary", "gp", "linear", "mix", "scm",
]

# Prior modules register themselves on import (one line each, keep sorted).
# <prior-imports>
from pfnjax.priors import bnn  # noqa: E402,F401
from pfnjax.priors import bnn_binary  # noqa: E402,F401
from pfnjax.priors import gp  # noqa: E402,F401
from pfnjax.priors import linear  # noqa: E402,F401
from pfnjax.priors import mix  # noqa: E402,F401
from pfnjax.priors import scm  # noqa: E402,F401
# </prior-imports>
