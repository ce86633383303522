r"""The Monte Carlo core: interventional arms -> samples of the mediators and the outcome.

An arm assigns treatment codes to the outcome and to the mediators, and says where the outcome
reads each mediator from. For one draw, covariates ``x`` are resampled from the (weighted)
empirical rows; then ``C`` *chains* of mediators are drawn, chain ``c`` in causal order with its
own treatment code per mediator and its own noise,

    m^c_j = G_j(eps^c_j; a^c_j, m^c_{pa(j)}, x),

and the outcome reads mediator ``j`` from chain ``s_j``: ``y = G_Y(eps_Y; a, (m^{s_j}_j)_j, x)``.

* A *joint* arm ``Y(a; G(a_1..a_k))`` uses one chain (``C = 1``, ``s = 0``): the mediators are
  drawn together, each seeing its parents' values in the same chain. This is the natural
  (and identified path-specific) form.
* A *marginal* arm ``Y(a; G_1(a_1), ..., G_k(a_k))`` uses ``k`` chains: chain ``j`` is drawn
  entirely under ``a_j`` and the outcome reads mediator ``j`` from chain ``j`` (``s_j = j``), so
  ``G_j`` follows ``M_j``'s own interventional distribution given ``x``, independent of the
  other ``G``'s given ``x`` (Vansteelandt & Daniel 2017).

Arms are :class:`dcma_jax.arms.Arm` values (parsed from expressions such as ``"Y(1,M(0))"``);
:func:`simulate` stacks them into :class:`dcma_jax.arms.Arms`, which the compiled core traces.

Common random numbers: within a chunk, the covariate rows, the outcome noise and each chain's
mediator noise are drawn once and shared by all arms; chains get independent noise (chain 0's
is exactly the single-chain noise, so joint arms draw the same numbers whatever ``C`` is).
A chain in the same position and under the same codes is the same draws in every arm, so each
distinct chain is drawn once and gathered to the arms that read it
(:attr:`~dcma_jax.arms.Arms.chain_index`). All arms are ``vmap``ped in one compiled call.

Draws are produced in chunks, each written in place into the final buffers (the last chunk
ending at the last draw, overlapping the one before), so memory for intermediate activations
stays bounded as the number of draws grows; only the returned samples scale with it. On
several devices the chunks are split across them and joined in the same layout.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from dcma_jax import devices
from dcma_jax.arms import Arm, Arms
from dcma_jax.errors import ArgumentError
from dcma_jax.generators.base import (
    apply_batched,
    latent_moments,
    latent_transport,
    normal_score,
)
from dcma_jax.model import Model

DEFAULT_CHUNK = 65_536


class Draws(NamedTuple):
    """Simulated samples in the model's internal units.

    Attributes:
      outcome: ``(n_arms, num_draws)``.
      mediators: ``(n_arms, num_draws, k)``: the mediator values the outcome saw.
      rows: ``(num_draws,)`` the covariate row of each draw, shared by all arms.
    """

    outcome: jax.Array
    mediators: jax.Array
    rows: jax.Array


class LatentProjection(NamedTuple):
    r"""What a closed-form outcome fit absorbed of a binary mediator's latent score.

    Under the sensitivity model the outcome's conditional mean given ``(a, m, x)`` carries
    ``sigma rho lambda(m; a, x)`` (:func:`~dcma_jax.generators.base.latent_moments`); a
    closed-form (linear) outcome fit absorbs its projection on the outcome's context.

    Attributes:
      variables: the outcome generator's closed-form fit of ``lambda`` on its context (same
        rows and weights as the outcome's own fit); its draw at zero noise is the projection.
      share: ``q``, the weighted mean square of the projection over the fitted rows.
    """

    variables: Any
    share: jax.Array


def _coupling_shift(
    model: Model,
    params: tuple,
    arm: Arms,
    chains: jax.Array,
    mediators: jax.Array,
    covariates: jax.Array,
    coupled: int,
    rho: jax.Array,
) -> jax.Array:
    r"""The outcome-score shift of the sensitivity model (:mod:`dcma_jax.sensitivity`): ``(n,)``.

    ``rho / sqrt(1 - rho^2) * (eps_drawn - eps_a)``: mediator ``coupled``'s normal score under
    the context it was drawn in minus its score under the outcome's treatment value (given the
    mediators the outcome sees). Zero when the two contexts agree, e.g. in ``Y(a, M(a))``;
    negated for a binary outcome (``rho`` then correlates with its latent variable).
    """
    graph, j = model.graph, coupled
    n, dtype = covariates.shape[0], covariates.dtype
    source = arm.sources[j]
    codes = jnp.full((n,), arm.mediators[source, j], dtype)
    drawn = graph.context(j, codes, chains[source], covariates)
    seen = graph.context(j, jnp.full((n,), arm.outcome, dtype), mediators, covariates)
    value = mediators[:, j : j + 1]
    eps_drawn = normal_score(model.generators[j], params[j], value, drawn)
    eps_a = normal_score(model.generators[j], params[j], value, seen)
    shift = rho / jnp.sqrt(1.0 - rho**2) * (eps_drawn - eps_a)
    # A binary outcome is 1{u < Phi^-1(p)}: its latent Y* = Phi^-1(p) - u falls as u rises, so
    # rho is the correlation with -u, as in medsens (a confounder raising M raises Y*).
    return -shift if graph.outcome.kind == "binary" else shift


def _binary_coupled_score(
    model: Model,
    params: tuple,
    arm: Arms,
    chains: jax.Array,
    mediators: jax.Array,
    covariates: jax.Array,
    noise: tuple,
    z: jax.Array,
    coupled: int,
    rho: jax.Array,
    projection: LatentProjection | None,
) -> jax.Array:
    r"""The outcome's normal score when the coupled mediator is binary: ``(n,)``.

    ``e'``, the mediator's latent score in the world it was drawn in, is minus its noise (the
    draw within its probability interval). With a ``projection`` (a closed-form, linear
    outcome), ``u = (sqrt(1 - rho^2) z + rho (e' - e_hat)) / sqrt(1 - rho^2 q)``, ``e_hat``
    the projection at the outcome's context; without one (a flexible outcome),
    ``u = z + rho / sqrt(1 - rho^2 v) (e' - e_a)``, ``e_a`` the latent at the rank of ``e'``
    within ``m``'s interval under the outcome's context and ``1 - v`` its variance there. See
    :mod:`dcma_jax.sensitivity`.
    """
    graph, j, k = model.graph, coupled, model.graph.num_mediators
    generator = model.generators[j]
    n, dtype = covariates.shape[0], covariates.dtype
    source = arm.sources[j]
    codes = jnp.full((n,), arm.mediators[source, j], dtype)
    drawn = graph.context(j, codes, chains[source], covariates)
    value = mediators[:, j : j + 1]
    chain_noise = noise[j][source][:, :1]
    if projection is not None:
        e_drawn = -chain_noise[:, 0]
        treatment = jnp.full((n,), arm.outcome, dtype)
        context = graph.context(k, treatment, mediators, covariates)
        zero = jnp.zeros((n, model.generators[k].noise_dim), dtype)
        e_hat = apply_batched(model.generators[k], "sample", projection.variables, zero, context)
        scale = 1.0 / jnp.sqrt(1.0 - rho**2 * projection.share)
        return scale * (jnp.sqrt(1.0 - rho**2) * z + rho * (e_drawn - e_hat[:, 0]))
    seen = graph.context(j, jnp.full((n,), arm.outcome, dtype), mediators, covariates)
    # Both scores through the same transport, so they agree to the bit when drawn == seen.
    e_drawn = latent_transport(generator, params[j], chain_noise, value, drawn, drawn)
    e_seen = latent_transport(generator, params[j], chain_noise, value, drawn, seen)
    _, variance = latent_moments(generator, params[j], value, seen)
    return z + rho / jnp.sqrt(1.0 - rho**2 * (1.0 - variance)) * (e_drawn - e_seen)


def _draw_chain(
    model: Model, params: tuple, codes: jax.Array, chain_noise: tuple, covariates: jax.Array
) -> jax.Array:
    """One chain of mediators in causal order, mediator ``j`` under ``codes[j]``: ``(n, k)``."""
    graph = model.graph
    n, k, dtype = covariates.shape[0], graph.num_mediators, covariates.dtype
    mediators = jnp.zeros((n, k), dtype)
    for j in range(k):
        treatment = jnp.full((n,), codes[j], dtype)
        context = graph.context(j, treatment, mediators, covariates)
        value = apply_batched(model.generators[j], "sample", params[j], chain_noise[j], context)
        mediators = mediators.at[:, j].set(value[:, 0])
    return mediators


def _arm_chains(
    model: Model, params: tuple, arms: Arms, covariates: jax.Array, noise: tuple
) -> jax.Array:
    """Every arm's chains, ``(n_arms, C, n, k)``, each distinct chain drawn once.

    With :attr:`~dcma_jax.arms.Arms.chain_index` (from :meth:`~dcma_jax.arms.Arms.pack`)
    the distinct chains are drawn and gathered to the arms that read them; the draws are
    those of every arm drawing its own, which is what happens without it.
    """

    def chains(codes, chain_noise):
        return jax.vmap(lambda c, e: _draw_chain(model, params, c, e, covariates))(
            codes, chain_noise
        )

    if arms.chain_index is None:
        return jax.vmap(lambda codes: chains(codes, noise))(arms.mediators)
    arm, position = arms.representatives[:, 0], arms.representatives[:, 1]
    drawn = chains(arms.mediators[arm, position], tuple(v[position] for v in noise))
    return drawn[arms.chain_index]


def _forward(
    model: Model,
    params: tuple,
    arm: Arms,
    chains: jax.Array,
    covariates: jax.Array,
    noise: tuple,
    outcome_noise: jax.Array,
    coupled: int | None = None,
    rho: jax.Array | float = 0.0,
    projection: LatentProjection | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The outcome of one arm whose mediator ``chains`` (``(C, n, k)``) are drawn.

    With ``coupled`` (a mediator index), the outcome's normal score is shifted by the
    sensitivity model's :func:`_coupling_shift` at correlation ``rho`` (continuous mediator),
    or replaced by :func:`_binary_coupled_score` (binary mediator).
    """
    graph = model.graph
    k = graph.num_mediators
    n = covariates.shape[0]
    dtype = covariates.dtype
    mediators = chains[arm.sources, :, jnp.arange(k)].T  # (n, k)
    if coupled is not None and graph.mediators[coupled].kind == "binary":
        args = (mediators, covariates, noise, outcome_noise[:, 0], coupled, rho, projection)
        score = _binary_coupled_score(model, params, arm, chains, *args)
        outcome_noise = outcome_noise.at[:, 0].set(score)
    elif coupled is not None:
        shift = _coupling_shift(model, params, arm, chains, mediators, covariates, coupled, rho)
        outcome_noise = outcome_noise.at[:, 0].add(shift)
    treatment = jnp.full((n,), arm.outcome, dtype)
    context = graph.context(k, treatment, mediators, covariates)
    value = apply_batched(model.generators[k], "sample", params[k], outcome_noise, context)[:, 0]
    return value, mediators


def _outcomes(
    model: Model,
    params: tuple,
    arms: Arms,
    covariates: jax.Array,
    noise: tuple,
    outcome_noise: jax.Array,
    coupled: int | None = None,
    rho: jax.Array | float = 0.0,
    projection: LatentProjection | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Every arm on shared rows and noise: ``(outcome (n_arms, n), mediators (n_arms, n, k))``."""
    chains = _arm_chains(model, params, arms, covariates, noise)
    per_arm = Arms(arms.outcome, arms.mediators, arms.sources)
    return jax.vmap(
        lambda arm, arm_chains: _forward(
            model,
            params,
            arm,
            arm_chains,
            covariates,
            noise,
            outcome_noise,
            coupled,
            rho,
            projection,
        )
    )(per_arm, chains)


def _chunk(
    model: Model,
    params: tuple,
    key: jax.Array,
    covariates: jax.Array,
    weights: jax.Array,
    arms: Arms,
    size: int,
    coupled: int | None = None,
    rho: jax.Array | float = 0.0,
    projection: LatentProjection | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One chunk of draws for every arm, sharing rows and noise across arms.

    Returns ``(outcome (n_arms, size), mediators (n_arms, size, k), rows (size,))``.
    """
    row_key, *noise_keys = jax.random.split(key, 1 + len(model.generators))
    rows = jax.random.choice(row_key, covariates.shape[0], (size,), p=weights)
    x = covariates[rows]
    noise, outcome_noise = _noise(model, noise_keys, size, arms.mediators.shape[1], x.dtype)
    outcome, mediators = _outcomes(
        model, params, arms, x, noise, outcome_noise, coupled, rho, projection
    )
    return outcome, mediators, rows


def _noise(
    model: Model, noise_keys: Sequence[jax.Array], size: int, num_chains: int, dtype: Any
) -> tuple[tuple[jax.Array, ...], jax.Array]:
    """Each mediator's noise per chain ``(C, size, noise_dim)`` and the outcome's noise."""

    def chain_noise(c, j):
        # Chain 0 uses the single-chain stream; chain c > 0 its own independent stream.
        k = noise_keys[j] if c == 0 else jax.random.fold_in(noise_keys[j], c)
        return jax.random.normal(k, (size, model.generators[j].noise_dim), dtype)

    noise = tuple(
        jnp.stack([chain_noise(c, j) for c in range(num_chains)])
        for j in range(model.graph.num_mediators)
    )
    outcome_noise = jax.random.normal(noise_keys[-1], (size, model.generators[-1].noise_dim), dtype)
    return noise, outcome_noise


@functools.partial(jax.jit, static_argnames=("model", "draws_per_row", "with_mediators", "mesh"))
def simulate_rows(
    model: Model,
    params: tuple,
    key: jax.Array,
    covariates: jax.Array,
    arms: Arms,
    draws_per_row: int,
    with_mediators: bool = False,
    mesh: Mesh | None = None,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Every arm at every covariate row, ``draws_per_row`` draws each: ``(n_arms, n, R)``.

    The stratified counterpart of :func:`simulate_packed`: rows are not resampled, so a
    weighted mean over rows is differentiable in the weights (influence functions). Draws of
    one row share noise across arms (common random numbers); row ``i``'s noise is its own
    stream (``fold_in(node key, i)``), so rows are independent units. ``mesh`` (static;
    default every device) splits the rows across its devices
    (:func:`~dcma_jax.devices.map_over_devices`): the same numbers on any number of devices.
    With ``with_mediators``, also the mediator values the outcome saw: ``(n_arms, n, R, k)``.
    """
    n = covariates.shape[0]
    dtype = covariates.dtype
    arms = arms.with_dtype(dtype)
    node_keys = jax.random.split(key, len(model.generators))
    num_chains = arms.mediators.shape[1]

    def share(batched, shared):
        rows, cov = batched  # a share of m rows
        params, arms = shared
        m = rows.shape[0]

        def row_noise(i):
            keys = [jax.random.fold_in(k, i) for k in node_keys]
            return _noise(model, keys, draws_per_row, num_chains, dtype)

        noise, outcome_noise = jax.vmap(row_noise)(rows)  # (m, C, R, d) and (m, R, d)
        noise = tuple(
            jnp.swapaxes(v, 0, 1).reshape(num_chains, m * draws_per_row, -1) for v in noise
        )
        outcome_noise = outcome_noise.reshape(m * draws_per_row, -1)
        x = jnp.repeat(cov, draws_per_row, axis=0)
        outcome, mediators = _outcomes(model, params, arms, x, noise, outcome_noise)
        # Rows first, for the device split: (m, n_arms, R) and (m, n_arms, R, k).
        n_arms = outcome.shape[0]
        outcome = outcome.reshape(n_arms, m, draws_per_row)
        mediators = mediators.reshape(n_arms, m, draws_per_row, -1)
        return jnp.swapaxes(outcome, 0, 1), jnp.swapaxes(mediators, 0, 1)

    outcome, mediators = devices.map_over_devices(
        share, devices.resolve(mesh), (jnp.arange(n), covariates), (params, arms)
    )
    outcome = jnp.swapaxes(outcome, 0, 1)
    if with_mediators:
        return outcome, jnp.swapaxes(mediators, 0, 1)
    return outcome


@functools.partial(jax.jit, static_argnames=("model", "num_draws", "chunk_size", "coupled", "mesh"))
def simulate_packed(
    model: Model,
    params: tuple,
    key: jax.Array,
    covariates: jax.Array,
    weights: jax.Array,
    arms: Arms,
    num_draws: int,
    chunk_size: int = DEFAULT_CHUNK,
    coupled: int | None = None,
    rho: jax.Array | float = 0.0,
    projection: LatentProjection | None = None,
    mesh: Mesh | None = None,
) -> Draws:
    """:func:`simulate` on stacked arms: the compiled core (arm codes traced).

    Takes the arguments of :func:`simulate`, with ``arms`` an :class:`~dcma_jax.arms.Arms`
    from :meth:`~dcma_jax.arms.Arms.pack` (or built from traced codes). Returns
    :class:`Draws` in internal units, differentiable in ``params``, in the arms' treatment
    codes (for continuous nodes) and in ``rho``.

    ``coupled`` (static) and ``rho`` (traced) turn on the sensitivity model of
    :mod:`dcma_jax.sensitivity`: mediator ``coupled``'s structural noise and the outcome's are
    correlated ``rho``; ``None`` (the default) is sequential ignorability. ``projection``
    (a :class:`LatentProjection`) is what a closed-form outcome fit absorbed of a binary
    coupled mediator's latent score; ``None`` reads the outcome fit as flexible.

    ``mesh`` (static; default every device, :func:`dcma_jax.devices.device_mesh`): the chunks
    are split across its devices (:func:`~dcma_jax.devices.map_over_devices`); each chunk keeps
    its key, so the draws are the same on any number of devices.
    """
    k = model.graph.num_mediators
    if arms.mediators.ndim != 3 or arms.mediators.shape[2] != k:
        raise ArgumentError(f"arms: mediators must be (n_arms, C, {k}), got {arms.mediators.shape}")
    dtype = covariates.dtype
    arms = arms.with_dtype(dtype)
    if covariates.ndim != 2 or covariates.shape[1] != model.num_covariates:
        raise ArgumentError(
            f"covariates must have shape (n, {model.num_covariates}), got {covariates.shape}"
        )
    size = min(chunk_size, num_draws)
    n_chunks = -(-num_draws // size)
    probs = weights / jnp.sum(weights)

    def draw(i, shared):
        params, key, covariates, probs, arms, rho, projection = shared
        key = jax.random.fold_in(key, i)
        return _chunk(model, params, key, covariates, probs, arms, size, coupled, rho, projection)

    shared = (params, key, covariates, probs, arms, rho, projection)
    mesh = devices.resolve(mesh)
    if mesh.devices.size == 1:
        return Draws(*_draw_in_place(functools.partial(draw, shared=shared), n_chunks, num_draws))
    stacked = devices.map_over_devices(
        lambda indices, shared: jax.lax.map(lambda i: draw(i, shared), indices),
        mesh,
        jnp.arange(n_chunks),
        shared,
    )
    joined = zip(stacked, DRAW_AXES, strict=True)
    return Draws(*(_join_chunks(v, axis, num_draws) for v, axis in joined))


# The draws axis of ``_chunk``'s outputs: outcome (n_arms, size), mediators (n_arms, size, k),
# rows (size,).
DRAW_AXES = (1, 1, 0)


def _chunk_start(i: jax.Array | int, size: int, num_draws: int) -> jax.Array | int:
    """Where chunk ``i`` starts: ``i * size``, but the last chunk ends at ``num_draws``.

    It overlaps the one before rather than being trimmed, so no buffer exceeds the draws kept.
    """
    return jnp.minimum(i * size, num_draws - size)


def _draw_in_place(draw, n_chunks: int, num_draws: int) -> tuple[jax.Array, ...]:
    """``draw(i)`` for every chunk, written in place into final-sized buffers.

    A ``fori_loop`` of ``dynamic_update_slice``: peak memory is the draws kept plus one
    chunk's work.

    ``lax.map`` would stack the chunks as ``(n_chunks, n_arms, size)`` and need a second
    output-sized buffer to lay them out (measured as a prototype in ``benchmarks/bench_core.py``
    section 1, which keeps that layout as its reference row: at 1e7 linear draws peak RSS
    617 -> 317 MiB, 1.4x faster).
    """
    chunk = jax.eval_shape(draw, 0)
    size = chunk[0].shape[DRAW_AXES[0]]

    def final(part, axis):
        shape = (*part.shape[:axis], num_draws, *part.shape[axis + 1 :])
        return jnp.zeros(shape, part.dtype)

    def body(i, buffers):
        start = _chunk_start(i, size, num_draws)
        return tuple(
            jax.lax.dynamic_update_slice_in_dim(buffer, part, start, axis)
            for buffer, part, axis in zip(buffers, draw(i), DRAW_AXES, strict=True)
        )

    buffers = tuple(final(part, axis) for part, axis in zip(chunk, DRAW_AXES, strict=True))
    return jax.lax.fori_loop(0, n_chunks, body, buffers)


def _join_chunks(stacked: jax.Array, axis: int, num_draws: int) -> jax.Array:
    """Stacked chunk results ``(n_chunks, ...)`` laid out along ``axis`` as in place.

    Chunks ``0 .. n - 2`` give the first ``num_draws - size`` draws, the last the final ``size``
    (:func:`_draw_in_place`'s layout, so the draws are the same on any number of devices).
    """
    size = stacked.shape[axis + 1]
    lead = jnp.moveaxis(stacked[:-1], 0, axis)
    lead = lead.reshape(*lead.shape[:axis], -1, *lead.shape[axis + 2 :])
    lead = jax.lax.slice_in_dim(lead, 0, num_draws - size, axis=axis)
    return jnp.concatenate([lead, stacked[-1]], axis=axis)


def simulate(
    model: Model,
    params: tuple,
    key: jax.Array,
    covariates: jax.Array,
    weights: jax.Array,
    arms: Sequence[Arm],
    num_draws: int,
    chunk_size: int = DEFAULT_CHUNK,
) -> Draws:
    """Simulates every arm with common random numbers, in one compiled call.

    Args:
      model: static structure (graph and generators).
      params: per-node generator variables, in node order.
      key: PRNG key.
      covariates: ``(n, p)`` empirical covariate rows (internal units).
      weights: ``(n,)`` non-negative resampling weights (need not sum to one).
      arms: :class:`~dcma_jax.arms.Arm` values (joint, marginal or mixed; see the module
        docstring), e.g. from :func:`dcma_jax.arms.parse_arms`.
      num_draws: draws per arm.
      chunk_size: draws per chunk; bounds the memory of intermediate activations.

    Returns:
      :class:`Draws` in internal units. Differentiable in ``params``; for derivatives in the
      treatment codes use :func:`simulate_packed` on traced :class:`~dcma_jax.arms.Arms`.
    """
    if isinstance(arms, Arms) or not all(isinstance(a, Arm) for a in arms):
        raise TypeError("arms must be a sequence of dcma_jax.Arm (see dcma_jax.parse_arms)")
    packed = Arms.pack(arms, covariates.dtype)
    return simulate_packed(model, params, key, covariates, weights, packed, num_draws, chunk_size)
