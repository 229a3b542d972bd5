"""Inference latency: uncached full forward vs cached context + chunked queries, and the exact GP.

One context of ``n_ctx`` rows and ``n_qry`` queries with ``F`` features, a randomly initialised
PFN (latency does not depend on the weights) of the default size (d=512, 6 layers,
8 heads, 1000 bar buckets). Measured, each after a warm-up call (compilation excluded), as the
median over ``--repeats`` runs with ``block_until_ready``:

* ``uncached``: one ``PFNTransformer.__call__`` over the ``T = n_ctx + n_qry`` sequence
  (:meth:`pfnjax.PFN.logits_uncached`), as in training: every token attends to the context keys
  but the sequence is processed as a whole.
* ``cached, first query set``: :meth:`pfnjax.PFN.encode` (context through all layers once) plus
  the queries in chunks against the cache (:meth:`pfnjax.PFN.logits_from_cache`).
* ``cached, re-query``: a new query set against an already encoded context (the Bayesian
  optimisation / ``PFNRegressor.predict`` case): only the chunked decode runs.
* ``exact GP``: :func:`pfnjax.priors.gp.exact_posterior` (Cholesky of the ``n_ctx`` kernel), jitted.

    python benchmarks/inference_latency.py --markdown benchmarks/results/inference_latency_cpu.md
"""

from __future__ import annotations

import argparse
import sys

import jax
import numpy as np

from pfnjax.model import ClassicConfig, ModelIO
from pfnjax.predict import PFN
from pfnjax.priors import gp

from _results import median_seconds, report  # a sibling: a script's own folder is on sys.path


def run(n_ctx: int = 1000, n_qry: int = 1000, num_features: int = 5, d_model: int = 512, num_layers: int = 6,
        num_heads: int = 8, num_buckets: int = 1000, chunk_size: int = 1024, repeats: int = 5) -> dict:
    cfg = ClassicConfig(d_model=d_model, num_layers=num_layers, num_heads=num_heads)
    pfn = PFN.init(cfg, ModelIO(num_features, num_buckets), seed=0)
    rng = np.random.default_rng(0)
    x_ctx = rng.uniform(size=(n_ctx, num_features)).astype(np.float32)
    y_ctx = np.sin(6 * x_ctx.sum(1)).astype(np.float32)
    x_qry, x_qry2 = (rng.uniform(size=(n_qry, num_features)).astype(np.float32) for _ in range(2))
    cache = pfn.encode(x_ctx, y_ctx)
    hyper = gp.GPHyper(0.6, 1.0, 1e-4)
    exact = jax.jit(lambda xc, yc, xq: gp.exact_posterior(xc, yc, xq, hyper))
    res = {
        "uncached": median_seconds(lambda: pfn.logits_uncached(x_ctx, y_ctx, x_qry), repeats),
        "cached_first": median_seconds(lambda: pfn.logits(x_ctx, y_ctx, x_qry, chunk_size=chunk_size), repeats),
        "encode_only": median_seconds(lambda: pfn.encode(x_ctx, y_ctx).caches, repeats),
        "cached_requery": median_seconds(lambda: pfn.logits_from_cache(cache, x_qry2, chunk_size=chunk_size), repeats),
        "exact_gp": median_seconds(lambda: exact(x_ctx, y_ctx, x_qry), repeats),
    }
    # Same answer from both paths. Checked at full matmul precision: on a GPU both run in TF32 by
    # default, and TF32 rounding differs between the two programs' shapes (it is not the algorithm).
    with jax.default_matmul_precision("highest"):
        np.testing.assert_allclose(pfn.logits(x_ctx, y_ctx, x_qry, chunk_size=chunk_size),
                                   pfn.logits_uncached(x_ctx, y_ctx, x_qry), atol=1e-3)
    res.update(n_ctx=n_ctx, n_qry=n_qry, num_features=num_features, d_model=d_model, num_layers=num_layers,
               num_heads=num_heads, num_buckets=num_buckets, chunk_size=chunk_size, repeats=repeats)
    return res


def markdown(res: dict) -> str:
    base = res["uncached"]
    rows = [
        ("uncached: one full forward over T = n_ctx + n_qry", res["uncached"]),
        ("cached, first query set: encode context + chunked queries", res["cached_first"]),
        ("  of which: encode the context", res["encode_only"]),
        ("cached, re-query: new queries against the encoded context", res["cached_requery"]),
        ("exact GP posterior (Cholesky, jitted)", res["exact_gp"]),
    ]
    lines = [
        f"Context {res['n_ctx']} rows, {res['n_qry']} queries, F={res['num_features']}; random-init PFN "
        f"d={res['d_model']}, {res['num_layers']} layers, {res['num_heads']} heads, {res['num_buckets']} buckets; "
        f"query chunk {res['chunk_size']}; median of {res['repeats']} runs after a warm-up (compile excluded).",
        "",
        "| path | latency (ms) | vs uncached |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {t * 1e3:.1f} | {base / t:.2f}x faster |" if t < base else
              f"| {name} | {t * 1e3:.1f} | {t / base:.2f}x slower |" if t > base else
              f"| {name} | {t * 1e3:.1f} | 1.00x |" for name, t in rows]
    lines += ["", "The uncached pass scores all T x T token pairs (T = n_ctx + n_qry; the query keys are masked, "
              "not skipped) and holds them in memory; the cached path scores n_ctx x n_ctx once, then "
              "chunk x n_ctx per query chunk, so its peak memory does not grow with the number of queries."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-ctx", type=int, default=1000)
    parser.add_argument("--n-qry", type=int, default=1000)
    parser.add_argument("--num-features", type=int, default=5)
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--num-layers", type=int, default=6)
    parser.add_argument("--num-heads", type=int, default=8)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--markdown", help="write the results (with date, device, command) to this file")
    args = parser.parse_args(argv)
    res = run(args.n_ctx, args.n_qry, args.num_features, args.d_model, args.num_layers, args.num_heads,
              chunk_size=args.chunk_size, repeats=args.repeats)
    table = markdown(res)
    report(table, args.markdown, "Inference latency")
    return 0


if __name__ == "__main__":
    sys.exit(main())
