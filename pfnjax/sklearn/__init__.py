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
* **Constant columns** (one value in every training row) carry no information: they are dropped,
  with a ``UserWarning`` (``constant_columns="drop"``, the default; ``"error"`` raises instead).
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

The package holds one idea per file: :mod:`~pfnjax.sklearn.base` (the estimators' shared fit and
predict machinery, model loading), :mod:`~pfnjax.sklearn.ensemble` (what each ensemble member
sees), :mod:`~pfnjax.sklearn.members` (each member's preprocessing and encoded context),
:mod:`~pfnjax.sklearn.regressor` and :mod:`~pfnjax.sklearn.classifier` (with the output codes).

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

try:
    import sklearn  # noqa: F401
except ImportError as exc:  # scikit-learn is an optional dependency of pfnjax
    raise ImportError(
        "pfnjax.sklearn needs scikit-learn >= 1.6, which is not installed here: pip install 'pfnjax[sklearn]'"
    ) from exc

from pfnjax.sklearn.base import DEFAULT_CLASSIFIER, DEFAULT_REGRESSOR, resolve_model  # noqa: E402
from pfnjax.sklearn.classifier import PFNClassifier, ecoc_codebook  # noqa: E402
from pfnjax.sklearn.regressor import PFNRegressor  # noqa: E402

__all__ = ["DEFAULT_CLASSIFIER", "DEFAULT_REGRESSOR", "PFNClassifier", "PFNRegressor", "ecoc_codebook",
           "resolve_model"]
