"""The PFN transformer (classic mode): encoders, context-masked attention layers, output heads.

Token ``t`` of dataset ``b`` is ``x_emb(x[b, t]) + [t < sep_b] * y_emb(y[b, t])``. There is no
positional encoding, so the model is invariant to permutations of the context and equivariant
to permutations of the queries. In every layer each token attends to the context tokens only:
a key-length mask (``key_value_seq_lengths = sep``), so queries never see each other and a
query's prediction depends only on the context and on itself. Because context tokens also
attend only to the context, their per-layer keys/values do not depend on the queries at all,
which :meth:`PFNTransformer.encode_context` / :meth:`PFNTransformer.predict_queries` exploit to
cache the context once and stream queries in chunks.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Literal, NamedTuple

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from pfnjax.types import Array

FeatureScaling = Literal["sqrt", "linear", "none"]
AttentionImpl = Literal["auto", "xla", "cudnn"]
ATTENTION_IMPLS = ("auto", "xla", "cudnn")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of a PFN transformer.

    Attributes:
        max_features: F_max, the width of the x encoder. Unused columns must be zero.
        num_outputs: width of the output logits (the head's size: bar buckets, classes...).
        y_vocab: how context labels are embedded: 0 for real-valued y (a linear encoder), else
            the number of label classes (an embedding table). The head decides (:mod:`pfnjax.heads`).
        d_model, num_layers, num_heads: transformer size (paper default 512 / 6 / 8).
        d_ff: MLP hidden width (default ``2 * d_model``).
        norm: ``pre`` (LayerNorm before each block, plus a final LayerNorm) or ``post``.
        feature_scaling: rescale x by the used-feature fraction: ``sqrt`` multiplies by
            ``sqrt(F_max / F_used)`` (maintained reference), ``linear`` by ``F_max / F_used``
            (paper), ``none`` leaves x as is.
        compute_dtype: ``float32`` or ``bfloat16`` activations; params stay float32.
        attention_impl: ``auto`` (default) uses cuDNN flash attention when the program runs on an
            NVIDIA GPU and cuDNN supports the shapes and dtype (bfloat16/float16), else XLA's
            attention; ``xla`` or ``cudnn`` force one (``cudnn`` fails off NVIDIA GPUs). Saved
            with a run; ``None`` in runs saved before this field existed means ``auto``.
    """

    max_features: int
    num_outputs: int
    y_vocab: int = 0
    d_model: int = 512
    num_layers: int = 6
    num_heads: int = 8
    d_ff: int | None = None
    norm: Literal["pre", "post"] = "pre"
    feature_scaling: FeatureScaling = "sqrt"
    compute_dtype: Literal["float32", "bfloat16"] = "float32"
    attention_impl: AttentionImpl = "auto"

    def __post_init__(self) -> None:
        if self.attention_impl is None:
            object.__setattr__(self, "attention_impl", "auto")
        if self.attention_impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention_impl must be one of {ATTENTION_IMPLS}, got {self.attention_impl!r}")
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by num_heads={self.num_heads}")
        if self.y_vocab < 0:
            raise ValueError(f"y_vocab must be >= 0, got {self.y_vocab}")
        if self.max_features < 1 or self.num_outputs < 1:
            raise ValueError(f"max_features and num_outputs must be >= 1, got {self.max_features}, {self.num_outputs}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        """Inverse of :meth:`to_dict`; also reads pfnjax 0.1 configs (a ``task`` instead of ``y_vocab``)."""
        data = dict(data)
        task = data.pop("task", None)
        if task is not None and "y_vocab" not in data:
            data["y_vocab"] = data["num_outputs"] if task == "classification" else 0
        return cls(**data)

    @property
    def hidden_ff(self) -> int:
        return self.d_ff or 2 * self.d_model

    @property
    def dtype(self):
        return jnp.bfloat16 if self.compute_dtype == "bfloat16" else jnp.float32


class LayerCache(NamedTuple):
    """Per-layer keys and values of the context tokens: ``f32[B, N_ctx, heads, head_dim]`` each."""

    keys: Array
    values: Array


@functools.cache
def cuda_available() -> bool:
    """Whether this process has a CUDA backend (a GPU and JAX's CUDA plugin)."""
    try:
        return len(jax.devices("cuda")) > 0
    except RuntimeError:
        return False


def _attention(q: Array, k: Array, v: Array, kv_len: Array, implementation: str | None) -> Array:
    return jax.nn.dot_product_attention(q, k, v, key_value_seq_lengths=kv_len, implementation=implementation)


@functools.lru_cache(maxsize=256)
def _cudnn_traces(q_shape: tuple, kv_shape: tuple, dtype: str) -> bool:
    """Whether cuDNN's flash attention accepts these shapes and dtype (its checks run at trace time)."""
    q = jax.ShapeDtypeStruct(q_shape, jnp.dtype(dtype))
    kv = jax.ShapeDtypeStruct(kv_shape, jnp.dtype(dtype))
    lengths = jax.ShapeDtypeStruct(q_shape[:1], jnp.int32)
    try:
        jax.eval_shape(functools.partial(_attention, implementation="cudnn"), q, kv, kv, lengths)
    except Exception:  # NotImplementedError / ValueError / RuntimeError for unsupported configs
        return False
    return True


def resolve_attention_impl(impl: str, q: Array | jax.ShapeDtypeStruct, k: Array | jax.ShapeDtypeStruct) -> str:
    """What ``auto`` becomes for these operands: ``"cudnn"`` if it can run here, else ``"xla"``.

    ``"cudnn"`` still runs only where the program is lowered for CUDA (see :func:`context_attention`).
    """
    if impl != "auto":
        return impl
    if q.dtype not in (jnp.bfloat16, jnp.float16) or not cuda_available():
        return "xla"
    return "cudnn" if _cudnn_traces(tuple(q.shape), tuple(k.shape), jnp.dtype(q.dtype).name) else "xla"


def context_attention(q: Array, k: Array, v: Array, kv_len: Array, impl: str = "auto") -> Array:
    """Attention of ``q: [B, M, H, D]`` to the first ``kv_len[b]`` of ``k, v: [B, N, H, D]``.

    ``impl="auto"`` picks cuDNN flash attention per platform: with ``lax.platform_dependent`` the
    cuDNN branch is lowered only for CUDA, so the same program still runs on a CPU mesh of a GPU
    machine, and XLA's attention everywhere else.
    """
    resolved = resolve_attention_impl(impl, q, k)
    if impl == "auto" and resolved == "cudnn":
        return jax.lax.platform_dependent(
            q, k, v, kv_len,
            cuda=functools.partial(_attention, implementation="cudnn"),
            default=functools.partial(_attention, implementation="xla"),
        )
    return _attention(q, k, v, kv_len, resolved)


def _zeros_linear(din: int, dout: int, dtype, rngs: nnx.Rngs) -> nnx.Linear:
    # Zero-initialised output projections make every residual block start as the identity.
    return nnx.Linear(din, dout, dtype=dtype, kernel_init=nnx.initializers.zeros, rngs=rngs)


class PFNLayer(nnx.Module):
    """One transformer layer whose attention keys/values come from the context only."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        d, dt = cfg.d_model, cfg.dtype
        self.cfg = cfg
        self.qkv = nnx.Linear(d, 3 * d, dtype=dt, rngs=rngs)
        self.attn_out = _zeros_linear(d, d, dt, rngs)
        self.ff_in = nnx.Linear(d, cfg.hidden_ff, dtype=dt, rngs=rngs)
        self.ff_out = _zeros_linear(cfg.hidden_ff, d, dt, rngs)
        self.norm_attn = nnx.LayerNorm(d, dtype=dt, rngs=rngs)
        self.norm_ff = nnx.LayerNorm(d, dtype=dt, rngs=rngs)

    def _split_heads(self, h: Array) -> Array:
        b, t, _ = h.shape
        return h.reshape(b, t, self.cfg.num_heads, self.cfg.d_model // self.cfg.num_heads)

    def _qkv(self, h: Array) -> tuple[Array, Array, Array]:
        hn = self.norm_attn(h) if self.cfg.norm == "pre" else h
        q, k, v = jnp.split(self.qkv(hn), 3, axis=-1)
        return self._split_heads(q), self._split_heads(k), self._split_heads(v)

    def context_kv(self, h: Array) -> LayerCache:
        """Keys and values of tokens ``h: [B, N, d]`` (used on the context tokens)."""
        _, k, v = self._qkv(h)
        return LayerCache(k, v)

    def __call__(self, h: Array, cache: LayerCache, context_len: Array) -> Array:
        """Update tokens ``h: [B, N, d]`` by attending to ``cache`` (first ``context_len[b]`` keys valid)."""
        q, _, _ = self._qkv(h)
        attn = context_attention(
            q, cache.keys.astype(q.dtype), cache.values.astype(q.dtype), context_len, self.cfg.attention_impl
        )
        attn = self.attn_out(attn.reshape(h.shape[0], h.shape[1], self.cfg.d_model))
        h = h + attn
        if self.cfg.norm == "post":
            h = self.norm_attn(h)
        hn = self.norm_ff(h) if self.cfg.norm == "pre" else h
        h = h + self.ff_out(jax.nn.gelu(self.ff_in(hn)))
        if self.cfg.norm == "post":
            h = self.norm_ff(h)
        return h


class PFNTransformer(nnx.Module):
    """PFN transformer. Call it on a batch to get per-position logits ``f32[B, T, num_outputs]``."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        d, dt = cfg.d_model, cfg.dtype
        self.cfg = cfg
        self.x_encoder = nnx.Linear(cfg.max_features, d, dtype=dt, rngs=rngs)
        if cfg.y_vocab == 0:
            self.y_encoder = nnx.Linear(1, d, dtype=dt, rngs=rngs)
        else:
            self.y_encoder = nnx.Embed(cfg.y_vocab, d, dtype=dt, rngs=rngs)
        self.layers = nnx.List([PFNLayer(cfg, rngs) for _ in range(cfg.num_layers)])
        self.final_norm = nnx.LayerNorm(d, dtype=dt, rngs=rngs) if cfg.norm == "pre" else None
        self.head_hidden = nnx.Linear(d, cfg.hidden_ff, dtype=dt, rngs=rngs)
        self.head_out = nnx.Linear(cfg.hidden_ff, cfg.num_outputs, dtype=dt, rngs=rngs)

    # ------------------------------------------------------------------ encoders
    def embed_x(self, x: Array, num_features: Array) -> Array:
        """Encode ``x: [B, N, F_max]``; NaN (missing) and the columns beyond ``num_features`` become 0
        (so a batch may mix datasets of different widths), and x is rescaled by the used fraction."""
        unused = jnp.arange(x.shape[-1]) >= num_features[:, None, None]
        x = jnp.where(jnp.isnan(x) | unused, 0.0, x)
        used = jnp.maximum(num_features, 1).astype(jnp.float32)[:, None, None]
        if self.cfg.feature_scaling == "sqrt":
            x = x * jnp.sqrt(self.cfg.max_features / used)
        elif self.cfg.feature_scaling == "linear":
            x = x * (self.cfg.max_features / used)
        return self.x_encoder(x.astype(self.cfg.dtype))

    def embed_y(self, y: Array) -> Array:
        if self.cfg.y_vocab == 0:
            return self.y_encoder(y[..., None].astype(self.cfg.dtype))
        return self.y_encoder(y.astype(jnp.int32))

    def _head(self, h: Array) -> Array:
        if self.final_norm is not None:
            h = self.final_norm(h)
        logits = self.head_out(jax.nn.gelu(self.head_hidden(h)))
        return logits.astype(jnp.float32)

    # ------------------------------------------------------------------ full forward (training)
    def __call__(self, x: Array, y: Array, single_eval_pos: Array, num_features: Array) -> Array:
        """Logits for every position; only query positions (``t >= sep``) are meaningful predictions.

        Args:
            x: ``f32[B, T, F_max]``. y: ``f32[B, T]`` or ``i32[B, T]`` (query entries are ignored).
            single_eval_pos: ``i32[B]``, context length per dataset (>= 1).
            num_features: ``i32[B]``.
        """
        _check_inputs(self.cfg, x, single_eval_pos, num_features, y)
        seq_len = x.shape[1]
        is_context = jnp.arange(seq_len)[None, :] < single_eval_pos[:, None]
        y_emb = jnp.where(is_context[..., None], self.embed_y(jnp.where(is_context, y, 0)), 0)
        h = self.embed_x(x, num_features) + y_emb
        for layer in self.layers:
            h = layer(h, layer.context_kv(h), single_eval_pos)
        return self._head(h)

    # ------------------------------------------------------------------ cached inference
    def encode_context(self, x_ctx: Array, y_ctx: Array, context_len: Array, num_features: Array) -> list[LayerCache]:
        """Run the context through all layers once and keep each layer's keys/values.

        ``x_ctx: [B, N_ctx, F_max]``, ``y_ctx: [B, N_ctx]``; rows ``>= context_len[b]`` are padding.
        Cost O(N_ctx²); the result serves any number of query chunks.
        """
        _check_inputs(self.cfg, x_ctx, context_len, num_features, y_ctx)
        h = self.embed_x(x_ctx, num_features) + self.embed_y(y_ctx)
        caches = []
        for layer in self.layers:
            cache = layer.context_kv(h)
            caches.append(cache)
            h = layer(h, cache, context_len)
        return caches

    def predict_queries(
        self, caches: list[LayerCache], x_qry: Array, context_len: Array, num_features: Array
    ) -> Array:
        """Logits ``f32[B, M, num_outputs]`` for queries ``x_qry: [B, M, F_max]`` against a cached context."""
        _check_inputs(self.cfg, x_qry, context_len, num_features)
        h = self.embed_x(x_qry, num_features)
        for layer, cache in zip(self.layers, caches):
            h = layer(h, cache, context_len)
        return self._head(h)


def _check_inputs(cfg: ModelConfig, x: Array, lengths: Array, num_features: Array, y: Array | None = None) -> None:
    """Trace-time shape and dtype checks at the model's entry points (free under ``jit``)."""
    chex.assert_rank(x, 3)
    chex.assert_axis_dimension(x, 2, cfg.max_features)
    chex.assert_shape([lengths, num_features], (x.shape[0],))
    chex.assert_type([lengths, num_features], int)
    if y is not None:
        chex.assert_shape(y, x.shape[:2])
        chex.assert_type(y, float if cfg.y_vocab == 0 else int)


def count_params(model: nnx.Module) -> int:
    """Number of trainable parameters."""
    return sum(math.prod(p.shape) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
