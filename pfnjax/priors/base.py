"""The prior interface, split samplers and batch assembly.

A prior is a frozen (hashable) config dataclass with a ``sample_dataset`` method
that draws ONE dataset. :func:`sample_batch` turns it into the batched sampler
``(key, BatchShape) -> Batch`` with ``jax.vmap``; it is pure and runs under
``jit`` on the accelerator (no host round trips, no Python loop over datasets).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Literal, Protocol, runtime_checkable

import chex
import jax
import jax.numpy as jnp

from pfnjax.types import Array, Batch, BatchShape, PRNGKey

Task = Literal["regression", "classification"]


@runtime_checkable
class Prior(Protocol):
    """What every prior config provides.

    ``sample_dataset(key, seq_len, max_features, num_features, single_eval_pos)``
    returns ``(x f32[T, F_max], y)`` for one dataset, where ``y`` is ``f32[T]``
    for regression and ``i32[T]`` for classification. Columns ``>= num_features``
    of ``x`` must be zero, and must not influence ``y``. ``num_features`` and
    ``single_eval_pos`` are traced scalars; ``seq_len`` and ``max_features`` are
    static ints.
    """

    task: Task

    def sample_dataset(
        self, key: PRNGKey, seq_len: int, max_features: int, num_features: Array, single_eval_pos: Array
    ) -> tuple[Array, Array]: ...


# --------------------------------------------------------------------------- split samplers

SplitSampler = Callable[[PRNGKey, int], Array]


def uniform_split(key: PRNGKey, seq_len: int) -> Array:
    """``single_eval_pos ~ U{1, ..., T-1}``: at least one context row and one query."""
    return jax.random.randint(key, (), 1, seq_len, dtype=jnp.int32)


def paper_split(key: PRNGKey, seq_len: int) -> Array:
    """The PFN paper's split: ``P(sep = i) ∝ 1 / (T - i)`` for ``i in 1..T-1`` (favours long contexts)."""
    positions = jnp.arange(1, seq_len)
    logits = -jnp.log((seq_len - positions).astype(jnp.float32))
    return (jax.random.categorical(key, logits) + 1).astype(jnp.int32)


def loguniform_split(key: PRNGKey, seq_len: int) -> Array:
    """``P(sep = i) ∝ 1 / i`` for ``i in 1..T-1``: every scale of context size gets equal weight,
    so small contexts (where the posterior changes fastest) are trained as often as large ones."""
    positions = jnp.arange(1, seq_len)
    logits = -jnp.log(positions.astype(jnp.float32))
    return (jax.random.categorical(key, logits) + 1).astype(jnp.int32)


SPLIT_SAMPLERS: dict[str, SplitSampler] = {
    "uniform": uniform_split,
    "paper": paper_split,
    "loguniform": loguniform_split,
}


def get_split_sampler(name: str) -> SplitSampler:
    """Look up a split sampler by name (``uniform`` or ``paper``)."""
    if name not in SPLIT_SAMPLERS:
        raise ValueError(f"unknown split sampler {name!r}; choose one of {sorted(SPLIT_SAMPLERS)}")
    return SPLIT_SAMPLERS[name]


# --------------------------------------------------------------------------- feature counts


def all_features(key: PRNGKey, max_features: int) -> Array:
    """Every dataset uses all ``max_features`` columns."""
    del key
    return jnp.asarray(max_features, jnp.int32)


def uniform_feature_count(min_features: int = 1) -> Callable[[PRNGKey, int], Array]:
    """A ``num_features_sampler``: ``(key, max_features) -> i32`` uniform on ``{min_features..max_features}``."""
    if not isinstance(min_features, int) or min_features < 1:
        raise ValueError(f"min_features must be an int >= 1, got {min_features!r}")

    def sampler(key: PRNGKey, max_features: int) -> Array:
        if min_features > max_features:
            raise ValueError(f"min_features={min_features} exceeds max_features={max_features}")
        return jax.random.randint(key, (), min_features, max_features + 1, dtype=jnp.int32)

    return sampler


def loguniform_feature_count(min_features: int = 1) -> Callable[[PRNGKey, int], Array]:
    """A ``num_features_sampler`` drawing ``floor(exp(u))``, ``u ~ U[log min, log (max + 1)]``:
    ``P(f) = log((f + 1) / f) / log((max + 1) / min)``, about ``1/f``, so narrow datasets (most real
    tables) are common while every width up to ``max_features`` is still trained."""
    if not isinstance(min_features, int) or min_features < 1:
        raise ValueError(f"min_features must be an int >= 1, got {min_features!r}")

    def sampler(key: PRNGKey, max_features: int) -> Array:
        if min_features > max_features:
            raise ValueError(f"min_features={min_features} exceeds max_features={max_features}")
        u = jax.random.uniform(key, (), jnp.float32, jnp.log(min_features), jnp.log(max_features + 1.0))
        return jnp.clip(jnp.floor(jnp.exp(u)), min_features, max_features).astype(jnp.int32)

    return sampler


def feature_mask(num_features: Array, max_features: int) -> Array:
    """``bool[F_max]``: True for the used columns ``< num_features``."""
    return jnp.arange(max_features) < num_features


# --------------------------------------------------------------------------- batch assembly


def sample_datasets(
    prior: Prior,
    dataset_keys: PRNGKey,
    shape: BatchShape,
    *,
    split: SplitSampler | str = uniform_split,
    num_features_sampler: Callable[[PRNGKey, int], Array] = all_features,
) -> Batch:
    """Draw one dataset per key in ``dataset_keys`` (a key array of shape ``[B']``).

    ``shape.seq_len`` and ``shape.num_features`` fix each dataset's shape; the batch size is the
    number of keys. Each dataset depends only on its own key, so a batch can be sharded over
    devices, or cut into micro-batches, without changing any dataset.
    """
    split_fn = get_split_sampler(split) if isinstance(split, str) else split

    def one(k: PRNGKey) -> tuple[Array, Array, Array, Array]:
        k_split, k_feat, k_data = jax.random.split(k, 3)
        sep = split_fn(k_split, shape.seq_len)
        n_feat = jnp.asarray(num_features_sampler(k_feat, shape.num_features), jnp.int32)
        x, y = prior.sample_dataset(k_data, shape.seq_len, shape.num_features, n_feat, sep)
        # a prior written by a user gets a clear message here rather than a broadcasting error later
        chex.assert_shape(x, (shape.seq_len, shape.num_features), custom_message=f"{type(prior).__name__} x")
        chex.assert_shape(y, (shape.seq_len,), custom_message=f"{type(prior).__name__} y")
        x = jnp.where(feature_mask(n_feat, shape.num_features), x, 0.0).astype(jnp.float32)
        return x, y, sep, n_feat

    x, y, sep, n_feat = jax.vmap(one)(dataset_keys)
    return Batch(x=x, y=y, single_eval_pos=sep, num_features=n_feat)


def sample_batch(
    prior: Prior,
    key: PRNGKey,
    shape: BatchShape,
    *,
    split: SplitSampler | str = uniform_split,
    num_features_sampler: Callable[[PRNGKey, int], Array] = all_features,
) -> Batch:
    """Draw ``shape.batch_size`` independent datasets from ``prior``.

    Pure and jit-compatible (``prior``, ``shape`` and the samplers are static). Dataset ``b``
    uses the key ``jax.random.split(key, B)[b]`` (see :func:`sample_datasets`).
    """
    return sample_datasets(
        prior, jax.random.split(key, shape.batch_size), shape, split=split, num_features_sampler=num_features_sampler
    )


def make_batch_sampler(
    prior: Prior,
    shape: BatchShape,
    *,
    split: SplitSampler | str = uniform_split,
    num_features_sampler: Callable[[PRNGKey, int], Array] = all_features,
) -> Callable[[PRNGKey], Batch]:
    """A jitted ``key -> Batch`` for a fixed prior and shape."""

    @jax.jit
    def sampler(key: PRNGKey) -> Batch:
        return sample_batch(prior, key, shape, split=split, num_features_sampler=num_features_sampler)

    return sampler


# --------------------------------------------------------------------------- registry

_PRIOR_FACTORIES: dict[str, Callable[..., Prior]] = {}
# config classes by class name, for rebuilding saved priors (:func:`prior_from_spec`)
_PRIOR_CLASSES: dict[str, type] = {}


def register_prior_class(cls: type) -> type:
    """Class decorator: a prior config class that saved specs may name (registered priors, and
    configs only built by factories or nested in other priors, such as mixtures)."""
    if _PRIOR_CLASSES.get(cls.__name__, cls) is not cls:
        raise ValueError(f"two prior classes are named {cls.__name__!r}")
    _PRIOR_CLASSES[cls.__name__] = cls
    return cls


def register_prior(name: str) -> Callable[[type], type]:
    """Class decorator: make a prior config constructible by name (``--prior NAME``)."""

    def wrap(cls: type) -> type:
        if name in _PRIOR_FACTORIES:
            raise ValueError(f"prior {name!r} is registered twice")
        _PRIOR_FACTORIES[name] = cls
        return register_prior_class(cls)

    return wrap


def register_prior_factory(name: str, factory: Callable[..., Prior]) -> None:
    """Register a function that builds a prior (for presets such as mixtures)."""
    if name in _PRIOR_FACTORIES:
        raise ValueError(f"prior {name!r} is registered twice")
    _PRIOR_FACTORIES[name] = factory


def prior_names() -> list[str]:
    """Names accepted by :func:`get_prior`."""
    return sorted(_PRIOR_FACTORIES)


def get_prior(name: str, **overrides) -> Prior:
    """Build the prior registered as ``name``, with config fields overridden by keyword."""
    if name not in _PRIOR_FACTORIES:
        raise ValueError(f"unknown prior {name!r}; choose one of {prior_names()}")
    return _PRIOR_FACTORIES[name](**overrides)


def prior_spec(prior: Prior) -> dict:
    """The JSON spec of a prior config, saved with every run: ``{"class": name, field: value...}``,
    recursively for nested prior configs. :func:`prior_from_spec` rebuilds the same prior."""
    if not dataclasses.is_dataclass(prior) or type(prior).__name__ not in _PRIOR_CLASSES:
        raise ValueError(f"{type(prior).__name__} is not a registered prior config class "
                         "(decorate it with @register_prior or @register_prior_class)")
    fields = {f.name: _spec_value(getattr(prior, f.name)) for f in dataclasses.fields(prior) if f.init}
    return {"class": type(prior).__name__, **fields}


def _spec_value(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return prior_spec(value)
    if isinstance(value, (list, tuple)):
        return [_spec_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _spec_value(v) for k, v in value.items()}
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    raise ValueError(f"prior field value {value!r} cannot be saved as JSON")


def prior_from_spec(spec: dict) -> Prior:
    """Rebuild a prior from :func:`prior_spec` (JSON lists become the tuples the configs hold)."""
    spec = dict(spec)
    name = spec.pop("class", None)
    if name not in _PRIOR_CLASSES:
        raise ValueError(f"unknown prior class {name!r} in a saved spec; known: {sorted(_PRIOR_CLASSES)}")
    spec.pop("task", None)  # not an init field; written by pfnjax 0.1
    return _PRIOR_CLASSES[name](**{k: _from_spec_value(v) for k, v in spec.items()})


def _from_spec_value(value):
    if isinstance(value, dict) and "class" in value:
        return prior_from_spec(value)
    if isinstance(value, list):
        return tuple(_from_spec_value(v) for v in value)
    return value
