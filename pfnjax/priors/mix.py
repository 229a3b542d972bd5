r"""Prior mixtures, feature-count samplers, and the TabPFN v1 prior bag.

* :class:`MixturePrior`: per dataset, component :math:`i \sim \mathrm{Categorical}(w)`, then a dataset from
  prior :math:`i`. Under ``jax.vmap`` the ``lax.switch`` over components becomes a ``select``, so **every
  component is evaluated for every dataset** and the sampling cost is the sum of the components' costs.
* :class:`GPClassificationPrior`: a regression prior (a GP by default) turned into classification by the
  SCM prior's own tabular post-processing (:func:`pfnjax.priors.scm.postprocess_classification`: categorical
  features, missing values, outlier clipping, z-scoring, and the same class discretisation).
* ``tabpfn_v1_mix`` (registered): TabPFN v1's prior bag, the SCM prior with probability ``scm_weight``
  (default 0.9; TabPFN used 0.73 to 1) and the GP-classification prior otherwise.
* ``tabular_regression_mix`` (registered): a regression prior for real tables, mixing the BNN prior,
  the GP prior with hyperpriors (smooth, with irrelevant features) and the SCM prior's continuous
  targets (:class:`pfnjax.priors.scm.SCMRegressionPrior`, with categorical columns and missing values).
* :func:`pfnjax.priors.base.uniform_feature_count` (re-exported here): a ``num_features_sampler`` for :func:`pfnjax.priors.base.sample_batch`.

Rescaling x by the used-feature fraction (TabPFN: ``x * F_max / F_used``) is **not** done by the priors:
the model's x encoder does it (``ModelConfig.feature_scaling``), so the priors return z-scored used
columns and zero unused columns.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from pfnjax.priors.base import (  # noqa: F401  (split and feature-count samplers re-exported for convenience)
    Prior,
    paper_split,
    register_prior,
    uniform_feature_count,
    uniform_split,
)
from pfnjax.numerics import standardize
from pfnjax.priors.bnn import BNNPrior
from pfnjax.priors.gp import GPHyperPrior, GPPrior
from pfnjax.priors.scm import SCMPrior, SCMRegressionPrior
from pfnjax.priors.tabular import TabularClassificationConfig, postprocess_classification
from pfnjax.types import Array, PRNGKey

__all__ = [
    "GPClassificationPrior",
    "MixturePrior",
    "StandardizedTargets",
    "paper_split",
    "tabpfn_v1_mix",
    "tabular_regression_mix",
    "uniform_feature_count",
    "uniform_split",
]


# --------------------------------------------------------------------------- mixtures


@register_prior()
@dataclasses.dataclass(frozen=True)
class MixturePrior:
    """Draw each dataset from ``priors[i]`` with probability ``weights[i] / sum(weights)``.

    All components must share ``task``; classification components must return ``int32`` labels and
    regression components ``float32`` targets (checked when traced). Dataset ``key`` is split into
    ``(k_component, k_data)``; :meth:`sample_component` exposes the choice.
    """

    priors: tuple[Any, ...]
    weights: tuple[float, ...]
    task: str = dataclasses.field(default="", init=False)

    def __post_init__(self) -> None:
        priors, weights = tuple(self.priors), tuple(float(w) for w in self.weights)
        object.__setattr__(self, "priors", priors)
        object.__setattr__(self, "weights", weights)
        if not priors:
            raise ValueError("MixturePrior needs at least one component")
        if len(weights) != len(priors):
            raise ValueError(f"got {len(priors)} priors but {len(weights)} weights")
        if any(not w >= 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"weights must be non-negative with a positive sum, got {weights}")
        for p in priors:
            if not isinstance(p, Prior):
                raise ValueError(f"component {p!r} does not implement the Prior interface")
        tasks = {p.task for p in priors}
        if len(tasks) != 1:
            raise ValueError(f"all components must share a task, got {[p.task for p in priors]}")
        object.__setattr__(self, "task", tasks.pop())

    @property
    def makes_missing(self) -> bool:
        """Whether any component makes missing values."""
        return any(getattr(p, "makes_missing", False) for p in self.priors)

    @property
    def input_range(self) -> tuple[float, float] | None:
        """The components' shared input box (None unless they all have the same one)."""
        ranges = {getattr(p, "input_range", None) for p in self.priors}
        return ranges.pop() if len(ranges) == 1 else None

    @property
    def probabilities(self) -> tuple[float, ...]:
        total = sum(self.weights)
        return tuple(w / total for w in self.weights)

    def sample_component(self, key: PRNGKey) -> Array:
        """``i32``: the index of the component this dataset key selects."""
        k_comp, _ = jax.random.split(key)
        logits = jnp.log(jnp.asarray(self.probabilities, jnp.float32))
        return jax.random.categorical(k_comp, logits).astype(jnp.int32)

    def _check_outputs(self, key: PRNGKey, seq_len: int, max_features: int, num_features, single_eval_pos) -> None:
        want = jnp.int32 if self.task == "classification" else jnp.float32
        specs = [
            jax.ShapeDtypeStruct(jnp.shape(a), a.dtype if hasattr(a, "dtype") else jnp.result_type(a))
            for a in (key, num_features, single_eval_pos)
        ]
        for i, p in enumerate(self.priors):
            x, y = jax.eval_shape(lambda k, n, s, p=p: p.sample_dataset(k, seq_len, max_features, n, s), *specs)
            if y.dtype != want or y.shape != (seq_len,) or x.shape != (seq_len, max_features):
                raise ValueError(
                    f"component {i} ({type(p).__name__}) returns x {x.shape} {x.dtype}, y {y.shape} {y.dtype}; "
                    f"a {self.task} mixture needs x ({seq_len}, {max_features}) and y ({seq_len},) {jnp.dtype(want)}"
                )

    def sample_dataset_with_component(
        self, key: PRNGKey, seq_len: int, max_features: int, num_features: Array, single_eval_pos: Array
    ) -> tuple[Array, Array, Array]:
        """``(x, y, component index)``."""
        self._check_outputs(key, seq_len, max_features, num_features, single_eval_pos)
        _, k_data = jax.random.split(key)
        comp = self.sample_component(key)
        branches = [
            (lambda k, n, s, p=p: tuple(p.sample_dataset(k, seq_len, max_features, n, s))) for p in self.priors
        ]
        if len(branches) == 1:
            x, y = branches[0](k_data, num_features, single_eval_pos)
        else:
            x, y = jax.lax.switch(comp, branches, k_data, num_features, single_eval_pos)
        return x, y, comp

    def sample_dataset(
        self, key: PRNGKey, seq_len: int, max_features: int, num_features: Array, single_eval_pos: Array
    ) -> tuple[Array, Array]:
        x, y, _ = self.sample_dataset_with_component(key, seq_len, max_features, num_features, single_eval_pos)
        return x, y


# --------------------------------------------------------------------------- GP -> classification


@register_prior()
@dataclasses.dataclass(frozen=True)
class GPClassificationPrior(TabularClassificationConfig):
    """A regression prior's draw (default: :class:`GPPrior`) discretised into classes like the SCM prior.

    ``x, y = base.sample_dataset(...)``, then :func:`pfnjax.priors.scm.postprocess_classification` with this
    config (categorical features, NaN, z-scoring, classes; see :mod:`pfnjax.priors.scm`). TabPFN v1 drew the
    GP's hyperparameters per dataset; pass such a prior as ``base`` (e.g. ``get_prior("gp_hyper")``) for that.
    """

    base: Any = GPPrior()

    def __post_init__(self) -> None:
        super().__post_init__()
        if getattr(self.base, "task", None) != "regression":
            raise ValueError(f"base must be a regression prior, got {self.base!r}")

    def sample_dataset_with_info(
        self, key: PRNGKey, seq_len: int, max_features: int, num_features: Array, single_eval_pos: Array
    ) -> tuple[Array, Array, dict[str, Array]]:
        k_base, k_post = jax.random.split(key)
        x, y = self.base.sample_dataset(k_base, seq_len, max_features, num_features, single_eval_pos)
        return postprocess_classification(k_post, x, y, single_eval_pos, num_features, self)

    def sample_dataset(
        self, key: PRNGKey, seq_len: int, max_features: int, num_features: Array, single_eval_pos: Array
    ) -> tuple[Array, Array]:
        x, y, _ = self.sample_dataset_with_info(key, seq_len, max_features, num_features, single_eval_pos)
        return x, y


# --------------------------------------------------------------------------- the TabPFN v1 prior bag

_SHARED_FIELDS = {f.name for f in dataclasses.fields(TabularClassificationConfig) if f.init}
_SCM_FIELDS = {f.name for f in dataclasses.fields(SCMPrior) if f.init}


@register_prior("tabpfn_v1_mix")
def tabpfn_v1_mix(scm_weight: float = 0.9, gp_base: Any = None, **overrides) -> MixturePrior:
    """TabPFN v1's prior bag: :class:`SCMPrior` w.p. ``scm_weight``, else :class:`GPClassificationPrior`.

    ``scm_weight`` must lie in TabPFN's range [0.73, 1]. Keyword ``overrides`` naming a field of
    :class:`TabularClassificationConfig` (e.g. ``max_num_classes``, ``missing_rate``) apply to both
    components; other :class:`SCMPrior` fields apply to the SCM only. ``gp_base`` replaces the GP
    component's regression prior (default :class:`GPPrior`).
    """
    if not 0.73 <= scm_weight <= 1.0:
        raise ValueError(f"scm_weight must be in [0.73, 1] (TabPFN v1's range), got {scm_weight}")
    unknown = set(overrides) - _SCM_FIELDS
    if unknown:
        raise TypeError(f"unknown tabpfn_v1_mix options {sorted(unknown)}")
    shared = {k: v for k, v in overrides.items() if k in _SHARED_FIELDS}
    scm = SCMPrior(**overrides)
    gp = GPClassificationPrior(**shared, **({} if gp_base is None else {"base": gp_base}))
    return MixturePrior(priors=(scm, gp), weights=(scm_weight, 1.0 - scm_weight))




# --------------------------------------------------------------------------- a regression prior bag


@register_prior()
@dataclasses.dataclass(frozen=True)
class StandardizedTargets:
    """A regression prior whose targets are z-scored over each dataset's rows (population std,
    floored at ``std_floor``), as :class:`pfnjax.sklearn.PFNRegressor` standardises real targets.

    In a mixture this keeps every component on one scale: a GP's outputscale or a BNN's weights then
    shape the function, not the units of ``y``, and one set of bar borders serves all components.
    """

    base: Any
    std_floor: float = 1e-6
    task: str = dataclasses.field(default="regression", init=False)

    def __post_init__(self) -> None:
        if getattr(self.base, "task", None) != "regression":
            raise ValueError(f"base must be a regression prior, got {self.base!r}")
        if not self.std_floor > 0:
            raise ValueError(f"std_floor must be > 0, got {self.std_floor}")

    @property
    def makes_missing(self) -> bool:
        return bool(getattr(self.base, "makes_missing", False))

    @property
    def input_range(self) -> tuple[float, float] | None:
        return getattr(self.base, "input_range", None)

    def sample_dataset(
        self, key: PRNGKey, seq_len: int, max_features: int, num_features: Array, single_eval_pos: Array
    ) -> tuple[Array, Array]:
        x, y = self.base.sample_dataset(key, seq_len, max_features, num_features, single_eval_pos)
        return x, standardize(y, axis=0, min_std=self.std_floor)


# The GP component for real tables: x ~ N(0, I) like standardised columns, lengthscales
# Gamma(2, rate 1.5) (mean 1.3) times sqrt(used features), so that functions of tens of z-scored
# features are as smooth as those of a few rather than white noise, half of the features irrelevant
# on average, and log-normal noise spanning near-noiseless to very noisy targets. Its targets are
# z-scored (StandardizedTargets) like the other components'.
TABULAR_GP_HYPER = dict(kernel="matern52", x_dist="normal", lengthscale_concentration=2.0, lengthscale_rate=1.5,
                        lengthscale_dim_scaling=True, noise_prior="lognormal", noise_logmean=-3.0, noise_logstd=1.5,
                        irrelevant_feature_p=0.5)


@register_prior("tabular_regression_mix")
def tabular_regression_mix(bnn_weight: float = 0.5, gp_weight: float = 0.3, scm_weight: float = 0.2,
                           missing_rate: float = 0.02, **scm_overrides) -> MixturePrior:
    """A regression prior bag for real tables: :class:`BNNPrior` (w.p. ``bnn_weight``),
    :class:`GPHyperPrior` with :data:`TABULAR_GP_HYPER` and z-scored targets (``gp_weight``) and
    :class:`SCMRegressionPrior` (``scm_weight``, with ``missing_rate`` and ``scm_overrides``).

    Weights are normalised. Only the SCM component makes categorical columns and missing values.
    Every component has signal at the widths real tables have: on 200 training rows a random forest
    reaches a median held-out R² of 0.4 to 0.7 at 2 to 15 features on each of them
    (``experiments/tabular/README.md``). Train on it with log-uniform feature counts
    (``feature_count_dist="loguniform"``): with uniform counts up to 50, wide datasets dominated and
    a first ``reg-small`` stayed on the marginal's plateau.
    """
    weights = (bnn_weight, gp_weight, scm_weight)
    if min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"weights must be non-negative with a positive sum, got {weights}")
    scm = SCMRegressionPrior(missing_rate=missing_rate, **scm_overrides)
    gp = StandardizedTargets(GPHyperPrior(**TABULAR_GP_HYPER))
    return MixturePrior(priors=(BNNPrior(), gp, scm), weights=weights)


