"""bf16 vs f32 compute on a fixed short run: same seed, same data, same schedule.

Reports the training-loss curves' difference and the held-out NLL gap to the exact GP for
both, so the effect of bfloat16 activations (params and optimizer state stay float32) is
measured rather than assumed.

    python benchmarks/mixed_precision.py --steps 400 --markdown benchmarks/results/mixed_precision_cpu.md
    python benchmarks/mixed_precision.py --preset gp-200 --steps 500 --markdown benchmarks/results/mixed_precision_h100.md
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time

import jax
import numpy as np

from pfnjax.evaluators import evaluate_against_oracle, held_out_source
from pfnjax.predict import PFN
from pfnjax.presets import preset_config
from pfnjax.training import train


def run(dtype: str, steps: int, preset: str) -> dict:
    cfg = preset_config(preset, steps=steps, compute_dtype=dtype, log_every=25)
    t0 = time.perf_counter()
    result = train(cfg, None, progress=False)
    wall = time.perf_counter() - t0
    pfn = PFN.from_train_result(result)
    prior, key, num_features_sampler = held_out_source(pfn)
    rows = evaluate_against_oracle(pfn, prior, key, num_datasets=100,
                                   num_features_sampler=num_features_sampler)
    return {
        "dtype": dtype,
        "losses": np.array([h["loss"] for h in result.history]),
        "final_loss": float(np.mean([h["loss"] for h in result.history[-4:]])),
        "gap": float(np.mean([r.gap for r in rows])),
        "wall_s": wall,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--tolerance", type=float, default=0.01,
                        help="largest acceptable |bf16 - f32| logged-loss difference (nats)")
    parser.add_argument("--markdown")
    args = parser.parse_args(argv)
    f32, bf16 = run("float32", args.steps, args.preset), run("bfloat16", args.steps, args.preset)
    diff = bf16["losses"] - f32["losses"]
    lines = [
        f"# bf16 vs f32 compute ({datetime.date.today().isoformat()})",
        "",
        f"- device: {jax.devices()[0].platform} x{jax.device_count()}, jax {jax.__version__}",
        f"- command: `python {' '.join(sys.argv)}`",
        f"- preset `{args.preset}`, {args.steps} steps, same seed and data; loss logged every 25 steps.",
        "",
        "| compute | final train loss (mean of last 4 logs) | mean NLL gap to exact GP (100 datasets) | wall s |",
        "|---|---:|---:|---:|",
        *(f"| {r['dtype']} | {r['final_loss']:.4f} | {r['gap']:.4f} | {r['wall_s']:.0f} |" for r in (f32, bf16)),
        "",
        f"Logged-loss difference bf16 - f32: mean {diff.mean():+.4f}, mean |diff| {np.abs(diff).mean():.4f}, "
        f"max |diff| {np.abs(diff).max():.4f} nats: "
        f"{'within' if np.abs(diff).max() <= args.tolerance else 'OUTSIDE'} the {args.tolerance} nats tolerance.",
        "On a CPU bfloat16 is emulated, so wall times here say nothing about GPU speed.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
