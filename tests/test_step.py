"""The training step's fast path keeps the masked definition: with the context sizes bounded by a
layout, the loss and its gradients equal those of the plain masked forward pass over every row
(at full precision), the shared-split step draws its context size from the configured
distribution, and its buckets cover every context size."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats

from pfnjax.heads import BarHead, ClassHead
from pfnjax.model import ClassicConfig, ModelIO, SplitLayout, build_model
from pfnjax.priors import get_prior
from pfnjax.priors.base import sample_batch, split_pmf
from pfnjax.training import apply_model, pfn_loss, split_buckets, step_layouts, train, train_loss
from pfnjax.training.step import SHARED_SPLIT_STREAM
from pfnjax.types import BatchShape
from conftest import small_cfg

pytestmark = pytest.mark.usefixtures("full_precision")


def _model(num_outputs, y_vocab=0, norm="pre"):
    model = build_model(ClassicConfig(d_model=32, num_layers=3, num_heads=4, norm=norm),
                        ModelIO(3, num_outputs, y_vocab), nnx.Rngs(0))
    graphdef, state = nnx.split(model, nnx.Param)
    leaves, treedef = jax.tree.flatten(state)
    rng = np.random.default_rng(1)  # numpy: one compiled normal per leaf shape would cost seconds
    leaves = [p + 0.2 * rng.normal(size=p.shape).astype(np.float32) for p in leaves]
    return graphdef, jax.tree.unflatten(treedef, leaves)


@pytest.mark.parametrize("task,norm", [("regression", "pre"), ("classification", "post")])
def test_layout_loss_and_gradients_equal_the_masked_definition(task, norm):
    head = BarHead.equally_spaced(20) if task == "regression" else ClassHead(5)
    graphdef, params = _model(head.num_outputs, head.y_vocab, norm)
    batch = sample_batch(get_prior("gp"), jax.random.key(3), BatchShape(4, 24, 3))
    if task == "classification":  # five classes from the GP's y (an SCM sampler takes 40 s to compile)
        batch = batch.replace(y=jnp.digitize(batch.y, jnp.array([-1.0, -0.3, 0.3, 1.0])).astype(jnp.int32))
    # context sizes 7..13 in one batch: the layout [7, 13] skips keys >= 13 and head rows < 7
    batch = batch.replace(single_eval_pos=jnp.array([7, 13, 9, 11], jnp.int32))
    # jitted: op-by-op execution compiles every primitive separately and is minutes slower
    reference = jax.jit(jax.value_and_grad(lambda p: pfn_loss(apply_model(graphdef, p, batch), batch, head)))
    loss_ref, grad_ref = reference(params)
    layout_loss = jax.jit(jax.value_and_grad(lambda p, layout: train_loss(graphdef, p, batch, head, layout)),
                          static_argnums=1)
    for layout in (SplitLayout(7, 13), SplitLayout(1, 23), SplitLayout(0, 24)):
        loss, grad = layout_loss(params, layout)
        np.testing.assert_allclose(loss, loss_ref, rtol=1e-6)
        for g, r in zip(jax.tree.leaves(grad), jax.tree.leaves(grad_ref)):
            np.testing.assert_allclose(g, r, rtol=2e-4, atol=1e-6)
    # the comparison can fail: a layout that cuts a context (sep 13 > context_max 12) changes the loss
    cut, _ = layout_loss(params, SplitLayout(7, 12))
    assert abs(float(cut) - float(loss_ref)) > 1e-4


def test_split_buckets_cover_every_context_size_and_save_work():
    for split in ("uniform", "paper", "loguniform"):
        for t, k in ((200, 8), (1024, 6), (5, 8)):
            layouts = split_buckets(split, t, k)
            assert len(layouts) <= k and layouts[0].query_start == 1 and layouts[-1].context_max == t - 1
            assert all(a.context_max + 1 == b.query_start for a, b in zip(layouts, layouts[1:]))
            pmf = split_pmf(split, t)
            cost = sum(pmf[lay.query_start:lay.context_max + 1].sum() * (lay.context_max + t - lay.query_start)
                       for lay in layouts)
            if t > k:  # fewer keys and head rows than the per-dataset layout (2T - 2)
                assert cost < 0.75 * (2 * t - 2), (split, t, cost)


def test_shared_split_draws_one_context_size_per_step_from_the_split_distribution():
    """The per-step context size follows the configured split's pmf (chi-square, 2,000 steps),
    every dataset of a step has it, and datasets are the per-dataset mode's otherwise."""
    cfg = small_cfg(split="loguniform", split_sharing="step", seq_len=24)
    layouts, table = step_layouts(cfg)
    assert table is not None and len(layouts) > 1
    run_key = jax.random.key(0)
    from pfnjax.priors.base import loguniform_split

    def step_sep(s):
        step_key = jax.random.fold_in(run_key, s)
        return loguniform_split(jax.random.fold_in(step_key, SHARED_SPLIT_STREAM), 24)

    seps = np.asarray(jax.vmap(step_sep)(jnp.arange(2000)))
    counts = np.bincount(seps, minlength=24)[1:]
    expected = split_pmf("loguniform", 24)[1:] * 2000
    assert stats.chisquare(counts, expected).pvalue > 1e-3
    from pfnjax.priors.base import sample_datasets

    keys, shape = jax.random.split(jax.random.key(5), 4), BatchShape(4, 24, 3)
    own = sample_datasets(get_prior("gp"), keys, shape)
    shared = sample_datasets(get_prior("gp"), keys, shape, single_eval_pos=jnp.int32(9))
    np.testing.assert_array_equal(shared.x, own.x)
    np.testing.assert_array_equal(shared.y, own.y)
    assert np.all(np.asarray(shared.single_eval_pos) == 9) and len(set(np.asarray(own.single_eval_pos))) > 1
    # one short run with a shared split trains (every bucket compiles into the step) and its loss falls
    result = train(small_cfg(split="uniform", split_sharing="step", steps=60, lr=3e-3, log_every=10), None,
                   progress=False)
    losses = [h["loss"] for h in result.history]
    assert np.mean(losses[-2:]) < losses[0] - 0.2, losses
