r"""The PFN paper's BNN binary-classification prior: a one-hidden-layer network with N(0, σ²) weights.

Generative process of :class:`BNNBinaryPrior` (registered as ``"bnn_binary"``), per dataset, with
``k_w, k_x, k_y = jax.random.split(key, 3)``:

.. math::
    W_1 &\in \mathbb R^{F \times H},\ b_1 \in \mathbb R^H,\ w_2 \in \mathbb R^H,\ b_2 \in \mathbb R,
        \quad \text{all i.i.d. } \mathcal N(0, \sigma_w^2)\\
    x_t &\sim \mathcal N(0, I_F) \text{ (or } \mathcal U[0, 1]^F)\\
    f(x_t) &= w_2^\top a(W_1^\top x_t + b_1) + b_2\\
    y_t &\sim \mathrm{Bernoulli}(\mathrm{sigmoid}(f(x_t)))

Unlike :class:`pfnjax.priors.bnn.BNNPrior` (TabPFN's regression prior with hyperpriors, dropout and
standardisation), nothing else is random: the weights are the only latent variables, so the
posterior predictive is exactly what MCMC on :func:`network_logits` with a ``N(0, σ_w²)`` prior
computes. ``experiments/bnn_vs_mcmc`` compares a PFN trained on this prior with NUTS and SVI.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from pfnjax.numerics import matmul
from pfnjax.priors.base import feature_mask, register_prior
from pfnjax.priors.common import ACTIVATIONS, X_DISTS, XDist, check_choice, sample_inputs
from pfnjax.types import Array, PRNGKey


class BinaryNetwork(NamedTuple):
    """One network's weights: ``w1 f32[F, H]``, ``b1 f32[H]``, ``w2 f32[H]``, ``b2 f32[]``."""

    w1: Array
    b1: Array
    w2: Array
    b2: Array


def network_logits(net: BinaryNetwork, x: Array, activation: str = "tanh") -> Array:
    """``f32[T]`` logits ``w2 · a(x W1 + b1) + b2`` for ``x: f32[T, F]``, at full matmul precision
    (the prior and the MCMC baselines must evaluate the same function on every backend)."""
    hidden = ACTIVATIONS[activation](matmul(x, net.w1) + net.b1)
    return matmul(hidden, net.w2) + net.b2


@register_prior("bnn_binary")
@dataclasses.dataclass(frozen=True)
class BNNBinaryPrior:
    """Binary labels from a random one-hidden-layer network (see the module docstring).

    Defaults are the paper's small setting's network: 5 tanh hidden units, N(0, 1) weights and
    biases, x ~ N(0, I). The number of features is the data config's (``num_features``).
    """

    hidden: int = 5
    weight_std: float = 1.0
    activation: str = "tanh"
    x_dist: XDist = "normal"
    task: str = dataclasses.field(default="classification", init=False)

    def __post_init__(self) -> None:
        if isinstance(self.hidden, bool) or not isinstance(self.hidden, int) or self.hidden < 1:
            raise ValueError(f"BNNBinaryPrior.hidden must be an int >= 1, got {self.hidden!r}")
        if not self.weight_std > 0:
            raise ValueError(f"BNNBinaryPrior.weight_std must be > 0, got {self.weight_std!r}")
        check_choice("activation", self.activation, tuple(ACTIVATIONS))
        check_choice("x_dist", self.x_dist, X_DISTS)

    def sample_network(self, key: PRNGKey, max_features: int, num_features: Array) -> BinaryNetwork:
        """The weights of one dataset (``split(key, 3)[0]`` of ``sample_dataset``'s key). Rows of
        ``w1`` for unused features are zero, so those (zero) columns cannot influence ``y``."""
        h = self.hidden
        z = self.weight_std * jax.random.normal(key, (max_features * h + 2 * h + 1,), jnp.float32)
        w1 = z[: max_features * h].reshape(max_features, h)
        w1 = jnp.where(feature_mask(num_features, max_features)[:, None], w1, 0.0)
        rest = z[max_features * h :]
        return BinaryNetwork(w1, rest[:h], rest[h : 2 * h], rest[2 * h])

    def sample_dataset(
        self, key: PRNGKey, seq_len: int, max_features: int, num_features: Array, single_eval_pos: Array
    ) -> tuple[Array, Array]:
        del single_eval_pos
        k_w, k_x, k_y = jax.random.split(key, 3)
        net = self.sample_network(k_w, max_features, num_features)
        x = sample_inputs(k_x, self.x_dist, seq_len, max_features, num_features)
        y = jax.random.bernoulli(k_y, jax.nn.sigmoid(network_logits(net, x, self.activation)))
        return x, y.astype(jnp.int32)


__all__ = ["BNNBinaryPrior", "BinaryNetwork", "network_logits"]
