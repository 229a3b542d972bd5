"""Classification with a PFN, with error-correcting output codes for more classes than the
model has outputs."""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin, clone
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from pfnjax.heads import ClassHead
from pfnjax.predict import PFN
from pfnjax.sklearn.base import _COMMON_PARAMS_DOC, DEFAULT_CLASSIFIER, _model_name, _PFNEstimator

MANY_CLASSES = ("ecoc", "error")
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
                 constant_columns: str = "drop", categorical_encoding: str = "mixed", svd_features: str = "mixed",
                 many_classes: str = "ecoc", fine_tune_steps: int = 0,
                 fine_tune_lr: float = 1e-4, random_state=None):
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
        self.fine_tune_steps = fine_tune_steps
        self.fine_tune_lr = fine_tune_lr
        self.random_state = random_state

    def fit(self, X, y):
        """Encode the labels, store ``(X, y)`` as the context (preprocessed) and encode it; with ``fine_tune_steps``, fine-tune the model on it first."""
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


PFNClassifier.__doc__ = PFNClassifier.__doc__.format(
    params=_COMMON_PARAMS_DOC.format(default=DEFAULT_CLASSIFIER, shift=", class-label shift",
                                     shift_rs=", class shifts"))

__all__ = ["ECOC_REDUNDANCY", "MANY_CLASSES", "PFNClassifier", "ecoc_codebook"]
