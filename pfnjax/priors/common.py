"""Pieces several priors share: input distributions and activation functions."""

from __future__ import annotations

from typing import Callable, Literal

import jax
import jax.numpy as jnp

from pfnjax.priors.base import feature_mask
from pfnjax.types import Array, PRNGKey

XDist = Literal["uniform", "normal"]
X_DISTS = ("uniform", "normal")

#: Activations the random-network priors (BNN, SCM) choose from, by name.
ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "identity": lambda h: h,
    "relu": jax.nn.relu,
}


def input_range_of(x_dist: XDist) -> tuple[float, float] | None:
    """The box raw inputs from ``x_dist`` lie in: ``(0, 1)`` for ``uniform``, unbounded for ``normal``."""
    return (0.0, 1.0) if x_dist == "uniform" else None


def gaussian_nll(y: Array, mean: Array, var: Array) -> Array:
    """``-log N(y; mean, var)`` elementwise (the NLL of a Gaussian posterior predictive)."""
    return 0.5 * (jnp.log(2 * jnp.pi * var) + (y - mean) ** 2 / var)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise a ``ValueError`` naming the options unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {choices}")


def sample_inputs(key: PRNGKey, x_dist: XDist, seq_len: int, max_features: int, num_features: Array) -> Array:
    """``f32[T, F_max]`` inputs, ``U[0, 1]`` (``"uniform"``) or ``N(0, 1)`` (``"normal"``) i.i.d.

    Columns ``>= num_features`` are zero.
    """
    if x_dist == "uniform":
        x = jax.random.uniform(key, (seq_len, max_features))
    elif x_dist == "normal":
        x = jax.random.normal(key, (seq_len, max_features))
    else:
        raise ValueError(f"unknown x_dist {x_dist!r}; choose one of {X_DISTS}")
    return jnp.where(feature_mask(num_features, max_features), x, 0.0)


__all__ = ["ACTIVATIONS", "X_DISTS", "XDist", "check_choice", "gaussian_nll", "input_range_of", "sample_inputs"]
