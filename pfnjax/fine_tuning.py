"""Fine-tuning a trained PFN on real tables: the PFN's own training loss on random context/query
splits of the real rows, with early stopping on rows held out from every split.

::

    tuned = pfnjax.finetune(pfnjax.load("cls-small"), (X, y), steps=40, key=jax.random.key(0))

What one fine-tuning step does:

1. each table is split once into *fit rows* and *held-out rows* (``holdout_fraction``, stratified
   by class for a classifier);
2. each table is seen through ``views`` ensemble members of the estimators
   (:func:`pfnjax.sklearn.ensemble.member_configs`: feature permutation, class shift, power
   transform, one-hot and principal-component columns), each preprocessed by the member's
   :class:`pfnjax.preprocessing.ContextScaler` fitted on the fit rows, as
   :class:`pfnjax.sklearn.PFNClassifier` preprocesses a context fitted on the same rows. So
   fine-tuning trains on the inputs inference will see;
3. a step draws ``batch_size`` (view, random order of its fit rows, context size) triples on the
   device: at most ``max_rows`` rows, the first ``sep`` of them the context, ``sep`` uniform in
   ``context_fraction`` of the rows; the loss is the head's mean NLL at the remaining rows
   (:func:`pfnjax.training.step.pfn_loss`'s definition, with padding rows masked out);
4. AdamW updates the weights (``lr``, gradient clipping at 1);
5. every ``eval_every`` steps, the held-out NLL (the mean over views of the NLL of the held-out
   rows given all fit rows as the context) decides which weights are kept: the result is the
   weights with the lowest held-out NLL, the starting weights included, so a fine-tune never
   returns a model that is worse on those rows than the one it started from.

The step is jitted and pure: the batch comes from ``fold_in(key, step)``, so a given key gives
the same result. Tables are padded to power-of-two row counts, so tables of similar size share
compiled programs (and repeated estimator fits reuse them).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from pfnjax.heads import BarHead, ClassHead, Head
from pfnjax.predict import PFN, _bucket
from pfnjax.preprocessing import TargetScaler
from pfnjax.types import Array, PRNGKey

# seconds a fine-tune may take before it warns: a fixed allowance plus a share per training row
# (a 1,000-row table justifies 25 s)
TIME_ALLOWANCE_S = 5.0
TIME_PER_ROW_S = 0.02
MIN_ROWS = 4  # a context row, a query row and a held-out row, with one to spare for the holdout's rounding
HELDOUT_CONTEXT = 1024  # context rows of the held-out evaluation at most (the estimators' max_context_size)


@dataclasses.dataclass(frozen=True)
class FinetuneRecord:
    """One evaluation of a fine-tune: the step, the held-out NLL and the mean training loss since
    the last evaluation (NaN at step 0)."""

    step: int
    heldout_nll: float
    train_loss: float


@dataclasses.dataclass(frozen=True)
class FinetuneHistory:
    """What a fine-tune did: its evaluations, the step whose weights it returned and its time."""

    records: list[FinetuneRecord]
    best_step: int
    seconds: float

    @property
    def improved(self) -> bool:
        """Whether the returned weights differ from the starting ones (a step > 0 was best)."""
        return self.best_step > 0


@dataclasses.dataclass(frozen=True)
class _Views:
    """Every view of every table, padded and stacked (host arrays)."""

    x_fit: np.ndarray  # f32[V, N, F_max] fit rows (zero rows past n_fit)
    y_fit: np.ndarray  # [V, N]
    n_fit: np.ndarray  # i32[V]
    n_features: np.ndarray  # i32[V]
    heldout: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]  # per view: x_ctx, y_ctx, x_out, y_out


def _as_tables(datasets) -> list[tuple[np.ndarray, np.ndarray]]:
    """``datasets`` (one ``(X, y)`` pair or a sequence of them) as a list of float/label arrays."""
    if isinstance(datasets, tuple) and len(datasets) == 2 and not isinstance(datasets[0], tuple):
        datasets = [datasets]
    tables = []
    for i, item in enumerate(datasets):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"datasets must be an (X, y) pair or a sequence of them; item {i} is {type(item).__name__}")
        X, y = np.asarray(item[0], np.float64), np.asarray(item[1])
        if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
            raise ValueError(f"table {i}: X must be [n, F] and y [n] with the same n; got {X.shape} and {y.shape}")
        tables.append((X, y))
    if not tables:
        raise ValueError("datasets is empty: pass at least one (X, y) table")
    return tables


def _check_table(pfn: PFN, i: int, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Validate a table for ``pfn``; returns the labels the model takes (class codes or floats)."""
    if X.shape[0] < MIN_ROWS:
        raise ValueError(f"table {i} has {X.shape[0]} rows; fine-tuning needs at least {MIN_ROWS} (context, query "
                         "and held-out rows)")
    if X.shape[1] < 1 or X.shape[1] > pfn.max_features:
        raise ValueError(f"table {i} has {X.shape[1]} features; this model takes 1 to {pfn.max_features}")
    if np.isinf(X).any() or (np.isnan(X).any() and not pfn.trained_with_missing):
        raise ValueError(f"table {i}: X contains NaN or inf; this model "
                         f"{'takes NaN but not inf' if pfn.trained_with_missing else 'was not trained with missing values'}")
    if isinstance(pfn.head, ClassHead):
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            raise ValueError(f"table {i}: a classifier's y must be class codes 0..C-1 (ints), got {y.dtype}")
        classes = np.unique(y)
        if classes.size < 2:
            raise ValueError(f"table {i}: y holds a single class ({classes.tolist()}); fine-tuning a classifier "
                             "needs at least 2 classes")
        if y.max() >= pfn.max_classes:
            raise ValueError(f"table {i}: y has codes up to {int(y.max())}, but the model takes at most "
                             f"{pfn.max_classes} classes")
        return y.astype(np.int32)
    if not np.all(np.isfinite(y.astype(np.float64))):
        raise ValueError(f"table {i}: y contains NaN or inf")
    return y.astype(np.float64)


def _holdout_split(y: np.ndarray, fraction: float, classification: bool, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the fit rows and the held-out rows (at least one held out; stratified by class)."""
    n = y.shape[0]
    if not classification:
        order = rng.permutation(n)
        k = min(max(1, round(fraction * n)), n - 3)
        return np.sort(order[k:]), np.sort(order[:k])
    held = []
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        if rows.size >= 2:  # a class seen once stays in the fit rows
            held.extend(rows[:max(1 if fraction > 0 else 0, round(fraction * rows.size))])
    held = np.asarray(held if held else rng.permutation(n)[:1], int)
    fit = np.setdiff1d(np.arange(n), held)
    return fit, np.sort(held)


def _build_views(pfn: PFN, tables: list[tuple[np.ndarray, np.ndarray]], view_members: list[list[dict]],
                 holdout_fraction: float, preprocessing: str, outlier_sigma: float | None,
                 rng: np.random.Generator) -> _Views:
    from pfnjax.sklearn.members import member_columns, member_labels, member_scaler

    classification = isinstance(pfn.head, ClassHead)
    xs, ys, n_fit, widths, heldout = [], [], [], [], []
    for (X, y), members in zip(tables, view_members):
        fit, out = _holdout_split(y, holdout_fraction, classification, rng)
        if classification:
            y_model, n_classes = y, pfn.max_classes
        else:
            target = TargetScaler().fit(y[fit])  # the regressor standardises y with its context's moments
            y_model, n_classes = target.transform(y), 1
        for m in members:
            scaler = member_scaler(pfn, m, X[fit], preprocessing, outlier_sigma)
            x_fit = scaler.transform_rows(member_columns(X[fit], m))
            y_m = member_labels(y_model, m, n_classes)
            xs.append(x_fit)
            ys.append(y_m[fit])
            n_fit.append(len(fit))
            widths.append(x_fit.shape[1])
            heldout.append((x_fit, y_m[fit], scaler.transform_rows(member_columns(X[out], m)), y_m[out]))
    rows = _bucket(max(n_fit))
    width = pfn.max_features
    y_dtype = np.int32 if classification else np.float32
    x_all = np.zeros((len(xs), rows, width), np.float32)
    y_all = np.zeros((len(xs), rows), y_dtype)
    for v, (x, y_v) in enumerate(zip(xs, ys)):
        x_all[v, :x.shape[0], :x.shape[1]] = x
        y_all[v, :y_v.shape[0]] = y_v
    return _Views(x_all, y_all, np.asarray(n_fit, np.int32), np.asarray(widths, np.int32), heldout)


def split_batch(x_fit: Array, y_fit: Array, n_fit: Array, n_features: Array, key: PRNGKey, batch_size: int,
                rows: int, context_fraction: tuple[float, float]):
    """A batch of random context/query splits of the views (on the device).

    Returns ``x [B, rows, F]``, ``y [B, rows]``, ``sep i32[B]`` (context rows), ``num_features
    i32[B]`` and ``query f32[B, rows]`` (1 at the query rows, 0 at context and padding rows)."""
    k_view, k_order, k_sep = jax.random.split(key, 3)
    view = jax.random.randint(k_view, (batch_size,), 0, x_fit.shape[0])
    n_all = n_fit[view]
    scores = jax.random.uniform(k_order, (batch_size, x_fit.shape[1]))
    scores = jnp.where(jnp.arange(x_fit.shape[1])[None] < n_all[:, None], scores, 2.0)  # padding rows last
    order = jnp.argsort(scores, axis=1)[:, :rows]
    x = jnp.take_along_axis(x_fit[view], order[..., None], axis=1)
    y = jnp.take_along_axis(y_fit[view], order, axis=1)
    n = jnp.minimum(n_all, rows)
    lo = jnp.clip(jnp.floor(context_fraction[0] * n), 1, n - 1)
    hi = jnp.clip(jnp.ceil(context_fraction[1] * n), lo, n - 1)
    sep = (lo + jnp.floor(jax.random.uniform(k_sep, (batch_size,)) * (hi - lo + 1))).astype(jnp.int32)
    sep = jnp.minimum(sep, hi.astype(jnp.int32))
    pos = jnp.arange(rows)[None]
    query = ((pos >= sep[:, None]) & (pos < n[:, None])).astype(jnp.float32)
    return x, y, sep, n_features[view], query


def split_loss(graphdef: nnx.GraphDef, params: Any, head: Head, x: Array, y: Array, sep: Array,
               num_features: Array, query: Array) -> Array:
    """The PFN's training loss on the splits: the mean over datasets of the mean NLL at the query rows."""
    logits = nnx.merge(graphdef, params)(x, y, sep, num_features)
    nll = head.loss(logits, y)
    return jnp.mean(jnp.sum(nll * query, axis=1) / jnp.maximum(jnp.sum(query, axis=1), 1.0))


@functools.lru_cache(maxsize=32)
def _step_fn(graphdef: nnx.GraphDef, lr: float, weight_decay: float, batch_size: int, rows: int,
             context_fraction: tuple[float, float]):
    """The jitted step ``(params, opt_state, head, views..., key) -> (params, opt_state, loss)``,
    cached so repeated fine-tunes of one model share its compiled program."""
    tx = _optimizer(lr, weight_decay)

    def step(params, opt_state, head, x_fit, y_fit, n_fit, n_features, key):
        batch = split_batch(x_fit, y_fit, n_fit, n_features, key, batch_size, rows, context_fraction)
        loss, grads = jax.value_and_grad(lambda p: split_loss(graphdef, p, head, *batch))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return jax.jit(step)


def _optimizer(lr: float, weight_decay: float) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(lr, weight_decay=weight_decay))


def heldout_nll(pfn: PFN, views: _Views) -> float:
    """The mean over views of the mean NLL of the held-out rows, given all fit rows as the context."""
    values = []
    for x_ctx, y_ctx, x_out, y_out in views.heldout:
        logits = pfn.logits(x_ctx[:HELDOUT_CONTEXT], y_ctx[:HELDOUT_CONTEXT], x_out)
        values.append(float(jnp.mean(pfn.head.loss(logits, jnp.asarray(y_out)))))
    return float(np.mean(values))


def finetune(pfn: PFN, datasets, steps: int, *, key: PRNGKey | int = 0, lr: float = 1e-4,
             batch_size: int = 8, max_rows: int = 512, context_fraction: tuple[float, float] = (0.5, 0.95),
             holdout_fraction: float = 0.2, eval_every: int = 10, patience: int | None = None,
             views: int = 4, weight_decay: float = 0.0, preprocessing: str = "power",
             outlier_sigma: float | None = 4.0, view_members: list[list[dict]] | None = None,
             progress: bool = True, return_history: bool = False):
    """Fine-tune ``pfn`` on real tables (see the module docstring); ``pfn`` is left unchanged.

    Args:
        pfn: a trained PFN (any registered architecture; bar head or class head).
        datasets: one ``(X, y)`` table or a sequence of them. ``X`` is ``[n, F]`` numeric
            (``F <= pfn.max_features``; NaN only if the model was trained with missing values);
            ``y`` is class codes ``0..C-1`` for a classifier (``2 <= C <= pfn.max_classes``), real
            values for a regressor (standardised per table, as the regressor does).
        steps: optimizer steps (0 returns ``pfn`` itself).
        key: a PRNG key or an int seed: the holdout split, the views and every batch follow from it.
        lr: AdamW's learning rate (> 0), constant.
        batch_size: splits per step.
        max_rows: rows per split at most (a random subset of a larger table's fit rows).
        context_fraction: the range the context's share of a split's rows is drawn from, uniformly.
        holdout_fraction: share of each table's rows held out for early stopping (stratified).
        eval_every: steps between held-out evaluations (the weights are chosen among them).
        patience: stop after this many evaluations without improvement (None: run all steps).
        views: ensemble members per table (the estimators' preprocessing of each; ignored when
            ``view_members`` is given).
        weight_decay: AdamW's decoupled weight decay.
        preprocessing, outlier_sigma: as the estimators' parameters of those names.
        view_members: per table, the ensemble members to train on (the estimators pass their own).
        progress: show a progress bar with the held-out NLL.
        return_history: also return a :class:`FinetuneHistory`.

    Returns:
        A new :class:`PFN` with the chosen weights (``pfn`` itself when no step improved the
        held-out NLL), and with ``return_history`` the history.
    """
    from tqdm.auto import tqdm

    from pfnjax.sklearn.ensemble import EnsembleOptions, member_configs

    _check_settings(steps, lr, batch_size, max_rows, context_fraction, holdout_fraction, eval_every, patience, views,
                    weight_decay)
    tables = [(X, _check_table(pfn, i, X, y)) for i, (X, y) in enumerate(_as_tables(datasets))]
    start = time.perf_counter()
    if steps == 0:
        history = FinetuneHistory([], 0, 0.0)
        return (pfn, history) if return_history else pfn
    key = jax.random.key(key) if isinstance(key, int) else key
    rng = np.random.default_rng(np.asarray(jax.random.key_data(jax.random.fold_in(key, 0))).ravel())
    classification = isinstance(pfn.head, ClassHead)
    if view_members is None:
        options = EnsembleOptions(views, "random", "shift" if classification else "none", preprocessing, 10**9,
                                  "ordinal", "mixed")
        view_members = [member_configs(options, X.shape[0], X.shape[1], int(y.max()) + 1 if classification else 1,
                                       y if classification else None, {}, pfn.max_features, rng)
                        for X, y in tables]
    elif len(view_members) != len(tables):
        raise ValueError(f"view_members has {len(view_members)} entries for {len(tables)} tables")
    data = _build_views(pfn, tables, view_members, holdout_fraction, preprocessing, outlier_sigma, rng)
    rows = min(_bucket(max_rows), data.x_fit.shape[1])
    step_fn = _step_fn(pfn.graphdef, float(lr), float(weight_decay), int(batch_size), int(rows),
                       tuple(float(f) for f in context_fraction))
    device_views = [jnp.asarray(a) for a in (data.x_fit, data.y_fit, data.n_fit, data.n_features)]
    params = pfn.params
    opt_state = _optimizer(lr, weight_decay).init(params)
    best_params, best_nll, best_step = pfn.params, heldout_nll(pfn, data), 0
    records = [FinetuneRecord(0, best_nll, float("nan"))]
    losses, stale, compile_s = [], 0, 0.0
    bar = tqdm(total=steps, desc="fine-tuning", unit="step", disable=not progress, dynamic_ncols=True)
    try:
        for step in range(1, steps + 1):
            params, opt_state, loss = step_fn(params, opt_state, pfn.head, *device_views, jax.random.fold_in(key, step))
            losses.append(loss)
            if step == 1:  # preprocessing, the first evaluation and step compile: not the steps' cost
                compile_s = time.perf_counter() - start if jax.block_until_ready(loss) is not None else 0.0
            bar.update(1)
            if step % eval_every and step != steps:
                continue
            nll = heldout_nll(dataclasses.replace(pfn, params=params), data)
            records.append(FinetuneRecord(step, nll, float(np.mean(jax.device_get(losses)))))
            losses = []
            if nll < best_nll:
                best_params, best_nll, best_step, stale = params, nll, step, 0
            else:
                stale += 1
            bar.set_postfix(heldout_nll=f"{nll:.4f}", best=f"{best_nll:.4f}@{best_step}")
            if patience is not None and stale >= patience:
                break
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    n_rows = sum(X.shape[0] for X, _ in tables)
    if seconds - compile_s > TIME_ALLOWANCE_S + TIME_PER_ROW_S * n_rows:
        warnings.warn(f"fine-tuning took {seconds - compile_s:.0f} s (besides preparing and compiling) for {n_rows} rows, more "
                      f"than their size justifies "
                      f"(about {TIME_ALLOWANCE_S + TIME_PER_ROW_S * n_rows:.0f} s): with few rows, more steps mostly "
                      f"fit noise; lower steps, or pass patience= to stop once the held-out NLL stops improving",
                      UserWarning, stacklevel=2)
    tuned = pfn if best_step == 0 else dataclasses.replace(pfn, params=best_params)
    history = FinetuneHistory(records, best_step, seconds)
    return (tuned, history) if return_history else tuned


def _check_settings(steps, lr, batch_size, max_rows, context_fraction, holdout_fraction, eval_every, patience,
                    views, weight_decay) -> None:
    def whole(name, value, low):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")

    whole("steps", steps, 0)
    whole("batch_size", batch_size, 1)
    whole("max_rows", max_rows, 2)
    whole("eval_every", eval_every, 1)
    whole("views", views, 1)
    if patience is not None:
        whole("patience", patience, 1)
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    lo, hi = context_fraction
    if not 0 < lo <= hi < 1:
        raise ValueError(f"context_fraction must be (lo, hi) with 0 < lo <= hi < 1, got {context_fraction!r}")
    if not 0 < holdout_fraction < 1:
        raise ValueError(f"holdout_fraction must lie in (0, 1), got {holdout_fraction!r}")


__all__ = ["MIN_ROWS", "FinetuneHistory", "FinetuneRecord", "finetune", "heldout_nll", "split_batch", "split_loss"]
