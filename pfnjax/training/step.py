"""The data-parallel train step: on-device sampling, the loss at the query rows, the update.

Data parallelism is the pmap pattern written with a ``data`` mesh axis: params and optimizer
state are replicated (``P()``), each step's dataset keys are sharded (``P("data")``) so every
device samples its own shard of the global batch on device, and the gradient mean over the
global batch makes XLA insert the all-reduce. Dataset ``i`` of step ``s`` always comes from
``split(fold_in(run_key, s), B)[i]``, so 1 device and N devices see the same global batch, and
``accum_steps`` micro-batches of ``B / k`` see the same datasets as one batch of ``B``.

**Context sizes** (``DataConfig.split_sharing``). With ``"dataset"`` (the default) every dataset
draws its own context size from the split distribution; the step then runs every layer over
all rows. With ``"step"`` one context size is drawn per step (from ``fold_in(step key,
SHARED_SPLIT_STREAM)``, on the device) and shared by the step's datasets, as the PyTorch
reference does: each dataset's context size still follows the split distribution, but the
datasets of one step are no longer independent in it. The step then knows bounds on the context
size, ``query_start <= sep <= context_max`` (:class:`pfnjax.model.SplitLayout`): keys past
``context_max`` are masked in every dataset, so they are not computed, and the last layer and
the output head run on rows ``>= query_start`` only. The bounds come from ``split_buckets``
ranges of context sizes chosen to minimise the expected work under the split distribution
(:func:`split_buckets`); one ``lax.switch`` branch per range is compiled into the step, so the
shapes stay static and nothing returns to the host. Every branch computes exactly the masked
definition (``tests/test_step.py``).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from pfnjax.config import TrainConfig
from pfnjax.heads import Head
from pfnjax.model.base import SplitLayout
from pfnjax.priors.base import Prior, get_split_sampler, sample_datasets, split_pmf
from pfnjax.priors.from_config import feature_count_sampler
from pfnjax.training.state import TrainState, batch_shape, make_optimizer, update_average
from pfnjax.types import Array, Batch, PRNGKey

SHARED_SPLIT_STREAM = 0x5E9  # fold_in constant of the shared context size's key


def pfn_loss(logits: Array, batch: Batch, head: Head, query_start: int = 0) -> Array:
    """Mean over datasets of the head's mean NLL over each dataset's queries.

    ``logits`` are those of rows ``[query_start, T)`` (:meth:`pfnjax.model.PFNModel.train_logits`);
    rows before ``query_start`` must be context rows of every dataset."""
    nll = head.loss(logits, batch.y[:, query_start:])
    query = batch.query_mask()[:, query_start:].astype(jnp.float32)
    per_dataset = jnp.sum(nll * query, axis=1) / jnp.maximum(jnp.sum(query, axis=1), 1.0)
    return jnp.mean(per_dataset)


def apply_model(graphdef: nnx.GraphDef, params: Any, batch: Batch) -> Array:
    """Logits of every row (the masked definition)."""
    model = nnx.merge(graphdef, params)
    return model(batch.x, batch.y, batch.single_eval_pos, batch.num_features)


def train_loss(graphdef: nnx.GraphDef, params: Any, batch: Batch, head: Head, layout: SplitLayout) -> Array:
    """The training loss of a batch whose context sizes lie within ``layout``."""
    model = nnx.merge(graphdef, params)
    logits = model.train_logits(batch.x, batch.y, batch.single_eval_pos, batch.num_features, layout)
    return pfn_loss(logits, batch, head, layout.query_start)


def split_buckets(split: str, seq_len: int, num_buckets: int) -> list[SplitLayout]:
    """Contiguous ranges of context sizes ``1..T-1`` (at most ``num_buckets``) that minimise the
    expected work of a step whose context size follows ``split``: a range ``[lo, hi]`` costs keys
    up to ``hi`` and head rows from ``lo``, ``E[hi + (T - lo)]`` in all (dynamic programming)."""
    pmf = split_pmf(split, seq_len)
    cum = np.concatenate([[0.0], np.cumsum(pmf)])  # cum[j] = P(sep < j)
    t = seq_len
    sizes = np.arange(1, t)
    k_max = max(1, min(num_buckets, t - 1))
    inf = np.inf
    # best[k][j]: least cost covering 1..j with k ranges; arg[k][j]: start of the last range
    best = np.full((k_max + 1, t), inf)
    arg = np.zeros((k_max + 1, t), int)
    best[0, 0] = 0.0
    for k in range(1, k_max + 1):
        for j in sizes:
            lo = np.arange(1, j + 1)  # the last range is [lo, j]
            cost = best[k - 1, lo - 1] + (cum[j + 1] - cum[lo]) * (j + t - lo)
            i = int(np.argmin(cost))
            best[k, j], arg[k, j] = cost[i], lo[i]
    k = int(np.argmin(best[1:, t - 1])) + 1
    layouts, j = [], t - 1
    while j > 0:
        lo = int(arg[k, j])
        layouts.append(SplitLayout(lo, j))
        j, k = lo - 1, k - 1
    return layouts[::-1]


def step_layouts(cfg: TrainConfig) -> tuple[list[SplitLayout], np.ndarray | None]:
    """The layouts a stage's step compiles and, with a shared split, the table ``bucket[sep]``."""
    t = cfg.data.seq_len
    if cfg.data.split_sharing == "dataset":
        return [SplitLayout(0, t)], None  # every row, as the masked definition reads it
    layouts = split_buckets(cfg.data.split, t, cfg.data.split_buckets)
    table = np.zeros(t, np.int32)
    for i, layout in enumerate(layouts):
        table[layout.query_start:layout.context_max + 1] = i
    return layouts, table


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
    split_fn = get_split_sampler(data.split)
    layouts, table = step_layouts(cfg)
    replicated = NamedSharding(mesh, P())
    keys_sharding = NamedSharding(mesh, P(None, "data"))
    data_sharding = NamedSharding(mesh, P("data"))
    grad_fns = [jax.value_and_grad(lambda p, b, layout=layout: train_loss(graphdef, p, b, head, layout))
                for layout in layouts]

    def step(state: TrainState) -> tuple[TrainState, dict]:
        step_key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        keys = jax.random.split(step_key, data.accum_steps * data.batch_size).reshape(data.accum_steps, data.batch_size)
        keys = jax.lax.with_sharding_constraint(keys, keys_sharding)
        shared_sep = None
        bucket = jnp.int32(0)
        if table is not None:
            shared_sep = split_fn(jax.random.fold_in(step_key, SHARED_SPLIT_STREAM), data.seq_len)
            bucket = jnp.asarray(table)[shared_sep]

        def micro_step(grad_sum: Any, micro_keys: PRNGKey) -> tuple[Any, Array]:
            batch = sample_datasets(prior, micro_keys, shape, split=data.split, num_features_sampler=n_features,
                                    single_eval_pos=shared_sep)
            batch = jax.lax.with_sharding_constraint(batch, data_sharding)
            if len(grad_fns) == 1:
                loss, grads = grad_fns[0](state.params, batch)
            else:
                loss, grads = jax.lax.switch(bucket, grad_fns, state.params, batch)
            return jax.tree.map(jnp.add, grad_sum, grads), loss

        zeros = jax.tree.map(jnp.zeros_like, state.params)
        grad_sum, losses = jax.lax.scan(micro_step, zeros, keys)
        grads = jax.tree.map(lambda g: g / data.accum_steps, grad_sum)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": jnp.mean(losses), "grad_norm": optax.tree.norm(grads)}
        avg = state.avg_params
        if avg is not None:
            avg = update_average(cfg.optim, avg, params, state.step + 1)
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state, avg_params=avg), metrics

    return jax.jit(step, in_shardings=(replicated,), out_shardings=(replicated, replicated), donate_argnums=0)


__all__ = ["SHARED_SPLIT_STREAM", "apply_model", "make_mesh", "make_train_step", "pfn_loss", "split_buckets",
           "step_layouts", "train_loss"]
