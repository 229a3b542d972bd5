"""The column→row PFN (``--model column_row``, TabICL style): three stages.

1. **Column stage**: every feature column is embedded in the context of its own values by a set
   transformer block with inducing points (ISAB): ``num_inducing`` learned points attend to the
   column's *context* values (a key-length mask), and then every value, context or query, attends
   to those induced points. A query's embedding thus depends on the context and on itself only.
2. **Row stage**: each row's cell embeddings and ``num_cls`` learned summary (CLS) tokens go
   through ``row_layers`` transformer layers within the row (columns beyond the dataset's used
   features are masked out); the CLS outputs, concatenated and projected, are the row's token.
3. **In-context stage**: the classic PFN transformer over the row tokens (label embeddings on the
   context rows, context-masked attention, thinking rows and residual decay as options,
   :mod:`pfnjax.model.classic`), and its output head.

The stages share their weights over the columns and have no feature position, so the model is
invariant to the order of the features, as well as to the order of the context rows
(``tests/test_architectures.py``). :meth:`ColumnRowPFN.encode_context` caches the induced points
of every column and the in-context stage's keys and values; a query chunk then costs
``O(chunk · F · (num_inducing + F) + chunk · N_ctx)`` per layer and holds ``O(chunk · N_ctx)``
attention scores per head.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from pfnjax.model.attention import ATTENTION_IMPLS, AttentionImpl, context_attention
from pfnjax.model.base import ModelIO, register_model
from pfnjax.model.classic import (
    ClassicConfig,
    ComputeDtype,
    LayerCache,
    PFNLayer,
    PFNTransformer,
    check_inputs,
    check_settings,
    zeros_linear,
)
from pfnjax.types import Array


@register_model("column_row")
@dataclasses.dataclass(frozen=True)
class ColumnRowConfig(ClassicConfig):
    """TabICL-style column, row and in-context stages.

    Attributes (besides the in-context stage's, those of :class:`pfnjax.model.ClassicConfig`;
    ``feature_scaling`` does not apply):
        cell_dim: width of the cell embeddings in the column and row stages.
        num_inducing: inducing points of the column stage's set transformer.
        row_layers: transformer layers of the row stage.
        num_cls: summary tokens per row (their outputs are concatenated into the row's token).
    """

    d_model: int = 128
    num_layers: int = 4
    num_heads: int = 4
    cell_dim: int = dataclasses.field(default=32, metadata={"help": "cell embedding width (column and row stages)"})
    num_inducing: int = dataclasses.field(default=16, metadata={"help": "inducing points of the column stage"})
    row_layers: int = dataclasses.field(default=1, metadata={"help": "transformer layers of the row stage"})
    num_cls: int = dataclasses.field(default=4, metadata={"help": "summary tokens per row"})
    cell_heads: int = dataclasses.field(default=2, metadata={"help": "attention heads of the column and row stages"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_settings(self, ("cell_dim", "num_inducing", "row_layers", "num_cls", "cell_heads"), {})
        if self.cell_dim % self.cell_heads:
            raise ValueError(f"model {self.name!r}: cell_dim={self.cell_dim} is not divisible by "
                             f"cell_heads={self.cell_heads}")

    def cell_config(self) -> ClassicConfig:
        """The settings of the column and row stages' attention blocks."""
        return ClassicConfig(d_model=self.cell_dim, num_layers=self.row_layers, num_heads=self.cell_heads,
                             compute_dtype=self.compute_dtype, attention_impl=self.attention_impl)

    def build(self, io: ModelIO, rngs: nnx.Rngs) -> "ColumnRowPFN":
        return ColumnRowPFN(self, io, rngs)


class Induced(NamedTuple):
    """The column stage's induced points of every column: ``[B, F_max, num_inducing, cell_dim]``."""

    points: Array


class ColumnRowCache(NamedTuple):
    induced: Induced
    layers: list


class CrossBlock(nnx.Module):
    """Pre-LN cross-attention of queries to keys/values (masked to a length) plus an MLP."""

    def __init__(self, cfg: ClassicConfig, rngs: nnx.Rngs):
        d, dt = cfg.d_model, cfg.dtype
        self.cfg = cfg
        self.q = nnx.Linear(d, d, dtype=dt, rngs=rngs)
        self.kv = nnx.Linear(d, 2 * d, dtype=dt, rngs=rngs)
        self.out = zeros_linear(d, d, dt, rngs)
        self.norm_q = nnx.LayerNorm(d, dtype=dt, rngs=rngs)
        self.norm_kv = nnx.LayerNorm(d, dtype=dt, rngs=rngs)
        self.norm_ff = nnx.LayerNorm(d, dtype=dt, rngs=rngs)
        self.ff_in = nnx.Linear(d, cfg.hidden_ff, dtype=dt, rngs=rngs)
        self.ff_out = zeros_linear(cfg.hidden_ff, d, dt, rngs)

    def __call__(self, h: Array, source: Array, length: Array) -> Array:
        """``h [B', M, d]`` attends to the first ``length[b']`` of ``source [B', N, d]``."""
        heads, d = self.cfg.num_heads, self.cfg.d_model
        split = lambda a: a.reshape(*a.shape[:-1], heads, d // heads)  # noqa: E731
        k, v = jnp.split(self.kv(self.norm_kv(source)), 2, axis=-1)
        attn = context_attention(split(self.q(self.norm_q(h))), split(k), split(v), length, self.cfg.attention_impl)
        h = h + self.out(attn.reshape(h.shape))
        return h + self.ff_out(jax.nn.gelu(self.ff_in(self.norm_ff(h))))


class ColumnRowPFN(PFNTransformer):
    """See the module docstring. The in-context stage is the classic transformer's."""

    def __init__(self, cfg: ColumnRowConfig, io: ModelIO, rngs: nnx.Rngs):
        super().__init__(cfg, io, rngs)
        del self.x_encoder  # rows are embedded by the column and row stages instead
        cell, dt = cfg.cell_config(), cfg.dtype
        self.value_encoder = nnx.Linear(1, cfg.cell_dim, dtype=dt, rngs=rngs)
        self.inducing = nnx.Param(0.02 * jax.random.normal(rngs.params(), (cfg.num_inducing, cfg.cell_dim)))
        self.induce = CrossBlock(cell, rngs)  # inducing points <- the column's context values
        self.read = CrossBlock(cell, rngs)  # every value <- the induced points
        self.cls = nnx.Param(0.02 * jax.random.normal(rngs.params(), (cfg.num_cls, cfg.cell_dim)))
        self.row_blocks = nnx.List([PFNLayer(cell, rngs) for _ in range(cfg.row_layers)])
        self.row_norm = nnx.LayerNorm(cfg.num_cls * cfg.cell_dim, dtype=dt, rngs=rngs)
        self.row_proj = nnx.Linear(cfg.num_cls * cfg.cell_dim, cfg.d_model, dtype=dt, rngs=rngs)

    # ------------------------------------------------------------------ column and row stages
    def _values(self, x: Array, num_features: Array) -> Array:
        """``[B, F, N, cell_dim]``: every value embedded (NaN and unused columns read as 0)."""
        unused = jnp.arange(x.shape[-1]) >= num_features[:, None, None]
        x = jnp.where(jnp.isnan(x) | unused, 0.0, x)
        return self.value_encoder(jnp.swapaxes(x, 1, 2)[..., None].astype(self.cfg.dtype))

    def induce_columns(self, x: Array, num_features: Array, context_len: Array) -> Induced:
        """The induced points of every column from its first ``context_len[b]`` values."""
        values = self._values(x, num_features)
        b, f, n, c = values.shape
        points = jnp.broadcast_to(self.inducing[...].astype(values.dtype), (b * f, self.cfg.num_inducing, c))
        points = self.induce(points, values.reshape(b * f, n, c), jnp.repeat(context_len, f))
        return Induced(points.reshape(b, f, self.cfg.num_inducing, c))

    def rows_from_columns(self, x: Array, num_features: Array, induced: Induced) -> Array:
        """Row tokens ``[B, N, d_model]``: values read against their columns' induced points, then
        the row stage's summary tokens."""
        values = self._values(x, num_features)
        b, f, n, c = values.shape
        m = self.cfg.num_inducing
        cells = self.read(values.reshape(b * f, n, c), induced.points.reshape(b * f, m, c),
                          jnp.full((b * f,), m, jnp.int32))
        cells = jnp.swapaxes(cells.reshape(b, f, n, c), 1, 2).reshape(b * n, f, c)
        k = self.cfg.num_cls
        tokens = jnp.concatenate([jnp.broadcast_to(self.cls[...].astype(cells.dtype), (b * n, k, c)), cells], axis=1)
        used = jnp.repeat(k + num_features, n)  # the summary tokens first, then the used columns
        for block in self.row_blocks:
            tokens = block.self_attend(tokens, used)
        summary = tokens[:, :k].reshape(b, n, k * c)
        return self.row_proj(self.row_norm(summary))

    def embed_rows(self, x: Array, num_features: Array, context_len: Array) -> Array:
        return self.rows_from_columns(x, num_features, self.induce_columns(x, num_features, context_len))

    def embed_x(self, x: Array, num_features: Array) -> Array:
        raise NotImplementedError("column_row embeds rows in the context of their columns: use embed_rows")

    # ------------------------------------------------------------------ cached inference
    def encode_context(self, x_ctx: Array, y_ctx: Array, context_len: Array, num_features: Array) -> ColumnRowCache:
        check_inputs(self.io, x_ctx, context_len, num_features, y_ctx)
        induced = self.induce_columns(x_ctx, num_features, context_len)
        h = self.rows_from_columns(x_ctx, num_features, induced) + self.embed_y(y_ctx)
        return ColumnRowCache(induced, self._encode_tokens(h, context_len))

    def predict_queries(self, cache: ColumnRowCache, x_qry: Array, context_len: Array, num_features: Array) -> Array:
        check_inputs(self.io, x_qry, context_len, num_features)
        return self._predict_tokens(cache.layers, self.rows_from_columns(x_qry, num_features, cache.induced),
                                    context_len)


__all__ = ["ColumnRowCache", "ColumnRowConfig", "ColumnRowPFN", "CrossBlock", "Induced"]
