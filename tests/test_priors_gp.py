"""GP priors: kernels, sampled covariance, exact posterior and the per-dataset hyperprior.

References are independent numpy/scipy float64 computations. Statistical tests use fixed seeds
and tolerances derived from the sample size (z-scores < 5, KS p-values > 1e-3); each is paired
with a "power" check showing that a plausible bug (wrong lengthscale, rate read as scale, ...)
would fail it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from scipy.spatial.distance import cdist

from pfnjax.priors import get_prior, gp, sample_batch
from pfnjax.priors.base import feature_mask
from pfnjax.types import BatchShape

# --------------------------------------------------------------------------- references


def np_kernel(kernel: str, x1, x2, lengthscale, outputscale) -> np.ndarray:
    """float64 kernel from scipy's Euclidean distances of the lengthscale-scaled inputs."""
    ls = np.asarray(lengthscale, np.float64)
    d = cdist(np.asarray(x1, np.float64) / ls, np.asarray(x2, np.float64) / ls)
    if kernel == "rbf":
        corr = np.exp(-0.5 * d**2)
    elif kernel == "matern32":
        corr = (1 + np.sqrt(3) * d) * np.exp(-np.sqrt(3) * d)
    else:
        corr = (1 + np.sqrt(5) * d + 5 / 3 * d**2) * np.exp(-np.sqrt(5) * d)
    return float(outputscale) * corr


def cov_zscores(samples: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """z-scores of the zero-mean empirical covariance against ``cov``.

    For Gaussian ``y``, ``Var(y_i y_j) = S_ii S_jj + S_ij^2``, so the standard error of the
    ``N``-sample second moment is ``sqrt((S_ii S_jj + S_ij^2) / N)``.
    """
    n = samples.shape[0]
    emp = samples.T @ samples / n
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    return (emp - cov) / se


def floored_gamma_pvalues(samples: np.ndarray, a: float, rate: float, floor: float) -> tuple[float, float]:
    """(binomial p of the mass at the floor, KS p of the values above it vs the truncated Gamma)."""
    dist = scipy.stats.gamma(a, scale=1.0 / rate)
    samples = np.asarray(samples, np.float64)
    at_floor = samples <= floor * (1 + 1e-6)
    p_floor = dist.cdf(floor)
    p_binom = scipy.stats.binomtest(int(at_floor.sum()), samples.size, p_floor).pvalue
    above = samples[~at_floor]
    f0 = dist.cdf(floor)
    p_ks = scipy.stats.kstest(above, lambda v: (dist.cdf(v) - f0) / (1 - f0)).pvalue
    return p_binom, p_ks


# --------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("kernel", ["rbf", "matern32", "matern52"])
@pytest.mark.parametrize("lengthscale", [0.6, (0.3, 1.2, 0.7)])
def test_kernel_matches_scipy_reference(kernel, lengthscale):
    rng = np.random.default_rng(0)
    x1 = rng.uniform(size=(7, 3)).astype(np.float32)
    x2 = np.concatenate([x1[:2], rng.uniform(size=(4, 3))]).astype(np.float32)  # includes d = 0
    ls = np.asarray(lengthscale, np.float32)
    got = gp.kernel_matrix(kernel, x1, x2, jnp.asarray(ls), 1.7)
    np.testing.assert_allclose(np.asarray(got), np_kernel(kernel, x1, x2, ls, 1.7), rtol=2e-5, atol=2e-6)


def test_ard_zero_and_irrelevant_columns_do_not_matter():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(9, 2)).astype(np.float32)
    x_pad = np.concatenate([x, np.zeros((9, 2), np.float32)], axis=1)
    ref = gp.kernel_matrix("matern52", x, x, jnp.array([0.3, 0.5]), 2.0)
    for ls_unused in (1e-2, 1e3):
        padded = gp.kernel_matrix("matern52", x_pad, x_pad, jnp.array([0.3, 0.5, ls_unused, ls_unused]), 2.0)
        np.testing.assert_allclose(np.asarray(padded), np.asarray(ref), rtol=1e-6, atol=1e-7)
    # a feature with a huge lengthscale has (numerically) no effect
    x_other = x_pad.copy()
    x_other[:, 2] = rng.uniform(size=9)
    k_a = gp.kernel_matrix("rbf", x_pad, x_pad, jnp.array([0.3, 0.5, 1e6, 1.0]), 1.0)
    k_b = gp.kernel_matrix("rbf", x_other, x_other, jnp.array([0.3, 0.5, 1e6, 1.0]), 1.0)
    np.testing.assert_allclose(np.asarray(k_a), np.asarray(k_b), atol=1e-6)


# --------------------------------------------------------------------------- sampled covariance


@pytest.mark.parametrize("kernel,lengthscale", [("rbf", 0.6), ("matern52", (0.4, 0.9, 0.6))])
def test_sample_gp_targets_covariance(kernel, lengthscale):
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(6, 3)).astype(np.float32)
    hyper = gp.GPHyper(jnp.asarray(lengthscale, jnp.float32), 1.3, 0.05)
    n = 20000
    keys = jax.random.split(jax.random.key(11), n)
    draw = jax.jit(jax.vmap(lambda k: gp.sample_gp_targets(k, jnp.asarray(x), kernel, hyper)))
    ys = np.asarray(draw(keys), np.float64)
    cov = np_kernel(kernel, x, x, lengthscale, 1.3) + (0.05 + 1e-6) * np.eye(6)
    assert np.abs(ys.mean(0)).max() < 5 * np.sqrt(np.diag(cov).max() / n)
    assert np.abs(cov_zscores(ys, cov)).max() < 5.0
    # power: half the lengthscale would be detected
    wrong = np_kernel(kernel, x, x, np.asarray(lengthscale) / 2, 1.3) + 0.05 * np.eye(6)
    assert np.abs(cov_zscores(ys, wrong)).max() > 10.0


def test_gp_prior_batch_second_moments():
    """Through ``sample_batch``: E[y_i y_j | x] = k(x_i, x_j) + (noise + jitter) [i = j]."""
    prior = gp.GPPrior(lengthscale=0.6, outputscale=1.0, noise=0.05)
    shape = BatchShape(4000, 5, 2)
    b = jax.jit(lambda k: sample_batch(prior, k, shape))(jax.random.key(5))
    x, y = np.asarray(b.x, np.float64), np.asarray(b.y, np.float64)

    def max_z(lengthscale: float) -> float:
        d2 = np.sum((x[:, :, None, :] - x[:, None, :, :]) ** 2, -1) / lengthscale**2
        k = np.exp(-0.5 * d2) + (0.05 + 1e-6) * np.eye(5)
        resid = y[:, :, None] * y[:, None, :] - k  # [B, T, T], mean 0 under the prior
        z = resid.mean(0) / (resid.std(0) / np.sqrt(len(y)))
        return float(np.abs(z).max())

    assert max_z(0.6) < 5.0
    assert max_z(0.3) > 10.0  # power


def test_x_dist_option():
    shape = BatchShape(8, 200, 3)
    xu = np.asarray(jax.jit(lambda k: sample_batch(gp.GPPrior(), k, shape).x)(jax.random.key(0)))
    xn = np.asarray(jax.jit(lambda k: sample_batch(gp.GPPrior(x_dist="normal"), k, shape).x)(jax.random.key(0)))
    assert xu.min() >= 0.0 and xu.max() < 1.0 and abs(xu.mean() - 0.5) < 0.02
    assert xn.min() < -2.0 and abs(xn.mean()) < 0.05 and abs(xn.std() - 1.0) < 0.05
    with pytest.raises(ValueError, match="x_dist"):
        gp.GPPrior(x_dist="beta")
    with pytest.raises(ValueError, match="kernel"):
        gp.GPHyperPrior(kernel="periodic")


# --------------------------------------------------------------------------- exact posterior


@pytest.mark.parametrize("kernel,lengthscale", [("rbf", 0.6), ("matern52", (0.3, 0.8, 0.5))])
def test_exact_posterior_matches_numpy_solve(kernel, lengthscale):
    rng = np.random.default_rng(3)
    x_ctx = rng.uniform(size=(25, 3))
    x_qry = rng.uniform(size=(7, 3))
    y_ctx = np.sin(6 * x_ctx[:, 0]) + x_ctx[:, 1] + 0.1 * rng.normal(size=25)
    ls, os_, noise, jitter = np.asarray(lengthscale), 1.4, 0.01, 1e-6
    k_cc = np_kernel(kernel, x_ctx, x_ctx, ls, os_) + (noise + jitter) * np.eye(25)
    k_qc = np_kernel(kernel, x_qry, x_ctx, ls, os_)
    mean_ref = k_qc @ np.linalg.solve(k_cc, y_ctx)
    var_ref = os_ - np.einsum("ij,ji->i", k_qc, np.linalg.solve(k_cc, k_qc.T)) + noise
    hyper = gp.GPHyper(jnp.asarray(ls, jnp.float32), os_, noise)
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    mean, var = gp.exact_posterior(f32(x_ctx), f32(y_ctx), f32(x_qry), hyper, kernel)
    np.testing.assert_allclose(np.asarray(mean), mean_ref, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(np.asarray(var), var_ref, rtol=1e-3, atol=1e-4)
    y_qry = rng.normal(size=7)
    nll = gp.exact_nll(f32(x_ctx), f32(y_ctx), f32(x_qry), f32(y_qry), hyper, kernel)
    nll_ref = -scipy.stats.norm.logpdf(y_qry, mean_ref, np.sqrt(var_ref))
    np.testing.assert_allclose(np.asarray(nll), nll_ref, rtol=1e-3, atol=1e-3)


# --------------------------------------------------------------------------- GP hyperprior


def test_hyperparameters_follow_their_gamma_priors():
    prior = gp.GPHyperPrior()
    keys = jax.random.split(jax.random.key(7), 2000)
    hyp = jax.jit(jax.vmap(lambda k: gp.sample_hyperparameters(k, prior, 3)))(keys)
    ls, os_, noise = (np.asarray(v, np.float64) for v in hyp)
    assert ls.shape == (2000, 3) and os_.shape == (2000,) and noise.shape == (2000,)
    for f in range(3):
        p_binom, p_ks = floored_gamma_pvalues(ls[:, f], 3.0, 6.0, 1e-2)
        assert p_binom > 1e-3 and p_ks > 1e-3, (f, p_binom, p_ks)
    assert abs(np.corrcoef(ls.T)[0, 1]) < 0.1 and abs(np.corrcoef(ls.T)[1, 2]) < 0.1  # independent features
    assert min(floored_gamma_pvalues(os_, 0.5, 0.15, 1e-30)) > 1e-3
    assert min(floored_gamma_pvalues(noise, 1.1, 0.05, 1e-4)) > 1e-3
    # power: reading the rate as a scale is rejected
    assert scipy.stats.kstest(ls[:, 0], scipy.stats.gamma(3.0, scale=6.0).cdf).pvalue < 1e-10
    assert scipy.stats.kstest(noise, scipy.stats.gamma(1.1, scale=0.05).cdf).pvalue < 1e-10


def test_hebo_options_lognormal_noise_and_irrelevant_features():
    base = gp.GPHyperPrior(kernel="matern32")
    hebo = gp.GPHyperPrior(kernel="matern32", noise_prior="lognormal", irrelevant_feature_p=0.3)
    keys = jax.random.split(jax.random.key(11), 3000)
    draw = lambda prior: jax.jit(jax.vmap(lambda k: gp.sample_hyperparameters(k, prior, 4)))(keys)
    h0, h1 = draw(base), draw(hebo)
    log_noise = np.log(np.asarray(h1.noise, np.float64))
    assert scipy.stats.kstest(log_noise, scipy.stats.norm(-4.63, 0.5).cdf).pvalue > 1e-3
    assert scipy.stats.kstest(log_noise, scipy.stats.norm(-4.63, 1.0).cdf).pvalue < 1e-10  # power
    # the options leave the other draws alone
    np.testing.assert_array_equal(np.asarray(h0.outputscale), np.asarray(h1.outputscale))
    ls0, ls1 = np.asarray(h0.lengthscale), np.asarray(h1.lengthscale)
    irrelevant = np.isinf(ls1)
    np.testing.assert_array_equal(ls1[~irrelevant], ls0[~irrelevant])
    assert not irrelevant[:, 0].any()
    for f in range(1, 4):
        assert scipy.stats.binomtest(int(irrelevant[:, f].sum()), len(keys), 0.3).pvalue > 1e-3
    # an irrelevant feature does not enter the kernel: as if its column were dropped
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(6, 3)).astype(np.float32)
    ls = jnp.array([0.3, jnp.inf, 0.5])
    np.testing.assert_allclose(np.asarray(gp.kernel_matrix("matern32", x, x, ls, 1.3)),
                               np_kernel("matern32", x[:, [0, 2]], x[:, [0, 2]], [0.3, 0.5], 1.3), rtol=2e-5, atol=2e-6)
    with pytest.raises(ValueError, match="irrelevant_feature_p"):
        gp.GPHyperPrior(irrelevant_feature_p=1.0)
    with pytest.raises(ValueError, match="noise_prior"):
        gp.GPHyperPrior(noise_prior="halfcauchy")


def test_hyperparameter_floors_bind_with_the_right_mass():
    prior = gp.GPHyperPrior(lengthscale_floor=0.4, noise_floor=5.0)  # floors at ~the 25% / 20% quantiles
    keys = jax.random.split(jax.random.key(8), 2000)
    hyp = jax.jit(jax.vmap(lambda k: gp.sample_hyperparameters(k, prior, 2)))(keys)
    ls, noise = np.asarray(hyp.lengthscale, np.float64), np.asarray(hyp.noise, np.float64)
    assert ls.min() == pytest.approx(0.4) and noise.min() == pytest.approx(5.0)
    assert min(floored_gamma_pvalues(ls[:, 1], 3.0, 6.0, 0.4)) > 1e-3
    assert min(floored_gamma_pvalues(noise, 1.1, 0.05, 5.0)) > 1e-3


def test_lengthscales_do_not_depend_on_max_features():
    prior = gp.GPHyperPrior()
    k = jax.random.key(4)
    h3, h6 = jax.jit(lambda k: (gp.sample_hyperparameters(k, prior, 3), gp.sample_hyperparameters(k, prior, 6)))(k)
    np.testing.assert_array_equal(np.asarray(h3.lengthscale), np.asarray(h6.lengthscale)[:3])
    assert float(h3.noise) == float(h6.noise) and float(h3.outputscale) == float(h6.outputscale)


def test_dimension_scaled_lengthscales_are_the_plain_draws_times_sqrt_used_features():
    plain, scaled = gp.GPHyperPrior(irrelevant_feature_p=0.3), gp.GPHyperPrior(irrelevant_feature_p=0.3,
                                                                              lengthscale_dim_scaling=True)
    k = jax.random.key(5)
    for n in (1, 4, 9):
        h0, h1 = gp.sample_hyperparameters(k, plain, 9), gp.sample_hyperparameters(k, scaled, 9, jnp.int32(n))
        np.testing.assert_allclose(np.asarray(h1.lengthscale), np.asarray(h0.lengthscale) * np.sqrt(n), rtol=1e-6)
        assert float(h1.noise) == float(h0.noise) and float(h1.outputscale) == float(h0.outputscale)
    # sample_dataset draws its targets with the scaled lengthscales that dataset_hyperparameters recovers
    key = jax.random.key(6)
    x, y = scaled.sample_dataset(key, 40, 6, jnp.int32(6), jnp.int32(20))
    hyper = scaled.dataset_hyperparameters(key, 6, jnp.int32(6))
    redrawn = gp.sample_gp_targets(jax.random.split(key, 3)[2], x, scaled.kernel, hyper)
    np.testing.assert_allclose(np.asarray(y), np.asarray(redrawn), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="num_features"):
        gp.sample_hyperparameters(k, scaled, 9)
    with pytest.raises(ValueError, match="feature count"):
        scaled.batch_hyperparameters(k, BatchShape(2, 8, 3))


def test_batch_hyperparameters_whiten_the_sampled_targets():
    """The recovered per-dataset hypers make L^{-1} y i.i.d. N(0, 1); mismatched hypers do not."""
    prior = gp.GPHyperPrior()
    shape = BatchShape(300, 16, 3)
    key = jax.random.key(9)
    b, hyp = jax.jit(lambda k: (sample_batch(prior, k, shape), prior.batch_hyperparameters(k, shape)))(key)
    x, y = np.asarray(b.x, np.float64), np.asarray(b.y, np.float64)
    ls, os_, noise = (np.asarray(v, np.float64) for v in hyp)

    def whitened(perm: np.ndarray) -> np.ndarray:
        out = []
        for i, j in enumerate(perm):
            cov = np_kernel("matern52", x[i], x[i], ls[j], os_[j]) + (noise[j] + 1e-6) * np.eye(shape.seq_len)
            out.append(np.linalg.solve(np.linalg.cholesky(cov), y[i]))
        return np.concatenate(out)

    z = whitened(np.arange(shape.batch_size))
    assert scipy.stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / z.size)
    z_wrong = whitened(np.roll(np.arange(shape.batch_size), 1))
    assert scipy.stats.kstest(z_wrong, "norm").pvalue < 1e-6


def test_gp_hyper_unused_columns_do_not_influence_y():
    """With 2 of 4 columns used, y equals a GP draw on the 2 used columns alone (same keys)."""
    prior = gp.GPHyperPrior()
    key = jax.random.key(12)

    @jax.jit
    def both(key):
        x, y = prior.sample_dataset(key, 20, 4, jnp.int32(2), jnp.int32(10))
        hyp = prior.dataset_hyperparameters(key, 4)
        _, _, k_y = jax.random.split(key, 3)
        hyp2 = gp.GPHyper(hyp.lengthscale[:2], hyp.outputscale, hyp.noise)
        return x, y, gp.sample_gp_targets(k_y, x[:, :2], "matern52", hyp2, prior.jitter)

    x, y, y_ref = both(key)
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_ref), rtol=1e-4, atol=1e-4 * float(jnp.abs(y).max()))
    assert np.all(np.asarray(x)[:, 2:] == 0)


# --------------------------------------------------------------------------- contract


def test_gp_hyper_registered_defaults():
    prior = get_prior("gp_hyper")
    assert isinstance(prior, gp.GPHyperPrior) and prior.kernel == "matern52" and prior.task == "regression"
    assert get_prior("gp", x_dist="normal").x_dist == "normal"
    # feature_mask is what the samplers use for "used" columns
    assert np.asarray(feature_mask(jnp.int32(2), 4)).tolist() == [True, True, False, False]
