"""The baselines of ``bnn_vs_mcmc``: NUTS and mean-field SVI (``AutoNormal``) on the exact BNN of
the ``bnn_binary`` prior, with numpyro.

The model is the prior's own: i.i.d. ``N(0, weight_std²)`` weights and biases, one hidden layer,
``y ~ Bernoulli(sigmoid(network_logits(net, x)))`` with :func:`pfnjax.priors.bnn_binary.network_logits`,
the function the prior draws labels with. Both methods predict ``P(y = 1 | x)`` as the mean of
``sigmoid(f(x))`` over weight samples (the posterior's, or the fitted guide's).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from pfnjax.priors.bnn_binary import BinaryNetwork, BNNBinaryPrior, network_logits

SITES = ("w1", "b1", "w2", "b2")


def bnn_model(x, y, prior: BNNBinaryPrior):
    """numpyro model of one dataset: ``x f32[N, F]``, binary ``y i32[N]`` (or None to sample)."""
    import numpyro
    import numpyro.distributions as dist

    f, h, s = x.shape[1], prior.hidden, prior.weight_std
    w1 = numpyro.sample("w1", dist.Normal(0.0, s).expand([f, h]).to_event(2))
    b1 = numpyro.sample("b1", dist.Normal(0.0, s).expand([h]).to_event(1))
    w2 = numpyro.sample("w2", dist.Normal(0.0, s).expand([h]).to_event(1))
    b2 = numpyro.sample("b2", dist.Normal(0.0, s))
    logits = network_logits(BinaryNetwork(w1, b1, w2, b2), x, prior.activation)
    numpyro.sample("y", dist.Bernoulli(logits=logits), obs=y)


def predictive_scores(samples: dict, x_q, y_q, activation: str) -> tuple[float, float]:
    """``(NLL, accuracy)`` of the mean of ``sigmoid(f(x_q))`` over the weight samples."""
    logits = jax.vmap(lambda *w: network_logits(BinaryNetwork(*w), x_q, activation))(*(samples[k] for k in SITES))
    p1 = jnp.clip(jnp.mean(jax.nn.sigmoid(logits), axis=0), 1e-7, 1 - 1e-7)
    y = jnp.asarray(y_q)
    nll = -jnp.mean(jnp.where(y == 1, jnp.log(p1), jnp.log1p(-p1)))
    return float(nll), float(jnp.mean((p1 > 0.5) == (y == 1)))


class NUTSBaseline:
    """NUTS with ``warmup`` + ``samples`` iterations (:class:`nuts.JittedNUTS`, compiled once per shape)."""

    def __init__(self, prior: BNNBinaryPrior, warmup: int = 512, samples: int = 512):
        self.prior, self.warmup, self.samples = prior, warmup, samples
        self._nuts = None

    def __call__(self, key, xc, yc, xq, yq) -> tuple[float, float]:
        from nuts import JittedNUTS

        xc, yc = jnp.asarray(xc), jnp.asarray(yc)
        if self._nuts is None:
            self._nuts = JittedNUTS(functools.partial(bnn_model, prior=self.prior), (xc, yc), self.warmup, self.samples)
        return predictive_scores(self._nuts.samples(key, xc, yc), xq, yq, self.prior.activation)


class SVIBaseline:
    """Mean-field Gaussian SVI (``AutoNormal``, Adam, ``steps`` ELBO steps), then ``draws`` guide samples.

    The optimisation loop and the predictive are one jitted function, compiled once per data shape.
    """

    def __init__(self, prior: BNNBinaryPrior, steps: int = 1000, lr: float = 0.01, draws: int = 256):
        from numpyro.infer import SVI, Trace_ELBO
        from numpyro.infer.autoguide import AutoNormal
        from numpyro.optim import Adam

        self.prior, self.steps, self.draws = prior, steps, draws
        model = functools.partial(bnn_model, prior=prior)
        self.guide = AutoNormal(model)
        self.svi = SVI(model, self.guide, Adam(lr), Trace_ELBO())
        self._fit = jax.jit(self._fit_and_sample)

    def _fit_and_sample(self, key, xc, yc):
        k_init, k_draw = jax.random.split(key)
        state = self.svi.init(k_init, xc, yc)
        state = jax.lax.fori_loop(0, self.steps, lambda _, s: self.svi.update(s, xc, yc)[0], state)
        params = self.svi.get_params(state)
        return self.guide.sample_posterior(k_draw, params, sample_shape=(self.draws,))

    def __call__(self, key, xc, yc, xq, yq) -> tuple[float, float]:
        xc, yc = jnp.asarray(xc), jnp.asarray(yc)
        if not self.guide.prototype_trace:  # set the guide up eagerly: under jit it would keep tracers
            self.svi.init(jax.random.key(0), xc, yc)
        samples = self._fit(key, xc, yc)
        return predictive_scores(samples, xq, yq, self.prior.activation)


def numpy_scores(values: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Split ``[(nll, accuracy), ...]`` into two arrays."""
    arr = np.array(values, np.float64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]
