"""BNN binary classification: a PFN trained on the exact BNN prior against NUTS and mean-field SVI
at increasing budgets, on held-out datasets of the prior (the PFN paper's speed/quality comparison).

    python experiments/bnn_vs_mcmc/run.py                # shipped bnn-small-cpu and bnn-big-cpu
    python experiments/bnn_vs_mcmc/run.py --scale gpu    # trains the -gpu presets first
    python experiments/bnn_vs_mcmc/run.py --smoke        # seconds, for CI

Settings: ``small`` (3 features, 5 tanh hidden units) and ``big`` (8 features, 64 hidden units),
N(0, 1) weights and biases, x ~ N(0, I). The PFN predicts all ``--datasets`` held-out datasets;
NUTS and SVI run on the first ``--baseline-datasets`` of them, and every comparison is paired on
those. Seconds per dataset: the PFN's batched call divided by the datasets (after compiling); the
baselines' median over datasets (one per call; the median excludes the compiling first call).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import bnn_baselines as baselines  # noqa: E402
import common  # noqa: E402
from pfnjax.evaluators import held_out_datasets  # noqa: E402
from pfnjax.priors.base import prior_from_spec  # noqa: E402
from pfnjax.priors.bnn_binary import BNNBinaryPrior  # noqa: E402

SETTINGS = {"small": "bnn-small", "big": "bnn-big"}


def pfn_scores(pfn, x_c, y_c, x_q, y_q) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-dataset query NLL and accuracy of the PFN (one batched call), and seconds per dataset."""
    run = lambda: pfn.head.full_distribution(pfn.logits_from_cache(pfn.encode(x_c, y_c), x_q)).probs
    run()  # compile
    probs, seconds = common.timed(run)
    probs = np.clip(np.asarray(probs, np.float64), 1e-7, 1.0)
    picked = np.take_along_axis(probs, y_q[..., None].astype(np.int64), -1)[..., 0]
    return -np.log(picked).mean(1), (probs.argmax(-1) == y_q).mean(1), seconds / len(x_c)


def baseline_scores(method, key, count: int, x_c, y_c, x_q, y_q) -> tuple[np.ndarray, np.ndarray, float]:
    values, seconds = [], []
    for i in range(count):
        start = time.perf_counter()
        values.append(method(jax.random.fold_in(key, i), x_c[i], y_c[i], x_q[i], y_q[i]))
        seconds.append(time.perf_counter() - start)
    nll, acc = baselines.numpy_scores(values)
    return nll, acc, float(np.median(seconds))


def run_setting(name: str, args, sizes: tuple[int, ...]) -> dict:
    pfn, _ = common.get_pfn(f"{SETTINGS[name]}-{args.scale}", args, getattr(args, f"model_{name}"))
    prior = prior_from_spec(pfn.prior_spec)
    if not isinstance(prior, BNNBinaryPrior):
        raise SystemExit(f"bnn_vs_mcmc needs PFNs trained on the 'bnn_binary' prior, got {type(prior).__name__}")
    key = jax.random.fold_in(jax.random.key(args.seed), list(SETTINGS).index(name))
    k_data, k_base = jax.random.split(key)
    data = held_out_datasets(prior, k_data, sizes, args.datasets, args.queries, pfn.max_features)
    f = data.x.shape[-1]
    methods = {f"NUTS {b}+{b}": baselines.NUTSBaseline(prior, b, b) for b in args.nuts_budgets}
    methods.update({f"SVI {s}": baselines.SVIBaseline(prior, s) for s in args.svi_budgets})
    out = {"prior": str(prior), "features": f, "model": pfn.train_config.to_dict(), "rows": []}
    for n in sizes:
        (x_c, y_c), (x_q, y_q) = data.context(slice(None), n, f), data.queries(slice(None), f)
        nll, acc, sec = pfn_scores(pfn, x_c, y_c, x_q, y_q)
        row = {"context": n, "PFN": {"nll": nll.tolist(), "accuracy": acc.tolist(), "seconds": sec}}
        for label, method in methods.items():
            m_nll, m_acc, m_sec = baseline_scores(method, jax.random.fold_in(k_base, n), args.baseline_datasets,
                                                  x_c, y_c, x_q, y_q)
            row[label] = {"nll": m_nll.tolist(), "accuracy": m_acc.tolist(), "seconds": m_sec}
        out["rows"].append(row)
        print(f"{name} context {n}: " + ", ".join(f"{k} {np.mean(v['nll'][:args.baseline_datasets]):.3f} "
                                                   f"({v['seconds']:.2g} s)" for k, v in row.items() if k != "context"),
              flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(parser, HERE / "results")
    for name in SETTINGS:
        parser.add_argument(f"--model-{name}", help=f"a shipped model name or run directory for the {name} setting")
    parser.add_argument("--settings", default="small,big")
    parser.add_argument("--context-sizes", default="2,5,10,20,50,100")
    parser.add_argument("--datasets", type=int, default=100, help="held-out datasets per setting (PFN)")
    parser.add_argument("--baseline-datasets", type=int, default=16, help="the first this many also get NUTS and SVI")
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--nuts-budgets", default="64,512", help="NUTS warm-up = samples, per budget")
    parser.add_argument("--svi-budgets", default="100,300,1000,3000", help="SVI steps, per budget")
    args = parser.parse_args(argv)
    common.check_scale(parser, args)
    if args.smoke:
        args.context_sizes, args.datasets, args.baseline_datasets = "10", 4, 2
        args.nuts_budgets, args.svi_budgets, args.settings = "20", "50", "small"
    settings = args.settings.split(",")
    if unknown := [s for s in settings if s not in SETTINGS]:
        parser.error(f"unknown settings {unknown}; choose from {list(SETTINGS)}")
    common.require("numpyro")
    args.nuts_budgets = [int(b) for b in args.nuts_budgets.split(",")]
    args.svi_budgets = [int(b) for b in args.svi_budgets.split(",")]
    args.baseline_datasets = min(args.baseline_datasets, args.datasets)
    sizes = tuple(int(n) for n in args.context_sizes.split(","))
    print(f"seed {args.seed}, scale {args.scale}{' (smoke)' if args.smoke else ''}, {common.device_name()}", flush=True)
    results = {name: run_setting(name, args, sizes) for name in settings}
    table = format_tables(results, args)
    print(table)
    records = {"seed": args.seed, "scale": args.scale, "smoke": args.smoke, "device": common.device_name(),
               "baseline_datasets": args.baseline_datasets, "settings": results}
    common.write_results(Path(args.out), args.smoke, table, records,
                         {"speed_quality": lambda p: plot(results, args.baseline_datasets, p)})
    return 0


def format_tables(results: dict, args) -> str:
    k = args.baseline_datasets
    lines = [f"# BNN binary classification: PFN vs NUTS vs SVI (seed {args.seed}, {common.device_name()})", "",
             f"NLL and accuracy on {args.queries} query rows, mean ± 95% CI over the first {k} held-out datasets "
             f"(all methods on the same ones; the PFN's NLL on all {args.datasets} datasets is in the last column). "
             "Seconds per dataset; the speed-up is the method's time over the PFN's.", ""]
    for name, res in results.items():
        cfg = res["model"]
        lines += [f"## {name}: {res['prior']}, {res['features']} features", "",
                  f"PFN: preset `{SETTINGS[name]}-{args.scale}`{' (smoke)' if args.smoke else ''}, "
                  f"d={cfg['model']['d_model']}, {cfg['model']['num_layers']} layers, {cfg['optim']['steps']} steps "
                  f"x {cfg['data']['batch_size']} datasets.", "",
                  "| context | method | NLL | PFN − method (paired) | accuracy | s / dataset | time / PFN's | "
                  "PFN NLL, all datasets |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
        for row in res["rows"]:
            pfn_nll = np.array(row["PFN"]["nll"])
            for method, v in row.items():
                if method == "context":
                    continue
                nll = np.array(v["nll"][:k])
                diff = "" if method == "PFN" else common.mean_ci(pfn_nll[:k] - nll)
                ratio = v["seconds"] / row["PFN"]["seconds"]
                lines.append(f"| {row['context']} | {method} | {common.mean_ci(nll)} | {diff} | "
                             f"{np.mean(v['accuracy'][:k]):.3f} | {v['seconds']:.3g} | {ratio:,.0f}x | "
                             + (common.mean_ci(pfn_nll) if method == "PFN" else "") + " |")
        lines.append("")
    return "\n".join(lines)


def plot(results: dict, k: int, path: Path) -> None:
    """The paper's speed/quality view: NLL and accuracy (averaged over context sizes and the
    shared datasets) against seconds per dataset, per setting; SVI and NUTS budgets are joined."""
    plt = common.pyplot()
    fig, axes = plt.subplots(2, len(results), figsize=(5 * len(results), 6.5), squeeze=False)
    for col, (name, res) in enumerate(results.items()):
        methods = [m for m in res["rows"][0] if m != "context"]
        for metric, ax in zip(("nll", "accuracy"), axes[:, col]):
            for family, marker in (("PFN", "*"), ("SVI", "o"), ("NUTS", "s")):
                members = [m for m in methods if m.split()[0] == family]
                t = [np.mean([r[m]["seconds"] for r in res["rows"]]) for m in members]
                v = [np.mean([np.mean(r[m][metric][:k]) for r in res["rows"]]) for m in members]
                ax.plot(t, v, marker=marker, ms=12 if family == "PFN" else 6, label=family)
                for m, ti, vi in zip(members, t, v):
                    if family != "PFN":
                        ax.annotate(m.split(" ", 1)[1], (ti, vi), fontsize=7, xytext=(3, 3), textcoords="offset points")
            ax.set(xscale="log", xlabel="seconds per dataset", ylabel=f"{metric} (mean over context sizes)",
                   title=f"{name}: {metric}")
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
