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

from pfnjax import checkpoint as ckpt
from pfnjax.config import OptimConfig, TrainConfig
from pfnjax.heads import Head, head_class_for_task
from pfnjax.model import ModelConfig, PFNTransformer, count_params
from pfnjax.priors.base import Prior, prior_spec, sample_datasets
from pfnjax.priors.from_config import build_prior, feature_count_sampler
from pfnjax.runs import STREAM_HEAD, STREAM_INIT, STREAM_TRAIN, run_metadata, stream_key
from pfnjax.types import Array, Batch, BatchShape, PRNGKey


@struct.dataclass
class TrainState:
    """Everything that changes during training; a pytree saved whole in each checkpoint."""

    step: Array  # i32[]
    params: Any  # nnx.State of the model's nnx.Param variables
    opt_state: Any
    rng: Array  # u32 key data of the run key (typed keys are wrapped/unwrapped at the edges)


# --------------------------------------------------------------------------- building blocks


def batch_shape(cfg: TrainConfig) -> BatchShape:
    return BatchShape(cfg.data.batch_size, cfg.data.seq_len, cfg.data.num_features)


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
    """AdamW with linear warmup then cosine decay (per step), after global-norm clipping."""
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=cfg.lr,
        warmup_steps=cfg.warmup_steps,
        decay_steps=max(cfg.steps, cfg.warmup_steps + 1),
        end_value=cfg.lr * cfg.min_lr_ratio,
    )
    return optax.chain(optax.clip_by_global_norm(cfg.clip_norm), optax.adamw(schedule, weight_decay=cfg.weight_decay))


def make_head(cfg: TrainConfig, prior: Prior) -> Head:
    """The head that serves ``prior.task``, set up for this run (bar borders from prior draws)."""
    return head_class_for_task(prior.task).for_training(prior, cfg, stream_key(cfg.seed, STREAM_HEAD))


def init_state(cfg: TrainConfig, prior: Prior, head: Head | None = None
               ) -> tuple[nnx.GraphDef, TrainState, ModelConfig, Head]:
    """Fresh parameters and optimizer state for ``cfg`` (host-side, unsharded), and the run's head."""
    head = make_head(cfg, prior) if head is None else head
    model_cfg = cfg.model_config(head.num_outputs, head.y_vocab)
    seed = int(jax.random.randint(stream_key(cfg.seed, STREAM_INIT), (), 0, 2**31 - 1))
    graphdef, params = nnx.split(PFNTransformer(model_cfg, nnx.Rngs(seed)), nnx.Param)
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=make_optimizer(cfg.optim).init(params),
        rng=jax.random.key_data(stream_key(cfg.seed, STREAM_TRAIN)),
    )
    return graphdef, state, model_cfg, head


def pfn_loss(logits: Array, batch: Batch, head: Head) -> Array:
    """Mean over datasets of the head's mean NLL over each dataset's queries."""
    nll = head.loss(logits, batch.y)
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
    cfg: TrainConfig, prior: Prior, graphdef: nnx.GraphDef, mesh: jax.sharding.Mesh, head: Head
) -> Callable[[TrainState], tuple[TrainState, dict]]:
    """The jitted, data-parallel ``state -> (state, metrics)`` step (samples its own batch)."""
    num_devices = mesh.devices.size
    data = cfg.data
    if data.batch_size % num_devices:
        raise ValueError(f"batch_size={data.batch_size} must be divisible by the number of devices ({num_devices})")
    shape = batch_shape(cfg)
    tx = make_optimizer(cfg.optim)
    n_features = feature_count_sampler(data)
    replicated = NamedSharding(mesh, P())
    keys_sharding = NamedSharding(mesh, P(None, "data"))
    data_sharding = NamedSharding(mesh, P("data"))

    def loss_fn(params: Any, batch: Batch) -> Array:
        return pfn_loss(apply_model(graphdef, params, batch), batch, head)

    def step(state: TrainState) -> tuple[TrainState, dict]:
        step_key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        keys = jax.random.split(step_key, data.accum_steps * data.batch_size).reshape(data.accum_steps, data.batch_size)
        keys = jax.lax.with_sharding_constraint(keys, keys_sharding)

        def micro_step(grad_sum: Any, micro_keys: PRNGKey) -> tuple[Any, Array]:
            batch = sample_datasets(prior, micro_keys, shape, split=data.split, num_features_sampler=n_features)
            batch = jax.lax.with_sharding_constraint(batch, data_sharding)
            loss, grads = jax.value_and_grad(loss_fn)(state.params, batch)
            return jax.tree.map(jnp.add, grad_sum, grads), loss

        zeros = jax.tree.map(jnp.zeros_like, state.params)
        grad_sum, losses = jax.lax.scan(micro_step, zeros, keys)
        grads = jax.tree.map(lambda g: g / data.accum_steps, grad_sum)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": jnp.mean(losses), "grad_norm": optax.tree.norm(grads)}
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return jax.jit(step, in_shardings=(replicated,), out_shardings=(replicated, replicated), donate_argnums=0)


# --------------------------------------------------------------------------- the loop


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns: the final state and what is needed to use it.

    ``history`` holds the logged training metrics, ``evaluations`` the in-training evaluations
    (``cfg.loop.eval_every``); both are also lines of ``metrics.jsonl``.
    """

    config: TrainConfig
    model_config: ModelConfig
    graphdef: nnx.GraphDef
    state: TrainState
    head: Head
    history: list[dict]
    run_dir: Path | None
    prior_spec: dict
    evaluations: list[dict] = dataclasses.field(default_factory=list)

    @property
    def model(self) -> PFNTransformer:
        return nnx.merge(self.graphdef, self.state.params)

    @property
    def params(self) -> Any:
        return self.state.params


def _check_resumable(saved: dict, cfg: TrainConfig, run_path: Path) -> None:
    # compare as JSON of configs, so fields added since the run was saved take their defaults
    saved_cfg = TrainConfig.from_dict(saved.get("train", {}))
    if json.loads(saved_cfg.to_json()) != json.loads(cfg.to_json()):
        raise ValueError(
            f"the checkpoint in {run_path} was written with a different config; "
            "use a new --out directory or the same settings"
        )


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
    prior = build_prior(cfg.prior)
    mesh = make_mesh(devices)
    replicated = NamedSharding(mesh, P())
    run_path = Path(run_dir) if run_dir is not None else None
    loop = cfg.loop

    graphdef, state, model_cfg, head = init_state(cfg, prior)
    state = jax.device_put(state, replicated)
    spec = prior_spec(prior)
    metadata = run_metadata(cfg, model_cfg, head, spec)
    history: list[dict] = []
    evaluations: list[dict] = []
    manager = None
    if run_path is not None:
        run_path.mkdir(parents=True, exist_ok=True)
        if jax.process_index() == 0:
            (run_path / "config.json").write_text(json.dumps(metadata, indent=2, sort_keys=True))
        manager = ckpt.make_manager(run_path, keep=loop.keep_checkpoints)
        resume_step = manager.latest_step() if resume else None
        if resume_step is not None:
            state, saved = ckpt.restore_from_manager(manager, ckpt.abstract_like(state, replicated), resume_step)
            try:
                _check_resumable(saved, cfg, run_path)
            except ValueError:
                manager.close()
                raise

    # one compiled step per length-curriculum stage (cfg.data.stages), each with its own batch shape
    stages = [(start, make_train_step(stage_cfg, prior, graphdef, mesh, head),
               stage_cfg.data.batch_size * stage_cfg.data.accum_steps) for start, stage_cfg in cfg.stage_configs()]
    is_chief = jax.process_index() == 0  # every process trains and checkpoints; one writes logs
    evaluator = None
    if loop.eval_every and is_chief:
        from pfnjax.evaluate import HeldOutEvaluator

        evaluator = HeldOutEvaluator.for_run(cfg, prior, model_cfg, graphdef, head)
    start = int(_host(state.step))
    last = cfg.optim.steps if stop_after is None else min(cfg.optim.steps, stop_after)
    metrics_file = open(run_path / "metrics.jsonl", "a") if run_path is not None and is_chief else None
    bar_ = _progress_bar(start, cfg.optim.steps, progress, count_params(nnx.merge(graphdef, state.params)))
    tick, recent, datasets_since_tick = time.perf_counter(), [], 0

    def write(record: dict) -> None:
        if metrics_file is not None:
            metrics_file.write(json.dumps(record) + "\n")
            metrics_file.flush()

    try:
        for step in range(start, last):
            _, step_fn, datasets_per_step = next(stage for stage in reversed(stages) if stage[0] <= step)
            state, metrics = step_fn(state)
            recent.append(metrics)
            datasets_since_tick += datasets_per_step
            done = step + 1
            if done % loop.log_every == 0 or done == last:
                host = [jax.tree.map(_host, m) for m in recent]
                now = time.perf_counter()
                record = {
                    "step": done,
                    "loss": float(np.mean([m["loss"] for m in host])),
                    "grad_norm": float(np.mean([m["grad_norm"] for m in host])),
                    "datasets_per_s": datasets_since_tick / max(now - tick, 1e-9),
                    "time": time.time(),
                }
                if not np.isfinite(record["loss"]):
                    raise FloatingPointError(f"training diverged: loss {record['loss']} at step {done}")
                history.append(record)
                write(record)
                if bar_ is not None:
                    bar_.set_postfix(loss=f"{record['loss']:.4f}", ds_per_s=f"{record['datasets_per_s']:.0f}")
                tick, recent, datasets_since_tick = now, [], 0
            if evaluator is not None and (done % loop.eval_every == 0 or done == last):
                evaluation = {"step": done, "eval": evaluator.run(jax.tree.map(_host, state.params)),
                              "time": time.time()}
                evaluations.append(evaluation)
                write(evaluation)
                tick, datasets_since_tick = time.perf_counter(), 0  # evaluation time is not training throughput
            if bar_ is not None:
                bar_.update(1)
            if manager is not None and (done % loop.checkpoint_every == 0 or done == last):
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
    return TrainResult(cfg, model_cfg, graphdef, state, head, history, run_path, spec, evaluations)


def _host(value: Array) -> np.ndarray:
    """Host copy of a replicated array; also on multi-host meshes, where it is not fully addressable."""
    return np.asarray(value.addressable_data(0)) if isinstance(value, jax.Array) else np.asarray(value)


def _progress_bar(start: int, total: int, enabled: bool, num_params: int):
    if not enabled or jax.process_index() != 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc=f"train ({num_params / 1e6:.2f}M params)", unit="step", dynamic_ncols=True)
