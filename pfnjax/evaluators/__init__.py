"""Evaluators: run during training (``TrainConfig.loop.evals``), by ``pfnjax eval`` and by the
benchmarks. See :mod:`pfnjax.evaluators.base` for the interface.

Every module of this package is imported here and registers its evaluators, so a new one is one
new file (or a class in a module of your own, registered when that module is imported).
"""

import importlib
import pkgutil

from pfnjax.evaluators.base import (
    EVALUATORS,
    EvalContext,
    Evaluator,
    PredictFn,
    build_evaluator,
    evaluator_class,
    evaluator_settings,
    make_predict_fn,
    register_evaluator,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

from pfnjax.evaluators.coverage import QuantileCoverage  # noqa: E402
from pfnjax.evaluators.held_out import (  # noqa: E402
    DEFAULT_CONTEXT_SIZES,
    EvalRow,
    HeldOut,
    HeldOutEvaluator,
    ci95,
    evaluate,
    evaluate_against_oracle,
    evaluate_classification,
    format_table,
    held_out_datasets,
    held_out_source,
)

__all__ = [
    "DEFAULT_CONTEXT_SIZES", "EVALUATORS", "EvalContext", "EvalRow", "Evaluator", "HeldOut", "HeldOutEvaluator",
    "PredictFn", "QuantileCoverage", "build_evaluator", "ci95", "evaluate", "evaluate_against_oracle",
    "evaluate_classification", "evaluator_class", "evaluator_settings", "format_table", "held_out_datasets",
    "held_out_source", "make_predict_fn", "register_evaluator",
]
