"""Per-context preprocessing (pfnjax.preprocessing) against independent references: numpy /
scikit-learn's StandardScaler, PowerTransformer and QuantileTransformer, and the soft-clip formula."""

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.preprocessing import PowerTransformer, QuantileTransformer, StandardScaler

from pfnjax.preprocessing import ContextScaler, TargetScaler, YeoJohnson, nan_mean_std, soft_clip, soft_clip_bounds


def _data(n=200, f=4, seed=0):
    rng = np.random.default_rng(seed)
    x = np.c_[rng.normal(3.0, 2.0, n), rng.exponential(1.0, n), rng.uniform(-5, 5, n), rng.normal(size=n) ** 3]
    return x[:, :f]


def test_nan_mean_std_ignores_nan_and_zeroes_all_nan_columns():
    x = np.array([[1.0, np.nan], [3.0, np.nan], [np.nan, np.nan], [5.0, np.nan]])
    mean, std = nan_mean_std(x)
    np.testing.assert_allclose(mean, [3.0, 0.0])
    np.testing.assert_allclose(std, [np.std([1.0, 3.0, 5.0]), 0.0])


def test_soft_clip_is_the_identity_inside_and_logarithmic_outside():
    lower, upper = np.array([-1.0]), np.array([2.0])
    x = np.array([[-0.5], [1.9], [10.0], [-10.0], [np.nan]])
    out = soft_clip(x, lower, upper)
    np.testing.assert_allclose(out[:2], x[:2])
    np.testing.assert_allclose(out[2], upper + np.log1p(10.0))  # min(x, upper + log1p|x|)
    np.testing.assert_allclose(out[3], lower - np.log1p(10.0))
    assert np.isnan(out[4, 0])


def test_soft_clip_bounds_use_inlier_statistics():
    rng = np.random.default_rng(1)
    x = np.r_[rng.normal(size=(500, 1)), [[1e3]]]  # one wild outlier
    lower, upper = soft_clip_bounds(x, 4.0)
    inliers = x[np.abs(x - x.mean()) <= 4 * x.std()]
    np.testing.assert_allclose(lower, inliers.mean() - 4 * inliers.std())
    np.testing.assert_allclose(upper, inliers.mean() + 4 * inliers.std())
    assert upper[0] < 10  # the outlier does not widen the bounds


def test_plain_scaler_equals_sklearn_standard_scaler_fitted_on_the_context():
    x = _data()
    ctx, qry = x[:120], x[120:]
    scaler = ContextScaler(outlier_sigma=None).fit(ctx)
    ref = StandardScaler().fit(ctx)
    np.testing.assert_allclose(scaler.transform_rows(qry), ref.transform(qry), rtol=1e-5, atol=1e-5)
    z = scaler.transform_rows(ctx)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-5)


@pytest.mark.parametrize("kind", ["power", "quantile"])
def test_transforms_follow_sklearn_on_the_z_scored_context(kind):
    x = _data()
    ctx, qry = x[:150], x[150:]
    scaler = ContextScaler(transform=kind, outlier_sigma=None).fit(ctx)
    z_ctx = StandardScaler().fit(ctx)
    if kind == "power":
        tr = PowerTransformer(method="yeo-johnson", standardize=True).fit(z_ctx.transform(ctx))
    else:
        tr = QuantileTransformer(output_distribution="normal", n_quantiles=150, subsample=None,
                                 random_state=0).fit(z_ctx.transform(ctx))
    t_ctx, t_qry = tr.transform(z_ctx.transform(ctx)), tr.transform(z_ctx.transform(qry))
    want = (t_qry - t_ctx.mean(0)) / t_ctx.std(0)  # step 4: z-score again on the context
    np.testing.assert_allclose(scaler.transform_rows(qry), want, rtol=1e-4, atol=1e-4)
    # the skewed exponential column becomes much more symmetric
    skew = lambda v: np.mean((v - v.mean()) ** 3) / v.std() ** 3  # noqa: E731
    assert abs(skew(scaler.transform_rows(ctx)[:, 1])) < 0.5 * abs(skew(ctx[:, 1]))


def test_vectorised_yeo_johnson_equals_sklearn_power_transformer_column_by_column():
    """Lambdas by one golden-section search over all columns vs scikit-learn's per-column scipy
    search: normal, right- and left-skewed, negative-only, lognormal, binary, heavy-tailed, with
    missing values, constant, and a shifted lognormal whose lambda is below -2."""
    rng = np.random.default_rng(3)
    n = 300
    x = np.column_stack([rng.normal(size=n), rng.exponential(size=n), 2 - rng.exponential(size=n) ** 2,
                         -rng.exponential(size=n) - 0.1, rng.lognormal(0, 1.5, n), rng.integers(0, 2, n),
                         rng.standard_t(2, n), np.r_[rng.gamma(2, size=n - 20), [np.nan] * 20], np.full(n, 0.7),
                         rng.lognormal(0, 1.5, n) / 10 - 0.2])
    sk = PowerTransformer(method="yeo-johnson", standardize=True).fit(x)
    ours = YeoJohnson().fit(x)
    np.testing.assert_allclose(ours.lambdas_, sk.lambdas_, rtol=1e-6, atol=1e-6)
    assert ours.lambdas_[-1] < -2 and ours.lambdas_[3] > 2 and ours.lambdas_[-2] == 1.0  # beyond [-2, 2]; constant
    rows = np.vstack([x, rng.normal(size=(10, x.shape[1]))])
    np.testing.assert_allclose(ours.transform(rows), sk.transform(rows), rtol=1e-5, atol=1e-5)
    assert np.array_equal(np.isnan(ours.transform(rows)), np.isnan(rows))


def test_outliers_are_soft_clipped_and_nan_imputed_with_the_context_mean():
    x = _data(f=2)
    scaler = ContextScaler().fit(x[:150])
    out = scaler.transform_rows(np.array([[1e4, np.nan], [x[5, 0], x[5, 1]]]))
    raw = (1e4 - x[:150, 0].mean()) / x[:150, 0].std()  # ~5000 std devs without clipping
    assert raw > 1000 and out[0, 0] < 4 + np.log1p(raw) + 1  # 4 sigma, then only logarithmic growth
    assert out[0, 1] == 0.0  # NaN -> the context mean, which is 0 after z-scoring
    assert np.isfinite(out).all()
    with pytest.raises(ValueError, match="expected 2 features"):
        scaler.transform_rows(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="transform"):
        ContextScaler(transform="log").fit(x)


def test_constant_column_maps_to_zero_instead_of_dividing_by_zero():
    x = np.c_[np.full(20, 7.0), np.arange(20.0)]
    out = ContextScaler().fit(x).transform_rows(x)
    np.testing.assert_array_equal(out[:, 0], 0.0)
    assert np.isfinite(out).all()


def test_whitened_components_are_sklearn_pca_whitening_of_the_scaled_context():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(4)
    base = rng.normal(size=(120, 3))
    x = np.column_stack([base, base[:, 0] + 0.01 * rng.normal(size=120)])  # two nearly collinear columns
    ctx, qry = x[:80], x[80:]
    plain = ContextScaler(outlier_sigma=None).fit(ctx)
    scaler = ContextScaler(outlier_sigma=None, whitened_components=4).fit(ctx)
    out_ctx, out_qry = scaler.transform_rows(ctx), scaler.transform_rows(qry)
    assert scaler.n_output_features == 8 and out_ctx.shape == (80, 8)
    np.testing.assert_allclose(out_ctx[:, :4], plain.transform_rows(ctx), atol=1e-6)  # the columns come first
    pca = PCA(whiten=True).fit(plain.transform_rows(ctx).astype(np.float64))
    ref_ctx, ref_qry = pca.transform(plain.transform_rows(ctx)), pca.transform(plain.transform_rows(qry))
    sign = np.sign(np.sum(out_ctx[:, 4:] * ref_ctx, axis=0))
    # sklearn whitens to unit n - 1 variance, the scaler to unit population variance
    np.testing.assert_allclose(out_ctx[:, 4:] * sign, ref_ctx * np.sqrt(80 / 79), atol=2e-4)
    np.testing.assert_allclose(out_qry[:, 4:] * sign, ref_qry * np.sqrt(80 / 79), atol=2e-4)
    np.testing.assert_allclose(np.cov(out_ctx[:, 4:].T, bias=True), np.eye(4), atol=1e-4)
    # the low-variance direction (column 3 minus column 0) is a unit-variance column of its own
    z = plain.transform_rows(ctx)
    assert np.abs(np.corrcoef(out_ctx[:, 7], z[:, 3] - z[:, 0])[0, 1]) > 0.95
    # each component's largest loading is positive, so a column permutation leaves them unchanged
    perm = [2, 0, 3, 1]
    permuted = ContextScaler(outlier_sigma=None, whitened_components=4).fit(ctx[:, perm])
    np.testing.assert_allclose(permuted.transform_rows(qry[:, perm])[:, 4:], out_qry[:, 4:], atol=1e-4)
    # exactly duplicated columns add no component; the cap is honoured
    dup = ContextScaler(whitened_components=5).fit(np.column_stack([base[:80], base[:80, :1]]))
    assert dup.n_output_features == 4 + 3
    assert ContextScaler(whitened_components=2).fit(ctx).n_output_features == 6
    with pytest.raises(ValueError, match="standardize"):
        ContextScaler(standardize=False, whitened_components=2).fit(ctx)


def test_target_scaler_round_trips_and_maps_borders():
    y = np.random.default_rng(2).normal(50.0, 8.0, 100)
    ts = TargetScaler().fit(y)
    np.testing.assert_allclose(ts.transform(y).mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(ts.transform(y).std(), 1.0, atol=1e-5)
    np.testing.assert_allclose(ts.inverse_transform(ts.transform(y)), y, rtol=1e-6)
    np.testing.assert_allclose(ts.borders_to_original(np.array([-1.0, 0.0, 2.0])),
                               [y.mean() - y.std(), y.mean(), y.mean() + 2 * y.std()])
    assert TargetScaler().fit(np.full(5, 3.0)).std_ == 1.0  # constant targets: no division by zero


def test_apply_in_row_chunks_matches_one_call_and_ignores_chunking():
    from pfnjax.preprocessing import apply_in_row_chunks

    x = np.random.default_rng(0).normal(size=(3, 37, 4)).astype(np.float32)
    whole = np.asarray(jnp.tanh(x).sum(-1)).transpose(1, 0)  # rows along axis 1 come out first
    for chunk in (1, 8, 37, 64):
        out = apply_in_row_chunks(lambda c: jnp.tanh(c).sum(-1).T, x, chunk, axis=1)
        np.testing.assert_allclose(out, whole, rtol=1e-6)
        assert out.dtype == np.float64 and out.shape == (37, 3)


def test_stratified_subsample_keeps_every_class():
    from pfnjax.preprocessing import stratified_subsample

    y = np.array([0] * 50 + [1] * 3 + [2])
    for seed in range(20):
        rows = stratified_subsample(np.random.default_rng(seed), len(y), 5, y)
        assert len(rows) == 5 and len(set(rows)) == 5 and set(y[rows]) == {0, 1, 2}
    rows = stratified_subsample(np.random.default_rng(0), 10, 4, None)
    assert np.all(np.diff(rows) > 0) and rows.max() < 10
