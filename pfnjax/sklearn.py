"""scikit-learn estimators backed by a PFN: :class:`PFNRegressor` and :class:`PFNClassifier`.

``fit`` does no training: it stores the (preprocessed) training set as the PFN's context and
encodes it once (per-layer keys/values); ``predict`` streams the queries through the model against
that cache. What happens, following TabPFN v1's inference:

* **Preprocessing**, fitted on the context rows only (:mod:`pfnjax.preprocessing`): z-scoring,
  optionally a power (Yeo-Johnson) or quantile transform for every other ensemble member, soft
  outlier clipping at ``outlier_sigma`` std devs, z-scoring again; NaN becomes the context column
  mean if the model was trained with missing values, otherwise NaN/inf raise a ``ValueError``.
  Regression targets are standardised with the context's mean ``μ`` and std ``σ``; the predicted
  bar distribution is mapped back to the original units (borders ``* σ + μ``).
* **Ensembling** over ``n_estimators`` members. Member ``i`` sees the columns in a random order
  (``feature_shuffling="random"``; member 0 keeps the given order) or rotated by ``i`` places
  (``"rotate"``); a classifier's member ``i`` sees the labels relabelled, cyclically shifted
  ``(y + i) % C`` (``class_shuffling="shift"``, TabPFN v1) or by a random permutation (``"random"``),
  which is undone on its output; members with odd ``i`` get the power or quantile transform.
  Regression averages the members' bar distributions
  (:func:`pfnjax.distributions.bar.average_distributions`, a mixture); classification averages the
  members' logits and applies a softmax at ``softmax_temperature`` (TabPFN v1: 0.8).
* **Context size**: above ``max_context_size`` rows each member uses its own random subsample
  (stratified so every class stays present), with a ``UserWarning``.
* **Bucketed shapes, deterministic predictions**: queries always run in fixed-size chunks
  (``chunk_size``), so one compiled program serves any number of query rows and a row's prediction
  does not depend on which or how many other rows are predicted with it; contexts are zero-padded
  to power-of-two row counts, so training sets of similar sizes share a program too.
* **Categorical columns** (pandas ``category``, ``bool`` or string columns) become ordinal codes
  fitted on the training rows, as the TabPFN prior codes categories; unseen levels are missing.
  With ``categorical_encoding="mixed"`` (default) half the members see columns of 3 to 10 levels
  as one-hot indicators instead: a code order such as Bad / Good / Medium hides a linear effect
  that indicators show.
* **Whitened principal components** (``svd_features="mixed"``, default): the same members also see
  the whitened principal components of their columns as extra columns, so a separating direction
  of little variance among correlated columns is a column of its own.
* **More classes than the model's outputs**: error-correcting output codes (``many_classes="ecoc"``,
  :func:`ecoc_codebook`).
* **Pickling** keeps the encoded context (host arrays): a reloaded estimator does not re-encode the
  training data and predicts exactly as before.

Checks of :func:`sklearn.utils.estimator_checks.check_estimator`: both estimators pass all of them
with the shipped default models (``tests/test_sklearn.py`` runs them), so no check is marked as
an expected failure. Notes: ``fit`` ignores nothing (there is no ``sample_weight``); the estimators
accept NaN only when the model was trained with missing values (the ``allow_nan`` tag follows the
model, so sklearn's NaN/inf check is skipped for ``cls-small`` and ``reg-small``, which were trained
with missing values, and runs for ``reg-tiny``). The one
check that does not apply is ``check_array_api_input``, which scikit-learn itself skips unless
``SCIPY_ARRAY_API=1``: the estimators convert inputs to numpy and do not claim array-API support.
"""

from __future__ import annotations

import numbers
import os
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
    from sklearn.preprocessing import LabelEncoder
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # scikit-learn is an optional dependency of pfnjax
    raise ImportError(
        "pfnjax.sklearn needs scikit-learn >= 1.6, which is not installed here: pip install 'pfnjax[sklearn]'"
    ) from exc

from pfnjax.distributions import bar
from pfnjax.predict import PFN, load
from pfnjax.preprocessing import (
    CategoricalEncoder,
    ContextScaler,
    TargetScaler,
    apply_in_row_chunks,
    stratified_subsample,
)
from pfnjax import checkpoint as ckpt
from pfnjax.heads import BarHead, ClassHead, Head
from pfnjax.types import Array

DEFAULT_REGRESSOR = "reg-small"
DEFAULT_CLASSIFIER = "cls-small"
PREPROCESSING = ("power", "quantile", "standard", "none")
CONSTANT_COLUMNS = ("error", "drop")
MANY_CLASSES = ("ecoc", "error")
FEATURE_SHUFFLING = ("random", "rotate", "none")
CLASS_SHUFFLING = ("shift", "random", "none")
CATEGORICAL_ENCODINGS = ("ordinal", "onehot", "mixed")
SVD_FEATURES = ("none", "mixed", "all")
MAX_ONEHOT_LEVELS = 10  # categorical columns with more levels stay ordinal codes

_MODEL_CACHE: dict[str, PFN] = {}


def resolve_model(model) -> PFN:
    """A :class:`PFN` from a ``PFN``, a run directory, or a shipped pretrained name.

    Loaded models are cached per path and latest checkpoint step, so refitting (or cloning) an
    estimator does not reload or recompile, while a run that has moved on is reloaded.
    """
    if isinstance(model, PFN):
        return model
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        key = f"{path.absolute()}@{ckpt.latest_step(path)}" if path.exists() else str(model)
        if key not in _MODEL_CACHE:
            _MODEL_CACHE[key] = load(model)
        return _MODEL_CACHE[key]
    raise TypeError(f"model must be a pfnjax.PFN, a run directory or a pretrained name; got {type(model).__name__}")


def _model_name(model) -> str:
    return type(model).__name__ if isinstance(model, PFN) else repr(str(model))


class _PFNEstimator(BaseEstimator):
    """Shared fit/predict machinery; see the module docstring."""

    _head_type: type = Head  # the head a model needs: BarHead (regressor) or ClassHead (classifier)
    _numeric_y = False

    # ------------------------------------------------------------------ sklearn plumbing
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self._model_allows_nan()
        return tags

    def _model_allows_nan(self) -> bool:
        try:
            return bool(resolve_model(self.model).trained_with_missing)
        except Exception:  # tags must not raise for a bad model argument
            return False

    def __getstate__(self):
        # The encoded context travels as host arrays: loading does not re-encode the training data,
        # and the reloaded estimator predicts exactly what the pickled one did.
        state = dict(super().__getstate__())
        if "_context_cache" in state:
            state["_context_cache"] = jax.tree.map(np.asarray, state["_context_cache"])
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "_context_cache" in self.__dict__:
            self._context_cache = jax.tree.map(jnp.asarray, self._context_cache)

    # ------------------------------------------------------------------ parameter checks
    def _check_params(self) -> None:
        if not isinstance(self.n_estimators, numbers.Integral) or self.n_estimators < 1:
            raise ValueError(f"n_estimators must be an int >= 1, got {self.n_estimators!r}")
        if self.preprocessing not in PREPROCESSING:
            raise ValueError(f"preprocessing must be one of {PREPROCESSING}, got {self.preprocessing!r}")
        if self.feature_shuffling not in FEATURE_SHUFFLING:
            raise ValueError(f"feature_shuffling must be one of {FEATURE_SHUFFLING}, got {self.feature_shuffling!r}")
        if not isinstance(self.max_context_size, numbers.Integral) or self.max_context_size < 1:
            raise ValueError(f"max_context_size must be an int >= 1, got {self.max_context_size!r}")
        if not isinstance(self.chunk_size, numbers.Integral) or self.chunk_size < 1:
            raise ValueError(f"chunk_size must be an int >= 1, got {self.chunk_size!r}")
        if self.outlier_sigma is not None and not self.outlier_sigma > 0:
            raise ValueError(f"outlier_sigma must be positive or None, got {self.outlier_sigma!r}")
        if self.constant_columns not in CONSTANT_COLUMNS:
            raise ValueError(f"constant_columns must be one of {CONSTANT_COLUMNS}, got {self.constant_columns!r}")
        if self.categorical_encoding not in CATEGORICAL_ENCODINGS:
            raise ValueError(f"categorical_encoding must be one of {CATEGORICAL_ENCODINGS}, "
                             f"got {self.categorical_encoding!r}")
        if self.svd_features not in SVD_FEATURES:
            raise ValueError(f"svd_features must be one of {SVD_FEATURES}, got {self.svd_features!r}")
        if self._class_shuffling() not in CLASS_SHUFFLING:
            raise ValueError(f"class_shuffling must be one of {CLASS_SHUFFLING}, got {self._class_shuffling()!r}")

    def _class_shuffling(self) -> str:
        return getattr(self, "class_shuffling", "none")  # only the classifier relabels classes

    def _load_model(self) -> PFN:
        pfn = resolve_model(self.model)
        if not isinstance(pfn.head, self._head_type):
            raise ValueError(f"{type(self).__name__} needs a PFN with a {self._head_type.__name__} "
                             f"({self._head_type.task}), but model {_model_name(self.model)} has a "
                             f"{type(pfn.head).__name__} ({pfn.task})")
        return pfn

    def _validate_X_y(self, X, y, pfn: PFN):
        self.categorical_encoder_ = CategoricalEncoder().fit(X)
        X = self.categorical_encoder_.transform(X)
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=self._numeric_y,
                             ensure_all_finite="allow-nan" if pfn.trained_with_missing else True)
        if X.shape[0] < 2:
            raise ValueError(f"a PFN needs at least 2 training rows, got n_samples={X.shape[0]}")
        missing = np.isnan(X).all(axis=0)
        if missing.any():
            raise ValueError(f"X columns {np.flatnonzero(missing).tolist()} are entirely missing (NaN) in the training "
                             "rows; drop them")
        with np.errstate(invalid="ignore"):
            constant = (np.nanmax(np.where(missing, 0, X), axis=0) == np.nanmin(np.where(missing, 0, X), axis=0))
        self.kept_columns_ = np.arange(X.shape[1])
        if constant.any():
            if self.constant_columns == "error":
                raise ValueError(f"X columns {np.flatnonzero(constant).tolist()} are constant in the training rows: "
                                 "they carry no information. Drop them, or pass constant_columns='drop'")
            self.kept_columns_ = np.flatnonzero(~constant)
            if self.kept_columns_.size == 0:
                raise ValueError("every column of X is constant in the training rows")
        if self.kept_columns_.size > pfn.max_features:
            raise ValueError(f"X has {self.kept_columns_.size} features, but model {_model_name(self.model)} supports "
                             f"at most {pfn.max_features}; reduce the features (e.g. feature selection or PCA) or use "
                             "a model trained with more")
        # level counts of the kept categorical columns, by position among the kept columns
        categories = self.categorical_encoder_.categories_
        self.categorical_levels_ = {pos: len(categories[j]) for pos, j in enumerate(self.kept_columns_)
                                    if j in categories}
        return X[:, self.kept_columns_], y

    def _validate_X(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = self.categorical_encoder_.transform(X)
        X = validate_data(self, X, reset=False, dtype=np.float64,
                          ensure_all_finite="allow-nan" if self.pfn_.trained_with_missing else True)
        return X[:, self.kept_columns_]

    # ------------------------------------------------------------------ the ensemble
    def _member_configs(self, n_rows: int, n_features: int, n_classes: int, y_codes, rng) -> list[dict]:
        """Feature permutation, class relabelling, transform and context rows of every ensemble member.

        ``class_permutation[c]`` is the label the member's model sees for class ``c``."""
        members = []
        for i in range(self.n_estimators):
            if i == 0 or self.feature_shuffling == "none":
                perm = np.arange(n_features)
            elif self.feature_shuffling == "rotate":
                perm = np.roll(np.arange(n_features), -(i % n_features))
            else:
                perm = rng.permutation(n_features)
            if i == 0 or self._class_shuffling() == "none":
                classes = np.arange(n_classes)
            elif self._class_shuffling() == "shift":
                classes = (np.arange(n_classes) + i) % n_classes
            else:
                classes = rng.permutation(n_classes)
            transform = None
            if self.preprocessing in ("power", "quantile") and i % 2 == 1:
                transform = self.preprocessing
            rows = None
            if n_rows > self.max_context_size:
                rows = stratified_subsample(rng, n_rows, self.max_context_size, y_codes)
            second_half = i // 2 % 2 == 1  # members 2, 3, 6, 7, ...: the "mixed" options' other half
            onehot = self.categorical_encoding == "onehot" or (self.categorical_encoding == "mixed" and second_half)
            svd = self.svd_features == "all" or (self.svd_features == "mixed" and second_half)
            members.append({"feature_permutation": perm, "class_permutation": classes, "transform": transform,
                            "context_rows": rows, "onehot": self._onehot_columns(perm) if onehot else {},
                            "svd": svd})
        return members

    def _onehot_columns(self, perm: np.ndarray) -> dict[int, int]:
        """``{position in the permuted columns: levels}`` of the categorical columns a one-hot member
        expands (3 to ``MAX_ONEHOT_LEVELS`` levels; two levels already are one indicator), or ``{}``
        when the expanded table would be wider than the model."""
        expand = {p: self.categorical_levels_[c] for p, c in enumerate(perm)
                  if 3 <= self.categorical_levels_.get(int(c), 0) <= MAX_ONEHOT_LEVELS}
        width = len(perm) + sum(k - 1 for k in expand.values())
        return expand if width <= self.pfn_.max_features else {}

    @staticmethod
    def _member_columns(X: np.ndarray, member: dict) -> np.ndarray:
        """The member's view of X: its column order, with its one-hot columns expanded into
        indicators (a missing code is missing in every indicator)."""
        x = X[:, member["feature_permutation"]]
        if not member["onehot"]:
            return x
        parts = []
        for p in range(x.shape[1]):
            levels = member["onehot"].get(p)
            if levels is None:
                parts.append(x[:, p:p + 1])
                continue
            indicators = (x[:, p:p + 1] == np.arange(levels)[None, :]).astype(np.float64)
            parts.append(np.where(np.isnan(x[:, p:p + 1]), np.nan, indicators))
        return np.concatenate(parts, axis=1)

    def _fit_context(self, X: np.ndarray, y_model: np.ndarray, pfn: PFN, n_classes: int, y_codes) -> None:
        """Preprocess each member's context, stack them as a batch and encode it once."""
        self._check_params()
        rng = np.random.default_rng(check_random_state(self.random_state).randint(2**31 - 1))
        n_rows = X.shape[0]
        if n_rows > self.max_context_size:
            warnings.warn(
                f"{n_rows} training rows exceed max_context_size={self.max_context_size}: each ensemble member "
                f"uses a random subsample of {self.max_context_size} rows as its context",
                UserWarning,
                stacklevel=3,
            )
        self.pfn_ = pfn
        self.ensemble_ = self._member_configs(n_rows, X.shape[1], n_classes, y_codes, rng)
        self.scalers_ = []
        xs, ys = [], []
        for m in self.ensemble_:
            rows = slice(None) if m["context_rows"] is None else m["context_rows"]
            x_m = self._member_columns(X[rows], m)
            standardize = self.preprocessing != "none"
            room = pfn.max_features - x_m.shape[1]
            scaler = ContextScaler(
                transform=m["transform"],
                outlier_sigma=self.outlier_sigma,
                standardize=standardize,
                impute_missing=True,
                whitened_components=min(x_m.shape[1], room) if m["svd"] and standardize and x_m.shape[1] > 1 else 0,
            ).fit(x_m)
            self.scalers_.append(scaler)
            xs.append(scaler.transform_rows(x_m))
            y_m = y_model[rows]
            if n_classes > 1:
                y_m = m["class_permutation"][y_m]
            ys.append(y_m)
        self.n_context_ = xs[0].shape[0]
        # members may differ in width (one-hot columns): zero-padded, each with its own column count
        widths = np.array([x.shape[1] for x in xs], np.int32)
        self._context_cache = pfn.encode(_stack_padded(xs), np.stack(ys), num_features=widths)

    def _member_logits(self, X: np.ndarray) -> np.ndarray:
        """``f32[n_estimators, n_rows, num_outputs]``: every member's logits for the rows of X."""
        xq = _stack_padded([s.transform_rows(self._member_columns(X, m)) for s, m in zip(self.scalers_, self.ensemble_)])
        out = self.pfn_.logits_from_cache(self._context_cache, xq, chunk_size=self.chunk_size, pad_to_chunk=True)
        return np.asarray(out)


def _stack_padded(arrays: list[np.ndarray]) -> np.ndarray:
    """Stack ``[rows, width_i]`` arrays into ``[n, rows, max width]``, zero-padding the narrower ones."""
    width = max(a.shape[1] for a in arrays)
    return np.stack([np.pad(a, ((0, 0), (0, width - a.shape[1]))) for a in arrays])


ECOC_REDUNDANCY = 4


def ecoc_codebook(n_classes: int, alphabet: int, rng: np.random.Generator, redundancy: int = ECOC_REDUNDANCY,
                  max_tries: int = 100) -> np.ndarray:
    """``int[n_classes, m]`` codebook: column ``j`` maps each class to one of ``min(alphabet, n_classes)``
    balanced groups; ``m = redundancy * ceil(log(n_classes) / log(alphabet))``; rows are distinct."""
    if alphabet < 2 or n_classes < 2:
        raise ValueError(f"need n_classes >= 2 and alphabet >= 2, got {n_classes}, {alphabet}")
    groups = min(alphabet, n_classes)
    m = redundancy * int(np.ceil(np.log(n_classes) / np.log(groups) - 1e-9))
    for _ in range(max_tries):
        book = np.stack([rng.permutation(np.arange(n_classes) % groups) for _ in range(m)], axis=1)
        if len(np.unique(book, axis=0)) == n_classes:
            return book
    raise RuntimeError(f"no codebook with distinct rows for {n_classes} classes in {max_tries} draws")


_COMMON_PARAMS_DOC = """
    Parameters:
        model: a :class:`pfnjax.PFN`, the path of a run directory, or the name of a pretrained model
            shipped in ``pfnjax/pretrained`` (default ``{default}``).
        n_estimators: ensemble members (each with its own feature permutation{shift} and preprocessing).
        preprocessing: ``"power"`` (default: z-score every member, Yeo-Johnson power transform for
            every other member, as TabPFN v1), ``"quantile"`` (quantile-to-normal transform instead),
            ``"standard"`` (z-score only) or ``"none"`` (raw features; NaN still imputed by 0).
        outlier_sigma: soft outlier clipping threshold in std devs (None: off).
        feature_shuffling: ``"random"`` permutations, cyclic ``"rotate"``, or ``"none"``. Member 0
            always keeps the original column order.
        max_context_size: at most this many training rows form a member's context; above it each
            member draws a random subsample and a ``UserWarning`` is issued.
        chunk_size: queries per model call (fixed shape: results never depend on the batch of rows).
        constant_columns: ``"error"`` (default) raises on a column that is constant in the training
            rows; ``"drop"`` drops such columns (at fit, and from every later X).
        categorical_encoding: how members see categorical columns: ``"ordinal"`` codes (the
            levels' order), ``"onehot"`` indicators for columns of 3 to ``MAX_ONEHOT_LEVELS`` levels,
            or ``"mixed"`` (default): members 2, 3, 6, 7, ... one-hot, the others ordinal. A member
            falls back to codes when the indicators would make the table wider than the model.
        svd_features: members that also see whitened principal components of their columns
            (:class:`pfnjax.preprocessing.ContextScaler`, fitted on the training rows) appended as
            extra columns: ``"none"``, ``"mixed"`` (default: members 2, 3, 6, 7, ...) or ``"all"``.
            As many components as columns, or as fit in the model's width.
        random_state: seeds the permutations{shift_rs} and subsamples (int, ``RandomState`` or None).

    Categorical columns (pandas ``category``, ``bool`` or string columns, or string columns of a
    numpy object array) are encoded as ordinal codes fitted on the training rows
    (:class:`pfnjax.preprocessing.CategoricalEncoder`); unseen levels become missing values.
"""


class PFNRegressor(RegressorMixin, _PFNEstimator):
    """Regression with a PFN: a posterior predictive distribution per row, in the units of ``y``.

    ``predict`` returns the predictive mean, :meth:`predict_quantiles` quantiles, and
    :meth:`predict_distribution` the full :class:`pfnjax.BarDistribution` (mean, median, mode,
    quantile, pdf, cdf, sample, EI, ...) in the original units of ``y``.
    {params}
    Fitted attributes: ``pfn_`` (the PFN), ``n_features_in_``, ``n_context_`` (context rows per
    member), ``ensemble_`` (each member's ``feature_permutation``, ``transform``, ``context_rows``,
    ``onehot`` (expanded column positions and their levels) and ``svd``), ``scalers_`` (each
    member's fitted :class:`pfnjax.preprocessing.ContextScaler`), ``y_mean_`` and ``y_std_`` (the
    target standardisation), ``borders_`` (bar borders in the units of ``y``),
    ``categorical_encoder_``, ``categorical_levels_`` and ``kept_columns_`` (the columns left after
    ``constant_columns``).
    """

    _head_type = BarHead
    _numeric_y = True

    def __init__(self, model=DEFAULT_REGRESSOR, n_estimators: int = 4, *, preprocessing: str = "power",
                 outlier_sigma: float | None = 4.0, feature_shuffling: str = "random", max_context_size: int = 1024,
                 chunk_size: int = 256, constant_columns: str = "error", categorical_encoding: str = "mixed",
                 svd_features: str = "mixed", random_state=None):
        self.model = model
        self.n_estimators = n_estimators
        self.preprocessing = preprocessing
        self.outlier_sigma = outlier_sigma
        self.feature_shuffling = feature_shuffling
        self.max_context_size = max_context_size
        self.chunk_size = chunk_size
        self.constant_columns = constant_columns
        self.categorical_encoding = categorical_encoding
        self.svd_features = svd_features
        self.random_state = random_state

    def fit(self, X, y):
        """Store ``(X, y)`` as the context (preprocessed, standardised) and encode it. No training."""
        self._check_params()
        pfn = self._load_model()
        X, y = self._validate_X_y(X, y, pfn)
        target = TargetScaler().fit(y)
        self.y_mean_, self.y_std_ = target.mean_, target.std_
        self._fit_context(X, target.transform(y), pfn, 1, None)
        self.borders_ = np.asarray(pfn.borders, np.float64) * self.y_std_ + self.y_mean_
        return self

    def _mixture_logits(self, X) -> np.ndarray:
        X = self._validate_X(X)
        return apply_in_row_chunks(lambda lg: bar.average_distributions(lg, axis=0), self._member_logits(X), self.chunk_size)

    def _borders(self) -> Array:
        return jnp.asarray(self.borders_, jnp.float32)

    def predict_distribution(self, X) -> bar.BarDistribution:
        """The ensemble's predictive distribution for every row of X, in the units of ``y``
        (batch shape ``[n_rows]``): the mixture of the members' distributions, borders ``* σ + μ``."""
        return bar.BarDistribution(borders=self._borders(), logits=jnp.asarray(self._mixture_logits(X)))

    def predict(self, X) -> np.ndarray:
        """Predictive mean per row (float64, units of ``y``)."""
        logits = self._mixture_logits(X)
        borders = self._borders()
        return apply_in_row_chunks(lambda lg: bar.mean(borders, lg), logits, self.chunk_size, axis=0)

    def predict_quantiles(self, X, quantiles=(0.05, 0.5, 0.95)) -> np.ndarray:
        """``[n_rows, len(quantiles)]`` predictive quantiles (units of ``y``)."""
        q = np.asarray(quantiles, np.float64)
        if q.ndim != 1 or q.size == 0 or np.any((q <= 0) | (q >= 1)):
            raise ValueError(f"quantiles must be a non-empty 1-D sequence in (0, 1), got {quantiles!r}")
        logits = self._mixture_logits(X)
        borders, qj = self._borders(), jnp.asarray(q, jnp.float32)
        out = apply_in_row_chunks(lambda lg: bar.icdf(borders, lg, qj), logits, self.chunk_size, axis=0)
        return out.reshape(-1, q.size)


class PFNClassifier(ClassifierMixin, _PFNEstimator):
    """Classification with a PFN (any labels: encoded with a ``LabelEncoder`` and decoded).

    ``predict_proba`` columns follow ``classes_``. The ensemble averages the members' logits
    (after undoing each member's relabelling) and applies ``softmax(logits / softmax_temperature)``.
    {params}        class_shuffling: how member ``i > 0`` relabels the classes: ``"shift"`` (cyclic,
            ``(y + i) % C``, TabPFN v1), ``"random"`` (a random permutation) or ``"none"``.
        softmax_temperature: divides the averaged logits before the softmax (TabPFN v1: 0.8).
        many_classes: with more classes than the model has outputs, ``"ecoc"`` (default) fits
            error-correcting output codes (:func:`ecoc_codebook`: several PFN classifiers on random
            balanced groupings of the classes, combined per class); ``"error"`` raises.

    Fitted attributes: ``classes_``, ``pfn_``, ``n_features_in_``, ``n_context_``, ``ensemble_``
    (each member's ``feature_permutation``, ``class_permutation``, ``transform``, ``context_rows``,
    ``onehot``, ``svd``), ``scalers_``, ``categorical_encoder_``, ``categorical_levels_`` (level
    counts of the kept categorical columns), ``kept_columns_``; with output codes, ``ecoc_codebook_``
    (``int[n_classes, m]``) and ``ecoc_members_`` (one fitted classifier per code column), else None.
    """

    _head_type = ClassHead

    def __init__(self, model=DEFAULT_CLASSIFIER, n_estimators: int = 4, *, preprocessing: str = "power",
                 outlier_sigma: float | None = 4.0, feature_shuffling: str = "random", max_context_size: int = 1024,
                 chunk_size: int = 256, class_shuffling: str = "shift", softmax_temperature: float = 0.8,
                 constant_columns: str = "error", categorical_encoding: str = "mixed", svd_features: str = "mixed",
                 many_classes: str = "ecoc", random_state=None):
        self.model = model
        self.n_estimators = n_estimators
        self.preprocessing = preprocessing
        self.outlier_sigma = outlier_sigma
        self.feature_shuffling = feature_shuffling
        self.max_context_size = max_context_size
        self.chunk_size = chunk_size
        self.class_shuffling = class_shuffling
        self.softmax_temperature = softmax_temperature
        self.constant_columns = constant_columns
        self.categorical_encoding = categorical_encoding
        self.svd_features = svd_features
        self.many_classes = many_classes
        self.random_state = random_state

    def fit(self, X, y):
        """Encode the labels, store ``(X, y)`` as the context (preprocessed) and encode it. No training."""
        self._check_params()
        if not self.softmax_temperature > 0:
            raise ValueError(f"softmax_temperature must be > 0, got {self.softmax_temperature!r}")
        pfn = self._load_model()
        X, y = self._validate_X_y(X, y, pfn)
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        n_classes = len(encoder.classes_)
        if n_classes < 2:
            raise ValueError(
                f"Classifier can't train when only one class is present: y holds the single class "
                f"{encoder.classes_[0]!r}; a PFN classifier needs at least 2 classes"
            )
        if self.many_classes not in MANY_CLASSES:
            raise ValueError(f"many_classes must be one of {MANY_CLASSES}, got {self.many_classes!r}")
        self.classes_ = encoder.classes_
        codes = encoder.transform(y).astype(np.int32)
        self.ecoc_codebook_ = self.ecoc_members_ = None
        if n_classes > pfn.max_classes:
            if self.many_classes == "error":
                raise ValueError(f"y has {n_classes} classes, but model {_model_name(self.model)} supports at most "
                                 f"{pfn.max_classes}; pass many_classes='ecoc' for output codes")
            self._fit_ecoc(X, codes, pfn)
            return self
        self._fit_context(X, codes, pfn, n_classes, codes)
        return self

    def _fit_ecoc(self, X: np.ndarray, codes: np.ndarray, pfn: PFN) -> None:
        """Error-correcting output codes for more classes than the model has outputs.

        Each of ``m`` code columns splits the classes into at most ``pfn.max_classes`` balanced groups
        at random (rows of the codebook distinct); column ``j`` gets its own PFN classifier on the group
        labels. ``m = ECOC_REDUNDANCY * ceil(log(C) / log(max_classes))``.
        """
        rng = np.random.default_rng(check_random_state(self.random_state).randint(2**31 - 1))
        n_classes = len(self.classes_)
        self.ecoc_codebook_ = ecoc_codebook(n_classes, pfn.max_classes, rng)
        self.ecoc_members_ = []
        for j in range(self.ecoc_codebook_.shape[1]):
            member = clone(self).set_params(many_classes="error", model=pfn, constant_columns="drop",
                                            random_state=int(rng.integers(2**31 - 1)))
            self.ecoc_members_.append(member.fit(X, self.ecoc_codebook_[codes, j]))
        self.pfn_ = pfn

    def _ensemble_logits(self, X) -> np.ndarray:
        """Averaged logits ``[n_rows, n_classes]`` in ``classes_`` order (before the temperature)."""
        X = self._validate_X(X)
        n_classes = len(self.classes_)
        member = self._member_logits(X)[..., :n_classes]
        # member i saw label perm_i[c] for class c: its logit for class c is at column perm_i[c]
        relabelled = [np.take(lg, m["class_permutation"], axis=-1) for lg, m in zip(member, self.ensemble_)]
        return np.mean(relabelled, axis=0)

    def _ecoc_log_proba(self, X) -> np.ndarray:
        """Class scores ``sum_j log p_j(group of c) - log |group of c|``, normalised over classes."""
        X = self._validate_X(X)
        book = self.ecoc_codebook_
        score = np.zeros((X.shape[0], book.shape[0]))
        for j, member in enumerate(self.ecoc_members_):
            logp = member.predict_log_proba(X)  # columns: the groups 0..g-1 of column j
            sizes = np.bincount(book[:, j])
            score += logp[:, book[:, j]] - np.log(sizes[book[:, j]])
        score -= score.max(axis=-1, keepdims=True)
        return score - np.log(np.exp(score).sum(axis=-1, keepdims=True))

    def predict_log_proba(self, X) -> np.ndarray:
        """``[n_rows, n_classes]`` log class probabilities, columns in ``classes_`` order."""
        check_is_fitted(self)
        if self.ecoc_members_ is not None:
            return self._ecoc_log_proba(X)
        logits = self._ensemble_logits(X).astype(np.float64) / self.softmax_temperature
        logits = logits - logits.max(axis=-1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))

    def predict_proba(self, X) -> np.ndarray:
        """``[n_rows, n_classes]`` class probabilities, columns in ``classes_`` order."""
        return np.exp(self.predict_log_proba(X))

    def predict(self, X) -> np.ndarray:
        """The most probable class per row (labels as given to ``fit``)."""
        check_is_fitted(self)
        if self.ecoc_members_ is not None:
            return self.classes_[np.argmax(self._ecoc_log_proba(X), axis=-1)]
        logits = self._ensemble_logits(X)  # first: it raises NotFittedError before classes_ is touched
        return self.classes_[np.argmax(logits, axis=-1)]


PFNRegressor.__doc__ = PFNRegressor.__doc__.format(
    params=_COMMON_PARAMS_DOC.format(default=DEFAULT_REGRESSOR, shift="", shift_rs=""))
PFNClassifier.__doc__ = PFNClassifier.__doc__.format(
    params=_COMMON_PARAMS_DOC.format(default=DEFAULT_CLASSIFIER, shift=", class-label shift",
                                     shift_rs=", class shifts"))

__all__ = ["DEFAULT_CLASSIFIER", "DEFAULT_REGRESSOR", "PFNClassifier", "PFNRegressor", "ecoc_codebook",
           "resolve_model"]
