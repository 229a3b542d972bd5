r"""Bayesian-neural-network (random MLP) prior: the PFN paper's tabular BNN prior.

Generative process of :class:`BNNPrior` (registered as ``"bnn"``), per dataset, with
``k_hyp, k_x, k_w, k_noise = jax.random.split(key, 4)``:

1. Hyperparameters (:func:`sample_hyperparameters`, from ``k_hyp``):

   .. math::
       H &\sim \mathcal U\{H_{\min}, \dots, H_{\max}\}  &&\text{hidden width}\\
       a &\sim \mathcal U(\text{activations})           &&\text{activation (tanh by default)}\\
       \sigma_w &\sim \mathrm{Gamma}(3.62, \text{scale}=0.068) &&\text{init std, mean } 0.246\\
       \sigma_\varepsilon &\sim \mathrm{Gamma}(1.87, \text{scale}=0.053) &&\text{noise std, mean } 0.099\\
       p &\sim \mathcal U[p_{\min}, p_{\max}] = \mathcal U[0, 0.9] &&\text{dropout probability}

   The paper config's "Gamma(3.62, 0.068)" and "Gamma(1.87, 0.053)" are read as (concentration,
   **scale**): that gives the sensible means above, whereas a rate reading would give an init std
   of 53 and a noise std of 35.

2. Inputs: :math:`x_t \sim \mathcal N(0, I_F)` (or :math:`\mathcal U[0,1]^F`), then every used column
   is standardised over the dataset's ``T`` rows (zero mean, unit population std); unused columns
   are zero.

3. A random MLP with ``L = num_layers`` hidden layers of (static) width :math:`H_{\max}`, of which
   only the first ``H`` units are used (the rest are masked to zero), as in TabPFN's ``mlp.py``:

   .. math::
       h_1 &= W_1^\top x_t + b_1\\
       h_l &= (W_l \odot M_l)^\top a(h_{l-1}) / \sqrt{1 - p} + b_l + \eta_l, \quad l = 2..L\\
       f_t &= (w_o \odot m_o)^\top a(h_L) / \sqrt{1 - p} + b_o

   with all weights and biases i.i.d. :math:`\mathcal N(0, \sigma_w^2)`, dropout masks
   :math:`M_l, m_o \sim \mathrm{Bernoulli}(1 - p)` drawn once per dataset (not on the first layer,
   never on biases; the :math:`1/\sqrt{1-p}` factor keeps the pre-activation variance), and
   hidden noise :math:`\eta_l \sim \mathcal N(0, \sigma_\varepsilon^2 I)` per row (``hidden_noise=True``).
   (TabPFN's code scales by :math:`1 / (1 - \sqrt p)`, which looks like a misplaced parenthesis;
   we use the variance-preserving :math:`1/\sqrt{1-p}`.)

4. :math:`y_t = f_t + \varepsilon_t`, :math:`\varepsilon_t \sim \mathcal N(0, \sigma_\varepsilon^2)`, then
   :math:`y` is standardised over the dataset (:func:`pfnjax.numerics.standardize`: zero mean, unit
   population std; a (near-)constant ``y``, std ``<= std_floor``, is only centred, so it becomes ≈ 0
   instead of blowing up).

Everything has static shapes (``[T, F_max]``, ``[H_max]``), so the sampler runs under ``jit`` and ``vmap``.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

from pfnjax.numerics import matmul, standardize
from pfnjax.priors.base import feature_mask, register_prior
from pfnjax.priors.common import ACTIVATIONS, X_DISTS, XDist, check_choice, sample_inputs
from pfnjax.types import Array, PRNGKey

Activation = Literal["tanh", "relu", "identity"]

class BNNHyper(NamedTuple):
    """One dataset's BNN hyperparameters (scalars; leading batch axes under ``vmap``)."""

    hidden_width: Array  # i32, number of used hidden units, in [H_min, H_max]
    activation: Array  # i32, index into ``BNNPrior.activations``
    init_std: Array  # f32, std of every weight and bias
    noise_std: Array  # f32, std of the output (and hidden) noise
    dropout_prob: Array  # f32, Bernoulli drop probability of hidden/output weights


class BNNLayer(NamedTuple):
    """One linear layer: ``weight f32[in, out]`` (dropout mask and scaling applied), ``bias f32[out]``."""

    weight: Array
    bias: Array


@register_prior("bnn")
@dataclasses.dataclass(frozen=True)
class BNNPrior:
    """Random-MLP (BNN) regression prior; see the module docstring for the generative process.

    Defaults: 3 hidden layers (TabPFN ``mlp.py`` convention: 4 weight matrices), tanh, hidden width
    ``U{5..64}`` (TabPFN's hidden-size meta prior has means between 5 and 130; 64 keeps the static
    width small), init std ``Gamma(3.62, scale 0.068)``, noise std ``Gamma(1.87, scale 0.053)``,
    dropout ``U[0, 0.9]``, ``x ~ N(0, 1)``, hidden noise on, x and y standardised.
    """

    num_layers: int = 3
    hidden_range: tuple[int, int] = (5, 64)
    activations: tuple[Activation, ...] = ("tanh",)
    init_std_concentration: float = 3.62
    init_std_scale: float = 0.068
    noise_std_concentration: float = 1.87
    noise_std_scale: float = 0.053
    dropout_range: tuple[float, float] = (0.0, 0.9)
    hidden_noise: bool = True
    x_dist: XDist = "normal"
    std_floor: float = 1e-6
    task: str = dataclasses.field(default="regression", init=False)

    def __post_init__(self) -> None:
        if not (isinstance(self.num_layers, int) and self.num_layers >= 1):
            raise ValueError(f"BNNPrior.num_layers must be an int >= 1, got {self.num_layers!r}")
        lo, hi = self.hidden_range
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
            raise ValueError(f"BNNPrior.hidden_range must be ints 1 <= lo <= hi, got {self.hidden_range!r}")
        if not self.activations or any(a not in ACTIVATIONS for a in self.activations):
            raise ValueError(
                f"BNNPrior.activations must be a non-empty subset of {sorted(ACTIVATIONS)}, got {self.activations!r}"
            )
        p_lo, p_hi = self.dropout_range
        if not 0.0 <= p_lo <= p_hi <= 0.99:
            raise ValueError(f"BNNPrior.dropout_range must satisfy 0 <= lo <= hi <= 0.99, got {self.dropout_range!r}")
        for name in (
            "init_std_concentration",
            "init_std_scale",
            "noise_std_concentration",
            "noise_std_scale",
            "std_floor",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"BNNPrior.{name} must be > 0, got {getattr(self, name)!r}")
        check_choice("x_dist", self.x_dist, X_DISTS)

    @property
    def max_hidden(self) -> int:
        """The static hidden width ``H_max``."""
        return self.hidden_range[1]

    def dataset_hyperparameters(self, key: PRNGKey) -> BNNHyper:
        """The hyperparameters ``sample_dataset(key, ...)`` uses (``split(key, 4)[0]``)."""
        return sample_hyperparameters(jax.random.split(key, 4)[0], self)

    def sample_dataset(
        self, key: PRNGKey, seq_len: int, max_features: int, num_features: Array, single_eval_pos: Array
    ) -> tuple[Array, Array]:
        del single_eval_pos
        k_hyp, k_x, k_w, k_noise = jax.random.split(key, 4)
        hyper = sample_hyperparameters(k_hyp, self)
        used = feature_mask(num_features, max_features)
        x = sample_inputs(k_x, self.x_dist, seq_len, max_features, num_features)
        x = jnp.where(used, standardize(x, axis=0, min_std=self.std_floor), 0.0)
        layers = sample_weights(k_w, self, hyper, max_features)
        y = mlp_forward(layers, x, hyper, self, noise_key=k_noise)
        return x, standardize(y, axis=0, min_std=self.std_floor)


def sample_hyperparameters(key: PRNGKey, cfg: BNNPrior) -> BNNHyper:
    """Draw one dataset's :class:`BNNHyper`.

    Key derivation: ``k_h, k_a, k_g, k_p = split(key, 4)``; width from ``k_h``, activation from
    ``k_a``, ``(init_std, noise_std)`` from one batched gamma call on ``split(k_g)`` (a single
    compiled rejection sampler), dropout from ``k_p``.
    """
    k_h, k_a, k_g, k_p = jax.random.split(key, 4)
    lo, hi = cfg.hidden_range
    p_lo, p_hi = cfg.dropout_range
    conc = jnp.array([cfg.init_std_concentration, cfg.noise_std_concentration], jnp.float32)
    scale = jnp.array([cfg.init_std_scale, cfg.noise_std_scale], jnp.float32)
    stds = jax.vmap(lambda k, a: jax.random.gamma(k, a, (), jnp.float32))(jax.random.split(k_g), conc) * scale
    return BNNHyper(
        hidden_width=jax.random.randint(k_h, (), lo, hi + 1, dtype=jnp.int32),
        activation=jax.random.randint(k_a, (), 0, len(cfg.activations), dtype=jnp.int32),
        init_std=stds[0],
        noise_std=stds[1],
        dropout_prob=jax.random.uniform(k_p, (), jnp.float32, p_lo, p_hi),
    )


def hidden_mask(hyper: BNNHyper, cfg: BNNPrior) -> Array:
    """``bool[H_max]``: True for the used hidden units ``< hyper.hidden_width``."""
    return jnp.arange(cfg.max_hidden) < hyper.hidden_width


def _layer_shapes(cfg: BNNPrior, max_features: int) -> list[tuple[int, int]]:
    h = cfg.max_hidden
    return [(max_features, h)] + [(h, h)] * (cfg.num_layers - 1) + [(h, 1)]


def sample_weights(key: PRNGKey, cfg: BNNPrior, hyper: BNNHyper, max_features: int) -> tuple[BNNLayer, ...]:
    """The ``num_layers + 1`` layers of one dataset's MLP, with dropout and width masks applied.

    Layer 0 maps ``F_max -> H_max`` (no dropout), layers ``1..L-1`` map ``H_max -> H_max`` and the
    last maps ``H_max -> 1``. Weights into/out of unused hidden units and their biases are zero.
    All weights and biases come from one ``normal`` draw and all dropout masks from one
    ``uniform`` draw (``k_normal, k_drop = split(key)``), sliced per layer; few random calls keep
    the compiled sampler small.
    """
    shapes = _layer_shapes(cfg, max_features)
    sizes = [n_in * n_out + n_out for n_in, n_out in shapes]
    k_normal, k_drop = jax.random.split(key)
    z = jax.random.normal(k_normal, (sum(sizes),), jnp.float32)
    u = jax.random.uniform(k_drop, (sum(sizes),), jnp.float32)
    unit = hidden_mask(hyper, cfg).astype(jnp.float32)
    keep = 1.0 - hyper.dropout_prob
    layers, offset = [], 0
    for l, (n_in, n_out) in enumerate(shapes):
        n_w = n_in * n_out
        w = hyper.init_std * z[offset : offset + n_w].reshape(n_in, n_out)
        b = hyper.init_std * z[offset + n_w : offset + n_w + n_out]
        if l > 0:
            drop = u[offset : offset + n_w].reshape(n_in, n_out) >= keep  # P(drop) = dropout_prob
            w = jnp.where(drop, 0.0, w) / jnp.sqrt(keep)
            w = w * unit[:, None]  # from unused units
        if l < len(shapes) - 1:
            w, b = w * unit[None, :], b * unit  # into unused units
        layers.append(BNNLayer(w, b))
        offset += n_w + n_out
    return tuple(layers)


def mlp_forward(
    layers: tuple[BNNLayer, ...], x: Array, hyper: BNNHyper, cfg: BNNPrior, noise_key: PRNGKey | None = None
) -> Array:
    """``f32[T]`` MLP output for ``x: f32[T, F_max]`` (before standardisation).

    With ``noise_key`` the hidden noise (if ``cfg.hidden_noise``) and the output noise are added;
    without it, the noise-free function ``f``.
    """
    unit = hidden_mask(hyper, cfg).astype(x.dtype)
    if len(cfg.activations) == 1:
        act = ACTIVATIONS[cfg.activations[0]]
    else:
        branches = [ACTIVATIONS[a] for a in cfg.activations]

        def act(h: Array) -> Array:
            return jax.lax.switch(hyper.activation, branches, h)

    n_layers, h_max = len(layers), cfg.max_hidden
    eps = None
    if noise_key is not None:
        # one draw for all noise: [T, (L-1) * H_max + 1], sliced per layer (hidden layers 1..L-1, output)
        eps = hyper.noise_std * jax.random.normal(noise_key, (x.shape[0], (n_layers - 2) * h_max + 1), x.dtype)

    def noise(l: int) -> Array:
        if l == n_layers - 1:
            return eps[:, -1:]
        return eps[:, (l - 1) * h_max : l * h_max] * unit

    # Full precision, so the prior draws the same functions on every backend (pfnjax.numerics).
    h = matmul(x, layers[0].weight) + layers[0].bias
    for l in range(1, n_layers):
        a = act(h) * unit
        h = matmul(a, layers[l].weight) + layers[l].bias
        if noise_key is not None and (cfg.hidden_noise or l == n_layers - 1):
            h = h + noise(l)
    return h[:, 0]
