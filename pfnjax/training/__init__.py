"""Training: the train state, the data-parallel step, and the loop (:class:`Trainer`, :func:`train`).

Inference (:mod:`pfnjax.predict`, :mod:`pfnjax.sklearn`, :mod:`pfnjax.evaluators`) never imports
this package: configuration (:mod:`pfnjax.config`), run metadata (:mod:`pfnjax.runs`) and
checkpoint I/O (:mod:`pfnjax.checkpoint`) are package-level modules both sides use.
"""

from pfnjax.training.state import TrainState, batch_shape, init_state, make_head, make_optimizer, sample_labels
from pfnjax.training.step import (
    apply_model,
    make_mesh,
    make_train_step,
    pfn_loss,
    split_buckets,
    step_layouts,
    train_loss,
)
from pfnjax.training.trainer import TrainResult, Trainer, check_resumable, train

__all__ = [
    "TrainResult", "TrainState", "Trainer", "apply_model", "batch_shape", "check_resumable", "init_state",
    "make_head", "make_mesh", "make_optimizer", "make_train_step", "pfn_loss", "sample_labels", "split_buckets",
    "step_layouts", "train", "train_loss",
]
