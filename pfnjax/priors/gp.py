r"""Gaussian-process priors.

Generative process of :class:`GPPrior` (fixed hyperparameters), per dataset:

.. math::
    x_t \sim \mathcal U[0, 1]^F\ (\text{or } \mathcal N(0, I_F)),\qquad
    f \sim \mathcal{GP}(0, k),\qquad
    y_t = f(x_t) + \varepsilon_t,\ \varepsilon_t \sim \mathcal N(0, \sigma_n^2)

with :math:`k(x, x') = \sigma_f^2\, r(\lVert (x - x') / \ell \rVert)`, where
:math:`r(d) = e^{-d^2/2}` (RBF), :math:`r(d) = (1 + \sqrt3 d) e^{-\sqrt3 d}` (Matern-3/2) or
:math:`r(d) = (1 + \sqrt5 d + \tfrac53 d^2) e^{-\sqrt5 d}` (Matern-5/2). :math:`\ell` is a scalar or one lengthscale per feature (ARD).
One dataset is drawn as :math:`y = L z`, :math:`L L^\top = K + (\sigma_n^2 + \text{jitter}) I`.
Only the used feature columns enter the kernel; the rest are zero, and a zero column
contributes :math:`0 / \ell_f = 0` to every scaled distance, whatever :math:`\ell_f > 0`.

:class:`GPHyperPrior` (registered as ``"gp_hyper"``) additionally draws the hyperparameters
per dataset (Matern-5/2 ARD by default, the PFN paper's / HEBO's hyperpriors):

.. math::
    \ell_f &\sim \max(\mathrm{Gamma}(3, \text{rate}=6),\ \ell_{\min}) \quad f = 1..F_{\max}\ \text{i.i.d.}\\
    \sigma_f^2 &\sim \max(\mathrm{Gamma}(0.5, \text{rate}=0.15),\ \sigma^2_{f,\min})\\
    \sigma_n^2 &\sim \max(\mathrm{Gamma}(1.1, \text{rate}=0.05),\ \sigma^2_{n,\min})

then proceeds as :class:`GPPrior`. See :func:`sample_hyperparameters` for the key derivation.
For Bayesian optimisation, the settings of HEBO's GP prior are options: a Matern-3/2 kernel,
a log-normal noise prior :math:`\log \sigma_n^2 \sim \mathcal N(-4.63, 0.5^2)`, and features
that are irrelevant to ``y`` with probability ``irrelevant_feature_p`` (infinite lengthscale; at
least one used feature stays relevant).
"""

from __future__ import annotations

import dataclasses
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

from pfnjax.numerics import matmul
from pfnjax.priors.base import register_prior
from pfnjax.priors.common import X_DISTS, XDist, check_choice, gaussian_nll, input_range_of, sample_inputs
from pfnjax.types import Array, BatchShape, PRNGKey

Kernel = Literal["rbf", "matern32", "matern52"]
NoisePrior = Literal["gamma", "lognormal"]

_KERNELS = ("rbf", "matern32", "matern52")
_NOISE_PRIORS = ("gamma", "lognormal")


class GPHyper(NamedTuple):
    """GP hyperparameters. ``lengthscale`` is a scalar or ``f32[F]`` (ARD); ``noise`` is a variance."""

    lengthscale: Array | float
    outputscale: Array | float
    noise: Array | float


def kernel_matrix(kernel: Kernel, x1: Array, x2: Array, lengthscale: Array | float, outputscale: Array | float) -> Array:
    """``k(x1, x2)`` for ``x1: f32[N, F]``, ``x2: f32[M, F]`` -> ``f32[N, M]``.

    The cross term runs at full precision: in TF32 the squared distances lose ~3 digits and the
    kernel matrix stops being positive definite.
    """
    x1 = x1 / lengthscale
    x2 = x2 / lengthscale
    sq = jnp.sum(x1**2, -1)[:, None] + jnp.sum(x2**2, -1)[None, :] - 2.0 * matmul(x1, x2.T)
    sq = jnp.maximum(sq, 0.0)
    if kernel == "rbf":
        corr = jnp.exp(-0.5 * sq)
    elif kernel == "matern32":
        s3d = jnp.sqrt(3.0) * jnp.sqrt(sq + 1e-12)
        corr = (1.0 + s3d) * jnp.exp(-s3d)
    elif kernel == "matern52":
        d = jnp.sqrt(sq + 1e-12)
        s5d = jnp.sqrt(5.0) * d
        corr = (1.0 + s5d + 5.0 / 3.0 * sq) * jnp.exp(-s5d)
    else:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {_KERNELS}")
    return outputscale * corr


def sample_gp_targets(
    key: PRNGKey, x: Array, kernel: Kernel, hyper: GPHyper, jitter: float = 1e-6
) -> Array:
    """One draw ``y ~ N(0, K(x, x) + noise I)`` for ``x: f32[T, F]`` via a jittered Cholesky factor."""
    seq_len = x.shape[0]
    cov = kernel_matrix(kernel, x, x, hyper.lengthscale, hyper.outputscale)
    cov = cov + (hyper.noise + jitter) * jnp.eye(seq_len, dtype=x.dtype)
    chol = jnp.linalg.cholesky(cov)
    return matmul(chol, jax.random.normal(key, (seq_len,), x.dtype))


@register_prior("gp")
@dataclasses.dataclass(frozen=True)
class GPPrior:
    """GP prior with fixed hyperparameters (the PFN paper's GP experiment by default).

    Defaults: RBF kernel, lengthscale 0.6, outputscale 1, noise variance 1e-4, x ~ U[0,1]^F
    (``x_dist="normal"`` draws x ~ N(0, I) instead).
    """

    kernel: Kernel = "rbf"
    lengthscale: float = 0.6
    outputscale: float = 1.0
    noise: float = 1e-4
    jitter: float = 1e-6
    x_dist: XDist = "uniform"
    task: str = dataclasses.field(default="regression", init=False)

    def __post_init__(self) -> None:
        check_choice("kernel", self.kernel, _KERNELS)
        check_choice("x_dist", self.x_dist, X_DISTS)

    def hyper(self) -> GPHyper:
        return GPHyper(self.lengthscale, self.outputscale, self.noise)

    @property
    def input_range(self) -> tuple[float, float] | None:
        return input_range_of(self.x_dist)

    def exact_predictive(self, x_ctx: Array, y_ctx: Array, x_qry: Array, ctx_mask: Array | None = None
                         ) -> tuple[Array, Array]:
        """The exact GP posterior predictive ``(mean, var)`` of ``y`` at ``x_qry`` (:func:`exact_posterior`)."""
        return exact_posterior(x_ctx, y_ctx, x_qry, self.hyper(), self.kernel, self.jitter, ctx_mask=ctx_mask)

    def sample_dataset(
        self, key: PRNGKey, seq_len: int, max_features: int, num_features: Array, single_eval_pos: Array
    ) -> tuple[Array, Array]:
        del single_eval_pos
        k_x, k_y = jax.random.split(key)
        x = sample_inputs(k_x, self.x_dist, seq_len, max_features, num_features)
        y = sample_gp_targets(k_y, x, self.kernel, self.hyper(), self.jitter)
        return x, y


# --------------------------------------------------------------------------- GP with hyperpriors


def sample_hyperparameters(key: PRNGKey, prior_cfg: "GPHyperPrior", max_features: int,
                           num_features: Array | None = None) -> GPHyper:
    r"""Draw one dataset's GP hyperparameters from ``prior_cfg``'s hyperpriors.

    Key derivation: ``k_ls, k_os, k_noise = split(key, 3)``; lengthscale ``f`` uses
    ``fold_in(k_ls, f)``, so the first features' lengthscales do not depend on ``max_features``.
    A log-normal noise prior draws from ``k_noise`` and irrelevant features from
    ``fold_in(key, 3)``, so neither option changes the other hyperparameters' draws.
    Each value is ``jax.random.gamma(k, concentration) / rate`` (one batched gamma call, which
    keeps the compiled rejection sampler single).

    With ``prior_cfg.lengthscale_dim_scaling`` the lengthscales are multiplied by
    ``sqrt(num_features)`` (the dataset's used-feature count, then required).

    Returns:
        ``GPHyper(lengthscale f32[max_features], outputscale f32[], noise f32[])``, each clipped
        below at its floor (``prior_cfg.lengthscale_floor`` etc.).
    """
    c = prior_cfg
    if c.lengthscale_dim_scaling and num_features is None:
        raise ValueError("lengthscale_dim_scaling needs the dataset's num_features")
    k_ls, k_os, k_noise = jax.random.split(key, 3)
    ls_keys = jax.vmap(lambda f: jax.random.fold_in(k_ls, f))(jnp.arange(max_features))
    keys = jnp.concatenate([ls_keys, jnp.stack([k_os, k_noise])])
    conc = [c.lengthscale_concentration] * max_features + [c.outputscale_concentration, c.noise_concentration]
    rate = [c.lengthscale_rate] * max_features + [c.outputscale_rate, c.noise_rate]
    conc, rate = jnp.array(conc, jnp.float32), jnp.array(rate, jnp.float32)
    draws = jax.vmap(lambda k, a: jax.random.gamma(k, a, (), jnp.float32))(keys, conc) / rate
    noise = draws[max_features + 1]
    if c.noise_prior == "lognormal":  # the same key, so the other draws do not change
        noise = jnp.exp(c.noise_logmean + c.noise_logstd * jax.random.normal(k_noise, (), jnp.float32))
    lengthscale = jnp.maximum(draws[:max_features], c.lengthscale_floor)
    if c.lengthscale_dim_scaling:
        lengthscale = lengthscale * jnp.sqrt(jnp.maximum(jnp.asarray(num_features, jnp.float32), 1.0))
    if c.irrelevant_feature_p > 0:
        lengthscale = jnp.where(irrelevant_features(jax.random.fold_in(key, 3), c.irrelevant_feature_p, max_features),
                                jnp.inf, lengthscale)
    return GPHyper(
        lengthscale=lengthscale,
        outputscale=jnp.maximum(draws[max_features], c.outputscale_floor),
        noise=jnp.maximum(noise, c.noise_floor),
    )


def irrelevant_features(key: PRNGKey, p: float, max_features: int) -> Array:
    """``bool[max_features]``: each feature irrelevant with probability ``p``, but never feature 0,
    so every dataset (which uses at least one feature) depends on at least one input."""
    mask = jax.random.bernoulli(key, p, (max_features,))
    return mask.at[0].set(False)


@register_prior("gp_hyper")
@dataclasses.dataclass(frozen=True)
class GPHyperPrior:
    r"""GP prior whose hyperparameters are drawn per dataset (Matern-5/2 ARD by default).

    Per dataset, with ``k_hyp, k_x, k_y = jax.random.split(key, 3)``:

    1. ``hyper = sample_hyperparameters(k_hyp, self, max_features)``:
       :math:`\ell_f \sim \mathrm{Gamma}(3, \text{rate } 6)` i.i.d. per feature (mean 0.5),
       :math:`\sigma_f^2 \sim \mathrm{Gamma}(0.5, \text{rate } 0.15)` (mean 3.33),
       :math:`\sigma_n^2 \sim \mathrm{Gamma}(1.1, \text{rate } 0.05)` (mean 22, mode 2);
       all (concentration, rate) pairs are fields.
    2. :math:`x_t \sim \mathcal U[0, 1]^F` (or :math:`\mathcal N(0, I)`), unused columns zero.
    3. :math:`y \sim \mathcal N(0, K_{\ell, \sigma_f}(x, x) + (\sigma_n^2 + \text{jitter}) I)`.

    HEBO's settings, for Bayesian optimisation: ``kernel="matern32"``, ``noise_prior="lognormal"``
    (:math:`\log \sigma_n^2 \sim \mathcal N(\text{noise\_logmean}, \text{noise\_logstd}^2)`, default
    :math:`\mathcal N(-4.63, 0.5^2)`), and ``irrelevant_feature_p``: each feature but the first has an
    infinite lengthscale (no influence on ``y``) with that probability.

    ``lengthscale_dim_scaling``: multiply every lengthscale by :math:`\sqrt{F_{used}}`. Squared
    distances between inputs grow with the number of features, so without it a GP on tens of
    N(0, 1) features is close to white noise at any practical lengthscale; with it, wide and narrow
    datasets are about equally smooth (for tabular regression priors).

    Floors, for Cholesky stability in float32: lengthscale ``>= 1e-2`` (P(Gamma(3, 6) < 0.01) ≈ 3.4e-5,
    so the floor almost never binds), noise variance ``>= 1e-4`` (P ≈ 1.4e-6), outputscale ``>= 0``
    (no floor: P(< 1e-4) ≈ 0.4%, and a tiny signal variance is harmless once the noise is floored).

    Unused feature columns are zero, so their (sampled) lengthscales have no effect on ``y``.
    Recover a dataset's hyperparameters with :meth:`dataset_hyperparameters` (from the key given
    to ``sample_dataset``) or :meth:`batch_hyperparameters` (from the key given to ``sample_batch``).
    """

    kernel: Kernel = "matern52"
    lengthscale_concentration: float = 3.0
    lengthscale_rate: float = 6.0
    outputscale_concentration: float = 0.5
    outputscale_rate: float = 0.15
    noise_concentration: float = 1.1
    noise_rate: float = 0.05
    lengthscale_floor: float = 1e-2
    outputscale_floor: float = 0.0
    noise_floor: float = 1e-4
    x_dist: XDist = "uniform"
    jitter: float = 1e-6
    noise_prior: NoisePrior = "gamma"
    noise_logmean: float = -4.63  # lognormal noise prior: mean and std of log(noise variance)
    noise_logstd: float = 0.5
    irrelevant_feature_p: float = 0.0
    lengthscale_dim_scaling: bool = False
    task: str = dataclasses.field(default="regression", init=False)

    def __post_init__(self) -> None:
        check_choice("kernel", self.kernel, _KERNELS)
        check_choice("x_dist", self.x_dist, X_DISTS)
        check_choice("noise_prior", self.noise_prior, _NOISE_PRIORS)
        if not 0.0 <= self.irrelevant_feature_p < 1.0 or not self.noise_logstd > 0:
            raise ValueError("GPHyperPrior needs 0 <= irrelevant_feature_p < 1 and noise_logstd > 0")
        for name in (
            "lengthscale_concentration",
            "lengthscale_rate",
            "outputscale_concentration",
            "outputscale_rate",
            "noise_concentration",
            "noise_rate",
            "lengthscale_floor",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"GPHyperPrior.{name} must be > 0, got {getattr(self, name)!r}")
        if self.noise_floor < 0 or self.outputscale_floor < 0:
            raise ValueError("GPHyperPrior floors must be >= 0")

    @property
    def input_range(self) -> tuple[float, float] | None:
        return input_range_of(self.x_dist)

    def dataset_hyperparameters(self, key: PRNGKey, max_features: int, num_features: Array | None = None) -> GPHyper:
        """The hyperparameters ``sample_dataset(key, ...)`` uses.

        ``sample_hyperparameters(split(key, 3)[0], self, max_features, num_features)``
        (``num_features`` only matters with ``lengthscale_dim_scaling``).
        """
        k_hyp, _, _ = jax.random.split(key, 3)
        return sample_hyperparameters(k_hyp, self, max_features, num_features)

    def batch_hyperparameters(self, key: PRNGKey, shape: BatchShape) -> GPHyper:
        """Per-dataset hyperparameters (leading axis ``B``) of ``pfnjax.priors.base.sample_batch(self, key, shape)``.

        Mirrors the key derivation of :func:`pfnjax.priors.base.sample_datasets`
        (dataset key ``split(key, B)[b]``, data key ``split(dataset_key, 3)[2]``); it does not
        apply to batches drawn through wrappers (e.g. mixtures) that derive keys differently.
        """
        if self.lengthscale_dim_scaling:
            raise ValueError("batch_hyperparameters does not know each dataset's feature count; with "
                             "lengthscale_dim_scaling use dataset_hyperparameters(key, max_features, num_features)")
        dataset_keys = jax.random.split(key, shape.batch_size)
        data_keys = jax.vmap(lambda k: jax.random.split(k, 3)[2])(dataset_keys)
        return jax.vmap(lambda k: self.dataset_hyperparameters(k, shape.num_features))(data_keys)

    def sample_dataset(
        self, key: PRNGKey, seq_len: int, max_features: int, num_features: Array, single_eval_pos: Array
    ) -> tuple[Array, Array]:
        del single_eval_pos
        k_hyp, k_x, k_y = jax.random.split(key, 3)
        hyper = sample_hyperparameters(k_hyp, self, max_features, num_features)
        x = sample_inputs(k_x, self.x_dist, seq_len, max_features, num_features)
        y = sample_gp_targets(k_y, x, self.kernel, hyper, self.jitter)
        return x, y


# --------------------------------------------------------------------------- exact inference (oracle)


def exact_posterior(
    x_ctx: Array, y_ctx: Array, x_qry: Array, hyper: GPHyper, kernel: Kernel = "rbf", jitter: float = 1e-6,
    *, ctx_mask: Array | None = None,
) -> tuple[Array, Array]:
    """Exact GP posterior predictive of ``y`` at ``x_qry`` (the oracle a PFN should match).

    Args:
        x_ctx: ``f32[N, F]`` context inputs. y_ctx: ``f32[N]``. x_qry: ``f32[M, F]``.
        hyper: the GP hyperparameters used to generate the data.
        ctx_mask: optional ``bool[N]``: rows where it is False are not observed (static shapes for
            every context size: their kernel rows become those of an independent unit-variance point).
    Returns:
        ``(mean f32[M], var f32[M])``: mean and variance of the noisy target ``y``.
    """
    x_ctx, y_ctx, x_qry = jnp.asarray(x_ctx), jnp.asarray(y_ctx), jnp.asarray(x_qry)
    if x_ctx.ndim != 2 or x_qry.ndim != 2 or y_ctx.shape != x_ctx.shape[:1] or x_ctx.shape[1] != x_qry.shape[1]:
        raise ValueError(
            f"expected x_ctx [N, F], y_ctx [N], x_qry [M, F]; got {x_ctx.shape}, {y_ctx.shape}, {x_qry.shape}"
        )
    k_cc = kernel_matrix(kernel, x_ctx, x_ctx, hyper.lengthscale, hyper.outputscale)
    k_cc = k_cc + (hyper.noise + jitter) * jnp.eye(x_ctx.shape[0], dtype=k_cc.dtype)
    k_qc = kernel_matrix(kernel, x_qry, x_ctx, hyper.lengthscale, hyper.outputscale)
    if ctx_mask is not None:
        m = jnp.asarray(ctx_mask, k_cc.dtype)
        k_cc = k_cc * m[:, None] * m[None, :] + jnp.diag(1.0 - m)
        k_qc, y_ctx = k_qc * m[None, :], y_ctx * m
    chol = jnp.linalg.cholesky(k_cc)
    alpha = jax.scipy.linalg.cho_solve((chol, True), y_ctx)
    mean = matmul(k_qc, alpha)
    v = jax.scipy.linalg.solve_triangular(chol, k_qc.T, lower=True)
    prior_var = hyper.outputscale * jnp.ones(x_qry.shape[0], k_cc.dtype)
    var = prior_var - jnp.sum(v**2, axis=0) + hyper.noise
    return mean, jnp.maximum(var, 1e-12)


def exact_nll(x_ctx: Array, y_ctx: Array, x_qry: Array, y_qry: Array, hyper: GPHyper, kernel: Kernel = "rbf") -> Array:
    """Per-query negative log predictive density ``-log p(y_qry | context)`` under the exact GP."""
    mean, var = exact_posterior(x_ctx, y_ctx, x_qry, hyper, kernel)
    return gaussian_nll(y_qry, mean, var)
