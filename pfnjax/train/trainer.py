"""Train state, the data-parallel train step and the training loop.

Data parallelism is the pmap pattern written with a ``data`` mesh axis: params and optimizer
state are replicated (``P()``), each step's dataset keys are sharded (``P("data")``) so every
device samples its own shard of the global batch on device, and the gradient mean over the
global batch makes XLA insert the all-reduce. Dataset ``i`` of step ``s`` always comes from
``split(fold_in(run_key, s), B)[i]``, so 1 device and N devices see the same global batch, and
``accum_steps`` micro-batches of ``B / k`` see the same datasets as one batch of ``B``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct
from jax.sharding import NamedSharding, PartitionSpec as P

from pfnjax.distributions import bar
from pfnjax.model import ModelConfig, PFNTransformer, count_params
from pfnjax.priors import base as prior_base
from pfnjax.priors.base import Prior, get_prior, prior_config_dict, sample_datasets
from pfnjax.train import checkpoint as ckpt
from pfnjax.train.config import TrainConfig
from pfnjax.types import Array, Batch, BatchShape, PRNGKey

# Independent key streams derived from the run seed.
_STREAM_TRAIN, _STREAM_BORDERS, _STREAM_INIT, _STREAM_EVAL = 0, 1, 2, 3
CLASSIFICATION_BORDERS_SIZE = 1


def stream_key(seed: int, stream: int) -> PRNGKey:
    """Key of one of the run's independent streams (train data, borders, init, held-out eval)."""
    return jax.random.fold_in(jax.random.key(seed), stream)


@struct.dataclass
class TrainState:
    """Everything that changes during training; a pytree saved whole in each checkpoint."""

    step: Array  # i32[]
    params: Any  # nnx.State of the model's nnx.Param variables
    opt_state: Any
    rng: Array  # u32 key data of the run key (typed keys are wrapped/unwrapped at the edges)
    borders: Array  # f32[K+1] bar-distribution borders (regression); an unused f32[1] for classification


# --------------------------------------------------------------------------- building blocks


def build_prior(cfg: TrainConfig) -> Prior:
    return get_prior(cfg.prior, **cfg.prior_kwargs)


def feature_count_sampler(cfg: TrainConfig) -> Callable[[PRNGKey, int], Array]:
    """Each dataset's used-feature count: all of them, or uniform on ``min_features..num_features``."""
    if cfg.min_features is None:
        return prior_base.all_features
    return prior_base.uniform_feature_count(cfg.min_features)


def batch_shape(cfg: TrainConfig) -> BatchShape:
    return BatchShape(cfg.batch_size, cfg.seq_len, cfg.num_features)


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """AdamW with linear warmup then cosine decay (per step), after global-norm clipping."""
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=cfg.lr,
        warmup_steps=cfg.warmup_steps,
        decay_steps=max(cfg.steps, cfg.warmup_steps + 1),
        end_value=cfg.lr * cfg.min_lr_ratio,
    )
    return optax.chain(optax.clip_by_global_norm(cfg.clip_norm), optax.adamw(schedule, weight_decay=cfg.weight_decay))


def compute_borders(prior: Prior, cfg: TrainConfig) -> Array:
    """Equal-mass bar borders from ``cfg.border_samples`` prior draws of y (a stream disjoint from training)."""
    shape = BatchShape(max(1, -(-cfg.border_samples // cfg.seq_len)), cfg.seq_len, cfg.num_features)
    sampler = jax.jit(
        lambda k: prior_base.sample_batch(prior, k, shape, split=cfg.split, num_features_sampler=feature_count_sampler(cfg))
    )
    y = np.asarray(sampler(stream_key(cfg.seed, _STREAM_BORDERS)).y).reshape(-1)
    return bar.borders_from_samples(y, cfg.num_buckets)


def model_config_for(cfg: TrainConfig, prior: Prior, borders: Array) -> ModelConfig:
    if prior.task == "regression":
        return cfg.model_config("regression", int(borders.shape[0]) - 1)
    return cfg.model_config("classification", cfg.max_classes)


def init_state(cfg: TrainConfig, prior: Prior) -> tuple[nnx.GraphDef, TrainState, ModelConfig]:
    """Fresh parameters, optimizer state and borders for ``cfg`` (host-side, unsharded)."""
    if prior.task == "regression":
        borders = compute_borders(prior, cfg)
    else:
        # Orbax's async save hangs on zero-size arrays, so classification keeps a 1-element placeholder.
        borders = jnp.zeros((CLASSIFICATION_BORDERS_SIZE,), jnp.float32)
    model_cfg = model_config_for(cfg, prior, borders)
    seed = int(jax.random.randint(stream_key(cfg.seed, _STREAM_INIT), (), 0, 2**31 - 1))
    model = PFNTransformer(model_cfg, nnx.Rngs(seed))
    graphdef, params = nnx.split(model, nnx.Param)
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=make_optimizer(cfg).init(params),
        rng=jax.random.key_data(stream_key(cfg.seed, _STREAM_TRAIN)),
        borders=borders,
    )
    return graphdef, state, model_cfg


def pfn_loss(logits: Array, batch: Batch, borders: Array, task: str) -> Array:
    """Mean over datasets of the mean NLL over each dataset's queries.

    Regression: bar-distribution NLL (full support). Classification: cross-entropy.
    """
    if task == "regression":
        nll = -bar.log_prob(borders, logits, batch.y)
    else:
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch.y.astype(jnp.int32))
    query = batch.query_mask().astype(jnp.float32)
    per_dataset = jnp.sum(nll * query, axis=1) / jnp.maximum(jnp.sum(query, axis=1), 1.0)
    return jnp.mean(per_dataset)


def apply_model(graphdef: nnx.GraphDef, params: Any, batch: Batch) -> Array:
    model = nnx.merge(graphdef, params)
    return model(batch.x, batch.y, batch.single_eval_pos, batch.num_features)


def make_mesh(devices: list | None = None) -> jax.sharding.Mesh:
    """A 1-D ``data`` mesh over ``devices`` (default: all devices of all processes)."""
    devices = jax.devices() if devices is None else list(devices)
    return jax.sharding.Mesh(np.asarray(devices), ("data",))


def make_train_step(
    cfg: TrainConfig, prior: Prior, graphdef: nnx.GraphDef, mesh: jax.sharding.Mesh, task: str
) -> Callable[[TrainState], tuple[TrainState, dict]]:
    """The jitted, data-parallel ``state -> (state, metrics)`` step (samples its own batch)."""
    num_devices = mesh.devices.size
    if cfg.batch_size % num_devices:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the number of devices ({num_devices})")
    shape = batch_shape(cfg)
    tx = make_optimizer(cfg)
    n_features = feature_count_sampler(cfg)
    replicated = NamedSharding(mesh, P())
    keys_sharding = NamedSharding(mesh, P(None, "data"))
    data_sharding = NamedSharding(mesh, P("data"))

    def loss_fn(params: Any, batch: Batch, borders: Array) -> Array:
        return pfn_loss(apply_model(graphdef, params, batch), batch, borders, task)

    def step(state: TrainState) -> tuple[TrainState, dict]:
        step_key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        keys = jax.random.split(step_key, cfg.accum_steps * cfg.batch_size).reshape(cfg.accum_steps, cfg.batch_size)
        keys = jax.lax.with_sharding_constraint(keys, keys_sharding)

        def micro_step(grad_sum: Any, micro_keys: PRNGKey) -> tuple[Any, Array]:
            batch = sample_datasets(prior, micro_keys, shape, split=cfg.split, num_features_sampler=n_features)
            batch = jax.lax.with_sharding_constraint(batch, data_sharding)
            loss, grads = jax.value_and_grad(loss_fn)(state.params, batch, state.borders)
            return jax.tree.map(jnp.add, grad_sum, grads), loss

        zeros = jax.tree.map(jnp.zeros_like, state.params)
        grad_sum, losses = jax.lax.scan(micro_step, zeros, keys)
        grads = jax.tree.map(lambda g: g / cfg.accum_steps, grad_sum)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": jnp.mean(losses), "grad_norm": optax.tree.norm(grads)}
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return jax.jit(step, in_shardings=(replicated,), out_shardings=(replicated, replicated), donate_argnums=0)


# --------------------------------------------------------------------------- the loop


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns: the final state and what is needed to use it."""

    config: TrainConfig
    model_config: ModelConfig
    graphdef: nnx.GraphDef
    state: TrainState
    history: list[dict]
    run_dir: Path | None

    @property
    def model(self) -> PFNTransformer:
        return nnx.merge(self.graphdef, self.state.params)


def run_metadata(cfg: TrainConfig, model_cfg: ModelConfig, prior: Prior) -> dict:
    """The JSON saved with every checkpoint: enough to rebuild the model without the code's defaults."""
    return {
        "format": "pfnjax-run-v1",
        "train": cfg.to_dict(),
        "model": dataclasses.asdict(model_cfg),
        "task": prior.task,
        "prior": prior_config_dict(prior),
    }


def train(
    cfg: TrainConfig,
    run_dir: str | Path | None = None,
    *,
    resume: bool = True,
    progress: bool = True,
    devices: list | None = None,
    stop_after: int | None = None,
    on_step: Callable[[int, dict | None], None] | None = None,
) -> TrainResult:
    """Train a PFN on ``cfg.prior``. Pure in its inputs: the same config gives the same run.

    Args:
        cfg: the run configuration.
        run_dir: where checkpoints (``checkpoints/``), ``config.json`` and ``metrics.jsonl`` go;
            None trains in memory without checkpoints.
        resume: continue from the latest checkpoint in ``run_dir`` if there is one.
        progress: show a progress bar with step, loss and datasets/s.
        devices: devices to train on (default: all).
        stop_after: stop (after checkpointing) once this step is reached, as if preempted.
        on_step: called as ``on_step(step, record)`` after every step; ``record`` is the logged
            metrics dict on logging steps, else None.
    """
    prior = build_prior(cfg)
    mesh = make_mesh(devices)
    replicated = NamedSharding(mesh, P())
    run_path = Path(run_dir) if run_dir is not None else None

    graphdef, state, model_cfg = init_state(cfg, prior)
    state = jax.device_put(state, replicated)
    metadata = run_metadata(cfg, model_cfg, prior)
    history: list[dict] = []
    manager = None
    if run_path is not None:
        run_path.mkdir(parents=True, exist_ok=True)
        if jax.process_index() == 0:
            (run_path / "config.json").write_text(json.dumps(metadata, indent=2, sort_keys=True))
        manager = ckpt.make_manager(run_path, keep=cfg.keep_checkpoints)
        resume_step = manager.latest_step() if resume else None
        if resume_step is not None:
            state, saved = ckpt.restore_from_manager(manager, ckpt.abstract_like(state, replicated), resume_step)
            # compare as JSON of configs, so fields added since the run was saved take their defaults
            saved_cfg = TrainConfig.from_dict(saved.get("train", {}))
            if json.loads(saved_cfg.to_json()) != json.loads(cfg.to_json()):
                manager.close()
                raise ValueError(
                    f"the checkpoint in {run_path} was written with a different config; "
                    "use a new --out directory or the same settings"
                )

    step_fn = make_train_step(cfg, prior, graphdef, mesh, model_cfg.task)
    start = int(_host(state.step))
    last = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    is_chief = jax.process_index() == 0  # every process trains and checkpoints; one writes logs
    metrics_file = open(run_path / "metrics.jsonl", "a") if run_path is not None and is_chief else None
    bar_ = _progress_bar(start, cfg.steps, progress, count_params(nnx.merge(graphdef, state.params)))
    datasets_per_step = cfg.batch_size * cfg.accum_steps
    tick, tick_step, recent = time.perf_counter(), start, []
    try:
        for step in range(start, last):
            state, metrics = step_fn(state)
            recent.append(metrics)
            done = step + 1
            if done % cfg.log_every == 0 or done == last:
                host = [jax.tree.map(_host, m) for m in recent]
                now = time.perf_counter()
                record = {
                    "step": done,
                    "loss": float(np.mean([m["loss"] for m in host])),
                    "grad_norm": float(np.mean([m["grad_norm"] for m in host])),
                    "datasets_per_s": datasets_per_step * (done - tick_step) / max(now - tick, 1e-9),
                    "time": time.time(),
                }
                if not np.isfinite(record["loss"]):
                    raise FloatingPointError(f"training diverged: loss {record['loss']} at step {done}")
                history.append(record)
                if metrics_file is not None:
                    metrics_file.write(json.dumps(record) + "\n")
                    metrics_file.flush()
                if bar_ is not None:
                    bar_.set_postfix(loss=f"{record['loss']:.4f}", ds_per_s=f"{record['datasets_per_s']:.0f}")
                tick, tick_step, recent = now, done, []
            if bar_ is not None:
                bar_.update(1)
            if manager is not None and (done % cfg.checkpoint_every == 0 or done == last):
                loss_metric = history[-1]["loss"] if history else float("nan")
                ckpt.save(manager, done, state, metadata, metrics={"loss": loss_metric})
            if on_step is not None:
                on_step(done, history[-1] if history and history[-1]["step"] == done else None)
    finally:
        if bar_ is not None:
            bar_.close()
        if metrics_file is not None:
            metrics_file.close()
        if manager is not None:
            manager.wait_until_finished()
            manager.close()
    return TrainResult(cfg, model_cfg, graphdef, state, history, run_path)


def _host(value: Array) -> np.ndarray:
    """Host copy of a replicated array; also on multi-host meshes, where it is not fully addressable."""
    return np.asarray(value.addressable_data(0)) if isinstance(value, jax.Array) else np.asarray(value)


def _progress_bar(start: int, total: int, enabled: bool, num_params: int):
    if not enabled or jax.process_index() != 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc=f"train ({num_params / 1e6:.2f}M params)", unit="step", dynamic_ncols=True)
