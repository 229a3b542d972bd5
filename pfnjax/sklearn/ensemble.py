"""What each ensemble member sees: its column order, its class relabelling, its transform, its
context rows and its one-hot and principal-component options (TabPFN v1's ensembling)."""

from __future__ import annotations

import dataclasses

import numpy as np

from pfnjax.preprocessing import stratified_subsample

MAX_ONEHOT_LEVELS = 10  # categorical columns with more levels stay ordinal codes


@dataclasses.dataclass(frozen=True)
class EnsembleOptions:
    """The estimator parameters that shape the ensemble."""

    n_estimators: int
    feature_shuffling: str  # "random", "rotate" or "none"
    class_shuffling: str  # "shift", "random" or "none"
    preprocessing: str  # "power", "quantile", "standard" or "none"
    max_context_size: int
    categorical_encoding: str  # "ordinal", "onehot" or "mixed"
    svd_features: str  # "none", "mixed" or "all"


def member_configs(options: EnsembleOptions, n_rows: int, n_features: int, n_classes: int, y_codes,
                   categorical_levels: dict[int, int], max_features: int, rng: np.random.Generator) -> list[dict]:
    """Feature permutation, class relabelling, transform and context rows of every ensemble member.

    ``class_permutation[c]`` is the label the member's model sees for class ``c``; ``onehot`` maps
    the positions of the member's expanded categorical columns to their level counts."""
    members = []
    for i in range(options.n_estimators):
        if i == 0 or options.feature_shuffling == "none":
            perm = np.arange(n_features)
        elif options.feature_shuffling == "rotate":
            perm = np.roll(np.arange(n_features), -(i % n_features))
        else:
            perm = rng.permutation(n_features)
        if i == 0 or options.class_shuffling == "none":
            classes = np.arange(n_classes)
        elif options.class_shuffling == "shift":
            classes = (np.arange(n_classes) + i) % n_classes
        else:
            classes = rng.permutation(n_classes)
        transform = None
        if options.preprocessing in ("power", "quantile") and i % 2 == 1:
            transform = options.preprocessing
        rows = None
        if n_rows > options.max_context_size:
            rows = stratified_subsample(rng, n_rows, options.max_context_size, y_codes)
        second_half = i // 2 % 2 == 1  # members 2, 3, 6, 7, ...: the "mixed" options' other half
        onehot = options.categorical_encoding == "onehot" or (options.categorical_encoding == "mixed" and second_half)
        svd = options.svd_features == "all" or (options.svd_features == "mixed" and second_half)
        members.append({"feature_permutation": perm, "class_permutation": classes, "transform": transform,
                        "context_rows": rows,
                        "onehot": onehot_columns(perm, categorical_levels, max_features) if onehot else {},
                        "svd": svd})
    return members


def onehot_columns(perm: np.ndarray, categorical_levels: dict[int, int], max_features: int) -> dict[int, int]:
    """``{position in the permuted columns: levels}`` of the categorical columns a one-hot member
    expands (3 to ``MAX_ONEHOT_LEVELS`` levels; two levels already are one indicator), or ``{}``
    when the expanded table would be wider than the model."""
    expand = {p: categorical_levels[c] for p, c in enumerate(perm)
              if 3 <= categorical_levels.get(int(c), 0) <= MAX_ONEHOT_LEVELS}
    width = len(perm) + sum(k - 1 for k in expand.values())
    return expand if width <= max_features else {}


__all__ = ["EnsembleOptions", "MAX_ONEHOT_LEVELS", "member_configs", "onehot_columns"]
