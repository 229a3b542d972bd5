"""The classic PFN transformer (``--model classic``): one token per dataset row.

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
from typing import Literal, NamedTuple

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from pfnjax.model.attention import ATTENTION_IMPLS, AttentionImpl, context_attention
from pfnjax.model.base import ModelConfigBase, ModelIO, PFNModel, SplitLayout, register_model
from pfnjax.types import Array

FeatureScaling = Literal["sqrt", "linear", "none"]
Norm = Literal["pre", "post"]
ComputeDtype = Literal["float32", "bfloat16"]


def check_settings(cfg: ModelConfigBase, positive: tuple[str, ...], choices: dict[str, tuple]) -> None:
    """Shared validation of model settings: positive ints and choices, naming the bad field."""
    for name in positive:
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"model {cfg.name!r}: {name} must be a positive int, got {value!r}")
    for name, allowed in choices.items():
        if getattr(cfg, name) not in allowed:
            raise ValueError(f"model {cfg.name!r}: {name} must be one of {allowed}, got {getattr(cfg, name)!r}")


class TransformerWidths:
    """``hidden_ff`` and ``dtype`` of a transformer config with ``d_model``, ``d_ff`` and ``compute_dtype``."""

    @property
    def hidden_ff(self) -> int:
        return self.d_ff or 2 * self.d_model

    @property
    def dtype(self):
        return jnp.bfloat16 if self.compute_dtype == "bfloat16" else jnp.float32


@register_model("classic")
@dataclasses.dataclass(frozen=True)
class ClassicConfig(TransformerWidths, ModelConfigBase):
    """The classic PFN transformer: one token per row, context-masked attention.

    Attributes:
        d_model, num_layers, num_heads: transformer size (paper default 512 / 6 / 8).
        d_ff: MLP hidden width (default ``2 * d_model``).
        norm: ``pre`` (LayerNorm before each block, plus a final LayerNorm) or ``post``.
        feature_scaling: rescale x by the used-feature fraction: ``sqrt`` multiplies by
            ``sqrt(F_max / F_used)`` (maintained reference), ``linear`` by ``F_max / F_used``
            (paper), ``none`` leaves x as is.
        compute_dtype: ``float32`` or ``bfloat16`` activations; params stay float32.
        attention_impl: ``auto`` (default): cuDNN flash attention on NVIDIA GPUs where cuDNN
            supports the shapes and dtype (bfloat16/float16), the ``matmul`` formulation on the
            CPU, XLA's attention elsewhere (:mod:`pfnjax.model.attention`).
        thinking_rows: learnable rows added to every context (attended to like context rows, with
            no label); 0 (default) adds none.
        residual_decay: each block scales the residual stream by this before adding its update
            (``h <- decay * h + f(h)``), so later blocks weigh more; 1.0 (default) is the plain residual.
    """

    d_model: int = dataclasses.field(default=512, metadata={"help": "token width"})
    num_layers: int = dataclasses.field(default=6, metadata={"help": "transformer layers"})
    num_heads: int = dataclasses.field(default=8, metadata={"help": "attention heads (must divide d_model)"})
    d_ff: int | None = dataclasses.field(default=None, metadata={"help": "MLP hidden width (default 2 * d_model)"})
    norm: Norm = dataclasses.field(default="pre", metadata={"help": "LayerNorm placement"})
    feature_scaling: FeatureScaling = dataclasses.field(
        default="sqrt", metadata={"help": "rescaling of x by the used-feature fraction F_max / F_used"})
    compute_dtype: ComputeDtype = dataclasses.field(
        default="float32", metadata={"help": "activation dtype (parameters stay float32)"})
    attention_impl: AttentionImpl = dataclasses.field(
        default="auto", metadata={"flag": "attention", "help": "auto: cuDNN flash attention on NVIDIA GPUs where "
                                                               "it applies (bf16), matmul on the CPU, XLA elsewhere"})
    thinking_rows: int = dataclasses.field(default=0, metadata={"help": "learnable rows added to every context"})
    residual_decay: float = dataclasses.field(default=1.0, metadata={
        "help": "scale of the residual stream before each block's update (1: plain residual)"})

    def __post_init__(self) -> None:
        if self.attention_impl is None:  # runs saved before the field existed
            object.__setattr__(self, "attention_impl", "auto")
        check_settings(self, ("d_model", "num_layers", "num_heads"),
                       {"norm": ("pre", "post"), "feature_scaling": ("sqrt", "linear", "none"),
                        "compute_dtype": ("float32", "bfloat16"), "attention_impl": ATTENTION_IMPLS})
        if self.d_ff is not None:
            check_settings(self, ("d_ff",), {})
        if isinstance(self.thinking_rows, bool) or not isinstance(self.thinking_rows, int) or self.thinking_rows < 0:
            raise ValueError(f"model {self.name!r}: thinking_rows must be an int >= 0, got {self.thinking_rows!r}")
        if not 0.0 < self.residual_decay <= 1.0:
            raise ValueError(f"model {self.name!r}: residual_decay must be in (0, 1], got {self.residual_decay!r}")
        if self.d_model % self.num_heads:
            raise ValueError(f"model {self.name!r}: d_model={self.d_model} is not divisible by "
                             f"num_heads={self.num_heads}")

    def build(self, io: ModelIO, rngs: nnx.Rngs) -> "PFNTransformer":
        return PFNTransformer(self, io, rngs)


class LayerCache(NamedTuple):
    """Per-layer keys and values of the context tokens: ``f32[B, N_ctx, heads, head_dim]`` each."""

    keys: Array
    values: Array


def zeros_linear(din: int, dout: int, dtype, rngs: nnx.Rngs) -> nnx.Linear:
    """A zero-initialised output projection: every residual block starts as the identity."""
    return nnx.Linear(din, dout, dtype=dtype, kernel_init=nnx.initializers.zeros, rngs=rngs)


class PFNLayer(nnx.Module):
    """One transformer layer whose attention keys/values come from the context only."""

    def __init__(self, cfg: ClassicConfig, rngs: nnx.Rngs):
        d, dt = cfg.d_model, cfg.dtype
        self.cfg = cfg
        self.qkv = nnx.Linear(d, 3 * d, dtype=dt, rngs=rngs)
        self.attn_out = zeros_linear(d, d, dt, rngs)
        self.ff_in = nnx.Linear(d, cfg.hidden_ff, dtype=dt, rngs=rngs)
        self.ff_out = zeros_linear(cfg.hidden_ff, d, dt, rngs)
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
        return self._attend_and_mlp(h, q, cache, context_len)

    def self_attend(self, h: Array, context_len: Array, layout: SplitLayout | None = None) -> Array:
        """Tokens ``h: [B, T, d]`` attending to their own context rows, with one q/k/v projection.

        With a ``layout``, keys come from rows ``< layout.context_max`` only and only rows
        ``>= layout.query_start`` are returned (exact when every ``context_len`` lies between)."""
        q, k, v = self._qkv(h)
        if layout is not None and layout.context_max < h.shape[1]:
            k, v = k[:, :layout.context_max], v[:, :layout.context_max]
        if layout is not None and layout.query_start > 0:
            h, q = h[:, layout.query_start:], q[:, layout.query_start:]
        return self._attend_and_mlp(h, q, LayerCache(k, v), context_len)

    def _attend_and_mlp(self, h: Array, q: Array, cache: LayerCache, context_len: Array) -> Array:
        attn = context_attention(
            q, cache.keys.astype(q.dtype), cache.values.astype(q.dtype), context_len, self.cfg.attention_impl
        )
        attn = self.attn_out(attn.reshape(h.shape[0], h.shape[1], self.cfg.d_model))
        decay = self.cfg.residual_decay
        h = (h if decay == 1.0 else decay * h) + attn
        if self.cfg.norm == "post":
            h = self.norm_attn(h)
        hn = self.norm_ff(h) if self.cfg.norm == "pre" else h
        h = (h if decay == 1.0 else decay * h) + self.ff_out(jax.nn.gelu(self.ff_in(hn)))
        if self.cfg.norm == "post":
            h = self.norm_ff(h)
        return h


class PFNTransformer(PFNModel):
    """PFN transformer. Call it on a batch to get per-position logits ``f32[B, T, num_outputs]``."""

    def __init__(self, cfg: ClassicConfig, io: ModelIO, rngs: nnx.Rngs):
        d, dt = cfg.d_model, cfg.dtype
        self.cfg = cfg
        self.io = io
        self.x_encoder = nnx.Linear(io.max_features, d, dtype=dt, rngs=rngs)
        if io.y_vocab == 0:
            self.y_encoder = nnx.Linear(1, d, dtype=dt, rngs=rngs)
        else:
            self.y_encoder = nnx.Embed(io.y_vocab, d, dtype=dt, rngs=rngs)
        self.layers = nnx.List([PFNLayer(cfg, rngs) for _ in range(cfg.num_layers)])
        self.final_norm = nnx.LayerNorm(d, dtype=dt, rngs=rngs) if cfg.norm == "pre" else None
        self.head_hidden = nnx.Linear(d, cfg.hidden_ff, dtype=dt, rngs=rngs)
        self.head_out = nnx.Linear(cfg.hidden_ff, io.num_outputs, dtype=dt, rngs=rngs)
        if cfg.thinking_rows:
            self.thinking = nnx.Param(0.02 * jax.random.normal(rngs.params(), (cfg.thinking_rows, d), jnp.float32))

    # ------------------------------------------------------------------ thinking rows
    def _think(self, h: Array, context_len: Array) -> tuple[Array, Array]:
        """``h`` with the learnable thinking rows in front (they are context rows: ``context_len + k``)."""
        k = self.cfg.thinking_rows
        if not k:
            return h, context_len
        rows = jnp.broadcast_to(self.thinking[...].astype(h.dtype)[None], (h.shape[0], k, h.shape[-1]))
        return jnp.concatenate([rows, h], axis=1), context_len + k

    # ------------------------------------------------------------------ encoders
    def embed_x(self, x: Array, num_features: Array) -> Array:
        """Encode ``x: [B, N, F_max]``; NaN (missing) and the columns beyond ``num_features`` become 0
        (so a batch may mix datasets of different widths), and x is rescaled by the used fraction."""
        return self.x_encoder(scale_features(x, num_features, self.cfg.feature_scaling).astype(self.cfg.dtype))

    def embed_y(self, y: Array) -> Array:
        if self.io.y_vocab == 0:
            return self.y_encoder(y[..., None].astype(self.cfg.dtype))
        return self.y_encoder(y.astype(jnp.int32))

    def _head(self, h: Array) -> Array:
        if self.final_norm is not None:
            h = self.final_norm(h)
        logits = self.head_out(jax.nn.gelu(self.head_hidden(h)))
        return logits.astype(jnp.float32)

    def embed_rows(self, x: Array, num_features: Array, context_len: Array) -> Array:
        """Row tokens ``[B, N, d]`` of ``x [B, N, F_max]`` (the first ``context_len[b]`` rows are the
        context). Here each row alone (:meth:`embed_x`); an architecture that embeds a row in the
        context of its columns overrides it."""
        return self.embed_x(x, num_features)

    def _embed(self, x: Array, y: Array, single_eval_pos: Array, num_features: Array) -> Array:
        check_inputs(self.io, x, single_eval_pos, num_features, y)
        is_context = jnp.arange(x.shape[1])[None, :] < single_eval_pos[:, None]
        y_emb = jnp.where(is_context[..., None], self.embed_y(jnp.where(is_context, y, 0)), 0)
        return self.embed_rows(x, num_features, single_eval_pos) + y_emb

    # ------------------------------------------------------------------ full forward (the definition)
    def __call__(self, x: Array, y: Array, single_eval_pos: Array, num_features: Array) -> Array:
        """Logits for every position; only query positions (``t >= sep``) are meaningful predictions.

        Args:
            x: ``f32[B, T, F_max]``. y: ``f32[B, T]`` or ``i32[B, T]`` (query entries are ignored).
            single_eval_pos: ``i32[B]``, context length per dataset (>= 1).
            num_features: ``i32[B]``.
        """
        h, sep = self._think(self._embed(x, y, single_eval_pos, num_features), single_eval_pos)
        for layer in self.layers:
            h = layer.self_attend(h, sep)
        return self._head(h[:, self.cfg.thinking_rows:])

    def train_logits(self, x: Array, y: Array, single_eval_pos: Array, num_features: Array,
                     layout: SplitLayout) -> Array:
        """The training path: keys only from rows ``< layout.context_max``, and the last layer, the
        final norm and the output head only for rows ``>= layout.query_start``. Equal to
        ``self(...)[:, layout.query_start:]`` (the keys it skips are masked out in every dataset)."""
        h, sep = self._think(self._embed(x, y, single_eval_pos, num_features), single_eval_pos)
        k = self.cfg.thinking_rows
        layout = SplitLayout(layout.query_start + k, layout.context_max + k)
        *inner, last = self.layers
        full_rows = SplitLayout(0, layout.context_max)
        for layer in inner:
            h = layer.self_attend(h, sep, full_rows)
        return self._head(last.self_attend(h, sep, layout))

    # ------------------------------------------------------------------ cached inference
    def encode_context(self, x_ctx: Array, y_ctx: Array, context_len: Array, num_features: Array) -> list[LayerCache]:
        """Run the context through all layers once and keep each layer's keys/values.

        ``x_ctx: [B, N_ctx, F_max]``, ``y_ctx: [B, N_ctx]``; rows ``>= context_len[b]`` are padding.
        Cost O(N_ctx²); the result serves any number of query chunks, each costing
        ``O(chunk · N_ctx)`` time and memory.
        """
        check_inputs(self.io, x_ctx, context_len, num_features, y_ctx)
        return self._encode_tokens(self.embed_x(x_ctx, num_features) + self.embed_y(y_ctx), context_len)

    def _encode_tokens(self, h: Array, context_len: Array) -> list[LayerCache]:
        """Every layer's keys/values of context row tokens ``h [B, N_ctx, d]``."""
        h, context_len = self._think(h, context_len)
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
        check_inputs(self.io, x_qry, context_len, num_features)
        return self._predict_tokens(caches, self.embed_x(x_qry, num_features), context_len)

    def _predict_tokens(self, caches: list[LayerCache], h: Array, context_len: Array) -> Array:
        """Logits of query row tokens ``h [B, M, d]`` against every layer's cached context."""
        context_len = context_len + self.cfg.thinking_rows
        for layer, cache in zip(self.layers, caches):
            h = layer(h, cache, context_len)
        return self._head(h)


def scale_features(x: Array, num_features: Array, scaling: FeatureScaling) -> Array:
    """``x: [B, N, F_max]`` with NaN (missing) and the columns beyond ``num_features[b]`` set to 0,
    rescaled by the used fraction: ``sqrt(F_max / F_used)``, ``F_max / F_used`` or not at all."""
    unused = jnp.arange(x.shape[-1]) >= num_features[:, None, None]
    x = jnp.where(jnp.isnan(x) | unused, 0.0, x)
    used = jnp.maximum(num_features, 1).astype(jnp.float32)[:, None, None]
    if scaling == "sqrt":
        x = x * jnp.sqrt(x.shape[-1] / used)
    elif scaling == "linear":
        x = x * (x.shape[-1] / used)
    return x


def check_inputs(io: ModelIO, x: Array, lengths: Array, num_features: Array, y: Array | None = None) -> None:
    """Trace-time shape and dtype checks at a model's entry points (free under ``jit``)."""
    chex.assert_rank(x, 3)
    chex.assert_axis_dimension(x, 2, io.max_features)
    chex.assert_shape([lengths, num_features], (x.shape[0],))
    chex.assert_type([lengths, num_features], int)
    if y is not None:
        chex.assert_shape(y, x.shape[:2])
        chex.assert_type(y, float if io.y_vocab == 0 else int)


__all__ = ["ClassicConfig", "LayerCache", "PFNLayer", "PFNTransformer", "check_inputs", "check_settings",
           "scale_features", "zeros_linear"]
