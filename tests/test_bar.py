"""Tests for the Riemann ("bar") distribution against independent numerical references.

References: a numpy/scipy density written from the definition (``scipy.stats.halfnorm``), and
``scipy.integrate.quad`` over each smooth piece of the density. Most checks run in float64
(``jax.enable_x64``) so the tolerances can be tight; float32 behaviour is tested separately.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

from pfnjax.distributions import bar

K = 12


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def make_case(seed: int, k: int = K, scale: float = 1.5):
    """Irregular borders (non-uniform widths) and random logits, in float64 numpy."""
    rng = np.random.default_rng(seed)
    borders = np.cumsum(rng.uniform(0.1, 1.0, k + 1)) - 3.0
    logits = rng.normal(size=k) * scale
    return borders, logits


def ref_pdf(borders, logits, y, full_support):
    """The density written directly from its definition, independent of the module."""
    b = np.asarray(borders, np.float64)
    p = special.softmax(np.asarray(logits, np.float64))
    w = np.diff(b)
    k = len(w)
    y = np.atleast_1d(np.asarray(y, np.float64))
    out = np.zeros_like(y)
    med = stats.halfnorm.ppf(0.5)
    for j in range(k):
        if full_support and j == 0:
            m = y < b[1]
            out[m] = p[0] * stats.halfnorm.pdf(b[1] - y[m], scale=w[0] / med)
        elif full_support and j == k - 1:
            m = y >= b[k - 1]
            out[m] = p[-1] * stats.halfnorm.pdf(y[m] - b[k - 1], scale=w[-1] / med)
        else:
            m = (y >= b[j]) & ((y < b[j + 1]) | ((j == k - 1) & (y == b[j + 1])))
            out[m] = p[j] / w[j]
    return out


def pieces(borders, full_support):
    b = list(np.asarray(borders, np.float64))
    edges = [-np.inf, *b[1:-1], np.inf] if full_support else b
    return list(zip(edges[:-1], edges[1:]))


def integrate_pieces(fn, borders, full_support, lo=-np.inf, hi=np.inf):
    """``int_lo^hi fn`` split at every border so quad only sees smooth integrands."""
    total = 0.0
    for a, c in pieces(borders, full_support):
        a2, c2 = max(a, lo), min(c, hi)
        if a2 >= c2:
            continue
        val, _ = integrate.quad(fn, a2, c2, epsabs=1e-13, epsrel=1e-11, limit=200)
        total += val
    return total


def scalar_fns(borders, logits, full_support):
    """Jitted scalar pdf / log_prob closures for quad (call inside x64)."""
    b, lg = jnp.asarray(borders), jnp.asarray(logits)
    pdf = jax.jit(lambda y: bar.pdf(b, lg, y, full_support))
    lp = jax.jit(lambda y: bar.log_prob(b, lg, y, full_support))
    return (lambda y: float(pdf(y))), (lambda y: float(lp(y)))


def tail_scales(borders):
    w = np.diff(borders)
    med = stats.halfnorm.ppf(0.5)
    return w[0] / med, w[-1] / med


FS = [True, False]


# ----------------------------------------------------------------------------- density


@pytest.mark.parametrize("full_support", FS)
@pytest.mark.parametrize("seed,k", [(0, K), (1, K), (2, 2), (3, 3)])
def test_pdf_matches_reference_and_integrates_to_one(x64, full_support, seed, k):
    if not full_support and k == 2 and seed == 2:
        k = 1  # a single uniform bucket is legal without full support
    borders, logits = make_case(seed, k)
    s_l, s_r = tail_scales(borders)
    ys = np.concatenate(
        [
            np.linspace(borders[0] - 6 * s_l, borders[-1] + 6 * s_r, 801),
            borders,  # on the borders: the right-bucket convention
            np.nextafter(borders, -np.inf),
        ]
    )
    ours = np.asarray(bar.pdf(jnp.asarray(borders), jnp.asarray(logits), jnp.asarray(ys), full_support))
    np.testing.assert_allclose(ours, ref_pdf(borders, logits, ys, full_support), rtol=1e-12, atol=1e-300)
    pdf, _ = scalar_fns(borders, logits, full_support)
    assert integrate_pieces(pdf, borders, full_support) == pytest.approx(1.0, abs=1e-9)


def test_half_of_edge_mass_stays_inside_edge_bucket(x64):
    borders, logits = make_case(4)
    p = special.softmax(logits)
    pdf, _ = scalar_fns(borders, logits, True)
    left_in = integrate.quad(pdf, borders[0], borders[1])[0]
    right_in = integrate.quad(pdf, borders[-2], borders[-1])[0]
    assert left_in == pytest.approx(p[0] / 2, rel=1e-9)
    assert right_in == pytest.approx(p[-1] / 2, rel=1e-9)


@pytest.mark.parametrize("full_support", FS)
def test_cdf_is_integral_of_pdf(x64, full_support):
    borders, logits = make_case(5)
    s_l, s_r = tail_scales(borders)
    pdf, _ = scalar_fns(borders, logits, full_support)
    points = [
        borders[0] - 3 * s_l,
        borders[0] - 0.1,
        0.5 * (borders[0] + borders[1]),
        borders[1],
        borders[4],
        0.3 * borders[6] + 0.7 * borders[7],
        borders[-2],
        borders[-1],
        borders[-1] + 0.2,
        borders[-1] + 4 * s_r,
    ]
    b, lg = jnp.asarray(borders), jnp.asarray(logits)
    ours = np.asarray(bar.cdf(b, lg, jnp.asarray(points), full_support))
    ref = [integrate_pieces(pdf, borders, full_support, hi=y) for y in points]
    np.testing.assert_allclose(ours, ref, atol=1e-10)
    assert np.all(np.diff(ours) >= 0)


@pytest.mark.parametrize("full_support", FS)
def test_quantile_cdf_roundtrip(x64, full_support):
    borders, logits = make_case(6)
    b, lg = jnp.asarray(borders), jnp.asarray(logits)
    qs = np.array([1e-4, 0.01, 0.3, 0.5, 0.9, 0.9999])
    y_q = bar.quantile(b, lg, qs, full_support)
    np.testing.assert_allclose(np.asarray(bar.cdf(b, lg, y_q, full_support)), qs, rtol=1e-10, atol=1e-13)
    if full_support:  # the extreme levels must land in the half-normal tails, beyond the borders
        assert float(y_q[0]) < borders[0] and float(y_q[-1]) > borders[-1]
    s_l, s_r = tail_scales(borders)
    lo, hi = (borders[0] - 4 * s_l, borders[-1] + 4 * s_r) if full_support else (borders[0], borders[-1])
    ys = np.linspace(lo, hi, 97)[1:-1]
    np.testing.assert_allclose(np.asarray(bar.quantile(b, lg, bar.cdf(b, lg, ys, full_support), full_support)), ys, atol=1e-9)
    assert float(bar.median(b, lg, full_support)) == pytest.approx(float(bar.quantile(b, lg, 0.5, full_support)))


def test_quantile_float32_tails():
    borders, logits = make_case(7)
    b, lg = jnp.asarray(borders, jnp.float32), jnp.asarray(logits, jnp.float32)
    qs = jnp.array([1e-4, 0.01, 0.3, 0.5, 0.9, 0.9999], jnp.float32)
    y_q = bar.quantile(b, lg, qs)
    assert y_q.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(y_q)))
    np.testing.assert_allclose(np.asarray(bar.cdf(b, lg, y_q)), np.asarray(qs), atol=3e-6)
    assert float(y_q[0]) < borders[0] and float(y_q[-1]) > borders[-1]


def test_quantile_shape_convention():
    borders, _ = make_case(8)
    logits = jax.random.normal(jax.random.key(0), (3, 4, K))
    b = jnp.asarray(borders, jnp.float32)
    assert bar.quantile(b, logits, 0.3).shape == (3, 4)
    assert bar.quantile(b, logits, [0.05, 0.95]).shape == (3, 4, 2)
    assert bar.quantile(b, logits, jnp.full((2, 5), 0.5)).shape == (3, 4, 2, 5)
    lo_hi = bar.quantile(b, logits, [0.05, 0.95])
    np.testing.assert_allclose(lo_hi[..., 0], bar.quantile(b, logits, 0.05), rtol=1e-6)
    np.testing.assert_allclose(lo_hi[..., 1], bar.quantile(b, logits, 0.95), rtol=1e-6)
    assert bool(jnp.all(lo_hi[..., 0] < lo_hi[..., 1]))


# ----------------------------------------------------------------------------- functionals


@pytest.mark.parametrize("full_support", FS)
@pytest.mark.parametrize("seed", [9, 10])
def test_moments_and_entropy_match_integrals(x64, full_support, seed):
    borders, logits = make_case(seed)
    b, lg = jnp.asarray(borders), jnp.asarray(logits)
    pdf, lp = scalar_fns(borders, logits, full_support)
    m = integrate_pieces(lambda y: y * pdf(y), borders, full_support)
    v = integrate_pieces(lambda y: (y - m) ** 2 * pdf(y), borders, full_support)
    h = integrate_pieces(lambda y: -np.exp(lp(y)) * lp(y), borders, full_support)
    assert float(bar.mean(b, lg, full_support)) == pytest.approx(m, abs=1e-9)
    assert float(bar.variance(b, lg, full_support)) == pytest.approx(v, rel=1e-9)
    assert float(bar.entropy(b, lg, full_support)) == pytest.approx(h, abs=1e-9)


@pytest.mark.parametrize("full_support", FS)
def test_ei_and_pi_match_integrals(x64, full_support):
    borders, logits = make_case(11)
    b, lg = jnp.asarray(borders), jnp.asarray(logits)
    s_l, s_r = tail_scales(borders)
    pdf, _ = scalar_fns(borders, logits, full_support)
    fs = [
        0.4 * borders[5] + 0.6 * borders[6],  # inside the range
        borders[3],  # on a border
        0.5 * (borders[0] + borders[1]),  # inside the left tail / edge bucket
        borders[0] - 0.5 * s_l,  # in the left tail beyond the borders
        borders[0] - 8 * s_l,  # below (practically) everything
        0.5 * (borders[-2] + borders[-1]),  # inside the right tail / edge bucket
        borders[-1] + 1.5 * s_r,  # in the right tail beyond the borders
    ]
    for f in fs:
        ei_max = integrate_pieces(lambda y: (y - f) * pdf(y), borders, full_support, lo=f)
        ei_min = integrate_pieces(lambda y: (f - y) * pdf(y), borders, full_support, hi=f)
        pi_max = integrate_pieces(pdf, borders, full_support, lo=f)
        assert float(bar.expected_improvement(b, lg, f, True, full_support)) == pytest.approx(ei_max, abs=1e-10), f
        assert float(bar.expected_improvement(b, lg, f, False, full_support)) == pytest.approx(ei_min, abs=1e-10), f
        assert float(bar.probability_of_improvement(b, lg, f, True, full_support)) == pytest.approx(pi_max, abs=1e-10)
        assert float(bar.probability_of_improvement(b, lg, f, False, full_support)) == pytest.approx(1 - pi_max, abs=1e-10)
        assert float(bar.probability_of_improvement(b, lg, f, True, full_support)) == pytest.approx(
            1 - float(bar.cdf(b, lg, f, full_support)), abs=1e-12
        )
    # Far below everything EI is the mean minus f*.
    f = borders[0] - 100 * s_l
    assert float(bar.expected_improvement(b, lg, f, True, full_support)) == pytest.approx(
        float(bar.mean(b, lg, full_support)) - f, rel=1e-12
    )


@pytest.mark.parametrize("full_support", FS)
@pytest.mark.parametrize("seed", [12, 13, 14])
def test_mode_is_argmax_of_pdf(x64, full_support, seed):
    borders, logits = make_case(seed)
    b, lg = jnp.asarray(borders), jnp.asarray(logits)
    s_l, s_r = tail_scales(borders)
    grid = np.linspace(borders[0] - 3 * s_l, borders[-1] + 3 * s_r, 20001)
    dens = ref_pdf(borders, logits, grid, full_support)
    md = float(bar.mode(b, lg, full_support))
    # The left tail's peak is a left limit at its anchor; take the sup of both sides.
    peak = max(ref_pdf(borders, logits, [md, np.nextafter(md, -np.inf)], full_support))
    assert peak >= dens.max() * (1 - 1e-6)
    g = grid[np.argmax(dens)]
    j = min(np.searchsorted(borders, g, side="right") - 1, K - 1)
    assert abs(md - g) <= (borders[min(j + 1, K)] - borders[max(j, 0)]) + 1e-12


def test_mode_explicit_cases(x64):
    borders, _ = make_case(15)
    b = jnp.asarray(borders)
    base = jnp.zeros(K)
    assert float(bar.mode(b, base.at[0].set(8.0))) == pytest.approx(borders[1])  # left tail anchor
    assert float(bar.mode(b, base.at[-1].set(8.0))) == pytest.approx(borders[-2])  # right tail anchor
    assert float(bar.mode(b, base.at[5].set(8.0))) == pytest.approx(0.5 * (borders[5] + borders[6]))
    assert float(bar.mode(b, base.at[0].set(8.0), full_support=False)) == pytest.approx(0.5 * (borders[0] + borders[1]))
    # Equal widths: the tail's peak density is p_0 sqrt(2/pi) / s = 0.538 p_0 / w, so 1.5x the mass of
    # an inner bucket is not enough to win, 2.5x is.
    even = jnp.arange(K + 1.0)
    assert float(bar.mode(even, base.at[0].set(np.log(1.5)).at[3].set(0.01))) == pytest.approx(3.5)
    assert float(bar.mode(even, base.at[0].set(np.log(2.5)).at[3].set(0.01))) == pytest.approx(1.0)
    assert float(bar.mode(even, base.at[-1].set(np.log(1.5)).at[3].set(0.01))) == pytest.approx(3.5)
    assert float(bar.mode(even, base.at[-1].set(np.log(2.5)).at[3].set(0.01))) == pytest.approx(K - 1.0)


def test_ucb(x64):
    borders, logits = make_case(16)
    b, lg = jnp.asarray(borders), jnp.asarray(logits)
    assert float(bar.ucb(b, lg)) == pytest.approx(float(bar.quantile(b, lg, stats.norm.cdf(1.0))))
    assert float(bar.ucb(b, lg, 0.9, maximize=False)) == pytest.approx(float(bar.quantile(b, lg, 0.1)))
    assert float(bar.ucb(b, lg, 0.99)) > float(bar.ucb(b, lg, 0.9)) > float(bar.median(b, lg))


# ----------------------------------------------------------------------------- sampling


def test_sample_ks_and_tail_mass(x64):
    borders, logits = make_case(17, scale=1.0)
    logits[0] += 1.0  # give the tails visible mass
    logits[-1] += 1.0
    b, lg = jnp.asarray(borders), jnp.asarray(logits)
    n = 20000
    s = np.asarray(bar.sample(jax.random.key(3), b, lg, (n,)))
    assert s.shape == (n,) and np.all(np.isfinite(s))
    cdf = jax.jit(lambda y: bar.cdf(b, lg, y))
    assert stats.kstest(s, lambda y: np.asarray(cdf(jnp.asarray(y)))).pvalue > 1e-3
    p = special.softmax(logits)
    for frac, mass in [
        (np.mean(s < borders[1]), p[0]),
        (np.mean(s >= borders[-2]), p[-1]),
        (np.mean(s < borders[0]), p[0] / 2),  # half the edge mass lies beyond the outer border
        (np.mean(s > borders[-1]), p[-1] / 2),
    ]:
        assert abs(frac - mass) < 4.5 * np.sqrt(mass * (1 - mass) / n)


def test_sample_without_full_support_and_batch_shape():
    borders, _ = make_case(18)
    b = jnp.asarray(borders, jnp.float32)
    logits = jax.random.normal(jax.random.key(1), (3, 4, K))
    s = bar.sample(jax.random.key(2), b, logits, (500,), full_support=False)
    assert s.shape == (500, 3, 4)
    assert float(s.min()) >= borders[0] - 1e-5 and float(s.max()) <= borders[-1] + 1e-5
    one = np.asarray(s[:, 1, 2])
    cdf = lambda y: np.asarray(bar.cdf(b, logits[1, 2], jnp.asarray(y, jnp.float32), full_support=False))
    assert stats.kstest(one, cdf).pvalue > 1e-3


# ----------------------------------------------------------------------------- ensembles, gradients


def test_average_distributions(x64):
    borders, _ = make_case(19)
    b = jnp.asarray(borders)
    stack = jax.random.normal(jax.random.key(4), (5, 3, K), jnp.float64) * 2
    avg = bar.average_distributions(stack, axis=0)
    assert avg.shape == (3, K)
    ys = jnp.linspace(borders[0] - 2, borders[-1] + 2, 301)
    mix = jnp.mean(jnp.stack([bar.pdf(b, stack[i][:, None, :], ys[None, :]) for i in range(5)]), 0)
    np.testing.assert_allclose(bar.pdf(b, avg[:, None, :], ys[None, :]), mix, rtol=1e-12)
    np.testing.assert_allclose(bar.average_distributions(jnp.swapaxes(stack, 0, 1), axis=1), avg, rtol=1e-12)
    np.testing.assert_allclose(jnp.exp(avg).sum(-1), 1.0, rtol=1e-12)


def test_log_prob_gradient_matches_finite_differences(x64):
    borders, logits = make_case(20)
    b = jnp.asarray(borders)
    s_l, _ = tail_scales(borders)
    for y, bucket in [(0.5 * (borders[4] + borders[5]), 4), (borders[0] - 2 * s_l, 0)]:
        g = np.asarray(jax.grad(lambda lg: bar.log_prob(b, lg, y))(jnp.asarray(logits)))
        assert np.all(np.isfinite(g))
        # Reference: the same loss built from jax.nn.softmax and the numpy density, central differences.
        def ref(lg):
            p = np.asarray(jax.nn.softmax(jnp.asarray(lg)))
            return np.log(ref_pdf(borders, np.log(p), [y], True)[0])

        eps = 1e-6
        fd = np.array([(ref(logits + eps * e) - ref(logits - eps * e)) / (2 * eps) for e in np.eye(K)])
        np.testing.assert_allclose(g, fd, atol=1e-7)
        np.testing.assert_allclose(g, np.eye(K)[bucket] - special.softmax(logits), atol=1e-12)


def test_log_prob_far_outside_float32():
    borders, logits = make_case(21)
    b, lg = jnp.asarray(borders, jnp.float32), jnp.asarray(logits, jnp.float32)
    far = jnp.array([borders[0] - 1e3, borders[0] - 50.0, borders[-1] + 50.0, borders[-1] + 1e3], jnp.float32)
    lp = bar.log_prob(b, lg, far)
    assert lp.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(lp)))
    g = jax.grad(lambda l: bar.log_prob(b, l, far).sum())(lg)
    assert bool(jnp.all(jnp.isfinite(g)))
    assert bool(jnp.all(bar.log_prob(b, lg, far, full_support=False) == -jnp.inf))
    assert bool(jnp.all(bar.pdf(b, lg, far, full_support=False) == 0))
    np.testing.assert_array_equal(bar.cdf(b, lg, far, full_support=False), [0, 0, 1, 1])
    # Exactly on the outer borders is inside the support.
    assert bool(jnp.all(jnp.isfinite(bar.log_prob(b, lg, b[jnp.array([0, -1])], full_support=False))))
    assert bool(jnp.isnan(bar.log_prob(b, lg, jnp.nan))) and bool(jnp.isnan(bar.cdf(b, lg, jnp.nan)))


# ----------------------------------------------------------------------------- borders


def test_borders_from_samples_equal_mass():
    y = np.random.default_rng(0).standard_normal(100_000)
    borders = bar.borders_from_samples(y, num_buckets=50)
    assert borders.shape == (51,) and borders.dtype == jnp.float32
    bn = np.asarray(borders)
    assert bn[0] == np.float32(y.min()) and bn[-1] == np.float32(y.max())
    counts = np.histogram(y, bn.astype(np.float64))[0]
    np.testing.assert_allclose(counts, len(y) / 50, rtol=0.01)
    bar.validate_borders(bn)


def test_borders_from_samples_merges_duplicates():
    rng = np.random.default_rng(1)
    y = np.concatenate([np.zeros(60_000), rng.integers(0, 5, 20_000).astype(float), rng.standard_normal(20_000)])
    borders = np.asarray(bar.borders_from_samples(y, num_buckets=100))
    assert len(borders) < 101
    assert np.all(np.diff(borders) > 0)
    assert 0.0 in borders
    # Two distinct values: 11 quantiles collapse to {1, 1.5 (interpolated median), 2}.
    b2 = np.asarray(bar.borders_from_samples(np.repeat([1.0, 2.0], 10), num_buckets=10))
    np.testing.assert_array_equal(b2, [1.0, 1.5, 2.0])


@pytest.mark.parametrize(
    "y",
    [np.array([0.0, np.nan, 1.0]), np.array([0.0, np.inf, 1.0]), np.full(10, 3.0), np.array([])],
)
def test_borders_from_samples_errors(y):
    with pytest.raises(ValueError):
        bar.borders_from_samples(y)


# ----------------------------------------------------------------------------- batching, jit, API


def test_vectorisation_matches_loop():
    borders, _ = make_case(22)
    b = jnp.asarray(borders, jnp.float32)
    k1, k2, k3 = jax.random.split(jax.random.key(5), 3)
    logits = jax.random.normal(k1, (3, 4, K)) * 2
    y = jax.random.uniform(k2, (3, 4), minval=borders[0] - 2, maxval=borders[-1] + 2)
    f = jax.random.uniform(k3, (3, 4), minval=borders[0], maxval=borders[-1])
    batched = {
        "log_prob": bar.log_prob(b, logits, y),
        "cdf": bar.cdf(b, logits, y),
        "q": bar.quantile(b, logits, [0.1, 0.7]),
        "mean": bar.mean(b, logits),
        "var": bar.variance(b, logits),
        "ent": bar.entropy(b, logits),
        "mode": bar.mode(b, logits),
        "median": bar.median(b, logits),
        "ei": bar.expected_improvement(b, logits, f),
        "pi": bar.probability_of_improvement(b, logits, f),
    }
    for i in range(3):
        for j in range(4):
            lg = logits[i, j]
            single = {
                "log_prob": bar.log_prob(b, lg, y[i, j]),
                "cdf": bar.cdf(b, lg, y[i, j]),
                "q": bar.quantile(b, lg, [0.1, 0.7]),
                "mean": bar.mean(b, lg),
                "var": bar.variance(b, lg),
                "ent": bar.entropy(b, lg),
                "mode": bar.mode(b, lg),
                "median": bar.median(b, lg),
                "ei": bar.expected_improvement(b, lg, f[i, j]),
                "pi": bar.probability_of_improvement(b, lg, f[i, j]),
            }
            for name, val in single.items():
                np.testing.assert_allclose(batched[name][i, j], val, rtol=1e-5, atol=1e-6, err_msg=name)
    # A scalar y broadcasts against the batch.
    assert bar.log_prob(b, logits, 0.0).shape == (3, 4)


def test_jit_and_dataclass():
    borders, logits = make_case(23)
    dist = bar.BarDistribution(jnp.asarray(borders, jnp.float32), jnp.asarray(logits, jnp.float32)).validate()
    assert len(jax.tree_util.tree_leaves(dist)) == 2  # full_support is static
    jm = jax.jit(lambda d: (d.mean(), d.quantile(jnp.array([0.05, 0.95])), d.log_prob(0.3), d.ei(0.5), d.pi(0.5)))(dist)
    assert float(jm[0]) == pytest.approx(float(bar.mean(dist.borders, dist.logits)), rel=1e-6)
    assert jm[1].shape == (2,)
    assert float(jm[2]) == pytest.approx(float(bar.log_prob(dist.borders, dist.logits, 0.3)), rel=1e-6)
    assert float(jm[3]) == pytest.approx(float(bar.expected_improvement(dist.borders, dist.logits, 0.5)), rel=1e-6)
    no_tail = dist.replace(full_support=False)
    assert float(no_tail.log_prob(borders[-1] + 1.0)) == -np.inf
    assert dist.sample(jax.random.key(0), (7,)).shape == (7,)
    for m in ("median", "mode", "variance", "stddev", "entropy", "ucb", "probs"):
        assert np.all(np.isfinite(np.asarray(getattr(dist, m)())))
    assert dist.num_buckets == K and dist.batch_shape == ()


@pytest.mark.parametrize(
    "borders,match",
    [
        ([0.0, 1.0, 1.0, 2.0], "strictly increasing"),
        ([0.0, 2.0, 1.0], "strictly increasing"),
        ([0.0, np.nan, 1.0], "NaN"),
        ([0.0], "at least 2"),
        ([[0.0, 1.0]], "1-D"),
    ],
)
def test_validate_borders_errors(borders, match):
    with pytest.raises(ValueError, match=match):
        bar.validate_borders(borders)


def test_shape_errors():
    b = jnp.linspace(0.0, 1.0, K + 1)
    bad = jnp.zeros((3, K + 1))
    with pytest.raises(ValueError, match=r"\(3, 13\)"):
        bar.validate_logits(b, bad)
    for fn in (bar.log_prob, bar.cdf):
        with pytest.raises(ValueError, match="len\\(borders\\) - 1"):
            fn(b, bad, 0.5)
    with pytest.raises(ValueError, match="len\\(borders\\) - 1"):
        jax.jit(bar.mean)(b, bad)
    with pytest.raises(ValueError, match="full_support"):
        bar.mean(jnp.array([0.0, 1.0]), jnp.zeros(1))
    assert float(bar.mean(jnp.array([0.0, 1.0]), jnp.zeros(1), full_support=False)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="NaN"):
        bar.validate_logits(b, jnp.full(K, jnp.nan))
