"""Tests of the SCM prior, the GP-classification wrapper, mixtures and feature-count samplers.

Statistical tests use fixed seeds; chi-square tests reject at p < 1e-3 and rate tests allow 5 standard
errors, so a correct sampler fails with negligible probability while a wrong one (e.g. a biased class
count or a misapplied weight) fails reliably at these sample sizes.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import pfnjax.priors as P
from pfnjax.priors.gp import GPPrior
from pfnjax.priors.mix import GPClassificationPrior, MixturePrior, tabpfn_v1_mix, uniform_feature_count
from pfnjax.priors.rng import RandomStream
from pfnjax.priors.scm import SCMPrior
from pfnjax.priors.tabular import discretize_targets, merge_classes_absent_from_context, num_context_classes
from pfnjax.types import BatchShape

T, F = 64, 6  # rows and feature columns of the statistical tests


@functools.lru_cache(maxsize=None)
def _info_sampler(prior, seq_len: int, max_features: int):
    """jit(vmap) of ``sample_dataset_with_info`` over ``(key, num_features, sep)``."""
    fn = lambda k, nf, sep: prior.sample_dataset_with_info(k, seq_len, max_features, nf, sep)  # noqa: E731
    return jax.jit(jax.vmap(fn))


def draw_with_info(prior, n: int, seed: int, sep, num_features=None, seq_len: int = T, max_features: int = F):
    keys = jax.random.split(jax.random.key(seed), n)
    nf = np.full(n, max_features, np.int32) if num_features is None else np.asarray(num_features, np.int32)
    sep = np.broadcast_to(np.asarray(sep, np.int32), (n,))
    x, y, info = _info_sampler(prior, seq_len, max_features)(keys, jnp.asarray(nf), jnp.asarray(sep))
    return np.asarray(x), np.asarray(y), {k: np.asarray(v) for k, v in info.items()}, nf, sep


# The statistical tests use a narrow, shallow MLP: the class and feature post-processing under test does not
# depend on the MLP size, and 2000 default-size datasets would take seconds more. The contract tests at the
# bottom run the default configuration.
SMALL = dict(max_hidden_dim=32, max_num_layers=4)


@functools.lru_cache(maxsize=None)
def scm_draws():
    """2000 datasets of the (small) default SCM prior, num_features ~ U{1..F}, sep ~ U{1..T-1}."""
    rng = np.random.default_rng(0)
    nf, sep = rng.integers(1, F + 1, size=2000), rng.integers(1, T, size=2000)
    return draw_with_info(SCMPrior(**SMALL), 2000, seed=1, sep=sep, num_features=nf)


@functools.lru_cache(maxsize=None)
def scm_forced_draws():
    """600 datasets with C = 7, rank thresholds, 10% missing values and 30% categorical columns."""
    prior = SCMPrior(
        num_classes=7, rank_threshold_p=1.0, missing_rate=0.1, categorical_feature_p=1.0,
        categorical_column_p=0.3, mixed_causes_p=0.0, **SMALL,
    )
    nf = np.random.default_rng(6).integers(1, F + 1, size=600)
    return (prior, *draw_with_info(prior, 600, seed=7, sep=20, num_features=nf))


def class_count_probs(max_classes: int, two_class_p: float = 0.5) -> np.ndarray:
    probs = np.full(max_classes - 1, (1 - two_class_p) / (max_classes - 1))  # C = 2..max
    probs[0] += two_class_p
    return probs


# --------------------------------------------------------------------------- classes


def test_scm_nominal_class_count_distribution():
    _, _, info, _, _ = scm_draws()
    c = info["num_classes"]
    assert c.min() >= 2 and c.max() <= 10
    observed = np.bincount(c, minlength=11)[2:]
    assert abs(observed[0] / len(c) - (0.5 + 0.5 / 9)) < 0.05
    assert stats.chisquare(observed, class_count_probs(10) * len(c)).pvalue > 1e-3


def test_scm_realised_classes_labels_and_rank_mode():
    _, y, info, _, sep = scm_draws()
    assert y.dtype == np.int32 and y.min() >= 0 and y.max() < 10
    c_eff = info["num_context_classes"]
    np.testing.assert_array_equal(np.asarray(num_context_classes(jnp.asarray(y), jnp.asarray(sep))), c_eff)
    assert np.all(c_eff <= info["num_classes"]) and np.all(c_eff <= sep)
    # rank mode puts every nominal class in the context once it has >= 10 rows (continuous targets)
    rank = info["rank_mode"]
    assert 0.45 < rank.mean() < 0.55
    sel = rank & (sep >= 10)
    np.testing.assert_array_equal(c_eff[sel], info["num_classes"][sel])
    observed = np.bincount(c_eff[sel], minlength=11)[2:]
    assert stats.chisquare(observed, class_count_probs(10) * sel.sum()).pvalue > 1e-3
    # value mode can leave bins empty, which are merged away: on average fewer realised classes
    sel = ~rank & (sep >= 10)
    assert c_eff[sel].mean() < info["num_classes"][sel].mean()


def test_context_and_query_share_classes():
    _, y, info, _, sep = scm_draws()
    merged = 0
    for b in range(len(y)):
        ctx, qry = set(y[b, : sep[b]].tolist()), set(y[b, sep[b] :].tolist())
        assert qry <= ctx, (b, ctx, qry)
        assert ctx == set(range(info["num_context_classes"][b]))  # dense labels
        merged += info["num_context_classes"][b] < info["num_classes"][b]
    assert merged > 100  # the merge of classes absent from the context really was exercised


def test_scm_forced_class_count():
    _, _, y, info, _, sep = scm_forced_draws()
    assert np.all(info["num_classes"] == 7)
    for b in range(len(y)):
        assert set(y[b, : sep[b]].tolist()) == set(range(7))
        assert set(y[b, sep[b] :].tolist()) <= set(range(7))


def test_merge_classes_absent_from_context_by_hand():
    labels = jnp.array([0, 2, 2, 3, 1, 3, 0, 4])
    dense, c_eff = merge_classes_absent_from_context(labels, jnp.int32(4), 6)
    # context carries {0, 2, 3}: 1 merges into 0 and 4 into 3, then 0, 2, 3 -> 0, 1, 2
    np.testing.assert_array_equal(np.asarray(dense), [0, 1, 1, 2, 0, 2, 0, 2])
    assert int(c_eff) == 3
    dense, c_eff = merge_classes_absent_from_context(jnp.array([2, 0, 1, 2]), jnp.int32(1), 3)
    np.testing.assert_array_equal(np.asarray(dense), [0, 0, 0, 0])  # no present class below: merge upwards
    assert int(c_eff) == 1


def test_discretize_targets_is_an_ordinal_cut_with_a_random_permutation():
    y = jnp.linspace(-2.0, 2.0, 40)  # sorted, so labels must form C contiguous runs

    def one(k):
        return discretize_targets(RandomStream(k), y, jnp.int32(40), jnp.int32(3), 10, rank_threshold_p=1.0)

    labels, c_eff, _ = jax.vmap(one)(jax.random.split(jax.random.key(5), 600))
    labels = np.asarray(labels)
    assert np.all(np.asarray(c_eff) == 3)
    runs = 1 + np.sum(labels[:, 1:] != labels[:, :-1], axis=1)
    assert np.all(runs == 3)
    # the class of the smallest target is uniform over the 3 classes (random permutation)
    assert stats.chisquare(np.bincount(labels[:, 0], minlength=3)).pvalue > 1e-3


# --------------------------------------------------------------------------- features


def test_missing_and_categorical_rates():
    prior, x, y, info, nf, _ = scm_forced_draws()
    used = np.broadcast_to((np.arange(F)[None, :] < nf[:, None])[:, None, :], x.shape)  # [n, T, F]
    assert np.all(x[~used] == 0.0)  # unused columns are zero, never NaN
    assert y.dtype == np.int32  # labels are never NaN
    nan_used = np.isnan(x[used])
    assert abs(nan_used.mean() - 0.1) < 5 * np.sqrt(0.1 * 0.9 / nan_used.size), nan_used.mean()
    cat, used_cols = info["categorical"], used[:, 0, :]
    assert not cat[~used_cols].any()
    k = cat[used_cols]
    assert abs(k.mean() - 0.3) < 5 * np.sqrt(0.3 * 0.7 / k.size), k.mean()
    n_distinct = np.array([len(np.unique(c[~np.isnan(c)])) for c in np.moveaxis(x, 2, 1)[used_cols]])
    assert np.all(n_distinct[k] <= prior.max_categories)
    assert np.median(n_distinct[~k]) > prior.max_categories  # continuous columns stay continuous
    # observed values of each used column are z-scored
    obs = np.moveaxis(x, 2, 1)[used_cols]  # [columns, T]
    np.testing.assert_allclose(np.nanmean(obs, axis=1), 0.0, atol=1e-4)
    np.testing.assert_allclose(np.nanstd(obs, axis=1)[n_distinct > 1], 1.0, atol=1e-3)


def test_default_categorical_rate_and_no_nan():
    x, y, info, nf, _ = scm_draws()
    assert not np.isnan(x).any()  # missing_rate defaults to 0
    used = np.arange(F)[None, :] < nf[:, None]
    # marginal rate: P(dataset has categorical columns) * E[U(0, 1)] = 0.2 * 0.5 = 0.1; columns of one
    # dataset are correlated, so use the standard error of per-dataset fractions
    frac = (info["categorical"] & used).sum(1) / used.sum(1)
    assert abs(frac.mean() - 0.1) < 5 * frac.std() / np.sqrt(len(frac)), frac.mean()
    assert 0.75 < (frac == 0).mean() < 0.9  # 80% of datasets have none, plus those where no column was hit


# --------------------------------------------------------------------------- mixtures


@dataclasses.dataclass(frozen=True)
class ConstLabelPrior:
    """A test prior whose labels all equal ``label``, so the data reveal which component was used."""

    label: int
    task: str = dataclasses.field(default="classification", init=False)

    def sample_dataset(self, key, seq_len, max_features, num_features, single_eval_pos):
        x = jax.random.normal(key, (seq_len, max_features))
        return x, jnp.full((seq_len,), self.label, jnp.int32)


@dataclasses.dataclass(frozen=True)
class FloatLabelPrior:
    task: str = dataclasses.field(default="classification", init=False)

    def sample_dataset(self, key, seq_len, max_features, num_features, single_eval_pos):
        return jnp.zeros((seq_len, max_features)), jnp.zeros((seq_len,))


def test_mixture_weights_honoured():
    weights = (0.2, 0.5, 0.3)
    mix = MixturePrior(priors=tuple(ConstLabelPrior(i) for i in range(3)), weights=weights)
    assert mix.task == "classification"
    batch = P.make_batch_sampler(mix, BatchShape(3000, 4, 2))(jax.random.key(8))
    y = np.asarray(batch.y)
    assert np.all(y == y[:, :1])  # one component per dataset
    observed = np.bincount(y[:, 0], minlength=3)
    assert stats.chisquare(observed, np.array(weights) * len(y)).pvalue > 1e-3
    # sample_component reports the component that produced the data
    keys = jax.random.split(jax.random.key(9), 500)
    comp = jax.vmap(mix.sample_component)(keys)
    _, y2, comp2 = jax.vmap(lambda k: mix.sample_dataset_with_component(k, 4, 2, jnp.int32(2), jnp.int32(2)))(keys)
    np.testing.assert_array_equal(np.asarray(comp), np.asarray(comp2))
    np.testing.assert_array_equal(np.asarray(y2)[:, 0], np.asarray(comp))


def test_mixture_validation():
    with pytest.raises(ValueError, match="share a task"):
        MixturePrior(priors=(GPPrior(), ConstLabelPrior(0)), weights=(0.5, 0.5))
    with pytest.raises(ValueError, match="weights"):
        MixturePrior(priors=(ConstLabelPrior(0), ConstLabelPrior(1)), weights=(0.5,))
    with pytest.raises(ValueError, match="non-negative"):
        MixturePrior(priors=(ConstLabelPrior(0), ConstLabelPrior(1)), weights=(1.0, -0.1))
    bad = MixturePrior(priors=(ConstLabelPrior(0), FloatLabelPrior()), weights=(0.5, 0.5))
    with pytest.raises(ValueError, match="int32"):
        P.sample_batch(bad, jax.random.key(0), BatchShape(2, 4, 2))
    with pytest.raises(ValueError, match="0.73"):
        tabpfn_v1_mix(scm_weight=0.5)
    with pytest.raises(TypeError, match="unknown"):
        tabpfn_v1_mix(not_a_field=1)
    with pytest.raises(ValueError):
        GPClassificationPrior(base=SCMPrior())
    with pytest.raises(ValueError):
        SCMPrior(num_classes=11)
    with pytest.raises(ValueError):
        SCMPrior(activations=("gelu",))


def test_tabpfn_v1_mix_config():
    mix = P.get_prior("tabpfn_v1_mix", scm_weight=0.8, max_num_classes=4, max_hidden_dim=32)
    scm, gp = mix.priors
    assert isinstance(scm, SCMPrior) and isinstance(gp, GPClassificationPrior)
    assert mix.probabilities == pytest.approx((0.8, 0.2))
    assert scm.max_num_classes == gp.max_num_classes == 4 and scm.max_hidden_dim == 32


def test_loguniform_feature_count_matches_its_pmf():
    from pfnjax.priors.base import loguniform_feature_count

    sampler = loguniform_feature_count(2)
    counts = np.asarray(jax.vmap(lambda k: sampler(k, 20))(jax.random.split(jax.random.key(11), 20000)))
    assert counts.dtype == np.int32 and counts.min() == 2 and counts.max() == 20
    f = np.arange(2, 21)
    pmf = np.log((f + 1) / f) / np.log(21 / 2)  # P(floor(exp(U[log 2, log 21])) = f)
    assert stats.chisquare(np.bincount(counts, minlength=21)[2:], pmf * counts.size).pvalue > 1e-3
    with pytest.raises(ValueError):
        loguniform_feature_count(0)


def test_uniform_feature_count():
    sampler = uniform_feature_count(3)
    counts = np.asarray(jax.vmap(lambda k: sampler(k, 8))(jax.random.split(jax.random.key(10), 6000)))
    assert counts.dtype == np.int32 and counts.min() == 3 and counts.max() == 8
    assert stats.chisquare(np.bincount(counts, minlength=9)[3:]).pvalue > 1e-3
    with pytest.raises(ValueError):
        uniform_feature_count(0)
    with pytest.raises(ValueError):
        sampler(jax.random.key(0), 2)
