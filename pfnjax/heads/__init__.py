"""Output heads, one per task (:class:`BarHead` for regression, :class:`ClassHead` for
classification). Every module in this package is imported here, so a new head is one new file
that calls :func:`register_head`."""

import importlib
import pkgutil

from pfnjax.heads.base import HEADS, Head, head_class_for_task, head_from_metadata, register_head

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

from pfnjax.heads.bar import BarHead, BarHeadConfig  # noqa: E402
from pfnjax.heads.classification import ClassHead, ClassHeadConfig  # noqa: E402

__all__ = ["BarHead", "BarHeadConfig", "ClassHead", "ClassHeadConfig", "HEADS", "Head", "head_class_for_task",
           "head_from_metadata", "register_head"]
