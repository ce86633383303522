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
in the weights.

CDF and quantile rows (``cdf_points``, ``quantiles``): an arm's CDF is the smooth mixture
``F(t) = sum_i p_i mean_r F_Y(t | a, m_ir, x_i)`` of the outcome generator's conditional CDF
over the drawn mediators (differentiable in the weights and the parameters, unlike the share
of draws below ``t``), and an arm's quantile ``Q(q)`` solves ``F(Q) = q`` (Newton steps on
``F`` and its density ``f = dF/dt`` by ``jax.jvp``), so ``U_Q = -U_{F(Q)} / f(Q)`` by the
implicit function theorem. Distance rows are functionals of two arms' smooth CDFs on a grid:
Wasserstein-1 ``int |F - G|``, energy ``2 int (F - G)^2``, KS ``max |F - G|``.
"""

from __future__ import annotations

import functools
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
from dcma_jax.model import Model, float_dtype, node_data
from dcma_jax.simulate import simulate_rows

if TYPE_CHECKING:
    from dcma_jax.fitted import FittedMediation

#: Points of the grid the distances integrate the arms' smooth CDFs over.
DISTANCE_GRID = 256
#: Distances between two arms from their CDFs on a grid: Wasserstein-1 = int |F - G|, the
#: energy distance 2 int (F - G)^2 (the 1-D identity), Kolmogorov-Smirnov = max |F - G|.
DISTANCE_FORMS = {
    "wasserstein": lambda gap, grid: jnp.trapezoid(jnp.abs(gap), grid),
    "energy": lambda gap, grid: 2.0 * jnp.trapezoid(gap**2, grid),
    "ks": lambda gap, grid: jnp.max(jnp.abs(gap)),
}
#: The power of the outcome's scale each distance carries (KS has no units).
DISTANCE_UNITS = {"wasserstein": 1, "energy": 1, "ks": 0}
#: Outputs whose backward passes run together (bounds the influence's memory).
VJP_BATCH = 8
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


def _outcome_cdf(
    model: Model, params: tuple, codes: jax.Array, mediators: jax.Array, x: jax.Array, t: jax.Array
) -> jax.Array:
    """``F_Y(t_j | a, m, x)`` of every draw at every ``t_j``: ``(N,)`` draws -> ``(N, T)``."""
    graph, generator = model.graph, model.generators[-1]
    k = graph.num_mediators
    context = graph.context(k, jnp.broadcast_to(codes, (x.shape[0],)), mediators, x)
    if graph.outcome.kind == "binary":
        ones = jnp.ones((x.shape[0], 1), x.dtype)
        p1 = jnp.exp(apply_batched(generator, "log_prob", params[-1], ones, context))[:, None]
        return (t >= 0.0) * (1.0 - p1) + (t >= 1.0) * p1
    values = jnp.broadcast_to(t, (x.shape[0], t.shape[0]))
    return jax.vmap(
        lambda v: apply_batched(generator, "cdf", params[-1], v[:, None], context), 1, 1
    )(values)


@functools.partial(jax.jit, static_argnames=("model", "draws_per_row"))
def _arm_cdfs(model, params, key, covariates, arms, draws_per_row, weights, t):
    """Each arm's smooth CDF at its own points ``t`` ``(n_arms, T)``: ``(n_arms, T)``."""
    _, mediators = simulate_rows(
        model, params, key, covariates, arms, draws_per_row, with_mediators=True
    )
    n, k = covariates.shape[0], model.graph.num_mediators
    x = jnp.repeat(covariates, draws_per_row, axis=0)
    probs = weights / jnp.sum(weights)

    def one(code, m, points):
        cdf = _outcome_cdf(model, params, code, m.reshape(-1, k), x, points)  # (n R, T)
        return probs @ jnp.mean(cdf.reshape(n, draws_per_row, -1), axis=1)

    return jax.vmap(one)(arms.outcome, mediators, t)


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
    quantiles: Sequence[float] = (),
    cdf_points: Sequence[float] = (),
    distances: Sequence[str] = (),
    draws_per_row: int = DRAWS_PER_ROW,
    seed: int | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Effects, their infinitesimal-jackknife SEs and every row's influence on them.

    Bound as ``FittedMediation.influence``. The effect arguments are those of
    :func:`dcma_jax.queries.effects`; mean effects always, and for every contrast its CDF
    rows at ``cdf_points`` (original units), quantile rows at ``quantiles`` and distance rows
    (``"wasserstein"``, ``"energy"``, ``"ks"``; continuous outcome) when asked for (see the
    module docstring). A distance's IJ error assumes a non-zero distance: at 0 it is not
    differentiable.

    Returns:
      ``(table, U)``: ``table`` has columns ``effect, functional, level, estimate, ij_se``
      (the mean rows first); ``U`` is ``(len(table), n)``, ``U[r, i]`` the influence of row
      ``i`` on table row ``r``.

    Raises:
      ArgumentError: a node whose generator has more than :data:`MAX_PARAMETERS` parameters
        (a neural fit), a binary mediator or a count node (their draws are not
        differentiable in their parameters), or quantile rows of a binary outcome.
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
    binary_mediators = [n.name for n in model.graph.mediators if n.kind == "binary"]
    if binary_mediators:
        raise ArgumentError(
            f"binary mediator {binary_mediators[0]!r}: its draws are thresholds, not "
            "differentiable in its model's parameters, so the influence would miss that "
            "model's part; use the bootstrap"
        )
    counts = [n for n in model.graph.nodes if n.kind == "count"]
    if counts:
        role = "outcome" if counts[0] is model.graph.outcome else "mediator"
        raise ArgumentError(
            f"count {role} {counts[0].name!r}: its draws are integer steps, not "
            "differentiable in its model's parameters, so the influence would miss that "
            "model's part; use the bootstrap"
        )
    binary = data.outcome_var.kind == "binary"
    if (quantiles or distances) and binary:
        raise ArgumentError(
            "quantile and distance rows of a binary outcome have no influence (not smooth)"
        )
    unknown = sorted(set(distances) - set(DISTANCE_FORMS))
    if unknown:
        raise ArgumentError(f"unknown distances {unknown}; choose from {list(DISTANCE_FORMS)}")
    estimands = queries.build_estimands(
        data, model, effects, treatment_values, reference, path_specific, path_reference
    )
    layout, dtype = estimands.layout, float_dtype()
    arms = Arms.pack(estimands.arms, dtype)
    key = queries.query_keys(fitted.seed if seed is None else int(seed))[0]
    covariates = jnp.asarray(data.covariates, dtype)
    scale, center = (1.0, 0.0) if binary else (data.outcome_var.scale, data.outcome_var.center)
    weights = jnp.asarray(data.weights, dtype)
    n_arms = len(estimands.arms)
    levels = np.asarray(quantiles, np.float64)
    points = jnp.asarray((np.asarray(cdf_points, np.float64) - center) / scale, dtype)
    cdfs = functools.partial(
        _arm_cdfs, model, key=key, covariates=covariates, arms=arms, draws_per_row=draws_per_row
    )
    at_quantile = _arm_quantiles(cdfs, fitted.params, weights, levels, n_arms, dtype)
    # The distances integrate |F_arm - F_ref| over a fixed grid spanning every arm's draws.
    draws = simulate_rows(model, fitted.params, key, covariates, arms, draws_per_row)
    low, high = float(jnp.min(draws)), float(jnp.max(draws))
    pad = 0.1 * (high - low)
    grid = jnp.linspace(low - pad, high + pad, DISTANCE_GRID, dtype=dtype)

    def arm_means(params, w):
        # A binary outcome's draws are thresholds, flat in the outcome model's parameters: its
        # arm means are read as 1 - F(0) from the smooth CDFs, P(Y = 1 | a, m, x) averaged.
        if binary:
            return 1.0 - cdfs(params=params, weights=w, t=jnp.zeros((n_arms, 1), dtype))[:, 0]
        outcome = simulate_rows(model, params, key, covariates, arms, draws_per_row)
        row_means = jnp.mean(outcome, axis=2) * scale + center  # (n_arms, n)
        return row_means @ (w / jnp.sum(w))

    def theta(params, w):
        means = _mean_effects(layout, arm_means(params, w))
        by_point = cdfs(
            params=params, weights=w, t=jnp.broadcast_to(points, (n_arms,) + points.shape)
        )
        by_level = cdfs(params=params, weights=w, t=at_quantile)
        on_grid = cdfs(params=params, weights=w, t=jnp.broadcast_to(grid, (n_arms, grid.size)))
        apart = [on_grid[c.arm] - on_grid[c.reference] for c in layout.contrasts]
        gaps = [
            DISTANCE_FORMS[d](g, grid) * scale ** DISTANCE_UNITS[d]
            for g in apart
            for d in distances
        ]
        return jnp.concatenate(
            [
                means,
                by_point.reshape(-1),
                by_level.reshape(-1),
                jnp.stack(gaps or [means[:0]]).reshape(-1),
            ]
        )

    # Reverse mode over the outputs in batches of VJP_BATCH (lax.map), not all at once as in
    # jacrev: memory stays that of VJP_BATCH backward passes through the grid CDFs. (One at a
    # time, XLA's CPU loop body summed differently: the NDE's IJ SE moved by 1.3e-3 relative,
    # off statsmodels' HC0 value, which the batched form matches to 1e-5.)
    values, pullback = jax.vjp(theta, fitted.params, weights)
    basis = jnp.eye(values.shape[0], dtype=values.dtype)
    by_params, by_weights = jax.lax.map(pullback, basis, batch_size=VJP_BATCH)
    total = by_weights  # (outputs, n)
    for j in range(len(fitted.params)):
        d_theta = jax.vmap(lambda g: ravel_pytree(g)[0])(by_params[j])  # (outputs, p)
        total = total + d_theta @ _parameter_influence(fitted, j).T
    u_all = np.asarray(total * weights, np.float64)
    n_means = len(_names(layout))
    n_points = n_arms * points.shape[0]
    u_point = u_all[n_means : n_means + n_points].reshape(n_arms, points.shape[0], data.n)
    n_levels = n_arms * levels.size
    u_level = u_all[n_means + n_points : n_means + n_points + n_levels].reshape(
        n_arms, levels.size, data.n
    )
    u_gaps = u_all[n_means + n_points + n_levels :]
    gaps = np.asarray(values[n_means + n_points + n_levels :], np.float64)
    f_point = np.asarray(values[n_means : n_means + n_points]).reshape(n_arms, points.shape[0])
    density = np.asarray(_density(cdfs, fitted.params, weights, at_quantile))
    u_quantile = -u_level / density[:, :, None] * scale  # original units
    q_values = np.asarray(at_quantile) * scale + center
    rows = [(name, "mean", None) for name in _names(layout)]
    estimates = list(np.asarray(values[:n_means], np.float64))
    u = list(u_all[:n_means])
    for i, c in enumerate(layout.contrasts):
        for j, t in enumerate(cdf_points):
            rows.append((c.name, "cdf", float(t)))
            estimates.append(f_point[c.arm, j] - f_point[c.reference, j])
            u.append(u_point[c.arm, j] - u_point[c.reference, j])
        for j, q in enumerate(levels):
            rows.append((c.name, "quantile", float(q)))
            estimates.append(q_values[c.arm, j] - q_values[c.reference, j])
            u.append(u_quantile[c.arm, j] - u_quantile[c.reference, j])
        for j, name in enumerate(distances):
            rows.append((c.name, name, None))
            estimates.append(gaps[i * len(distances) + j])
            u.append(u_gaps[i * len(distances) + j])
    u = np.stack(u)
    table = pd.DataFrame(rows, columns=["effect", "functional", "level"])
    table["estimate"] = np.asarray(estimates, np.float64)
    table["ij_se"] = np.sqrt(np.sum(u**2, axis=1))
    return table, u


def _arm_quantiles(cdfs, params, weights, levels, n_arms, dtype) -> jax.Array:
    """Each arm's quantiles ``Q`` with ``F(Q) = q`` on its smooth CDF: ``(n_arms, L)``.

    Bisection on ``[-10, 10]`` (internal units: 10 outcome SDs) to 1e-3, then Newton steps.
    """
    if levels.size == 0:
        return jnp.zeros((n_arms, 0), dtype)
    target = jnp.broadcast_to(jnp.asarray(levels, dtype), (n_arms, levels.size))
    lo, hi = -10.0 * jnp.ones_like(target), 10.0 * jnp.ones_like(target)
    for _ in range(15):
        mid = 0.5 * (lo + hi)
        below = cdfs(params=params, weights=weights, t=mid) < target
        lo, hi = jnp.where(below, mid, lo), jnp.where(below, hi, mid)
    q = 0.5 * (lo + hi)
    for _ in range(3):
        q = q - (cdfs(params=params, weights=weights, t=q) - target) / _density(
            cdfs, params, weights, q
        )
    return q


def _density(cdfs, params, weights, t: jax.Array) -> jax.Array:
    """``dF/dt`` of each arm's smooth CDF at its own points (each output reads one ``t``)."""
    return jax.jvp(lambda s: cdfs(params=params, weights=weights, t=s), (t,), (jnp.ones_like(t),))[
        1
    ]
