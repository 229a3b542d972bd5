"""Training throughput: datasets/s of the full train step, next to the PyTorch reference and the
machine's GEMM rate, measured in the same invocation.

Each measurement jit-compiles the full data-parallel train step (on-device prior sampling,
forward, backward, optimizer update) on all visible devices, reports the compile time, warms it
up, then times ``--steps`` steps (median). FLOPs are counted analytically, two ways:

* **needed**: the work a step must do: the dense layers on every row (in the last layer only the
  key/value projection for the context rows), attention of every row to the context keys only
  (in the last layer, of the query rows), and the output head at the query rows only, in
  expectation over the split distribution (forward + backward = 3 x forward);
* **computed**: what the step's formulation does: with ``split_sharing="dataset"`` every row
  attends to every key and the head runs on every row; with ``"step"`` the keys stop at each
  bucket's largest context size and the last layer and the head start at its smallest.

``--reference`` also runs the PyTorch ``pfns`` workload of each preset (``benchmarks/pfns_reference.py``,
when ``torch`` and ``pfns`` are installed) and prints pfnjax's ratio to it. The GEMM rate of the
machine (f32 matmuls of 1024² and 2048²) is measured first, and every step is reported as a
fraction of it (needed FLOPs / step time / GEMM rate).

    python benchmarks/train_throughput.py --presets cpu-ref cpu-ref-1024 --split-sharing dataset step --reference
    python benchmarks/train_throughput.py --presets gp-200 gp-1000 --bf16 --markdown benchmarks/results/x.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from pfnjax.config import TrainConfig
from pfnjax.model import ATTENTION_IMPLS, model_class, model_names, resolve_attention_impl
from pfnjax.presets import preset_config
from pfnjax.priors.base import split_pmf
from pfnjax.priors.from_config import build_prior
from pfnjax.training import init_state, make_mesh, make_train_step, step_layouts

from _results import device_description, report  # a sibling: a script's own folder is on sys.path

# Dense peak TFLOP/s per device (bf16 / f32 matmul), from the vendors' data sheets.
PEAK_TFLOPS = {
    "H100": {"bfloat16": 989.0, "float32": 494.0},  # SXM; f32 matmuls run as TF32 by default
    "H200": {"bfloat16": 989.0, "float32": 494.0},
    "A100": {"bfloat16": 312.0, "float32": 156.0},
    "TPU v4": {"bfloat16": 275.0, "float32": 275.0},
    "TPU v5": {"bfloat16": 459.0, "float32": 459.0},
}
REFERENCE_SCRIPT = Path(__file__).with_name("pfns_reference.py")


def gemm_gflops(sizes: tuple[int, ...] = (1024, 2048), repeats: int = 10) -> dict[int, float]:
    """The f32 matmul rate of the default device at ``n x n`` sizes (GFLOP/s, median of ``repeats``)."""
    out = {}
    for n in sizes:
        a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
        f = jax.jit(lambda a: a @ a)
        jax.block_until_ready(f(a))
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(f(a))
            times.append(time.perf_counter() - t0)
        out[n] = 2 * n**3 / float(np.median(times)) / 1e9
    return out


def step_flops(cfg: TrainConfig, num_outputs: int) -> dict[str, float]:
    """Training FLOPs (forward + backward = 3 x forward) per dataset: ``needed`` and ``computed``
    (see the module docstring). The classic architecture's terms."""
    arch, data = cfg.model, cfg.data
    t, d, ff, f = data.seq_len, arch.d_model, arch.d_ff or 2 * arch.d_model, data.num_features
    pmf = split_pmf(data.split, t)
    sizes = np.arange(t)
    mean_context = float((pmf * sizes).sum())
    dense_row = 2 * d * (4 * d + 2 * ff)  # qkv, output projection, MLP: one row, one layer
    head_row = 2 * (d * ff + ff * num_outputs)
    encoders = 2 * t * (f + 1) * d
    queries_x_context = float((pmf * (t - sizes) * sizes).sum())  # E[(T - n) n]
    qkv_row = 2 * d * 3 * d
    needed = ((arch.num_layers - 1) * (t * dense_row + 4 * t * mean_context * d)
              + t * qkv_row + (t - mean_context) * (dense_row - qkv_row) + 4 * queries_x_context * d  # last layer
              + (t - mean_context) * head_row + encoders)
    layouts, table = step_layouts(cfg)
    computed = 0.0
    for i, layout in enumerate(layouts):
        weight = 1.0 if table is None else float(pmf[table == i].sum())
        q_rows = t - layout.query_start
        inner = (arch.num_layers - 1) * (t * dense_row + 4 * t * layout.context_max * d)
        last = 2 * t * d * 3 * d + q_rows * (dense_row - 2 * d * 3 * d) + 4 * q_rows * layout.context_max * d
        computed += weight * (inner + last + q_rows * head_row + encoders)
    return {"needed": 3.0 * needed, "computed": 3.0 * computed, "mean_context": mean_context}


def peak_for(device: jax.Device, dtype: str) -> float | None:
    kind = getattr(device, "device_kind", "")
    for name, peaks in PEAK_TFLOPS.items():
        if name.lower() in kind.lower():
            return peaks[dtype]
    return None


def measure(preset: str, steps: int, bf16: bool = False, batch_size: int | None = None,
            attention_impl: str | None = None, split_sharing: str = "dataset", model: str | None = None) -> dict:
    overrides = {"model": model} if model else {}
    fields = {f.name for f in dataclasses.fields(model_class(model or "classic"))}
    if "compute_dtype" in fields:
        overrides["compute_dtype"] = "bfloat16" if bf16 else "float32"
    if attention_impl and "attention_impl" in fields:
        overrides["attention_impl"] = attention_impl
    cfg = preset_config(preset, batch_size=batch_size, border_samples=20_000, split_sharing=split_sharing,
                        **overrides)
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
    data, arch = cfg.data, cfg.model
    datasets = data.batch_size * data.accum_steps
    if arch.name == "classic":
        flops = {k: v * datasets for k, v in step_flops(cfg, io.num_outputs).items() if k != "mean_context"}
        q_like = jax.ShapeDtypeStruct((data.batch_size, data.seq_len, arch.num_heads,
                                       arch.d_model // arch.num_heads), arch.dtype)
        attention = resolve_attention_impl(arch.attention_impl, q_like, q_like)
    else:  # no analytic count for this architecture: XLA's count of the whole step stands for both
        flops = {"needed": xla_flops, "computed": xla_flops}
        attention = getattr(arch, "attention_impl", "n/a")
    dtype = getattr(arch, "compute_dtype", "float32")
    peak = peak_for(jax.devices()[0], dtype)
    return {
        "preset": preset, "model": arch.name, "split_sharing": split_sharing, "buckets": len(step_layouts(cfg)[0]),
        "dtype": dtype, "batch": datasets, "T": data.seq_len, "devices": jax.device_count(),
        "step_ms": 1e3 * step_s, "datasets_per_s": datasets / step_s, "compile_s": compile_s,
        "needed_gflop": flops["needed"] / 1e9, "computed_gflop": flops["computed"] / 1e9,
        "needed_gflops_rate": flops["needed"] / step_s / 1e9,
        "xla_gflop": xla_flops / 1e9,
        "mfu": flops["needed"] / step_s / 1e12 / (peak * jax.device_count()) if peak else None,
        "attention": attention,
        "workload": {"features": data.num_features, "emsize": getattr(arch, "d_model", 0),
                     "nlayers": getattr(arch, "num_layers", 0), "nhead": getattr(arch, "num_heads", 0),
                     "batch": data.batch_size, "seq": data.seq_len},
    }


def run_reference(workload: dict, steps: int) -> dict | None:
    """The PyTorch ``pfns`` workload of the same shape (``pfns_reference.py``), or None without it."""
    try:
        import pfns  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        print("reference skipped: torch and pfns are not installed (pip install torch pfns==0.4.2)", flush=True)
        return None
    device = "cpu" if jax.default_backend() == "cpu" else "cuda"
    args = [f"--{k}={v}" for k, v in workload.items()] + [f"--steps={steps}", f"--device={device}"]
    out = subprocess.run([sys.executable, str(REFERENCE_SCRIPT), *args], capture_output=True, text=True)
    if out.returncode != 0:
        print(f"reference failed:\n{out.stderr[-2000:]}", flush=True)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def markdown(rows: list[dict], gemm: dict[int, float], references: dict[str, dict]) -> str:
    rate = max(gemm.values())
    lines = [f"- GEMM rate (f32, jax, this run): {', '.join(f'{n}²: {g:.1f} GFLOP/s' for n, g in gemm.items())}; "
             f"the fractions below use {rate:.1f}.",
             "- needed / computed GFLOP per step: see the module docstring; 'of GEMM' = needed FLOP/s ÷ GEMM rate.",
             ""]
    if references:
        lines.append("| workload | PyTorch pfns datasets/s (steady state) | with start-up | step ms |")
        lines.append("|---|---:|---:|---:|")
        for name, r in references.items():
            lines.append(f"| {name} | {r['datasets_per_s']:.1f} | {r['datasets_per_s_with_startup']:.1f} | "
                         f"{r['step_ms']:.1f} |")
        lines.append("")
    lines += ["| preset | model | split sharing | buckets | dtype | attention | batch | T | step ms | datasets/s | "
              "compile s | needed GFLOP | computed GFLOP | needed GFLOP/s | of GEMM | MFU | vs reference |",
              "|---|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ref = references.get(r["preset"])
        ratio = f"{r['datasets_per_s'] / ref['datasets_per_s']:.2f}x" if ref and r["model"] == "classic" else "n/a"
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        lines.append(
            f"| {r['preset']} | {r['model']} | {r['split_sharing']} | {r['buckets']} | {r['dtype']} | {r['attention']} | {r['batch']} | "
            f"{r['T']} | {r['step_ms']:.1f} | {r['datasets_per_s']:.1f} | {r['compile_s']:.1f} | "
            f"{r['needed_gflop']:.2f} | {r['computed_gflop']:.2f} | {r['needed_gflops_rate']:.1f} | "
            f"{100 * r['needed_gflops_rate'] / rate:.0f}% | {mfu} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["cpu-ref", "cpu-ref-1024"])
    parser.add_argument("--steps", type=int, default=20, help="timed steps (median reported)")
    parser.add_argument("--bf16", action="store_true", help="also measure bfloat16 compute")
    parser.add_argument("--bf16-only", action="store_true", help="measure bfloat16 compute only")
    parser.add_argument("--models", nargs="+", default=["classic"],
                        help="architectures to measure (registered names, or 'all')")
    parser.add_argument("--batch-size", type=int, help="override the presets' global batch size")
    parser.add_argument("--attention", choices=ATTENTION_IMPLS, help="attention implementation (default auto)")
    parser.add_argument("--split-sharing", nargs="+", default=["step"], choices=["dataset", "step"],
                        help="context sizes drawn per dataset, or one per step (each is measured)")
    parser.add_argument("--reference", action="store_true",
                        help="also run the PyTorch pfns workload of each preset here (needs torch and pfns)")
    parser.add_argument("--reference-steps", type=int, default=60, help="timed steps of the reference")
    parser.add_argument("--markdown", help="write the table to this markdown file")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    gemm = gemm_gflops()
    print("GEMM GFLOP/s:", {n: round(g, 1) for n, g in gemm.items()}, flush=True)
    rows, references = [], {}
    models = model_names() if args.models == ["all"] else args.models
    dtypes = [True] if args.bf16_only else ([False, True] if args.bf16 else [False])
    for preset in args.presets:
        for model in models:
            for sharing in args.split_sharing:
                for bf16 in dtypes:
                    row = measure(preset, args.steps, bf16, args.batch_size, args.attention, sharing, model)
                    rows.append(row)
                    print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        if args.reference:
            classic = [r for r in rows if r["preset"] == preset and r["model"] == "classic"]
            ref = run_reference(classic[-1]["workload"], args.reference_steps) if classic else None
            if ref is not None:
                references[preset] = ref
                print("reference", preset, ref, flush=True)
    body = markdown(rows, gemm, references)
    report(body, args.markdown, "Training throughput", time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
