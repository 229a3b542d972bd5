"""Output heads against independent references: the bar head's loss is the bar-distribution NLL
(checked against numerical integration of its density), the class head's is scipy's
log-softmax cross-entropy; saved metadata rebuilds heads exactly."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate
from scipy.special import log_softmax

from pfnjax.distributions.bar_distribution import BarDistribution
from pfnjax.distributions.categorical import CategoricalDistribution
from pfnjax.heads import HEADS, BarHead, ClassHead, head_class_for_task, head_from_metadata


def test_registry_maps_tasks_to_heads():
    assert head_class_for_task("regression") is BarHead and head_class_for_task("classification") is ClassHead
    assert HEADS["bar"] is BarHead and HEADS["class"] is ClassHead
    with pytest.raises(ValueError, match="no head serves task 'ranking'"):
        head_class_for_task("ranking")
    with pytest.raises(ValueError, match="unknown head kind"):
        head_from_metadata({"kind": "ordinal"})


def test_bar_head_loss_is_a_normalised_density(key):
    borders = jnp.asarray(np.sort(np.random.default_rng(0).normal(size=21)).astype(np.float32))
    head = BarHead(borders)
    logits = jax.random.normal(key, (20,))
    # exp(-loss) is a density over the real line: it integrates to 1 (tails included)
    density = lambda y: float(jnp.exp(-head.loss(logits, jnp.float32(y))))
    inner = sum(integrate.quad(density, float(a), float(b), limit=200)[0] for a, b in zip(borders[:-1], borders[1:]))
    tails = integrate.quad(density, -np.inf, float(borders[0]))[0] + integrate.quad(density, float(borders[-1]), np.inf)[0]
    assert inner + tails == pytest.approx(1.0, abs=2e-4)
    assert head.num_outputs == 20 and head.y_vocab == 0
    assert isinstance(head.distribution(logits), BarDistribution)


def test_bar_head_metadata_round_trips_bitwise():
    borders = jnp.asarray(np.cumsum(np.random.default_rng(1).exponential(size=101)).astype(np.float32) * 1e-3 + np.pi)
    saved = json.loads(json.dumps(BarHead(borders).metadata()))
    rebuilt = head_from_metadata(saved)
    assert isinstance(rebuilt, BarHead)
    np.testing.assert_array_equal(np.asarray(rebuilt.borders), np.asarray(borders))


def test_class_head_loss_matches_scipy_cross_entropy(key):
    head = ClassHead(7)
    logits = jax.random.normal(key, (4, 5, 7)) * 3
    y = jax.random.randint(jax.random.fold_in(key, 1), (4, 5), 0, 7)
    expected = -np.take_along_axis(log_softmax(np.asarray(logits, np.float64), axis=-1), np.asarray(y)[..., None],
                                   -1)[..., 0]
    np.testing.assert_allclose(np.asarray(head.loss(logits, y)), expected, rtol=1e-5, atol=1e-6)
    assert (head.num_outputs, head.y_vocab) == (7, 7)
    assert head_from_metadata(json.loads(json.dumps(head.metadata()))) == head


def test_class_head_validates_labels_and_class_counts():
    head = ClassHead(4)
    np.testing.assert_array_equal(head.check_labels(np.array([0.0, 3.0, 1.0])), [0, 3, 1])
    assert head.label_summary(np.array([0, 2, 1])) == 3
    for bad, match in [(np.array([0.5]), "integer"), (np.array([4]), r"\[0, 4\)"), (np.array([-1]), r"\[0, 4\)")]:
        with pytest.raises(ValueError, match=match):
            head.check_labels(bad)
    logits = jnp.zeros((3, 4))
    dist = head.distribution(logits, label_summary=2)
    assert isinstance(dist, CategoricalDistribution) and dist.num_classes == 2
    assert head.distribution(logits, label_summary=2, num_classes=3).num_classes == 3
    assert head.full_distribution(logits).num_classes == 4
    with pytest.raises(ValueError, match="num_classes=5"):
        head.distribution(logits, num_classes=5)


def test_bar_head_rejects_bad_labels_and_options():
    head = BarHead.equally_spaced(10)
    with pytest.raises(ValueError, match="NaN or inf"):
        head.check_labels(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="no options"):
        head.distribution(jnp.zeros(10), num_classes=3)


def test_heads_are_pytrees_that_pass_through_jit():
    head = BarHead.equally_spaced(8)
    loss = jax.jit(lambda h, lg, y: h.loss(lg, y))(head, jnp.zeros(8), jnp.float32(0.1))
    # uniform logits on [-3, 3] with 8 buckets: density 1/6 inside, so NLL = log 6
    assert float(loss) == pytest.approx(np.log(6.0), rel=1e-5)
    assert jax.tree.leaves(ClassHead(3)) == []  # nothing to save for classification
