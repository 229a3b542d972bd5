"""GP with hyperpriors: a PFN trained on the ``gp_hyper`` prior (Matern-5/2 ARD, Gamma hyperpriors)
against MLE-II and NUTS over the hyperparameters, on held-out datasets of the same prior.

    python experiments/gp_hyperprior/run.py                # shipped gp-hyper-cpu
    python experiments/gp_hyperprior/run.py --scale gpu    # trains gp-hyper-gpu first
    python experiments/gp_hyperprior/run.py --smoke        # seconds, for CI

Every method sees the same datasets and query rows (paired differences). NUTS runs on the first
``--nuts-datasets`` of them (it costs seconds per dataset). Seconds per dataset: the PFN
predicts all datasets of a context size in one batched call (timed after compiling); MLE-II and
NUTS run one dataset per call, and their median time per dataset is reported (the median
excludes the first call's compilation).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import gp_baselines as baselines  # noqa: E402
import common  # noqa: E402
from pfnjax.evaluators import ci95, held_out_datasets  # noqa: E402
from pfnjax.priors.base import prior_from_spec  # noqa: E402
from pfnjax.priors.gp import GPHyperPrior  # noqa: E402


def pfn_nll(pfn, x_c, y_c, x_q, y_q) -> tuple[np.ndarray, float]:
    """Per-dataset mean query NLL of the PFN (one batched call) and seconds per dataset."""
    run = lambda: pfn.head.full_distribution(pfn.logits_from_cache(pfn.encode(x_c, y_c), x_q)).log_prob(jnp.asarray(y_q))
    run()  # compile
    log_prob, seconds = common.timed(run)
    return -np.asarray(log_prob).mean(axis=1), seconds / len(x_c)


def per_dataset(fn, key, count: int, *arrays) -> tuple[np.ndarray, float]:
    """``fn(key_i, *arrays[i])`` for the first ``count`` datasets; values and median seconds."""
    values, seconds = [], []
    for i in range(count):
        start = time.perf_counter()
        values.append(float(jax.block_until_ready(fn(jax.random.fold_in(key, i), *(a[i] for a in arrays)))))
        seconds.append(time.perf_counter() - start)
    return np.array(values), float(np.median(seconds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(parser, HERE / "results")
    parser.add_argument("--model", help="a shipped model name or run directory instead of the scale's model")
    parser.add_argument("--context-sizes", default="5,10,20,50")
    parser.add_argument("--datasets", type=int, default=100, help="held-out datasets (PFN and MLE-II)")
    parser.add_argument("--nuts-datasets", type=int, default=25, help="the first this many also get NUTS")
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--nuts-warmup", type=int, default=300)
    parser.add_argument("--nuts-samples", type=int, default=100)
    parser.add_argument("--mle-restarts", type=int, default=8)
    parser.add_argument("--mle-steps", type=int, default=50, help="L-BFGS iterations per restart")
    args = parser.parse_args(argv)
    common.check_scale(parser, args)
    if args.smoke:
        args.context_sizes, args.datasets, args.nuts_datasets = "10", 4, 2
        args.nuts_warmup, args.nuts_samples, args.mle_restarts, args.mle_steps = 30, 20, 2, 10
    numpyro = common.require("numpyro")
    sizes = tuple(int(n) for n in args.context_sizes.split(","))
    args.nuts_datasets = min(args.nuts_datasets, args.datasets)
    print(f"seed {args.seed}, scale {args.scale}{' (smoke)' if args.smoke else ''}, {common.device_name()}, "
          f"numpyro {numpyro.__version__}", flush=True)
    pfn, _ = common.get_pfn(f"gp-hyper-{args.scale}", args, args.model)
    prior = prior_from_spec(pfn.prior_spec)
    if not isinstance(prior, GPHyperPrior):
        raise SystemExit(f"gp_hyperprior needs a PFN trained on the 'gp_hyper' prior, got {type(prior).__name__}")
    key = jax.random.key(args.seed)
    k_data, k_mle, k_nuts = jax.random.split(key, 3)
    data = held_out_datasets(prior, k_data, sizes, args.datasets, args.queries, pfn.max_features)
    nuts = baselines.NUTSBaseline(prior, args.nuts_warmup, args.nuts_samples)
    mle = lambda k, *a: baselines.mle2_nll(k, *a, kernel=prior.kernel, restarts=args.mle_restarts, steps=args.mle_steps)
    results = []
    for n in sizes:
        x_c, y_c = data.context(slice(None), n, data.x.shape[-1])
        x_q, y_q = data.queries(slice(None), data.x.shape[-1])
        nll_pfn, s_pfn = pfn_nll(pfn, x_c, y_c, x_q, y_q)
        nll_mle, s_mle = per_dataset(mle, k_mle, args.datasets, x_c, y_c, x_q, y_q)
        nll_nuts, s_nuts = per_dataset(nuts.nll, k_nuts, args.nuts_datasets, x_c, y_c, x_q, y_q)
        results.append({"context": n, "pfn": nll_pfn.tolist(), "mle2": nll_mle.tolist(), "nuts": nll_nuts.tolist(),
                        "seconds": {"pfn": s_pfn, "mle2": s_mle, "nuts": s_nuts}})
        print(f"context {n}: PFN {nll_pfn.mean():.3f} ({s_pfn * 1e3:.2f} ms), MLE-II {nll_mle.mean():.3f} "
              f"({s_mle:.3f} s), NUTS {nll_nuts.mean():.3f} ({s_nuts:.2f} s)", flush=True)
    table = format_table(results, pfn, prior, args)
    print(table)
    records = {"seed": args.seed, "scale": args.scale, "smoke": args.smoke, "device": common.device_name(),
               "settings": {k: v for k, v in vars(args).items() if k not in ("out", "runs")}, "results": results}
    common.write_results(Path(args.out), args.smoke, table, records, {"nll_time": lambda p: plot(results, p)})
    return 0


def format_table(results: list[dict], pfn, prior, args) -> str:
    cfg = pfn.train_config
    k = args.nuts_datasets
    lines = [f"# GP with hyperpriors: PFN vs MLE-II vs NUTS (seed {args.seed})", "",
             f"Prior: {prior}. {args.datasets} held-out datasets ({k} with NUTS) x {args.queries} queries. "
             f"PFN: preset `gp-hyper-{args.scale}`{' (smoke)' if args.smoke else ''}, d={cfg.model.d_model}, "
             f"{cfg.model.num_layers} layers, {cfg.optim.steps} steps. MLE-II: {args.mle_restarts} restarts x "
             f"{args.mle_steps} L-BFGS steps. NUTS: {args.nuts_warmup} warm-up + {args.nuts_samples} samples. "
             f"Device: {common.device_name()}.", "",
             "NLL: mean ± 95% CI over datasets. Differences are paired (same datasets; PFN − NUTS on the NUTS "
             "datasets).", "",
             "| context | PFN NLL | MLE-II NLL | PFN − MLE-II | PFN NLL (NUTS datasets) | NUTS NLL | PFN − NUTS | "
             "PFN ms/dataset | MLE-II s/dataset | NUTS s/dataset | MLE-II / PFN time | NUTS / PFN time |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        p, m, u, s = np.array(r["pfn"]), np.array(r["mle2"]), np.array(r["nuts"]), r["seconds"]
        lines.append(f"| {r['context']} | {common.mean_ci(p)} | {common.mean_ci(m)} | {common.mean_ci(p - m)} | "
                     f"{common.mean_ci(p[:k])} | {common.mean_ci(u)} | {common.mean_ci(p[:k] - u)} | "
                     f"{s['pfn'] * 1e3:.3f} | {s['mle2']:.3f} | {s['nuts']:.2f} | {s['mle2'] / s['pfn']:.0f}x | "
                     f"{s['nuts'] / s['pfn']:.0f}x |")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    plt = common.pyplot()
    fig, (ax, ax_t) = plt.subplots(1, 2, figsize=(10, 3.8))
    n = np.array([r["context"] for r in results])
    k = len(results[0]["nuts"]) or len(results[0]["pfn"])  # every method on the datasets NUTS ran on
    for i, (name, label) in enumerate((("pfn", "PFN"), ("mle2", "MLE-II"), ("nuts", "NUTS"))):
        v = [np.array(r[name][:k]) for r in results]
        ax.errorbar(n * (1 + 0.04 * (i - 1)), [x.mean() for x in v], yerr=[ci95(x) for x in v], fmt="o-",
                    capsize=3, label=label)
        ax_t.plot(n, [r["seconds"][name] for r in results], "o-", label=label)
    # MLE-II's overconfident fits at small contexts reach hundreds of nats: keep the axis on the
    # PFN and NUTS, and write the off-scale means next to the axis
    close = [np.mean(r[name][:k]) for r in results for name in ("pfn", "nuts") if r[name]]
    top = max(close) + 1.0
    ax.set_ylim(min(close) - 0.5, top)
    for r in results:
        if np.mean(r["mle2"][:k]) > top:
            ax.annotate(f"MLE-II {np.mean(r['mle2'][:k]):.1f}", (r["context"], top), xytext=(0, -12),
                        textcoords="offset points", ha="center", fontsize=7, color="C1")
    for a in (ax, ax_t):
        a.set_xscale("log")
        a.set_xticks(n, [str(v) for v in n])
        a.minorticks_off()
    ax.set(xlabel="context size", ylabel="NLL (mean ± 95% CI)", title=f"held-out NLL ({k} datasets, paired)")
    ax.legend(loc="lower left")
    ax_t.set(yscale="log", xlabel="context size", ylabel="seconds per dataset", title="time per dataset")
    ax_t.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
