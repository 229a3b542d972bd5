"""The strokes prior (few-shot image tasks): its renderer against numerical integration of a
stroke's area, its task structure, its invariances and that examples of a class look alike."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pfnjax.priors import get_prior
from pfnjax.priors.strokes import StrokesPrior, affine, bezier_points, render


def test_render_ink_is_the_stroke_area():
    """A straight stroke of length L and width w, drawn with a sharp edge on a fine grid, covers
    L·w + π w²/4 of the unit square (a rectangle with two half-disc caps); so does its rotation."""
    length, width = 0.5, 0.1
    area = length * width + np.pi * width**2 / 4
    for angle in (0.0, 0.7):
        half = 0.5 * length * np.array([np.sin(angle), np.cos(angle)])
        control = jnp.asarray(np.stack([0.5 - half, np.full(2, 0.5), 0.5 + half]), jnp.float32)[None]
        image = render(bezier_points(control), jnp.array([width]), jnp.array([True]), 8, 32, softness=1e-4)
        assert float(image.mean()) == pytest.approx(area, rel=0.02), angle
    # an inactive stroke draws nothing
    assert float(render(bezier_points(control), jnp.array([width]), jnp.array([False]), 8, 4, 0.01).max()) == 0.0


def test_bezier_and_affine_follow_their_formulas():
    control = jnp.array([[0.1, 0.2], [0.5, 0.9], [0.8, 0.3]])
    points = np.asarray(bezier_points(control, 5))
    t = np.linspace(0, 1, 5)[:, None]
    c = np.asarray(control)
    np.testing.assert_allclose(points, (1 - t) ** 2 * c[0] + 2 * (1 - t) * t * c[1] + t**2 * c[2], atol=1e-6)
    # a quarter turn maps (0.5, 0.9) to (0.1, 0.5) about the centre; the centre stays put, shifts add
    moved = np.asarray(affine(jnp.array([[0.5, 0.9], [0.5, 0.5]]), jnp.pi / 2, 1.0, 0.0, jnp.array([0.1, 0.0])))
    np.testing.assert_allclose(moved, [[0.1 + 0.1, 0.5], [0.6, 0.5]], atol=1e-6)


def test_tasks_are_balanced_and_queries_use_the_context_classes():
    prior = StrokesPrior(min_ways=5, max_ways=5)
    for sep in (3, 5, 12, 25):
        x, y = jax.jit(lambda k, s: prior.sample_dataset(k, 40, 64, jnp.int32(64), s))(jax.random.key(sep), jnp.int32(sep))
        y = np.asarray(y)
        n = min(5, sep)
        counts = np.bincount(y[:sep], minlength=n)
        assert counts.max() - counts.min() <= 1 and len(counts) == n  # K = sep / n shots each
        assert set(y[sep:]) <= set(range(n))
        x = np.asarray(x)
        assert x.shape == (40, 64) and x.min() >= 0 and x.max() <= 1 and x.max() > 0.5


def test_examples_of_a_class_look_alike():
    """Within a task, two examples of the same class correlate more than examples of different
    classes (the glyph is the class); with the jitter turned up to the glyph's own randomness
    (a positive control: every example a fresh glyph) the difference vanishes."""

    def gap(prior, seeds=30):
        same, other = [], []
        for seed in range(seeds):
            x, y = prior.sample_dataset(jax.random.key(seed), 60, 64, jnp.int32(64), jnp.int32(30))
            x, y = np.asarray(x), np.asarray(y)
            c = np.corrcoef(x + 1e-6 * np.random.default_rng(seed).normal(size=x.shape))
            same_class = y[:, None] == y[None, :]
            off = ~np.eye(len(y), dtype=bool)
            same.append(c[same_class & off].mean())
            other.append(c[~same_class].mean())
        return np.mean(same) - np.mean(other)

    assert gap(StrokesPrior(min_ways=3, max_ways=3)) > 0.3

    class FreshGlyphs(StrokesPrior):  # every row its own glyph: labels carry no information about x
        def sample_dataset(self, key, seq_len, max_features, num_features, single_eval_pos):
            k_labels, k_glyphs, k_examples = jax.random.split(key, 3)
            y = self.task_labels(k_labels, seq_len, single_eval_pos)
            control, widths, active = self.sample_glyphs(k_glyphs, seq_len)
            x = jax.vmap(self.render_example)(jax.random.split(k_examples, seq_len), control, widths, active)
            return x, y

    import dataclasses
    control = FreshGlyphs(**{f.name: getattr(StrokesPrior(min_ways=3, max_ways=3), f.name)
                             for f in dataclasses.fields(StrokesPrior) if f.init})
    assert abs(gap(control)) < 0.05


def test_registered_with_its_settings_and_checks():
    assert get_prior("strokes") == StrokesPrior()
    assert get_prior("strokes", resolution=28).num_pixels == 784
    with pytest.raises(ValueError, match="min_ways"):
        StrokesPrior(min_ways=6, max_ways=3)
    with pytest.raises(ValueError, match="stroke_width"):
        StrokesPrior(stroke_width=(0.2, 0.1))
    with pytest.raises(ValueError, match="resolution"):
        StrokesPrior(resolution=1)
