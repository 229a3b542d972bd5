"""The paper experiments (experiments/gp_mimicry, gp_hyperprior, bnn_vs_mcmc): the bnn_binary
prior against a NumPy forward pass, the baselines against scikit-learn and importance sampling
from the prior (numerical integration of the posterior predictive), the --smoke runs and their
errors on bad input."""

import importlib.util
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from pfnjax.priors import get_prior

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
sys.path.insert(0, str(EXPERIMENTS))


def _load(experiment: str, module: str):
    """``experiments/<experiment>/<module>.py`` under a unique name ."""
    sys.path.insert(0, str(EXPERIMENTS / experiment))
    spec = importlib.util.spec_from_file_location(f"{experiment}_{module}", EXPERIMENTS / experiment / f"{module}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.path.remove(str(EXPERIMENTS / experiment))
    return mod


# --------------------------------------------------------------------------- the bnn_binary prior


def _numpy_logits(net, x):
    w1, b1, w2, b2 = (np.asarray(a, np.float64) for a in net)
    return np.tanh(x @ w1 + b1) @ w2 + b2


def test_bnn_binary_labels_are_bernoulli_of_the_network():
    prior = get_prior("bnn_binary", hidden=5)
    keys = jax.random.split(jax.random.key(0), 400)
    sample = jax.jit(jax.vmap(lambda k: prior.sample_dataset(k, 50, 4, jnp.int32(3), jnp.int32(25))))
    x, y = (np.asarray(a) for a in sample(keys))
    nets = jax.vmap(lambda k: prior.sample_network(jax.random.split(k, 3)[0], 4, jnp.int32(3)))(keys)
    assert np.all(np.asarray(nets.w1)[:, 3] == 0) and np.all(x[..., 3] == 0)  # the unused feature
    p = np.stack([special.expit(_numpy_logits([a[i] for a in nets], x[i])) for i in range(len(keys))])
    # calibration: within each bin of the network's P(y=1), the label frequency matches
    bins = np.digitize(p.ravel(), np.linspace(0, 1, 11)[1:-1])
    for b in range(10):
        sel = bins == b
        expected, n = p.ravel()[sel].mean(), sel.sum()
        assert abs(y.ravel()[sel].mean() - expected) < 4 * np.sqrt(expected * (1 - expected) / n) + 1e-3
    # weights are N(0, 1): the pooled weight variance, against its chi-square sampling error
    w = np.concatenate([np.asarray(nets.w1)[:, :3].reshape(len(keys), -1), np.asarray(nets.w2)], 1).ravel()
    assert abs(w.mean()) < 4 / np.sqrt(w.size) and abs(w.var() - 1) < 4 * np.sqrt(2 / w.size)


# --------------------------------------------------------------------------- baselines


def _gp_data(n_ctx=6, n_qry=4, features=1, seed=3):
    prior = get_prior("gp_hyper")
    x, y = prior.sample_dataset(jax.random.key(seed), n_ctx + n_qry, features, jnp.int32(features), jnp.int32(n_ctx))
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return prior, x[:n_ctx], y[:n_ctx], x[n_ctx:], y[n_ctx:]


def test_gp_mle2_reaches_sklearns_optimum():
    kernels = pytest.importorskip("sklearn.gaussian_process.kernels")
    from sklearn.gaussian_process import GaussianProcessRegressor

    base = _load("gp_hyperprior", "gp_baselines")
    _, xc, yc, _, _ = _gp_data(n_ctx=30, features=2, seed=5)
    fitted = base.fit_mle2(jax.random.key(0), jnp.asarray(xc, jnp.float32), jnp.asarray(yc, jnp.float32))
    ours = float(base.neg_log_marginal_likelihood(fitted, jnp.asarray(xc, jnp.float32), jnp.asarray(yc, jnp.float32)))
    kernel = (kernels.ConstantKernel(1.0, (1e-4, 1e3)) * kernels.Matern([0.5, 0.5], (1e-2, 1e2), nu=2.5)
              + kernels.WhiteKernel(1.0, (1e-4, 1e3)))
    ref = GaussianProcessRegressor(kernel, alpha=base.JITTER, n_restarts_optimizer=8, random_state=0).fit(xc, yc)
    assert ours <= -ref.log_marginal_likelihood_value_ + 0.02


def _matern52(x1, x2, ls, os_):
    """Matern-5/2 ARD kernel matrices ``[S, N1, N2]`` for ``S`` draws of ``ls [S, F]`` and ``os_ [S]``."""
    r = np.sqrt(5) * np.sqrt((((x1[None, :, None, :] - x2[None, None, :, :]) / ls[:, None, None, :]) ** 2).sum(-1))
    return os_[:, None, None] * (1 + r + r**2 / 3) * np.exp(-r)


def test_gp_nuts_predictive_matches_importance_sampling_from_the_prior():
    pytest.importorskip("numpyro")
    base = _load("gp_hyperprior", "gp_baselines")
    prior, xc, yc, xq, yq = _gp_data()
    rng = np.random.default_rng(0)
    draws = 20_000
    ls = rng.gamma(prior.lengthscale_concentration, 1 / prior.lengthscale_rate, (draws, 1))
    os_ = rng.gamma(prior.outputscale_concentration, 1 / prior.outputscale_rate, draws)
    noise = rng.gamma(prior.noise_concentration, 1 / prior.noise_rate, draws)
    # exact GP evidence and predictive for every draw, float64, batched over draws
    k_cc = _matern52(xc, xc, ls, os_) + (noise + base.JITTER)[:, None, None] * np.eye(len(xc))
    chol = np.linalg.cholesky(k_cc)
    alpha = np.linalg.solve(k_cc, yc[None, :, None])[..., 0]
    log_w = (-0.5 * np.einsum("sn,n->s", alpha, yc) - np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(1)
             - 0.5 * len(xc) * np.log(2 * np.pi))
    k_qc = _matern52(xq, xc, ls, os_)
    mean = np.einsum("sqn,sn->sq", k_qc, alpha)
    var = (os_ + noise)[:, None] - np.einsum("sqn,sqn->sq", k_qc, np.linalg.solve(k_cc, k_qc.transpose(0, 2, 1)).transpose(0, 2, 1))
    log_pq = stats.norm(mean, np.sqrt(var)).logpdf(yq)
    log_w = log_w - special.logsumexp(log_w)
    assert 1 / np.sum(np.exp(2 * log_w)) > 1000  # effective sample size
    reference = -np.mean(special.logsumexp(log_pq + log_w[:, None], axis=0))
    nuts = base.NUTSBaseline(prior, warmup=300, samples=400)
    assert nuts.nll(jax.random.key(1), xc.astype(np.float32), yc.astype(np.float32), xq.astype(np.float32),
                    yq.astype(np.float32)) == pytest.approx(reference, abs=0.03)


def test_bnn_nuts_and_svi_match_importance_sampling_from_the_prior():
    pytest.importorskip("numpyro")
    base = _load("bnn_vs_mcmc", "bnn_baselines")
    prior = get_prior("bnn_binary", hidden=5)
    x, y = (np.asarray(a) for a in prior.sample_dataset(jax.random.key(7), 12, 3, jnp.int32(3), jnp.int32(6)))
    xc, yc, xq, yq = x[:6], y[:6], x[6:], y[6:]
    rng = np.random.default_rng(0)
    draws = 100_000
    w1, b1, w2, b2 = (rng.normal(size=(draws, *s)) for s in ((3, 5), (5,), (5,), ()))
    logits = lambda xs: np.einsum("sdh,sh->sd", np.tanh(np.einsum("df,sfh->sdh", xs, w1) + b1[:, None]), w2) + b2[:, None]
    log_w = -np.logaddexp(0, np.where(yc == 1, -1, 1) * logits(xc)).sum(1)  # log Bernoulli likelihood
    w = np.exp(log_w - special.logsumexp(log_w))
    assert 1 / np.sum(w**2) > 5000
    p_ref = w @ special.expit(logits(xq))
    nll_ref = -np.mean(np.where(yq == 1, np.log(p_ref), np.log1p(-p_ref)))
    nuts_nll, _ = base.NUTSBaseline(prior, 300, 600)(jax.random.key(0), xc, yc, xq, yq)
    assert nuts_nll == pytest.approx(nll_ref, abs=0.03)
    # mean-field SVI is an approximation; it must still beat the prior predictive (P = 0.5) by half the way
    svi_nll, _ = base.SVIBaseline(prior, 2000)(jax.random.key(0), xc, yc, xq, yq)
    assert svi_nll < np.log(2) - 0.5 * (np.log(2) - nll_ref)


# --------------------------------------------------------------------------- smoke runs and bad input


@pytest.mark.parametrize("experiment, expected", [
    ("gp_mimicry", ["| 1 |", "bucket floor", "Mean gap"]),
    ("gp_hyperprior", ["| 10 |", "MLE-II", "NUTS"]),
    ("bnn_vs_mcmc", ["| 10 | PFN |", "| 10 | NUTS 20+20 |", "| 10 | SVI 50 |"]),
])
def test_smoke_run_writes_table_records_and_plots(tmp_path, experiment, expected):
    pytest.importorskip("numpyro")
    run = _load(experiment, "run")
    assert run.main(["--smoke", "--out", str(tmp_path), "--runs", str(tmp_path / "runs"), "--seed", "3"]) == 0
    table = (tmp_path / "results_smoke.md").read_text()
    for text in expected:
        assert text in table, text
    assert json.loads((tmp_path / "results_smoke.json").read_text())["seed"] == 3
    pngs = list(tmp_path.glob("*_smoke.png"))
    assert pngs and all(p.stat().st_size > 10_000 for p in pngs)


def test_scripts_fail_clearly_on_bad_input(tmp_path, capsys):
    run = _load("gp_mimicry", "run")
    with pytest.raises(SystemExit):
        run.main(["--scale", "tpu"])
    assert "unknown --scale 'tpu'" in capsys.readouterr().err
    if jax.default_backend() != "gpu":
        with pytest.raises(SystemExit):
            run.main(["--scale", "gpu"])
        assert "needs a GPU" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no model"):
        run.main(["--model", str(tmp_path / "missing")])
    import common
    with pytest.raises(SystemExit, match="pip install 'pfnjax\\[experiments\\]'"):
        common.require("a_module_that_is_not_installed")


@pytest.mark.parametrize("name, prior", [("gp-mimicry-cpu", "gp"), ("gp-hyper-cpu", "gp_hyper"),
                                         ("bnn-small-cpu", "bnn_binary"), ("bnn-big-cpu", "bnn_binary"),
                                         ("cls-small", "tabpfn_v1_mix"), ("reg-small", "tabular_regression_mix")])
def test_experiment_models_are_shipped_and_match_their_presets(name, prior):
    import pfnjax
    from pfnjax.priors.base import prior_from_spec, prior_spec

    assert name in pfnjax.shipped_models()
    pfn = pfnjax.load(name)
    assert pfn.train_config == pfnjax.preset_config(name)  # trained with the committed preset
    assert prior_spec(prior_from_spec(pfn.prior_spec)) == prior_spec(get_prior(prior, **pfn.train_config.prior.kwargs))
