"""The PFN transformer: masking semantics (query independence, context permutation
invariance), cached inference equals the full forward pass, config validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pfnjax.model import ClassicConfig, ModelIO, PFNTransformer, build_model

# Every test here compares two computations of the same logits: see conftest.full_precision.
pytestmark = pytest.mark.usefixtures("full_precision")


def _random_model(task="regression", num_outputs=20, compute_dtype="float32", norm="pre"):
    # classification: the context labels are classes, embedded (y_vocab = num_outputs); regression: real y
    y_vocab = num_outputs if task == "classification" else 0
    cfg = ClassicConfig(d_model=32, num_layers=2, num_heads=4, compute_dtype=compute_dtype, norm=norm)
    model = build_model(cfg, ModelIO(max_features=4, num_outputs=num_outputs, y_vocab=y_vocab), nnx.Rngs(0))
    assert isinstance(model, PFNTransformer)
    # Zero-initialised output projections make fresh layers the identity; perturb every
    # parameter so the attention actually mixes tokens in these tests.
    graphdef, state = nnx.split(model)
    leaves, treedef = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    leaves = [leaf + 0.2 * jax.random.normal(k, leaf.shape, leaf.dtype) for leaf, k in zip(leaves, keys)]
    return nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))


def _data(seed=0, b=2, t=12, f=4):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return jax.random.normal(k1, (b, t, f)), jax.random.normal(k2, (b, t))


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_query_predictions_do_not_depend_on_other_queries(norm):
    model = _random_model(norm=norm)
    x, y = _data()
    sep, nf = jnp.array([5, 7]), jnp.array([4, 4])
    out = model(x, y, sep, nf)
    # Change every query except position 9 (x and y), and the query targets too.
    x2 = x.at[:, 7:9].set(10.0).at[:, 10:].set(-3.0)
    y2 = y.at[:, 7:].set(99.0)
    out2 = model(x2, y2, sep, nf)
    np.testing.assert_allclose(out[:, 9], out2[:, 9], atol=1e-5)
    # ...while changing the context does change it (the test can fail).
    x3 = x.at[:, 0].set(5.0)
    assert np.abs(np.asarray(model(x3, y, sep, nf)[:, 9] - out[:, 9])).max() > 1e-3


def test_query_targets_never_leak():
    model = _random_model()
    x, y = _data()
    sep, nf = jnp.array([6, 6]), jnp.array([4, 4])
    out = model(x, y, sep, nf)
    out2 = model(x, y.at[:, 6:].set(1e3), sep, nf)
    np.testing.assert_allclose(out, out2, atol=1e-5)
    # positive control: the same change to a *context* target moves every query's logits, so a
    # model that ignored y altogether could not pass the test above by accident
    out3 = model(x, y.at[:, 2].set(1e3), sep, nf)
    assert np.abs(np.asarray(out3[:, 6:] - out[:, 6:])).min(axis=-1).max() > 1e-3


def test_context_permutation_invariance():
    model = _random_model()
    x, y = _data(b=1)
    sep, nf = jnp.array([8]), jnp.array([4])
    perm = np.r_[np.random.default_rng(0).permutation(8), np.arange(8, 12)]
    out = model(x, y, sep, nf)
    out_perm = model(x[:, perm], y[:, perm], sep, nf)
    np.testing.assert_allclose(out[:, 8:], out_perm[:, 8:], atol=1e-5)


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_cached_context_equals_full_forward(task):
    model = _random_model(task=task, num_outputs=5 if task == "classification" else 20)
    x, y = _data(t=16)
    if task == "classification":
        y = (jnp.abs(y) * 2).astype(jnp.int32) % 5
    sep, nf = jnp.array([6, 9]), jnp.array([4, 3])
    x = x.at[1, :, 3].set(0.0)
    full = model(x, y, sep, nf)
    caches = model.encode_context(x[:, :9], y[:, :9], sep, nf)  # padded context, masked by sep
    cached = model.predict_queries(caches, x, sep, nf)
    np.testing.assert_allclose(full[0, 6:], cached[0, 6:], atol=1e-5)
    np.testing.assert_allclose(full[1, 9:], cached[1, 9:], atol=1e-5)


def test_bf16_compute_close_to_f32_and_params_f32():
    m32 = _random_model()
    m16 = _random_model(compute_dtype="bfloat16")
    x, y = _data()
    sep, nf = jnp.array([5, 7]), jnp.array([4, 4])
    out32, out16 = m32(x, y, sep, nf), m16(x, y, sep, nf)
    assert out16.dtype == jnp.float32
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(m16, nnx.Param)))
    rel = np.abs(np.asarray(out16 - out32)).max() / np.abs(np.asarray(out32)).max()
    assert 1e-4 < rel < 0.05  # close to f32, but really computed in bf16


def test_feature_scaling_makes_padding_consistent():
    """With 'linear' scaling, x with 2 used of 4 columns equals 2x on a 2-feature model's scale."""
    model = _random_model()
    x, y = _data()
    x = x.at[:, :, 2:].set(0.0)
    sep = jnp.array([5, 5])
    emb_used2 = model.embed_x(x, jnp.array([2, 2]))
    emb_used4 = model.embed_x(x * jnp.sqrt(2.0), jnp.array([4, 4]))
    np.testing.assert_allclose(emb_used2, emb_used4, atol=1e-5)
    del y, sep


def test_config_validation():
    with pytest.raises(ValueError, match="divisible"):
        ClassicConfig(d_model=30, num_heads=4)
    with pytest.raises(ValueError, match="y_vocab"):
        ModelIO(max_features=3, num_outputs=10, y_vocab=-1)
    with pytest.raises(ValueError, match="norm must be one of"):
        ClassicConfig(norm="sandwich")
    with pytest.raises(ValueError, match="has no setting 'd_modle'"):
        ClassicConfig().replace(d_modle=64)
    # runs saved by pfnjax 0.1 name a task instead of y_vocab; 0.2 runs keep the sizes in the model dict
    from pfnjax.runs import _legacy_model

    legacy = dict(max_features=3, num_outputs=10, d_model=16, num_heads=2)
    assert _legacy_model({**legacy, "task": "classification"})[1] == ModelIO(3, 10, 10)
    assert _legacy_model({**legacy, "task": "regression"}) == (ClassicConfig(d_model=16, num_heads=2), ModelIO(3, 10, 0))
    from pfnjax.model import model_config_from_dict

    cfg = ClassicConfig(d_model=64, num_heads=4, d_ff=96)
    assert model_config_from_dict(cfg.to_dict()) == cfg and cfg.to_dict()["name"] == "classic"


# --------------------------------------------------------------------------- attention implementation

from pfnjax.model import context_attention, resolve_attention_impl  # noqa: E402
from pfnjax.model.attention import cuda_available  # noqa: E402

_IMPLS = ["xla", "auto", "cudnn", "matmul"]


def _with_attention(model, impl):
    """The same weights with another attention implementation."""
    import dataclasses

    graphdef, state = nnx.split(model)
    clone = nnx.merge(graphdef, state)
    cfg = dataclasses.replace(model.cfg, attention_impl=impl)
    for module in [clone, *clone.layers]:
        module.cfg = cfg
    return clone


@pytest.mark.parametrize("impl", _IMPLS)
def test_attention_implementations_give_the_same_logits(impl):
    if impl == "cudnn" and not cuda_available():
        pytest.skip("cuDNN attention needs an NVIDIA GPU (CPU: only XLA runs)")
    # bfloat16: the dtype cuDNN flash attention runs in, so "auto" picks it on a GPU
    reference = _random_model(compute_dtype="bfloat16")
    model = _with_attention(reference, impl)
    x, y = _data(t=24)
    sep, nf = jnp.array([7, 16]), jnp.array([4, 2])
    out_ref = np.asarray(_with_attention(reference, "xla")(x, y, sep, nf))
    out = np.asarray(model(x, y, sep, nf))
    caches = model.encode_context(x[:, :16], y[:, :16], sep, nf)
    cached = np.asarray(model.predict_queries(caches, x, sep, nf))
    scale = np.abs(out_ref).max()
    # bf16 activations: the two kernels round and accumulate differently (8-bit mantissa, ~0.4%)
    # (bf16 rounds differently in each formulation: the matmul one is only close to XLA's)
    tol = 0.0 if impl == "xla" else 0.03 * scale
    for b, s in enumerate([7, 16]):
        np.testing.assert_allclose(out[b, s:], out_ref[b, s:], atol=tol + 1e-6)
        np.testing.assert_allclose(cached[b, s:], out_ref[b, s:], atol=0.03 * scale)
    # the comparison can fail: other weights give other logits
    other = np.asarray(_random_model(compute_dtype="bfloat16", norm="post")(x, y, sep, nf))
    assert np.abs(other - out_ref).max() > 0.1 * scale


def test_auto_attention_picks_per_platform():
    q = jax.ShapeDtypeStruct((2, 16, 4, 8), jnp.bfloat16)
    q32 = jax.ShapeDtypeStruct((2, 16, 4, 8), jnp.float32)
    assert resolve_attention_impl("auto", q32, q32, platform="cpu") == "matmul"
    assert resolve_attention_impl("auto", q32, q32, platform="cuda") == "xla"  # cuDNN flash attention needs bf16/fp16
    assert resolve_attention_impl("auto", q, q, platform="cuda") == ("cudnn" if cuda_available() else "xla")
    assert resolve_attention_impl("xla", q, q) == "xla" and resolve_attention_impl("cudnn", q32, q32) == "cudnn"
    if not cuda_available():
        with pytest.raises(Exception):
            jax.jit(lambda a: context_attention(a, a, a, jnp.array([3, 5]), "cudnn"))(jnp.ones((2, 16, 4, 8), jnp.bfloat16))


@pytest.mark.parametrize("m,n", [(9, 7), (600, 520)])  # whole scores, and query tiles with a flash backward
def test_matmul_attention_equals_the_masked_definition(m, n):
    """Against a float64 numpy softmax over each dataset's first kv_len keys: values and gradients."""
    from pfnjax.model.attention import matmul_attention

    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.normal(size=(2, s, 2, 8)), jnp.float32) for s in (m, n, n))
    kv_len = jnp.array([3, n])
    w = jnp.asarray(rng.normal(size=8), jnp.float32)

    def reference(q, k, v):
        out = []
        for b, length in enumerate(np.asarray(kv_len)):
            s = jnp.einsum("mhd,nhd->hmn", q[b], k[b, :length]) / np.sqrt(8)
            out.append(jnp.einsum("hmn,nhd->mhd", jax.nn.softmax(s, -1), v[b, :length]))
        return jnp.stack(out)

    loss = lambda f: lambda q, k, v: jnp.sum(f(q, k, v) @ w)  # noqa: E731
    got = jax.value_and_grad(loss(lambda q, k, v: matmul_attention(q, k, v, kv_len)), argnums=(0, 1, 2))(q, k, v)
    want = jax.value_and_grad(loss(reference), argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
    assert float(jnp.abs(got[1][1][0, 3:]).max()) == 0.0  # masked keys get no gradient


def test_attention_impl_config():
    assert ClassicConfig().attention_impl == "auto"
    # runs saved before the field existed stored None
    assert ClassicConfig(attention_impl=None).attention_impl == "auto"
    with pytest.raises(ValueError, match="attention_impl"):
        ClassicConfig(attention_impl="flash")
