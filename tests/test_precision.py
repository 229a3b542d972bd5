"""Precision guard: numerically sensitive code states its matmul precision on every backend.

GPUs compute float32 matmuls in TF32 at JAX's default precision; the CPU does not, so a CPU
test of values cannot see a missing ``precision=HIGHEST``. Two mechanisms make CI see it:

1. ``low_precision_dots`` walks the jaxprs of every prior sampler, oracle and bar functional
   and fails on any float matmul that does not run at full precision.
2. ``tf32_emulation`` rounds DEFAULT-precision float32 matmul operands to TF32 on the CPU, as a
   GPU does. Under it the naive GP kernel reproduces the GPU failure (NaN Cholesky), and the
   shipped samplers and oracles still match their float64 references.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tf32_emulation
from flax import nnx
from tf32_emulation import emulate_tf32

import pfnjax
from pfnjax.distributions import bar
from pfnjax.model import ClassicConfig, ModelIO, build_model
from pfnjax.numerics import low_precision_dots, matmul
from pfnjax.priors import gp, linear, prior_names
from pfnjax.priors.base import get_prior, sample_batch
from pfnjax.types import BatchShape

SHAPE = BatchShape(batch_size=2, seq_len=24, num_features=3)


def _varying_features(key, max_features):
    return jax.random.randint(key, (), 1, max_features + 1)


# --------------------------------------------------------------------------- the guard can fail


def test_guard_finds_default_precision_dots_in_nested_jaxprs():
    x = jnp.ones((4, 3))

    def nested(a):
        def body(carry, row):
            inner = jax.lax.cond(carry > 0, lambda r: r @ a.T, lambda r: jnp.zeros(4), row)
            return carry + inner.sum(), None

        return jax.jit(lambda b: jax.lax.scan(body, 0.0, b)[0])(a)

    found = low_precision_dots(nested, x)
    assert len(found) == 1 and "(3,) x (3, 4)" in found[0] and "test_precision.py" in found[0]
    assert low_precision_dots(lambda a: matmul(a, a.T), x) == []
    assert low_precision_dots(lambda a: jnp.einsum("ij,kj->ik", a, a, precision="highest"), x) == []
    # bfloat16/HIGH are not full precision; integer matmuls are exact and ignored
    assert len(low_precision_dots(lambda a: jnp.matmul(a, a.T, precision="high"), x)) == 1
    assert low_precision_dots(lambda a: a @ a.T, jnp.ones((4, 3), jnp.int32)) == []


def test_the_transformer_keeps_fast_default_precision_matmuls():
    # The guard is for the sensitive code only: the model's own matmuls must stay TF32/bf16-fast.
    cfg = ClassicConfig(d_model=16, num_layers=1, num_heads=2)
    model = build_model(cfg, ModelIO(max_features=3, num_outputs=7), nnx.Rngs(0))
    batch = sample_batch(get_prior("gp"), jax.random.key(0), SHAPE)
    found = low_precision_dots(lambda: model(batch.x, batch.y, batch.single_eval_pos, batch.num_features))
    assert len(found) >= 4


# --------------------------------------------------------------------------- every sensitive path


@pytest.mark.parametrize("name", prior_names())
def test_every_prior_sampler_runs_its_matmuls_at_full_precision(name):
    prior = get_prior(name)
    found = low_precision_dots(lambda k: sample_batch(prior, k, SHAPE), jax.random.key(0))
    found += low_precision_dots(
        lambda k: sample_batch(prior, k, SHAPE, split="loguniform", num_features_sampler=_varying_features),
        jax.random.key(0),
    )
    assert found == [], "\n".join(found)


def test_prior_variants_run_their_matmuls_at_full_precision():
    variants = [
        get_prior("gp", kernel="matern52", x_dist="normal"),
        get_prior("gp_hyper", kernel="rbf"),
        get_prior("gp_hyper", kernel="matern32", noise_prior="lognormal", irrelevant_feature_p=0.3),
        get_prior("bnn", activations=("tanh", "relu")),
    ]
    for prior in variants:
        found = low_precision_dots(lambda k: sample_batch(prior, k, SHAPE), jax.random.key(0))
        assert found == [], f"{prior}: " + "\n".join(found)


def test_oracles_run_their_matmuls_at_full_precision():
    batch = sample_batch(get_prior("gp"), jax.random.key(1), SHAPE)
    xc, yc, xq, yq = batch.x[:, :10], batch.y[:, :10], batch.x[:, 10:], batch.y[:, 10:]
    mask = jnp.arange(10) < 7
    # every prior that states an exact posterior (the evaluators' oracle), with and without a context mask
    oracles = [name for name in prior_names() if callable(getattr(get_prior(name), "exact_predictive", None))]
    assert {"gp", "linear"} <= set(oracles)
    for name in oracles:
        oracle = get_prior(name).exact_predictive
        found = low_precision_dots(jax.vmap(oracle), xc, yc, xq)
        found += low_precision_dots(jax.vmap(lambda a, b, c: oracle(a, b, c, ctx_mask=mask)), xc, yc, xq)
        assert found == [], f"{name}: " + "\n".join(found)
    hyper = gp.GPHyper(0.6, 1.0, 1e-4)
    assert low_precision_dots(lambda *a: gp.exact_posterior(*a, hyper), xc[0], yc[0], xq[0]) == []
    # gp_hyper: the exact posterior at one dataset's sampled ARD hyperparameters (Matern-5/2)
    hyper_prior = get_prior("gp_hyper")
    ard = hyper_prior.dataset_hyperparameters(jax.random.key(3), SHAPE.num_features)
    found = low_precision_dots(lambda *a: gp.exact_nll(*a, ard, "matern52"), xc[0], yc[0], xq[0], yq[0])
    assert found == [], "\n".join(found)
    lin = get_prior("linear")
    assert low_precision_dots(lambda *a: linear.posterior_predictive(*a, lin), xc[0], yc[0], xq[0]) == []


def test_bar_functionals_run_their_matmuls_at_full_precision():
    borders = jnp.linspace(-2.0, 2.0, 9)
    logits = jax.random.normal(jax.random.key(2), (5, 8))
    y = jnp.linspace(-3.0, 3.0, 5)
    calls = {
        "log_prob": lambda: bar.log_prob(borders, logits, y),
        "pdf": lambda: bar.pdf(borders, logits, y),
        "cdf": lambda: bar.cdf(borders, logits, y),
        "icdf": lambda: bar.icdf(borders, logits, jnp.array([0.1, 0.5, 0.9])),
        "median": lambda: bar.median(borders, logits),
        "mean": lambda: bar.mean(borders, logits),
        "variance": lambda: bar.variance(borders, logits),
        "mode": lambda: bar.mode(borders, logits),
        "entropy": lambda: bar.entropy(borders, logits),
        "sample": lambda: bar.sample(jax.random.key(0), borders, logits, (3,)),
        "ei": lambda: bar.expected_improvement(borders, logits, 0.3),
        "pi": lambda: bar.probability_of_improvement(borders, logits, 0.3),
        "ucb": lambda: bar.ucb(borders, logits),
        "average": lambda: bar.average_distributions(jnp.stack([logits, logits])),
        "probs": lambda: bar.probs(borders, logits),
    }
    for name, call in calls.items():
        found = low_precision_dots(call)
        assert found == [], f"{name}: " + "\n".join(found)


# --------------------------------------------------------------------------- values under emulated TF32


def _naive_kernel(x1, x2, lengthscale, outputscale):
    x1, x2 = x1 / lengthscale, x2 / lengthscale
    sq = jnp.sum(x1**2, -1)[:, None] + jnp.sum(x2**2, -1)[None, :] - 2.0 * x1 @ x2.T  # DEFAULT precision
    return outputscale * jnp.exp(-0.5 * jnp.maximum(sq, 0.0))


def test_tf32_emulation_reproduces_the_gpu_failure_of_a_default_precision_kernel():
    x = jax.random.uniform(jax.random.key(3), (200, 5))

    def chol_nan_fraction(kernel):
        cov = kernel(x, x, 0.6, 1.0) + (1e-4 + 1e-6) * jnp.eye(200)
        return jnp.mean(jnp.isnan(jnp.linalg.cholesky(cov)))

    if not tf32_emulation.installed():  # (the whole suite may run emulated: PFNJAX_EMULATE_TF32=1)
        assert float(jax.jit(chol_nan_fraction, static_argnums=0)(_naive_kernel)) == 0.0  # fine on a CPU
    with emulate_tf32():
        # as on an H100: the TF32 kernel matrix is not positive definite
        assert float(jax.jit(chol_nan_fraction, static_argnums=0)(_naive_kernel)) > 0.5
        shipped = lambda a, b, ls, os: gp.kernel_matrix("rbf", a, b, ls, os)  # noqa: E731
        assert float(jax.jit(chol_nan_fraction, static_argnums=0)(shipped)) == 0.0


# The prior bags (tabpfn_v1_mix, tabular_regression_mix) are other priors' samplers mixed: the static
# guard above covers them, each component is tested here, and their compiles are the slowest of all.
@pytest.mark.parametrize("name", sorted(set(prior_names()) - {"tabpfn_v1_mix", "tabular_regression_mix"}))
def test_every_prior_is_finite_and_unchanged_under_tf32(name):
    prior = get_prior(name)
    shape = BatchShape(batch_size=4, seq_len=200, num_features=5)
    sampler = jax.jit(lambda k: sample_batch(prior, k, shape))
    reference = sampler(jax.random.key(4))
    with emulate_tf32():
        emulated = sampler(jax.random.key(4))
    y_ref, y_emu = np.asarray(reference.y), np.asarray(emulated.y)
    assert np.isfinite(y_emu).all()
    # Full-precision matmuls compute the same draws whatever the default precision is.
    np.testing.assert_array_equal(np.asarray(emulated.x), np.asarray(reference.x))
    np.testing.assert_array_equal(y_emu, y_ref)


def test_exact_gp_posterior_matches_float64_under_tf32():
    batch = sample_batch(get_prior("gp"), jax.random.key(5), BatchShape(1, 300, 5))
    x, y = np.asarray(batch.x[0], np.float64), np.asarray(batch.y[0], np.float64)
    xc, yc, xq = x[:250], y[:250], x[250:]
    hyper = gp.GPHyper(0.6, 1.0, 1e-4)

    def k(a, b):
        d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return np.exp(-0.5 * d / 0.36)

    kcc = k(xc, xc) + (1e-4 + 1e-6) * np.eye(250)
    mean_ref = k(xq, xc) @ np.linalg.solve(kcc, yc)
    var_ref = 1.0 - np.einsum("ij,ji->i", k(xq, xc), np.linalg.solve(kcc, k(xc, xq))) + 1e-4
    with emulate_tf32():
        mean, var = jax.jit(lambda *a: gp.exact_posterior(*a, hyper))(xc, yc, xq)
    # float32 Cholesky of a matrix with condition number ~1e7: same tolerance as on the CPU
    np.testing.assert_allclose(np.asarray(mean), mean_ref, atol=2e-2)
    np.testing.assert_allclose(np.asarray(var), var_ref, atol=2e-3, rtol=0.2)


def test_linear_posterior_matches_float64_under_tf32():
    prior = get_prior("linear")
    batch = sample_batch(prior, jax.random.key(6), BatchShape(1, 60, 4))
    x, y = np.asarray(batch.x[0], np.float64), np.asarray(batch.y[0], np.float64)
    phi = lambda a: np.concatenate([prior.weight_std * a, np.full((len(a), 1), prior.bias_std)], 1)  # noqa: E731
    noise = prior.noise_std**2
    a = np.eye(5) + phi(x[:40]).T @ phi(x[:40]) / noise
    mu = np.linalg.solve(a, phi(x[:40]).T @ y[:40] / noise)
    mean_ref = phi(x[40:]) @ mu
    var_ref = np.einsum("ij,ji->i", phi(x[40:]), np.linalg.solve(a, phi(x[40:]).T)) + noise
    with emulate_tf32():
        mean, var = jax.jit(lambda *a: linear.posterior_predictive(*a, prior))(x[:40], y[:40], x[40:])
    np.testing.assert_allclose(np.asarray(mean), mean_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(var), var_ref, rtol=1e-4)


def test_the_package_sets_no_global_precision():
    assert jax.config.jax_default_matmul_precision is None
    assert pfnjax.numerics.SENSITIVE == jax.lax.Precision.HIGHEST
