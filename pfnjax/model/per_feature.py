"""The per-feature PFN (``--model per_feature``, TabPFN v2 style): a token per cell.

Each row of a dataset becomes ``G + 1`` tokens: one per group of ``group_size`` features (the
group's values through one shared linear encoder, NaN and unused columns read as 0) and one for
the target (the label's embedding in context rows, a learned "unknown" embedding in query rows).
Every layer applies, in turn:

1. attention across the tokens of a row (a row's groups and its target; groups beyond the
   dataset's used features are masked out);
2. attention across rows, separately for each group and for the target column: every token
   attends to the same column's tokens of the context rows only (the key-length mask
   ``single_eval_pos``), so queries never see each other;
3. an MLP on every token.

The target token of each query row is read out by the output head. There is no feature
position embedding, so with ``group_size=1`` the model is invariant to the order of the
features (``tests/test_architectures.py``), and, like every PFN here, invariant to the order of
the context rows and equivariant in the queries.

Because context tokens attend only within their row and to context rows, their per-layer
column keys/values do not depend on the queries: :meth:`PerFeaturePFN.encode_context` caches
them, and each query chunk then costs ``O(chunk · G · (G + N_ctx))`` time and keeps
``O(chunk · G · N_ctx)`` attention scores per head.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from pfnjax.model.attention import ATTENTION_IMPLS, AttentionImpl, context_attention
from pfnjax.model.base import ModelConfigBase, ModelIO, PFNModel, SplitLayout, register_model
from pfnjax.model.classic import ComputeDtype, TransformerWidths, check_inputs, check_settings, zeros_linear
from pfnjax.types import Array


@register_model("per_feature")
@dataclasses.dataclass(frozen=True)
class PerFeatureConfig(TransformerWidths, ModelConfigBase):
    """A token per cell (or group of ``group_size`` features); row and column attention per layer.

    Attributes:
        d_model, num_layers, num_heads: token width, layers, attention heads.
        d_ff: MLP hidden width (default ``2 * d_model``).
        group_size: features per token (TabICLv2-style grouping; 1 is one token per cell).
        compute_dtype: ``float32`` or ``bfloat16`` activations; params stay float32.
        attention_impl: as the classic model's (:mod:`pfnjax.model.attention`).
        residual_decay: the residual stream is scaled by this before each block's update.
    """

    d_model: int = dataclasses.field(default=64, metadata={"help": "token width"})
    num_layers: int = dataclasses.field(default=4, metadata={"help": "layers (row + column attention each)"})
    num_heads: int = dataclasses.field(default=4, metadata={"help": "attention heads (must divide d_model)"})
    d_ff: int | None = dataclasses.field(default=None, metadata={"help": "MLP hidden width (default 2 * d_model)"})
    group_size: int = dataclasses.field(default=1, metadata={"help": "features per token"})
    compute_dtype: ComputeDtype = dataclasses.field(
        default="float32", metadata={"help": "activation dtype (parameters stay float32)"})
    attention_impl: AttentionImpl = dataclasses.field(default="auto", metadata={"flag": "attention"})
    residual_decay: float = 1.0

    def __post_init__(self) -> None:
        check_settings(self, ("d_model", "num_layers", "num_heads", "group_size"),
                       {"compute_dtype": ("float32", "bfloat16"), "attention_impl": ATTENTION_IMPLS})
        if self.d_ff is not None:
            check_settings(self, ("d_ff",), {})
        if self.d_model % self.num_heads:
            raise ValueError(f"model {self.name!r}: d_model={self.d_model} is not divisible by "
                             f"num_heads={self.num_heads}")
        if not 0.0 < self.residual_decay <= 1.0:
            raise ValueError(f"model {self.name!r}: residual_decay must be in (0, 1], got {self.residual_decay!r}")

    def build(self, io: ModelIO, rngs: nnx.Rngs) -> "PerFeaturePFN":
        return PerFeaturePFN(self, io, rngs)


class ColumnCache(NamedTuple):
    """Per-layer column keys and values of the context rows: ``[B, G + 1, N_ctx, heads, head_dim]``."""

    keys: Array
    values: Array


class Block(nnx.Module):
    """Pre-LN row attention, column attention and MLP on tokens ``[B, T, G + 1, d]``."""

    def __init__(self, cfg: PerFeatureConfig, rngs: nnx.Rngs):
        d, dt = cfg.d_model, cfg.dtype
        self.cfg = cfg
        self.row_qkv = nnx.Linear(d, 3 * d, dtype=dt, rngs=rngs)
        self.row_out = zeros_linear(d, d, dt, rngs)
        self.col_qkv = nnx.Linear(d, 3 * d, dtype=dt, rngs=rngs)
        self.col_out = zeros_linear(d, d, dt, rngs)
        self.ff_in = nnx.Linear(d, cfg.hidden_ff, dtype=dt, rngs=rngs)
        self.ff_out = zeros_linear(cfg.hidden_ff, d, dt, rngs)
        self.norm_row = nnx.LayerNorm(d, dtype=dt, rngs=rngs)
        self.norm_col = nnx.LayerNorm(d, dtype=dt, rngs=rngs)
        self.norm_ff = nnx.LayerNorm(d, dtype=dt, rngs=rngs)

    def _heads(self, h: Array) -> Array:
        return h.reshape(*h.shape[:-1], self.cfg.num_heads, self.cfg.d_model // self.cfg.num_heads)

    def _residual(self, h: Array, update: Array) -> Array:
        decay = self.cfg.residual_decay
        return (h if decay == 1.0 else decay * h) + update

    def row_attention(self, h: Array, tokens_used: Array) -> Array:
        """Attention among the tokens of each row: ``h [B, R, G1, d]``; the first
        ``tokens_used[b]`` tokens of a row are real (the target first, then the used groups)."""
        b, r, g1, d = h.shape
        q, k, v = (self._heads(a) for a in jnp.split(self.row_qkv(self.norm_row(h)), 3, axis=-1))
        flat = lambda a: a.reshape(b * r, g1, *a.shape[-2:])  # noqa: E731
        lengths = jnp.repeat(tokens_used, r)
        out = context_attention(flat(q), flat(k), flat(v), lengths, self.cfg.attention_impl)
        return self._residual(h, self.row_out(out.reshape(b, r, g1, d)))

    def column_kv(self, h: Array) -> ColumnCache:
        """Column keys and values of tokens ``h [B, N, G1, d]``, as ``[B, G1, N, heads, head_dim]``."""
        _, k, v = (self._heads(a) for a in jnp.split(self.col_qkv(self.norm_col(h)), 3, axis=-1))
        return ColumnCache(jnp.swapaxes(k, 1, 2), jnp.swapaxes(v, 1, 2))

    def column_attention(self, h: Array, cache: ColumnCache, context_len: Array) -> Array:
        """Tokens ``h [B, M, G1, d]`` attend to the same column's first ``context_len[b]`` cached rows."""
        b, m, g1, d = h.shape
        q = jnp.swapaxes(self._heads(jnp.split(self.col_qkv(self.norm_col(h)), 3, axis=-1)[0]), 1, 2)
        n = cache.keys.shape[2]
        flat = lambda a, rows: a.reshape(b * g1, rows, *a.shape[-2:])  # noqa: E731
        out = context_attention(flat(q, m), flat(cache.keys, n).astype(q.dtype), flat(cache.values, n).astype(q.dtype),
                                jnp.repeat(context_len, g1), self.cfg.attention_impl)
        out = jnp.swapaxes(out.reshape(b, g1, m, d), 1, 2)
        return self._residual(h, self.col_out(out))

    def mlp(self, h: Array) -> Array:
        return self._residual(h, self.ff_out(jax.nn.gelu(self.ff_in(self.norm_ff(h)))))


class PerFeaturePFN(PFNModel):
    """See the module docstring."""

    def __init__(self, cfg: PerFeatureConfig, io: ModelIO, rngs: nnx.Rngs):
        d, dt = cfg.d_model, cfg.dtype
        self.cfg, self.io = cfg, io
        self.num_groups = math.ceil(io.max_features / cfg.group_size)
        self.x_encoder = nnx.Linear(cfg.group_size, d, dtype=dt, rngs=rngs)
        if io.y_vocab == 0:
            self.y_encoder = nnx.Linear(1, d, dtype=dt, rngs=rngs)
        else:
            self.y_encoder = nnx.Embed(io.y_vocab, d, dtype=dt, rngs=rngs)
        self.unknown_y = nnx.Param(0.02 * jax.random.normal(rngs.params(), (d,), jnp.float32))
        self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.num_layers)])
        self.final_norm = nnx.LayerNorm(d, dtype=dt, rngs=rngs)
        self.head_hidden = nnx.Linear(d, cfg.hidden_ff, dtype=dt, rngs=rngs)
        self.head_out = nnx.Linear(cfg.hidden_ff, io.num_outputs, dtype=dt, rngs=rngs)

    # ------------------------------------------------------------------ tokens
    def _cells(self, x: Array, num_features: Array) -> Array:
        """``[B, N, G, d]``: each group of features through the shared encoder (NaN and unused -> 0)."""
        b, n, f = x.shape
        unused = jnp.arange(f) >= num_features[:, None, None]
        x = jnp.where(jnp.isnan(x) | unused, 0.0, x)
        x = jnp.pad(x, ((0, 0), (0, 0), (0, self.num_groups * self.cfg.group_size - f)))
        return self.x_encoder(x.reshape(b, n, self.num_groups, self.cfg.group_size).astype(self.cfg.dtype))

    def _label(self, y: Array) -> Array:
        if self.io.y_vocab == 0:
            return self.y_encoder(y[..., None].astype(self.cfg.dtype))
        return self.y_encoder(y.astype(jnp.int32))

    def _tokens(self, x: Array, target: Array, num_features: Array) -> Array:
        """``[B, N, G1, d]``: the target token first, then the feature groups."""
        return jnp.concatenate([target[:, :, None], self._cells(x, num_features)], axis=2)

    def _tokens_used(self, num_features: Array) -> Array:
        return 1 + (num_features + self.cfg.group_size - 1) // self.cfg.group_size

    def _unknown(self, shape: tuple[int, ...]) -> Array:
        return jnp.broadcast_to(self.unknown_y[...].astype(self.cfg.dtype), (*shape, self.cfg.d_model))

    def _head(self, target_tokens: Array) -> Array:
        h = self.final_norm(target_tokens)
        return self.head_out(jax.nn.gelu(self.head_hidden(h))).astype(jnp.float32)

    # ------------------------------------------------------------------ the masked definition
    def __call__(self, x: Array, y: Array, single_eval_pos: Array, num_features: Array) -> Array:
        return self.train_logits(x, y, single_eval_pos, num_features, SplitLayout(0, x.shape[1]))

    def train_logits(self, x: Array, y: Array, single_eval_pos: Array, num_features: Array,
                     layout: SplitLayout) -> Array:
        """Logits of rows ``>= layout.query_start``; column keys come from rows ``< context_max``,
        and the last layer's column attention and MLP run on the target tokens of the read rows only."""
        check_inputs(self.io, x, single_eval_pos, num_features, y)
        b, t, _ = x.shape
        is_context = (jnp.arange(t)[None, :] < single_eval_pos[:, None])[..., None]
        target = jnp.where(is_context, self._label(jnp.where(is_context[..., 0], y, 0)), self._unknown((b, t)))
        h = self._tokens(x, target, num_features)
        used = self._tokens_used(num_features)
        *inner, last = self.blocks
        for block in inner:
            h = block.row_attention(h, used)
            h = block.column_attention(h, block.column_kv(h[:, :layout.context_max]), single_eval_pos)
            h = block.mlp(h)
        h = last.row_attention(h, used)
        cache = last.column_kv(h[:, :layout.context_max])
        target_cache = ColumnCache(cache.keys[:, :1], cache.values[:, :1])
        out = last.mlp(last.column_attention(h[:, layout.query_start:, :1], target_cache, single_eval_pos))
        return self._head(out[:, :, 0])

    # ------------------------------------------------------------------ cached inference
    def encode_context(self, x_ctx: Array, y_ctx: Array, context_len: Array, num_features: Array) -> list[ColumnCache]:
        """Every layer's column keys/values of the context rows (rows ``>= context_len`` are padding)."""
        check_inputs(self.io, x_ctx, context_len, num_features, y_ctx)
        h = self._tokens(x_ctx, self._label(y_ctx), num_features)
        used = self._tokens_used(num_features)
        caches = []
        for block in self.blocks:
            h = block.row_attention(h, used)
            cache = block.column_kv(h)
            caches.append(cache)
            h = block.mlp(block.column_attention(h, cache, context_len))
        return caches

    def predict_queries(self, caches: list[ColumnCache], x_qry: Array, context_len: Array,
                        num_features: Array) -> Array:
        check_inputs(self.io, x_qry, context_len, num_features)
        b, m, _ = x_qry.shape
        h = self._tokens(x_qry, self._unknown((b, m)), num_features)
        used = self._tokens_used(num_features)
        for block, cache in zip(self.blocks, caches):
            h = block.row_attention(h, used)
            h = block.mlp(block.column_attention(h, cache, context_len))
        return self._head(h[:, :, 0])


__all__ = ["ColumnCache", "PerFeatureConfig", "PerFeaturePFN"]
