"""The PyTorch reference: train the classic PFN of the `pfns` package (0.4.2) on its GP prior, on
the same workload as a pfnjax preset, and print its datasets/s.

Needs ``torch`` and ``pfns`` (``pip install torch pfns==0.4.2``, or ``pfns`` with ``--no-deps``
plus ``configspace``, ``more_itertools``, ``einops``, ``gpytorch``, ``linear_operator``,
``jaxtyping`` and ``tensorboard``); it is a benchmark's reference, never a pfnjax dependency.
``benchmarks/train_throughput.py --reference`` runs it in the same invocation as pfnjax.

The workload: a GP prior with RBF kernel, lengthscale 0.6, outputscale 1, noise variance 0.01
and ``F`` features; 1,000 bar-distribution buckets placed on 10 batches of its targets; AdamW at
lr 3e-4 with cosine decay; the transformer of ``emsize``, ``nlayers``, ``nhead`` heads and a
``2 * emsize`` MLP, one feature group, no attention between features; one context size per
batch (pfns draws it uniformly and slices). Float32 on the CPU; on a GPU (``--device cuda``) pfns's
mixed precision, as its own training defaults to.

Two trainings of ``--warmup`` and ``--warmup + --steps`` steps are timed, so the steady-state
step time (the difference) excludes start-up; both figures are printed as one JSON line::

    python benchmarks/pfns_reference.py --emsize 128 --nlayers 4 --nhead 4 --batch 16 --seq 200
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def train_once(steps: int, args: argparse.Namespace) -> tuple[float, float]:
    """``(wall seconds, final loss)`` of one pfns training of ``steps`` steps."""
    import torch
    from pfns.model import bar_distribution
    from pfns.model.encoders import EncoderConfig
    from pfns.priors.prior import AdhocPriorConfig
    from pfns.train import BatchShapeSamplerConfig, MainConfig, OptimizerConfig, TransformerConfig, train

    torch.manual_seed(0)
    hyperparameters = {"noise": 1e-2, "outputscale": 1.0, "lengthscale": 0.6, "observation_noise": True}
    prior = AdhocPriorConfig(prior_names=["fast_gp"],
                             prior_kwargs={"num_features": args.features, "hyperparameters": hyperparameters})
    get_batch = prior.create_get_batch_method()
    targets = torch.cat([get_batch(batch_size=64, seq_len=args.seq, num_features=args.features).target_y.flatten()
                         for _ in range(10)])
    borders = bar_distribution.get_bucket_borders(1000, ys=targets)
    config = MainConfig(
        priors=[prior],
        optimizer=OptimizerConfig("adamw", lr=3e-4, weight_decay=0.0),
        scheduler="cosine_decay",
        model=TransformerConfig(
            criterion=bar_distribution.BarDistributionConfig(borders.tolist(), full_support=True),
            emsize=args.emsize, nhead=args.nhead, nhid=2 * args.emsize, nlayers=args.nlayers,
            features_per_group=args.features, attention_between_features=False,
            encoder=EncoderConfig(), y_encoder=EncoderConfig(nan_handling=True),
        ),
        batch_shape_sampler=BatchShapeSamplerConfig(batch_size=args.batch, max_seq_len=args.seq,
                                                    min_num_features=args.features, max_num_features=args.features),
        epochs=1, steps_per_epoch=steps, warmup_epochs=0, train_mixed_precision=args.device != "cpu",
        verbose=False, progress_bar=False,
    )
    start = time.perf_counter()
    out = train(config, device=args.device, reusable_config=False)
    return time.perf_counter() - start, float(out["total_loss"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emsize", type=int, default=128)
    parser.add_argument("--nlayers", type=int, default=4)
    parser.add_argument("--nhead", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=200)
    parser.add_argument("--features", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100, help="timed steps beyond the warm-up training")
    parser.add_argument("--warmup", type=int, default=10, help="steps of the first, start-up-only training")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    args = parser.parse_args(argv)
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    wall_short, _ = train_once(args.warmup, args)
    wall_long, loss = train_once(args.warmup + args.steps, args)
    step_s = (wall_long - wall_short) / args.steps
    print(json.dumps({
        "datasets_per_s": args.batch / step_s,
        "datasets_per_s_with_startup": args.batch * (args.warmup + args.steps) / wall_long,
        "step_ms": 1e3 * step_s, "final_loss": loss, "torch": torch.__version__,
        "threads": torch.get_num_threads(), **vars(args),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
