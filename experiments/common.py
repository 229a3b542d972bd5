"""What the paper experiments (``gp_mimicry``, ``gp_hyperprior``, ``bnn_vs_mcmc``) share: the
``--scale``/``--smoke`` command line, getting the trained PFN (shipped, trained now, or a run
directory), optional dependencies with a clear error, seeds, timing and writing results."""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

import pfnjax
from pfnjax.evaluators import ci95
from pfnjax.predict import PRETRAINED_DIR
from pfnjax.presets import preset_config

SCALES = ("cpu", "gpu")
# --smoke shrinks a preset to this (seconds on a CPU); the prior and data shape are kept
SMOKE_OVERRIDES = dict(steps=20, warmup_steps=2, batch_size=8, d_model=32, num_layers=2, num_heads=2, d_ff=64,
                       num_buckets=100, border_samples=5_000, checkpoint_every=20, log_every=10, evals=())

__all__ = ["SCALES", "add_common_args", "ci95", "device_name", "get_pfn", "mean_ci", "require", "timed",
           "write_results"]


def require(module: str) -> Any:
    """Import an optional dependency, or exit with the install command that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise SystemExit(f"this experiment needs {module!r}, which is not installed: "
                         f"pip install 'pfnjax[experiments]' ({err})") from err


def add_common_args(parser: argparse.ArgumentParser, out: Path) -> None:
    parser.add_argument("--scale", default="cpu", help=f"one of {SCALES}: the shipped 2-core-CPU models, or "
                        "GPU-sized models trained now (needs a GPU)")
    parser.add_argument("--smoke", action="store_true", help="the shipped cpu models on a few datasets: "
                        "seconds, for CI (with --retrain: tiny models trained now)")
    parser.add_argument("--retrain", action="store_true", help="train the scale's models instead of loading "
                        "the shipped ones")
    parser.add_argument("--runs", default="runs/experiments", help="where models trained now are saved "
                        "(a cut-off training run resumes from there)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out datasets and the baselines")
    parser.add_argument("--out", default=str(out), help="results directory")


def check_scale(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with a clear message on an unknown scale, or on ``gpu`` without a GPU."""
    if args.scale not in SCALES:
        parser.error(f"unknown --scale {args.scale!r}; choose one of {SCALES}")
    if args.scale == "gpu" and not args.smoke and jax.default_backend() != "gpu":
        parser.error(f"--scale gpu needs a GPU, but JAX's backend is {jax.default_backend()!r}")


def get_pfn(preset: str, args: argparse.Namespace, model: str | None = None) -> tuple[pfnjax.PFN, Path]:
    """The experiment's PFN for ``preset`` (``<name>-cpu`` or ``<name>-gpu``) and its run directory.

    ``model`` (a shipped name or a run directory) wins; a missing one is an error. Otherwise, at
    ``cpu`` scale and with ``--smoke``: the shipped ``<name>-cpu`` model, unless ``--retrain``
    (with ``--smoke``: a few-second model of the same prior, trained now). At ``gpu`` scale, or
    with ``--retrain``, the preset is trained into ``--runs/<preset>``, resuming a cut-off run.
    """
    if model is not None:
        if model not in pfnjax.shipped_models() and not Path(model).exists():
            raise SystemExit(f"no model {model!r}: not a shipped model {pfnjax.shipped_models()} nor a run directory")
        path = Path(model) if Path(model).exists() else PRETRAINED_DIR / model
        return pfnjax.load(path), path
    if args.smoke and not args.retrain:
        preset = preset.rsplit("-", 1)[0] + "-cpu"  # the smoke run checks the committed pipeline
    if args.smoke and args.retrain:
        run_dir = Path(args.runs) / f"{preset}-smoke"
        shutil.rmtree(run_dir, ignore_errors=True)
        # one device: a few-second run gains nothing from data parallelism
        result = pfnjax.train(preset_config(preset, **SMOKE_OVERRIDES), run_dir, progress=False,
                              devices=jax.devices()[:1])
        return pfnjax.PFN.from_train_result(result), run_dir
    if (args.scale == "cpu" or args.smoke) and not args.retrain:
        if preset not in pfnjax.shipped_models():
            raise SystemExit(f"the shipped model {preset!r} is missing from this install; "
                             "train it with --retrain")
        return pfnjax.load(preset), PRETRAINED_DIR / preset
    run_dir = Path(args.runs) / preset
    start = time.perf_counter()
    pfnjax.train(preset_config(preset), run_dir)
    print(f"trained {preset} in {run_dir} ({time.perf_counter() - start:.0f} s this call)", flush=True)
    return pfnjax.load(run_dir), run_dir


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``(fn() with its arrays ready, seconds)``."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start


def mean_ci(values: Any) -> str:
    """``"mean ± 95% CI half-width"`` of per-dataset values."""
    values = np.asarray(values, np.float64)
    return f"{values.mean():.3f} ± {ci95(values):.3f}"


def device_name() -> str:
    device = jax.devices()[0]
    return f"{device.platform}: {device.device_kind}"


def write_results(out: Path, smoke: bool, table: str, records: dict, figures: dict[str, Callable[[Path], None]]
                  ) -> None:
    """``results[_smoke].md`` (``table``), ``results[_smoke].json`` (``records``) and each figure
    ``name[_smoke].png`` drawn by ``figures[name](path)``."""
    out.mkdir(parents=True, exist_ok=True)
    suffix = "_smoke" if smoke else ""
    (out / f"results{suffix}.md").write_text(table + "\n")
    (out / f"results{suffix}.json").write_text(json.dumps(records, indent=1))
    for name, draw in figures.items():
        draw(out / f"{name}{suffix}.png")


def pyplot():
    """matplotlib's pyplot on the non-interactive backend."""
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
