"""PFN architectures (Flax NNX), each a registered config dataclass built by :func:`build_model`.

Every module of this package is imported here, so a new architecture is one new file that
decorates its config class with :func:`register_model` (see :mod:`pfnjax.model.base`); an
architecture of your own registers itself the same way when its module is imported.
"""

from pfnjax.model.base import (
    DEFAULT_MODEL,
    MODELS,
    ModelConfigBase,
    ModelIO,
    PFNModel,
    SplitLayout,
    _discover,
    abstract_model,
    build_model,
    count_params,
    model_class,
    model_config,
    model_config_from_dict,
    model_names,
    pad_features,
    register_model,
)

_discover()

from pfnjax.model.attention import ATTENTION_IMPLS, AttentionImpl, context_attention, resolve_attention_impl  # noqa: E402
from pfnjax.model.classic import ClassicConfig, LayerCache, PFNLayer, PFNTransformer  # noqa: E402

__all__ = [
    "ATTENTION_IMPLS", "AttentionImpl", "ClassicConfig", "DEFAULT_MODEL", "LayerCache", "MODELS", "ModelConfigBase",
    "ModelIO", "PFNLayer", "PFNModel", "PFNTransformer", "SplitLayout", "abstract_model", "build_model",
    "context_attention", "count_params", "model_class", "model_config", "model_config_from_dict", "model_names",
    "pad_features", "register_model", "resolve_attention_impl",
]
