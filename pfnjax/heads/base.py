"""The output-head interface: one object per task owns its output size, label encoding, loss,
predictive distribution and saved metadata.

A head is a pytree (``flax.struct``): arrays it needs, such as bar borders, are leaves, so a
head passes into jitted functions. Heads register under a ``kind`` with :func:`register_head`
and declare the prior ``task`` they serve; :func:`pfnjax.heads.head_class_for_task` picks one for a
prior. Adding a task (say ordinal regression) means one new module in ``pfnjax/heads/``.

A head owns its settings (``Config``, a frozen dataclass, or None) and is fitted for a new run from
those settings and, if it asks for them (:meth:`Head.label_samples`), labels drawn from the prior
by the trainer (:meth:`Head.fit`): heads never sample priors or read the whole run config.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import numpy as np

from pfnjax.types import Array

HEADS: dict[str, type["Head"]] = {}


def register_head(kind: str) -> Callable[[type], type]:
    """Class decorator: make a head constructible from saved metadata (``{"kind": kind, ...}``)."""

    def wrap(cls: type) -> type:
        if kind in HEADS:
            raise ValueError(f"head kind {kind!r} is registered twice")
        cls.kind = kind
        HEADS[kind] = cls
        return cls

    return wrap


class Head:
    """What every head provides. Subclasses are ``flax.struct.dataclass`` pytrees."""

    kind: ClassVar[str] = ""
    task: ClassVar[str] = ""  # the ``Prior.task`` this head serves
    Config: ClassVar[type | None] = None  # the head's settings (a frozen dataclass), if it has any

    @property
    def num_outputs(self) -> int:
        """Width of the model's output logits."""
        raise NotImplementedError

    @property
    def y_vocab(self) -> int:
        """How the model embeds context labels: 0 for real values, else the number of label classes."""
        raise NotImplementedError

    def loss(self, logits: Array, y: Array) -> Array:
        """Per-position negative log-likelihood ``f32[...]`` of labels ``y`` under ``logits [..., num_outputs]``."""
        raise NotImplementedError

    def check_labels(self, y: np.ndarray) -> np.ndarray:
        """Validate host context labels and cast them to the model's label dtype; ValueError if invalid."""
        raise NotImplementedError

    def label_summary(self, y: np.ndarray) -> int:
        """A host int summarising the context labels that :meth:`distribution` may need (else -1)."""
        return -1

    def distribution(self, logits: Array, label_summary: int = -1, **options: Any) -> Any:
        """The predictive distribution object for ``logits [..., M, num_outputs]``."""
        raise NotImplementedError

    def full_distribution(self, logits: Array) -> Any:
        """The distribution over every outcome the head can predict (for scoring held-out labels)."""
        return self.distribution(logits)

    def metadata(self) -> dict:
        """JSON-serialisable description, saved with every checkpoint; :meth:`from_metadata` inverts it."""
        raise NotImplementedError

    @classmethod
    def from_metadata(cls, data: dict) -> "Head":
        raise NotImplementedError

    @classmethod
    def label_samples(cls, settings: Any) -> int:
        """How many prior draws of ``y`` :meth:`fit` needs for a new run (0: none)."""
        return 0

    @classmethod
    def fit(cls, settings: Any, y_samples: np.ndarray | None = None) -> "Head":
        """The head for a new run: from its ``settings`` (an instance of :attr:`Config`, or None)
        and, when :meth:`label_samples` asks for them, ``y_samples`` drawn from the prior."""
        raise NotImplementedError


def head_from_metadata(data: dict) -> Head:
    """Rebuild a saved head (:meth:`Head.metadata`)."""
    kind = data.get("kind")
    if kind not in HEADS:
        raise ValueError(f"unknown head kind {kind!r}; known: {sorted(HEADS)}")
    return HEADS[kind].from_metadata(data)


def head_class_for_task(task: str) -> type[Head]:
    """The registered head class that serves priors of ``task``."""
    for cls in HEADS.values():
        if cls.task == task:
            return cls
    raise ValueError(f"no head serves task {task!r}; heads: {{{', '.join(f'{k}: {c.task}' for k, c in HEADS.items())}}}")
