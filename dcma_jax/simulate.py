r"""The Monte Carlo core: interventional arms -> samples of the mediators and the outcome.

An arm assigns a treatment value to the outcome and to each mediator, ``(a; a_1..a_k)``. For
one draw, covariates ``x`` are resampled from the (weighted) empirical rows, mediators are drawn
in causal order, ``m_j = G_j(eps_j; a_j, m_{pa(j)}, x)``, and the outcome
``y = G_Y(eps_Y; a, m, x)``. Every arm sees the same ``x`` rows and the same noise ``eps``
(common random numbers), so contrasts between arms carry far less Monte Carlo noise.

Draws are produced in chunks under ``lax.map`` so memory for intermediate activations stays
bounded as the number of draws grows; only the returned samples scale with it.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from dcma_jax.generators.base import apply_batched
from dcma_jax.model import Model

DEFAULT_CHUNK = 65_536


class Draws(NamedTuple):
    """Simulated samples in the model's internal units.

    Attributes:
      outcome: ``(n_arms, num_draws)``.
      mediators: ``(n_arms, num_draws, k)``.
    """

    outcome: jax.Array
    mediators: jax.Array


def _forward(
    model: Model, params: tuple, arm: jax.Array, covariates: jax.Array, noise: tuple
) -> tuple[jax.Array, jax.Array]:
    """Draws the mediators in causal order, then the outcome, for one arm and a batch."""
    graph = model.graph
    n = covariates.shape[0]
    mediators = jnp.zeros((n, graph.num_mediators), covariates.dtype)
    for j, generator in enumerate(model.generators):
        treatment = jnp.full((n,), arm[0] if j == graph.num_mediators else arm[j + 1])
        context = graph.context(j, treatment.astype(covariates.dtype), mediators, covariates)
        value = apply_batched(generator, "sample", params[j], noise[j], context)[:, 0]
        if j < graph.num_mediators:
            mediators = mediators.at[:, j].set(value)
    return value, mediators


def _chunk(
    model: Model,
    params: tuple,
    key: jax.Array,
    covariates: jax.Array,
    weights: jax.Array,
    arms: jax.Array,
    size: int,
) -> tuple[jax.Array, jax.Array]:
    """One chunk of draws for every arm, sharing rows and noise across arms."""
    row_key, *noise_keys = jax.random.split(key, 1 + len(model.generators))
    rows = jax.random.choice(row_key, covariates.shape[0], (size,), p=weights)
    x = covariates[rows]
    noise = tuple(
        jax.random.normal(k, (size, g.noise_dim), covariates.dtype)
        for k, g in zip(noise_keys, model.generators, strict=True)
    )
    return jax.vmap(lambda arm: _forward(model, params, arm, x, noise))(arms)


@functools.partial(jax.jit, static_argnames=("model", "num_draws", "chunk_size"))
def simulate(
    model: Model,
    params: tuple,
    key: jax.Array,
    covariates: jax.Array,
    weights: jax.Array,
    arms: jax.Array,
    num_draws: int,
    chunk_size: int = DEFAULT_CHUNK,
) -> Draws:
    """Simulates every arm with common random numbers.

    Args:
      model: static structure (graph and generators).
      params: per-node generator variables, in node order.
      key: PRNG key.
      covariates: ``(n, p)`` empirical covariate rows (internal units).
      weights: ``(n,)`` non-negative resampling weights (need not sum to one).
      arms: ``(n_arms, 1 + k)``; column 0 is the outcome's treatment value, column ``j + 1``
        the treatment value mediator ``j`` is drawn under.
      num_draws: draws per arm.
      chunk_size: draws per chunk; bounds the memory of intermediate activations.

    Returns:
      :class:`Draws` in internal units.
    """
    k = model.graph.num_mediators
    if arms.ndim != 2 or arms.shape[1] != 1 + k:
        raise ValueError(f"arms must have shape (n_arms, {1 + k}), got {arms.shape}")
    if covariates.ndim != 2 or covariates.shape[1] != model.num_covariates:
        raise ValueError(
            f"covariates must have shape (n, {model.num_covariates}), got {covariates.shape}"
        )
    size = min(chunk_size, num_draws)
    n_chunks = -(-num_draws // size)
    probs = weights / jnp.sum(weights)
    outcome, mediators = jax.lax.map(
        lambda i: _chunk(model, params, jax.random.fold_in(key, i), covariates, probs, arms, size),
        jnp.arange(n_chunks),
    )
    n_arms = arms.shape[0]
    outcome = jnp.moveaxis(outcome, 0, 1).reshape(n_arms, -1)[:, :num_draws]
    mediators = jnp.moveaxis(mediators, 0, 1).reshape(n_arms, -1, k)[:, :num_draws]
    return Draws(outcome, mediators)
