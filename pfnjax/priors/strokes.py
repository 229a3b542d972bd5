r"""A prior over few-shot image classification tasks: glyphs of random pen strokes.

Generative process of :class:`StrokesPrior` (registered as ``"strokes"``), per dataset (a task):

1. the number of ways ``N ~ U{min_ways, ..., max_ways}``; with a context of ``sep`` rows, the
   task uses ``n = min(N, sep)`` classes, so every class has a context example;
2. each class is a **glyph**: ``s ~ U{min_strokes, ..., max_strokes}`` strokes, each a quadratic
   Bézier curve with control points uniform in ``[margin, 1 - margin]²`` (a stroke starts at the
   previous stroke's end with probability ``connect_p``, as a pen that is not lifted) and a width
   uniform in ``stroke_width`` (in units of the image side);
3. the context rows are the classes in turn (row ``i`` has class ``i mod n``: ``K = sep / n``
   shots each), the query rows uniform classes of the ``n``;
4. each **example** is its class's glyph under its own random affine map about the image centre
   (rotation ``U(-rotation, rotation)`` radians, scale ``U(scale)``, shear ``U(-shear, shear)``,
   shift ``U(-shift, shift)²``), with every stroke's width scaled by ``1 + width_jitter · U(-1, 1)``;
5. it is **rendered** on the device at ``resolution²`` pixels: each pixel's ink is the mean, over
   ``supersample²`` sub-pixels, of ``sigmoid((w/2 - d) / softness)`` with ``d`` the sub-pixel's
   distance to the stroke (its curve as ``CURVE_POINTS - 1`` segments), the maximum over the
   strokes; plus ``N(0, noise²)`` pixel noise, clipped to ``[0, 1]``.

``x`` is the image flattened row by row (``resolution²`` columns: a run uses
``num_features = resolution²``; with fewer columns the first ones are kept, and columns beyond
``num_features`` are zero as for every prior), ``y`` the class. Pixels lie in ``[0, 1]``
(``input_range``): scale real images to that range (scikit-learn's 8×8 digits: divide by 16).

The default, 8×8 with 2×2 supersampling, is the size of scikit-learn's handwritten digits;
``resolution=28`` gives Omniglot's size.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from pfnjax.numerics import matmul
from pfnjax.priors.base import feature_mask, register_prior
from pfnjax.types import Array, PRNGKey

CURVE_POINTS = 12  # points on each Bézier stroke (11 segments)


def bezier_points(control: Array, num: int = CURVE_POINTS) -> Array:
    """``f32[..., num, 2]`` points of quadratic Bézier curves with control points ``f32[..., 3, 2]``."""
    t = jnp.linspace(0.0, 1.0, num)[:, None]
    p0, p1, p2 = control[..., 0:1, :], control[..., 1:2, :], control[..., 2:3, :]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def render(points: Array, widths: Array, active: Array, resolution: int, supersample: int,
           softness: float) -> Array:
    """``f32[resolution, resolution]`` ink of strokes ``points f32[S, P, 2]`` (``(row, column)``
    coordinates in ``[0, 1]``, the curve as ``P - 1`` segments), ``widths f32[S]``, ``active bool[S]``."""
    m = resolution * supersample
    centres = (jnp.arange(m, dtype=jnp.float32) + 0.5) / m
    grid = jnp.stack(jnp.meshgrid(centres, centres, indexing="ij"), axis=-1).reshape(-1, 2)  # [m², 2]
    a, b = points[:, :-1], points[:, 1:]  # [S, P-1, 2]
    ab = b - a
    ap = grid[None, None] - a[:, :, None]  # [S, P-1, m², 2]
    t = jnp.clip(jnp.sum(ap * ab[:, :, None], -1) / (jnp.sum(ab * ab, -1)[..., None] + 1e-12), 0.0, 1.0)
    dist = jnp.sqrt(jnp.sum((ap - t[..., None] * ab[:, :, None]) ** 2, -1) + 1e-12).min(axis=1)  # [S, m²]
    ink = jax.nn.sigmoid((widths[:, None] / 2 - dist) / softness) * active[:, None]
    image = ink.max(axis=0).reshape(resolution, supersample, resolution, supersample)
    return image.mean(axis=(1, 3))


def affine(points: Array, angle: Array, scale: Array, shear: Array, shift: Array) -> Array:
    """``points f32[..., 2]`` under rotation, scale and shear about the centre ``(0.5, 0.5)``, then shifted."""
    c, s = jnp.cos(angle), jnp.sin(angle)
    # full precision: under TF32 the glyph's points would move by ~1e-3 of the image, differently per backend
    matrix = matmul(jnp.array([[c, -s], [s, c]]), jnp.array([[scale, shear * scale], [0.0, scale]]))
    return matmul(points - 0.5, matrix.T) + 0.5 + shift


@register_prior("strokes")
@dataclasses.dataclass(frozen=True)
class StrokesPrior:
    """N-way K-shot tasks over glyphs of random pen strokes, rendered as small grayscale images
    (see the module docstring)."""

    resolution: int = 8
    supersample: int = 2
    min_ways: int = 2
    max_ways: int = 10
    min_strokes: int = 1
    max_strokes: int = 4
    stroke_width: tuple[float, float] = (0.08, 0.16)
    connect_p: float = 0.5
    margin: float = 0.15
    rotation: float = 0.25
    scale: tuple[float, float] = (0.85, 1.15)
    shear: float = 0.15
    shift: float = 0.08
    width_jitter: float = 0.25
    softness: float = 0.02
    noise: float = 0.03
    task: str = dataclasses.field(default="classification", init=False)
    input_range: tuple[float, float] = dataclasses.field(default=(0.0, 1.0), init=False)

    def __post_init__(self) -> None:
        for name, low in (("resolution", 2), ("supersample", 1), ("min_ways", 2), ("max_ways", 2),
                          ("min_strokes", 1), ("max_strokes", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"StrokesPrior.{name} must be an int >= {low}, got {value!r}")
        if self.min_ways > self.max_ways or self.min_strokes > self.max_strokes:
            raise ValueError(f"StrokesPrior: need min_ways <= max_ways and min_strokes <= max_strokes, got "
                             f"{self.min_ways}..{self.max_ways} and {self.min_strokes}..{self.max_strokes}")
        for name in ("stroke_width", "scale"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"StrokesPrior.{name} must be (lo, hi) with 0 < lo <= hi, got {getattr(self, name)!r}")
        if not 0 <= self.connect_p <= 1 or not 0 <= self.margin < 0.5:
            raise ValueError(f"StrokesPrior: connect_p must lie in [0, 1] and margin in [0, 0.5), got "
                             f"{self.connect_p!r}, {self.margin!r}")
        for name in ("rotation", "shear", "shift", "width_jitter", "noise"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"StrokesPrior.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.width_jitter >= 1 or not self.softness > 0:
            raise ValueError(f"StrokesPrior: width_jitter must be < 1 and softness > 0, got {self.width_jitter!r}, "
                             f"{self.softness!r}")

    @property
    def num_pixels(self) -> int:
        return self.resolution**2

    def sample_glyphs(self, key: PRNGKey, count: int) -> tuple[Array, Array, Array]:
        """``count`` class glyphs: control points ``f32[count, S, 3, 2]``, widths ``f32[count, S]`` and
        the active strokes ``bool[count, S]`` (``S = max_strokes``)."""
        k_n, k_pts, k_conn, k_w = jax.random.split(key, 4)
        s = self.max_strokes
        lo, hi = self.margin, 1.0 - self.margin
        control = jax.random.uniform(k_pts, (count, s, 3, 2), minval=lo, maxval=hi)
        # a connected stroke starts where the previous one ended
        connect = jax.random.bernoulli(k_conn, self.connect_p, (count, s))
        connect = connect.at[:, 0].set(False)
        previous_end = jnp.roll(control[:, :, 2], 1, axis=1)
        control = control.at[:, :, 0].set(jnp.where(connect[..., None], previous_end, control[:, :, 0]))
        widths = jax.random.uniform(k_w, (count, s), minval=self.stroke_width[0], maxval=self.stroke_width[1])
        strokes = jax.random.randint(k_n, (count,), self.min_strokes, self.max_strokes + 1)
        active = jnp.arange(s)[None] < strokes[:, None]
        return control, widths, active

    def render_example(self, key: PRNGKey, control: Array, widths: Array, active: Array) -> Array:
        """One example of a glyph: its random affine map, width jitter and noise; ``f32[resolution²]``."""
        k_rot, k_scale, k_shear, k_shift, k_w, k_noise = jax.random.split(key, 6)
        angle = jax.random.uniform(k_rot, (), minval=-self.rotation, maxval=self.rotation)
        scale = jax.random.uniform(k_scale, (), minval=self.scale[0], maxval=self.scale[1])
        shear = jax.random.uniform(k_shear, (), minval=-self.shear, maxval=self.shear)
        shift = jax.random.uniform(k_shift, (2,), minval=-self.shift, maxval=self.shift)
        points = bezier_points(affine(control, angle, scale, shear, shift))
        jitter = 1.0 + self.width_jitter * jax.random.uniform(k_w, widths.shape, minval=-1.0, maxval=1.0)
        image = render(points, widths * jitter, active, self.resolution, self.supersample, self.softness)
        image = image + self.noise * jax.random.normal(k_noise, image.shape)
        return jnp.clip(image, 0.0, 1.0).reshape(-1)

    def task_labels(self, key: PRNGKey, seq_len: int, single_eval_pos: Array) -> Array:
        """``i32[T]``: context row ``i`` has class ``i mod n``, each query a uniform class of the
        ``n = min(N, sep)`` classes of the task (``N`` its ways)."""
        k_ways, k_query = jax.random.split(key)
        ways = jax.random.randint(k_ways, (), self.min_ways, self.max_ways + 1)
        n = jnp.minimum(ways, single_eval_pos)
        rows = jnp.arange(seq_len)
        query = jax.random.randint(k_query, (seq_len,), 0, n)
        return jnp.where(rows < single_eval_pos, rows % n, query).astype(jnp.int32)

    def sample_dataset(self, key: PRNGKey, seq_len: int, max_features: int, num_features: Array,
                       single_eval_pos: Array) -> tuple[Array, Array]:
        k_labels, k_glyphs, k_examples = jax.random.split(key, 3)
        y = self.task_labels(k_labels, seq_len, single_eval_pos)
        control, widths, active = self.sample_glyphs(k_glyphs, self.max_ways)
        keys = jax.random.split(k_examples, seq_len)
        images = jax.vmap(self.render_example)(keys, control[y], widths[y], active[y])  # [T, P]
        p = self.num_pixels
        x = images[:, :max_features] if max_features <= p else jnp.pad(images, ((0, 0), (0, max_features - p)))
        return jnp.where(feature_mask(num_features, max_features)[None], x, 0.0).astype(jnp.float32), y


__all__ = ["CURVE_POINTS", "StrokesPrior", "affine", "bezier_points", "render"]
