"""Command line: ``pfnjax train``, ``pfnjax eval``, ``pfnjax predict`` (also ``python -m pfnjax``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def _add_import(p: argparse.ArgumentParser) -> None:
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE first (repeatable), e.g. one that registers a prior, model, head or "
                        "evaluator of your own; a run's files never make pfnjax import code")


def _import_modules(modules: list[str]) -> None:
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ValueError(f"--import {module}: {exc}") from exc


def _train_defaults(argv: list[str]):
    """The config a run would use before its flags (preset, prior and model applied), for --help."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset")
    pre.add_argument("--prior")
    pre.add_argument("--model")
    pre.add_argument("--import", dest="imports", action="append", default=[])
    known, _ = pre.parse_known_args(argv)
    try:
        _import_modules(known.imports)
        from pfnjax.presets import default_preset, preset_config

        preset = known.preset or default_preset(known.prior or "gp")
        return preset, preset_config(preset, prior=known.prior, model=known.model)
    except (ValueError, ImportError):
        return None, None


def _add_train(sub: argparse._SubParsersAction, argv: list[str]) -> None:
    from pfnjax.config import add_config_flags
    from pfnjax.presets import PRESETS

    preset, defaults = _train_defaults(argv)
    shown = f" Defaults shown are those of preset {preset!r}." if preset else ""
    p = sub.add_parser("train", help="train a PFN on a prior (resumes if --out has checkpoints)",
                       description="Every TrainConfig field is a flag: --FIELD or --SECTION.FIELD "
                                   "(e.g. --lr or --optim.lr); unset ones keep the preset's value."
                                   f"{shown} (pfnjax train --preset NAME --help shows that preset's.)")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="model/data/schedule preset (default: tiny, or tiny-cls for classification priors)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, config.json, metrics.jsonl)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 activations (params stay float32); "
                                                       "the same as --compute-dtype bfloat16")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_import(p)
    p.add_argument("--distributed", action="store_true",
                   help="multi-host: call jax.distributed.initialize() (auto-detects SLURM/TPU/GKE; "
                        "else set --coordinator, --num-processes, --process-id)")
    p.add_argument("--coordinator", help="host:port of process 0 (with --distributed)")
    p.add_argument("--num-processes", type=int, help="number of processes (with --distributed)")
    p.add_argument("--process-id", type=int, help="this process's index (with --distributed)")
    add_config_flags(p, defaults)


def _init_distributed(args: argparse.Namespace) -> None:
    import jax

    kwargs = {}
    if args.coordinator:
        kwargs = dict(coordinator_address=args.coordinator, num_processes=args.num_processes,
                      process_id=args.process_id)
    jax.distributed.initialize(**kwargs)


def _cmd_train(args: argparse.Namespace) -> int:
    from pfnjax.config import config_overrides
    from pfnjax.presets import default_preset, preset_config

    if args.distributed:
        _init_distributed(args)
    _import_modules(args.imports)
    overrides = config_overrides(args)
    if args.bf16:
        overrides["compute_dtype"] = "bfloat16"
    preset = args.preset or default_preset(overrides.get("prior", "gp"))
    cfg = preset_config(preset, **overrides)

    from pfnjax.training import train

    result = train(cfg, args.out, progress=not args.no_progress)
    final = result.history[-1]["loss"] if result.history else float("nan")
    print(f"trained {int(result.state.step)} steps, final loss {final:.4f}; run saved in {args.out}")
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="NLL of a trained PFN vs the exact posterior on held-out prior datasets")
    p.add_argument("run", help="run directory or shipped model name")
    p.add_argument("--num-datasets", type=int, default=200, help="held-out prior datasets (default 200)")
    p.add_argument("--num-queries", type=int, default=50, help="query rows per dataset (default 50)")
    p.add_argument("--context-sizes", default="1,5,10,20,50,100",
                   help="comma-separated context sizes to score at (default 1,5,10,20,50,100)")
    p.add_argument("--output", help="also write the table (markdown) here")
    _add_import(p)


def _cmd_eval(args: argparse.Namespace) -> int:
    from pfnjax.evaluators import HeldOutEvaluator, format_table, held_out_source
    from pfnjax.predict import load

    _import_modules(args.imports)
    pfn = load(args.run)
    try:
        sizes = tuple(int(s) for s in args.context_sizes.split(","))
    except ValueError:
        raise ValueError(f"--context-sizes must be comma-separated ints, got {args.context_sizes!r}") from None
    # the prior is rebuilt from its saved spec; held-out datasets use the training feature counts
    prior, key, num_features_sampler = held_out_source(pfn)
    evaluator = HeldOutEvaluator.for_pfn(pfn, prior, key, context_sizes=sizes, num_datasets=args.num_datasets,
                                         num_queries=args.num_queries, num_features_sampler=num_features_sampler)
    table = format_table(evaluator.rows(pfn.params))
    header = (f"{args.run}: prior={pfn.prior_spec['class']}, {args.num_datasets} held-out datasets, "
              f"{args.num_queries} queries each\n")
    print(header + table)
    if args.output:
        Path(args.output).write_text(header + "\n" + table + "\n")
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict for a CSV of queries given a CSV context")
    p.add_argument("run", help="run directory or pretrained model name")
    p.add_argument("--context", required=True, help="CSV: feature columns then the target column, no header")
    p.add_argument("--queries", required=True, help="CSV of feature columns, no header")
    p.add_argument("--quantiles", default="0.05,0.5,0.95",
                   help="comma-separated predictive quantiles to print for regression (default 0.05,0.5,0.95)")
    _add_import(p)


def _cmd_predict(args: argparse.Namespace) -> int:
    from pfnjax.predict import load

    _import_modules(args.imports)
    pfn = load(args.run)
    ctx = np.loadtxt(args.context, delimiter=",", ndmin=2)
    qry = np.loadtxt(args.queries, delimiter=",", ndmin=2)
    from pfnjax.distributions.bar_distribution import BarDistribution

    dist = pfn.predict(ctx[:, :-1], ctx[:, -1], qry)
    if isinstance(dist, BarDistribution):
        qs = [float(q) for q in args.quantiles.split(",")]
        quant = np.asarray(dist.quantile(np.asarray(qs)))
        mean = np.asarray(dist.mean())
        print("mean," + ",".join(f"q{q}" for q in qs))
        for m, row in zip(mean, quant):
            print(f"{m:.6g}," + ",".join(f"{v:.6g}" for v in row))
    else:
        probs = np.asarray(dist.probs)
        print("class," + ",".join(f"p{c}" for c in range(probs.shape[-1])))
        for row in probs:
            print(f"{int(row.argmax())}," + ",".join(f"{v:.4f}" for v in row))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="pfnjax", description="Prior-Data Fitted Networks in JAX/Flax")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub, argv)
    _add_eval(sub)
    _add_predict(sub)
    args = parser.parse_args(argv)
    handlers = {"train": _cmd_train, "eval": _cmd_eval, "predict": _cmd_predict}
    try:
        return handlers[args.command](args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"pfnjax {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
