r"""Bayesian linear regression prior with a closed-form posterior (a PFN accuracy oracle).

Generative process of :class:`LinearPrior` (registered as ``"linear"``), per dataset with
``F`` used features:

.. math::
    x_t \sim \mathcal N(0, I_F)\ (\text{or } \mathcal U[0, 1]^F),\qquad
    w \sim \mathcal N(0, \sigma_w^2 I_F),\qquad b \sim \mathcal N(0, \sigma_b^2),\qquad
    y_t = w^\top x_t + b + \varepsilon_t,\ \varepsilon_t \sim \mathcal N(0, \sigma_n^2)

with known :math:`\sigma_w, \sigma_b, \sigma_n`. Equivalently :math:`y \sim \mathcal N(0, \sigma_w^2 X X^\top
+ \sigma_b^2 \mathbf 1 \mathbf 1^\top + \sigma_n^2 I)` (a GP with a linear kernel).

The posterior predictive (:func:`posterior_predictive`) uses the weight-space form with the
augmented, prior-whitened features :math:`\phi(x) = (\sigma_w x, \sigma_b)`, whose weights
:math:`v \sim \mathcal N(0, I)`:

.. math::
    A = I + \Phi^\top \Phi / \sigma_n^2,\quad
    \mu = A^{-1} \Phi^\top y / \sigma_n^2,\quad
    p(y_* \mid \mathcal D) = \mathcal N(\phi_*^\top \mu,\ \phi_*^\top A^{-1} \phi_* + \sigma_n^2).

``A`` is ``(F+1) x (F+1)`` with eigenvalues ``>= 1``, so the Cholesky solve is cheap and stable.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from pfnjax.numerics import matmul
from pfnjax.priors.base import register_prior
from pfnjax.priors.common import X_DISTS, XDist, check_choice, gaussian_nll, input_range_of, sample_inputs
from pfnjax.types import Array, PRNGKey



@register_prior("linear")
@dataclasses.dataclass(frozen=True)
class LinearPrior:
    """Bayesian linear regression with known prior scales and noise.

    Defaults: ``weight_std = 1`` and ``bias_std = 1`` (standard-normal coefficients, so
    ``Var(y) = ||x||^2 + 1 + noise_std^2``, of order ``F`` for ``x ~ N(0, I_F)``), ``noise_std = 0.1``
    (a clearly learnable signal-to-noise ratio, yet well-conditioned posterior solves in float32),
    ``x_dist = "normal"`` (``x ~ N(0, 1)``; ``"uniform"`` draws ``U[0, 1]``).
    """

    weight_std: float = 1.0
    bias_std: float = 1.0
    noise_std: float = 0.1
    x_dist: XDist = "normal"
    task: str = dataclasses.field(default="regression", init=False)

    def __post_init__(self) -> None:
        check_choice("x_dist", self.x_dist, X_DISTS)
        if not self.noise_std > 0:
            raise ValueError(f"LinearPrior.noise_std must be > 0, got {self.noise_std!r}")
        if self.weight_std < 0 or self.bias_std < 0:
            raise ValueError(
                f"LinearPrior.weight_std and bias_std must be >= 0, got {self.weight_std}, {self.bias_std}"
            )

    @property
    def input_range(self) -> tuple[float, float] | None:
        return input_range_of(self.x_dist)

    def exact_predictive(self, x_ctx: Array, y_ctx: Array, x_qry: Array, ctx_mask: Array | None = None
                         ) -> tuple[Array, Array]:
        """The closed-form posterior predictive ``(mean, var)`` of ``y`` (:func:`posterior_predictive`)."""
        return posterior_predictive(x_ctx, y_ctx, x_qry, self, ctx_mask)

    def sample_dataset(
        self, key: PRNGKey, seq_len: int, max_features: int, num_features: Array, single_eval_pos: Array
    ) -> tuple[Array, Array]:
        """``k_x, k_y = split(key)``; ``x`` from :func:`~pfnjax.priors.common.sample_inputs`, ``y`` from
        :func:`sample_linear_targets`. Unused columns of ``x`` are zero, so their weights do nothing."""
        del single_eval_pos
        k_x, k_y = jax.random.split(key)
        x = sample_inputs(k_x, self.x_dist, seq_len, max_features, num_features)
        return x, sample_linear_targets(k_y, x, self)


def sample_linear_targets(key: PRNGKey, x: Array, cfg: LinearPrior) -> Array:
    """One draw of ``y = x @ w + b + eps`` for ``x: f32[T, F]`` (``k_w, k_b, k_eps = split(key, 3)``)."""
    k_w, k_b, k_eps = jax.random.split(key, 3)
    w = cfg.weight_std * jax.random.normal(k_w, (x.shape[1],), x.dtype)
    b = cfg.bias_std * jax.random.normal(k_b, (), x.dtype)
    eps = cfg.noise_std * jax.random.normal(k_eps, (x.shape[0],), x.dtype)
    return matmul(x, w) + b + eps


def _validate(x_ctx: Array, y_ctx: Array, x_qry: Array, ctx_mask: Array | None, y_qry: Array | None = None) -> None:
    ok = (
        x_ctx.ndim == 2
        and x_qry.ndim == 2
        and y_ctx.shape == x_ctx.shape[:1]
        and x_ctx.shape[1] == x_qry.shape[1]
        and (ctx_mask is None or ctx_mask.shape == x_ctx.shape[:1])
        and (y_qry is None or y_qry.shape == x_qry.shape[:1])
    )
    if not ok:
        got = f"x_ctx {x_ctx.shape}, y_ctx {y_ctx.shape}, x_qry {x_qry.shape}"
        if y_qry is not None:
            got += f", y_qry {y_qry.shape}"
        if ctx_mask is not None:
            got += f", ctx_mask {ctx_mask.shape}"
        raise ValueError(
            "expected x_ctx [N, F], y_ctx [N], x_qry [M, F] (y_qry [M], ctx_mask [N] when given); got " + got
        )


def posterior_predictive(
    x_ctx: Array, y_ctx: Array, x_qry: Array, cfg: LinearPrior, ctx_mask: Array | None = None
) -> tuple[Array, Array]:
    """Exact posterior predictive of the noisy target ``y`` at ``x_qry`` under ``cfg``.

    Args:
        x_ctx: ``f[N, F]`` context inputs; y_ctx: ``f[N]``; x_qry: ``f[M, F]``.
        cfg: the :class:`LinearPrior` that generated the data.
        ctx_mask: optional ``bool[N]``; rows where it is False are ignored (static shapes under
            ``vmap``, e.g. ``positions < single_eval_pos``).
    Returns:
        ``(mean f[M], var f[M])``; ``var`` includes the observation noise ``noise_std**2``.
        Computed in the inputs' floating dtype (float32 unless x64 is enabled).
    """
    x_ctx, y_ctx, x_qry = jnp.asarray(x_ctx), jnp.asarray(y_ctx), jnp.asarray(x_qry)
    ctx_mask = None if ctx_mask is None else jnp.asarray(ctx_mask)
    _validate(x_ctx, y_ctx, x_qry, ctx_mask)
    dtype = jnp.result_type(x_ctx.dtype, y_ctx.dtype, x_qry.dtype, jnp.float32)
    x_ctx, y_ctx, x_qry = x_ctx.astype(dtype), y_ctx.astype(dtype), x_qry.astype(dtype)

    def features(x: Array) -> Array:
        return jnp.concatenate([cfg.weight_std * x, jnp.full((x.shape[0], 1), cfg.bias_std, dtype)], axis=1)

    phi_c, phi_q = features(x_ctx), features(x_qry)
    if ctx_mask is not None:
        m = ctx_mask.astype(dtype)
        phi_c, y_ctx = phi_c * m[:, None], y_ctx * m
    noise_var = jnp.asarray(cfg.noise_std, dtype) ** 2
    # Full-precision matmuls: the posterior precision matrix feeds a Cholesky (see pfnjax.numerics).
    a = jnp.eye(phi_c.shape[1], dtype=dtype) + matmul(phi_c.T, phi_c) / noise_var
    chol = jnp.linalg.cholesky(a)
    mu = jax.scipy.linalg.cho_solve((chol, True), matmul(phi_c.T, y_ctx) / noise_var)
    v = jax.scipy.linalg.solve_triangular(chol, phi_q.T, lower=True)
    return matmul(phi_q, mu), jnp.sum(v**2, axis=0) + noise_var


def exact_nll(
    x_ctx: Array, y_ctx: Array, x_qry: Array, y_qry: Array, cfg: LinearPrior, ctx_mask: Array | None = None
) -> Array:
    """Per-query negative log predictive density ``-log p(y_qry | context)``: ``f[M]``."""
    y_qry = jnp.asarray(y_qry)
    mask = None if ctx_mask is None else jnp.asarray(ctx_mask)
    _validate(jnp.asarray(x_ctx), jnp.asarray(y_ctx), jnp.asarray(x_qry), mask, y_qry)
    mean, var = posterior_predictive(x_ctx, y_ctx, x_qry, cfg, ctx_mask)
    return gaussian_nll(y_qry, mean, var)
