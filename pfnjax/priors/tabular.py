r"""Tabular classification post-processing shared by the SCM and GP-classification priors.

Generative process of :func:`postprocess_classification`, one dataset (``x f32[T, F_max]`` and a
continuous ``y f32[T]`` from a prior, context ``t < s``):

* *Categorical features*: with prob ``categorical_feature_p`` a dataset gets categorical columns; each
  used column is then categorical with prob :math:`q \sim \mathcal U[0,1]` (or ``categorical_column_p``).
  A categorical column is cut into :math:`k` levels at :math:`k-1` thresholds drawn at random rows
  (:math:`k = 2` w.p. 0.5, else :math:`\mathcal U\{2..\max(\mathrm{round}(10\,\mathrm{Gamma}(1)), 2)\}`,
  capped at ``max_categories``) and the level indices become random integer codes (shuffled w.p. 0.7,
  reversed w.p. 0.5).
* *Missing values*: each used feature value is NaN with prob ``missing_rate`` (iid). NaN appears only in
  used feature columns, never in ``y`` or in unused columns. **Consumers must handle NaN**: the model's
  x encoder (:mod:`pfnjax.model.transformer`) maps NaN to 0 (mean imputation after standardisation).
* *Standardisation*: soft outlier clipping at ``outlier_sigma`` standard deviations
  (:math:`x \leftarrow \min(x, \mathrm{hi} + \log(1 + |x|))`, likewise below), then per-column z-scoring over all ``T``
  rows, both ignoring NaN. Rescaling x by the used-feature fraction is **not** done here: the model's
  x encoder does it (``ModelConfig.feature_scaling``).
* *Classes* (:func:`discretize_targets`): the target is z-scored; the nominal class count is
  :math:`C = 2` w.p. ``two_class_p`` (0.5), else :math:`C \sim \mathcal U\{2..C_{\max}\}`, so
  :math:`P(C = 2) = 0.5 + 0.5/(C_{\max} - 1)`. With prob ``rank_threshold_p`` (0.5) the :math:`C - 1`
  thresholds are random *context* target values (rank-based), else :math:`\mathcal N(0,1)` values
  (value-based); :math:`\tilde y_t = \#\{j : y_t > \tau_j\}`. Then classes that no context row carries are
  merged into their ordinal neighbour (i.e. thresholds that leave a bin empty in the context are
  dropped), labels are made dense, and a uniformly random permutation of the
  :math:`C_{\text{eff}}` remaining classes is applied.

**Context and query share classes.** After the merge every query label is carried by at least one context
row, and the labels are exactly :math:`\{0, \dots, C_{\text{eff}} - 1\}` with
:math:`C_{\text{eff}} = \max_{t < s} y_t + 1` (:func:`num_context_classes`). In rank mode the thresholds are
distinct context values below the context maximum, so :math:`C_{\text{eff}} = \min(C, U)` where
:math:`U` is the number of distinct target values in the context (so exactly :math:`C` classes whenever the
context has at least :math:`C` distinct values). In value mode some of the :math:`C` bins may hold no context
row and :math:`C_{\text{eff}} < C` (as in the reference, whose ``normalize_labels`` also made labels dense);
occasionally (about 3% of value-mode datasets at T = 200) every context row lands in one bin and the dataset
has a single class. The reference (as we read it) reshuffled rows up to 10 times until context and query
class sets matched, and otherwise set the dataset's labels to -100 (ignored by the loss); the merge needs
neither a loop nor an ignore label.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from pfnjax.numerics import soft_clip_outliers, standardize
from pfnjax.priors.base import feature_mask
from pfnjax.priors.rng import RandomStream
from pfnjax.types import Array, PRNGKey

CLIP = 1e15  # |values| are clipped here so float32 never overflows (the SCM's hidden units too).


# --------------------------------------------------------------------------- shared tabular config


@dataclasses.dataclass(frozen=True)
class TabularClassificationConfig:
    """Post-processing shared by the tabular classification priors (SCM and GP-classification).

    Attributes:
        max_num_classes: C_max, the largest class count (the model's number of class logits).
        num_classes: if set, every dataset has this nominal class count (else the TabPFN distribution).
        two_class_p: probability of C = 2; otherwise C ~ U{2..max_num_classes}.
        rank_threshold_p: probability of rank-based thresholds (random context target values);
            otherwise value-based thresholds at N(0, 1) draws.
        categorical_feature_p: probability that a dataset has categorical columns at all.
        categorical_column_p: in such a dataset, the probability that a used column is categorical;
            ``None`` draws it ~ U[0, 1] per dataset (reference).
        max_categories: cap on the number of levels of a categorical column (static shape).
        missing_rate: probability that a used feature value is NaN (iid). Default 0 (off).
        outlier_sigma: soft-clip features at this many std devs before z-scoring; ``None`` disables.
    """

    max_num_classes: int = 10
    num_classes: int | None = None
    two_class_p: float = 0.5
    rank_threshold_p: float = 0.5
    categorical_feature_p: float = 0.2
    categorical_column_p: float | None = None
    max_categories: int = 32
    missing_rate: float = 0.0
    outlier_sigma: float | None = 4.0
    task: str = dataclasses.field(default="classification", init=False)

    @property
    def makes_missing(self) -> bool:
        """Whether features can be NaN: ``missing_rate > 0``."""
        return self.missing_rate > 0

    def __post_init__(self) -> None:
        if not isinstance(self.max_num_classes, int) or self.max_num_classes < 2:
            raise ValueError(f"max_num_classes must be an int >= 2, got {self.max_num_classes!r}")
        if self.num_classes is not None and not (2 <= self.num_classes <= self.max_num_classes):
            raise ValueError(
                f"num_classes must be in [2, max_num_classes={self.max_num_classes}], got {self.num_classes}"
            )
        for name in ("two_class_p", "rank_threshold_p", "categorical_feature_p", "missing_rate"):
            check_prob(name, getattr(self, name))
        if self.categorical_column_p is not None:
            check_prob("categorical_column_p", self.categorical_column_p)
        if not isinstance(self.max_categories, int) or self.max_categories < 2:
            raise ValueError(f"max_categories must be an int >= 2, got {self.max_categories!r}")
        if self.outlier_sigma is not None and self.outlier_sigma <= 0:
            raise ValueError(f"outlier_sigma must be positive or None, got {self.outlier_sigma}")


def check_prob(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")


# --------------------------------------------------------------------------- classes


def sample_num_classes(
    rng: RandomStream, max_num_classes: int, two_class_p: float = 0.5, num_classes: int | None = None
) -> Array:
    """Nominal class count: 2 w.p. ``two_class_p``, else ``U{2..max_num_classes}`` (or fixed ``num_classes``)."""
    if num_classes is not None:
        return jnp.asarray(num_classes, jnp.int32)
    two = rng.bernoulli(two_class_p)
    uniform_c = rng.randint((), 2, max_num_classes + 1)
    return jnp.where(two, 2, uniform_c).astype(jnp.int32)


def rank_thresholds(
    rng: RandomStream, y: Array, single_eval_pos: Array, num_thresholds: Array, max_thresholds: int
) -> Array:
    """``f32[max_thresholds]``: up to ``num_thresholds`` distinct context values of ``y``, below the context max.

    Unused slots are ``+inf`` (they never fire). Thresholding at these values puts at least one context row
    in every bin: bin ``j`` holds the row whose value is threshold ``j`` and the top bin the context maximum.
    """
    seq_len = y.shape[0]
    n = max(seq_len, max_thresholds)
    pos = jnp.arange(n)
    y_pad = jnp.concatenate([y, jnp.full((n - seq_len,), jnp.inf, y.dtype)]) if n > seq_len else y
    in_ctx = pos < single_eval_pos
    s = jnp.sort(jnp.where(in_ctx, y_pad, jnp.inf))
    ctx_max = s[jnp.maximum(single_eval_pos - 1, 0)]
    is_new = jnp.concatenate([jnp.ones((1,), bool), s[1:] != s[:-1]])
    candidate = is_new & in_ctx & (s < ctx_max)
    scores = jnp.where(candidate, rng.uniform((n,)), 2.0)
    order = jnp.argsort(scores)[:max_thresholds]
    valid = (jnp.arange(max_thresholds) < num_thresholds) & candidate[order]
    return jnp.where(valid, s[order], jnp.inf)


def value_thresholds(rng: RandomStream, num_thresholds: Array, max_thresholds: int) -> Array:
    """``f32[max_thresholds]``: ``num_thresholds`` N(0, 1) draws, the rest ``+inf``."""
    return jnp.where(jnp.arange(max_thresholds) < num_thresholds, rng.normal((max_thresholds,)), jnp.inf)


def merge_classes_absent_from_context(
    labels: Array, single_eval_pos: Array, max_num_classes: int
) -> tuple[Array, Array]:
    """Make ordinal labels dense over the classes the context carries.

    A class that no context row carries is merged into the largest present class below it (or, if none,
    the smallest present class): for threshold labels this drops the thresholds that leave a context bin
    empty. Returns ``(dense labels i32[T] in [0, C_eff), C_eff)``; every query label is a context label.
    """
    in_ctx = jnp.arange(labels.shape[0]) < jnp.maximum(single_eval_pos, 1)
    classes = jnp.arange(max_num_classes)
    present = jnp.any((labels[:, None] == classes[None, :]) & in_ctx[:, None], axis=0)
    lower = jax.lax.cummax(jnp.where(present, classes, -1))
    mapped = jnp.where(lower >= 0, lower, jnp.argmax(present))
    dense = jnp.cumsum(present) - 1
    return dense[mapped][labels].astype(jnp.int32), jnp.sum(present).astype(jnp.int32)


def random_class_permutation(rng: RandomStream, labels: Array, num_classes: Array, max_num_classes: int) -> Array:
    """Apply a uniformly random permutation of ``{0..num_classes-1}`` to ``labels``."""
    scores = jnp.where(jnp.arange(max_num_classes) < num_classes, rng.uniform((max_num_classes,)), 2.0)
    return jnp.argsort(scores)[labels].astype(jnp.int32)


def discretize_targets(
    rng: RandomStream,
    y: Array,
    single_eval_pos: Array,
    num_classes: Array,
    max_num_classes: int,
    rank_threshold_p: float = 0.5,
) -> tuple[Array, Array, Array]:
    """Turn a continuous target ``f32[T]`` into class labels shared by context and queries.

    ``y`` should be z-scored. Draws rank- or value-based thresholds (see the module docstring), merges
    classes absent from the context, and applies a random class permutation.

    Returns:
        ``(labels i32[T] in [0, C_eff), C_eff i32, rank_mode bool)``.
    """
    rank_mode = rng.bernoulli(rank_threshold_p)
    m = max_num_classes - 1
    thr = jnp.where(
        rank_mode,
        rank_thresholds(rng, y, single_eval_pos, num_classes - 1, m),
        value_thresholds(rng, num_classes - 1, m),
    )
    raw = jnp.sum(y[:, None] > thr[None, :], axis=1).astype(jnp.int32)
    dense, c_eff = merge_classes_absent_from_context(raw, single_eval_pos, max_num_classes)
    labels = random_class_permutation(rng, dense, c_eff, max_num_classes)
    return labels, c_eff, rank_mode


def num_context_classes(y: Array, single_eval_pos: Array) -> Array:
    """Number of classes of a dataset from these priors: ``max(y[:sep]) + 1`` (labels are dense).

    Works on one dataset (``y i32[T]``, scalar sep) or a batch (``y i32[B, T]``, ``sep i32[B]``).
    """
    sep = jnp.asarray(single_eval_pos)[..., None]
    in_ctx = jnp.arange(y.shape[-1]) < sep
    return (jnp.max(jnp.where(in_ctx, y, -1), axis=-1) + 1).astype(jnp.int32)


# --------------------------------------------------------------------------- features


def make_categorical(
    rng: RandomStream,
    x: Array,
    used: Array,
    categorical_feature_p: float,
    categorical_column_p: float | None,
    max_categories: int,
) -> tuple[Array, Array]:
    """Quantise a random subset of used columns of ``x f32[T, F]`` into random integer codes.

    Returns ``(x, categorical bool[F])``. Level counts and codes follow TabPFN v1 (module docstring).
    """
    seq_len, num_cols = x.shape
    has_cat = rng.bernoulli(categorical_feature_p)
    q = rng.uniform() if categorical_column_p is None else categorical_column_p
    is_cat = has_cat & used & rng.bernoulli(q, (num_cols,))
    # Gamma(1) is Exponential(1); the reference's level count is max(round(gammavariate(1, 10)), 2).
    exponential = -jnp.log1p(-rng.uniform((num_cols,)))
    n_unique = jnp.clip(jnp.round(10.0 * exponential), 2, max_categories).astype(jnp.int32)
    k = jnp.where(rng.bernoulli(0.5, (num_cols,)), 2, rng.randint((num_cols,), 2, n_unique + 1))
    m = max_categories - 1
    rows = rng.randint((m, num_cols), 0, seq_len)
    thr = jnp.take_along_axis(x, rows, axis=0)  # [m, F]: thresholds at random rows
    thr = jnp.where(jnp.arange(m)[:, None] < (k - 1)[None, :], thr, jnp.inf)
    level = jnp.sum(x[:, None, :] > thr[None, :, :], axis=1)  # [T, F] in [0, k)
    scores = jnp.where(
        jnp.arange(max_categories)[None, :] < k[:, None], rng.uniform((num_cols, max_categories)), 2.0
    )
    perm = jnp.argsort(scores, axis=1)  # row f starts with a permutation of 0..k_f-1
    shuffled = jnp.take_along_axis(perm.T, level, axis=0)  # [T, F]
    code = jnp.where(rng.bernoulli(0.7, (num_cols,)), shuffled, level)
    code = jnp.where(rng.bernoulli(0.5, (num_cols,)), k - 1 - code, code)
    return jnp.where(is_cat, code.astype(x.dtype), x), is_cat


def insert_missing(rng: RandomStream, x: Array, used: Array, missing_rate: float) -> Array:
    """Set each used value of ``x f32[T, F]`` to NaN with probability ``missing_rate``."""
    if missing_rate <= 0.0:
        return x
    missing = rng.bernoulli(missing_rate, x.shape) & used[None, :]
    return jnp.where(missing, jnp.nan, x)


def postprocess_features(
    rng: RandomStream, x: Array, num_features: Array, cfg: TabularClassificationConfig
) -> tuple[Array, Array]:
    """Categorical columns, missing values, outlier clipping and z-scoring of the used columns of
    ``x f32[T, F_max]`` (unused columns become 0). Returns ``(x, categorical bool[F_max])``."""
    used = feature_mask(num_features, x.shape[1])
    x = jnp.nan_to_num(x.astype(jnp.float32), posinf=CLIP, neginf=-CLIP)
    x, is_cat = make_categorical(rng, x, used, cfg.categorical_feature_p, cfg.categorical_column_p, cfg.max_categories)
    x = insert_missing(rng, x, used, cfg.missing_rate)
    if cfg.outlier_sigma is not None:
        x = soft_clip_outliers(x, cfg.outlier_sigma)
    return jnp.where(used, standardize(x), 0.0), is_cat


def postprocess_classification(
    key: PRNGKey | RandomStream,
    x: Array,
    y: Array,
    single_eval_pos: Array,
    num_features: Array,
    cfg: TabularClassificationConfig,
) -> tuple[Array, Array, dict[str, Array]]:
    """Shared tail of the tabular classification priors: features, then classes.

    ``x f32[T, F_max]`` (unused columns arbitrary), ``y f32[T]`` continuous. Returns
    ``(x, labels i32[T], info)``; ``info`` holds ``num_classes`` (nominal C), ``num_context_classes``
    (C_eff), ``rank_mode`` and ``categorical bool[F_max]``.
    """
    rng = key if isinstance(key, RandomStream) else RandomStream(key)
    x, is_cat = postprocess_features(rng, x, num_features, cfg)
    y = standardize(jnp.nan_to_num(y.astype(jnp.float32), posinf=CLIP, neginf=-CLIP))
    c = sample_num_classes(rng, cfg.max_num_classes, cfg.two_class_p, cfg.num_classes)
    labels, c_eff, rank_mode = discretize_targets(rng, y, single_eval_pos, c, cfg.max_num_classes, cfg.rank_threshold_p)
    info = {"num_classes": c, "num_context_classes": c_eff, "rank_mode": rank_mode, "categorical": is_cat}
    return x, labels, info
