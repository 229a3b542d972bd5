"""Training: config and presets, the data-parallel step, the loop and Orbax checkpoints."""

from pfnjax.train.checkpoint import CheckpointError
from pfnjax.train.config import PRESETS, TrainConfig, preset_config
from pfnjax.train.trainer import (
    TrainResult,
    TrainState,
    init_state,
    make_mesh,
    make_optimizer,
    make_train_step,
    pfn_loss,
    train,
)

__all__ = [
    "CheckpointError",
    "PRESETS",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "init_state",
    "make_mesh",
    "make_optimizer",
    "make_train_step",
    "pfn_loss",
    "preset_config",
    "train",
]
