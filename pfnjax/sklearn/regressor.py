"""Regression with a PFN: a posterior predictive (bar) distribution per row, in the units of ``y``."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from sklearn.base import RegressorMixin

from pfnjax.distributions import bar
from pfnjax.heads import BarHead
from pfnjax.preprocessing import TargetScaler, apply_in_row_chunks
from pfnjax.sklearn.base import _COMMON_PARAMS_DOC, DEFAULT_REGRESSOR, _PFNEstimator
from pfnjax.types import Array


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
                 chunk_size: int = 256, constant_columns: str = "drop", categorical_encoding: str = "mixed",
                 svd_features: str = "mixed", fine_tune_steps: int = 0,
                 fine_tune_lr: float = 1e-4, random_state=None):
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
        self.fine_tune_steps = fine_tune_steps
        self.fine_tune_lr = fine_tune_lr
        self.random_state = random_state

    def fit(self, X, y):
        """Store ``(X, y)`` as the context (preprocessed, standardised) and encode it; with ``fine_tune_steps``, fine-tune the model on it first."""
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


PFNRegressor.__doc__ = PFNRegressor.__doc__.format(
    params=_COMMON_PARAMS_DOC.format(default=DEFAULT_REGRESSOR, shift="", shift_rs=""))

__all__ = ["PFNRegressor"]
