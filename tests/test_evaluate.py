"""Held-out evaluation with fewer used features than F_max: each dataset is scored from its used
columns only, and the numbers equal a dataset-by-dataset computation."""

import jax
import numpy as np
from scipy import stats

from pfnjax.evaluators import evaluate_against_oracle, held_out_datasets
from pfnjax.model import ClassicConfig, ModelIO
from pfnjax.predict import PFN
from pfnjax.priors import get_prior
from pfnjax.priors.mix import uniform_feature_count


def test_variable_feature_counts_are_scored_from_the_used_columns():
    prior = get_prior("gp", noise=0.01)
    pfn = PFN.init(ClassicConfig(d_model=32, num_layers=2, num_heads=2), ModelIO(4, 40), seed=0)
    key, sampler = jax.random.key(7), uniform_feature_count(1)
    rows = evaluate_against_oracle(pfn, prior, key, context_sizes=(3, 12), num_datasets=12, num_queries=6,
                                   num_features_sampler=sampler)
    data = held_out_datasets(prior, key, (3, 12), 12, 6, pfn.max_features, num_features_sampler=sampler)
    assert len(set(data.num_features.tolist())) > 1  # the case under test: mixed feature counts
    hyper = prior.hyper()
    for row, n in zip(rows, (3, 12)):
        pfn_nll, exact_nll = [], []
        for b in range(12):
            f = int(data.num_features[b])
            assert not data.x[b, :, f:].any()  # unused columns are zero
            x_c, y_c = data.x[b, :n, :f], data.y[b, :n]
            x_q, y_q = data.x[b, -6:, :f], data.y[b, -6:]
            pfn_nll.append(-np.asarray(pfn.predict(x_c, y_c, x_q).log_prob(y_q)).mean())
            # independent oracle: the RBF GP predictive written out in numpy (float64)
            d2 = lambda a, c: ((a[:, None, :] - c[None, :, :]) ** 2).sum(-1)  # noqa: E731
            k = lambda a, c: hyper.outputscale * np.exp(-0.5 * d2(a, c) / hyper.lengthscale**2)  # noqa: E731
            x_c64, x_q64 = x_c.astype(np.float64), x_q.astype(np.float64)
            kcc = k(x_c64, x_c64) + hyper.noise * np.eye(n)
            kqc = k(x_q64, x_c64)
            mean = kqc @ np.linalg.solve(kcc, y_c)
            var = hyper.outputscale - np.einsum("ij,ji->i", kqc, np.linalg.solve(kcc, kqc.T)) + hyper.noise
            exact_nll.append(-stats.norm.logpdf(y_q, mean, np.sqrt(var)).mean())
        np.testing.assert_allclose(row.pfn_nll, np.mean(pfn_nll), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(row.exact_nll, np.mean(exact_nll), rtol=1e-3, atol=1e-3)
