"""The Flax (NNX) PFN transformer."""

from pfnjax.model.transformer import LayerCache, ModelConfig, PFNLayer, PFNTransformer, count_params

__all__ = ["LayerCache", "ModelConfig", "PFNLayer", "PFNTransformer", "count_params"]
