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
row and :math:`C_{\text{eff}} < C` (as in the reference, whose ``normalize_labels`` also made labels dense);
occasionally (about 3% of value-mode datasets at T = 200) every context row lands in one bin and the dataset
has a single class. The reference (as we read it) reshuffled rows up to 10 times until context and query
class sets matched, and otherwise set the dataset's labels to -100 (ignored by the loss); the merge needs
neither a loop nor an ignore label. ``sample_dataset_with_info`` returns the nominal :math:`C`, the realised
:math:`C_{\text{eff}}`, the threshold mode and the categorical-column mask for inspection and tests.

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
Random numbers come from :class:`RandomStream` (a few large draws sliced up), which keeps XLA:CPU compile
time at seconds rather than tens of seconds.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from pfnjax.numerics import matmul
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
            raise ValueError(
                f"num_classes must be in [2, max_num_classes={self.max_num_classes}], got {self.num_classes}"
            )
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


# --------------------------------------------------------------------------- classes


def sample_num_classes(
    rng: RandomStream, max_num_classes: int, two_class_p: float = 0.5, num_classes: int | None = None
) -> Array:
    """Nominal class count: 2 w.p. ``two_class_p``, else ``U{2..max_num_classes}`` (or fixed ``num_classes``)."""
    if num_classes is not None:
        return jnp.asarray(num_classes, jnp.int32)
    two = rng.bernoulli(two_class_p)
    uniform_c = rng.randint((), 2, max_num_classes + 1)
    return jnp.where(two, 2, uniform_c).astype(jnp.int32)


def rank_thresholds(
    rng: RandomStream, y: Array, single_eval_pos: Array, num_thresholds: Array, max_thresholds: int
) -> Array:
    """``f32[max_thresholds]``: up to ``num_thresholds`` distinct context values of ``y``, below the context max.

    Unused slots are ``+inf`` (they never fire). Thresholding at these values puts at least one context row
    in every bin: bin ``j`` holds the row whose value is threshold ``j`` and the top bin the context maximum.
    """
    seq_len = y.shape[0]
    n = max(seq_len, max_thresholds)
    pos = jnp.arange(n)
    y_pad = jnp.concatenate([y, jnp.full((n - seq_len,), jnp.inf, y.dtype)]) if n > seq_len else y
    in_ctx = pos < single_eval_pos
    s = jnp.sort(jnp.where(in_ctx, y_pad, jnp.inf))
    ctx_max = s[jnp.maximum(single_eval_pos - 1, 0)]
    is_new = jnp.concatenate([jnp.ones((1,), bool), s[1:] != s[:-1]])
    candidate = is_new & in_ctx & (s < ctx_max)
    scores = jnp.where(candidate, rng.uniform((n,)), 2.0)
    order = jnp.argsort(scores)[:max_thresholds]
    valid = (jnp.arange(max_thresholds) < num_thresholds) & candidate[order]
    return jnp.where(valid, s[order], jnp.inf)


def value_thresholds(rng: RandomStream, num_thresholds: Array, max_thresholds: int) -> Array:
    """``f32[max_thresholds]``: ``num_thresholds`` N(0, 1) draws, the rest ``+inf``."""
    return jnp.where(jnp.arange(max_thresholds) < num_thresholds, rng.normal((max_thresholds,)), jnp.inf)


def merge_classes_absent_from_context(
    labels: Array, single_eval_pos: Array, max_num_classes: int
) -> tuple[Array, Array]:
    """Make ordinal labels dense over the classes the context carries.

    A class that no context row carries is merged into the largest present class below it (or, if none,
    the smallest present class): for threshold labels this drops the thresholds that leave a context bin
    empty. Returns ``(dense labels i32[T] in [0, C_eff), C_eff)``; every query label is a context label.
    """
    in_ctx = jnp.arange(labels.shape[0]) < jnp.maximum(single_eval_pos, 1)
    classes = jnp.arange(max_num_classes)
    present = jnp.any((labels[:, None] == classes[None, :]) & in_ctx[:, None], axis=0)
    lower = jax.lax.cummax(jnp.where(present, classes, -1))
    mapped = jnp.where(lower >= 0, lower, jnp.argmax(present))
    dense = jnp.cumsum(present) - 1
    return dense[mapped][labels].astype(jnp.int32), jnp.sum(present).astype(jnp.int32)


def random_class_permutation(rng: RandomStream, labels: Array, num_classes: Array, max_num_classes: int) -> Array:
    """Apply a uniformly random permutation of ``{0..num_classes-1}`` to ``labels``."""
    scores = jnp.where(jnp.arange(max_num_classes) < num_classes, rng.uniform((max_num_classes,)), 2.0)
    return jnp.argsort(scores)[labels].astype(jnp.int32)


def discretize_targets(
    rng: RandomStream,
    y: Array,
    single_eval_pos: Array,
    num_classes: Array,
    max_num_classes: int,
    rank_threshold_p: float = 0.5,
) -> tuple[Array, Array, Array]:
    """Turn a continuous target ``f32[T]`` into class labels shared by context and queries.

    ``y`` should be z-scored. Draws rank- or value-based thresholds (see the module docstring), merges
    classes absent from the context, and applies a random class permutation.

    Returns:
        ``(labels i32[T] in [0, C_eff), C_eff i32, rank_mode bool)``.
    """
    rank_mode = rng.bernoulli(rank_threshold_p)
    m = max_num_classes - 1
    thr = jnp.where(
        rank_mode,
        rank_thresholds(rng, y, single_eval_pos, num_classes - 1, m),
        value_thresholds(rng, num_classes - 1, m),
    )
    raw = jnp.sum(y[:, None] > thr[None, :], axis=1).astype(jnp.int32)
    dense, c_eff = merge_classes_absent_from_context(raw, single_eval_pos, max_num_classes)
    labels = random_class_permutation(rng, dense, c_eff, max_num_classes)
    return labels, c_eff, rank_mode


def num_context_classes(y: Array, single_eval_pos: Array) -> Array:
    """Number of classes of a dataset from these priors: ``max(y[:sep]) + 1`` (labels are dense).

    Works on one dataset (``y i32[T]``, scalar sep) or a batch (``y i32[B, T]``, ``sep i32[B]``).
    """
    sep = jnp.asarray(single_eval_pos)[..., None]
    in_ctx = jnp.arange(y.shape[-1]) < sep
    return (jnp.max(jnp.where(in_ctx, y, -1), axis=-1) + 1).astype(jnp.int32)


# --------------------------------------------------------------------------- features


def make_categorical(
    rng: RandomStream,
    x: Array,
    used: Array,
    categorical_feature_p: float,
    categorical_column_p: float | None,
    max_categories: int,
) -> tuple[Array, Array]:
    """Quantise a random subset of used columns of ``x f32[T, F]`` into random integer codes.

    Returns ``(x, categorical bool[F])``. Level counts and codes follow TabPFN v1 (module docstring).
    """
    seq_len, num_cols = x.shape
    has_cat = rng.bernoulli(categorical_feature_p)
    q = rng.uniform() if categorical_column_p is None else categorical_column_p
    is_cat = has_cat & used & rng.bernoulli(q, (num_cols,))
    # Gamma(1) is Exponential(1); the reference's level count is max(round(gammavariate(1, 10)), 2).
    exponential = -jnp.log1p(-rng.uniform((num_cols,)))
    n_unique = jnp.clip(jnp.round(10.0 * exponential), 2, max_categories).astype(jnp.int32)
    k = jnp.where(rng.bernoulli(0.5, (num_cols,)), 2, rng.randint((num_cols,), 2, n_unique + 1))
    m = max_categories - 1
    rows = rng.randint((m, num_cols), 0, seq_len)
    thr = jnp.take_along_axis(x, rows, axis=0)  # [m, F]: thresholds at random rows
    thr = jnp.where(jnp.arange(m)[:, None] < (k - 1)[None, :], thr, jnp.inf)
    level = jnp.sum(x[:, None, :] > thr[None, :, :], axis=1)  # [T, F] in [0, k)
    scores = jnp.where(
        jnp.arange(max_categories)[None, :] < k[:, None], rng.uniform((num_cols, max_categories)), 2.0
    )
    perm = jnp.argsort(scores, axis=1)  # row f starts with a permutation of 0..k_f-1
    shuffled = jnp.take_along_axis(perm.T, level, axis=0)  # [T, F]
    code = jnp.where(rng.bernoulli(0.7, (num_cols,)), shuffled, level)
    code = jnp.where(rng.bernoulli(0.5, (num_cols,)), k - 1 - code, code)
    return jnp.where(is_cat, code.astype(x.dtype), x), is_cat


def insert_missing(rng: RandomStream, x: Array, used: Array, missing_rate: float) -> Array:
    """Set each used value of ``x f32[T, F]`` to NaN with probability ``missing_rate``."""
    if missing_rate <= 0.0:
        return x
    missing = rng.bernoulli(missing_rate, x.shape) & used[None, :]
    return jnp.where(missing, jnp.nan, x)


def _nan_stats(x: Array) -> tuple[Array, Array]:
    return jnp.nan_to_num(jnp.nanmean(x, axis=0)), jnp.nan_to_num(jnp.nanstd(x, axis=0))


def soft_clip_outliers(x: Array, n_sigma: float) -> Array:
    """TabPFN v1's ``remove_outliers``: soft-clip each column at ``n_sigma`` robust std devs (NaN-aware)."""
    mean, std = _nan_stats(x)
    inlier = jnp.abs(x - mean) <= n_sigma * std
    mean, std = _nan_stats(jnp.where(inlier, x, jnp.nan))
    lower, upper = mean - n_sigma * std, mean + n_sigma * std
    x = jnp.maximum(-jnp.log1p(jnp.abs(x)) + lower, x)
    return jnp.minimum(jnp.log1p(jnp.abs(x)) + upper, x)


def standardize(x: Array, axis: int = 0) -> Array:
    """Z-score along ``axis`` ignoring NaN; constant columns become 0.

    Values are first divided by the column's max ``|x|`` (hidden units can reach ``1e15``), and the
    z-scoring is done twice: for a column whose offset dwarfs its spread, the first pass's f32 mean is off
    by a sizeable fraction of the spread, which the second pass (on values of order 1) removes.
    """
    scale = jnp.nan_to_num(jnp.nanmax(jnp.abs(x), axis=axis, keepdims=True))
    x = x / jnp.where(scale > 0, scale, 1.0)
    for _ in range(2):
        mean = jnp.nan_to_num(jnp.nanmean(x, axis=axis, keepdims=True))
        std = jnp.nan_to_num(jnp.nanstd(x, axis=axis, keepdims=True))
        x = (x - mean) / jnp.where(std > 0, std, 1.0)
    return x


def postprocess_classification(
    key: PRNGKey | RandomStream,
    x: Array,
    y: Array,
    single_eval_pos: Array,
    num_features: Array,
    cfg: TabularClassificationConfig,
) -> tuple[Array, Array, dict[str, Array]]:
    """Shared tail of the tabular classification priors: features, then classes.

    ``x f32[T, F_max]`` (unused columns arbitrary), ``y f32[T]`` continuous. Returns
    ``(x, labels i32[T], info)``; ``info`` holds ``num_classes`` (nominal C), ``num_context_classes``
    (C_eff), ``rank_mode`` and ``categorical bool[F_max]``.
    """
    rng = key if isinstance(key, RandomStream) else RandomStream(key)
    max_features = x.shape[1]
    used = feature_mask(num_features, max_features)
    x = jnp.nan_to_num(x.astype(jnp.float32), posinf=_CLIP, neginf=-_CLIP)
    x, is_cat = make_categorical(rng, x, used, cfg.categorical_feature_p, cfg.categorical_column_p, cfg.max_categories)
    x = insert_missing(rng, x, used, cfg.missing_rate)
    if cfg.outlier_sigma is not None:
        x = soft_clip_outliers(x, cfg.outlier_sigma)
    x = jnp.where(used, standardize(x), 0.0)

    y = standardize(jnp.nan_to_num(y.astype(jnp.float32), posinf=_CLIP, neginf=-_CLIP))
    c = sample_num_classes(rng, cfg.max_num_classes, cfg.two_class_p, cfg.num_classes)
    labels, c_eff, rank_mode = discretize_targets(rng, y, single_eval_pos, c, cfg.max_num_classes, cfg.rank_threshold_p)
    info = {"num_classes": c, "num_context_classes": c_eff, "rank_mode": rank_mode, "categorical": is_cat}
    return x, labels, info


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
            _check_prob(name, getattr(self, name))
        if not self.activations or any(a not in _ACTIVATIONS for a in self.activations):
            raise ValueError(
                f"activations must be a non-empty subset of {sorted(_ACTIVATIONS)}, got {self.activations}"
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
        act_fns = [_ACTIVATIONS[a] for a in self.activations]

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
            new = jnp.clip(jnp.nan_to_num(new), -_CLIP, _CLIP)
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

        # 5. tabular post-processing and classes
        x, labels, info = postprocess_classification(rng, x, y, single_eval_pos, nf, self)
        info["causal"] = causal
        return x, labels, info

    def sample_dataset(
        self, key: PRNGKey, seq_len: int, max_features: int, num_features: Array, single_eval_pos: Array
    ) -> tuple[Array, Array]:
        x, y, _ = self.sample_dataset_with_info(key, seq_len, max_features, num_features, single_eval_pos)
        return x, y
