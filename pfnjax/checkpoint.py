"""Orbax checkpoints: async saves of the train state plus the run config, atomic commits,
the last K plus the best one kept, and restores onto any device count.

Layout: ``<run>/checkpoints/<step>/{state,config}``. Orbax writes each step into a temporary
directory and renames it only once complete, so a checkpoint cut off halfway (preemption,
SIGKILL) is never listed and never restored.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

CHECKPOINT_SUBDIR = "checkpoints"
# create=False: reading never creates directories (read_only=True only adds a log warning).
_READ_OPTIONS = ocp.CheckpointManagerOptions(create=False, enable_async_checkpointing=False)


class CheckpointError(ValueError):
    """A checkpoint directory is missing, empty or unreadable."""


__all__ = ["CHECKPOINT_SUBDIR", "CheckpointError", "abstract_like", "all_steps", "checkpoint_dir", "latest_step",
           "make_manager", "read_config", "read_step_config", "restore", "restore_from_manager", "restore_partial", "save"]


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir).absolute() / CHECKPOINT_SUBDIR


def make_manager(run_dir: str | Path, keep: int = 3, *, read_only: bool = False) -> ocp.CheckpointManager:
    """A manager that keeps the latest ``keep`` checkpoints plus the one with the lowest ``loss`` metric."""
    policy = ocp.checkpoint_managers.AnyPreservationPolicy(
        [
            ocp.checkpoint_managers.LatestN(n=keep),
            ocp.checkpoint_managers.BestN(get_metric_fn=lambda m: m["loss"], reverse=True, n=1),
        ]
    )
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy,
        enable_async_checkpointing=True,
        create=not read_only,
        read_only=read_only,
    )
    return ocp.CheckpointManager(checkpoint_dir(run_dir), options=options, item_names=("state", "config"))


def save(manager: ocp.CheckpointManager, step: int, state: Any, config: dict, metrics: dict | None = None) -> None:
    """Start an async save of ``state`` (a pytree of arrays) and ``config`` (JSON) at ``step``."""
    manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config)),
        metrics=metrics,
        force=True,
    )


def _require_checkpoints(run_dir: str | Path) -> Path:
    path = checkpoint_dir(run_dir)
    if not Path(run_dir).exists():
        raise CheckpointError(f"run directory {str(run_dir)!r} does not exist")
    if not path.is_dir():
        raise CheckpointError(f"{str(run_dir)!r} has no {CHECKPOINT_SUBDIR}/ directory: not a pfnjax run")
    return path


def latest_step(run_dir: str | Path) -> int | None:
    """The newest fully written checkpoint step, or None if the run has none yet."""
    if not checkpoint_dir(run_dir).is_dir():
        return None
    with ocp.CheckpointManager(checkpoint_dir(run_dir), options=_READ_OPTIONS) as m:
        return m.latest_step()


def read_config(run_dir: str | Path, step: int | None = None) -> dict:
    """The run config (JSON) saved with checkpoint ``step`` (default: the latest)."""
    _require_checkpoints(run_dir)
    return read_step_config(run_dir, _resolve_step(run_dir, step))


def read_step_config(run_dir: str | Path, step: int) -> dict:
    """The config JSON of a known, complete checkpoint ``step``, read as a plain file (no Orbax
    call, so no cross-process barrier: safe in multi-process training)."""
    path = checkpoint_dir(run_dir)
    config_file = path / str(step) / "config" / "metadata"
    try:
        return json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path / str(step)} has an unreadable config: {exc}") from exc


def _resolve_step(run_dir: str | Path, step: int | None) -> int:
    available = all_steps(run_dir)
    if not available:
        raise CheckpointError(f"no complete checkpoint in {checkpoint_dir(run_dir)}")
    if step is None:
        return max(available)
    if step not in available:
        raise CheckpointError(f"checkpoint step {step} not found in {checkpoint_dir(run_dir)}; have {available}")
    return step


def all_steps(run_dir: str | Path) -> list[int]:
    """Steps of all fully written checkpoints, ascending."""
    _require_checkpoints(run_dir)
    with ocp.CheckpointManager(checkpoint_dir(run_dir), options=_READ_OPTIONS) as m:
        return sorted(m.all_steps())


def restore(run_dir: str | Path, abstract_state: Any, step: int | None = None) -> tuple[Any, dict]:
    """Restore ``(state, config)`` from ``run_dir``.

    ``abstract_state`` is a pytree of ``jax.ShapeDtypeStruct`` carrying the *current* shardings
    (e.g. from ``jax.eval_shape`` plus the mesh), so a checkpoint written on N devices restores
    onto M devices.
    """
    step = _resolve_step(run_dir, step)
    with ocp.CheckpointManager(
        checkpoint_dir(run_dir), options=_READ_OPTIONS, item_names=("state", "config")
    ) as manager:
        return restore_from_manager(manager, abstract_state, step)


def restore_from_manager(manager: ocp.CheckpointManager, abstract_state: Any, step: int) -> tuple[Any, dict]:
    """Restore ``(state, config)`` at ``step`` through an open manager.

    Training resumes through its own manager: every process must make the same Orbax calls
    (each one is a cross-process barrier), so no process may open an extra manager.
    """
    try:
        restored = manager.restore(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), config=ocp.args.JsonRestore()),
        )
    except Exception as exc:  # orbax raises many types for corrupt or mismatched files
        raise CheckpointError(
            f"could not restore checkpoint {manager.directory / str(step)}: {type(exc).__name__}: {exc}"
        ) from exc
    return restored.state, dict(restored.config)


def restore_partial(run_dir: str | Path, abstract_items: dict[str, Any], step: int | None = None) -> dict[str, Any]:
    """Restore only the named top-level entries of a saved state (``{"params": abstract_params}``):
    inference reads the parameters without building the optimizer state that was saved with them."""
    step = _resolve_step(run_dir, step)
    path = checkpoint_dir(run_dir) / str(step) / "state"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # orbax notes it reads shardings from file
            return ocp.PyTreeCheckpointer().restore(
                path, args=ocp.args.PyTreeRestore(item=abstract_items, partial_restore=True))
    except Exception as exc:  # orbax raises many types for corrupt or mismatched files
        raise CheckpointError(f"could not restore checkpoint {path.parent}: {type(exc).__name__}: {exc}") from exc


def abstract_like(tree: Any, sharding: jax.sharding.Sharding | None = None) -> Any:
    """Shape/dtype (and optionally sharding) skeleton of ``tree`` for :func:`restore`."""
    return jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding if sharding is not None else getattr(a, "sharding", None)),
        tree,
    )
