"""Prior gallery: plot a few draws from every registered prior and measure sampling throughput.

    python experiments/prior_gallery/run.py            # full run -> experiments/prior_gallery/results/
    python experiments/prior_gallery/run.py --smoke    # < 30 s, writes to a temporary folder

Regression priors are drawn with one feature and shown as y against x; classification priors with two
features, shown as a scatter coloured by class (context rows filled, query rows hollow); image priors
(``strokes``) as images, a task's classes by row, next to scikit-learn's real handwritten digits
(``gallery_<name>.png``). Throughput is
datasets per second of the jitted batch sampler (``make_batch_sampler``) after a warm-up call, the median
of several repetitions, at T=1000 rows, F=10 features, batch 64 (configurable).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

if "--smoke" in sys.argv and "XLA_FLAGS" not in os.environ:
    # The smoke run is compile-bound (one compile per prior); XLA:CPU's backend optimisation level 0
    # roughly halves compile time. Full runs keep the default, so their throughput numbers are real.
    os.environ["XLA_FLAGS"] = "--xla_backend_optimization_level=0"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import pfnjax.priors as P  # noqa: E402
from pfnjax.types import BatchShape  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def fixed_split(fraction: float):
    def split(key, seq_len):
        del key
        return jnp.asarray(max(1, min(seq_len - 1, int(round(fraction * seq_len)))), jnp.int32)

    return split


def gallery(names: list[str], draws: int, seq_len: int, seed: int, out: Path) -> dict:
    """Plot ``draws`` datasets per prior into ``out``; return ``{name: (sampler, shape, first-call s)}``."""
    fig, axes = plt.subplots(len(names), draws, figsize=(2.6 * draws, 2.3 * len(names)), squeeze=False)
    timings = {}
    for row, name in enumerate(names):
        prior = P.get_prior(name)
        classification = prior.task == "classification"
        shape = BatchShape(draws, seq_len, 2 if classification else 1)
        sampler = P.make_batch_sampler(prior, shape, split=fixed_split(0.5))
        t0 = time.perf_counter()
        batch = jax.block_until_ready(sampler(jax.random.key(seed)))
        timings[name] = (sampler, shape, time.perf_counter() - t0)
        x, y, sep = np.asarray(batch.x), np.asarray(batch.y), np.asarray(batch.single_eval_pos)
        for col in range(draws):
            ax = axes[row, col]
            ctx = np.arange(seq_len) < sep[col]
            if classification:
                n_cls = int(y[col][ctx].max()) + 1
                cmap = plt.get_cmap("tab10")
                colours = cmap(y[col] % 10)
                ax.scatter(x[col, ctx, 0], x[col, ctx, 1], c=colours[ctx], s=7, linewidths=0)
                ax.scatter(
                    x[col, ~ctx, 0], x[col, ~ctx, 1], facecolors="none", edgecolors=colours[~ctx], s=7, linewidths=0.6
                )
                n_nan = int(np.isnan(x[col]).sum())
                title = f"{n_cls} class" + ("es" if n_cls != 1 else "") + (f", {n_nan} NaN" if n_nan else "")
                ax.set_title(title, fontsize=8)
            else:
                order = np.argsort(x[col, :, 0])
                ax.plot(x[col, order, 0], y[col, order], color="0.8", lw=0.6, zorder=0)
                ax.scatter(x[col, ctx, 0], y[col, ctx], s=5, color="C0", label="context")
                ax.scatter(x[col, ~ctx, 0], y[col, ~ctx], s=5, facecolors="none", edgecolors="C1", lw=0.5,
                           label="query")
            ax.tick_params(labelsize=6)
            if col == 0:
                ax.set_ylabel(f"{name}\n({prior.task[:5]})", fontsize=9)
    fig.suptitle(f"Draws from each registered prior (T={seq_len}; filled: context, hollow: queries)", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return timings


def is_image_prior(name: str) -> bool:
    """Priors whose x is an image (``num_pixels`` columns) are shown as images, not scatter plots."""
    return hasattr(P.get_prior(name), "num_pixels")


def image_gallery(name: str, seed: int, out: Path, ways: int = 5, shots: int = 4) -> None:
    """Two ``ways``-way tasks of an image prior (a row per class, ``shots`` examples each) next to
    scikit-learn's real 8×8 handwritten digits (scaled to [0, 1]) laid out the same way."""
    import dataclasses

    from sklearn.datasets import load_digits

    prior = dataclasses.replace(P.get_prior(name), min_ways=ways, max_ways=ways)
    side = prior.resolution
    n = ways * shots
    blocks = []
    for task in range(2):
        x, y = prior.sample_dataset(jax.random.key(seed + task), n, side * side, jnp.int32(side * side), jnp.int32(n))
        x, y = np.asarray(x), np.asarray(y)
        blocks.append((f"{name} prior, task {task + 1}", [x[y == c][:shots] for c in range(ways)]))
    digits = load_digits()
    rng = np.random.default_rng(seed)
    classes = rng.choice(10, ways, replace=False)
    blocks.append(("real digits (sklearn, /16)", [digits.data[rng.choice(np.flatnonzero(digits.target == c), shots,
                                                                          replace=False)] / 16.0 for c in classes]))
    fig = plt.figure(figsize=(3.2 * len(blocks), 0.75 * ways + 0.6))
    for b, sub in enumerate(fig.subfigures(1, len(blocks))):
        title, rows = blocks[b]
        axes = sub.subplots(ways, shots)
        for c in range(ways):
            for k in range(shots):
                ax = axes[c, k]
                image = rows[c][k].reshape(int(np.sqrt(rows[c][k].size)), -1)
                ax.imshow(image, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
        sub.suptitle(title, fontsize=9)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def throughput(name: str, shape: BatchShape, reps: int, seed: int, sampler=None, warm: float | None = None) -> dict:
    """Time ``reps`` calls of the jitted batch sampler (built here unless ``sampler`` is given, already warm)."""
    prior = P.get_prior(name)
    if sampler is None:
        sampler = P.make_batch_sampler(prior, shape)
        t0 = time.perf_counter()
        jax.block_until_ready(sampler(jax.random.key(seed)))
        warm = time.perf_counter() - t0
    times = []
    for i in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(sampler(jax.random.key(seed + 1 + i)))
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"task": prior.task, "warmup_s": warm, "median_s": med, "datasets_per_s": shape.batch_size / med}


def write_table(
    path: Path, rows: dict[str, dict], shape: BatchShape, reps: int, command: str, note: str, smoke: bool = False
) -> str:
    smoke_f = "; smoke: F=1 for regression priors, XLA backend optimisation level 0" if smoke else ""
    lines = [
        "# Prior sampling throughput",
        "",
        f"- date: {datetime.date.today().isoformat()}",
        f"- device: `{jax.devices()}` ({os.cpu_count()} CPU cores visible, {platform.machine()})",
        f"- jax {jax.__version__}, Python {platform.python_version()}",
        f"- command: `{command}`",
        f"- workload: batch {shape.batch_size}, T={shape.seq_len}, F={shape.num_features} (all used{smoke_f});"
        f" jitted `make_batch_sampler`, one warm-up call (includes compilation), median of {reps} calls",
    ]
    if note:
        lines.append(f"- note: {note}")
    lines += [
        "",
        "| prior | task | datasets/s | ms per batch | warm-up (compile) s |",
        "|---|---|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['task']} | {r['datasets_per_s']:.1f} | {1000 * r['median_s']:.1f} | {r['warmup_s']:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny settings, < 30 s, temporary output folder")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: results/, smoke: a temp dir)")
    parser.add_argument("--priors", nargs="*", default=None, help="prior names (default: all registered)")
    parser.add_argument("--draws", type=int, default=6, help="datasets plotted per prior")
    parser.add_argument("--gallery-seq-len", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=1000)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(sys.argv[1:] if argv is None else argv)])

    names = args.priors or P.prior_names()
    out = args.out or (Path(tempfile.mkdtemp(prefix="prior_gallery_")) if args.smoke else RESULTS)
    expected = {"gp", "gp_hyper", "linear", "bnn", "scm", "tabpfn_v1_mix"}
    missing = sorted(expected - set(P.prior_names()))
    note = f"not registered when run: {', '.join(missing)}" if missing else ""
    print(f"priors: {names}" + (f" ({note})" if note else ""), flush=True)

    t_start = time.perf_counter()
    images = [n for n in names if is_image_prior(n)]
    for n in images:
        image_gallery(n, args.seed, out / f"gallery_{n}.png")
    if args.smoke:
        # one compile per prior: throughput is timed on the gallery's own samplers (T=100, F=1 or 2)
        samplers = gallery([n for n in names if n not in images], args.draws, 100, args.seed, out / "gallery.png")
        reps = 2
        rows = {n: throughput(n, sh, reps, args.seed, sampler=sm, warm=w) for n, (sm, sh, w) in samplers.items()}
        rows.update({n: throughput(n, BatchShape(args.draws, 100, 64), reps, args.seed) for n in images})
        shape = BatchShape(args.draws, 100, 2)  # (F=1 for the regression priors, 64 pixels for image priors)
    else:
        gallery([n for n in names if n not in images], args.draws, args.gallery_seq_len, args.seed,
                out / "gallery.png")
        shape = BatchShape(args.batch, args.seq_len, args.features)
        reps = args.reps
        rows = {}
        for n in names:
            rows[n] = throughput(n, shape, reps, args.seed)
            print(f"{n}: {rows[n]['datasets_per_s']:.1f} datasets/s", flush=True)
    text = write_table(out / "throughput.md", rows, shape, reps, command, note, smoke=args.smoke)
    print(text)
    print(f"wrote {out / 'gallery.png'} and {out / 'throughput.md'} in {time.perf_counter() - t_start:.1f} s")


if __name__ == "__main__":
    main()
