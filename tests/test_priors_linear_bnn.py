"""Bayesian linear regression prior (closed-form oracle) and the BNN (random MLP) prior.

References are independent numpy/scipy float64 computations; statistical checks use fixed seeds,
tolerances from the sample size (z < 5, p > 1e-3) and a "power" check where a plausible bug
would pass unnoticed otherwise.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from pfnjax.priors import bnn, get_prior, linear, make_batch_sampler, sample_batch
from pfnjax.types import BatchShape


CONTRACT_SHAPE = BatchShape(6, 24, 5)
# the BNN's contract test and its standardisation test share one compiled sampler (compiles dominate)
BNN_ALL_ACTIVATIONS = bnn.BNNPrior(activations=("tanh", "relu", "identity"))
BNN_SHAPE = BatchShape(256, 60, 5)


def nf_sampler(k, f_max):
    """Variable feature counts: ``U{1..F_max}``."""
    return jax.random.randint(k, (), 1, f_max + 1)


@functools.lru_cache(maxsize=None)
def cached_sampler(prior, shape: BatchShape):
    return make_batch_sampler(prior, shape, num_features_sampler=nf_sampler)


def test_bnn_registered():
    assert isinstance(get_prior("bnn"), bnn.BNNPrior) and get_prior("bnn").task == "regression"


# =========================================================================== linear


def np_blr_weight_space(x_ctx, y_ctx, x_qry, sw, sb, sn):
    """Textbook weight-space posterior with prior covariance diag(sw^2, ..., sb^2), float64."""
    xa = np.hstack([x_ctx, np.ones((len(x_ctx), 1))])
    xq = np.hstack([x_qry, np.ones((len(x_qry), 1))])
    prior_prec = np.diag([1 / sw**2] * x_ctx.shape[1] + [1 / sb**2])
    s_n = np.linalg.inv(prior_prec + xa.T @ xa / sn**2)
    m_n = s_n @ xa.T @ y_ctx / sn**2
    return xq @ m_n, np.einsum("ij,jk,ik->i", xq, s_n, xq) + sn**2


def np_blr_function_space(x_ctx, y_ctx, x_qry, sw, sb, sn):
    """The same posterior as a GP with kernel sw^2 x.x' + sb^2, float64."""
    k = sw**2 * x_ctx @ x_ctx.T + sb**2 + sn**2 * np.eye(len(x_ctx))
    k_q = sw**2 * x_qry @ x_ctx.T + sb**2
    mean = k_q @ np.linalg.solve(k, y_ctx)
    var = sw**2 * np.sum(x_qry**2, 1) + sb**2 - np.einsum("ij,ji->i", k_q, np.linalg.solve(k, k_q.T)) + sn**2
    return mean, var


def test_linear_sample_moments_match_prior():
    cfg = linear.LinearPrior(weight_std=0.7, bias_std=1.3, noise_std=0.4)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    n = 40000
    keys = jax.random.split(jax.random.key(1), n)
    ys = np.asarray(jax.jit(jax.vmap(lambda k: linear.sample_linear_targets(k, jnp.asarray(x), cfg)))(keys), np.float64)

    def cov_of(sw, sb, sn):
        return sw**2 * x.astype(np.float64) @ x.T.astype(np.float64) + sb**2 + sn**2 * np.eye(4)

    cov = cov_of(0.7, 1.3, 0.4)  # Var(y_t) = sw^2 |x_t|^2 + sb^2 + sn^2; Cov = sw^2 x_s.x_t + sb^2
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    assert np.abs(ys.mean(0)).max() < 5 * np.sqrt(np.diag(cov).max() / n)
    assert np.abs((ys.T @ ys / n - cov) / se).max() < 5.0
    # power: swapping weight and bias scales is detected
    assert np.abs((ys.T @ ys / n - cov_of(1.3, 0.7, 0.4)) / se).max() > 10.0


@pytest.mark.parametrize("cfg", [linear.LinearPrior(), linear.LinearPrior(weight_std=0.5, bias_std=2.0, noise_std=0.3)])
def test_linear_posterior_matches_numpy(cfg):
    rng = np.random.default_rng(2)
    x_ctx, x_qry = rng.normal(size=(30, 4)), rng.normal(size=(9, 4))
    y_ctx = x_ctx @ rng.normal(size=4) + 0.5 + cfg.noise_std * rng.normal(size=30)
    args = (cfg.weight_std, cfg.bias_std, cfg.noise_std)
    m_w, v_w = np_blr_weight_space(x_ctx, y_ctx, x_qry, *args)
    m_f, v_f = np_blr_function_space(x_ctx, y_ctx, x_qry, *args)
    np.testing.assert_allclose(m_w, m_f, rtol=1e-8, atol=1e-10)  # the two references agree
    np.testing.assert_allclose(v_w, v_f, rtol=1e-8, atol=1e-10)
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    mean, var = linear.posterior_predictive(f32(x_ctx), f32(y_ctx), f32(x_qry), cfg)
    np.testing.assert_allclose(np.asarray(mean), m_w, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(var), v_w, rtol=1e-4, atol=1e-6)
    assert np.all(np.asarray(var) >= cfg.noise_std**2)
    y_qry = rng.normal(size=9)
    nll = linear.exact_nll(f32(x_ctx), f32(y_ctx), f32(x_qry), f32(y_qry), cfg)
    nll_ref = -scipy.stats.norm.logpdf(y_qry, m_w, np.sqrt(v_w))
    np.testing.assert_allclose(np.asarray(nll), nll_ref, rtol=1e-4, atol=1e-4)


def test_linear_posterior_context_mask_equals_subset():
    cfg = linear.LinearPrior()
    rng = np.random.default_rng(3)
    x_ctx, x_qry = rng.normal(size=(20, 3)).astype(np.float32), rng.normal(size=(5, 3)).astype(np.float32)
    y_ctx = rng.normal(size=20).astype(np.float32)
    mask = np.arange(20) < 8
    y_junk = np.where(mask, y_ctx, 1e3).astype(np.float32)  # masked rows must not matter
    m_mask, v_mask = linear.posterior_predictive(x_ctx, y_junk, x_qry, cfg, ctx_mask=mask)
    m_ref, v_ref = np_blr_weight_space(x_ctx[:8].astype(np.float64), y_ctx[:8].astype(np.float64), x_qry, 1.0, 1.0, 0.1)
    np.testing.assert_allclose(np.asarray(m_mask), m_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(v_mask), v_ref, rtol=1e-4, atol=1e-6)
    # with no context rows at all, the posterior is the prior predictive
    m0, v0 = linear.posterior_predictive(x_ctx, y_ctx, x_qry, cfg, ctx_mask=np.zeros(20, bool))
    np.testing.assert_allclose(np.asarray(m0), 0.0, atol=1e-7)
    np.testing.assert_allclose(np.asarray(v0), np.sum(x_qry.astype(np.float64) ** 2, 1) + 1.0 + 0.01, rtol=1e-5)


def test_linear_posterior_is_calibrated_on_prior_data():
    """PIT of one held-out point per dataset is U[0, 1] (sampler and oracle agree on all scales)."""
    cfg = linear.LinearPrior(weight_std=0.8, bias_std=0.5, noise_std=0.3)
    shape = BatchShape(2000, 12, 3)

    @jax.jit
    def pit(key):
        b = sample_batch(cfg, key, shape)

        def one(x, y):
            mean, var = linear.posterior_predictive(x[:-1], y[:-1], x[-1:], cfg)
            return y[-1] - mean[0], var[0]

        return jax.vmap(one)(b.x, b.y)

    resid, var = (np.asarray(a, np.float64) for a in pit(jax.random.key(4)))
    assert scipy.stats.kstest(resid / np.sqrt(var), "norm").pvalue > 1e-3
    # power: a predictive variance without the observation noise is rejected
    assert scipy.stats.kstest(resid / np.sqrt(var - 0.3**2), "norm").pvalue < 1e-6


def test_linear_shape_validation():
    cfg = linear.LinearPrior()
    x = np.zeros((5, 3), np.float32)
    with pytest.raises(ValueError, match=r"y_ctx \(4,\)"):
        linear.posterior_predictive(x, np.zeros(4, np.float32), x, cfg)
    with pytest.raises(ValueError, match=r"x_qry \(2, 2\)"):
        linear.posterior_predictive(x, np.zeros(5, np.float32), np.zeros((2, 2), np.float32), cfg)
    with pytest.raises(ValueError, match=r"y_qry \(3,\)"):
        linear.exact_nll(x, np.zeros(5, np.float32), x, np.zeros(3, np.float32), cfg)
    with pytest.raises(ValueError, match=r"ctx_mask \(2,\)"):
        linear.posterior_predictive(x, np.zeros(5, np.float32), x, cfg, ctx_mask=np.ones(2, bool))
    with pytest.raises(ValueError, match="noise_std"):
        linear.LinearPrior(noise_std=0.0)


def test_linear_uniform_x_option():
    prior = linear.LinearPrior(x_dist="uniform")
    b = jax.jit(lambda k: sample_batch(prior, k, BatchShape(4, 100, 2)))(jax.random.key(0))
    x = np.asarray(b.x)
    assert x.min() >= 0 and x.max() < 1


# =========================================================================== BNN


def test_bnn_outputs_are_standardised():
    b = cached_sampler(BNN_ALL_ACTIVATIONS, BNN_SHAPE)(jax.random.key(0))
    x, y, nf = np.asarray(b.x, np.float64), np.asarray(b.y, np.float64), np.asarray(b.num_features)
    assert np.isfinite(x).all() and np.isfinite(y).all()
    np.testing.assert_allclose(y.mean(1), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std(1), 1.0, atol=1e-4)
    used = np.arange(5)[None, :] < nf[:, None]  # [B, F]
    assert len(np.unique(nf)) > 1
    np.testing.assert_allclose(np.where(used, x.mean(1), 0.0), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.where(used, x.std(1), 1.0), 1.0, atol=1e-4)
    assert np.all(x[~np.broadcast_to(used[:, None, :], x.shape)] == 0)
    # datasets are genuinely different functions: correlation of y between datasets sharing no key is low
    assert np.median(np.abs(np.corrcoef(y)[np.triu_indices(len(y), 1)])) < 0.3


def test_bnn_hyperparameters_follow_their_priors():
    prior = bnn.BNNPrior(activations=("tanh", "relu", "identity"))
    keys = jax.random.split(jax.random.key(5), 2000)
    h = jax.jit(jax.vmap(lambda k: bnn.sample_hyperparameters(k, prior)))(keys)
    init_std, noise_std = np.asarray(h.init_std, np.float64), np.asarray(h.noise_std, np.float64)
    # the paper config's Gamma(3.62, 0.068) and Gamma(1.87, 0.053) read as (concentration, scale)
    assert scipy.stats.kstest(init_std, scipy.stats.gamma(3.62, scale=0.068).cdf).pvalue > 1e-3
    assert scipy.stats.kstest(noise_std, scipy.stats.gamma(1.87, scale=0.053).cdf).pvalue > 1e-3
    assert scipy.stats.kstest(init_std, scipy.stats.gamma(3.62, scale=1 / 0.068).cdf).pvalue < 1e-10  # power
    assert scipy.stats.kstest(np.asarray(h.dropout_prob), scipy.stats.uniform(0, 0.9).cdf).pvalue > 1e-3
    width = np.asarray(h.hidden_width)
    assert width.min() == 5 and width.max() == 64
    assert scipy.stats.chisquare(np.bincount(width - 5, minlength=60)).pvalue > 1e-3
    assert scipy.stats.chisquare(np.bincount(np.asarray(h.activation), minlength=3)).pvalue > 1e-3
    # per-dataset: dataset_hyperparameters differs across keys
    h0 = prior.dataset_hyperparameters(jax.random.key(0))
    h1 = prior.dataset_hyperparameters(jax.random.key(1))
    assert float(h0.init_std) != float(h1.init_std)


def _fixed_hyper(width: int, activation: int, init_std: float, noise: float, dropout: float) -> bnn.BNNHyper:
    return bnn.BNNHyper(
        jnp.int32(width), jnp.int32(activation), jnp.float32(init_std), jnp.float32(noise), jnp.float32(dropout)
    )


def test_bnn_forward_matches_truncated_numpy_network():
    """The masked static-width MLP equals a numpy MLP of the sampled width (tanh, no noise)."""
    prior = bnn.BNNPrior(num_layers=3, hidden_range=(2, 16))
    hyper = _fixed_hyper(7, 0, 0.5, 0.1, 0.3)
    layers = bnn.sample_weights(jax.random.key(6), prior, hyper, 4)
    x = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    got = np.asarray(bnn.mlp_forward(layers, jnp.asarray(x), hyper, prior))
    ws = [np.asarray(l.weight, np.float64) for l in layers]
    bs = [np.asarray(l.bias, np.float64) for l in layers]
    w = 7
    h = x @ ws[0][:, :w] + bs[0][:w]
    for l in (1, 2):
        h = np.tanh(h) @ ws[l][:w, :w] + bs[l][:w]
    ref = np.tanh(h) @ ws[3][:w, 0] + bs[3][0]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    # unused units carry nothing, in and out
    for l in range(3):
        assert np.all(ws[l][:, w:] == 0) and np.all(bs[l][w:] == 0)
    for l in range(1, 4):
        assert np.all(ws[l][w:, :] == 0)


def test_bnn_weight_dropout_and_scale():
    prior = bnn.BNNPrior(num_layers=3, hidden_range=(64, 64))
    hyper = _fixed_hyper(64, 0, 0.2, 0.1, 0.3)
    layers = bnn.sample_weights(jax.random.key(7), prior, hyper, 5)
    w0 = np.asarray(layers[0].weight)
    assert np.all(w0 != 0)  # no dropout on the first layer
    assert abs(w0.std() / 0.2 - 1) < 0.2  # 320 entries: SE of the std ratio ~ 4%
    later = np.concatenate([np.asarray(l.weight).ravel() for l in layers[1:]])  # 64*64*2 + 64 entries
    frac_zero = np.mean(later == 0)
    assert abs(frac_zero - 0.3) < 5 * np.sqrt(0.3 * 0.7 / later.size)
    kept = later[later != 0]
    assert abs(kept.std() / (0.2 / np.sqrt(0.7)) - 1) < 0.05  # inverted-dropout scaling


def test_bnn_activation_selection():
    """identity -> the noise-free function is affine in x; tanh -> it is not."""
    prior = bnn.BNNPrior(activations=("tanh", "relu", "identity"), hidden_range=(16, 16))
    x = np.random.default_rng(1).normal(size=(50, 3)).astype(np.float32)
    xa = np.hstack([x, np.ones((50, 1))]).astype(np.float64)

    @jax.jit
    def forward(key, hyper):
        return bnn.mlp_forward(bnn.sample_weights(key, prior, hyper, 3), jnp.asarray(x), hyper, prior)

    def affine_residual(act_index: int) -> float:
        f = np.asarray(forward(jax.random.key(8), _fixed_hyper(16, act_index, 0.6, 0.1, 0.0)), np.float64)
        coef = np.linalg.lstsq(xa, f, rcond=None)[0]
        return float(np.linalg.norm(xa @ coef - f) / np.linalg.norm(f - f.mean()))

    assert affine_residual(2) < 1e-4
    assert affine_residual(0) > 1e-2 and affine_residual(1) > 1e-2


def test_bnn_dataset_reproducible_from_documented_keys():
    """sample_dataset = standardise(mlp_forward(sample_weights(k_w), x, noise_key=k_noise)) with
    ``k_hyp, k_x, k_w, k_noise = split(key, 4)``; y depends on x only through its used columns."""
    prior = bnn.BNNPrior()
    key = jax.random.key(9)

    @jax.jit
    def both(key):
        x, y = prior.sample_dataset(key, 40, 6, jnp.int32(3), jnp.int32(20))
        _, _, k_w, k_noise = jax.random.split(key, 4)
        hyper = prior.dataset_hyperparameters(key)
        layers = bnn.sample_weights(k_w, prior, hyper, 6)
        y_ref = bnn.standardize(bnn.mlp_forward(layers, x, hyper, prior, noise_key=k_noise))
        # no-noise function: unused columns of x are zero, so shuffling the zero columns' weights changes nothing
        layers_alt = (bnn.BNNLayer(layers[0].weight.at[3:].set(7.0), layers[0].bias),) + layers[1:]
        f = bnn.mlp_forward(layers, x, hyper, prior)
        f_alt = bnn.mlp_forward(layers_alt, x, hyper, prior)
        return x, y, y_ref, f, f_alt

    x, y, y_ref, f, f_alt = both(key)
    assert np.all(np.asarray(x)[:, 3:] == 0)
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_ref), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(f), np.asarray(f_alt))


def test_bnn_config_validation():
    with pytest.raises(ValueError, match="activations"):
        bnn.BNNPrior(activations=("sigmoid",))
    with pytest.raises(ValueError, match="hidden_range"):
        bnn.BNNPrior(hidden_range=(10, 5))
    with pytest.raises(ValueError, match="dropout_range"):
        bnn.BNNPrior(dropout_range=(0.0, 1.0))
