"""The train state, the optimizer, and a run's fresh state (model, head, parameters)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct

from pfnjax.config import OptimConfig, TrainConfig
from pfnjax.heads import Head, head_class_for_task
from pfnjax.model.base import ModelIO, build_model
from pfnjax.priors.base import Prior, sample_batch
from pfnjax.priors.from_config import feature_count_sampler
from pfnjax.runs import STREAM_HEAD, STREAM_INIT, STREAM_TRAIN, stream_key
from pfnjax.types import Array, BatchShape, PRNGKey


@struct.dataclass
class TrainState:
    """Everything that changes during training; a pytree saved whole in each checkpoint."""

    step: Array  # i32[]
    params: Any  # nnx.State of the model's nnx.Param variables
    opt_state: Any
    rng: Array  # u32 key data of the run key (typed keys are wrapped/unwrapped at the edges)
    avg_params: Any = None  # averaged weights (OptimConfig.averaging), the ones inference uses; else None

    @property
    def inference_params(self) -> Any:
        """The weights a trained model predicts with: the averaged ones if the run keeps them."""
        return self.params if self.avg_params is None else self.avg_params


def batch_shape(cfg: TrainConfig) -> BatchShape:
    return BatchShape(cfg.data.batch_size, cfg.data.seq_len, cfg.data.num_features)


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW, or Muon on the matrix parameters and AdamW on the rest;
    linear warmup then cosine decay (per step)."""

    def schedule(peak: float):
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0, peak_value=peak, warmup_steps=cfg.warmup_steps,
            decay_steps=max(cfg.steps, cfg.warmup_steps + 1), end_value=peak * cfg.min_lr_ratio)

    if cfg.optimizer == "muon":
        inner = optax.contrib.muon(schedule(cfg.muon_lr), weight_decay=cfg.weight_decay,
                                   adam_learning_rate=schedule(cfg.lr), adam_weight_decay=cfg.weight_decay)
    else:
        inner = optax.adamw(schedule(cfg.lr), weight_decay=cfg.weight_decay)
    return optax.chain(optax.clip_by_global_norm(cfg.clip_norm), inner)


def update_average(cfg: OptimConfig, avg: Any, params: Any, step: Array) -> Any:
    """The averaged weights after the update that produced ``params`` at ``step`` (1-based)."""
    if cfg.averaging == "ema":
        return jax.tree.map(lambda a, p: cfg.ema_decay * a + (1.0 - cfg.ema_decay) * p, avg, params)
    # tail: a running mean from tail_start on; before it, the current weights
    count = jnp.maximum(step - cfg.tail_start, 1).astype(jnp.float32)
    return jax.tree.map(lambda a, p: jnp.where(step <= cfg.tail_start, p, a + (p - a) / count), avg, params)


def sample_labels(prior: Prior, cfg: TrainConfig, count: int, key: PRNGKey) -> np.ndarray:
    """About ``count`` prior draws of ``y`` (whole datasets of the run's shape, split and feature
    counts), flattened: what a head such as the bar head is fitted to."""
    data = cfg.data
    shape = BatchShape(max(1, -(-count // data.seq_len)), data.seq_len, data.num_features)
    sampler = jax.jit(lambda k: sample_batch(prior, k, shape, split=data.split,
                                             num_features_sampler=feature_count_sampler(data)))
    return np.asarray(sampler(key).y).reshape(-1)


def make_head(cfg: TrainConfig, prior: Prior) -> Head:
    """The head that serves ``prior.task``, fitted for this run from its own settings and, if it
    asks for them, labels drawn from the prior here (the head never samples the prior itself)."""
    head_cls = head_class_for_task(prior.task)
    settings = cfg.head.for_kind(head_cls.kind)
    count = head_cls.label_samples(settings)
    y = sample_labels(prior, cfg, count, stream_key(cfg.seed, STREAM_HEAD)) if count else None
    return head_cls.fit(settings, y)


def init_state(cfg: TrainConfig, prior: Prior, head: Head | None = None
               ) -> tuple[nnx.GraphDef, TrainState, ModelIO, Head]:
    """Fresh parameters and optimizer state for ``cfg`` (host-side, unsharded), the model's
    inputs and outputs, and the run's head."""
    head = make_head(cfg, prior) if head is None else head
    io = cfg.model_io(head.num_outputs, head.y_vocab)
    seed = int(jax.random.randint(stream_key(cfg.seed, STREAM_INIT), (), 0, 2**31 - 1))
    graphdef, params = nnx.split(build_model(cfg.model, io, nnx.Rngs(seed)), nnx.Param)
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=make_optimizer(cfg.optim).init(params),
        rng=jax.random.key_data(stream_key(cfg.seed, STREAM_TRAIN)),
        avg_params=None if cfg.optim.averaging == "none" else jax.tree.map(jnp.copy, params),
    )
    return graphdef, state, io, head


__all__ = ["TrainState", "batch_shape", "init_state", "make_head", "make_optimizer", "sample_labels",
           "update_average"]
