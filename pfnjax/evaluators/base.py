"""The evaluator interface and registry, in the style of big_vision's ``config.evals``.

A run lists its evaluators in ``TrainConfig.loop.evals``: each entry has a registered ``type``,
a schedule (``every`` steps, and at the end of the run) and that evaluator's own settings. The
trainer builds each one once with :func:`build_evaluator` (held-out data is drawn then, on the
device) and, on schedule, calls ``evaluator.run(predict, params)`` with the run's jitted
:func:`predict function <make_predict_fn>` and the current parameters; the metrics go to
``metrics.jsonl`` under the entry's name. The same objects serve ``pfnjax eval``, the
benchmarks and the experiments.

An evaluator of your own is a class in any module::

    @register_evaluator("my_eval")
    class MyEval:
        @dataclasses.dataclass(frozen=True)
        class Config:          # its settings, checked when the run's config is built
            num_datasets: int = 32

        @classmethod
        def from_config(cls, settings: Config, context: EvalContext) -> "MyEval": ...

        def run(self, predict: PredictFn, params) -> dict[str, float]: ...
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Protocol

import jax
from flax import nnx

from pfnjax.heads import Head
from pfnjax.model.base import ModelIO
from pfnjax.types import Array, PRNGKey

#: ``predict(params, x_ctx, y_ctx, context_len, num_features, x_qry) -> logits [B, M, num_outputs]``:
#: padded contexts ``x_ctx [B, N, F_max]`` whose rows ``>= context_len[b]`` are ignored, queries
#: ``x_qry [B, M, F_max]``. One compiled program serves every context size up to ``N``.
PredictFn = Callable[[Any, Array, Array, Array, Array, Array], Array]

EVALUATORS: dict[str, type] = {}


class Evaluator(Protocol):
    """What the trainer and the tools call: ``run(predict, params) -> {metric: float}``."""

    def run(self, predict: PredictFn, params: Any) -> dict[str, float]: ...


@dataclasses.dataclass(frozen=True)
class EvalContext:
    """What an evaluator may need to know about the run it scores.

    Attributes:
        prior: the run's prior (held-out datasets come from it).
        head: the run's head (losses, predictive distributions).
        io: the model's inputs and outputs (``io.max_features`` is the x width).
        key: the run's evaluation PRNG stream, independent of the training stream.
        num_features_sampler: the run's feature-count distribution (held-out datasets follow it).
        graphdef: the model's graph definition.
    """

    prior: Any
    head: Head
    io: ModelIO
    key: PRNGKey
    num_features_sampler: Callable[[PRNGKey, int], Array]
    graphdef: nnx.GraphDef | None = None


def register_evaluator(type_name: str) -> Callable[[type], type]:
    """Class decorator: make an evaluator available as ``{"type": type_name, ...}`` in ``loop.evals``."""

    def wrap(cls: type) -> type:
        if EVALUATORS.get(type_name, cls) is not cls:
            raise ValueError(f"evaluator {type_name!r} is registered twice")
        if not callable(getattr(cls, "from_config", None)) or not callable(getattr(cls, "run", None)):
            raise TypeError(f"evaluator {cls.__name__} needs a from_config classmethod and a run method")
        cls.type = type_name
        EVALUATORS[type_name] = cls
        return cls

    return wrap


def evaluator_class(type_name: str) -> type:
    if type_name not in EVALUATORS:
        raise ValueError(f"unknown evaluator type {type_name!r}; registered: {sorted(EVALUATORS)} (an evaluator "
                         "of your own registers itself with @register_evaluator when its module is imported)")
    return EVALUATORS[type_name]


def evaluator_settings(type_name: str, settings: dict) -> Any:
    """The evaluator's settings object; a ``ValueError`` names an unknown type or setting."""
    cls = evaluator_class(type_name)
    config_cls = getattr(cls, "Config", None)
    if config_cls is None:
        if settings:
            raise ValueError(f"evaluator {type_name!r} takes no settings, got {sorted(settings)}")
        return None
    known = [f.name for f in dataclasses.fields(config_cls)]
    bad = sorted(set(settings) - set(known))
    if bad:
        raise ValueError(f"evaluator {type_name!r} has no setting(s) {bad}; its settings: {known}")
    return config_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})


def build_evaluator(entry: Any, context: EvalContext) -> Evaluator:
    """The evaluator of a ``loop.evals`` entry (:class:`pfnjax.config.EvalEntry`) for a run."""
    return evaluator_class(entry.type).from_config(evaluator_settings(entry.type, entry.settings), context)


@functools.partial(jax.jit, static_argnums=0)
def _predict(graphdef: nnx.GraphDef, params: Any, x_ctx: Array, y_ctx: Array, context_len: Array,
             num_features: Array, x_qry: Array) -> Array:
    model = nnx.merge(graphdef, params)
    cache = model.encode_context(x_ctx, y_ctx, context_len, num_features)
    return model.predict_queries(cache, x_qry, context_len, num_features)


def make_predict_fn(graphdef: nnx.GraphDef) -> PredictFn:
    """The jitted :data:`PredictFn` of a model (encode the padded context, then the queries)."""
    return functools.partial(_predict, graphdef)


__all__ = ["EVALUATORS", "EvalContext", "Evaluator", "PredictFn", "build_evaluator", "evaluator_class",
           "evaluator_settings", "make_predict_fn", "register_evaluator"]
