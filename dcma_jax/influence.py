r"""The influence of each observation on the mean effects, and infinitesimal-jackknife errors.

Weight row ``i`` by ``w_i``; a mean effect ``theta(w)`` depends on the weights twice: through
the covariate distribution the arms are averaged over (``p_i = w_i / sum w``) and through the
fitted parameters. The second is obtained by implicit differentiation of each node's fit at its
optimum: the weighted loss ``L(t, w) = sum_i w_i l_i(t)`` is stationary at ``t_hat(w)``, so

    d t_hat / d w_i = -H^-1 grad l_i(t_hat),   H = sum_i w_i hess l_i(t_hat).

The empirical influence of row ``i`` is ``U_i = w_i d theta / d w_i`` (a multiplicative
perturbation of its weight; ``sum_i U_i = 0`` because ``theta`` does not change when every
weight is scaled), and the infinitesimal-jackknife standard error is ``sqrt(sum_i U_i^2)``
(Jaeckel 1972; Efron 1982) — for smooth M-estimators the sandwich (HC0) delta method.

Exact for the closed-form generators (their fits are the weighted maximum-likelihood optimum;
LinearGaussian's degrees-of-freedom corrected scale is not, which moves no mean effect because
the scale and the coefficients are orthogonal at the optimum). Neural generators have too many
parameters for the Hessian and their fits stop early, away from a stationary point: refused.

The arms are averaged over the observed covariate rows (``draws_per_row`` draws each, common
random numbers across arms) rather than over resampled rows, so the average is differentiable
in the weights. Mean effects only (contrasts, proportions mediated, combinations).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.flatten_util import ravel_pytree

from dcma_jax.arms import Arms
from dcma_jax.errors import ArgumentError
from dcma_jax.estimands import EffectLayout
from dcma_jax.generators.base import apply_batched
from dcma_jax.model import float_dtype, node_data
from dcma_jax.simulate import simulate_rows

if TYPE_CHECKING:
    from dcma_jax.fitted import FittedMediation

#: Largest parameter count of a node whose Hessian is formed.
MAX_PARAMETERS = 500
DRAWS_PER_ROW = 64


def _mean_effects(layout: EffectLayout, arm_means: jax.Array) -> jax.Array:
    """Contrasts, ratios and combinations of the arms' means, in ``layout`` order."""
    out, by_name = [], {}
    for c in layout.contrasts:
        by_name[c.name] = arm_means[c.arm] - arm_means[c.reference]
        out.append(by_name[c.name])
    out += [by_name[num] / by_name[den] for _, num, den in layout.ratios]
    out += [sum(w * arm_means[i] for w, i in m.terms) for m in layout.combinations]
    return jnp.stack(out)


def _names(layout: EffectLayout) -> list[str]:
    return (
        [c.name for c in layout.contrasts]
        + [name for name, _, _ in layout.ratios]
        + [m.name for m in layout.combinations]
    )


def _parameter_influence(fitted: FittedMediation, node: int) -> jax.Array:
    """``d t_hat / d w`` of one node's fit: ``(n, p)``, by implicit differentiation."""
    model, data = fitted.model, fitted.data
    generator = model.generators[node]
    flat, unravel = ravel_pytree(fitted.params[node])
    x, context = node_data(model, data)[node]
    weights = jnp.asarray(data.weights, float_dtype())

    def losses(t):
        return apply_batched(generator, "loss", unravel(t), x, context)

    hessian = jax.hessian(lambda t: jnp.sum(weights * losses(t)))(flat)
    grads = jax.jacrev(losses)(flat)  # (n, p)
    return -jnp.linalg.solve(hessian, grads.T).T


def influence(
    fitted: FittedMediation,
    *,
    effects: str = "natural",
    path_specific: Sequence[str] | None = None,
    path_reference: str | None = None,
    treatment_values: Sequence[float] | None = None,
    reference: object = None,
    draws_per_row: int = DRAWS_PER_ROW,
    seed: int | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Mean effects, their infinitesimal-jackknife SEs and every row's influence on them.

    Bound as ``FittedMediation.influence``. The effect arguments are those of
    :func:`dcma_jax.queries.effects`.

    Returns:
      ``(table, U)``: ``table`` has columns ``effect, functional ("mean"), estimate, ij_se``;
      ``U`` is ``(len(table), n)``, ``U[r, i]`` the influence of row ``i`` on effect ``r``.

    Raises:
      ArgumentError: a node whose generator has more than :data:`MAX_PARAMETERS` parameters
        (a neural fit).
    """
    from dcma_jax import queries

    model, data = fitted.model, fitted.data
    for node, generator, params in zip(
        model.graph.nodes, model.generators, fitted.params, strict=True
    ):
        size = ravel_pytree(params)[0].size
        if size > MAX_PARAMETERS:
            raise ArgumentError(
                f"node {node.name!r} ({type(generator).__name__}) has {size} parameters: the "
                f"influence needs closed-form generators (at most {MAX_PARAMETERS} parameters, "
                "fitted to their optimum); use generators='linear' or the bootstrap"
            )
    estimands = queries.build_estimands(
        data, model, effects, treatment_values, reference, path_specific, path_reference
    )
    layout, dtype = estimands.layout, float_dtype()
    arms = Arms.pack(estimands.arms, dtype)
    key = queries.query_keys(fitted.seed if seed is None else int(seed))[0]
    covariates = jnp.asarray(data.covariates, dtype)
    scale, center = data.outcome_var.scale, data.outcome_var.center

    def theta(params, weights):
        outcome = simulate_rows(model, params, key, covariates, arms, draws_per_row)
        row_means = jnp.mean(outcome, axis=2) * scale + center  # (n_arms, n)
        return _mean_effects(layout, row_means @ (weights / jnp.sum(weights)))

    weights = jnp.asarray(data.weights, dtype)
    estimate = theta(fitted.params, weights)
    by_weights, by_params = jax.jacrev(theta, argnums=(1, 0))(fitted.params, weights)
    total = by_weights  # (rows, n)
    for j in range(len(fitted.params)):
        d_theta = jax.vmap(lambda g: ravel_pytree(g)[0])(by_params[j])  # (rows, p)
        total = total + d_theta @ _parameter_influence(fitted, j).T
    u = np.asarray(total * weights, np.float64)
    table = pd.DataFrame(
        {
            "effect": _names(layout),
            "functional": "mean",
            "estimate": np.asarray(estimate, np.float64),
            "ij_se": np.sqrt(np.sum(u**2, axis=1)),
        }
    )
    return table, u
