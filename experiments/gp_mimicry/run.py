"""GP mimicry (the PFN paper's Figure 3 setting): a PFN trained on a fixed 5-D RBF GP against the
exact GP posterior predictive.

    python experiments/gp_mimicry/run.py                # shipped gp-mimicry-cpu, 1,000 held-out datasets
    python experiments/gp_mimicry/run.py --scale gpu    # trains gp-mimicry-gpu (T=1000) first
    python experiments/gp_mimicry/run.py --smoke        # seconds, for CI

For every context size the same held-out datasets and query rows are used (paired gaps). Besides
the PFN and the exact GP, the table gives the *bucket floor*: the NLL of the exact posterior
predictive discretised onto the model's own bucket borders, i.e. the best NLL a bar-distribution
head with those borders can reach. ``gap - (floor - exact)`` is what training and capacity leave.
The held-out NLL logged during training (``metrics.jsonl``) shows how the gap fell with steps.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import common  # noqa: E402
from pfnjax.distributions.bar_distribution import BarDistribution  # noqa: E402
from pfnjax.evaluators import HeldOutEvaluator  # noqa: E402
from pfnjax.priors.base import prior_from_spec  # noqa: E402
from pfnjax.priors.gp import GPPrior, exact_posterior  # noqa: E402

PAPER_CONTEXT_SIZES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def context_sizes(seq_len: int) -> tuple[int, ...]:
    """The paper's sizes up to the trained context length ``seq_len - 1`` (which is added)."""
    sizes = [n for n in PAPER_CONTEXT_SIZES if n < seq_len]
    return tuple(sizes if sizes[-1] == seq_len - 1 else sizes + [seq_len - 1])


def bucket_floor_nll(prior: GPPrior, borders: jax.Array, x_c, y_c, x_q, y_q) -> np.ndarray:
    """Per-dataset NLL of the exact predictive's bucket masses as a bar distribution on ``borders``."""

    def one(xc, yc, xq, yq):
        mean, var = exact_posterior(xc, yc, xq, prior.hyper(), prior.kernel)
        cdf = jax.scipy.stats.norm.cdf((borders[None, :] - mean[:, None]) / jnp.sqrt(var)[:, None])
        mass = jnp.maximum(jnp.diff(cdf, axis=-1), 1e-30)
        return -BarDistribution(borders, jnp.log(mass)).log_prob(yq).mean()

    return np.asarray(jax.jit(jax.vmap(one))(x_c, y_c, x_q, y_q))


def slice_predictions(pfn, prior: GPPrior, data, sizes: tuple[int, ...], points: int = 101) -> dict:
    """PFN and exact predictive along ``x_1 in [0, 1]`` (other inputs at the first query's values)
    for the first held-out dataset, at each context size in ``sizes``."""
    x, y = data.x[0], data.y[0]
    line = np.repeat(x[-1:], points, axis=0)
    line[:, 0] = np.linspace(0, 1, points)
    out = {"t": line[:, 0].tolist(), "sizes": list(sizes)}
    for n in sizes:
        dist = pfn.predict(x[:n], y[:n], line)
        mean, var = exact_posterior(x[:n], y[:n], line, prior.hyper(), prior.kernel)
        std = np.sqrt(np.asarray(var))
        q = np.asarray(dist.quantile(jnp.array([0.05, 0.95])))
        out[str(n)] = {"pfn_mean": np.asarray(dist.mean()).tolist(), "pfn_q05": q[..., 0].tolist(),
                       "pfn_q95": q[..., 1].tolist(), "gp_mean": np.asarray(mean).tolist(),
                       "gp_q05": (np.asarray(mean) - 1.645 * std).tolist(),
                       "gp_q95": (np.asarray(mean) + 1.645 * std).tolist(),
                       "ctx_x1": x[:n, 0].tolist(), "ctx_y": y[:n].tolist()}
    return out


def training_curve(run_dir: Path) -> list[dict]:
    """The held-out evaluations logged during training (``metrics.jsonl``), if any."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{"step": r["step"], **r["eval"]} for r in records if "eval" in r]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(parser, HERE / "results")
    parser.add_argument("--model", help="a shipped model name or run directory instead of the scale's model")
    parser.add_argument("--datasets", type=int, default=1000, help="held-out datasets (--smoke: 32)")
    parser.add_argument("--queries", type=int, default=20, help="query rows per dataset")
    args = parser.parse_args(argv)
    common.check_scale(parser, args)
    if args.smoke:
        args.datasets = 16
    print(f"seed {args.seed}, scale {args.scale}{' (smoke)' if args.smoke else ''}, {common.device_name()}", flush=True)
    pfn, run_dir = common.get_pfn(f"gp-mimicry-{args.scale}", args, args.model)
    prior = prior_from_spec(pfn.prior_spec)
    if not isinstance(prior, GPPrior):
        raise SystemExit(f"gp_mimicry needs a PFN trained on the 'gp' prior, got {type(prior).__name__}")
    sizes = context_sizes(pfn.train_config.data.seq_len)
    if args.smoke:
        sizes = (1, 10, sizes[-1])
    key = jax.random.key(args.seed)
    (evaluator, rows), seconds = common.timed(lambda: _evaluate(pfn, prior, key, sizes, args))
    data = evaluator.data
    floors = {}
    for n in sizes:
        (x_c, y_c), (x_q, y_q) = data.context(slice(None), n, data.x.shape[-1]), data.queries(slice(None), data.x.shape[-1])
        floors[n] = bucket_floor_nll(prior, pfn.borders, x_c, y_c, x_q, y_q) - evaluator.exact_nll(n)
    curve = training_curve(run_dir)
    slice_sizes = (10,) if args.smoke else tuple(n for n in (2, 10, 50) if n < sizes[-1]) or sizes[:1]
    slices = slice_predictions(pfn, prior, data, slice_sizes)
    cfg = pfn.train_config
    header = (f"# GP mimicry: {args.datasets} held-out datasets x {args.queries} queries, seed {args.seed}\n\n"
              f"Model: preset `gp-mimicry-{args.scale}`{' (smoke)' if args.smoke else ''}: d={cfg.model.d_model}, "
              f"{cfg.model.num_layers} layers, {pfn.head.num_outputs} buckets, T={cfg.data.seq_len}, "
              f"{cfg.optim.steps} steps x {cfg.data.batch_size} datasets, split {cfg.data.split}. "
              f"Prior: {prior}. Device: {common.device_name()}. Evaluation {seconds:.0f} s.\n\n")
    lines = ["| context | PFN NLL | exact GP NLL | gap (PFN − exact) | bucket floor (floor − exact) |",
             "|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.context_size} | {r.pfn_nll:.4f} ± {r.pfn_ci95:.4f} | {r.exact_nll:.4f} | "
                     f"{r.gap:+.4f} ± {r.gap_ci95:.4f} | {floors[r.context_size].mean():+.4f} |")
    mean_gap = float(np.mean([r.gap for r in rows]))
    lines.append(f"\nMean gap over the context sizes {list(sizes)}: **{mean_gap:.4f} nats**; "
                 f"mean bucket floor {np.mean([floors[n].mean() for n in sizes]):.4f} nats.")
    if curve:
        sizes_logged = sorted({k.split("@")[1] for r in curve for k in r if k.startswith("nll@")}, key=int)
        lines += ["", "Held-out gap during training (metrics.jsonl, its own held-out datasets):", "",
                  "| step | " + " | ".join(f"NLL @ {n}" for n in sizes_logged) + " | mean gap |",
                  "|---:|" + "---:|" * (len(sizes_logged) + 1)]
        lines += [f"| {r['step']} | " + " | ".join(f"{r[f'nll@{n}']:.3f}" for n in sizes_logged)
                  + f" | {r.get('gap', float('nan')):.4f} |" for r in curve]
    table = header + "\n".join(lines)
    print(table)
    records = {"seed": args.seed, "scale": args.scale, "smoke": args.smoke, "device": common.device_name(),
               "rows": [r.__dict__ for r in rows], "bucket_floor": {n: float(floors[n].mean()) for n in sizes},
               "mean_gap": mean_gap, "training_curve": curve, "slices": slices, "eval_seconds": seconds}
    common.write_results(Path(args.out), args.smoke, table, records,
                         {"nll": lambda p: plot_nll(rows, floors, p), "posterior_1d": lambda p: plot_slices(slices, p)})
    return 0


def _evaluate(pfn, prior, key, sizes, args):
    evaluator = HeldOutEvaluator.for_pfn(pfn, prior, key, context_sizes=sizes, num_datasets=args.datasets,
                                         num_queries=args.queries)
    return evaluator, evaluator.rows(pfn.params)


def plot_nll(rows, floors, path: Path) -> None:
    plt = common.pyplot()
    n = np.array([r.context_size for r in rows])
    fig, (ax, ax_gap) = plt.subplots(1, 2, figsize=(10, 3.8))
    pfn_nll, ci = np.array([r.pfn_nll for r in rows]), np.array([r.pfn_ci95 for r in rows])
    exact = np.array([r.exact_nll for r in rows])
    ax.plot(n, pfn_nll, "o-", label="PFN")
    ax.fill_between(n, pfn_nll - ci, pfn_nll + ci, alpha=0.25)
    ax.plot(n, exact, "s--", label="exact GP")
    ax.plot(n, exact + np.array([floors[k].mean() for k in n]), ":", label="bucket floor")
    ax.set(xscale="log", xlabel="context size", ylabel="NLL (nats, mean ± 95% CI)", title="held-out NLL")
    ax.legend()
    gap, gap_ci = np.array([r.gap for r in rows]), np.array([r.gap_ci95 for r in rows])
    ax_gap.errorbar(n, gap, yerr=gap_ci, fmt="o-", capsize=3, label="PFN − exact")
    ax_gap.plot(n, [floors[k].mean() for k in n], ":", label="bucket floor − exact")
    ax_gap.axhline(0.02, color="gray", lw=0.8, ls="--", label="0.02 nats")
    ax_gap.set(xscale="log", xlabel="context size", ylabel="nats", title="gap to the exact GP")
    ax_gap.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_slices(slices: dict, path: Path) -> None:
    plt = common.pyplot()
    sizes = slices["sizes"]
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.2 * len(sizes), 3.4), squeeze=False)
    t = np.array(slices["t"])
    for ax, n in zip(axes[0], sizes):
        s = slices[str(n)]
        ax.plot(t, s["gp_mean"], "k-", label="exact GP mean")
        ax.fill_between(t, s["gp_q05"], s["gp_q95"], color="k", alpha=0.12, label="exact GP 90%")
        ax.plot(t, s["pfn_mean"], "C1--", label="PFN mean")
        ax.plot(t, s["pfn_q05"], "C1:", lw=1)
        ax.plot(t, s["pfn_q95"], "C1:", lw=1, label="PFN 90%")
        ax.set(title=f"{n} context points (5-D)", xlabel="x₁ (x₂..x₅ fixed)")
    axes[0][0].set_ylabel("y")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
