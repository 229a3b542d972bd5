"""Inference with a trained PFN: load a run, predict with a cached context, stream queries.

``PFN.predict`` encodes the context once (per-layer keys/values) and runs the queries through
the layers in chunks against that cache, so memory grows with ``n_ctx² + chunk·n_ctx`` and
never with ``n_qry²``. Context and query arrays are padded to bucketed static sizes with a
key-length mask, so a new context size rarely triggers a recompile.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pfnjax.distributions import bar
from pfnjax.model import ModelConfig, PFNTransformer
from pfnjax.train import checkpoint as ckpt
from pfnjax.train.config import TrainConfig
from pfnjax.types import Array

PRETRAINED_DIR = Path(__file__).parent / "pretrained"


@dataclasses.dataclass(frozen=True)
class ClassProbabilities:
    """Predictive class distribution: ``probs f32[..., M, C]`` over the context's classes."""

    logits: Array

    @property
    def probs(self) -> Array:
        return jax.nn.softmax(self.logits, axis=-1)

    def predict(self) -> Array:
        """Most probable class per query."""
        return jnp.argmax(self.logits, axis=-1)

    def log_prob(self, y: Array) -> Array:
        logp = jax.nn.log_softmax(self.logits, axis=-1)
        return jnp.take_along_axis(logp, jnp.asarray(y, jnp.int32)[..., None], axis=-1)[..., 0]


def _bucket(n: int, minimum: int = 16) -> int:
    """Round a size up to a power of two (at least ``minimum``) to bound recompiles."""
    return max(minimum, 1 << max(0, int(n - 1).bit_length()))


@dataclasses.dataclass(frozen=True, eq=False)
class PFN:
    """A trained PFN: architecture, parameters and (for regression) the bar-distribution borders."""

    model_config: ModelConfig
    graphdef: nnx.GraphDef
    params: Any
    borders: Array
    train_config: TrainConfig | None = None
    trained_with_missing: bool = False

    @property
    def task(self) -> str:
        return self.model_config.task

    @property
    def max_features(self) -> int:
        return self.model_config.max_features

    @property
    def max_classes(self) -> int:
        return self.model_config.num_outputs if self.task == "classification" else 0

    @classmethod
    def from_train_result(cls, result) -> "PFN":
        """Wrap the output of :func:`pfnjax.train.train`."""
        return cls(result.model_config, result.graphdef, result.state.params, result.state.borders, result.config,
                   _trained_with_missing(result.config))

    # ------------------------------------------------------------------ jitted pieces
    @functools.cached_property
    def _encode(self):
        def encode(params, x_ctx, y_ctx, ctx_len, n_feat):
            return nnx.merge(self.graphdef, params).encode_context(x_ctx, y_ctx, ctx_len, n_feat)

        return jax.jit(encode)

    @functools.cached_property
    def _decode(self):
        def decode(params, caches, x_qry, ctx_len, n_feat):
            return nnx.merge(self.graphdef, params).predict_queries(caches, x_qry, ctx_len, n_feat)

        return jax.jit(decode)

    # ------------------------------------------------------------------ public API
    def logits(self, x_ctx, y_ctx, x_qry, *, chunk_size: int = 1024) -> Array:
        """Raw output logits ``f32[(B,) M, num_outputs]`` for the queries. See :meth:`predict`."""
        x_ctx, y_ctx, x_qry, batched = self._validate(x_ctx, y_ctx, x_qry)
        b, n_ctx, n_feat_used = x_ctx.shape
        n_qry = x_qry.shape[1]
        ctx_pad, chunk = _bucket(n_ctx), min(_bucket(n_qry), _bucket(chunk_size))
        qry_pad = -(-n_qry // chunk) * chunk
        f_max = self.max_features
        xc = np.zeros((b, ctx_pad, f_max), np.float32)
        xc[:, :n_ctx, :n_feat_used] = x_ctx
        yc = np.zeros((b, ctx_pad), np.int32 if self.task == "classification" else np.float32)
        yc[:, :n_ctx] = y_ctx
        xq = np.zeros((b, qry_pad, f_max), np.float32)
        xq[:, :n_qry, :n_feat_used] = x_qry
        ctx_len = jnp.full((b,), n_ctx, jnp.int32)
        n_feat = jnp.full((b,), n_feat_used, jnp.int32)
        caches = self._encode(self.params, jnp.asarray(xc), jnp.asarray(yc), ctx_len, n_feat)
        outs = [
            self._decode(self.params, caches, jnp.asarray(xq[:, s : s + chunk]), ctx_len, n_feat)
            for s in range(0, qry_pad, chunk)
        ]
        out = jnp.concatenate(outs, axis=1)[:, :n_qry]
        return out if batched else out[0]

    def predict(self, x_ctx, y_ctx, x_qry, *, num_classes: int | None = None, chunk_size: int = 1024):
        """Posterior predictive distribution at ``x_qry`` given the context ``(x_ctx, y_ctx)``.

        Args:
            x_ctx: ``[N, F]`` or batched ``[B, N, F]`` (numpy or jax); ``F <= max_features``.
            y_ctx: ``[N]`` or ``[B, N]``: real targets (regression) or class indices (classification).
            x_qry: ``[M, F]`` or ``[B, M, F]``.
            num_classes: classification only: number of classes (default ``max(y_ctx) + 1``).
            chunk_size: queries per chunk against the cached context.
        Returns:
            A :class:`pfnjax.distributions.bar.BarDistribution` (regression) with ``mean()``,
            ``quantile(q)``, ``expected_improvement(best)``..., or :class:`ClassProbabilities`.
        """
        logits = self.logits(x_ctx, y_ctx, x_qry, chunk_size=chunk_size)
        if self.task == "regression":
            return bar.BarDistribution(borders=self.borders, logits=logits)
        n_cls = int(np.max(np.asarray(y_ctx))) + 1 if num_classes is None else int(num_classes)
        if not 1 <= n_cls <= self.max_classes:
            raise ValueError(f"num_classes={n_cls} is outside [1, {self.max_classes}] supported by this model")
        return ClassProbabilities(logits[..., :n_cls])

    # ------------------------------------------------------------------ validation
    def _validate(self, x_ctx, y_ctx, x_qry) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
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
        if x_ctx.shape[1] != y_ctx.shape[1]:
            raise ValueError(f"x_ctx has {x_ctx.shape[1]} rows but y_ctx has {y_ctx.shape[1]}")
        if x_ctx.shape[1] == 0:
            raise ValueError("the context is empty: a PFN needs at least one labelled row")
        if x_qry.shape[1] == 0:
            raise ValueError("x_qry has no rows")
        if x_ctx.shape[2] != x_qry.shape[2]:
            raise ValueError(f"x_ctx has {x_ctx.shape[2]} features but x_qry has {x_qry.shape[2]}")
        if x_ctx.shape[2] > self.max_features:
            raise ValueError(f"{x_ctx.shape[2]} features given but this model supports at most {self.max_features}")
        if x_ctx.shape[2] == 0:
            raise ValueError("inputs have zero features")
        if not self.trained_with_missing:
            for name, arr in (("x_ctx", x_ctx), ("x_qry", x_qry)):
                if not np.all(np.isfinite(arr)):
                    raise ValueError(f"{name} contains NaN or inf; this model was not trained with missing values")
        elif np.any(np.isinf(x_ctx)) or np.any(np.isinf(x_qry)):
            raise ValueError("inputs contain inf")
        if self.task == "regression":
            if not np.all(np.isfinite(y_ctx)):
                raise ValueError("y_ctx contains NaN or inf")
            y_ctx = y_ctx.astype(np.float32)
        else:
            if not np.all(np.isfinite(y_ctx)) or np.any(y_ctx != np.round(y_ctx)):
                raise ValueError("classification y_ctx must hold integer class indices")
            if y_ctx.min() < 0 or y_ctx.max() >= self.max_classes:
                raise ValueError(f"class indices must lie in [0, {self.max_classes}); got [{y_ctx.min()}, {y_ctx.max()}]")
            y_ctx = y_ctx.astype(np.int32)
        return x_ctx.astype(np.float32), y_ctx, x_qry.astype(np.float32), batched


def _trained_with_missing(cfg: TrainConfig | None) -> bool:
    return bool(cfg is not None and cfg.prior_kwargs.get("missing_rate", 0.0)) or (
        cfg is not None and cfg.prior in ("scm", "tabpfn_v1_mix")
    )


def load(path: str | Path, step: int | None = None) -> PFN:
    """Load a trained PFN from a run directory, or a shipped pretrained model by name.

    Raises:
        CheckpointError: the directory is missing, has no complete checkpoint, or is corrupt.
    """
    path = Path(path)
    if not path.exists() and (PRETRAINED_DIR / str(path)).exists():
        path = PRETRAINED_DIR / str(path)
    meta = ckpt.read_config(path, step)
    if meta.get("format") != "pfnjax-run-v1":
        raise ckpt.CheckpointError(f"{path} does not hold a pfnjax run (format={meta.get('format')!r})")
    train_cfg = TrainConfig.from_dict(meta["train"])
    model_cfg = ModelConfig(**meta["model"])
    abstract_model = nnx.eval_shape(lambda: PFNTransformer(model_cfg, nnx.Rngs(0)))
    graphdef, abstract_params = nnx.split(abstract_model, nnx.Param)
    from pfnjax.train.trainer import TrainState, make_optimizer

    n_borders = model_cfg.num_outputs + 1 if model_cfg.task == "regression" else 0
    abstract_state = TrainState(
        step=jax.ShapeDtypeStruct((), jnp.int32),
        params=abstract_params,
        opt_state=jax.eval_shape(make_optimizer(train_cfg).init, abstract_params),
        rng=jax.ShapeDtypeStruct((2,), jnp.uint32),
        borders=jax.ShapeDtypeStruct((n_borders,), jnp.float32),
    )
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    state, _ = ckpt.restore(path, ckpt.abstract_like(abstract_state, sharding), step)
    return PFN(model_cfg, graphdef, state.params, state.borders, train_cfg, _trained_with_missing(train_cfg))


