"""The model interface and registry: one config dataclass per architecture, built by name.

An architecture is a frozen config dataclass registered with :func:`register_model`; its
``build(io, rngs)`` returns the Flax NNX module. The run's ``TrainConfig.model`` section *is*
that config (selected by ``name``, validated when it is built, saved with the run), so training,
``pfnjax.load`` and the estimators construct every architecture through :func:`build_model`::

    @register_model("my_arch")
    @dataclasses.dataclass(frozen=True)
    class MyArchConfig(ModelConfigBase):
        d_model: int = 64

        def build(self, io: ModelIO, rngs: nnx.Rngs) -> nnx.Module:
            return MyArch(self, io, rngs)

What the run decides, not the architecture: the input width, the output width and how labels
are embedded (:class:`ModelIO`, from the data section and the head).

A module built by ``build`` is called as ``model(x, y, single_eval_pos, num_features)`` and
returns per-position logits ``f32[B, T, num_outputs]`` under the *masked definition*: token
``t`` of dataset ``b`` is a query when ``t >= single_eval_pos[b]``, every token sees only the
context rows, and a query's logits depend on the context and on itself alone. Subclassing
:class:`PFNModel` gives cached inference (:meth:`PFNModel.encode_context` /
:meth:`PFNModel.predict_queries`) and the training path (:meth:`PFNModel.train_logits`) for free,
as full forward passes; an architecture overrides them where it can do less work.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import typing
from typing import Any, Callable, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from pfnjax.types import Array

MODELS: dict[str, type["ModelConfigBase"]] = {}
DEFAULT_MODEL = "classic"


@dataclasses.dataclass(frozen=True)
class ModelIO:
    """What the run fixes about a model's inputs and outputs.

    Attributes:
        max_features: F_max, the width of the x input. Unused columns are zero.
        num_outputs: width of the output logits (the head's size: bar buckets, classes...).
        y_vocab: how context labels are embedded: 0 for real-valued y, else the number of label
            classes. The head decides (:mod:`pfnjax.heads`).
    """

    max_features: int
    num_outputs: int
    y_vocab: int = 0

    def __post_init__(self) -> None:
        if self.y_vocab < 0:
            raise ValueError(f"y_vocab must be >= 0, got {self.y_vocab}")
        if self.max_features < 1 or self.num_outputs < 1:
            raise ValueError(f"max_features and num_outputs must be >= 1, got {self.max_features}, {self.num_outputs}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class SplitLayout(NamedTuple):
    """Static bounds on the context sizes of a training batch: ``query_start <= sep <= context_max``
    for every dataset. Keys beyond ``context_max`` are masked in every dataset, so they need not be
    computed, and rows before ``query_start`` are context in every dataset, so the loss needs no
    logits for them. ``SplitLayout(1, T - 1)`` holds for any batch."""

    query_start: int
    context_max: int


def _field_error(cls: type, name: str) -> ValueError:
    names = [f.name for f in dataclasses.fields(cls)]
    return ValueError(f"model {cls.name!r} has no setting {name!r}; its settings: {names}")


@dataclasses.dataclass(frozen=True)
class ModelConfigBase:
    """Base of every architecture's config: its registered ``name``, serialisation and ``build``.

    Subclasses are frozen dataclasses whose ``__post_init__`` validates the settings (so a bad
    ``TrainConfig`` fails when it is built, not when the model is).
    """

    name: ClassVar[str] = ""

    def build(self, io: ModelIO, rngs: nnx.Rngs) -> nnx.Module:
        """The Flax NNX module of this architecture for a run's inputs and outputs."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """``{"name": ..., setting: value, ...}`` (JSON; :func:`model_config_from_dict` inverts it)."""
        return {"name": self.name, **dataclasses.asdict(self)}

    def replace(self, **changes: Any) -> "ModelConfigBase":
        """A copy with settings changed; an unknown setting raises a ``ValueError`` naming the valid ones."""
        known = {f.name for f in dataclasses.fields(self)}
        for key in changes:
            if key not in known:
                raise _field_error(type(self), key)
        return dataclasses.replace(self, **changes)

    @property
    def compute_dtype_(self):
        """The activation dtype (``compute_dtype`` setting, float32 if the architecture has none)."""
        return jnp.bfloat16 if getattr(self, "compute_dtype", "float32") == "bfloat16" else jnp.float32


def register_model(name: str) -> Callable[[type], type]:
    """Class decorator: register an architecture's config class under ``name`` (``--model NAME``)."""

    def wrap(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, ModelConfigBase) and dataclasses.is_dataclass(cls)):
            raise TypeError(f"@register_model({name!r}) needs a dataclass subclass of ModelConfigBase, got {cls!r}")
        if MODELS.get(name, cls) is not cls:
            raise ValueError(f"model {name!r} is registered twice")
        cls.name = name
        MODELS[name] = cls
        return cls

    return wrap


def model_names() -> list[str]:
    """The registered architectures."""
    _discover()
    return sorted(MODELS)


def model_class(name: str) -> type[ModelConfigBase]:
    """The config class of the architecture registered as ``name``."""
    _discover()
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; registered: {sorted(MODELS)} (a model of your own registers "
                         "itself with @register_model when its module is imported)")
    return MODELS[name]


def model_config(name: str = DEFAULT_MODEL, **settings: Any) -> ModelConfigBase:
    """The config of architecture ``name`` with ``settings`` (unknown settings raise, naming the valid ones)."""
    cls = model_class(name)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in settings:
        if key not in known:
            raise _field_error(cls, key)
    return cls(**settings)


def model_config_from_dict(data: dict[str, Any]) -> ModelConfigBase:
    """Inverse of :meth:`ModelConfigBase.to_dict`. Without a ``name`` (runs saved before the
    registry) the architecture is ``classic``. ``None`` values take the setting's default
    (fields added later are saved as their defaults by older runs)."""
    data = dict(data)
    name = data.pop("name", DEFAULT_MODEL)
    cls = model_class(name)
    known = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(set(data) - known)
    if bad:
        raise ValueError(f"unknown settings {bad} for model {name!r}; its settings: {sorted(known)}")
    hints = typing.get_type_hints(cls)
    values = {k: (tuple(v) if isinstance(v, list) and typing.get_origin(hints[k]) is tuple else v)
              for k, v in data.items()}
    return cls(**values)


def build_model(model_cfg: ModelConfigBase, io: ModelIO, rngs: nnx.Rngs) -> nnx.Module:
    """The module of any registered architecture: the one place models are constructed."""
    if not isinstance(model_cfg, ModelConfigBase):
        raise TypeError(f"build_model needs a registered model config, got {type(model_cfg).__name__}")
    model = model_cfg.build(io, rngs)
    if not isinstance(model, nnx.Module):
        raise TypeError(f"{type(model_cfg).__name__}.build must return an nnx.Module, got {type(model).__name__}")
    return model


def abstract_model(model_cfg: ModelConfigBase, io: ModelIO) -> tuple[nnx.GraphDef, Any]:
    """``(graphdef, abstract params)`` of an architecture without allocating its parameters."""
    return nnx.split(nnx.eval_shape(lambda: build_model(model_cfg, io, nnx.Rngs(0))), nnx.Param)


def pad_features(x: Array, max_features: int) -> Array:
    """Zero-pad the last (feature) axis of ``x`` to ``max_features`` columns (the model's width)."""
    pad = max_features - x.shape[-1]
    if pad < 0:
        raise ValueError(f"{x.shape[-1]} features given but the model takes at most {max_features}")
    if pad == 0:
        return x
    return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, pad)])


class FullForwardCache(NamedTuple):
    """The cache of a model without its own: the context itself, re-run with every query chunk."""

    x: Array
    y: Array


class PFNModel(nnx.Module):
    """Base class of PFN architectures: the masked forward pass plus defaults for the rest.

    Subclasses set ``self.cfg`` and ``self.io`` and implement ``__call__``. The defaults below are
    correct for any model that keeps the masked definition, and cost a full forward pass each;
    override them to cache the context or to skip work the loss does not read.
    """

    cfg: Any
    io: ModelIO

    def __call__(self, x: Array, y: Array, single_eval_pos: Array, num_features: Array) -> Array:
        """Logits ``f32[B, T, num_outputs]`` under the masked definition (see the module docstring)."""
        raise NotImplementedError

    def train_logits(self, x: Array, y: Array, single_eval_pos: Array, num_features: Array,
                     layout: SplitLayout) -> Array:
        """Logits of rows ``[layout.query_start, T)`` only (those the loss may read); the batch's
        context sizes lie in ``[query_start, context_max]``. Must equal ``self(...)[:, query_start:]``."""
        return self(x, y, single_eval_pos, num_features)[:, layout.query_start:]

    def encode_context(self, x_ctx: Array, y_ctx: Array, context_len: Array, num_features: Array) -> Any:
        """A pytree that :meth:`predict_queries` reads; rows ``>= context_len[b]`` are padding."""
        return FullForwardCache(x_ctx, y_ctx)

    def predict_queries(self, cache: Any, x_qry: Array, context_len: Array, num_features: Array) -> Array:
        """Logits ``f32[B, M, num_outputs]`` of queries ``x_qry [B, M, F_max]`` against a cached context.

        The default runs ``[context; queries]`` through :meth:`__call__` with the padded context
        rows moved behind the queries' reach: padding rows ``>= context_len`` are queries of the
        masked definition, so they are never attended to."""
        n_ctx = cache.x.shape[1]
        x = jnp.concatenate([cache.x, x_qry], axis=1)
        y = jnp.concatenate([cache.y, jnp.zeros(x_qry.shape[:2], cache.y.dtype)], axis=1)
        return self(x, y, context_len, num_features)[:, n_ctx:]


def count_params(model: nnx.Module) -> int:
    """Number of trainable parameters."""
    import math

    return sum(math.prod(p.shape) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


_DISCOVERED = False


def _discover() -> None:
    """Import every module of :mod:`pfnjax.model` once, so each registers its architecture
    (a new architecture is one new file in this package, or a module of the user's)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    import pfnjax.model as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in ("base",):
            importlib.import_module(f"pfnjax.model.{module.name}")


__all__ = ["DEFAULT_MODEL", "FullForwardCache", "MODELS", "ModelConfigBase", "ModelIO", "PFNModel", "SplitLayout",
           "abstract_model", "build_model", "count_params", "model_class", "model_config", "model_config_from_dict",
           "model_names", "pad_features", "register_model"]
