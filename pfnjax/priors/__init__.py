"""Prior samplers: each prior is a frozen config with ``sample_dataset``; see :mod:`pfnjax.priors.base`.

Every module of this package is imported here and registers its priors (``@register_prior``), so
a new prior is one new file: ``pfnjax train --prior NAME`` and ``pfnjax eval`` find it with no
other edit. A prior in a module of your own registers the same way once its module is imported
(``pfnjax train --import MODULE --prior NAME``, or ``--prior MODULE:Class``).
"""

from pfnjax.priors.base import (
    Prior,
    check_prior_settings,
    discover_priors,
    get_prior,
    get_split_sampler,
    loguniform_split,
    make_batch_sampler,
    paper_split,
    prior_from_spec,
    prior_info,
    prior_names,
    prior_spec,
    register_prior,
    sample_batch,
    sample_datasets,
    uniform_split,
)

discover_priors()

__all__ = [
    "Prior", "check_prior_settings", "get_prior", "get_split_sampler", "loguniform_split", "make_batch_sampler",
    "paper_split", "prior_from_spec", "prior_info", "prior_names", "prior_spec", "register_prior", "sample_batch",
    "sample_datasets", "uniform_split",
]
