"""The bar distribution as one object: :class:`BarDistribution` (a pytree of borders and logits)."""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
from flax import struct

from pfnjax.distributions.acquisition import expected_improvement, probability_of_improvement, ucb
from pfnjax.distributions.bar import (
    PHI_1,
    cdf,
    entropy,
    icdf,
    log_prob,
    mean,
    median,
    mode,
    pdf,
    probs,
    sample,
    variance,
)
from pfnjax.distributions.borders import validate_logits
from pfnjax.types import Array, PRNGKey


@struct.dataclass
class BarDistribution:
    """``borders [K+1]`` and ``logits [..., K]`` as one pytree; methods call the module functions.

    ``full_support`` is static (not a leaf). Construction does not validate values (it must work
    under ``jit``); call :meth:`validate` on host inputs.

    **Sign convention of the acquisition functions** (:meth:`ei`, :meth:`pi`, :meth:`ucb`): by
    default they score *maximisation* of ``y`` (improvement means ``y > best_f``); pass
    ``maximize=False`` to score minimisation (improvement means ``y < best_f``). :func:`pfnjax.bo.suggest`
    minimises a function by standardising and negating its values and then maximising with the
    default, so its PFN sees a maximisation problem.
    """

    borders: Array
    logits: Array
    full_support: bool = struct.field(pytree_node=False, default=True)

    def validate(self) -> "BarDistribution":
        validate_logits(self.borders, self.logits, self.full_support)
        return self

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.logits.shape[:-1])

    @property
    def num_buckets(self) -> int:
        return self.borders.shape[0] - 1

    def probs(self) -> Array:
        return probs(self.borders, self.logits)

    def log_prob(self, y: Array) -> Array:
        return log_prob(self.borders, self.logits, y, self.full_support)

    def nll(self, y: Array) -> Array:
        return -self.log_prob(y)

    def pdf(self, y: Array) -> Array:
        return pdf(self.borders, self.logits, y, self.full_support)

    def cdf(self, y: Array) -> Array:
        return cdf(self.borders, self.logits, y, self.full_support)

    def icdf(self, q: Array | float | Sequence[float]) -> Array:
        return icdf(self.borders, self.logits, q, self.full_support)

    quantile = icdf

    def median(self) -> Array:
        return median(self.borders, self.logits, self.full_support)

    def mean(self) -> Array:
        return mean(self.borders, self.logits, self.full_support)

    def mode(self) -> Array:
        return mode(self.borders, self.logits, self.full_support)

    def variance(self) -> Array:
        return variance(self.borders, self.logits, self.full_support)

    def stddev(self) -> Array:
        return jnp.sqrt(self.variance())

    def entropy(self) -> Array:
        return entropy(self.borders, self.logits, self.full_support)

    def sample(self, key: PRNGKey, shape: Sequence[int] = ()) -> Array:
        return sample(key, self.borders, self.logits, shape, self.full_support)

    def ei(self, best_f: Array | float, maximize: bool = True) -> Array:
        """Expected improvement over ``best_f``, ``[...]``, in closed form (uniform buckets plus the
        half-normal tails).

        ``maximize=True`` (default): ``E[max(y - best_f, 0)]``, for maximising ``y`` (``best_f`` the
        largest value seen). ``maximize=False``: ``E[max(best_f - y, 0)]``, for minimising
        (``best_f`` the smallest value seen). Always >= 0.
        """
        return expected_improvement(self.borders, self.logits, best_f, maximize, self.full_support)

    def pi(self, best_f: Array | float, maximize: bool = True) -> Array:
        """Probability of improvement: ``P(y > best_f)`` (``maximize=True``, default) or
        ``P(y < best_f)`` (``maximize=False``), ``[...]``."""
        return probability_of_improvement(self.borders, self.logits, best_f, maximize, self.full_support)

    def ucb(self, beta_quantile: float = PHI_1, maximize: bool = True) -> Array:
        """Upper confidence bound: the ``beta_quantile`` quantile of ``y`` (default Φ(1) ≈ 0.841, one
        standard deviation above the median of a normal); with ``maximize=False`` the lower bound,
        the ``1 - beta_quantile`` quantile, for minimising."""
        return ucb(self.borders, self.logits, beta_quantile, maximize, self.full_support)
