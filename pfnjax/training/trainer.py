"""The training loop as an object you can drive: set up, step, inspect, evaluate, continue.

:func:`train` is ``Trainer(cfg, run_dir).run()``. From a notebook::

    trainer = pfnjax.training.Trainer(pfnjax.preset_config("tiny"))
    trainer.run(until=200)            # train to step 200 (logging, evaluators, checkpoints)
    pfn = trainer.pfn()               # a pfnjax.PFN of the current parameters
    trainer.evaluate()                # run the config's evaluators now
    trainer.run()                     # continue to cfg.optim.steps
    result = trainer.result()

The pieces: setup (prior, head, model, state, run directory, resume) in ``__init__``;
:meth:`Trainer.train_step` (one optimizer step); hooks (``hook(trainer, step, record)`` after
every step; ``record`` is the logged metrics dict on logging steps, else None); and
:meth:`Trainer.run`, the loop that logs, evaluates, checkpoints and calls the hooks.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from pfnjax import checkpoint as ckpt
from pfnjax.config import TrainConfig, config_differences
from pfnjax.evaluators import EvalContext, build_evaluator, make_predict_fn
from pfnjax.heads import Head
from pfnjax.model.base import ModelConfigBase, ModelIO, count_params
from pfnjax.priors.base import prior_info, prior_spec
from pfnjax.priors.from_config import build_prior, feature_count_sampler
from pfnjax.runs import STREAM_EVAL, run_metadata, stream_key
from pfnjax.training.state import TrainState, init_state
from pfnjax.training.step import make_mesh, make_train_step

Hook = Callable[["Trainer", int, "dict | None"], None]


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns: the final state and what is needed to use it.

    ``history`` holds the logged training metrics, ``evaluations`` the evaluators' metrics
    (``cfg.loop.evals``); both are also lines of ``metrics.jsonl``.
    """

    config: TrainConfig
    io: ModelIO
    graphdef: nnx.GraphDef
    state: TrainState
    head: Head
    history: list[dict]
    run_dir: Path | None
    prior_spec: dict
    prior_info: dict
    evaluations: list[dict] = dataclasses.field(default_factory=list)

    @property
    def model_config(self) -> ModelConfigBase:
        return self.config.model

    @property
    def model(self) -> nnx.Module:
        return nnx.merge(self.graphdef, self.params)

    @property
    def params(self) -> Any:
        """The weights inference uses: the averaged ones with ``optim.averaging``, else the trained ones."""
        return self.state.inference_params


# settings that may change when a run is resumed: the step count (it may grow: the learning-rate
# schedule then follows the new count) and the loop section (logging, checkpoints, evaluators)
_RESUMABLE_CHANGES = ("optim.steps", "loop.")


def check_resumable(saved: dict, cfg: TrainConfig, run_path: Path, restored_step: int) -> list[str]:
    """Raise a ``ValueError`` naming every field that differs from the saved run's config, unless
    all differences may change on resume; returns the differences that were allowed."""
    saved_cfg = TrainConfig.from_dict(saved.get("train", {}), checked=False)
    diffs = config_differences(saved_cfg, cfg)
    blocking = [d for d in diffs if not d.startswith(_RESUMABLE_CHANGES)]
    if blocking:
        raise ValueError(f"the run in {run_path} was written with a different config; differing fields: "
                         f"{'; '.join(blocking)}. Use a new --out directory, or the run's settings")
    if cfg.optim.steps < restored_step:
        raise ValueError(f"the run in {run_path} is at step {restored_step}, beyond --steps {cfg.optim.steps}")
    return diffs


class Trainer:
    """Train a PFN on ``cfg.prior``; see the module docstring. Pure in its inputs: the same config
    gives the same run, and a resumed run continues it exactly.

    Args:
        cfg: the run configuration.
        run_dir: where checkpoints (``checkpoints/``), ``config.json`` and ``metrics.jsonl`` go;
            None trains in memory without checkpoints.
        resume: continue from the latest checkpoint in ``run_dir`` if there is one.
        progress: show a progress bar with step, loss and datasets/s.
        devices: devices to train on (default: all).
        hooks: called as ``hook(trainer, step, record)`` after every step.
    """

    def __init__(self, cfg: TrainConfig, run_dir: str | Path | None = None, *, resume: bool = True,
                 progress: bool = True, devices: list | None = None, hooks: list[Hook] | tuple = ()):
        self.cfg = cfg
        self.progress = progress
        self.hooks = list(hooks)
        self.prior = build_prior(cfg.prior)
        self.mesh = make_mesh(devices)
        self.run_path = Path(run_dir) if run_dir is not None else None
        self.is_chief = jax.process_index() == 0  # every process trains and checkpoints; one writes logs
        self.history: list[dict] = []
        self.evaluations: list[dict] = []

        replicated = NamedSharding(self.mesh, P())
        self.graphdef, state, self.io, self.head = init_state(cfg, self.prior)
        self.state = jax.device_put(state, replicated)
        self.spec, self.info = prior_spec(self.prior), prior_info(self.prior)
        self.metadata = run_metadata(cfg, self.io, self.head, self.spec, self.info)
        self.manager = None
        if self.run_path is not None:
            self._open_run(resume, replicated)

        # one compiled step per length-curriculum stage (cfg.data.stages), each with its own batch shape
        self.stages = [(start, make_train_step(stage_cfg, self.prior, self.graphdef, self.mesh, self.head),
                        stage_cfg.data.batch_size * stage_cfg.data.accum_steps)
                       for start, stage_cfg in cfg.stage_configs()]
        self.predict = make_predict_fn(self.graphdef)
        self.evaluators = []
        if cfg.loop.evals and self.is_chief:
            context = EvalContext(self.prior, self.head, self.io, stream_key(cfg.seed, STREAM_EVAL),
                                  feature_count_sampler(cfg.data), self.graphdef)
            self.evaluators = [(entry, build_evaluator(entry, context)) for entry in cfg.loop.evals]
        self._metrics_file = None
        self._recent: list[dict] = []
        self._tick, self._datasets_since_tick = time.perf_counter(), 0

    def _open_run(self, resume: bool, replicated: NamedSharding) -> None:
        run_path = self.run_path
        run_path.mkdir(parents=True, exist_ok=True)
        # every process makes the same Orbax calls in the same order (each is a cross-process barrier)
        self.manager = ckpt.make_manager(run_path, keep=self.cfg.loop.keep_checkpoints)
        latest = self.manager.latest_step() if resume else None
        try:
            if latest is not None:
                # compare configs before Orbax restores anything: a shape mismatch would fail deep inside it
                check_resumable(ckpt.read_step_config(run_path, latest), self.cfg, run_path, latest)
                self.state, _ = ckpt.restore_from_manager(self.manager, ckpt.abstract_like(self.state, replicated),
                                                          latest)
        except ValueError:  # CheckpointError too
            self.manager.close()
            self.manager = None
            raise
        if self.is_chief:
            (run_path / "config.json").write_text(json.dumps(self.metadata, indent=2, sort_keys=True))

    # ------------------------------------------------------------------ state
    @property
    def step(self) -> int:
        """The number of optimizer steps taken so far."""
        return int(_host(self.state.step))

    @property
    def params(self) -> Any:
        """The weights inference uses (the averaged ones with ``optim.averaging``)."""
        return self.state.inference_params

    def pfn(self):
        """A :class:`pfnjax.PFN` of the current parameters (host copies), for notebooks and evaluation."""
        from pfnjax.predict import PFN

        return PFN.from_train_result(self.result(host=True))

    def result(self, host: bool = False) -> TrainResult:
        state = jax.tree.map(_host, self.state) if host else self.state
        return TrainResult(self.cfg, self.io, self.graphdef, state, self.head, self.history, self.run_path,
                           self.spec, self.info, self.evaluations)

    # ------------------------------------------------------------------ the pieces
    def train_step(self) -> dict:
        """One optimizer step (the stage of the current step's length curriculum); returns its
        metrics (device arrays)."""
        step = self.step
        _, step_fn, datasets = next(stage for stage in reversed(self.stages) if stage[0] <= step)
        self.state, metrics = step_fn(self.state)
        self._recent.append(metrics)
        self._datasets_since_tick += datasets
        return metrics

    def evaluate(self) -> dict[str, dict[str, float]]:
        """Run every evaluator of ``cfg.loop.evals`` now: ``{name: metrics}`` (also logged)."""
        return self._evaluate([entry for entry, _ in self.evaluators])

    def _evaluate(self, entries: list) -> dict[str, dict[str, float]]:
        if not entries:
            return {}
        params = jax.tree.map(_host, self.state.inference_params)  # evaluators score what users get
        wanted = {entry.name for entry in entries}
        out = {entry.name: evaluator.run(self.predict, params) for entry, evaluator in self.evaluators
               if entry.name in wanted}
        record = {"step": self.step, "eval": out, "time": time.time()}
        self.evaluations.append(record)
        self._write(record)
        self._tick, self._datasets_since_tick = time.perf_counter(), 0  # evaluation time is not throughput
        return out

    def save(self) -> None:
        """Checkpoint the current state (async; atomic once written)."""
        if self.manager is not None:
            loss = self.history[-1]["loss"] if self.history else float("nan")
            ckpt.save(self.manager, self.step, self.state, self.metadata, metrics={"loss": loss})

    def _log(self) -> dict:
        host = [jax.tree.map(_host, m) for m in self._recent]
        now = time.perf_counter()
        record = {
            "step": self.step,
            "loss": float(np.mean([m["loss"] for m in host])),
            "grad_norm": float(np.mean([m["grad_norm"] for m in host])),
            "datasets_per_s": self._datasets_since_tick / max(now - self._tick, 1e-9),
            "time": time.time(),
        }
        if not np.isfinite(record["loss"]):
            raise FloatingPointError(f"training diverged: loss {record['loss']} at step {record['step']}")
        self.history.append(record)
        self._write(record)
        self._tick, self._recent, self._datasets_since_tick = now, [], 0
        return record

    def _write(self, record: dict) -> None:
        if self.run_path is not None and self.is_chief:
            if self._metrics_file is None:
                self._metrics_file = open(self.run_path / "metrics.jsonl", "a")
            self._metrics_file.write(json.dumps(record) + "\n")
            self._metrics_file.flush()

    # ------------------------------------------------------------------ the loop
    def run(self, until: int | None = None) -> TrainResult:
        """Train to step ``until`` (default: ``cfg.optim.steps``), logging every ``log_every`` steps,
        running each evaluator on its schedule and checkpointing every ``checkpoint_every`` steps
        and at the end; returns :meth:`result`. Can be called again to continue."""
        loop, total = self.cfg.loop, self.cfg.optim.steps
        last = total if until is None else min(total, until)
        bar = _progress_bar(self.step, total, self.progress and self.is_chief,
                            count_params(nnx.merge(self.graphdef, self.state.params)))
        try:
            while self.step < last:
                self.train_step()
                done = self.step
                record = None
                if done % loop.log_every == 0 or done == last:
                    record = self._log()
                    if bar is not None:
                        bar.set_postfix(loss=f"{record['loss']:.4f}", ds_per_s=f"{record['datasets_per_s']:.0f}")
                due = [entry for entry, _ in self.evaluators if done % entry.every == 0 or done == total]
                self._evaluate(due)
                if bar is not None:
                    bar.update(1)
                if done % loop.checkpoint_every == 0 or done == last:
                    self.save()
                for hook in self.hooks:
                    hook(self, done, record)
        finally:
            if bar is not None:
                bar.close()
            if self.manager is not None:
                self.manager.wait_until_finished()
        return self.result()

    def close(self) -> None:
        """Finish pending checkpoint writes and release files."""
        if self._metrics_file is not None:
            self._metrics_file.close()
            self._metrics_file = None
        if self.manager is not None:
            self.manager.wait_until_finished()
            self.manager.close()
            self.manager = None

    def __enter__(self) -> "Trainer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def train(
    cfg: TrainConfig,
    run_dir: str | Path | None = None,
    *,
    resume: bool = True,
    progress: bool = True,
    devices: list | None = None,
    stop_after: int | None = None,
    on_step: Callable[[int, dict | None], None] | None = None,
    hooks: list[Hook] | tuple = (),
) -> TrainResult:
    """Train a PFN on ``cfg.prior`` (:class:`Trainer` set up, run and closed).

    Args:
        cfg: the run configuration.
        run_dir: where checkpoints (``checkpoints/``), ``config.json`` and ``metrics.jsonl`` go;
            None trains in memory without checkpoints.
        resume: continue from the latest checkpoint in ``run_dir`` if there is one. A resumed run
            may raise ``steps`` (extending a finished run) and change the loop section; any other
            difference from the saved config is an error that names the fields.
        progress: show a progress bar with step, loss and datasets/s.
        devices: devices to train on (default: all).
        stop_after: stop (after checkpointing) once this step is reached, as if preempted.
        on_step: called as ``on_step(step, record)`` after every step; ``record`` is the logged
            metrics dict on logging steps, else None.
        hooks: called as ``hook(trainer, step, record)`` after every step (the trainer holds the params).
    """
    hooks = list(hooks)
    if on_step is not None:
        hooks.append(lambda trainer, step, record: on_step(step, record))
    with Trainer(cfg, run_dir, resume=resume, progress=progress, devices=devices, hooks=hooks) as trainer:
        return trainer.run(until=stop_after)


def _host(value: Any) -> np.ndarray:
    """Host copy of a replicated array; also on multi-host meshes, where it is not fully addressable."""
    return np.asarray(value.addressable_data(0)) if isinstance(value, jax.Array) else np.asarray(value)


def _progress_bar(start: int, total: int, enabled: bool, num_params: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc=f"train ({num_params / 1e6:.2f}M params)", unit="step", dynamic_ncols=True)


__all__ = ["Hook", "TrainResult", "Trainer", "check_resumable", "train"]
