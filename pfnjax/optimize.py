"""Multi-start projected optimisation with optax, shared by the acquisition maximiser
(:func:`pfnjax.bo.maximize_acquisition`) and the GP baselines' MLE-II fits (``experiments/``)."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from pfnjax.types import Array


def multistart_minimize(
    loss: Callable[[Any], Array],
    starts: Any,
    tx: optax.GradientTransformation,
    steps: int,
    *,
    project: Callable[[Any], Any] = lambda p: p,
    batched_loss: bool = False,
    state_value: bool = False,
) -> tuple[Any, Array]:
    """Minimise ``loss`` from every start: ``steps`` updates of ``tx``, each followed by ``project``
    (e.g. clipping into a box, so optima on its faces are reached exactly). Pure; use under ``jit``.

    Args:
        loss: a scalar loss of one start's parameters; with ``batched_loss``, a function of all
            the starts at once (leading axis) returning one loss per start. The batched form
            differentiates the sum of the losses, so it is only for transformations that act
            elementwise (Adam, SGD), where it equals optimising each start alone.
        starts: a pytree whose leaves have a leading axis of starts.
        tx: the optax transformation; one that takes extra arguments (L-BFGS's line search) gets
            ``value``, ``grad`` and ``value_fn``.
        state_value: read the value and gradient from the optimizer state, where a line search
            stored them (:func:`optax.value_and_grad_from_state`).
    Returns:
        ``(final parameters of every start, their losses [starts])``.
    """
    tx = optax.with_extra_args_support(tx)
    if batched_loss:
        if state_value:
            raise ValueError("state_value needs per-start optimisation (batched_loss=False)")
        grad = jax.grad(lambda p: jnp.sum(loss(p)))

        def body(carry, _):
            p, opt_state = carry
            updates, opt_state = tx.update(grad(p), opt_state, p)
            return (project(optax.apply_updates(p, updates)), opt_state), None

        (final, _), _ = jax.lax.scan(body, (starts, tx.init(starts)), None, length=steps)
        return final, loss(final)

    value_and_grad = optax.value_and_grad_from_state(loss) if state_value else None

    def run(p0):
        def body(carry, _):
            p, opt_state = carry
            if value_and_grad is not None:
                value, g = value_and_grad(p, state=opt_state)
            else:
                value, g = jax.value_and_grad(loss)(p)
            updates, opt_state = tx.update(g, opt_state, p, value=value, grad=g, value_fn=loss)
            return (project(optax.apply_updates(p, updates)), opt_state), None

        (p, _), _ = jax.lax.scan(body, (p0, tx.init(p0)), None, length=steps)
        return p, loss(p)

    return jax.vmap(run)(starts)


def best_start(params: Any, losses: Array) -> Any:
    """The parameters of the start with the lowest finite loss."""
    best = jnp.argmin(jnp.where(jnp.isfinite(losses), losses, jnp.inf))
    return jax.tree.map(lambda v: v[best], params)


__all__ = ["best_start", "multistart_minimize"]
