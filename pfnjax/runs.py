"""Run metadata and the run's PRNG streams: shared by training and inference.

Every checkpoint carries the run's metadata (JSON): the nested :class:`pfnjax.config.TrainConfig`,
the architecture's config (with its registered name) and the model's inputs and outputs
(:class:`pfnjax.model.ModelIO`), the head (:meth:`pfnjax.heads.Head.metadata`), the prior's full
spec (:func:`pfnjax.priors.base.prior_spec`) and what the prior says about itself
(:func:`pfnjax.priors.base.prior_info`: its task, whether it makes missing values, its input
box). A run is rebuilt from what it saved, never from the code's current defaults or a prior's
name, and reading a run never imports code that its files name. Runs of earlier formats
(``pfnjax-run-v1``: a flat config and the borders inside the train state; ``pfnjax-run-v2``: a
model config holding the input and output sizes) still load.
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
from pfnjax.model.base import ModelConfigBase, ModelIO, abstract_model, model_config_from_dict
from pfnjax.types import PRNGKey

RUN_FORMAT = "pfnjax-run-v3"
V2_FORMAT = "pfnjax-run-v2"
LEGACY_FORMAT = "pfnjax-run-v1"
_IO_FIELDS = ("max_features", "num_outputs", "y_vocab")

# Independent key streams derived from the run seed.
STREAM_TRAIN, STREAM_HEAD, STREAM_INIT, STREAM_EVAL = 0, 1, 2, 3


def stream_key(seed: int, stream: int) -> PRNGKey:
    """Key of one of the run's independent streams (train data, head, init, held-out eval)."""
    return jax.random.fold_in(jax.random.key(seed), stream)


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What a saved run says about itself (its ``config.json``)."""

    train_config: TrainConfig
    model_config: ModelConfigBase
    io: ModelIO
    head: Head | None  # None only for pfnjax 0.1 runs, whose borders live in the saved state
    prior_spec: dict
    prior_info: dict | None = None  # None for runs saved before priors described themselves
    format: str = RUN_FORMAT

    @property
    def trained_with_missing(self) -> bool:
        """Whether the prior made missing values (NaN features), as the prior said when the run was
        trained (``makes_missing``); older runs ask their rebuilt prior (registered priors only)."""
        return bool(self._describe().get("makes_missing", False))

    @property
    def input_range(self) -> tuple[float, float] | None:
        """The box the training inputs lay in (None: unbounded or standardised)."""
        lo_hi = self._describe().get("input_range")
        return None if lo_hi is None else (float(lo_hi[0]), float(lo_hi[1]))

    def _describe(self) -> dict:
        if self.prior_info is not None:
            return self.prior_info
        from pfnjax.priors.base import prior_info

        try:
            return prior_info(self.prior())
        except ValueError:  # a prior of the user's own that this process has not registered
            return {}

    def prior(self):
        """The prior the run was trained on, rebuilt from its saved spec (registered priors only)."""
        from pfnjax.priors.base import prior_from_spec

        return prior_from_spec(self.prior_spec)


def run_metadata(cfg: TrainConfig, io: ModelIO, head: Head, prior_spec: dict, prior_info: dict) -> dict:
    """The JSON saved with every checkpoint and as ``config.json``."""
    return {
        "format": RUN_FORMAT,
        "train": cfg.to_dict(),
        "model": cfg.model.to_dict(),
        "io": io.to_dict(),
        "head": head.metadata(),
        "prior": prior_spec,
        "prior_info": prior_info,
    }


def _legacy_model(data: dict) -> tuple[ModelConfigBase, ModelIO]:
    """A v1/v2 model dict (architecture settings and input/output sizes side by side; v1 names a
    ``task`` instead of ``y_vocab``) as the classic architecture's config and its io."""
    data = dict(data)
    task = data.pop("task", None)
    if task is not None and "y_vocab" not in data:
        data["y_vocab"] = data["num_outputs"] if task == "classification" else 0
    io = ModelIO(**{k: data.pop(k) for k in _IO_FIELDS if k in data})
    return model_config_from_dict(data), io


def parse_metadata(meta: dict, where: str = "") -> RunInfo:
    """:class:`RunInfo` from saved metadata (any format)."""
    fmt = meta.get("format")
    if fmt not in (RUN_FORMAT, V2_FORMAT, LEGACY_FORMAT):
        raise ckpt.CheckpointError(f"{where or 'this'} does not hold a pfnjax run (format={fmt!r})")
    train_cfg = TrainConfig.from_dict(meta["train"], checked=False)
    if fmt == RUN_FORMAT:
        model_cfg, io = model_config_from_dict(meta["model"]), ModelIO(**meta["io"])
    else:
        model_cfg, io = _legacy_model(meta["model"])
    prior_spec = dict(meta.get("prior", {}))
    prior_spec.pop("task", None)
    if fmt == LEGACY_FORMAT:
        head = None if io.y_vocab == 0 else ClassHead(io.num_outputs)
    else:
        head = head_from_metadata(meta["head"])
    return RunInfo(train_cfg, model_cfg, io, head, prior_spec, meta.get("prior_info"), fmt)


def read_run(path: str | Path, step: int | None = None) -> RunInfo:
    """The metadata of checkpoint ``step`` (default: the latest) of the run in ``path``."""
    return parse_metadata(ckpt.read_config(path, step), str(path))


def restore_inference(path: str | Path, step: int | None = None, *, attention_impl: str | None = None
                      ) -> tuple[RunInfo, nnx.GraphDef, Any]:
    """``(run info, graphdef, params)`` of a saved run: only the parameters are read (the averaged
    ones if the run kept them, ``optim.averaging``; and, for 0.1 runs, the borders), never the
    optimizer state. ``attention_impl`` overrides the saved one
    (for architectures that have the setting)."""
    info = read_run(path, step)
    if attention_impl is not None:
        info = dataclasses.replace(info, model_config=info.model_config.replace(attention_impl=attention_impl))
    graphdef, abstract_params = abstract_model(info.model_config, info.io)
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    # a run that averages its weights (optim.averaging) predicts with the averaged ones
    weights = "params" if info.train_config.optim.averaging == "none" else "avg_params"
    wanted: dict[str, Any] = {weights: abstract_params}
    if info.head is None:
        wanted["borders"] = jax.ShapeDtypeStruct((info.io.num_outputs + 1,), jnp.float32)
    restored = ckpt.restore_partial(path, ckpt.abstract_like(wanted, sharding), step)
    if info.head is None:
        info = dataclasses.replace(info, head=BarHead(restored["borders"]))
    return info, graphdef, restored[weights]


__all__ = ["LEGACY_FORMAT", "RUN_FORMAT", "RunInfo", "STREAM_EVAL", "STREAM_HEAD", "STREAM_INIT", "STREAM_TRAIN",
           "V2_FORMAT", "parse_metadata", "read_run", "restore_inference", "run_metadata", "stream_key"]
