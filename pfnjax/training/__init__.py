"""Training: the train state, the data-parallel step, the loop and its checkpoints.

Inference (:mod:`pfnjax.predict`, :mod:`pfnjax.sklearn`, :mod:`pfnjax.evaluate`) never imports
this package: configuration (:mod:`pfnjax.config`), run metadata (:mod:`pfnjax.runs`) and
checkpoint I/O (:mod:`pfnjax.checkpoint`) are package-level modules both sides use.
"""

from pfnjax.training.trainer import (
    TrainResult,
    TrainState,
    apply_model,
    batch_shape,
    init_state,
    make_head,
    make_mesh,
    make_optimizer,
    make_train_step,
    pfn_loss,
    train,
)

__all__ = [
    "TrainResult",
    "TrainState",
    "apply_model",
    "batch_shape",
    "init_state",
    "make_head",
    "make_mesh",
    "make_optimizer",
    "make_train_step",
    "pfn_loss",
    "train",
]
