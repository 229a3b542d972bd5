"""Training throughput: datasets/s, model TFLOP/s and MFU for the training presets.

Each measurement jit-compiles the full data-parallel train step (on-device prior sampling,
forward, backward, optimizer update) on all visible devices, warms it up, then times
``--steps`` steps. Model FLOPs are counted analytically (dense matmuls and attention over
the full T x T score matrix, x3 for forward + backward); XLA's own count of the whole step
(sampling included) is printed beside them.

    python benchmarks/train_throughput.py --presets gp-200 gp-1000 --steps 20
    python benchmarks/train_throughput.py --presets gp-200 --bf16 --markdown benchmarks/results/x.md
    python benchmarks/train_throughput.py --bf16 --reference-json benchmarks/results/pfns_reference_h100.json

``--reference-json`` takes the PyTorch reference's datasets/s measured in the same session
(``benchmarks/gpu_check.sh`` writes it), so the ratios compare runs on one machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time

import jax
import numpy as np

from pfnjax.model import ATTENTION_IMPLS, resolve_attention_impl
from pfnjax.config import TrainConfig
from pfnjax.presets import preset_config
from pfnjax.priors.from_config import build_prior
from pfnjax.training import init_state, make_mesh, make_train_step

# Dense peak TFLOP/s per device (bf16 / f32 matmul), from the vendors' data sheets.
PEAK_TFLOPS = {
    "H100": {"bfloat16": 989.0, "float32": 494.0},  # SXM; f32 matmuls run as TF32 by default
    "H200": {"bfloat16": 989.0, "float32": 494.0},
    "A100": {"bfloat16": 312.0, "float32": 156.0},
    "TPU v4": {"bfloat16": 275.0, "float32": 275.0},
    "TPU v5": {"bfloat16": 459.0, "float32": 459.0},
}

# Reference PyTorch `pfns` 0.4.2 datasets/s on one H100 from an earlier session, same workloads;
# used only when no same-session measurement is given (--reference-json).
REFERENCE_H100 = {"gp-200": 928.0, "gp-1000": 40.1}


def model_flops_per_dataset(cfg: TrainConfig, num_outputs: int) -> float:
    """Training FLOPs (forward + backward = 3 x forward) of the transformer for one dataset."""
    arch = cfg.model
    t, d, ff = cfg.data.seq_len, arch.d_model, arch.d_ff or 2 * arch.d_model
    per_layer = 2 * t * d * 3 * d + 2 * 2 * t * t * d + 2 * t * d * d + 2 * 2 * t * d * ff
    encoders = 2 * t * (cfg.data.num_features + 1) * d
    head = 2 * t * (d * ff + ff * num_outputs)
    return 3.0 * (arch.num_layers * per_layer + encoders + head)


def peak_for(device: jax.Device, dtype: str) -> float | None:
    kind = getattr(device, "device_kind", "")
    for name, peaks in PEAK_TFLOPS.items():
        if name.lower() in kind.lower():
            return peaks[dtype]
    return None


def measure(preset: str, steps: int, bf16: bool, batch_size: int | None, attention_impl: str | None = None,
            reference: dict[str, float] | None = None) -> dict:
    cfg = preset_config(preset, compute_dtype="bfloat16" if bf16 else "float32", batch_size=batch_size,
                        border_samples=20_000, attention_impl=attention_impl)
    prior = build_prior(cfg.prior)
    graphdef, state, io, head = init_state(cfg, prior)
    mesh = make_mesh()
    state = jax.device_put(state, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    step = make_train_step(cfg, prior, graphdef, mesh, head)
    t0 = time.perf_counter()
    compiled = step.lower(state).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    xla_flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
    for _ in range(3):  # warm-up
        state, metrics = compiled(state)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, metrics = compiled(state)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    step_s = float(np.median(times))
    # the attention operands as the jitted step sees them, to name what "auto" ran: a global
    # micro-batch is batch_size datasets (the step scans accum_steps of them)
    data, arch = cfg.data, cfg.model
    q_like = jax.ShapeDtypeStruct((data.batch_size, data.seq_len, arch.num_heads,
                                   arch.d_model // arch.num_heads), arch.dtype)
    datasets = data.batch_size * data.accum_steps
    flops = model_flops_per_dataset(cfg, io.num_outputs) * datasets
    tflops = flops / step_s / 1e12
    peak = peak_for(jax.devices()[0], arch.compute_dtype)
    n_dev = jax.device_count()
    return {
        "preset": preset,
        "dtype": arch.compute_dtype,
        "batch": datasets,
        "T": data.seq_len,
        "devices": n_dev,
        "step_ms": 1e3 * step_s,
        "datasets_per_s": datasets / step_s,
        "model_tflops": tflops,
        "xla_tflops": xla_flops / step_s / 1e12,
        "mfu": tflops / (peak * n_dev) if peak else None,
        "compile_s": compile_s,
        "reference": (REFERENCE_H100 if reference is None else reference).get(preset),
        "attention": resolve_attention_impl(arch.attention_impl, q_like, q_like),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["gp-200", "gp-1000"])
    parser.add_argument("--steps", type=int, default=20, help="timed steps (median reported)")
    parser.add_argument("--bf16", action="store_true", help="also measure bfloat16 compute")
    parser.add_argument("--batch-size", type=int, help="override the presets' global batch size")
    parser.add_argument("--attention", choices=ATTENTION_IMPLS, help="attention implementation (default auto)")
    parser.add_argument("--reference-json", help="reference datasets/s per preset measured in this session")
    parser.add_argument("--markdown", help="write the table to this markdown file")
    args = parser.parse_args(argv)

    reference = None
    if args.reference_json:
        with open(args.reference_json) as f:
            reference = {k: float(v) for k, v in json.load(f).items()}
    rows = []
    for preset in args.presets:
        for bf16 in ([False, True] if args.bf16 else [False]):
            row = measure(preset, args.steps, bf16, args.batch_size, args.attention, reference)
            rows.append(row)
            print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)

    dev = jax.devices()[0]
    header = [
        f"# Training throughput ({datetime.date.today().isoformat()})",
        "",
        f"- device: {jax.device_count()} x {getattr(dev, 'device_kind', dev.platform)} ({dev.platform}); "
        f"host: {platform.processor() or platform.machine()}, jax {jax.__version__}",
        f"- command: `python {' '.join(sys.argv)}`",
        "- datasets/s = global batch / median step time; model TFLOP/s counts the transformer's matmuls "
        "(3x forward); XLA TFLOP/s is XLA's count for the whole step, prior sampling included.",
        ("- reference = PyTorch `pfns` 0.4.2 measured in this session on this machine "
         f"(`{args.reference_json}`)." if reference is not None else
         "- reference = PyTorch `pfns` 0.4.2 on one H100 in an earlier session; the ratio only means something "
         "on an H100."),
        "",
        "| preset | dtype | attention | batch | T | devices | step ms | datasets/s | model TFLOP/s | XLA TFLOP/s | "
        "MFU | reference datasets/s | ratio |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a (no peak for this device)"
        ref = f"{r['reference']:.1f}" if r["reference"] else "n/a"
        ratio = f"{r['datasets_per_s'] / r['reference']:.2f}x" if r["reference"] else "n/a"
        header.append(
            f"| {r['preset']} | {r['dtype']} | {r['attention']} | {r['batch']} | {r['T']} | {r['devices']} | {r['step_ms']:.1f} | "
            f"{r['datasets_per_s']:.1f} | {r['model_tflops']:.3f} | {r['xla_tflops']:.3f} | {mfu} | {ref} | {ratio} |"
        )
    table = "\n".join(header)
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
