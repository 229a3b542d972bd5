"""The baselines of ``gp_hyperprior``: MLE-II (optax) and NUTS over the GP hyperparameters (numpyro).

Both use the prior's own model: a zero-mean GP with the prior's kernel (Matern-5/2 ARD by
default), ARD lengthscales, an outputscale and a noise variance. Predictive densities come
from :func:`pfnjax.priors.gp.exact_nll`, the oracle the PFN experiments share:

* **MLE-II** maximises the log marginal likelihood over log-hyperparameters with L-BFGS from
  ``restarts`` random starts (vmapped), keeping the best; the prediction uses that one setting.
* **NUTS** samples the hyperparameters' posterior under the prior's Gamma hyperpriors (the
  floors of :class:`pfnjax.priors.gp.GPHyperPrior` are left out: they bind with probability
  < 1e-4); the predictive density is averaged over the samples (a mixture of Gaussians).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.linalg import cho_solve

from pfnjax.optimize import best_start, multistart_minimize
from pfnjax.priors.gp import GPHyper, GPHyperPrior, exact_nll, kernel_matrix

# log-space box for MLE-II; wide enough for every draw of the default hyperpriors
LOG_BOUNDS = {"ls": (np.log(1e-2), np.log(1e2)), "os": (np.log(1e-4), np.log(1e3)), "noise": (np.log(1e-4), np.log(1e3))}
JITTER = 1e-6


def _clip(params: dict) -> dict:
    return {k: jnp.clip(v, *LOG_BOUNDS[k]) for k, v in params.items()}


def to_hyper(params: dict) -> GPHyper:
    return GPHyper(jnp.exp(params["ls"]), jnp.exp(params["os"]), jnp.exp(params["noise"]))


def neg_log_marginal_likelihood(params: dict, x, y, kernel: str = "matern52"):
    """``-log N(y; 0, K + (noise + jitter) I)`` at log-hyperparameters ``params``, full matmul precision."""
    hyper = to_hyper(_clip(params))
    cov = kernel_matrix(kernel, x, x, hyper.lengthscale, hyper.outputscale)
    chol = jnp.linalg.cholesky(cov + (hyper.noise + JITTER) * jnp.eye(x.shape[0]))
    alpha = cho_solve((chol, True), y)
    return (0.5 * jnp.dot(y, alpha, precision="highest") + jnp.sum(jnp.log(jnp.diag(chol)))
            + 0.5 * x.shape[0] * jnp.log(2 * jnp.pi))


@functools.partial(jax.jit, static_argnames=("kernel", "restarts", "steps"))
def fit_mle2(key, x, y, *, kernel: str = "matern52", restarts: int = 8, steps: int = 50) -> dict:
    """MLE-II log-hyperparameters of one dataset (``x f32[N, F]``, ``y f32[N]``): the best of
    ``restarts`` L-BFGS runs (optax, zoom line search, ``steps`` iterations) from log-uniform
    random starts, projected onto :data:`LOG_BOUNDS` after every step. (Adam needs over 1,000
    steps on the flat likelihood surfaces of these priors to get as close.)"""
    k_ls, k_os, k_noise = jax.random.split(key, 3)
    init = {"ls": jax.random.uniform(k_ls, (restarts, x.shape[1]), minval=np.log(0.05), maxval=np.log(2.0)),
            "os": jax.random.uniform(k_os, (restarts,), minval=np.log(0.1), maxval=np.log(10.0)),
            "noise": jax.random.uniform(k_noise, (restarts,), minval=np.log(0.01), maxval=np.log(30.0))}
    loss = lambda p: neg_log_marginal_likelihood(p, x, y, kernel)
    fitted, losses = multistart_minimize(loss, init, optax.lbfgs(), steps, project=_clip, state_value=True)
    return best_start(fitted, losses)


@functools.partial(jax.jit, static_argnames=("kernel", "restarts", "steps"))
def mle2_nll(key, xc, yc, xq, yq, *, kernel: str = "matern52", restarts: int = 8, steps: int = 50):
    """Mean query NLL of MLE-II on one dataset. (One dataset per call: vmapping the fit over
    datasets is slower on the CPU than a loop, and the timing is per dataset either way.)"""
    params = _clip(fit_mle2(key, xc, yc, kernel=kernel, restarts=restarts, steps=steps))
    return exact_nll(xc, yc, xq, yq, to_hyper(params), kernel).mean()


def gp_model(x, y, prior: GPHyperPrior):
    """numpyro model: the prior's Gamma hyperpriors and the GP marginal likelihood of ``y``."""
    import numpyro
    import numpyro.distributions as dist

    ls = numpyro.sample("ls", dist.Gamma(prior.lengthscale_concentration, prior.lengthscale_rate).expand([x.shape[1]]))
    os_ = numpyro.sample("os", dist.Gamma(prior.outputscale_concentration, prior.outputscale_rate))
    noise = numpyro.sample("noise", dist.Gamma(prior.noise_concentration, prior.noise_rate))
    cov = kernel_matrix(prior.kernel, x, x, ls, os_) + (noise + JITTER) * jnp.eye(x.shape[0])
    numpyro.sample("y", dist.MultivariateNormal(jnp.zeros(x.shape[0]), covariance_matrix=cov), obs=y)


class NUTSBaseline:
    """NUTS over one dataset's hyperparameters (:class:`nuts.JittedNUTS`, compiled once per shape)."""

    def __init__(self, prior: GPHyperPrior, warmup: int = 300, samples: int = 100):
        self.prior, self.warmup, self.samples = prior, warmup, samples
        self._nuts = None

    def nll(self, key, xc, yc, xq, yq) -> float:
        """Mean query NLL of the posterior predictive (the Gaussian mixture over samples)."""
        from nuts import JittedNUTS

        xc, yc = jnp.asarray(xc), jnp.asarray(yc)
        if self._nuts is None:
            self._nuts = JittedNUTS(functools.partial(gp_model, prior=self.prior), (xc, yc), self.warmup, self.samples)
        s = self._nuts.samples(key, xc, yc)
        per_sample = jax.vmap(lambda ls, os_, noise: exact_nll(xc, yc, xq, yq, GPHyper(ls, os_, noise),
                                                                self.prior.kernel))(s["ls"], s["os"], s["noise"])
        log_mix = jax.scipy.special.logsumexp(-per_sample, axis=0) - jnp.log(per_sample.shape[0])
        return float(-log_mix.mean())
