"""Run metadata and the run's PRNG streams: shared by training and inference.

Every checkpoint carries the run's metadata (JSON): the nested :class:`pfnjax.config.TrainConfig`,
the :class:`pfnjax.model.ModelConfig`, the head (:meth:`pfnjax.heads.Head.metadata`) and the
prior's full spec (:func:`pfnjax.priors.base.prior_spec`), so a run is rebuilt from what it
saved, never from the code's current defaults or a prior's name. Runs of pfnjax 0.1 (format
``pfnjax-run-v1``: a flat config and the borders inside the train state) still load.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from pfnjax import checkpoint as ckpt
from pfnjax.config import TrainConfig
from pfnjax.heads import BarHead, ClassHead, Head, head_from_metadata
from pfnjax.model import ModelConfig, PFNTransformer
from pfnjax.types import PRNGKey

RUN_FORMAT = "pfnjax-run-v2"
LEGACY_FORMAT = "pfnjax-run-v1"

# Independent key streams derived from the run seed.
STREAM_TRAIN, STREAM_HEAD, STREAM_INIT, STREAM_EVAL = 0, 1, 2, 3


def stream_key(seed: int, stream: int) -> PRNGKey:
    """Key of one of the run's independent streams (train data, head, init, held-out eval)."""
    return jax.random.fold_in(jax.random.key(seed), stream)


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What a saved run says about itself (its ``config.json``)."""

    train_config: TrainConfig
    model_config: ModelConfig
    head: Head | None  # None only for pfnjax 0.1 runs, whose borders live in the saved state
    prior_spec: dict
    format: str = RUN_FORMAT

    @property
    def trained_with_missing(self) -> bool:
        """Whether the prior made missing values (NaN features): tabular priors carry ``missing_rate``."""
        return _has_key(self.prior_spec, "missing_rate")

    def prior(self):
        """The prior the run was trained on, rebuilt from its saved spec."""
        from pfnjax.priors.base import prior_from_spec

        return prior_from_spec(self.prior_spec)


def _has_key(tree: Any, key: str) -> bool:
    if isinstance(tree, dict):
        return key in tree or any(_has_key(v, key) for v in tree.values())
    if isinstance(tree, list):
        return any(_has_key(v, key) for v in tree)
    return False


def run_metadata(cfg: TrainConfig, model_cfg: ModelConfig, head: Head, prior_spec: dict) -> dict:
    """The JSON saved with every checkpoint and as ``config.json``."""
    return {
        "format": RUN_FORMAT,
        "train": cfg.to_dict(),
        "model": model_cfg.to_dict(),
        "head": head.metadata(),
        "prior": prior_spec,
    }


def parse_metadata(meta: dict, where: str = "") -> RunInfo:
    """:class:`RunInfo` from saved metadata (either format)."""
    fmt = meta.get("format")
    if fmt not in (RUN_FORMAT, LEGACY_FORMAT):
        raise ckpt.CheckpointError(f"{where or 'this'} does not hold a pfnjax run (format={fmt!r})")
    train_cfg = TrainConfig.from_dict(meta["train"])
    model_cfg = ModelConfig.from_dict(meta["model"])
    prior_spec = dict(meta.get("prior", {}))
    prior_spec.pop("task", None)
    if fmt == LEGACY_FORMAT:
        head = None if model_cfg.y_vocab == 0 else ClassHead(model_cfg.num_outputs)
    else:
        head = head_from_metadata(meta["head"])
    return RunInfo(train_cfg, model_cfg, head, prior_spec, fmt)


def read_run(path: str | Path, step: int | None = None) -> RunInfo:
    """The metadata of checkpoint ``step`` (default: the latest) of the run in ``path``."""
    return parse_metadata(ckpt.read_config(path, step), str(path))


def restore_inference(path: str | Path, step: int | None = None, *, attention_impl: str | None = None
                      ) -> tuple[RunInfo, nnx.GraphDef, Any]:
    """``(run info, graphdef, params)`` of a saved run: only the parameters are read (and, for
    0.1 runs, the borders), never the optimizer state. ``attention_impl`` overrides the saved one."""
    info = read_run(path, step)
    model_cfg = info.model_config
    if attention_impl is not None:
        model_cfg = dataclasses.replace(model_cfg, attention_impl=attention_impl)
        info = dataclasses.replace(info, model_config=model_cfg)
    graphdef, abstract_params = nnx.split(nnx.eval_shape(lambda: PFNTransformer(model_cfg, nnx.Rngs(0))), nnx.Param)
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    wanted: dict[str, Any] = {"params": abstract_params}
    if info.head is None:
        wanted["borders"] = jax.ShapeDtypeStruct((model_cfg.num_outputs + 1,), jnp.float32)
    restored = ckpt.restore_partial(path, ckpt.abstract_like(wanted, sharding), step)
    if info.head is None:
        info = dataclasses.replace(info, head=BarHead(restored["borders"]))
    return info, graphdef, restored["params"]


__all__ = ["LEGACY_FORMAT", "RUN_FORMAT", "RunInfo", "STREAM_EVAL", "STREAM_HEAD", "STREAM_INIT", "STREAM_TRAIN",
           "parse_metadata", "read_run", "restore_inference", "run_metadata", "stream_key"]
