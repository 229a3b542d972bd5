"""Bayesian optimisation benchmark: random search vs GP-EI vs PFN-EI on five test functions.

    python experiments/bayesopt/run.py                 # 10 seeds x 50 evaluations, writes results/
    python experiments/bayesopt/run.py --smoke         # seconds: 2 seeds x 8 evaluations, 2 problems

Every method starts from the same ``--initial`` uniform random points per seed (a paired
comparison), then makes one suggestion per evaluation. Simple regret is ``min f so far - f_min``.
Seconds per suggestion are the median over all suggestions of a method (compilation, which
happens once per shape, is excluded by the median).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from functions import PROBLEMS, Problem  # noqa: E402

import gp_ei  # noqa: E402
import pfnjax  # noqa: E402
from pfnjax import bo  # noqa: E402

METHODS = ("random", "gp_ei", "pfn_ei")


def run_one(problem: Problem, method: str, seed: int, evals: int, initial: int, pfn) -> dict:
    """One optimisation run; returns the values in evaluation order and the suggestion times."""
    key = jax.random.key(seed)
    k_init, k_loop = jax.random.split(key)
    X = bo.from_unit(np.asarray(jax.random.uniform(k_init, (initial, problem.dim)), np.float64), problem.bounds)
    y = np.array([problem.f(x) for x in X])
    seconds = []
    for i in range(evals - initial):
        k = jax.random.fold_in(k_loop, i)
        start = time.perf_counter()
        if method == "random":
            x_next = bo.from_unit(np.asarray(jax.random.uniform(k, (problem.dim,)), np.float64), problem.bounds)
        elif method == "gp_ei":
            x_next = gp_ei.suggest(X, y, problem.bounds, k)
        else:
            x_next = bo.suggest(pfn, X, y, problem.bounds, k)[0]
        seconds.append(time.perf_counter() - start)
        X, y = np.concatenate([X, x_next[None]]), np.append(y, problem.f(x_next))
    return {"y": y.tolist(), "seconds": seconds}


def summarize(problems: list[Problem], results: dict) -> str:
    lines = ["| function | method | median final regret | IQR | median s / suggestion |", "|---|---|---:|---:|---:|"]
    for p in problems:
        for method, runs in results[p.name].items():
            final = np.array([p.regret(np.min(r["y"])) for r in runs])
            secs = np.concatenate([r["seconds"] for r in runs]) if runs[0]["seconds"] else np.zeros(1)
            q1, q3 = np.percentile(final, [25, 75])
            lines.append(f"| {p.name} | {method} | {np.median(final):.4g} | {q1:.3g}–{q3:.3g} | {np.median(secs):.4f} |")
    return "\n".join(lines)


def plot(problems: list[Problem], results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(problems), figsize=(4 * len(problems), 3.4), squeeze=False)
    for ax, p in zip(axes[0], problems):
        for method, runs in results[p.name].items():
            curves = np.log10(np.maximum(np.stack([p.regret(np.minimum.accumulate(r["y"])) for r in runs]), 1e-8))
            n = np.arange(1, curves.shape[1] + 1)
            mean = curves.mean(0)
            se = curves.std(0, ddof=1) / np.sqrt(len(curves)) if len(curves) > 1 else np.zeros_like(mean)
            ax.plot(n, mean, label=method)
            ax.fill_between(n, mean - 1.96 * se, mean + 1.96 * se, alpha=0.2)
        ax.set_title(p.name)
        ax.set_xlabel("evaluations")
    axes[0][0].set_ylabel("log10 simple regret (mean ± 95% CI)")
    axes[0][-1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bo-hebo", help="PFN for pfn_ei: shipped name or run directory")
    parser.add_argument("--problems", help=f"comma-separated (default: all; --smoke: branin,hartmann3): {list(PROBLEMS)}")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--evals", type=int, default=50)
    parser.add_argument("--initial", type=int, default=5)
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--smoke", action="store_true", help="2 seeds, 8 evaluations (for CI)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seeds, args.evals = 2, 8
        args.problems = args.problems or "branin,hartmann3"
    args.problems = args.problems or ",".join(PROBLEMS)
    names, methods = args.problems.split(","), args.methods.split(",")
    unknown = [n for n in names if n not in PROBLEMS] + [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown problems/methods {unknown}; choose from {list(PROBLEMS)} and {list(METHODS)}")
    if args.evals <= args.initial:
        parser.error("--evals must exceed --initial")
    pfn = pfnjax.load(args.model) if "pfn_ei" in methods else None
    problems = [PROBLEMS[n] for n in names]
    results: dict = {}
    for p in problems:
        results[p.name] = {}
        for method in methods:
            start = time.perf_counter()
            results[p.name][method] = [run_one(p, method, seed, args.evals, args.initial, pfn) for seed in range(args.seeds)]
            print(f"{p.name:10s} {method:7s} {time.perf_counter() - start:7.1f} s", flush=True)
    table = summarize(problems, results)
    header = (f"{args.seeds} seeds x {args.evals} evaluations ({args.initial} random initial points), PFN model "
              f"{args.model!r}, device: {jax.devices()[0].device_kind}\n\n")
    print(header + table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / ("results_smoke.md" if args.smoke else "results.md")).write_text(header + table + "\n")
    (out / ("runs_smoke.json" if args.smoke else "runs.json")).write_text(json.dumps(results))
    plot(problems, results, out / ("regret_smoke.png" if args.smoke else "regret.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
