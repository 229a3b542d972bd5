"""Inference with a cached context: cached == uncached, re-querying, flat memory in the number of
queries, batch-independent results, pickling, and shipped pretrained models."""

import configparser
import copy
import dataclasses
import fnmatch
import pickle
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pfnjax
from pfnjax.distributions import bar
from pfnjax.heads import BarHead, ClassHead
from pfnjax.model import ClassicConfig, ModelIO
from pfnjax.predict import PFN, PRETRAINED_DIR, _decode_jit, _full_forward_jit

S = jax.ShapeDtypeStruct

# These tests compare two computations of the same logits (cached vs full, chunked vs whole,
# batched vs single): see conftest.full_precision.
pytestmark = pytest.mark.usefixtures("full_precision")


def _pfn(task="regression", max_features=4, num_outputs=None, d_model=32, seed=0):
    num_outputs = num_outputs or (30 if task == "regression" else 6)
    classification = task == "classification"
    cfg = ClassicConfig(d_model=d_model, num_layers=2, num_heads=2)
    io = ModelIO(max_features, num_outputs, y_vocab=num_outputs if classification else 0)
    pfn = PFN.init(cfg, io, ClassHead(num_outputs) if classification else None, seed=seed)
    # perturb the zero-initialised output projections so every layer does something
    leaves, treedef = jax.tree.flatten(pfn.params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    leaves = [p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
    return dataclasses.replace(pfn, params=jax.tree.unflatten(treedef, leaves))


def _data(n_ctx, n_qry, f=3, seed=0, task="regression"):
    rng = np.random.default_rng(seed)
    x_ctx, x_qry = rng.normal(size=(n_ctx, f)), rng.normal(size=(n_qry, f))
    y = rng.normal(size=n_ctx) if task == "regression" else rng.integers(0, 4, size=n_ctx)
    return x_ctx, y, x_qry


@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize("n_ctx,n_qry,chunk", [(1, 5, 2), (13, 37, 3), (40, 100, 1024)])
def test_cached_chunked_logits_equal_the_full_forward(task, n_ctx, n_qry, chunk):
    pfn = _pfn(task)
    x_ctx, y_ctx, x_qry = _data(n_ctx, n_qry, task=task)
    full = np.asarray(pfn.logits_uncached(x_ctx, y_ctx, x_qry))  # one PFNTransformer.__call__ over T = n_ctx + n_qry
    cached = np.asarray(pfn.logits(x_ctx, y_ctx, x_qry, chunk_size=chunk))
    assert cached.shape == full.shape == (n_qry, pfn.io.num_outputs)
    np.testing.assert_allclose(cached, full, atol=2e-5, rtol=1e-5)
    # batched input: each dataset of the batch equals its unbatched prediction
    x2, y2, q2 = _data(n_ctx, n_qry, seed=1, task=task)
    batched = np.asarray(pfn.logits(np.stack([x_ctx, x2]), np.stack([y_ctx, y2]), np.stack([x_qry, q2]), chunk_size=chunk))
    np.testing.assert_allclose(batched[0], cached, atol=2e-5)
    np.testing.assert_allclose(batched[1], np.asarray(pfn.logits_uncached(x2, y2, q2)), atol=2e-5, rtol=1e-5)


def test_one_encoded_context_serves_several_query_sets():
    pfn = _pfn()
    x_ctx, y_ctx, x_qry = _data(50, 30)
    cache = pfn.encode(x_ctx, y_ctx)
    for part in (x_qry[:7], x_qry, x_qry[::-1]):
        np.testing.assert_allclose(pfn.logits_from_cache(cache, part), pfn.logits_uncached(x_ctx, y_ctx, part),
                                   atol=2e-5, rtol=1e-5)
    dist = pfn.predict_from_cache(cache, x_qry)
    assert isinstance(dist, bar.BarDistribution) and dist.mean().shape == (30,)
    # the bar functionals are reachable from predict results
    ref = pfn.predict(x_ctx, y_ctx, x_qry)
    np.testing.assert_allclose(dist.mean(), ref.mean(), atol=1e-5)
    q = np.asarray(ref.quantile(jnp.array([0.05, 0.5, 0.95])))
    assert q.shape == (30, 3) and np.all(np.diff(q, axis=-1) > 0)
    assert np.all(np.asarray(ref.ei(best_f=float(y_ctx.max()))) >= 0)
    with pytest.raises(ValueError, match="features"):
        pfn.logits_from_cache(cache, x_qry[:, :2])
    with pytest.raises(ValueError, match="shape"):
        pfn.logits_from_cache(cache, x_qry[None])


def test_per_context_feature_counts_equal_encoding_each_context_alone():
    pfn = _pfn(max_features=5)
    rng = np.random.default_rng(3)
    x_ctx, x_qry, y_ctx = rng.normal(size=(2, 40, 4)), rng.normal(size=(2, 9, 4)), rng.normal(size=(2, 40))
    cache = pfn.encode(x_ctx, y_ctx, num_features=np.array([2, 4]))
    both = pfn.logits_from_cache(cache, x_qry)
    narrow = pfn.logits_uncached(x_ctx[0, :, :2], y_ctx[0], x_qry[0, :, :2])  # columns 2, 3 of context 0 ignored
    np.testing.assert_allclose(both[0], narrow, atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(both[1], pfn.logits_uncached(x_ctx[1], y_ctx[1], x_qry[1]), atol=2e-5, rtol=1e-5)
    pure = pfn.query_logits(cache, jnp.asarray(x_qry, jnp.float32))
    np.testing.assert_allclose(pure, both, atol=2e-5, rtol=1e-5)
    for bad in (np.array([0, 4]), np.array([2, 5]), np.array([2]), np.array([2.0, 4.0])):
        with pytest.raises(ValueError, match="num_features"):
            pfn.encode(x_ctx, y_ctx, num_features=bad)


def test_classification_predict_from_cache_uses_the_context_classes():
    pfn = _pfn("classification")
    x_ctx, y_ctx, x_qry = _data(20, 8, task="classification")
    y_ctx[:4] = [0, 1, 2, 3]
    probs = pfn.predict_from_cache(pfn.encode(x_ctx, y_ctx), x_qry).probs
    assert probs.shape == (8, 4)
    np.testing.assert_allclose(probs, pfn.predict(x_ctx, y_ctx, x_qry).probs, atol=1e-6)
    np.testing.assert_allclose(np.asarray(probs).sum(-1), 1.0, atol=1e-5)


def test_padded_chunks_make_each_row_independent_of_the_batch():
    """With pad_to_chunk every call runs the same program, so a row's logits are bitwise equal
    whether it is predicted alone, in a subset, or in a permuted batch."""
    pfn = _pfn()
    x_ctx, y_ctx, x_qry = _data(30, 70)
    cache = pfn.encode(x_ctx, y_ctx)
    full = np.asarray(pfn.logits_from_cache(cache, x_qry, chunk_size=32, pad_to_chunk=True))
    perm = np.random.default_rng(0).permutation(70)
    permuted = np.asarray(pfn.logits_from_cache(cache, x_qry[perm], chunk_size=32, pad_to_chunk=True))
    single = np.asarray(pfn.logits_from_cache(cache, x_qry[5:6], chunk_size=32, pad_to_chunk=True))
    np.testing.assert_array_equal(permuted, full[perm])
    np.testing.assert_array_equal(single, full[5:6])


def test_memory_stays_flat_when_the_queries_grow_tenfold():
    """Measured with XLA's compiled memory analysis (d=64, 2 layers, 256 context rows):
    the uncached full forward's working memory grows with the number of queries (its attention
    is over all T = n_ctx + n_qry tokens), while the cached path runs one fixed-shape decode
    program whatever the number of queries, so its working memory is the same for 1k and 10k."""
    pfn = _pfn(max_features=5, d_model=64, num_outputs=100)
    n_ctx, chunk = 256, 512
    rng = np.random.default_rng(0)
    x_ctx, y_ctx = rng.normal(size=(n_ctx, 5)), rng.normal(size=n_ctx)
    cache = pfn.encode(x_ctx, y_ctx)

    def full_temp(n_qry):
        t = n_ctx + n_qry
        lowered = _full_forward_jit.lower(pfn.graphdef, pfn.params, S((1, t, 5), jnp.float32), S((1, t), jnp.float32),
                                          S((1,), jnp.int32), S((1,), jnp.int32))
        return lowered.compile().memory_analysis().temp_size_in_bytes

    def decode_temp():
        lowered = _decode_jit.lower(pfn.graphdef, pfn.params, cache.caches, S((1, chunk, 5), jnp.float32),
                                    cache.context_len, cache.num_features)
        return lowered.compile().memory_analysis().temp_size_in_bytes

    programs = []
    for n_qry in (1000, 10_000):
        out = pfn.logits_from_cache(cache, rng.normal(size=(n_qry, 5)), chunk_size=chunk, pad_to_chunk=True)
        assert out.shape == (n_qry, 100)
        programs.append(_decode_jit._cache_size())
    assert programs[1] == programs[0], "10k queries compiled a new decode program"
    full_1k, full_10k, dec = full_temp(1000), full_temp(10_000), decode_temp()
    assert full_10k > 10 * full_1k  # the measurement sees growth where there is some
    assert dec < full_10k / 10, (dec, full_10k)  # one fixed-size chunk's working set, far below 10k queries' forward


def test_pickle_and_deepcopy_round_trip_and_share_compiled_programs():
    pfn = _pfn()
    x_ctx, y_ctx, x_qry = _data(20, 10)
    ref = np.asarray(pfn.logits(x_ctx, y_ctx, x_qry))
    n_programs = _decode_jit._cache_size()
    for other in (pickle.loads(pickle.dumps(pfn)), copy.deepcopy(pfn)):
        np.testing.assert_array_equal(np.asarray(other.logits(x_ctx, y_ctx, x_qry)), ref)
    assert _decode_jit._cache_size() == n_programs  # same graph: no recompilation


def test_init_validates_borders():
    cfg, io = ClassicConfig(d_model=16, num_layers=1, num_heads=2), ModelIO(2, 10)
    # a bar head with 5 borders has 4 buckets, the model 10 outputs
    with pytest.raises(ValueError, match="num_outputs=4"):
        PFN.init(cfg, io, BarHead(jnp.zeros(5)))
    # the default head: 11 equally spaced borders on [-3, 3]
    np.testing.assert_allclose(PFN.init(cfg, io).borders, np.linspace(-3, 3, 11), atol=1e-6)
    # a classification head on a real-valued model, and a model of class labels without its head
    with pytest.raises(ValueError, match="y_vocab"):
        PFN.init(cfg, io, ClassHead(10))
    with pytest.raises(ValueError, match="head"):
        PFN.init(cfg, ModelIO(2, 10, y_vocab=10))


# --------------------------------------------------------------------------- shipped pretrained models


@pytest.mark.parametrize("name,task", [("reg-tiny", "regression"), ("cls-tiny", "classification")])
def test_pretrained_models_load_by_name(name, task):
    pfn = pfnjax.load(name)
    assert pfn.task == task and pfn.max_features == 10
    assert pfn.train_config is not None and pfn.train_config.optim.steps > 0
    if task == "classification":
        assert pfn.max_classes == 10 and pfn.trained_with_missing
    else:
        assert not pfn.trained_with_missing
    run = PRETRAINED_DIR / name
    assert sum(f.stat().st_size for f in run.rglob("*") if f.is_file()) < 5e6
    assert len(list((run / "checkpoints").iterdir())) == 1  # only the final checkpoint is shipped


def test_pretrained_files_are_package_data():
    """Every file of the shipped models matches a setup.cfg package_data pattern (so `pip install .`
    installs it; setuptools globs do not cross directory separators)."""
    root = Path(pfnjax.__file__).parent
    setup_cfg = root.parent / "setup.cfg"
    if not setup_cfg.exists():
        pytest.skip("not a source checkout")
    parser = configparser.ConfigParser()
    parser.read(setup_cfg)
    patterns = [p.strip() for p in parser["options.package_data"]["pfnjax"].replace("\n", ",").split(",") if p.strip()]
    files = [f.relative_to(root).as_posix() for f in (root / "pretrained").rglob("*") if f.is_file()]
    assert files
    missing = [f for f in files if not any(
        fnmatch.fnmatch(f, p) and f.count("/") == p.count("/") for p in patterns)]
    assert not missing, (
        f"{len(missing)} pretrained files are not covered by setup.cfg [options.package_data] (Orbax writes "
        "up to 7 levels below pretrained/, e.g. <name>/checkpoints/<step>/state/ocdbt.process_0/d/<hash>); "
        "add the patterns pretrained/*/*/*/*/*/*, pretrained/*/*/*/*/*/*/*. Missing: " + ", ".join(missing[:5]))


def test_query_logits_are_pure_and_differentiable_in_the_queries():
    pfn = _pfn()
    x_ctx, y_ctx, x_qry = _data(20, 6)
    cache = pfn.encode(x_ctx, y_ctx)
    x = jnp.asarray(x_qry, jnp.float32)
    np.testing.assert_allclose(pfn.query_logits(cache, x), pfn.logits_from_cache(cache, x_qry), atol=2e-5)
    best = float(np.max(y_ctx))

    def ei(xq):
        return bar.expected_improvement(pfn.borders, pfn.query_logits(cache, xq), best)

    grad = np.asarray(jax.jit(jax.grad(lambda xq: ei(xq).sum()))(x))
    # central finite differences: each query's EI depends only on its own row
    eps, fd = 1e-2, np.zeros_like(grad)
    for j in range(x.shape[1]):
        step = jnp.zeros_like(x).at[:, j].set(eps)
        fd[:, j] = (np.asarray(ei(x + step)) - np.asarray(ei(x - step))) / (2 * eps)
    scale = np.abs(fd).max()
    assert scale > 1e-3  # the queries matter: a zero gradient would pass a loose check
    np.testing.assert_allclose(grad, fd, atol=0.02 * scale)
    # vmap over query sets against one context, under jit
    sets = jnp.stack([x, x[::-1], x + 0.5])
    batched = jax.jit(jax.vmap(lambda xq: pfn.query_logits(cache, xq)))(sets)
    for k in range(3):
        np.testing.assert_allclose(batched[k], pfn.query_logits(cache, sets[k]), atol=2e-5)
    with pytest.raises(ValueError, match="F=3"):
        pfn.query_logits(cache, x[:, :2])


def test_categorical_distribution_matches_scipy_and_is_a_pytree():
    from scipy import stats

    from pfnjax.distributions.categorical import CategoricalDistribution

    logits = jax.random.normal(jax.random.key(3), (4, 5))
    dist = CategoricalDistribution(logits)
    p = np.exp(np.asarray(logits, np.float64))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(dist.probs, p, rtol=1e-5)
    np.testing.assert_allclose(dist.entropy(), stats.entropy(p, axis=-1), rtol=1e-5)
    y = np.array([0, 4, 2, 1])
    np.testing.assert_allclose(dist.log_prob(y), np.log(p[np.arange(4), y]), rtol=1e-5)
    np.testing.assert_array_equal(dist.predict(), p.argmax(-1))
    # a pytree: it goes in and out of jit, and the old name still works
    out = jax.jit(lambda d: CategoricalDistribution(d.logits * 2.0))(dist)
    np.testing.assert_allclose(out.logits, 2 * np.asarray(logits), rtol=1e-6)
    assert pfnjax.ClassProbabilities is CategoricalDistribution and dist.num_classes == 5
