"""Inference with a trained PFN: load a run, predict with a cached context, stream queries.

``PFN.predict`` encodes the context once (per-layer keys/values) and runs the queries through
the layers in chunks against that cache, so memory grows with ``n_ctx² + chunk·n_ctx`` and
never with ``n_qry²``. Context and query arrays are padded to bucketed static sizes with a
key-length mask, so a new context size rarely triggers a recompile.

To reuse one context for several query sets (Bayesian optimisation, the scikit-learn estimators),
call :meth:`PFN.encode` once and :meth:`PFN.logits_from_cache` per query set. For gradients with
respect to the query points (maximising an acquisition function), :func:`query_logits` and
:meth:`PFN.query_logits` are the pure ``jnp`` path: they work under ``jit``, ``grad`` and ``vmap``.

The jitted encode and decode functions are module-level with the graph definition as a static
argument, so copies of a ``PFN`` (``copy.deepcopy``, ``sklearn.clone``, unpickling) share compiled
programs.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import warnings
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from pfnjax import checkpoint as ckpt
from pfnjax.config import TrainConfig
from pfnjax.distributions.categorical import CategoricalDistribution
from pfnjax.heads import BarHead, Head
from pfnjax.model.base import ModelConfigBase, ModelIO, build_model, count_params, pad_features
from pfnjax.runs import RunInfo, restore_inference
from pfnjax.types import Array

PRETRAINED_DIR = Path(__file__).parent / "pretrained"


# The former name of the classification output, kept so existing code keeps working.
ClassProbabilities = CategoricalDistribution


@functools.partial(jax.jit, static_argnums=0)
def _encode_jit(graphdef, params, x_ctx, y_ctx, ctx_len, n_feat):
    return nnx.merge(graphdef, params).encode_context(x_ctx, y_ctx, ctx_len, n_feat)


@functools.partial(jax.jit, static_argnums=0)
def _decode_jit(graphdef, params, caches, x_qry, ctx_len, n_feat):
    return nnx.merge(graphdef, params).predict_queries(caches, x_qry, ctx_len, n_feat)


@functools.partial(jax.jit, static_argnums=0)
def _full_forward_jit(graphdef, params, x, y, sep, n_feat):
    return nnx.merge(graphdef, params)(x, y, sep, n_feat)


@struct.dataclass
class ContextCache:
    """An encoded context (:meth:`PFN.encode`): per-layer keys/values of the padded context rows.

    A pytree (the host ints are static), so it can be passed into jitted, differentiated or
    vmapped functions such as :func:`query_logits`.

    Attributes:
        caches: what the architecture keeps of the context (for the classic transformer, one
            :class:`pfnjax.model.LayerCache` per layer, ``f32[B, N_pad, heads, head_dim]``).
        context_len: ``i32[B]`` valid context rows (the rest is padding, masked out).
        num_features: ``i32[B]`` used feature columns.
        n_context, n_features: host ints (the unpadded context size and feature count).
        batched: whether the context was given with a leading batch axis.
        label_summary: what the head needs to know of the context labels
            (:meth:`pfnjax.heads.Head.label_summary`: the classes a classification context shows).
    """

    caches: list
    context_len: Array
    num_features: Array
    n_context: int = struct.field(pytree_node=False)
    n_features: int = struct.field(pytree_node=False)
    batched: bool = struct.field(pytree_node=False)
    label_summary: int = struct.field(pytree_node=False, default=-1)

    @property
    def batch_size(self) -> int:
        return int(self.context_len.shape[0])


def query_logits(graphdef: nnx.GraphDef, params: Any, cache: ContextCache, x_qry: Array) -> Array:
    """Logits for queries against an encoded context: pure ``jnp``, for ``jit``, ``grad`` and ``vmap``.

    Unlike :meth:`PFN.logits_from_cache` there is no numpy conversion, validation of values,
    padding to buckets or chunking: all ``M`` queries go through the layers at once (memory
    ``O(M · n_ctx)``), and the result is differentiable in ``x_qry`` and ``params``.

    Args:
        graphdef: the model's graph definition (static under ``jit``).
        params: the model's parameters.
        cache: a context from :meth:`PFN.encode`.
        x_qry: ``f32[M, F]`` (``f32[B, M, F]`` for a batched cache), ``F`` = the context's used columns.
    Returns:
        ``f32[M, num_outputs]`` (``f32[B, M, num_outputs]``).
    """
    x = jnp.asarray(x_qry, jnp.float32)
    want = 3 if cache.batched else 2
    if x.ndim != want or x.shape[-1] != cache.n_features:
        raise ValueError(f"x_qry must be {'[B, M, F]' if cache.batched else '[M, F]'} with F={cache.n_features} "
                         f"(the context's columns); got shape {x.shape}")
    if not cache.batched:
        x = x[None]
    model = nnx.merge(graphdef, params)
    out = model.predict_queries(cache.caches, pad_features(x, model.io.max_features), cache.context_len,
                                cache.num_features)
    return out if cache.batched else out[0]


def _bucket(n: int, minimum: int = 16) -> int:
    """Round a size up to a power of two (at least ``minimum``) to bound recompiles."""
    return max(minimum, 1 << max(0, int(n - 1).bit_length()))


def _pad_rows(a: np.ndarray, rows: int) -> Array:
    """``a [B, N, ...]`` zero-padded to ``rows`` rows (axis 1), as a device array."""
    a = jnp.asarray(a)
    return jnp.pad(a, [(0, 0), (0, rows - a.shape[1])] + [(0, 0)] * (a.ndim - 2))


def compiled_sizes(n: int, chunk_size: int = 1024) -> tuple[int, int]:
    """``(context rows, query rows per chunk)`` that :meth:`PFN.encode` and
    :meth:`PFN.logits_from_cache` compile for ``n`` context rows or ``n`` queries: contexts are
    padded to a power of two of at least 16 rows; queries run in chunks of the power of two at or
    above ``n`` (at least 16), capped at ``chunk_size`` rounded up to a power of two."""
    return _bucket(n), min(_bucket(n), _bucket(chunk_size))


@dataclasses.dataclass(frozen=True, eq=False)
class PFN:
    """A trained PFN: architecture, parameters and its output head (:mod:`pfnjax.heads`)."""

    model_config: ModelConfigBase  # the architecture's config (pfnjax.model)
    io: ModelIO  # its input width, output width and label embedding
    graphdef: nnx.GraphDef
    params: Any
    head: Head
    train_config: TrainConfig | None = None
    trained_with_missing: bool = False
    prior_spec: dict | None = None  # the training prior's saved spec (pfnjax.priors.base.prior_spec)
    input_range: tuple[float, float] | None = None  # the box the training inputs lay in, if bounded

    def __repr__(self) -> str:
        n_params = count_params(nnx.merge(self.graphdef, self.params)) if self.params is not None else 0
        settings = ", ".join(f"{k}={v!r}" for k, v in self.model_config.to_dict().items() if k != "name")
        prior = (self.prior_spec or {}).get("class", "unknown")
        return (f"PFN(model={self.model_config.name!r} ({settings}), {n_params / 1e6:.2f}M params, "
                f"max_features={self.max_features}, head={type(self.head).__name__}"
                f"({self.head.num_outputs} outputs), prior={prior}, "
                f"trained_with_missing={self.trained_with_missing})")

    @property
    def task(self) -> str:
        """The prior task the head serves (``regression``, ``classification``...)."""
        return self.head.task

    @property
    def borders(self) -> Array:
        """The bar-distribution borders ``f32[K+1]`` of a bar-head PFN."""
        if not isinstance(self.head, BarHead):
            raise AttributeError(f"this PFN has a {type(self.head).__name__}, which has no bar borders")
        return self.head.borders

    @property
    def max_features(self) -> int:
        return self.io.max_features

    @property
    def max_classes(self) -> int:
        """Label classes the model embeds (0 for real-valued labels)."""
        return self.io.y_vocab

    @classmethod
    def from_run_info(cls, info: RunInfo, graphdef: nnx.GraphDef, params: Any) -> "PFN":
        """A PFN from a saved run's metadata and its parameters."""
        return cls(info.model_config, info.io, graphdef, params, info.head, info.train_config,
                   info.trained_with_missing, info.prior_spec, info.input_range)

    @classmethod
    def from_train_result(cls, result) -> "PFN":
        """Wrap the output of :func:`pfnjax.train`."""
        info = RunInfo(result.config, result.config.model, result.io, result.head, result.prior_spec,
                       result.prior_info)
        return cls.from_run_info(info, result.graphdef, result.params)

    @classmethod
    def init(cls, model_config: ModelConfigBase, io: ModelIO, head: Head | None = None, seed: int = 0,
             trained_with_missing: bool = False) -> "PFN":
        """A randomly initialised PFN (for timing and tests). The head must match ``io``; by default
        a bar head with equally spaced borders on [-3, 3] (real-valued labels only)."""
        if head is None:
            if io.y_vocab:
                raise ValueError("pass the head of a PFN whose labels are classes (y_vocab > 0)")
            head = BarHead.equally_spaced(io.num_outputs)
        if (head.num_outputs, head.y_vocab) != (io.num_outputs, io.y_vocab):
            raise ValueError(f"head {type(head).__name__} has num_outputs={head.num_outputs}, y_vocab={head.y_vocab}; "
                             f"the model has {io.num_outputs}, {io.y_vocab}")
        graphdef, params = nnx.split(build_model(model_config, io, nnx.Rngs(seed)), nnx.Param)
        return cls(model_config, io, graphdef, params, head, None, trained_with_missing)

    def __getstate__(self) -> dict:
        # Pickles (and deep copies) carry host arrays, restored as device arrays on load.
        state = dict(self.__dict__)
        state["params"] = jax.tree.map(np.asarray, state["params"])
        state["head"] = jax.tree.map(np.asarray, state["head"])
        return state

    def __deepcopy__(self, memo: dict) -> "PFN":
        # jax arrays, the graph definition and the configs are immutable: share them (deep-copying
        # nnx Variables would also turn them into plain pytree leaves and force a recompile).
        return dataclasses.replace(self, train_config=copy.deepcopy(self.train_config, memo),
                                   prior_spec=copy.deepcopy(self.prior_spec, memo))

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        state["params"] = jax.tree.map(jnp.asarray, state["params"])
        state["head"] = jax.tree.map(jnp.asarray, state["head"])
        self.__dict__.update(state)

    # ------------------------------------------------------------------ public API
    def encode(self, x_ctx, y_ctx, num_features=None) -> ContextCache:
        """Encode a context once (``O(n_ctx²)``) for any number of :meth:`logits_from_cache` calls.

        ``x_ctx: [N, F]`` or ``[B, N, F]``, ``y_ctx: [N]`` or ``[B, N]`` (numpy or jax). The context
        is zero-padded to a power-of-two bucket, so similar sizes share one compiled program.
        ``num_features`` (``int[B]``, default ``F`` for all) lets the datasets of a batch use
        different numbers of columns: dataset ``b`` uses its first ``num_features[b]`` columns, the
        rest are ignored (the model zeroes them, in the queries too), exactly as if it were encoded alone.
        """
        x_ctx, y_ctx, batched = self._validate_context(x_ctx, y_ctx)
        b, n_ctx, n_feat_used = x_ctx.shape
        counts = self._feature_counts(num_features, b, n_feat_used)
        self._warn_outside_training(x_ctx, counts)
        ctx_pad = _bucket(n_ctx)
        xc = pad_features(_pad_rows(x_ctx, ctx_pad), self.max_features)
        yc = _pad_rows(y_ctx, ctx_pad)
        ctx_len = jnp.full((b,), n_ctx, jnp.int32)
        n_feat = jnp.asarray(counts, jnp.int32)
        caches = _encode_jit(self.graphdef, self.params, xc, yc, ctx_len, n_feat)
        return ContextCache(caches, ctx_len, n_feat, n_ctx, n_feat_used, batched, self.head.label_summary(y_ctx))

    @staticmethod
    def _feature_counts(num_features, batch: int, width: int) -> np.ndarray:
        if num_features is None:
            return np.full((batch,), width, np.int32)
        counts = np.asarray(num_features)
        if counts.shape != (batch,) or not np.issubdtype(counts.dtype, np.integer):
            raise ValueError(f"num_features must be {batch} ints (one per context), got {num_features!r}")
        if counts.min() < 1 or counts.max() > width:
            raise ValueError(f"num_features must lie in [1, {width}] (the context's columns), got {counts.tolist()}")
        return counts.astype(np.int32)

    def logits_from_cache(self, cache: ContextCache, x_qry, *, chunk_size: int = 1024,
                          pad_to_chunk: bool = False) -> Array:
        """Logits ``f32[(B,) M, num_outputs]`` for queries against an encoded context.

        Queries run in chunks of ``chunk_size`` rows (rounded up to a power of two), so peak memory
        is ``O(n_ctx · chunk)`` whatever ``M``. A new query count compiles a new program only when
        it falls into a new power-of-two chunk size (16, 32, ... up to ``chunk_size``; see
        :func:`compiled_sizes` and :meth:`warmup`). With ``pad_to_chunk`` every chunk, even for a
        few queries, has exactly that shape: a query's output then never depends on how many other
        queries were predicted with it (bitwise), and one program serves every query count, at the
        price of computing a full chunk.
        """
        x_qry = self._validate_queries(cache, x_qry)
        self._warn_outside_training(x_qry, np.asarray(cache.num_features))
        b, n_qry, n_feat_used = x_qry.shape
        chunk = _bucket(chunk_size, minimum=1) if pad_to_chunk else min(_bucket(n_qry), _bucket(chunk_size))
        qry_pad = -(-n_qry // chunk) * chunk
        xq = pad_features(_pad_rows(x_qry, qry_pad), self.max_features)
        outs = [
            _decode_jit(self.graphdef, self.params, cache.caches, xq[:, s : s + chunk],
                        cache.context_len, cache.num_features)
            for s in range(0, qry_pad, chunk)
        ]
        out = jnp.concatenate(outs, axis=1)[:, :n_qry] if len(outs) > 1 else outs[0][:, :n_qry]
        return out if cache.batched else out[0]

    def warmup(self, context_sizes: Sequence[int] = (16,), query_counts: Sequence[int] = (16,), *,
               num_features: int | None = None, batch_size: int = 1, chunk_size: int = 1024) -> list[tuple[int, int]]:
        """Compile ahead of time the programs that contexts of ``context_sizes`` rows and query sets
        of ``query_counts`` rows will use (see :func:`compiled_sizes`), so later calls of those
        sizes run without compiling. Returns the ``(context rows, query chunk)`` shapes compiled."""
        f = self.max_features if num_features is None else int(num_features)
        shapes = sorted({(compiled_sizes(n, chunk_size)[0], compiled_sizes(m, chunk_size)[1])
                         for n in context_sizes for m in query_counts})
        y_dtype = np.int32 if self.io.y_vocab else np.float32
        for n, m in shapes:
            x = np.zeros((batch_size, n, f), np.float32)
            cache = self.encode(x, np.zeros((batch_size, n), y_dtype))
            jax.block_until_ready(self.logits_from_cache(cache, np.zeros((batch_size, m, f), np.float32),
                                                         chunk_size=chunk_size))
        return shapes

    def query_logits(self, cache: ContextCache, x_qry: Array) -> Array:
        """Pure, differentiable logits for queries against ``cache`` (see :func:`query_logits`).

        For gradients of an acquisition function with respect to the query points::

            cache = pfn.encode(x_ctx, y_ctx)
            ei = lambda x: pfn.head.distribution(pfn.query_logits(cache, x)).ei(best)
            grad = jax.grad(lambda x: ei(x).sum())(x_qry)
        """
        return query_logits(self.graphdef, self.params, cache, x_qry)

    def logits(self, x_ctx, y_ctx, x_qry, *, chunk_size: int = 1024) -> Array:
        """Raw output logits ``f32[(B,) M, num_outputs]`` for the queries. See :meth:`predict`."""
        x_ctx, y_ctx, x_qry, batched = self._validate(x_ctx, y_ctx, x_qry)
        out = self.logits_from_cache(self.encode(x_ctx, y_ctx), x_qry, chunk_size=chunk_size)
        return out if batched else out[0]

    def logits_uncached(self, x_ctx, y_ctx, x_qry) -> Array:
        """Reference path: one full forward pass (:meth:`PFNTransformer.__call__`) over the
        concatenated ``[context; queries]`` sequence, without caching or chunking (memory and time
        grow with ``(n_ctx + n_qry) · n_ctx``; for tests and benchmarks)."""
        x_ctx, y_ctx, x_qry, batched = self._validate(x_ctx, y_ctx, x_qry)
        b, n_ctx, n_feat_used = x_ctx.shape
        x = pad_features(jnp.concatenate([jnp.asarray(x_ctx), jnp.asarray(x_qry)], axis=1), self.max_features)
        y = _pad_rows(y_ctx, x.shape[1])
        out = _full_forward_jit(self.graphdef, self.params, jnp.asarray(x), jnp.asarray(y),
                                jnp.full((b,), n_ctx, jnp.int32), jnp.full((b,), n_feat_used, jnp.int32))
        out = out[:, n_ctx:]
        return out if batched else out[0]

    def predict(self, x_ctx, y_ctx, x_qry, *, chunk_size: int = 1024, **options: Any):
        """Posterior predictive distribution at ``x_qry`` given the context ``(x_ctx, y_ctx)``.

        Args:
            x_ctx: ``[N, F]`` or batched ``[B, N, F]`` (numpy or jax); ``F <= max_features``. Pass only
                the used columns, not zero padding: the model rescales x by the used fraction
                ``F / max_features`` as in training, and padding columns would distort that.
            y_ctx: ``[N]`` or ``[B, N]``: real targets (regression) or class indices (classification).
            x_qry: ``[M, F]`` or ``[B, M, F]``.
            chunk_size: queries per chunk against the cached context.
            options: passed to the head's :meth:`~pfnjax.heads.Head.distribution`; classification
                takes ``num_classes`` (default ``max(y_ctx) + 1``).
        Returns:
            A :class:`pfnjax.distributions.bar.BarDistribution` (regression) with ``mean()``,
            ``quantile(q)``, ``expected_improvement(best)``..., or a
            :class:`pfnjax.distributions.categorical.CategoricalDistribution` (classification).
        """
        x_ctx, y_ctx, x_qry, batched = self._validate(x_ctx, y_ctx, x_qry)
        cache = self.encode(x_ctx if batched else x_ctx[0], y_ctx if batched else y_ctx[0])
        return self.predict_from_cache(cache, x_qry if batched else x_qry[0], chunk_size=chunk_size, **options)

    def predict_from_cache(self, cache: ContextCache, x_qry, *, chunk_size: int = 1024, **options: Any):
        """Like :meth:`predict`, for a context encoded once with :meth:`encode` (re-query without re-encoding)."""
        logits = self.logits_from_cache(cache, x_qry, chunk_size=chunk_size)
        return self.head.distribution(logits, cache.label_summary, **options)

    # ------------------------------------------------------------------ validation
    def _validate(self, x_ctx, y_ctx, x_qry) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """Check a (context, queries) triple; returns batched float32/int32 arrays and the batched flag."""
        x_ctx, y_ctx, x_qry = (np.asarray(a) for a in (x_ctx, y_ctx, x_qry))
        batched = x_ctx.ndim == 3
        if not batched:
            if x_ctx.ndim != 2 or y_ctx.ndim != 1 or x_qry.ndim != 2:
                raise ValueError(
                    f"expected x_ctx [N, F], y_ctx [N], x_qry [M, F] (or batched with a leading B); "
                    f"got {x_ctx.shape}, {y_ctx.shape}, {x_qry.shape}"
                )
            x_ctx, y_ctx, x_qry = x_ctx[None], y_ctx[None], x_qry[None]
        elif y_ctx.ndim != 2 or x_qry.ndim != 3 or not (x_ctx.shape[0] == y_ctx.shape[0] == x_qry.shape[0]):
            raise ValueError(
                f"batched input must be x_ctx [B, N, F], y_ctx [B, N], x_qry [B, M, F]; "
                f"got {x_ctx.shape}, {y_ctx.shape}, {x_qry.shape}"
            )
        x_ctx, y_ctx, _ = self._validate_context(x_ctx, y_ctx)
        if x_ctx.shape[2] != x_qry.shape[2]:
            raise ValueError(f"x_ctx has {x_ctx.shape[2]} features but x_qry has {x_qry.shape[2]}")
        x_qry = self._check_queries(x_qry)
        return x_ctx, y_ctx, x_qry, batched

    def _validate_context(self, x_ctx, y_ctx) -> tuple[np.ndarray, np.ndarray, bool]:
        x_ctx, y_ctx = np.asarray(x_ctx), np.asarray(y_ctx)
        batched = x_ctx.ndim == 3
        if not batched:
            if x_ctx.ndim != 2 or y_ctx.ndim != 1:
                raise ValueError(f"expected x_ctx [N, F] and y_ctx [N] (or batched with a leading B); "
                                 f"got {x_ctx.shape}, {y_ctx.shape}")
            x_ctx, y_ctx = x_ctx[None], y_ctx[None]
        elif y_ctx.ndim != 2 or x_ctx.shape[0] != y_ctx.shape[0]:
            raise ValueError(f"batched context must be x_ctx [B, N, F], y_ctx [B, N]; got {x_ctx.shape}, {y_ctx.shape}")
        if x_ctx.shape[1] != y_ctx.shape[1]:
            raise ValueError(f"x_ctx has {x_ctx.shape[1]} rows but y_ctx has {y_ctx.shape[1]}")
        if x_ctx.shape[1] == 0:
            raise ValueError("the context is empty: a PFN needs at least one labelled row")
        if x_ctx.shape[2] > self.max_features:
            raise ValueError(f"{x_ctx.shape[2]} features given but this model supports at most {self.max_features}")
        if x_ctx.shape[2] == 0:
            raise ValueError("inputs have zero features")
        self._check_finite("x_ctx", x_ctx)
        return x_ctx.astype(np.float32), self.head.check_labels(y_ctx), batched

    def _validate_queries(self, cache: ContextCache, x_qry) -> np.ndarray:
        x_qry = np.asarray(x_qry)
        want = 3 if cache.batched else 2
        if x_qry.ndim != want:
            raise ValueError(f"x_qry must be {'[B, M, F]' if cache.batched else '[M, F]'} like the encoded context; "
                             f"got shape {x_qry.shape}")
        if not cache.batched:
            x_qry = x_qry[None]
        if x_qry.shape[0] != cache.batch_size:
            raise ValueError(f"x_qry has batch size {x_qry.shape[0]} but the context has {cache.batch_size}")
        if x_qry.shape[2] != cache.n_features:
            raise ValueError(f"the context has {cache.n_features} features but x_qry has {x_qry.shape[2]}")
        return self._check_queries(x_qry)

    def _check_queries(self, x_qry: np.ndarray) -> np.ndarray:
        if x_qry.shape[1] == 0:
            raise ValueError("x_qry has no rows")
        self._check_finite("x_qry", x_qry)
        return x_qry.astype(np.float32)

    def _warn_outside_training(self, x: np.ndarray, counts: np.ndarray) -> None:
        """Warn when inputs leave what the model was trained on: fewer used features than any
        training dataset had, or values outside the box of a prior with bounded inputs."""
        if self.train_config is not None:
            data = self.train_config.data
            fewest = data.num_features if data.min_features is None else data.min_features
            if counts.min() < fewest:
                trained = (f"exactly {fewest}" if fewest == data.num_features else
                           f"{fewest} to {data.num_features}")
                warnings.warn(f"this model was trained only on datasets with {trained} features; inputs with "
                              f"{int(counts.min())} features are outside that, so its predictions may be poor",
                              UserWarning, stacklevel=3)
        if self.input_range is not None:
            lo, hi = self.input_range
            margin = 0.05 * (hi - lo)
            with np.errstate(invalid="ignore"):
                outside = (x < lo - margin) | (x > hi + margin)
            if np.any(outside):
                warnings.warn(f"this model was trained on inputs in [{lo:g}, {hi:g}] (its prior's input box); "
                              f"{int(outside.sum())} input values lie outside it: rescale x to that box",
                              UserWarning, stacklevel=3)

    def _check_finite(self, name: str, x: np.ndarray) -> None:
        if not self.trained_with_missing:
            if not np.all(np.isfinite(x)):
                raise ValueError(f"{name} contains NaN or inf; this model was not trained with missing values")
        elif np.any(np.isinf(x)):
            raise ValueError(f"{name} contains inf")


def shipped_models() -> list[str]:
    """Names of the pretrained models shipped with pfnjax (loadable with ``pfnjax.load(name)``)."""
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / "config.json").exists())


def load(path: str | Path, step: int | None = None, *, attention_impl: str | None = None) -> PFN:
    """Load a trained PFN from a run directory, or a shipped pretrained model by name.

    Reads only what inference needs: the parameters, the model config and the head (never the
    optimizer state).

    Args:
        path: run directory or pretrained model name.
        step: checkpoint step (default: the latest).
        attention_impl: ``auto``, ``xla`` or ``cudnn``; default: the one saved with the run.

    Raises:
        CheckpointError: the directory is missing, has no complete checkpoint, or is corrupt.
    """
    path = Path(path)
    if not path.exists():
        if (PRETRAINED_DIR / str(path)).exists():
            path = PRETRAINED_DIR / str(path)
        else:
            names = shipped_models()
            close = difflib.get_close_matches(str(path), names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ckpt.CheckpointError(f"run directory {str(path)!r} does not exist, and no shipped model has that "
                                       f"name; shipped models: {', '.join(names)}.{hint}")
    info, graphdef, params = restore_inference(path, step, attention_impl=attention_impl)
    return PFN.from_run_info(info, graphdef, params)
