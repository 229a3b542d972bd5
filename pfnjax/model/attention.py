"""Context-masked attention, shared by the architectures: every query attends to the first
``kv_len[b]`` keys of its dataset (a key-length mask), so flash or cuDNN attention applies.

Implementations (``impl``):

* ``"cudnn"``: cuDNN's flash attention (NVIDIA GPUs, bfloat16/float16);
* ``"xla"``: ``jax.nn.dot_product_attention``'s XLA formulation;
* ``"matmul"``: the softmax written out as batched matmuls in a heads-first layout, and for long
  inputs a flash-style pass over query tiles with its own backward (:func:`matmul_attention`).
  On the CPU this is 2-2.5x faster than XLA's formulation (``benchmarks/results/train_throughput_cpu.md``).
* ``"auto"`` (default): cuDNN where the program executes on an NVIDIA GPU and cuDNN accepts the
  shapes and dtype, ``matmul`` on the CPU, XLA's attention elsewhere. It is resolved per platform
  when the program is lowered, so one saved model runs on every backend.

All compute the same masked softmax attention (``tests/test_model.py`` compares them).
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp

from pfnjax.types import Array

AttentionImpl = Literal["auto", "xla", "cudnn", "matmul"]
ATTENTION_IMPLS = ("auto", "xla", "cudnn", "matmul")
# score tiles of at most this many elements per (dataset, head) are computed whole; larger ones
# run over query tiles (the whole [T, N] score matrix of every head would not stay in cache)
WHOLE_SCORES = 256 * 1024
QUERY_TILE = 256


def _bias(kv_len: Array, n: int, dtype) -> Array:
    """``[B, 1, 1, N]``: 0 for the first ``kv_len[b]`` keys, a large negative number for the rest."""
    valid = jnp.arange(n)[None, :] < kv_len[:, None]
    return jnp.where(valid, 0.0, -1e30).astype(dtype)[:, None, None, :]


def _heads_first(x: Array) -> Array:
    return jnp.swapaxes(x, 1, 2)  # [B, T, H, D] -> [B, H, T, D]


@jax.custom_vjp
def _tiled(q: Array, k: Array, v: Array, bias: Array) -> Array:
    return _tiled_fwd(q, k, v, bias)[0]


def _tiles(x: Array) -> Array:
    """``[B, H, T, X] -> [T / QUERY_TILE, B, H, QUERY_TILE, X]``."""
    b, h, t, d = x.shape
    return jnp.moveaxis(x.reshape(b, h, t // QUERY_TILE, QUERY_TILE, d), 2, 0)


def _untile(x: Array) -> Array:
    n, b, h, tile, d = x.shape
    return jnp.moveaxis(x, 0, 2).reshape(b, h, n * tile, d)


def _tiled_fwd(q, k, v, bias):
    def one(q_tile):
        s = jnp.matmul(q_tile, jnp.swapaxes(k, -1, -2)) + bias
        m = jnp.max(s, axis=-1, keepdims=True)
        e = jnp.exp(s - m)
        total = jnp.sum(e, axis=-1, keepdims=True)
        return jnp.matmul(e, v) / total, m + jnp.log(total)

    out, lse = jax.lax.map(one, _tiles(q))
    out, lse = _untile(out), _untile(lse)
    return out, (q, k, v, bias, out, lse)


def _tiled_bwd(res, d_out):
    q, k, v, bias, out, lse = res
    delta = jnp.sum(d_out * out, axis=-1, keepdims=True)

    def one(carry, tile):
        dk, dv = carry
        q_tile, d_tile, lse_tile, delta_tile = tile
        p = jnp.exp(jnp.matmul(q_tile, jnp.swapaxes(k, -1, -2)) + bias - lse_tile)
        dv = dv + jnp.matmul(jnp.swapaxes(p, -1, -2), d_tile)
        ds = p * (jnp.matmul(d_tile, jnp.swapaxes(v, -1, -2)) - delta_tile)
        dk = dk + jnp.matmul(jnp.swapaxes(ds, -1, -2), q_tile)
        return (dk, dv), jnp.matmul(ds, k)

    (dk, dv), dq = jax.lax.scan(one, (jnp.zeros_like(k), jnp.zeros_like(v)),
                                (_tiles(q), _tiles(d_out), _tiles(lse), _tiles(delta)))
    return _untile(dq), dk, dv, jnp.zeros_like(bias)


_tiled.defvjp(_tiled_fwd, _tiled_bwd)


def matmul_attention(q: Array, k: Array, v: Array, kv_len: Array) -> Array:
    """Masked softmax attention as batched matmuls, heads first: ``q [B, M, H, D]`` attends to the
    first ``kv_len[b]`` of ``k, v [B, N, H, D]``.

    Where a head's score matrix ``[M, N]`` is small it is computed whole (autodiff backward);
    larger ones run in query tiles of ``QUERY_TILE`` rows with a flash-style backward that
    recomputes each tile's probabilities from its saved log-normaliser, so the live scores are
    ``[B, H, QUERY_TILE, N]`` and not ``[B, H, M, N]``. Exactly the masked definition (every key
    past ``kv_len`` gets probability 0; ``kv_len >= 1``)."""
    m, n, d = q.shape[1], k.shape[1], q.shape[-1]
    qh = _heads_first(q) * jnp.asarray(1.0 / math.sqrt(d), q.dtype)
    kh, vh = _heads_first(k), _heads_first(v)
    bias = _bias(kv_len, n, q.dtype)
    if m * n <= WHOLE_SCORES or m < 2 * QUERY_TILE:
        s = jnp.matmul(qh, jnp.swapaxes(kh, -1, -2)) + bias
        out = jnp.matmul(jax.nn.softmax(s, axis=-1), vh)
    else:
        pad = -m % QUERY_TILE
        qh = jnp.pad(qh, ((0, 0), (0, 0), (0, pad), (0, 0)))
        out = _tiled(qh, kh, vh, bias)[:, :, :m]
    return jnp.swapaxes(out, 1, 2)


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


def resolve_attention_impl(impl: str, q: Array | jax.ShapeDtypeStruct, k: Array | jax.ShapeDtypeStruct,
                           platform: str | None = None) -> str:
    """What ``auto`` becomes for these operands on ``platform`` (default: the default backend's):
    ``"cudnn"`` on a CUDA GPU where cuDNN takes the shapes and dtype, ``"matmul"`` on the CPU,
    else ``"xla"``."""
    if impl != "auto":
        return impl
    platform = platform or jax.default_backend()
    if platform == "cpu":
        return "matmul"
    if q.dtype not in (jnp.bfloat16, jnp.float16) or not cuda_available():
        return "xla"
    return "cudnn" if _cudnn_traces(tuple(q.shape), tuple(k.shape), jnp.dtype(q.dtype).name) else "xla"


def _run(impl: str, q: Array, k: Array, v: Array, kv_len: Array) -> Array:
    if impl == "matmul":
        return matmul_attention(q, k, v, kv_len)
    return _attention(q, k, v, kv_len, impl)


def context_attention(q: Array, k: Array, v: Array, kv_len: Array, impl: str = "auto") -> Array:
    """Attention of ``q: [B, M, H, D]`` to the first ``kv_len[b]`` of ``k, v: [B, N, H, D]``.

    ``impl="auto"`` picks per platform with ``lax.platform_dependent``: only the branch of the
    platform the program is lowered for is compiled (cuDNN for CUDA where it applies, ``matmul``
    for the CPU, XLA's attention elsewhere), so the same program also runs on a CPU mesh of a GPU
    machine.
    """
    if impl != "auto":
        return _run(impl, q, k, v, kv_len)
    gpu = resolve_attention_impl("auto", q, k, platform="cuda") if cuda_available() else "xla"
    return jax.lax.platform_dependent(
        q, k, v, kv_len,
        cpu=functools.partial(_run, "matmul"),
        cuda=functools.partial(_run, gpu),
        default=functools.partial(_run, "xla"),
    )


__all__ = ["ATTENTION_IMPLS", "AttentionImpl", "context_attention", "cuda_available", "matmul_attention",
           "resolve_attention_impl"]
