"""Where a training step's time goes: per-component timings of the full data-parallel step.

Each component is jit-compiled on its own at the preset's shapes, warmed up, and timed as the
median of ``--repeats`` runs with ``block_until_ready``:

* ``sample``: the on-device prior sampler for one global batch;
* ``forward``: the model forward and the loss (no gradients), as the step computes it
  (:func:`pfnjax.training.train_loss` with the step's layout);
* ``forward+backward``: ``value_and_grad`` of that loss;
* ``attention``: forward+backward of the context-masked attention alone, all layers, at the
  implementation the model uses (``attention_impl``, resolved as in the model) and the layout's
  key count;
* ``loss head``: forward+backward of the bar-distribution NLL on the logits the loss reads;

With ``split_sharing="step"`` every dataset of the profiled batch has the split distribution's
mean context size and the components run at that size's bucket (the median step).
* ``optimizer``: clipping + AdamW update + apply on parameter-shaped gradients;
* ``full step``: the real train step (sampling, forward, backward, update; donated state).

The remainder ``forward+backward - attention - loss head`` is the dense matmuls, layer norms
and elementwise ops. Components overlap in a fused step, so the parts need not add up to the
full step exactly. ``--trace DIR`` also writes a ``jax.profiler`` trace of 5 full steps (open it
with TensorBoard's profile plugin or XProf) for per-kernel detail.

    python benchmarks/step_profile.py --preset gp-1000 --bf16 --markdown benchmarks/results/step_profile_h100.md
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pfnjax.model import ATTENTION_IMPLS, context_attention, resolve_attention_impl
from pfnjax.presets import preset_config
from pfnjax.priors.base import sample_datasets, split_pmf
from pfnjax.priors.from_config import build_prior, feature_count_sampler
from pfnjax.runs import STREAM_TRAIN, stream_key
from pfnjax.training import (
    batch_shape,
    init_state,
    make_mesh,
    make_optimizer,
    make_train_step,
    pfn_loss,
    step_layouts,
    train_loss,
)

from _results import median_seconds, report  # a sibling: a script's own folder is on sys.path


def profile(preset: str, bf16: bool, repeats: int = 10, attention_impl: str | None = None,
            trace_dir: str | None = None, **overrides: Any) -> dict:
    """Seconds per component (see the module docstring) for one preset on the default devices."""
    cfg = preset_config(preset, compute_dtype="bfloat16" if bf16 else "float32", border_samples=20_000,
                        attention_impl=attention_impl, **overrides)
    prior = build_prior(cfg.prior)
    graphdef, state, io, head = init_state(cfg, prior)
    mesh = make_mesh()
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    state = jax.device_put(state, replicated)
    shape = batch_shape(cfg)
    n_features = feature_count_sampler(cfg.data)
    keys = jax.random.split(stream_key(cfg.seed, STREAM_TRAIN), cfg.data.batch_size)

    sample = jax.jit(lambda k: sample_datasets(prior, k, shape, split=cfg.data.split, num_features_sampler=n_features))
    batch = sample(keys)
    layouts, table = step_layouts(cfg)
    layout = layouts[0]
    if table is not None:  # the median step: every dataset at the mean context size, in its bucket
        sep = int(round(float((split_pmf(cfg.data.split, cfg.data.seq_len) * np.arange(cfg.data.seq_len)).sum())))
        layout = layouts[int(table[sep])]
        batch = batch.replace(single_eval_pos=jnp.full_like(batch.single_eval_pos, sep))

    def loss_fn(params, batch, head):
        return train_loss(graphdef, params, batch, head, layout)

    forward = jax.jit(loss_fn)
    forward_backward = jax.jit(jax.value_and_grad(loss_fn))

    # attention alone: every layer's q/k/v at the step's shapes and dtype (keys up to context_max)
    b, t, d, h = cfg.data.batch_size, cfg.data.seq_len, cfg.model.d_model, cfg.model.num_heads
    dtype = cfg.model.dtype
    n_keys = min(layout.context_max, t)
    q = jax.random.normal(jax.random.key(1), (b, t, h, d // h), dtype)
    kv = jax.random.normal(jax.random.key(3), (2, b, n_keys, h, d // h), dtype)
    impl = resolve_attention_impl(cfg.model.attention_impl, q, kv[0])

    def attention_loss(q, k, v):
        out = context_attention(q, k, v, batch.single_eval_pos, cfg.model.attention_impl)
        return jnp.sum(out.astype(jnp.float32))

    attention_grad = jax.jit(jax.grad(attention_loss, argnums=(0, 1, 2)))

    def all_layers_attention():
        return [attention_grad(q, *kv) for _ in range(cfg.model.num_layers)]

    logits = jax.random.normal(jax.random.key(2), (b, t - layout.query_start, io.num_outputs), jnp.float32)
    head_grad = jax.jit(jax.grad(lambda lg: pfn_loss(lg, batch, head, layout.query_start)))

    tx = make_optimizer(cfg.optim)
    grads = jax.tree.map(jnp.ones_like, state.params)

    @jax.jit
    def optimizer_update(params, opt_state):
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    step = make_train_step(cfg, prior, graphdef, mesh, head)
    step_state = [state]

    def full_step():
        step_state[0], metrics = step(step_state[0])
        return metrics

    res = {
        "sample": median_seconds(lambda: sample(keys), repeats),
        "forward": median_seconds(lambda: forward(state.params, batch, head), repeats),
        "forward_backward": median_seconds(lambda: forward_backward(state.params, batch, head), repeats),
        "attention": median_seconds(all_layers_attention, repeats),
        "loss_head": median_seconds(lambda: head_grad(logits), repeats),
        "optimizer": median_seconds(lambda: optimizer_update(state.params, state.opt_state), repeats),
    }
    # the full step donates its state: time it last, on its own copy
    step_state[0] = jax.tree.map(jnp.copy, state)
    res["full_step"] = median_seconds(full_step, repeats)
    if trace_dir:
        with jax.profiler.trace(trace_dir):
            for _ in range(5):
                jax.block_until_ready(full_step())
    res["rest"] = max(res["forward_backward"] - res["attention"] - res["loss_head"], 0.0)
    res.update(preset=preset, dtype=cfg.model.compute_dtype, batch=cfg.data.batch_size, seq_len=cfg.data.seq_len,
               attention_impl=impl, devices=mesh.devices.size, repeats=repeats, split_sharing=cfg.data.split_sharing,
               layout=tuple(layout))
    return res


_ROWS = [
    ("sample", "prior sampling (one global batch)"),
    ("forward", "forward + loss"),
    ("forward_backward", "forward + backward"),
    ("attention", "  of which attention, all layers (fwd + bwd)"),
    ("loss_head", "  of which bar/class loss head (fwd + bwd)"),
    ("rest", "  of which dense matmuls, layer norms, elementwise (remainder)"),
    ("optimizer", "optimizer (clip + AdamW + apply)"),
    ("full_step", "full train step (all of the above, fused)"),
]


def markdown(results: list[dict]) -> str:
    lines = []
    for r in results:
        lines += [
            f"## {r['preset']}, {r['dtype']}, batch {r['batch']}, T={r['seq_len']}, attention `{r['attention_impl']}`, "
            f"split sharing `{r['split_sharing']}` (layout {r['layout']}), {r['devices']} device(s)",
            "",
            "| component | ms | share of full step |",
            "|---|---:|---:|",
        ]
        for key, label in _ROWS:
            lines.append(f"| {label} | {1e3 * r[key]:.2f} | {100 * r[key] / r['full_step']:.0f}% |")
        lines += ["", f"Median of {r['repeats']} runs after a warm-up. Datasets/s of the full step: "
                      f"{r['batch'] / r['full_step']:.1f}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["gp-1000"])
    parser.add_argument("--bf16", action="store_true", help="bfloat16 activations")
    parser.add_argument("--attention", choices=ATTENTION_IMPLS, help="override the attention implementation")
    parser.add_argument("--batch-size", type=int, help="override the presets' global batch size")
    parser.add_argument("--split-sharing", choices=["dataset", "step"], help="override the presets' split sharing")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--trace", help="also write a jax.profiler trace of 5 full steps to this directory")
    parser.add_argument("--markdown", help="write the tables (with date, device, command) to this file")
    args = parser.parse_args(argv)
    results = []
    for preset in args.presets:
        overrides = {"batch_size": args.batch_size, "split_sharing": args.split_sharing}
        results.append(profile(preset, args.bf16, args.repeats, args.attention, args.trace, **overrides))
    text = markdown(results)
    report(text, args.markdown, "Train step profile")
    return 0


if __name__ == "__main__":
    sys.exit(main())
