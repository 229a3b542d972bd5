"""Command line: ``pfnjax train``, ``pfnjax eval``, ``pfnjax predict`` (also ``python -m pfnjax``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def _add_train(sub: argparse._SubParsersAction) -> None:
    from pfnjax.model import ATTENTION_IMPLS
    from pfnjax.priors import prior_names
    from pfnjax.train.config import PRESETS

    p = sub.add_parser("train", help="train a PFN on a prior (resumes if --out has checkpoints)")
    p.add_argument("--prior", default="gp", choices=prior_names(), help="prior to train on")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="model/data/schedule preset (default: tiny, or tiny-cls for classification priors)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, config.json, metrics.jsonl)")
    p.add_argument("--steps", type=int, help="override the preset's number of steps")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--accum-steps", type=int, help="gradient accumulation micro-batches per step")
    p.add_argument("--seq-len", type=int)
    p.add_argument("--num-features", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--split", choices=["uniform", "paper", "loguniform"])
    p.add_argument("--bf16", action="store_true", help="bfloat16 activations (params stay float32)")
    p.add_argument("--attention", choices=ATTENTION_IMPLS,
                   help="attention implementation (default auto: cuDNN flash attention on NVIDIA GPUs "
                        "with --bf16, XLA elsewhere); saved with the run and used by pfnjax.load")
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--prior-kwargs", default="{}", help="JSON dict of prior config overrides")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--distributed", action="store_true",
                   help="multi-host: call jax.distributed.initialize() (auto-detects SLURM/TPU/GKE; "
                        "else set --coordinator, --num-processes, --process-id)")
    p.add_argument("--coordinator", help="host:port of process 0 (with --distributed)")
    p.add_argument("--num-processes", type=int)
    p.add_argument("--process-id", type=int)


def _init_distributed(args: argparse.Namespace) -> None:
    import jax

    kwargs = {}
    if args.coordinator:
        kwargs = dict(coordinator_address=args.coordinator, num_processes=args.num_processes,
                      process_id=args.process_id)
    jax.distributed.initialize(**kwargs)


def _cmd_train(args: argparse.Namespace) -> int:
    from pfnjax.train import preset_config, train

    if args.distributed:
        _init_distributed(args)

    from pfnjax.priors import get_prior

    preset = args.preset or ("tiny-cls" if get_prior(args.prior).task == "classification" else "tiny")
    cfg = preset_config(
        preset,
        prior=args.prior,
        prior_kwargs=json.loads(args.prior_kwargs),
        steps=args.steps,
        batch_size=args.batch_size,
        accum_steps=args.accum_steps,
        seq_len=args.seq_len,
        num_features=args.num_features,
        lr=args.lr,
        seed=args.seed,
        split=args.split,
        compute_dtype="bfloat16" if args.bf16 else None,
        attention_impl=args.attention,
        checkpoint_every=args.checkpoint_every,
    )
    result = train(cfg, args.out, progress=not args.no_progress)
    final = result.history[-1]["loss"] if result.history else float("nan")
    print(f"trained {int(result.state.step)} steps, final loss {final:.4f}; run saved in {args.out}")
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="NLL of a trained PFN vs the exact posterior on held-out prior datasets")
    p.add_argument("run", help="run directory")
    p.add_argument("--num-datasets", type=int, default=200)
    p.add_argument("--num-queries", type=int, default=50)
    p.add_argument("--context-sizes", default="1,5,10,20,50,100")
    p.add_argument("--output", help="also write the table (markdown) here")


def _cmd_eval(args: argparse.Namespace) -> int:
    from pfnjax.evaluate import evaluate_against_oracle, format_table, run_held_out_source
    from pfnjax.predict import load

    pfn = load(args.run)
    cfg = pfn.train_config
    sizes = tuple(int(s) for s in args.context_sizes.split(","))
    # held-out datasets use as many features as the training datasets did
    prior, key, num_features_sampler = run_held_out_source(cfg)
    data_kwargs = dict(context_sizes=sizes, num_datasets=args.num_datasets, num_queries=args.num_queries,
                       num_features_sampler=num_features_sampler)
    if pfn.task != "regression":
        from pfnjax.evaluate import evaluate_classification, format_classification_table

        rows = evaluate_classification(pfn, prior, key, **data_kwargs)
        table = format_classification_table(rows)
    else:
        rows = evaluate_against_oracle(pfn, prior, key, **data_kwargs)
        table = format_table(rows)
    header = f"{args.run}: prior={cfg.prior}, {args.num_datasets} held-out datasets, {args.num_queries} queries each\n"
    print(header + table)
    if args.output:
        Path(args.output).write_text(header + "\n" + table + "\n")
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict for a CSV of queries given a CSV context")
    p.add_argument("run", help="run directory or pretrained model name")
    p.add_argument("--context", required=True, help="CSV: feature columns then the target column, no header")
    p.add_argument("--queries", required=True, help="CSV of feature columns, no header")
    p.add_argument("--quantiles", default="0.05,0.5,0.95")


def _cmd_predict(args: argparse.Namespace) -> int:
    from pfnjax.predict import load

    pfn = load(args.run)
    ctx = np.loadtxt(args.context, delimiter=",", ndmin=2)
    qry = np.loadtxt(args.queries, delimiter=",", ndmin=2)
    dist = pfn.predict(ctx[:, :-1], ctx[:, -1], qry)
    if pfn.task == "regression":
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
    parser = argparse.ArgumentParser(prog="pfnjax", description="Prior-Data Fitted Networks in JAX/Flax")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
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
