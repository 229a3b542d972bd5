r"""TabPFN v1 structural-causal-model (SCM) prior for classification, in pure JAX.

Generative process of :class:`SCMPrior`, one dataset with ``T`` rows, ``F`` used features
(``F = num_features``), context ``t < s`` (``s = single_eval_pos``):

**1. Hyperparameters** (all per dataset). A *meta-truncated-log-normal* draw
:math:`\mathrm{MTN}(a, b, \ell)` is :math:`\ell + v`, with :math:`\mu = e^{u}`,
:math:`u \sim \mathcal U[\log a, \log b]`, :math:`\sigma = \mu e^{w}`,
:math:`w \sim \mathcal U[\log 0.01, \log 1]` and :math:`v \sim \mathcal N(\mu, \sigma^2)`
truncated to :math:`[0, \infty)` (rounded for integer quantities).

.. math::
    L &= \min(\mathrm{MTN}(1, 6, 2),\ L_{\max}) &&\text{layers}\\
    H &= \min(\mathrm{MTN}(5, 130, 4),\ H_{\max});\quad H \leftarrow \max(H, 2F + 1)\ \text{if causal}
      &&\text{width}\\
    \sigma_\varepsilon &= \mathrm{MTN}(10^{-4}, 0.3, 0),\quad \sigma_w = \mathrm{MTN}(0.01, 10, 0)
      &&\text{noise, init std}\\
    p_{\text{drop}} &= \min(0.9\,\mathrm{Beta}(\alpha, \beta), 0.99),\ \alpha, \beta \sim \mathcal U[0.1, 5]
      &&\text{dropout}\\
    \phi &\sim \mathcal U\{\tanh, \mathrm{id}, \mathrm{relu}\}, \quad
    \text{causal}, \text{effect}, \text{block-wise}, \dots \sim \mathrm{Bernoulli}(0.5)

**2. Causes.** :math:`c_t \in \mathbb R^{K}` with :math:`K = \min(\mathrm{MTN}(1, 12, 1), K_{\max})` in causal
mode and :math:`K = F` otherwise; column :math:`k` is :math:`\mathcal N(m_k, s_k^2)` with
:math:`m_k \sim \mathcal N(0, 1)`, :math:`s_k = |m_k z_k|`; in "mixed" mode (p = 0.5) each column is instead,
with per-dataset probabilities, a standardised multinomial (2..10 categories) or a centred Zipf
(exponent :math:`2 + 2\,\mathcal U`, clipped at 10).

**3. A random noisy MLP.** :math:`h^{(0)}_t = W_0 c_t + b_0` and, for :math:`l = 1..L-1`,

.. math::
    h^{(l)}_t = W_l\,\phi(h^{(l-1)}_t) + b_l + \varepsilon^{(l)}_t,\qquad
    \varepsilon^{(l)}_{t,j} \sim \mathcal N(0, \sigma_{l,j}^2)

with :math:`\sigma_{l,j} = \sigma_\varepsilon` or (p = 0.5) :math:`|\mathcal N(0, \sigma_\varepsilon^2)|`
per unit. Weights are :math:`\mathcal N(0, (\sigma_w / (1 - \sqrt{p_{\text{drop}}}))^2)` times a
:math:`\mathrm{Bernoulli}(1 - p_{\text{drop}})` mask (no dropout on :math:`W_0`), or, in block-wise mode,
block-diagonal with :math:`n \sim \mathcal U\{1..\lceil\sqrt{\min(\text{in}, \text{out})}\rceil\}` blocks and std
:math:`\sigma_w / \sqrt{\text{kept fraction}}`; biases are :math:`\mathcal U[\pm 1/\sqrt{\text{fan-in}}]`
(PyTorch's ``nn.Linear`` default, as in the reference).

**4. Features and target.** *Causal* mode: the nodes are the units of
:math:`h^{(1)}, \dots, h^{(L-1)}` (:math:`(L-1)H` of them, in order). The target is a random node (or, in
"effect" mode, the last node); the ``F`` features are other random distinct nodes (or, in "clique" mode,
a random contiguous block), optionally sorted, then cyclically rotated. *Non-causal* mode:
:math:`x_t = c_t` and :math:`y_t = w^\top \phi(h^{(L-1)}_t) + b + \varepsilon_t`.

**5. Tabular post-processing**: :func:`pfnjax.priors.tabular.postprocess_classification`, shared
with :class:`pfnjax.priors.mix.GPClassificationPrior` (categorical features, missing values,
standardisation, then classes; its module docstring states the process). ``sample_dataset_with_info``
returns the nominal :math:`C`, the realised :math:`C_{\text{eff}}`, the threshold mode and the
categorical-column mask for inspection and tests.

**Differences from the reference** (TabPFN v1 ``priors/mlp.py`` + ``flexible_categorical.py``): the
meta-parameters (the :math:`\mu, \sigma` of each MTN) are redrawn per dataset rather than once per batch
(same per-dataset marginal, no within-batch correlation); depth, width and cause count are clipped to the
static maxima ``max_num_layers``, ``max_hidden_dim``, ``max_num_causes`` (shapes must be static); hidden
activations are clipped to :math:`\pm 10^{15}` so no value overflows (the reference zeroed datasets with
NaN); rank thresholds are distinct context values (reference: random rows, with replacement, over all
rows); categorical level counts are capped at ``max_categories``; missing values use one iid rate instead of
the reference's "reasons".

**Implementation.** Everything is static-shaped JAX (``jit`` + ``vmap``, no host callbacks): depth, width,
causes and feature counts are masks over padded arrays, so a dataset costs
:math:`O(T (L_{\max} - 1) W^2)` with :math:`W = \max(H_{\max}, 2 F_{\max} + 1)` whatever its sampled size.
Random numbers come from :class:`pfnjax.priors.rng.RandomStream` (a few large draws sliced up), which keeps XLA:CPU compile
time at seconds rather than tens of seconds.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from pfnjax.numerics import matmul
from pfnjax.priors.base import register_prior
from pfnjax.numerics import soft_clip_outliers, standardize
from pfnjax.priors.common import ACTIVATIONS
from pfnjax.priors.rng import RandomStream
from pfnjax.priors.tabular import (
    CLIP,
    TabularClassificationConfig,
    check_prob,
    postprocess_classification,
    postprocess_features,
)
from pfnjax.types import Array, PRNGKey

# --------------------------------------------------------------------------- the SCM prior


def meta_trunc_norm_log_scaled(
    rng: RandomStream,
    min_mean: float,
    max_mean: float,
    lower_bound: float,
    round_: bool,
    min_std: float = 0.01,
    max_std: float = 1.0,
) -> Array:
    """TabPFN's ``meta_trunc_norm_log_scaled`` hyperprior: ``lower_bound + TruncNormal_[0,inf)(mu, mu*e^w)``.

    ``log mu ~ U[log min_mean, log max_mean]``, ``w ~ U[log min_std, log max_std]``; rounded if ``round_``.
    """
    mu = jnp.exp(rng.uniform((), math.log(min_mean), math.log(max_mean)))
    sigma = mu * jnp.exp(rng.uniform((), math.log(min_std), math.log(max_std)))
    v = jnp.maximum(mu + sigma * rng.truncated_normal_lower(-mu / sigma), 0.0)
    return lower_bound + (jnp.round(v) if round_ else v)


def _sparse_weight(
    rng: RandomStream,
    shape: tuple[int, ...],
    n_in: Array,
    n_out: Array,
    init_std: Array,
    dropout: Array,
    block_wise: Array,
) -> Array:
    """Padded ``[..., in, out]`` weights with active block ``[:n_in, :n_out]``, dropout- or block-sparse.

    Leading dimensions index independent matrices (each gets its own block count).
    """
    lead = shape[:-2]
    z = rng.normal(shape)
    keep = rng.bernoulli(1.0 - dropout, shape)
    w_drop = z * (init_std / (1.0 - jnp.sqrt(dropout))) * keep
    max_blocks = jnp.ceil(jnp.sqrt(jnp.minimum(n_in, n_out).astype(jnp.float32))).astype(jnp.int32)
    n_blocks = rng.randint(lead, 1, max_blocks + 1)[..., None, None]  # U{1..max_blocks}
    bw_in, bw_out = n_in // n_blocks, n_out // n_blocks
    i = jnp.arange(shape[-2])[:, None]
    o = jnp.arange(shape[-1])[None, :]
    block_mask = (i // bw_in == o // bw_out) & (i < n_blocks * bw_in) & (o < n_blocks * bw_out)
    keep_prob = (n_blocks * bw_in * bw_out) / (n_in * n_out)
    w_block = z * (init_std / jnp.sqrt(keep_prob)) * block_mask
    w = jnp.where(block_wise, w_block, w_drop)
    return jnp.where((i < n_in) & (o < n_out), w, 0.0)


def _bias(rng: RandomStream, shape: tuple[int, ...], fan_in: Array, n_out) -> Array:
    """PyTorch's ``nn.Linear`` bias init ``U[-1/sqrt(fan_in), 1/sqrt(fan_in)]``, zero beyond ``n_out``."""
    bound = 1.0 / jnp.sqrt(jnp.asarray(fan_in, jnp.float32))
    b = rng.uniform(shape, -1.0, 1.0) * bound
    return jnp.where(jnp.arange(shape[-1]) < n_out, b, 0.0)


@register_prior("scm")
@dataclasses.dataclass(frozen=True)
class SCMPrior(TabularClassificationConfig):
    """TabPFN v1 structural-causal-model classification prior (module docstring has the maths).

    Attributes (beyond :class:`TabularClassificationConfig`):
        max_num_layers, max_hidden_dim, max_num_causes: static caps on the sampled depth, width and
            number of causes (the padded width is ``max(max_hidden_dim, 2 F_max + 1)``).
        num_layers_mean, hidden_dim_mean, num_causes_mean, noise_std_mean, init_std_mean:
            ``(min_mean, max_mean)`` of the meta-truncated-normal hyperpriors (TabPFN v1 values).
        dropout_scale, dropout_beta_range: ``p_drop = dropout_scale * Beta(a, b)``, ``a, b ~ U[range]``.
        causal_p, y_is_effect_p, in_clique_p, sort_features_p, block_wise_dropout_p,
            pre_sample_weights_p, mixed_causes_p: per-dataset Bernoulli probabilities of each mode.
        random_feature_rotation: cyclically rotate the used features by a random offset.
        activations: names chosen uniformly per dataset (from ``tanh``, ``identity``, ``relu``).

    Cost per dataset is ``O(T (L_max - 1) W^2)`` whatever the sampled depth and width (static shapes).
    """

    max_num_layers: int = 8
    max_hidden_dim: int = 128
    max_num_causes: int = 16
    num_layers_mean: tuple[float, float] = (1.0, 6.0)
    hidden_dim_mean: tuple[float, float] = (5.0, 130.0)
    num_causes_mean: tuple[float, float] = (1.0, 12.0)
    noise_std_mean: tuple[float, float] = (1e-4, 0.3)
    init_std_mean: tuple[float, float] = (0.01, 10.0)
    dropout_scale: float = 0.9
    dropout_beta_range: tuple[float, float] = (0.1, 5.0)
    causal_p: float = 0.5
    y_is_effect_p: float = 0.5
    in_clique_p: float = 0.5
    sort_features_p: float = 0.5
    block_wise_dropout_p: float = 0.5
    pre_sample_weights_p: float = 0.5
    mixed_causes_p: float = 0.5
    random_feature_rotation: bool = True
    activations: tuple[str, ...] = ("tanh", "identity", "relu")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("num_layers_mean", "hidden_dim_mean", "num_causes_mean", "noise_std_mean", "init_std_mean",
                     "dropout_beta_range", "activations"):
            object.__setattr__(self, name, tuple(getattr(self, name)))  # lists from JSON configs -> hashable
        if self.max_num_layers < 2 or self.max_hidden_dim < 4 or self.max_num_causes < 1:
            raise ValueError(
                "need max_num_layers >= 2, max_hidden_dim >= 4, max_num_causes >= 1; got "
                f"{self.max_num_layers}, {self.max_hidden_dim}, {self.max_num_causes}"
            )
        for name in ("causal_p", "y_is_effect_p", "in_clique_p", "sort_features_p", "block_wise_dropout_p",
                     "pre_sample_weights_p", "mixed_causes_p", "dropout_scale"):
            check_prob(name, getattr(self, name))
        if not self.activations or any(a not in ACTIVATIONS for a in self.activations):
            raise ValueError(
                f"activations must be a non-empty subset of {sorted(ACTIVATIONS)}, got {self.activations}"
            )
        for name in ("num_layers_mean", "hidden_dim_mean", "num_causes_mean", "noise_std_mean", "init_std_mean",
                     "dropout_beta_range"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be (lo, hi) with 0 < lo <= hi, got {(lo, hi)}")

    def _causes(self, rng: RandomStream, seq_len: int, width: int, num_causes: Array) -> Array:
        """``f32[T, width]`` causes; columns ``>= num_causes`` are zero."""
        mean = rng.normal((width,))
        std = jnp.abs(rng.normal((width,)) * mean)
        normal = mean + std * rng.normal((seq_len, width))
        # "mixed" sampling: per column normal / multinomial / zipf, with per-dataset probabilities.
        normal_p, multi_p = rng.uniform((2,)) * 0.66
        u_normal, u_multi = rng.uniform((2, width))
        n_cat = rng.randint((width,), 2, 11)
        probs = jnp.where(jnp.arange(10)[None, :] < n_cat[:, None], rng.uniform((width, 10)), 0.0)
        multi = rng.categorical(probs, seq_len).astype(jnp.float32)
        multi_std = jnp.std(multi, axis=0, ddof=1) if seq_len > 1 else jnp.ones((width,))
        multi = (multi - multi.mean(0)) / jnp.where(multi_std > 0, multi_std, 1.0)
        a = 2.0 + 2.0 * rng.uniform((width,))
        ranks = jnp.arange(1, 10, dtype=jnp.float32)
        pmf = ranks[None, :] ** (-a[:, None]) / jax.scipy.special.zeta(a, 1.0)[:, None]  # P(k), k=1..9
        tail = jnp.maximum(1.0 - pmf.sum(1, keepdims=True), 0.0)  # P(k >= 10): clipped to 10
        zipf = 1.0 + rng.categorical(jnp.concatenate([pmf, tail], axis=1), seq_len).astype(jnp.float32)
        zipf = zipf - zipf.mean(0)
        mixed = jnp.where(u_normal > normal_p, normal, jnp.where(u_multi > multi_p, multi, zipf))
        causes = jnp.where(rng.bernoulli(self.mixed_causes_p), mixed, normal)
        return jnp.where(jnp.arange(width)[None, :] < num_causes, causes, 0.0)

    def sample_dataset_with_info(
        self, key: PRNGKey, seq_len: int, max_features: int, num_features: Array, single_eval_pos: Array
    ) -> tuple[Array, Array, dict[str, Array]]:
        """Like :meth:`sample_dataset`, plus ``info`` (see :func:`postprocess_classification`; adds ``causal``)."""
        rng, x, y, nf, causal = self.features_and_target(key, seq_len, max_features, num_features)
        # 5. tabular post-processing and classes
        x, labels, info = postprocess_classification(rng, x, y, single_eval_pos, nf, self)
        info["causal"] = causal
        return x, labels, info

    def features_and_target(
        self, key: PRNGKey, seq_len: int, max_features: int, num_features: Array
    ) -> tuple[RandomStream, Array, Array, Array, Array]:
        """Steps 1 to 4: raw features ``f32[T, F_max]`` (unused columns zero) and the continuous target
        ``f32[T]``, with the random stream to continue from, the used-feature count and the causal flag."""
        lb = self.max_num_layers - 1  # static number of hidden blocks
        rng = RandomStream(key, max_calls=32 + lb)
        nf = jnp.maximum(jnp.asarray(num_features, jnp.int32), 1)
        width = max(self.max_hidden_dim, 2 * max_features + 1)  # static padded width
        cause_width = max(self.max_num_causes, max_features)

        # 1. hyperparameters
        causal = rng.bernoulli(self.causal_p)
        num_layers = jnp.minimum(meta_trunc_norm_log_scaled(rng, *self.num_layers_mean, 2, True), self.max_num_layers)
        n_blocks = num_layers.astype(jnp.int32) - 1
        hidden = jnp.minimum(meta_trunc_norm_log_scaled(rng, *self.hidden_dim_mean, 4, True), self.max_hidden_dim)
        hidden = jnp.where(causal, jnp.maximum(hidden.astype(jnp.int32), 2 * nf + 1), hidden.astype(jnp.int32))
        n_causes = jnp.minimum(meta_trunc_norm_log_scaled(rng, *self.num_causes_mean, 1, True), self.max_num_causes)
        n_causes = jnp.where(causal, n_causes.astype(jnp.int32), nf)
        noise_std = meta_trunc_norm_log_scaled(rng, *self.noise_std_mean, 0.0, False)
        init_std = meta_trunc_norm_log_scaled(rng, *self.init_std_mean, 0.0, False)
        g = rng.gamma(rng.uniform((2,), *self.dropout_beta_range))  # Beta(a, b) = G_a / (G_a + G_b)
        dropout = jnp.minimum(self.dropout_scale * g[0] / jnp.maximum(g[0] + g[1], 1e-30), 0.99)
        block_wise = rng.bernoulli(self.block_wise_dropout_p)
        pre_sample = rng.bernoulli(self.pre_sample_weights_p)
        act_idx = rng.randint((), 0, len(self.activations))
        act_fns = [ACTIVATIONS[a] for a in self.activations]

        def act(h: Array) -> Array:
            return jax.lax.switch(act_idx, act_fns, h) if len(act_fns) > 1 else act_fns[0](h)

        # 2. causes, 3. the noisy MLP
        causes = self._causes(rng, seq_len, cause_width, n_causes)
        w0 = _sparse_weight(rng, (cause_width, width), n_causes, hidden, init_std, jnp.zeros(()), block_wise)
        # Full-precision matmuls: the SCM is a deep noisy MLP whose thresholds decide the classes,
        # so TF32 rounding would change which labels a key draws (pfnjax.numerics).
        h0 = matmul(causes, w0) + _bias(rng, (width,), n_causes, hidden)
        ws = _sparse_weight(rng, (lb, width, width), hidden, hidden, init_std, dropout, block_wise)
        bs = _bias(rng, (lb, width), hidden, hidden)
        unit_on = jnp.arange(width) < hidden
        per_unit = jnp.abs(rng.normal((lb, width))) * noise_std
        sig = jnp.where(unit_on, jnp.where(pre_sample, per_unit, noise_std), 0.0)

        def block(h, inputs):
            layer, w, b, s, k = inputs
            eps = jax.random.normal(k, (seq_len * width,)).reshape(seq_len, width)
            new = matmul(act(h), w) + b + s * eps
            new = jnp.clip(jnp.nan_to_num(new), -CLIP, CLIP)
            return jnp.where(layer < n_blocks, new, h), new

        h_last, nodes = jax.lax.scan(block, h0, (jnp.arange(lb), ws, bs, sig, rng.keys(lb)))  # nodes [Lb, T, W]

        # non-causal readout: y = w^T act(h_last) + b + noise; x = causes
        w_out = _sparse_weight(rng, (width, 1), hidden, jnp.ones((), jnp.int32), init_std, dropout, block_wise)[:, 0]
        b_out = _bias(rng, (1,), hidden, 1)[0]
        s_out = jnp.where(pre_sample, jnp.abs(rng.normal()) * noise_std, noise_std)
        y_noncausal = matmul(act(h_last), w_out) + b_out + s_out * rng.normal((seq_len,))
        x_noncausal = causes[:, :max_features]

        # 4. causal mode: target and features are random hidden nodes (node v = unit v % H of block v // H)
        n_nodes = n_blocks * hidden
        pool = n_nodes - 1  # the last node is the target in "effect" mode and never a feature
        n_max = lb * width
        v = jnp.arange(n_max)
        perm_random = jnp.argsort(jnp.where(v < pool, rng.uniform((n_max,)), 2.0))
        start = rng.randint((), 0, jnp.maximum(pool - nf, 1))  # the clique is [start, start + nf] < pool
        perm_clique = start + jnp.argsort(jnp.where(v < nf + 1, rng.uniform((n_max,)), 2.0))
        perm = jnp.where(rng.bernoulli(self.in_clique_p), perm_clique, perm_random)
        target_node = jnp.where(rng.bernoulli(self.y_is_effect_p), n_nodes - 1, perm[0])
        feat_nodes = perm[1 : 1 + max_features]
        f = jnp.arange(max_features)
        used = f < nf
        sorted_nodes = jnp.sort(jnp.where(used, feat_nodes, n_max))
        feat_nodes = jnp.where(rng.bernoulli(self.sort_features_p), sorted_nodes, feat_nodes)
        if self.random_feature_rotation:
            shift = rng.randint((), 0, nf)
            feat_nodes = feat_nodes[jnp.where(used, (f + shift) % nf, f)]
        feat_nodes = jnp.where(used, feat_nodes, 0)
        last = lb - 1  # (the clamp only matters for the discarded non-causal branch)
        x_causal = nodes[jnp.minimum(feat_nodes // hidden, last), :, feat_nodes % hidden].T  # [T, F_max]
        y_causal = nodes[jnp.minimum(target_node // hidden, last), :, target_node % hidden]

        x = jnp.where(causal, x_causal, x_noncausal)
        y = jnp.where(causal, y_causal, y_noncausal)
        x = jnp.where(used[None, :], x, 0.0)
        return rng, x, y, nf, causal

    def sample_dataset(
        self, key: PRNGKey, seq_len: int, max_features: int, num_features: Array, single_eval_pos: Array
    ) -> tuple[Array, Array]:
        x, y, _ = self.sample_dataset_with_info(key, seq_len, max_features, num_features, single_eval_pos)
        return x, y


@register_prior("scm_regression")
@dataclasses.dataclass(frozen=True)
class SCMRegressionPrior(SCMPrior):
    """The SCM prior with its continuous target kept: a regression prior for real tabular data.

    Steps 1 to 4 and the feature post-processing (categorical columns, missing values, outlier
    clipping, z-scoring) are :class:`SCMPrior`'s; the target ``y`` is soft-clipped at
    ``outlier_sigma`` standard deviations (heavy-tailed targets are common in a deep random MLP) and
    z-scored over all rows. The classification settings (``max_num_classes`` etc.) are unused.
    """

    task: str = dataclasses.field(default="regression", init=False)

    def sample_dataset(
        self, key: PRNGKey, seq_len: int, max_features: int, num_features: Array, single_eval_pos: Array
    ) -> tuple[Array, Array]:
        rng, x, y, nf, _ = self.features_and_target(key, seq_len, max_features, num_features)
        x, _ = postprocess_features(rng, x, nf, self)
        y = jnp.nan_to_num(y.astype(jnp.float32), posinf=CLIP, neginf=-CLIP)
        if self.outlier_sigma is not None:
            y = soft_clip_outliers(y, self.outlier_sigma)
        return x, standardize(y)
