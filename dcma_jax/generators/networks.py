"""Small networks shared by the neural generators."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
    """Feed-forward network ``c -> out`` with SiLU hidden layers."""

    hidden: Sequence[int]
    out: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = nn.silu(nn.Dense(width)(x))
        return nn.Dense(self.out)(x)


class LinearBaseline(nn.Module):
    r"""A linear location and a constant log-scale of the context, ``(mu(c), log sigma)``.

    A neural generator models the standardised residual ``r = (x - mu(c)) / sigma`` of this
    baseline: ``x = mu(c) + sigma r``. Starting from zero parameters it is the identity
    (``mu = 0``, ``sigma = 1``); :func:`with_least_squares_baseline` starts it at the weighted
    least-squares fit instead, so that an untrained or early-stopped network is (close to) the
    linear-Gaussian model and not a law that ignores its context (``LinearGaussian``'s fit).
    """

    @nn.compact
    def __call__(self, context: jax.Array) -> tuple[jax.Array, jax.Array]:
        zeros = nn.initializers.zeros
        coef = self.param("coef", zeros, (context.shape[-1],), context.dtype)
        bias = self.param("bias", zeros, (), context.dtype)
        log_scale = self.param("log_scale", zeros, (), context.dtype)
        return bias + context @ coef, log_scale


def treatment_interactions(context: jax.Array, width: int) -> jax.Array:
    r"""The context followed by each of its first ``width`` columns times each later column.

    A node's context starts with its treatment block (``CausalGraph.context``), so these are
    the treatment's interactions with the parent mediators and the covariates: a linear model
    of them is the exposure-mediator interaction model ``Y ~ A + M + A M + X + A X``.
    ``(..., c) -> (..., c + width (c - width))``; ``width = 0`` returns ``context``.
    """
    if not width:
        return context
    treatment, rest = context[..., :width], context[..., width:]
    products = treatment[..., :, None] * rest[..., None, :]
    return jnp.concatenate([context, products.reshape(*context.shape[:-1], -1)], axis=-1)


def with_least_squares_baseline(
    variables: Any,
    x: jax.Array,
    context: jax.Array,
    weights: jax.Array,
    name: str = "baseline",
    ridge: float = 1e-6,
) -> Any:
    r"""``variables`` with the :class:`LinearBaseline` called ``name`` set to a weighted LS fit.

    ``beta = argmin sum_i w_i (x_i - b - c_i' beta)^2`` (a small ridge ``ridge * tr/p`` keeps
    constant or collinear context columns, e.g. a covariate absent from a bootstrap resample,
    solvable) and ``sigma^2`` the weighted mean squared residual. Traceable, for the training
    loop's ``jit`` and the bootstrap's ``vmap``.
    """
    dtype = context.dtype
    w = weights / jnp.maximum(jnp.sum(weights), jnp.finfo(dtype).tiny)
    design = jnp.concatenate([jnp.ones((context.shape[0], 1), dtype), context], axis=1)
    gram = design.T @ (w[:, None] * design)
    gram = gram + ridge * jnp.trace(gram) / gram.shape[0] * jnp.eye(gram.shape[0], dtype=dtype)
    beta = jnp.linalg.solve(gram, design.T @ (w * x[:, 0]))
    residual = x[:, 0] - design @ beta
    variance = jnp.maximum(jnp.sum(w * residual**2), 1e-6)
    fitted = {"bias": beta[0], "coef": beta[1:], "log_scale": 0.5 * jnp.log(variance)}
    return {**variables, "params": {**variables["params"], name: fitted}}


def with_logistic_baseline(
    variables: Any,
    x: jax.Array,
    context: jax.Array,
    weights: jax.Array,
    name: str = "baseline",
    iterations: int = 12,
    ridge: float = 1e-3,
) -> Any:
    r"""``variables`` with the ``nn.Dense(1)`` called ``name`` set to a weighted logistic fit.

    Newton steps on the ridge-penalised weighted log-likelihood of ``P(x = 1 | c) =
    sigmoid(b + c' beta)``; the penalty ``ridge`` (in units of the mean weight) keeps the fit
    finite under separation. A fixed number of steps, so it traces under ``jit`` and ``vmap``.
    """
    dtype = context.dtype
    w = weights / jnp.maximum(jnp.mean(weights), jnp.finfo(dtype).tiny)
    design = jnp.concatenate([jnp.ones((context.shape[0], 1), dtype), context], axis=1)
    penalty = ridge * context.shape[0] * jnp.eye(design.shape[1], dtype=dtype)
    y = x[:, 0]

    def newton(_, beta):
        p = jax.nn.sigmoid(design @ beta)
        hessian = design.T @ ((w * p * (1.0 - p))[:, None] * design) + penalty
        return beta + jnp.linalg.solve(hessian, design.T @ (w * (y - p)) - penalty @ beta)

    beta = jax.lax.fori_loop(0, iterations, newton, jnp.zeros(design.shape[1], dtype))
    fitted = {"bias": beta[:1], "kernel": beta[1:, None]}
    return {**variables, "params": {**variables["params"], name: fitted}}


def with_count_baseline(
    variables: Any,
    x: jax.Array,
    context: jax.Array,
    weights: jax.Array,
    iterations: int = 12,
    ridge: float = 1e-3,
    min_dispersion: float = 1e-4,
) -> Any:
    r"""``variables`` with a count network's linear start: a Poisson fit and the NB2 moments.

    Sets the log-mean's ``nn.Dense(1)`` called ``"baseline"`` and the ``"log_dispersion"``
    parameter. Newton steps on the weighted Poisson log-likelihood of ``log mu = b + c' beta`` from
    ``b = log(mean x)``, ``beta`` penalised by ``ridge`` (in units of the mean weight) so that
    counts that are 0 on every row of some column keep it finite; the Poisson estimate of the
    mean is consistent under any dispersion. Then ``alpha = max(sum_i w_i ((x_i - mu_i)^2 -
    x_i) / sum_i w_i mu_i^2, min_dispersion)``, the moment estimator of ``Var = mu + alpha
    mu^2``. A fixed number of steps, so it traces under ``jit`` and ``vmap`` (and compiles in a
    fraction of the exact fit's time: the network does the rest).
    """
    dtype = context.dtype
    w = weights / jnp.maximum(jnp.mean(weights), jnp.finfo(dtype).tiny)
    design = jnp.concatenate([jnp.ones((context.shape[0], 1), dtype), context], axis=1)
    penalty = ridge * context.shape[0] * jnp.diag(jnp.ones(design.shape[1], dtype).at[0].set(0.0))
    y = x[:, 0]
    mean = jnp.sum(w * y) / jnp.sum(w)

    def newton(_, beta):
        mu = jnp.exp(design @ beta)
        hessian = design.T @ ((w * mu)[:, None] * design) + penalty
        return beta + jnp.linalg.solve(hessian, design.T @ (w * (y - mu)) - penalty @ beta)

    start = jnp.zeros(design.shape[1], dtype).at[0].set(jnp.log(mean))
    beta = jax.lax.fori_loop(0, iterations, newton, start)
    mu = jnp.exp(design @ beta)
    alpha = jnp.sum(w * ((y - mu) ** 2 - y)) / jnp.sum(w * mu**2)
    fitted = {"bias": beta[:1], "kernel": beta[1:, None]}
    log_alpha = jnp.log(jnp.maximum(alpha, min_dispersion))
    params = {**variables["params"], "baseline": fitted, "log_dispersion": log_alpha}
    return {**variables, "params": params}
