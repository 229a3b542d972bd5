"""experiments/bayesopt: the test functions at their known minima, the GP-EI baseline against
scikit-learn's GP (log marginal likelihood, posterior, MLE-II optimum), and the --smoke run."""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "bayesopt"
sys.path.insert(0, str(EXPERIMENT))

import functions  # noqa: E402
import gp_ei  # noqa: E402

sklearn_gp = pytest.importorskip("sklearn.gaussian_process")
kernels = pytest.importorskip("sklearn.gaussian_process.kernels")


@pytest.mark.parametrize("name", list(functions.PROBLEMS))
def test_functions_reach_their_known_minimum(name):
    p = functions.PROBLEMS[name]
    assert p.f(p.x_min) == pytest.approx(p.f_min, abs=1e-5)
    rng = np.random.default_rng(0)
    others = p.bounds[:, 0] + rng.uniform(size=(500, p.dim)) * (p.bounds[:, 1] - p.bounds[:, 0])
    assert min(p.f(x) for x in others) > p.f_min


def _data(n=13, pad=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, 2))
    y = np.sin(5 * x[:, 0]) + x[:, 1] ** 2 + 0.05 * rng.normal(size=n)
    y = (y - y.mean()) / y.std()
    xp, yp = np.zeros((pad, 2), np.float32), np.zeros(pad, np.float32)
    xp[:n], yp[:n] = x, y
    return x, y, xp, yp, (np.arange(pad) < n).astype(np.float32)


def test_gp_matches_sklearn_on_padded_data():
    x, y, xp, yp, mask = _data()
    params = {"ls": jnp.log(jnp.array([0.3, 0.7])), "os": jnp.log(1.5), "noise": jnp.log(0.01)}
    kernel = (kernels.ConstantKernel(1.5, "fixed") * kernels.Matern([0.3, 0.7], "fixed", nu=2.5)
              + kernels.WhiteKernel(0.01 + 1e-6, "fixed"))
    ref = sklearn_gp.GaussianProcessRegressor(kernel, alpha=1e-12, optimizer=None).fit(x, y)
    nlml = float(gp_ei.neg_log_marginal_likelihood(params, xp, yp, mask))
    assert nlml == pytest.approx(-ref.log_marginal_likelihood_value_, abs=1e-3)
    x_q = np.random.default_rng(1).uniform(size=(5, 2))
    mean, var = gp_ei.posterior_f(params, xp, yp, mask, jnp.asarray(x_q, jnp.float32))
    # sklearn's predictive includes the white noise; the latent variance is that minus the noise
    ref_mean, ref_std = ref.predict(x_q, return_std=True)
    np.testing.assert_allclose(np.asarray(mean), ref_mean, atol=2e-3)
    np.testing.assert_allclose(np.asarray(var), ref_std**2 - (0.01 + 1e-6), atol=2e-3)


def test_mle2_reaches_sklearns_optimum():
    x, y, xp, yp, mask = _data()
    fitted = gp_ei.fit_mle2(jax.random.key(0), xp, yp, mask)
    ours = float(gp_ei.neg_log_marginal_likelihood(fitted, xp, yp, mask))
    kernel = kernels.ConstantKernel(1.0) * kernels.Matern([0.5, 0.5], nu=2.5) + kernels.WhiteKernel(1e-2)
    ref = sklearn_gp.GaussianProcessRegressor(kernel, alpha=1e-12, n_restarts_optimizer=5, random_state=0).fit(x, y)
    assert ours <= -ref.log_marginal_likelihood_value_ + 0.02


def test_smoke_run_writes_table_and_plot(tmp_path):
    import run

    assert run.main(["--smoke", "--out", str(tmp_path), "--problems", "branin"]) == 0  # the shipped bo-hebo
    table = (tmp_path / "results_smoke.md").read_text()
    for method in run.METHODS:
        assert f"| branin | {method} |" in table
    assert (tmp_path / "regret_smoke.png").stat().st_size > 10_000
    import json

    runs = json.loads((tmp_path / "runs_smoke.json").read_text())["branin"]
    # paired design: every method starts from the same initial points per seed
    for seed in range(2):
        firsts = {tuple(runs[m][seed]["y"][:5]) for m in run.METHODS}
        assert len(firsts) == 1
