"""Priors and data samplers built from a run's configuration sections (:mod:`pfnjax.config`)."""

from __future__ import annotations

from typing import Callable

from pfnjax.config import DataConfig, PriorConfig
from pfnjax.priors.base import (
    Prior,
    all_features,
    get_prior,
    loguniform_feature_count,
    prior_from_spec,
    uniform_feature_count,
)
from pfnjax.types import Array, PRNGKey

FeatureCountSampler = Callable[[PRNGKey, int], Array]


def build_prior(cfg: PriorConfig) -> Prior:
    """The prior of a config: rebuilt from ``cfg.spec`` (an instance's), else the registered prior
    ``cfg.name`` with ``cfg.kwargs`` (JSON lists become tuples)."""
    if cfg.spec is not None:
        return prior_from_spec(cfg.spec)
    return get_prior(cfg.name, **cfg.kwargs)


def feature_count_sampler(cfg: DataConfig) -> FeatureCountSampler:
    """Each dataset's used-feature count: all of them, or ``min_features..num_features`` drawn
    uniformly or log-uniformly (``cfg.feature_count_dist``)."""
    if cfg.min_features is None:
        return all_features
    if cfg.feature_count_dist == "loguniform":
        return loguniform_feature_count(cfg.min_features)
    return uniform_feature_count(cfg.min_features)


__all__ = ["FeatureCountSampler", "build_prior", "feature_count_sampler", "prior_from_spec"]
