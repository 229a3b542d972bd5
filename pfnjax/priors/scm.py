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

**5. Tabular post-processing** (:func:`postprocess_classification`, shared with
:class:`pfnjax.priors.mix.GPClassificationPrior`):

* *Categorical features*: with prob ``categorical_feature_p`` a dataset gets categorical columns; each
  used column is then categorical with prob :math:`q \sim \mathcal U[0,1]` (or ``categorical_column_p``).
  A categorical column is cut into :math:`k` levels at :math:`k-1` thresholds drawn at random rows
  (:math:`k = 2` w.p. 0.5, else :math:`\mathcal U\{2..\max(\mathrm{round}(10\,\mathrm{Gamma}(1)), 2)\}`,
  capped at ``max_categories``) and the level indices become random integer codes (shuffled w.p. 0.7,
  reversed w.p. 0.5).
* *Missing values*: each used feature value is NaN with prob ``missing_rate`` (iid). NaN appears only in
  used feature columns, never in ``y`` or in unused columns. **Consumers must handle NaN**: the model's
  x encoder (:mod:`pfnjax.model.transformer`) maps NaN to 0 (mean imputation after standardisation).
* *Standardisation*: soft outlier clipping at ``outlier_sigma`` standard deviations
  (:math:`x \leftarrow \min(x, \mathrm{hi} + \log(1 + |x|))`, likewise below), then per-column z-scoring over all ``T``
  rows, both ignoring NaN. Rescaling x by the used-feature fraction is **not** done here: the model's
  x encoder does it (``ModelConfig.feature_scaling``).
* *Classes* (:func:`discretize_targets`): the target is z-scored; the nominal class count is
  :math:`C = 2` w.p. ``two_class_p`` (0.5), else :math:`C \sim \mathcal U\{2..C_{\max}\}`, so
  :math:`P(C = 2) = 0.5 + 0.5/(C_{\max} - 1)`. With prob ``rank_threshold_p`` (0.5) the :math:`C - 1`
  thresholds are random *context* target values (rank-based), else :math:`\mathcal N(0,1)` values
  (value-based); :math:`\tilde y_t = \#\{j : y_t > \tau_j\}`. Then classes that no context row carries are
  merged into their ordinal neighbour (i.e. thresholds that leave a bin empty in the context are
  dropped), labels are made dense, and a uniformly random permutation of the
  :math:`C_{\text{eff}}` remaining classes is applied.

**Context and query share classes.** After the merge every query label is carried by at least one context
row, and the labels are exactly :math:`\{0, \dots, C_{\text{eff}} - 1\}` with
:math:`C_{\text{eff}} = \max_{t < s} y_t + 1` (:func:`num_context_classes`). In rank mode the thresholds are
distinct context values below the context maximum, so :math:`C_{\text{eff}} = \min(C, U)` where
:math:`U` is the number of distinct target values in the context (so exactly :math:`C` classes whenever the
context has at least :math:`C` distinct values). In value mode some of the :math:`C` bins may hold no context
row and :math:`C_{\text{eff}} < C` (as in the reference, whose ``normalize_labels`` also made labels dense).
The reference instead reshuffled rows up to 10 times until context and query class sets matched, and
otherwise set the whole dataset's labels to -100 (ignored by the loss); the merge needs neither a loop
nor an ignore label.

**Differences from the reference** (TabPFN v1 ``priors/mlp.py`` + ``flexible_categorical.py``): the
meta-parameters (the :math:`\mu, \sigma` of each MTN) are redrawn per dataset rather than once per batch
(same per-dataset marginal, no within-batch correlation); depth, width and cause count are clipped to the
static maxima ``max_num_layers``, ``max_hidden_dim``, ``max_num_causes`` (shapes must be static); hidden
activations are clipped to :math:`\pm 10^{15}` so no value overflows (the reference zeroed datasets with
NaN); rank thresholds are distinct context values (reference: random rows, with replacement, over all
rows); missing values use one iid rate instead of the reference's "reasons".
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from pfnjax.priors.base import feature_mask, register_prior
from pfnjax.types import Array, PRNGKey

_ACTIVATIONS = {
    "tanh": jnp.tanh,
    "identity": lambda h: h,
    "relu": jax.nn.relu,
}
_CLIP = 1e15  # |hidden activations| are clipped here so f32 never overflows.


class RandomStream:
    """Random numbers for one dataset, handed out as slices of a few large draws.

    XLA:CPU compile time grows with the number of separate ``jax.random`` calls (each is its own
    threefry computation; sixty small draws took ~16 s to compile on a 2-core CPU, one pooled draw
    ~3 s). The priors here need many small draws, so they take them from this stream: small requests
    are cut from shared chunks of ``chunk_size`` uniforms or normals; large ones get their own call.
    Everything is static-shaped and deterministic given the key and the order of requests.
    """

    def __init__(self, key: PRNGKey, chunk_size: int = 2048, max_calls: int = 64):
        self._keys = jax.random.split(key, max_calls)
        self._calls = 0
        self._chunk_size = chunk_size
        self._buffers: dict[str, Array | None] = {"uniform": None, "normal": None}
        self._offsets = {"uniform": 0, "normal": 0}

    def key(self) -> PRNGKey:
        """A fresh key (for the rare draw that needs ``jax.random`` directly)."""
        if self._calls >= self._keys.shape[0]:
            raise RuntimeError("RandomStream ran out of keys; raise max_calls")
        k = self._keys[self._calls]
        self._calls += 1
        return k

    def keys(self, n: int) -> PRNGKey:
        """``n`` fresh keys as a key array of shape ``[n]``."""
        if self._calls + n > self._keys.shape[0]:
            raise RuntimeError("RandomStream ran out of keys; raise max_calls")
        ks = self._keys[self._calls : self._calls + n]
        self._calls += n
        return ks

    def _draw(self, kind: str, n: int) -> Array:
        k = self.key()
        return jax.random.uniform(k, (n,)) if kind == "uniform" else jax.random.normal(k, (n,))

    def _take(self, kind: str, shape: tuple[int, ...]) -> Array:
        n = math.prod(shape)
        if n > self._chunk_size // 2:
            return self._draw(kind, n).reshape(shape)
        buf, off = self._buffers[kind], self._offsets[kind]
        if buf is None or off + n > self._chunk_size:
            buf, off = self._draw(kind, self._chunk_size), 0
        self._buffers[kind], self._offsets[kind] = buf, off + n
        return buf[off : off + n].reshape(shape)

    def uniform(self, shape: tuple[int, ...] = (), minval=0.0, maxval=1.0) -> Array:
        """``U[minval, maxval)`` draws."""
        return minval + (maxval - minval) * self._take("uniform", shape)

    def normal(self, shape: tuple[int, ...] = ()) -> Array:
        """Standard normal draws."""
        return self._take("normal", shape)

    def bernoulli(self, p, shape: tuple[int, ...] = ()) -> Array:
        return self.uniform(shape) < p

    def randint(self, shape: tuple[int, ...], low, high) -> Array:
        """``U{low..high-1}`` (``low``/``high`` may be traced and broadcast against ``shape``)."""
        low = jnp.asarray(low, jnp.int32)
        high = jnp.maximum(jnp.asarray(high, jnp.int32), low + 1)
        draw = jnp.floor(low + self.uniform(shape) * (high - low)).astype(jnp.int32)
        return jnp.clip(draw, low, high - 1)

    def truncated_normal_lower(self, lower: Array, shape: tuple[int, ...] = ()) -> Array:
        """Standard normal truncated to ``[lower, inf)``, by inverse CDF."""
        p_low = jax.scipy.special.ndtr(lower)
        u = self.uniform(shape)
        p = jnp.clip(p_low + u * (1.0 - p_low), 1e-7, 1.0 - 1e-7)
        return jnp.maximum(jax.scipy.special.ndtri(p), lower)

    def gamma(self, a: Array, tries: int = 8) -> Array:
        """``Gamma(a, 1)`` for ``a f32[n]`` (Marsaglia-Tsang with a fixed number of vectorised tries).

        Each try is accepted with probability > 0.95, so all ``tries`` fail with probability < 1e-10
        (then the mean ``a`` is returned). ``a < 1`` uses ``G(a) = G(a + 1) U^(1/a)``.
        """
        a = jnp.asarray(a, jnp.float32)
        boost = a < 1.0
        aa = jnp.where(boost, a + 1.0, a)
        d = aa - 1.0 / 3.0
        c = 1.0 / jnp.sqrt(9.0 * d)
        z = self.normal((tries,) + a.shape)
        u = self.uniform((tries,) + a.shape)
        v = (1.0 + c * z) ** 3
        ok = (v > 0) & (jnp.log(jnp.maximum(u, 1e-30)) < 0.5 * z**2 + d - d * v + d * jnp.log(jnp.maximum(v, 1e-30)))
        first = jnp.argmax(ok, axis=0)
        sample = jnp.take_along_axis(d * v, first[None], axis=0)[0]
        sample = jnp.where(jnp.any(ok, axis=0), sample, aa)
        u_boost = jnp.maximum(self.uniform(a.shape), 1e-30)
        return jnp.where(boost, sample * u_boost ** (1.0 / a), sample)

    def categorical(self, probs: Array, num: int) -> Array:
        """``i32[num, K]``: ``num`` iid draws from each row of ``probs f32[K, n]`` (rows need not sum to 1)."""
        cdf = jnp.cumsum(probs, axis=-1)
        cdf = cdf / cdf[:, -1:]
        u = self.uniform((num, probs.shape[0]))
        return jnp.sum(u[:, :, None] > cdf[None, :, :-1], axis=-1).astype(jnp.int32)


# --------------------------------------------------------------------------- shared tabular config


@dataclasses.dataclass(frozen=True)
class TabularClassificationConfig:
    """Post-processing shared by the tabular classification priors (SCM and GP-classification).

    Attributes:
        max_num_classes: C_max, the largest class count (the model's number of class logits).
        num_classes: if set, every dataset has this nominal class count (else the TabPFN distribution).
        two_class_p: probability of C = 2; otherwise C ~ U{2..max_num_classes}.
        rank_threshold_p: probability of rank-based thresholds (random context target values);
            otherwise value-based thresholds at N(0, 1) draws.
        categorical_feature_p: probability that a dataset has categorical columns at all.
        categorical_column_p: in such a dataset, the probability that a used column is categorical;
            ``None`` draws it ~ U[0, 1] per dataset (reference).
        max_categories: cap on the number of levels of a categorical column (static shape).
        missing_rate: probability that a used feature value is NaN (iid). Default 0 (off).
        outlier_sigma: soft-clip features at this many std devs before z-scoring; ``None`` disables.
    """

    max_num_classes: int = 10
    num_classes: int | None = None
    two_class_p: float = 0.5
    rank_threshold_p: float = 0.5
    categorical_feature_p: float = 0.2
    categorical_column_p: float | None = None
    max_categories: int = 32
    missing_rate: float = 0.0
    outlier_sigma: float | None = 4.0
    task: str = dataclasses.field(default="classification", init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.max_num_classes, int) or self.max_num_classes < 2:
            raise ValueError(f"max_num_classes must be an int >= 2, got {self.max_num_classes!r}")
        if self.num_classes is not None and not (2 <= self.num_classes <= self.max_num_classes):
            raise ValueError(f"num_classes must be in [2, max_num_classes={self.max_num_classes}], got {self.num_classes}")
        for name in ("two_class_p", "rank_threshold_p", "categorical_feature_p", "missing_rate"):
            _check_prob(name, getattr(self, name))
        if self.categorical_column_p is not None:
            _check_prob("categorical_column_p", self.categorical_column_p)
        if not isinstance(self.max_categories, int) or self.max_categories < 2:
            raise ValueError(f"max_categories must be an int >= 2, got {self.max_categories!r}")
        if self.outlier_sigma is not None and self.outlier_sigma <= 0:
            raise ValueError(f"outlier_sigma must be positive or None, got {self.outlier_sigma}")


def _check_prob(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")


