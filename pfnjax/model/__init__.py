"""The Flax (NNX) PFN transformer."""

from pfnjax.model.transformer import (
    ATTENTION_IMPLS,
    LayerCache,
    ModelConfig,
    PFNLayer,
    PFNTransformer,
    context_attention,
    count_params,
    resolve_attention_impl,
)

__all__ = [
    "ATTENTION_IMPLS", "LayerCache", "ModelConfig", "PFNLayer", "PFNTransformer", "context_attention",
    "count_params", "resolve_attention_impl",
]
