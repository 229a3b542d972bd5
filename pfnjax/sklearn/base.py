"""The estimators' shared machinery: model loading, parameter checks, input validation, pickling,
and the fit/predict path through the ensemble (:mod:`~pfnjax.sklearn.ensemble`) and its members
(:mod:`~pfnjax.sklearn.members`)."""

from __future__ import annotations

import numbers
import os
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from pfnjax import checkpoint as ckpt
from pfnjax.heads import Head
from pfnjax.predict import PFN, load
from pfnjax.preprocessing import CategoricalEncoder
from pfnjax.sklearn.ensemble import EnsembleOptions, member_configs
from pfnjax.sklearn.members import encode_members, member_logits

DEFAULT_REGRESSOR = "reg-small"
DEFAULT_CLASSIFIER = "cls-small"
PREPROCESSING = ("power", "quantile", "standard", "none")
CONSTANT_COLUMNS = ("drop", "error")
FEATURE_SHUFFLING = ("random", "rotate", "none")
CLASS_SHUFFLING = ("shift", "random", "none")
CATEGORICAL_ENCODINGS = ("ordinal", "onehot", "mixed")
SVD_FEATURES = ("none", "mixed", "all")

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
        steps = self.fine_tune_steps
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
            raise ValueError(f"fine_tune_steps must be an int >= 0, got {steps!r}")
        if not (isinstance(self.fine_tune_lr, numbers.Real) and np.isfinite(self.fine_tune_lr) and self.fine_tune_lr > 0):
            raise ValueError(f"fine_tune_lr must be a finite number > 0, got {self.fine_tune_lr!r}")
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
            warnings.warn(f"X columns {np.flatnonzero(constant).tolist()} are constant in the training rows and "
                          "carry no information: they are dropped (pass constant_columns='error' to raise instead)",
                          UserWarning, stacklevel=3)
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
    def _fit_context(self, X: np.ndarray, y_model: np.ndarray, pfn: PFN, n_classes: int, y_codes) -> None:
        """Choose every member's view, preprocess each member's context and encode them once."""
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
        options = EnsembleOptions(self.n_estimators, self.feature_shuffling, self._class_shuffling(),
                                  self.preprocessing, self.max_context_size, self.categorical_encoding,
                                  self.svd_features)
        self.ensemble_ = member_configs(options, n_rows, X.shape[1], n_classes, y_codes, self.categorical_levels_,
                                        pfn.max_features, rng)
        self.fine_tune_history_ = None
        if self.fine_tune_steps:
            from pfnjax.fine_tuning import MIN_ROWS, finetune  # here: pfnjax.fine_tuning imports this package

            if n_rows < MIN_ROWS:
                warnings.warn(f"fine_tune_steps={self.fine_tune_steps} ignored: fine-tuning needs at least {MIN_ROWS} "
                              f"training rows, got {n_rows}", UserWarning, stacklevel=3)
            else:
                pfn, self.fine_tune_history_ = finetune(
                    pfn, (X, y_model), self.fine_tune_steps, key=int(rng.integers(2**31 - 1)), lr=self.fine_tune_lr,
                    view_members=[self.ensemble_], preprocessing=self.preprocessing,
                    outlier_sigma=self.outlier_sigma, progress=False, return_history=True)
                self.pfn_ = pfn
        self.scalers_, self._context_cache = encode_members(pfn, self.ensemble_, X, y_model, n_classes,
                                                            preprocessing=self.preprocessing,
                                                            outlier_sigma=self.outlier_sigma)
        self.n_context_ = self._context_cache.n_context

    def _member_logits(self, X: np.ndarray) -> np.ndarray:
        """``f32[n_estimators, n_rows, num_outputs]``: every member's logits for the rows of X."""
        return member_logits(self.pfn_, self._context_cache, self.scalers_, self.ensemble_, X, self.chunk_size)


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
        constant_columns: ``"drop"`` (default) drops a column that is constant in the training rows
            (at fit, and from every later X), with a ``UserWarning``; ``"error"`` raises instead.
        categorical_encoding: how members see categorical columns: ``"ordinal"`` codes (the
            levels' order), ``"onehot"`` indicators for columns of 3 to ``MAX_ONEHOT_LEVELS`` levels,
            or ``"mixed"`` (default): members 2, 3, 6, 7, ... one-hot, the others ordinal. A member
            falls back to codes when the indicators would make the table wider than the model.
        svd_features: members that also see whitened principal components of their columns
            (:class:`pfnjax.preprocessing.ContextScaler`, fitted on the training rows) appended as
            extra columns: ``"none"``, ``"mixed"`` (default: members 2, 3, 6, 7, ...) or ``"all"``.
            As many components as columns, or as fit in the model's width.
        fine_tune_steps: fine-tune the model on the training rows inside ``fit`` for this many steps
            (:func:`pfnjax.finetune` on the ensemble's own member views, early-stopped on
            20% of the rows held out; the fitted ``pfn_`` is the fine-tuned model and
            ``fine_tune_history_`` its history). 0 (default): no fine-tuning, ``fit`` only stores
            the context.
        fine_tune_lr: the fine-tune's learning rate (AdamW, constant).
        random_state: seeds the permutations{shift_rs}, subsamples and fine-tuning (int,
            ``RandomState`` or None).

    Categorical columns (pandas ``category``, ``bool`` or string columns, or string columns of a
    numpy object array) are encoded as ordinal codes fitted on the training rows
    (:class:`pfnjax.preprocessing.CategoricalEncoder`); unseen levels become missing values.
"""


__all__ = ["DEFAULT_CLASSIFIER", "DEFAULT_REGRESSOR", "resolve_model"]
