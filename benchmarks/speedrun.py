"""CPU speedrun: quality against CPU-minutes of training, one curve per architecture and recipe.

One command trains a preset plus recipe for a wall-clock budget, checkpoints it every
``--score-every-min`` minutes of training, then scores every checkpoint (after training, so scoring
never stalls it) and appends the scores to ``benchmarks/results/speedrun_cpu.jsonl``. The markdown
summary and the plot are redrawn from the whole JSONL each time.

What a checkpoint is scored on depends on what the run trained:

* a classifier: mean ROC AUC on ``experiments/tabular``'s 23 classification datasets, with its splits
  and ``PFNClassifier``'s defaults (``--splits`` of the 5; the baselines' lines are their cached
  means over the same splits);
* a regressor: mean normalised RMSE (RMSE / the training split's target std) on the 12 regression
  datasets with ``PFNRegressor``'s defaults;
* a model of the ``gp`` prior: the mean NLL gap to the exact GP posterior over contexts
  1 to T-1 (1–199 for ``gp-mimicry-cpu``) on held-out prior data (``experiments/gp_mimicry``'s
  setting).

CPU-minutes are the training process's wall minutes on an otherwise idle machine, compile time
included, checkpoint writes excluded. The learning-rate schedule runs over ``--steps`` (the
preset's by default); pick steps the budget reaches, the summary gives the fraction done.

    python benchmarks/speedrun.py --name classic-adamw --preset cls-small --budget-min 10 --steps 900
    python benchmarks/speedrun.py --name classic-muon --preset cls-small --budget-min 10 --steps 900 --optimizer muon
    python benchmarks/speedrun.py --report            # redraw speedrun_cpu.md / .png from the JSONL

A run can go on in a later session: ``--resume`` with the same flags and a larger ``--budget-min``
continues from the last checkpoint (resume is exact) and scores only the new checkpoints.

Every ``TrainConfig`` field is a flag (``--model per_feature``, ``--thinking-rows 16``,
``--averaging ema``, ...), as in ``pfnjax train``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import shutil
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from pfnjax.config import add_config_flags, config_overrides
from pfnjax.model.base import count_params
from pfnjax.presets import PRESETS, preset_config

from _results import device_description

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
TABULAR = ROOT / "experiments" / "tabular"
RF_LEVEL_AUC = 0.842  # random forest's mean ROC AUC on the 23 datasets (5 splits), the speedrun's first bar
KEEP_CHECKPOINTS = 1000  # every checkpoint is kept for scoring (fixed, so a resumed run has the same config)
STATE_FILE = "speedrun_state.json"  # the run's checkpoints and clock, for --resume
METRICS = {  # metric -> (label, larger is better)
    "auc": ("mean ROC AUC, 23 classification datasets", True),
    "nrmse": ("mean normalised RMSE, 12 regression datasets", False),
    "gp_gap": ("mean NLL gap to the exact GP, contexts 1 to T-1 (nats)", False),
}
BASELINE_LINES = {"auc": ("logistic", "random_forest", "catboost"), "nrmse": ("gp", "catboost", "ridge")}


def _module(path: Path, name: str):
    """Import an experiment's script by path (two of them are called ``run.py``)."""
    if name in sys.modules:
        return sys.modules[name]
    sys.path.append(str(path.parent))
    sys.path.append(str(path.parents[1]))  # experiments/common.py
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- training
def train(cfg, run_dir: Path, budget_s: float, every_s: float, progress: bool = True, resume: bool = False) -> dict:
    """Train until ``budget_s`` seconds (or the schedule's end), saving a checkpoint every
    ``every_s`` seconds of training; returns the run's record with the checkpoints' times.

    With ``resume``, continue the run in ``run_dir`` from its last checkpoint (a later session):
    its clock starts at that checkpoint's training time, so the new set-up and compile count as
    training time (about 20-40 s, which a resumed run pays again)."""
    from tqdm.auto import tqdm

    from pfnjax.training import Trainer

    state_path = run_dir / STATE_FILE
    checkpoints, losses, datasets, offset, cpu_offset = [], [], 0, 0.0, 0.0
    if resume:
        if not state_path.exists():
            raise SystemExit(f"--resume: {run_dir} holds no speedrun to continue ({STATE_FILE} is missing)")
        saved = json.loads(state_path.read_text())
        checkpoints, datasets = saved["checkpoints"], saved["datasets_seen"]
        offset, cpu_offset = checkpoints[-1]["train_s"], checkpoints[-1].get("process_cpu_s", 0.0)
    elif run_dir.exists():
        shutil.rmtree(run_dir)  # a speedrun times one uninterrupted training
    start, cpu_start = time.perf_counter() - offset, time.process_time() - cpu_offset
    paused = 0.0  # checkpoint writes are not training time
    trainer = Trainer(cfg, run_dir, resume=resume, progress=False)
    if resume and trainer.step != checkpoints[-1]["step"]:
        raise SystemExit(f"--resume: the latest checkpoint is step {trainer.step}, the speedrun's last is "
                         f"{checkpoints[-1]['step']}")
    num_params = count_params(nnx.merge(trainer.graphdef, trainer.state.params))
    bar = tqdm(total=round(budget_s), desc=f"speedrun ({num_params / 1e6:.2f}M params)", unit="s",
               dynamic_ncols=True, disable=not progress)
    next_save = (math.floor(offset / every_s) + 1) * every_s  # the next multiple of every_s
    last_tick, last_datasets = time.perf_counter(), datasets
    try:
        while trainer.step < cfg.optim.steps:
            batch = next(stage for stage in reversed(trainer.stages) if stage[0] <= trainer.step)[2]
            metrics = trainer.train_step()
            losses.append(float(metrics["loss"]))  # also waits for the step: the clock sees finished work
            datasets += batch
            elapsed = time.perf_counter() - start - paused
            now = time.perf_counter()
            if now - last_tick > 2.0:
                bar.set_postfix(step=trainer.step, loss=f"{np.mean(losses[-20:]):.3f}",
                                ds_per_s=f"{(datasets - last_datasets) / (now - last_tick):.0f}")
                last_tick, last_datasets = now, datasets
            bar.n = min(round(elapsed), bar.total)
            bar.refresh()
            if elapsed >= next_save or elapsed >= budget_s or trainer.step == cfg.optim.steps:
                t0 = time.perf_counter()
                trainer.save()
                # the process's CPU seconds show whether another job shared the cores (idle: ~ cores x wall)
                checkpoints.append({"step": trainer.step, "train_s": elapsed, "datasets_seen": datasets,
                                    "loss": float(np.mean(losses[-50:])),
                                    "process_cpu_s": time.process_time() - cpu_start})
                state_path.write_text(json.dumps({"checkpoints": checkpoints, "datasets_seen": datasets}))
                next_save = (math.floor(elapsed / every_s) + 1) * every_s  # the next multiple of every_s
                paused += time.perf_counter() - t0
                if elapsed >= budget_s:
                    break
    finally:
        bar.close()
        trainer.close()
    return {"num_params": num_params, "checkpoints": checkpoints, "steps_done": trainer.step,
            "schedule_done": trainer.step / cfg.optim.steps,
            "datasets_per_s": datasets / max(checkpoints[-1]["train_s"], 1e-9) if checkpoints else float("nan")}


# --------------------------------------------------------------------------- scoring
def score(run_dir: Path, step: int, splits: int, gp_datasets: int) -> dict:
    """The checkpoint's scores: AUC or nRMSE on the real datasets, and the GP gap for ``gp`` models."""
    import pfnjax

    pfn = pfnjax.load(run_dir, step)
    task = pfn.head.task
    out = {}
    t0 = time.perf_counter()
    if task == "classification" or pfn.train_config.prior.name != "gp":
        out["auc" if task == "classification" else "nrmse"] = tabular_score(pfn, task, splits)
    if pfn.train_config.prior.name == "gp":
        out["gp_gap"] = gp_gap(pfn, gp_datasets)
    out["score_s"] = time.perf_counter() - t0
    return out


def tabular_score(pfn, task: str, splits: int) -> float:
    """Mean over ``experiments/tabular``'s datasets of the mean over its first ``splits`` splits."""
    tab = _module(TABULAR / "run.py", "tabular_run")
    data = sys.modules["datasets"]
    args = argparse.Namespace(model=pfn, n_estimators=None, pfn_options=None)
    metric = "auc" if task == "classification" else "nrmse"
    means = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in data.names(task):
            ds = data.load(name)
            values = [tab.run_pfn(ds, train, test, split, args)[metric]
                      for split, (train, test) in enumerate(data.splits(ds, 5, 0)) if split < splits]
            means.append(np.mean(values))
    return float(np.mean(means))


def gp_gap(pfn, num_datasets: int) -> float:
    """Mean NLL gap to the exact GP over ``experiments/gp_mimicry``'s context sizes (1 to T-1)."""
    from pfnjax.evaluators import HeldOutEvaluator
    from pfnjax.priors.base import prior_from_spec

    mimicry = _module(ROOT / "experiments" / "gp_mimicry" / "run.py", "gp_mimicry_run")
    prior = prior_from_spec(pfn.prior_spec)
    sizes = mimicry.context_sizes(pfn.train_config.data.seq_len)
    evaluator = HeldOutEvaluator.for_pfn(pfn, prior, jax.random.key(0), context_sizes=sizes,
                                         num_datasets=num_datasets, num_queries=20)
    return float(np.mean([row.gap for row in evaluator.rows(pfn.params)]))


def baseline_means(task_metric: str, splits: int) -> dict[str, float]:
    """The tabular baselines' cached means over the same datasets and splits."""
    task = "classification" if task_metric == "auc" else "regression"
    cache = TABULAR / "results" / "cache" / task
    out = {}
    for method in BASELINE_LINES.get(task_metric, ()):
        path = cache / f"{method}.json"
        if path.exists():
            records = json.loads(path.read_text())
            out[method] = float(np.mean([np.mean([r[task_metric] for r in runs[:splits]])
                                         for runs in records.values()]))
    return out


# --------------------------------------------------------------------------- results
def read_records(path: Path) -> dict[str, dict]:
    """``{run name: its latest run record with its scores}`` from the JSONL (a rerun replaces a run)."""
    runs: dict[str, dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["type"] == "run":
                runs[record["name"]] = {**record, "scores": []}
            elif record["name"] in runs:
                runs[record["name"]]["scores"].append(record)
    return runs


def crossing(scores: list[dict], metric: str, level: float, larger: bool) -> float | None:
    """The first CPU-minute at which ``metric`` reaches ``level`` (linear between checkpoints)."""
    previous = None
    for s in scores:
        if metric not in s:
            continue
        value, minute = s[metric], s["train_s"] / 60
        if (value >= level) if larger else (value <= level):
            if previous is None:
                return minute
            (m0, v0) = previous
            return m0 + (minute - m0) * (level - v0) / (value - v0) if value != v0 else minute
        previous = (minute, value)
    return None


def at_minute(scores: list[dict], metric: str, minute: float) -> float | None:
    """The metric of the last checkpoint at or before ``minute`` (None if the run stopped earlier)."""
    points = [(s["train_s"] / 60, s[metric]) for s in scores if metric in s]
    if not points or points[-1][0] < minute * 0.95:  # 5% slack: checkpoints land just before the mark
        return None
    return next(v for m, v in reversed(points) if m <= minute * 1.05)


def summary(runs: dict[str, dict]) -> str:
    lines = ["Each run: `python benchmarks/speedrun.py --name NAME --preset PRESET ...flags` "
             "(its flags are in the table); scores from `speedrun_cpu.jsonl`.", ""]
    for metric, (label, larger) in METRICS.items():
        chosen = {n: r for n, r in runs.items() if any(metric in s for s in r["scores"])}
        if not chosen:
            continue
        splits = {r["splits"] for r in chosen.values()}
        lines += [f"## {label}", ""]
        if metric in BASELINE_LINES:
            base = baseline_means(metric, min(splits))
            lines.append("Baselines over the same splits (tuned, `experiments/tabular` cache): "
                         + ", ".join(f"{k} {v:.4f}" for k, v in base.items()) + ".")
            lines.append("")
        level_text = " | min to RF-level (0.842)" if metric == "auc" else ""
        lines += [f"| run | model | recipe flags | params | datasets/s | datasets seen | schedule done | "
                  f"@10 min | @30 min | @90 min | best (min){level_text} |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if level_text else "")]
        for name, r in chosen.items():
            scores = r["scores"]
            cells = [at_minute(scores, metric, m) for m in (10, 30, 90)]
            values = [(s[metric], s["train_s"] / 60) for s in scores if metric in s]
            best = max(values) if larger else min(values)
            flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in r["overrides"].items()
                             if k not in ("model", "evals")) or "(preset)"
            row = (f"| {name} | {r['model']} | {flags} | {r['num_params'] / 1e6:.2f}M | {r['datasets_per_s']:.1f} | "
                   f"{scores[-1]['datasets_seen']:,} | {r['schedule_done']:.0%} | "
                   + " | ".join("—" if c is None else f"{c:.4f}" for c in cells)
                   + f" | {best[0]:.4f} ({best[1]:.1f}) |")
            if level_text:
                hit = crossing(scores, metric, RF_LEVEL_AUC, True)
                row += f" {'not reached' if hit is None else f'{hit:.1f}'} |"
            lines.append(row)
        lines.append("")
        lines += changes(chosen, metric, larger)
    return "\n".join(lines)


MARKS = (2, 4, 6, 8, 10, 12, 15, 20, 30, 45, 60, 90)  # CPU-minutes the change table reads the curves at


def changes(runs: dict[str, dict], metric: str, larger: bool) -> list[str]:
    """What each run bought over the first run in the JSONL (the baseline), at the same CPU-minutes,
    and how busy the cores were (process CPU-seconds per second: ~2 on the idle 2-core machine;
    lower means the run shared the cores, or compiled)."""
    names = list(runs)
    if len(names) < 2:
        return []
    base = runs[names[0]]["scores"]
    reached = [m for m in MARKS if any(at_minute(r["scores"], metric, m) is not None for r in runs.values())]
    lines = [f"Each run against `{names[0]}` at the same CPU-minutes: the score, and in brackets the difference "
             f"({'positive' if larger else 'negative'} = better). Cores busy: the run's process CPU-seconds per "
             "second of training.", "",
             "| run | " + " | ".join(f"@{m} min" for m in reached) + " | cores busy |",
             "|---|" + "---:|" * (len(reached) + 1)]
    for name, r in runs.items():
        cells = []
        for m in reached:
            value, ref = at_minute(r["scores"], metric, m), at_minute(base, metric, m)
            if value is None:
                cells.append("—")
            elif ref is None or name == names[0]:
                cells.append(f"{value:.4f}")
            else:
                cells.append(f"{value:.4f} ({value - ref:+.4f})")
        last = r["scores"][-1]
        busy = f"{last['process_cpu_s'] / last['train_s']:.2f}" if "process_cpu_s" in last else "—"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {busy} |")
    return lines + [""]


def plot(runs: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in METRICS if any(m in s for r in runs.values() for s in r["scores"])]
    if not metrics:
        return
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        label, _ = METRICS[metric]
        splits = min(r["splits"] for r in runs.values() if any(metric in s for s in r["scores"]))
        for name, r in runs.items():
            points = [(s["train_s"] / 60, s[metric]) for s in r["scores"] if metric in s]
            if points:
                ax.plot(*zip(*points), marker="o", label=name)
        for i, (method, value) in enumerate(baseline_means(metric, splits).items()):
            ax.axhline(value, color=f"C{7 + i % 3}", linestyle="--", linewidth=1, label=f"{method} (tuned)")
        ax.set_xlabel("CPU-minutes of training (2 cores)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(jsonl: Path) -> None:
    runs = read_records(jsonl)
    stem = jsonl.with_suffix("")
    header = (f"# CPU speedrun: quality per CPU-minute\n\n- device: {device_description()}; jax {jax.__version__}\n"
              f"- plot: `{stem.name}.png`; raw: `{jsonl.name}`\n\n")
    stem.with_suffix(".md").write_text(header + summary(runs) + "\n")
    plot(runs, stem.with_suffix(".png"))
    print(summary(runs))


# --------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", help="the run's name (a rerun of a name replaces its curve)")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="the preset the recipe flags modify")
    parser.add_argument("--budget-min", type=float, default=10.0, help="training budget in CPU-minutes")
    parser.add_argument("--score-every-min", type=float, default=2.0, help="checkpoint every this many minutes")
    parser.add_argument("--splits", type=int, default=2, help="tabular splits per dataset scored (of 5)")
    parser.add_argument("--gp-datasets", type=int, default=256, help="held-out GP datasets for the gap")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "speedrun", help="where checkpoints go")
    parser.add_argument("--jsonl", type=Path, default=RESULTS / "speedrun_cpu.jsonl")
    parser.add_argument("--report", action="store_true", help="only redraw the markdown and plot")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run of this name from its last checkpoint up to --budget-min (same flags)")
    add_config_flags(parser)
    args = parser.parse_args(argv)
    if args.report:
        write_report(args.jsonl)
        return 0
    if not args.name or not args.preset:
        parser.error("--name and --preset are required (or --report)")
    if args.budget_min <= 0 or args.score_every_min <= 0 or not 1 <= args.splits <= 5:
        parser.error("--budget-min and --score-every-min must be positive, --splits in 1..5")
    overrides = config_overrides(args)
    # a bad recipe setting fails here, before training; every checkpoint is kept for scoring
    overrides.setdefault("evals", ())  # in-training evaluators would stall the clock; checkpoints are scored
    cfg = preset_config(args.preset, **overrides, keep_checkpoints=KEEP_CHECKPOINTS)
    run_dir = args.runs / args.name
    print(f"{args.name}: preset {args.preset}, model {cfg.model.name}, {overrides}; {device_description()}", flush=True)
    scored = read_records(args.jsonl).get(args.name, {}).get("scores", []) if args.resume else []
    record = train(cfg, run_dir, args.budget_min * 60, args.score_every_min * 60, not args.no_progress, args.resume)
    run = {"type": "run", "name": args.name, "preset": args.preset, "model": cfg.model.name,
           "overrides": {k: v for k, v in overrides.items()}, "budget_min": args.budget_min, "splits": args.splits,
           "device": device_description(), "time": time.time(), "resumed": args.resume,
           **{k: v for k, v in record.items() if k != "checkpoints"}}
    lines = [run] + scored  # a resumed run keeps the scores of its earlier checkpoints
    done = {line["step"] for line in scored}
    for point in record["checkpoints"]:
        if point["step"] in done:
            continue
        scores = score(run_dir, point["step"], args.splits, args.gp_datasets)
        line = {"type": "score", "name": args.name, **point, **scores}
        print(json.dumps(line), flush=True)
        lines.append(line)
    args.jsonl.parent.mkdir(parents=True, exist_ok=True)
    with open(args.jsonl, "a") as f:
        f.write("".join(json.dumps(line) + "\n" for line in lines))
    write_report(args.jsonl)
    return 0


if __name__ == "__main__":
    sys.exit(main())
