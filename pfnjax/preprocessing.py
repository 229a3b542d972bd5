"""Per-context preprocessing of tabular inputs for PFN inference (numpy, on the host).

A PFN was trained on datasets whose used feature columns are z-scored (and, for the SCM prior,
soft-clipped at 4σ) and whose regression targets are standardised. :class:`ContextScaler`
brings real data to that scale, fitting every statistic on the **context rows only** and
applying it to context and queries alike, in this order (TabPFN v1's inference pipeline):

1. z-score each column with the context's mean and std (NaN ignored; a constant column -> 0);
2. optionally a per-column power transform (Yeo-Johnson, :class:`YeoJohnson`: scikit-learn's
   ``PowerTransformer`` vectorised over columns) or a
   quantile transform to a normal (``QuantileTransformer``), fitted on the context;
3. soft outlier clipping at ``outlier_sigma`` robust std devs;
4. z-score again on the context;
5. missing values (NaN) become 0, i.e. the context column mean;
6. optionally (``whitened_components > 0``) append that many whitened principal components of the
   result (PCA on the context rows, each component scaled to unit variance there and soft-clipped
   like the columns): a direction that separates the classes but has little variance among
   strongly correlated columns (measurements of one size, say) becomes a column of its own.

:class:`TargetScaler` standardises regression targets with the context's mean and (population)
std and maps bar-distribution borders back to the original units: ``borders * std + mean``.

The z-scoring and the clipping are :mod:`pfnjax.numerics`' (:func:`~pfnjax.numerics.standardization`,
:func:`~pfnjax.numerics.soft_clip_bounds`, :func:`~pfnjax.numerics.soft_clip`): the same code the
priors scale their training data with, run here in float64 on the context's statistics.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Literal

import jax.numpy as jnp
import numpy as np

from pfnjax.numerics import nan_mean_std, soft_clip, soft_clip_bounds, standardization

Transform = Literal["power", "quantile"] | None
TRANSFORMS = (None, "none", "power", "quantile")


MIN_STD = 1e-12  # a column whose context std is at most this is constant: it is only centred


def _column_standardization(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column ``(center, scale)`` of :func:`pfnjax.numerics.standardization`, as flat vectors."""
    center, scale = standardization(x, axis=0, min_std=MIN_STD)
    return center[0], scale[0]


def _safe_std(std: np.ndarray) -> np.ndarray:
    return np.where(std > MIN_STD, std, 1.0)


@dataclasses.dataclass
class ContextScaler:
    """Fit on context rows, transform any rows (see the module docstring for the steps).

    Attributes:
        transform: ``None`` / ``"none"``, ``"power"`` (Yeo-Johnson) or ``"quantile"`` (to a normal).
        outlier_sigma: soft-clip threshold in robust std devs; ``None`` disables clipping.
        standardize: z-score (steps 1 and 4); ``False`` passes values through unchanged, except
            that NaN still becomes 0 when ``impute_missing``.
        impute_missing: replace NaN by 0 (the context mean after z-scoring).
        whitened_components: append up to this many whitened principal components (step 6; fewer
            when the context has fewer directions of non-negligible variance). Needs
            ``standardize`` and ``impute_missing``.
    """

    transform: Transform = None
    outlier_sigma: float | None = 4.0
    standardize: bool = True
    impute_missing: bool = True
    whitened_components: int = 0

    def fit(self, x: np.ndarray) -> "ContextScaler":
        if self.transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, got {self.transform!r}")
        x = np.asarray(x, np.float64)
        self.n_features_ = x.shape[1]
        self.transformer_ = None
        self.components_ = None
        if self.whitened_components < 0:
            raise ValueError(f"whitened_components must be >= 0, got {self.whitened_components}")
        if not self.standardize:
            if self.whitened_components:
                raise ValueError("whitened_components needs standardize=True")
            return self
        self.mean1_, self.std1_ = _column_standardization(x)
        z = (x - self.mean1_) / self.std1_
        if self.transform in ("power", "quantile") and x.shape[0] >= 2:
            self.transformer_ = _fit_transformer(self.transform, z)
            if self.transformer_ is not None:
                z = self._apply_transformer(z)
        if self.outlier_sigma is not None:
            self.lower_, self.upper_ = soft_clip_bounds(z, self.outlier_sigma)
            z = soft_clip(z, self.lower_, self.upper_)
        self.mean2_, self.std2_ = _column_standardization(z)
        if self.whitened_components > 0:
            if not self.impute_missing:
                raise ValueError("whitened_components needs impute_missing=True")
            self._fit_whitening(np.nan_to_num((z - self.mean2_) / self.std2_))
        return self

    def _fit_whitening(self, z: np.ndarray) -> None:
        """PCA of the (centred) context columns: keep directions whose std is at least 1e-3 of the
        largest, scaled to unit variance on the context, then soft-clipped."""
        n = z.shape[0]
        _, sing, vt = np.linalg.svd(z - z.mean(0), full_matrices=False)
        keep = min(self.whitened_components, int(np.sum(sing > 1e-3 * max(sing[0], 1e-300))) if sing.size else 0)
        if keep == 0:
            return
        directions = vt[:keep].T
        # a fixed sign per component (its largest loading positive), as SVD's signs are arbitrary
        directions = directions * np.sign(directions[np.argmax(np.abs(directions), axis=0), np.arange(keep)])
        self.components_ = directions / (sing[:keep] / np.sqrt(n))
        self.component_mean_ = z.mean(0)
        w = (z - self.component_mean_) @ self.components_
        if self.outlier_sigma is not None:
            self.component_lower_, self.component_upper_ = soft_clip_bounds(w, self.outlier_sigma)
            w = soft_clip(w, self.component_lower_, self.component_upper_)
        self.component_shift_, self.component_scale_ = _column_standardization(w)

    def _whitened(self, x: np.ndarray) -> np.ndarray:
        w = (x - self.component_mean_) @ self.components_
        if self.outlier_sigma is not None:
            w = soft_clip(w, self.component_lower_, self.component_upper_)
        return (w - self.component_shift_) / self.component_scale_

    @property
    def n_output_features(self) -> int:
        """Columns :meth:`transform_rows` returns: the inputs plus any whitened components."""
        return self.n_features_ + (0 if getattr(self, "components_", None) is None else self.components_.shape[1])

    def _apply_transformer(self, z: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            out = self.transformer_.transform(z)
        # a column whose transform misbehaves on new rows keeps its z-scores
        return np.where(np.isfinite(out) | np.isnan(z), out, z)

    def transform_rows(self, x: np.ndarray) -> np.ndarray:
        """Transformed ``float32`` copy of ``x`` (rows of the same columns as the fitted context)."""
        x = np.asarray(x, np.float64)
        if x.shape[1] != self.n_features_:
            raise ValueError(f"expected {self.n_features_} features, got {x.shape[1]}")
        if self.standardize:
            z = (x - self.mean1_) / self.std1_
            if self.transformer_ is not None:
                z = self._apply_transformer(z)
            if self.outlier_sigma is not None:
                z = soft_clip(z, self.lower_, self.upper_)
            x = (z - self.mean2_) / self.std2_
        if self.impute_missing:
            x = np.where(np.isnan(x), 0.0, x)
        if getattr(self, "components_", None) is not None:
            x = np.concatenate([x, self._whitened(x)], axis=1)
        return x.astype(np.float32)


def yeo_johnson(x: np.ndarray, lambdas: np.ndarray) -> np.ndarray:
    """The Yeo-Johnson transform of each column of ``x`` with its own ``lambdas`` (NaN stays NaN)."""
    with np.errstate(invalid="ignore"):
        out = _yeo_johnson_from_logs(np.log1p(np.maximum(x, 0.0)), np.log1p(np.maximum(-x, 0.0)), x >= 0, lambdas)
    return np.where(np.isnan(x), np.nan, out)


def _yeo_johnson_from_logs(log_pos: np.ndarray, log_neg: np.ndarray, nonneg: np.ndarray, lambdas: np.ndarray):
    """Yeo-Johnson from ``log1p(max(x, 0))`` and ``log1p(max(-x, 0))``, computed once per fit."""
    lam = np.broadcast_to(lambdas, log_pos.shape)
    near0, near2 = np.abs(lam) < 1e-12, np.abs(lam - 2.0) < 1e-12
    with np.errstate(all="ignore"):
        pos = np.where(near0, log_pos, np.expm1(lam * log_pos) / np.where(near0, 1.0, lam))
        neg = np.where(near2, -log_neg, -np.expm1((2.0 - lam) * log_neg) / np.where(near2, 1.0, 2.0 - lam))
    return np.where(nonneg, pos, neg)


class YeoJohnson:
    """Per-column Yeo-Johnson power transform with maximum-likelihood lambdas, then z-scoring:
    scikit-learn's ``PowerTransformer(method="yeo-johnson")`` fitted for all columns at once.

    scikit-learn optimises each column's lambda with scipy's scalar bounded search, a Python loop
    that dominated ``fit`` on wide tables (about 1 s of 1.5 s for 85 columns and 1,000 rows). This
    runs one vectorised golden-section search on the same per-column bounds (those keeping the
    transformed values finite: scipy's rule), to scipy's tolerance. NaN is
    ignored in fitting and passed through; constant and all-NaN columns get lambda = 1.
    """

    def fit(self, x: np.ndarray) -> "YeoJohnson":
        x = np.asarray(x, np.float64)
        observed = ~np.isnan(x)
        count = observed.sum(0).astype(np.float64)
        x0 = np.where(observed, x, 0.0)  # NaN rows: zeros, masked out of every sum below
        log_pos, log_neg, nonneg = np.log1p(np.maximum(x0, 0.0)), np.log1p(np.maximum(-x0, 0.0)), x0 >= 0
        log_jacobian = (np.sign(x0) * np.log1p(np.abs(x0))).sum(0)
        n = np.maximum(count, 1.0)

        def neg_llf(lambdas):
            # scipy's profile log-likelihood; zero or non-finite variance scores +inf
            t = np.where(observed, _yeo_johnson_from_logs(log_pos, log_neg, nonneg, lambdas), 0.0)
            with np.errstate(all="ignore"):
                var = (t * t).sum(0) / n - (t.sum(0) / n) ** 2
                llf = -0.5 * count * np.log(var) + (lambdas - 1.0) * log_jacobian
            return np.where(np.isfinite(llf), -llf, np.inf)

        big = np.where(observed, np.abs(x0), 0.0).max(0)
        spread = np.where(observed, x0, -np.inf).max(0) - np.where(observed, x0, np.inf).min(0)
        free = (count >= 2) & (spread > 0)
        # scipy's bounds: the largest |lambda| whose transform of 20x the largest |x| stays finite
        eps = np.finfo(np.float64)
        log1p_max = np.where(free, np.log1p(20.0 * big), 1.0)
        lb = (np.log(eps.tiny) - np.log(eps.eps)) / 2 / log1p_max
        ub = (np.log(eps.max) + np.log(eps.eps)) / 2 / log1p_max
        all_neg = np.where(observed, x0, -np.inf).max(0) < 0
        any_neg = np.where(observed, x0, np.inf).min(0) < 0
        lb, ub = (np.where(all_neg, 2 - ub, np.where(any_neg, np.maximum(2 - ub, lb), lb)),
                  np.where(all_neg, 2 - lb, np.where(any_neg, np.minimum(2 - lb, ub), ub)))
        # golden-section search on every column at once, to scipy's absolute tolerance
        lo, hi = lb, ub
        ratio = (np.sqrt(5.0) - 1.0) / 2.0
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        fa, fb = neg_llf(a), neg_llf(b)
        while np.any(hi - lo > 1.48e-8):
            left = fa <= fb  # the minimum lies in [lo, b]
            hi, lo = np.where(left, b, hi), np.where(left, lo, a)
            a_new, b_new = np.where(left, hi - ratio * (hi - lo), b), np.where(left, a, lo + ratio * (hi - lo))
            f_new = neg_llf(np.where(left, a_new, b_new))
            fa, fb = np.where(left, f_new, fb), np.where(left, fa, f_new)
            a, b = a_new, b_new
        self.lambdas_ = np.where(free, (lo + hi) / 2, 1.0)
        self.mean_, std = nan_mean_std(yeo_johnson(x, self.lambdas_))
        self.scale_ = _safe_std(std)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (yeo_johnson(np.asarray(x, np.float64), self.lambdas_) - self.mean_) / self.scale_


def _fit_transformer(kind: str, z: np.ndarray):
    """A fitted power/quantile transformer, or None if it fails on this context (TabPFN v1 also
    fell back to the untransformed column)."""
    from sklearn.preprocessing import QuantileTransformer

    n = z.shape[0]
    if kind == "power":
        tr = YeoJohnson()
    else:
        tr = QuantileTransformer(output_distribution="normal", n_quantiles=max(2, min(n, 1000)),
                                 subsample=None, random_state=0)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            tr.fit(z)
            out = tr.transform(z)
    except (ValueError, FloatingPointError, np.linalg.LinAlgError):
        return None
    if not np.all(np.isfinite(out) | np.isnan(z)):
        return None
    return tr


@dataclasses.dataclass
class TargetScaler:
    """Standardise regression targets with the context's mean and population std (std floored)."""

    min_std: float = 1e-12

    def fit(self, y: np.ndarray) -> "TargetScaler":
        center, scale = standardization(np.asarray(y, np.float64), axis=0, min_std=self.min_std)
        self.mean_, self.std_ = float(center[0]), float(scale[0])
        return self

    def transform(self, y: np.ndarray) -> np.ndarray:
        return ((np.asarray(y, np.float64) - self.mean_) / self.std_).astype(np.float32)

    def inverse_transform(self, y_std: np.ndarray) -> np.ndarray:
        return np.asarray(y_std, np.float64) * self.std_ + self.mean_

    def borders_to_original(self, borders: np.ndarray) -> np.ndarray:
        """Bar borders in standard units -> original units (``borders * std + mean``)."""
        return self.inverse_transform(borders)


# --------------------------------------------------------------------------- context rows and query chunks


def apply_in_row_chunks(fn, x: np.ndarray, chunk: int, axis: int = 1) -> np.ndarray:
    """``fn`` applied to fixed-size row chunks of ``x`` (rows along ``axis``), results concatenated
    along their first axis. The zero-padded last chunk keeps every call the same shape, so a row's
    result never depends on the other rows (XLA may vectorise reductions differently for different
    shapes, which shows up in the last float bits)."""
    n = x.shape[axis]
    pad = -(-n // chunk) * chunk - n
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, pad)
    x = np.pad(x, widths)
    parts = [np.asarray(fn(jnp.asarray(np.take(x, np.arange(s, s + chunk), axis=axis))))
             for s in range(0, n + pad, chunk)]
    return np.concatenate(parts, axis=0)[:n].astype(np.float64)


def stratified_subsample(rng: np.random.Generator, n: int, k: int, y_codes) -> np.ndarray:
    """``k`` of ``n`` row indices without replacement; with class codes, at least one row per class."""
    if y_codes is None:
        return np.sort(rng.choice(n, size=k, replace=False))
    first = [rng.choice(np.flatnonzero(y_codes == c)) for c in np.unique(y_codes)]
    rest = np.setdiff1d(np.arange(n), first)
    extra = rng.choice(rest, size=max(0, k - len(first)), replace=False)
    return np.sort(np.concatenate([first, extra]).astype(np.int64))


def _is_categorical_series(col) -> bool:
    import pandas as pd

    dtype = col.dtype
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(dtype):
        return True
    if pd.api.types.is_string_dtype(dtype) or dtype == object:
        values = col.dropna()
        return len(values) > 0 and all(isinstance(v, (str, bool, np.bool_)) for v in values)
    return False


@dataclasses.dataclass
class CategoricalEncoder:
    """Ordinal codes for categorical columns, fitted on the training rows.

    A column is categorical if it is a pandas ``category``, ``bool`` or string column, or an object
    column (pandas or numpy) whose values are all strings. Its levels are the category order of a
    pandas categorical, else the sorted distinct training values; level ``k`` becomes the float ``k``,
    as the TabPFN prior codes categorical columns with random integers. Missing values, and levels
    not seen in training, become NaN. Other columns pass through unchanged. A pandas DataFrame stays
    a DataFrame (so its column names reach scikit-learn); anything else is returned as given when it
    has no categorical column.
    """

    def fit(self, X) -> "CategoricalEncoder":
        self.categories_: dict[int, list] = {}
        frame = self._frame(X)
        if frame is None:
            return self
        for j, name in enumerate(frame.columns):
            col = frame[name]
            if not _is_categorical_series(col):
                continue
            if hasattr(col, "cat"):
                levels = list(col.cat.categories)
            else:
                levels = sorted({v for v in col.dropna()}, key=lambda v: (str(type(v)), v))
            self.categories_[j] = levels
        return self

    @staticmethod
    def _frame(X):
        import pandas as pd

        if isinstance(X, pd.DataFrame):
            return X
        if isinstance(X, np.ndarray) and X.dtype == object and X.ndim == 2:
            return pd.DataFrame(X)
        return None

    def transform(self, X):
        """``X`` with every categorical column replaced by its float codes."""
        import pandas as pd

        if not self.categories_:
            return X
        frame = self._frame(X)
        if frame is None:
            raise ValueError("X has no categorical (string or category) columns, but the estimator was fitted "
                             f"with categorical columns {sorted(self.categories_)}")
        out = {}
        for j, name in enumerate(frame.columns):
            col = frame[name]
            if j in self.categories_:
                index = {level: k for k, level in enumerate(self.categories_[j])}
                out[name] = np.array([index.get(v, np.nan) if not _is_missing(v) else np.nan
                                      for v in col.astype(object)], np.float64)
            else:
                out[name] = col
        result = pd.DataFrame(out, index=frame.index)
        if isinstance(X, pd.DataFrame):
            return result
        return result.to_numpy()


def _is_missing(value) -> bool:
    try:
        return bool(value != value) or value is None  # NaN, pd.NA-free float check
    except (TypeError, ValueError):  # pd.NA raises on bool()
        return True
