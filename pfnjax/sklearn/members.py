"""Each ensemble member's preprocessing and its encoded context: the member's view of the columns
(order, one-hot indicators), a :class:`pfnjax.preprocessing.ContextScaler` fitted on its context
rows, and one batched encode of every member's context."""

from __future__ import annotations

import numpy as np

from pfnjax.predict import PFN, ContextCache
from pfnjax.preprocessing import ContextScaler


def member_columns(X: np.ndarray, member: dict) -> np.ndarray:
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


def encode_members(pfn: PFN, members: list[dict], X: np.ndarray, y_model: np.ndarray, n_classes: int, *,
                   preprocessing: str, outlier_sigma: float | None) -> tuple[list[ContextScaler], ContextCache]:
    """Fit every member's scaler on its context rows and encode all the members' contexts as one
    batch (members may differ in width, one-hot columns: zero-padded, each with its own column count)."""
    scalers, xs, ys = [], [], []
    for m in members:
        rows = slice(None) if m["context_rows"] is None else m["context_rows"]
        scaler = member_scaler(pfn, m, X[rows], preprocessing, outlier_sigma)
        scalers.append(scaler)
        xs.append(scaler.transform_rows(member_columns(X[rows], m)))
        ys.append(member_labels(y_model[rows], m, n_classes))
    widths = np.array([x.shape[1] for x in xs], np.int32)
    return scalers, pfn.encode(stack_padded(xs), np.stack(ys), num_features=widths)


def member_scaler(pfn: PFN, member: dict, X: np.ndarray, preprocessing: str,
                  outlier_sigma: float | None) -> ContextScaler:
    """The member's :class:`ContextScaler`, fitted on its view of the rows ``X`` (its context)."""
    x_m = member_columns(X, member)
    standardize = preprocessing != "none"
    room = pfn.max_features - x_m.shape[1]
    return ContextScaler(
        transform=member["transform"],
        outlier_sigma=outlier_sigma,
        standardize=standardize,
        impute_missing=True,
        whitened_components=min(x_m.shape[1], room) if member["svd"] and standardize and x_m.shape[1] > 1 else 0,
    ).fit(x_m)


def member_labels(y_model: np.ndarray, member: dict, n_classes: int) -> np.ndarray:
    """The labels the member's model sees: class codes relabelled by its permutation (regression: as is)."""
    return member["class_permutation"][y_model] if n_classes > 1 else y_model


def member_logits(pfn: PFN, cache: ContextCache, scalers: list[ContextScaler], members: list[dict],
                  X: np.ndarray, chunk_size: int) -> np.ndarray:
    """``f32[n_members, n_rows, num_outputs]``: every member's logits for the rows of X."""
    xq = stack_padded([s.transform_rows(member_columns(X, m)) for s, m in zip(scalers, members)])
    return np.asarray(pfn.logits_from_cache(cache, xq, chunk_size=chunk_size, pad_to_chunk=True))


def stack_padded(arrays: list[np.ndarray]) -> np.ndarray:
    """Stack ``[rows, width_i]`` arrays into ``[n, rows, max width]``, zero-padding the narrower ones."""
    width = max(a.shape[1] for a in arrays)
    return np.stack([np.pad(a, ((0, 0), (0, width - a.shape[1]))) for a in arrays])


__all__ = ["encode_members", "member_columns", "member_labels", "member_logits", "member_scaler", "stack_padded"]
