"""The prior interface, split samplers and batch assembly.

A prior is a frozen (hashable) config dataclass with a ``sample_dataset`` method
that draws ONE dataset. :func:`sample_batch` turns it into the batched sampler
``(key, BatchShape) -> Batch`` with ``jax.vmap``; it is pure and runs under
``jit`` on the accelerator (no host round trips, no Python loop over datasets).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import sys
from typing import Any, Callable, Protocol, runtime_checkable

import chex
import jax
import jax.numpy as jnp
import numpy as np

from pfnjax.types import Array, Batch, BatchShape, PRNGKey

#: A prior's task names the head that serves it (:func:`pfnjax.heads.head_class_for_task`): the
#: built-in heads serve ``"regression"`` (bar distribution) and ``"classification"``; a head of your
#: own may serve another task (``docs/architecture.md`` adds ``"binary"``).
Task = str


@runtime_checkable
class Prior(Protocol):
    """What every prior config provides.

    ``sample_dataset(key, seq_len, max_features, num_features, single_eval_pos)``
    returns ``(x f32[T, F_max], y)`` for one dataset, where ``y`` is ``f32[T]``
    for regression and ``i32[T]`` for classification. Columns ``>= num_features``
    of ``x`` must be zero, and must not influence ``y``. ``num_features`` and
    ``single_eval_pos`` are traced scalars; ``seq_len`` and ``max_features`` are
    static ints.

    Optional members, which say what the prior is (read them with :func:`prior_info`; absent
    means the default):

    * ``makes_missing: bool`` (default False): whether ``x`` can hold NaN (missing values). A
      model trained on the prior then accepts NaN inputs.
    * ``input_range: tuple[float, float] | None`` (default None): the box every used ``x`` value
      lies in (``(0.0, 1.0)`` for unit-cube inputs), so a trained model can warn about inputs outside it.
    * ``exact_predictive(x_ctx, y_ctx, x_qry, ctx_mask=None) -> (mean, var)``: for priors with a
      tractable posterior, the exact Gaussian posterior predictive of ``y`` at the queries (rows
      of the context where ``ctx_mask`` is False are ignored). Evaluators use it as the oracle.
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
    """Look up a split sampler by name (``uniform``, ``paper`` or ``loguniform``)."""
    if name not in SPLIT_SAMPLERS:
        raise ValueError(f"unknown split sampler {name!r}; choose one of {sorted(SPLIT_SAMPLERS)}")
    return SPLIT_SAMPLERS[name]


def split_pmf(name: str, seq_len: int) -> np.ndarray:
    """``P(sep = i)`` for ``i = 0..T-1`` (0 at ``i = 0``) of the split sampler ``name``."""
    get_split_sampler(name)
    i = np.arange(1, seq_len, dtype=np.float64)
    weights = {"uniform": np.ones_like(i), "paper": 1.0 / (seq_len - i), "loguniform": 1.0 / i}[name]
    return np.concatenate([[0.0], weights / weights.sum()])


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
    single_eval_pos: Array | None = None,
) -> Batch:
    """Draw one dataset per key in ``dataset_keys`` (a key array of shape ``[B']``).

    ``shape.seq_len`` and ``shape.num_features`` fix each dataset's shape; the batch size is the
    number of keys. Each dataset depends only on its own key, so a batch can be sharded over
    devices, or cut into micro-batches, without changing any dataset. ``single_eval_pos`` (a
    traced ``i32`` scalar) gives every dataset that context size instead of drawing one each.
    """
    split_fn = get_split_sampler(split) if isinstance(split, str) else split

    def one(k: PRNGKey) -> tuple[Array, Array, Array, Array]:
        k_split, k_feat, k_data = jax.random.split(k, 3)
        sep = split_fn(k_split, shape.seq_len) if single_eval_pos is None else jnp.asarray(single_eval_pos, jnp.int32)
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


def register_prior(name: str | None = None) -> Callable[[Any], Any]:
    """Decorator: register a prior config class, or a function that builds a prior.

    ``@register_prior("gp")`` on a class makes it trainable by name (``--prior gp``) and lets
    saved specs rebuild it; ``@register_prior()`` on a class only lets specs rebuild it (for
    configs nested in other priors, such as mixture components); ``@register_prior("mix")`` on a
    function registers a named builder (its keyword arguments are the prior's settings).
    """

    def wrap(obj: Any) -> Any:
        if isinstance(obj, type):
            if not dataclasses.is_dataclass(obj):
                raise TypeError(f"register_prior: {obj.__name__} must be a (frozen) dataclass")
            if _PRIOR_CLASSES.get(obj.__name__, obj) is not obj:
                raise ValueError(f"two prior classes are named {obj.__name__!r}")
            _PRIOR_CLASSES[obj.__name__] = obj
        elif not callable(obj) or name is None:
            raise TypeError(f"register_prior needs a prior class, or a name and a function; got {obj!r}")
        if name is not None:
            if _PRIOR_FACTORIES.get(name, obj) is not obj:
                raise ValueError(f"prior {name!r} is registered twice")
            _PRIOR_FACTORIES[name] = obj
        return obj

    return wrap


def ensure_registered(cls: type) -> type:
    """Register ``cls`` for saved specs unless it is registered already (for prior instances
    handed to a config: their run must be able to rebuild them in this process)."""
    if _PRIOR_CLASSES.get(cls.__name__) is not cls:
        register_prior()(cls)
    return cls


def prior_names() -> list[str]:
    """Names accepted by :func:`get_prior` (besides ``module:Class``)."""
    return sorted(_PRIOR_FACTORIES)


def resolve_prior(name: str) -> Callable[..., Prior]:
    """The class or builder registered as ``name``; ``"module:Class"`` imports ``module`` (a module
    the user named) and takes its attribute ``Class``."""
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ValueError(f"prior {name!r}: cannot import module {module_name!r}: {exc}") from exc
        obj = getattr(module, attr, None)
        if obj is None:
            raise ValueError(f"prior {name!r}: module {module_name!r} has no attribute {attr!r}")
        if isinstance(obj, type):
            ensure_registered(obj)
        return obj
    if name not in _PRIOR_FACTORIES:
        import difflib

        close = difflib.get_close_matches(name, list(_PRIOR_FACTORIES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown prior {name!r}{hint}; choose one of {prior_names()}, or module:Class for a "
                         "prior class of your own")
    return _PRIOR_FACTORIES[name]


def _settings_of(factory: Callable[..., Prior]) -> tuple[list[str], bool]:
    """``(named settings, accepts more keywords)`` of a prior class or builder."""
    if isinstance(factory, type) and dataclasses.is_dataclass(factory):
        return [f.name for f in dataclasses.fields(factory) if f.init], False
    params = inspect.signature(factory).parameters.values()
    named = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return named, any(p.kind == p.VAR_KEYWORD for p in params)


def check_prior_settings(name: str, settings: dict) -> None:
    """Raise a ``ValueError`` naming the valid settings when ``name`` takes no such keyword
    (builders that take ``**overrides`` are checked by building the prior)."""
    factory = resolve_prior(name)
    named, more = _settings_of(factory)
    unknown = sorted(set(settings) - set(named))
    if unknown and not more:
        raise ValueError(f"prior {name!r} has no setting(s) {unknown}; its settings: {named}")
    if unknown:
        get_prior(name, **settings)


def get_prior(name: str, **overrides) -> Prior:
    """Build the prior registered as ``name`` (or ``module:Class``) with settings overridden by keyword."""
    factory = resolve_prior(name)
    named, more = _settings_of(factory)
    unknown = sorted(set(overrides) - set(named))
    if unknown and not more:
        raise ValueError(f"prior {name!r} has no setting(s) {unknown}; its settings: {named}")
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    try:
        return factory(**overrides)
    except TypeError as exc:
        raise ValueError(f"prior {name!r}: {exc}; its settings: {named} (and those it passes on)") from exc


def prior_info(prior: Prior) -> dict:
    """What a prior says about itself (its optional members; see :class:`Prior`), as saved with a run."""
    lo_hi = getattr(prior, "input_range", None)
    return {"task": prior.task, "makes_missing": bool(getattr(prior, "makes_missing", False)),
            "input_range": None if lo_hi is None else [float(lo_hi[0]), float(lo_hi[1])],
            "exact_predictive": callable(getattr(prior, "exact_predictive", None))}


def prior_spec(prior: Prior) -> dict:
    """The JSON spec of a prior config, saved with every run: ``{"class": name, "module": ...,
    field: value...}``, recursively for nested prior configs. :func:`prior_from_spec` rebuilds it."""
    if not dataclasses.is_dataclass(prior) or _PRIOR_CLASSES.get(type(prior).__name__) is not type(prior):
        raise ValueError(f"{type(prior).__name__} is not a registered prior config class "
                         "(decorate it with @register_prior)")
    fields = {f.name: _spec_value(getattr(prior, f.name)) for f in dataclasses.fields(prior) if f.init}
    spec = {"class": type(prior).__name__, **fields}
    if not type(prior).__module__.startswith("pfnjax."):
        spec["module"] = type(prior).__module__  # where a user's prior lives (named in errors, never imported)
    return spec


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
    """Rebuild a prior from :func:`prior_spec` (JSON lists become the tuples the configs hold).

    Only registered prior classes are rebuilt: a spec never makes this process import anything. A
    prior of the user's own is rebuilt once its module is imported (``pfnjax eval --import MODULE``,
    ``pfnjax.load(run, import_modules=[...])``).
    """
    spec = dict(spec)
    name = spec.pop("class", None)
    module = spec.pop("module", None)
    if name not in _PRIOR_CLASSES:
        where = f" from module {module!r}" if module else ""
        loaded = "" if module is None or module in sys.modules else f" (module {module!r} is not imported)"
        raise ValueError(f"unknown prior class {name!r}{where} in a saved spec{loaded}; a run's files never make "
                         f"pfnjax import code: if you trust the run, import the module that registers it first"
                         f"{f' (--import {module})' if module else ''}; registered: {sorted(_PRIOR_CLASSES)}")
    spec.pop("task", None)  # not an init field; written by pfnjax 0.1
    return _PRIOR_CLASSES[name](**{k: _from_spec_value(v) for k, v in spec.items()})


def _from_spec_value(value):
    if isinstance(value, dict) and "class" in value:
        return prior_from_spec(value)
    if isinstance(value, list):
        return tuple(_from_spec_value(v) for v in value)
    return value


_DISCOVERED = False


def discover_priors() -> None:
    """Import every module of :mod:`pfnjax.priors` once, so each registers its priors (a new prior
    is one new file in the package; a prior of your own registers itself when its module is imported)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    import pfnjax.priors as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in ("base", "from_config"):
            importlib.import_module(f"pfnjax.priors.{module.name}")
