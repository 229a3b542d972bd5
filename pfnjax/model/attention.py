"""Context-masked attention, shared by the architectures: every query attends to the first
``kv_len[b]`` keys of its dataset (a key-length mask), so flash or cuDNN attention applies.

``impl="auto"`` runs cuDNN's flash attention where the program executes on an NVIDIA GPU and
cuDNN accepts the shapes and dtype (bfloat16/float16), and XLA's attention everywhere else; it
is resolved per platform when the program is lowered, so one saved model runs on every backend.
"""

from __future__ import annotations

import functools
from typing import Literal

import jax
import jax.numpy as jnp

from pfnjax.types import Array

AttentionImpl = Literal["auto", "xla", "cudnn"]
ATTENTION_IMPLS = ("auto", "xla", "cudnn")


@functools.cache
def cuda_available() -> bool:
    """Whether this process has a CUDA backend (a GPU and JAX's CUDA plugin)."""
    try:
        return len(jax.devices("cuda")) > 0
    except RuntimeError:
        return False


def _attention(q: Array, k: Array, v: Array, kv_len: Array, implementation: str | None) -> Array:
    return jax.nn.dot_product_attention(q, k, v, key_value_seq_lengths=kv_len, implementation=implementation)


@functools.lru_cache(maxsize=256)
def _cudnn_traces(q_shape: tuple, kv_shape: tuple, dtype: str) -> bool:
    """Whether cuDNN's flash attention accepts these shapes and dtype (its checks run at trace time)."""
    q = jax.ShapeDtypeStruct(q_shape, jnp.dtype(dtype))
    kv = jax.ShapeDtypeStruct(kv_shape, jnp.dtype(dtype))
    lengths = jax.ShapeDtypeStruct(q_shape[:1], jnp.int32)
    try:
        jax.eval_shape(functools.partial(_attention, implementation="cudnn"), q, kv, kv, lengths)
    except Exception:  # NotImplementedError / ValueError / RuntimeError for unsupported configs
        return False
    return True


def resolve_attention_impl(impl: str, q: Array | jax.ShapeDtypeStruct, k: Array | jax.ShapeDtypeStruct) -> str:
    """What ``auto`` becomes for these operands: ``"cudnn"`` if it can run here, else ``"xla"``.

    ``"cudnn"`` still runs only where the program is lowered for CUDA (see :func:`context_attention`).
    """
    if impl != "auto":
        return impl
    if q.dtype not in (jnp.bfloat16, jnp.float16) or not cuda_available():
        return "xla"
    return "cudnn" if _cudnn_traces(tuple(q.shape), tuple(k.shape), jnp.dtype(q.dtype).name) else "xla"


def context_attention(q: Array, k: Array, v: Array, kv_len: Array, impl: str = "auto") -> Array:
    """Attention of ``q: [B, M, H, D]`` to the first ``kv_len[b]`` of ``k, v: [B, N, H, D]``.

    ``impl="auto"`` picks cuDNN flash attention per platform: with ``lax.platform_dependent`` the
    cuDNN branch is lowered only for CUDA, so the same program still runs on a CPU mesh of a GPU
    machine, and XLA's attention everywhere else.
    """
    resolved = resolve_attention_impl(impl, q, k)
    if impl == "auto" and resolved == "cudnn":
        return jax.lax.platform_dependent(
            q, k, v, kv_len,
            cuda=functools.partial(_attention, implementation="cudnn"),
            default=functools.partial(_attention, implementation="xla"),
        )
    return _attention(q, k, v, kv_len, resolved)


__all__ = ["ATTENTION_IMPLS", "AttentionImpl", "context_attention", "cuda_available", "resolve_attention_impl"]
