"""Fitting generators: closed form where it exists, otherwise Adam under one compiled loop.

The optimisation loop for one generator is a single ``lax.while_loop`` over epochs (early
stopping on a validation split, or a fixed number of epochs on every row) whose body is a
``lax.scan`` over minibatches, so a fit compiles once. Because it is a pure function of
``(key, rows)``, ``jax.vmap`` over bootstrap row indices fits all bootstrap replicates as one
computation: finished replicates are frozen by the batched ``while_loop`` while the others
continue.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from dcma_jax import devices
from dcma_jax.data import MediationData
from dcma_jax.errors import ArgumentError
from dcma_jax.generators.base import Generator, apply_batched, init_params
from dcma_jax.model import Model, float_dtype, node_data


class TrainingError(RuntimeError):
    """A generator's fit failed: its loss became NaN or infinite, or a closed form cannot fit."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings for neural generators (closed-form generators ignore them).

    Attributes:
      learning_rate: peak Adam learning rate of the warm-up + cosine schedule.
      batch_size: minibatch size (capped at the number of training rows).
      max_epochs: upper bound on epochs.
      patience: epochs without validation improvement before stopping.
      val_fraction: share of rows held out for early stopping.
      clip_norm: global gradient-norm clip.
      warmup_epochs: linear warm-up length.
      fixed_epochs: ``None`` (default): early stopping on ``val_fraction`` of the rows. An
        integer in ``[0, max_epochs]``: train on every row for exactly that many epochs, with
        no validation split (``val_fraction`` and ``patience`` unused) and the same schedule
        (it still spans ``max_epochs``), e.g. to refit on all rows at the epoch count early
        stopping chose (``FitInfo.best_epoch``); 0 keeps the warm start. The
        default stays the hold-out: refits so on four recovery SCMs were no better for mdn
        and worse for flow (``experiments/results/holdout_refit.md``).
      plateau_epochs: ``None`` (default): the generator family's default
        (``Generator.plateau_epochs``: 4 for ``flow``, 0 for the others). 0: the learning
        rate follows the schedule alone. An integer ``p >= 1``: with early stopping, every
        ``p`` epochs without validation improvement multiply the rate by ``plateau_factor``
        and restart from the best parameters so far (reduce on plateau), so the fit settles
        into its best basin at a low rate instead of leaving it at the peak rate (the cosine
        spans ``max_epochs``, far past where early stopping ends a fit). Against the plain
        schedule on five recovery SCMs (20 data sets each), it multiplied the flow's effect
        RMSE by 0.68-0.90 on four (1.02-1.16, within noise, on binary_mediator) and mdn's by
        up to 1.77 (bimodal quantiles), hence per family
        (``experiments/results/flow_tuning.md``).
      plateau_factor: the rate's factor at each plateau, in ``(0, 1)``.
    """

    learning_rate: float = 3e-3
    batch_size: int = 256
    max_epochs: int = 200
    patience: int = 20
    val_fraction: float = 0.2
    clip_norm: float = 1.0
    warmup_epochs: int = 5
    fixed_epochs: int | None = None
    plateau_epochs: int | None = None
    plateau_factor: float = 0.3

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise ArgumentError("val_fraction must be in (0, 1)")
        if self.batch_size < 1 or self.max_epochs < 1 or self.patience < 1:
            raise ArgumentError("batch_size, max_epochs and patience must be positive")
        fixed = self.fixed_epochs
        if fixed is not None and (
            isinstance(fixed, bool)
            or not isinstance(fixed, int | np.integer)
            or not 0 <= fixed <= self.max_epochs
        ):
            raise ArgumentError(
                f"fixed_epochs must be None or an integer in [0, max_epochs={self.max_epochs}], "
                f"got {fixed!r}"
            )
        plateau = self.plateau_epochs
        if plateau is not None and (
            isinstance(plateau, bool) or not isinstance(plateau, int | np.integer) or plateau < 0
        ):
            raise ArgumentError(
                f"plateau_epochs must be None or a non-negative integer, got {plateau!r}"
            )
        if not 0.0 < self.plateau_factor < 1.0:
            raise ArgumentError(f"plateau_factor must be in (0, 1), got {self.plateau_factor!r}")


class FitInfo(NamedTuple):
    """Diagnostics of one fit.

    Attributes:
      epochs: epochs run (early stopping runs ``patience`` past the best one).
      best_val_loss: validation loss of the kept parameters (``-inf`` for closed forms, NaN
        without a validation split).
      diverged: whether the loss became NaN or infinite.
      best_epoch: the epoch whose parameters were kept (0: the warm start; ``epochs`` without
        early stopping): the epoch count to refit at on all rows (``fixed_epochs``).
    """

    epochs: jax.Array
    best_val_loss: jax.Array
    diverged: jax.Array
    best_epoch: jax.Array


class _LoopState(NamedTuple):
    epoch: jax.Array
    params: Any
    opt_state: Any
    best_params: Any
    best_val: jax.Array
    best_epoch: jax.Array
    bad_epochs: jax.Array
    diverged: jax.Array
    lr_scale: jax.Array


def _mean_loss(
    module: Generator,
    params: Any,
    x: jax.Array,
    context: jax.Array,
    weights: jax.Array,
    rng: jax.Array | None = None,
) -> jax.Array:
    """Weighted mean per-example loss ``sum_i w_i l_i / sum_i w_i`` (0 if every weight is 0).

    Bootstrap replicates weight rows by their resample counts, so a minibatch may hold rows of
    weight 0; they contribute nothing. ``rng`` feeds a stochastic loss (``rng_stream``).
    """
    losses = apply_batched(module, "loss", params, x, context, rng=rng)
    total = jnp.sum(weights)
    return jnp.sum(jnp.where(weights > 0, weights * losses, 0.0)) / jnp.where(total > 0, total, 1.0)


def split_rows(key: jax.Array, n: int, config: TrainConfig) -> tuple[jax.Array, jax.Array]:
    """``(training rows, validation rows)`` of a neural fit with key ``key`` on ``n`` rows.

    The validation rows (``val_fraction`` of them) are never trained on; diagnostics read
    them as held-out rows.
    """
    n_val = max(1, int(round(config.val_fraction * n)))
    order = jax.random.permutation(jax.random.split(key, 3)[1], n)
    return order[: n - n_val], order[n - n_val :]


def _optimise(
    module: Generator,
    config: TrainConfig,
    key: jax.Array,
    x: jax.Array,
    context: jax.Array,
    weights: jax.Array,
    epochs: jax.Array | int | None = None,
) -> tuple[Any, FitInfo]:
    """Adam with warm-up/cosine schedule and clipping (and reduce on plateau: ``plateau_epochs``).

    ``epochs`` ``None``: early stopping on a validation split, keeping the best epoch's
    parameters. Otherwise (an int, possibly traced): every row, exactly ``epochs`` epochs (fewer
    if the loss diverges), keeping the last; the schedule is the same either way.
    """
    n = x.shape[0]
    fixed = epochs is not None
    if fixed:
        train_rows = jnp.arange(n)
    else:
        train_rows, val_rows = split_rows(key, n, config)
    n_train = train_rows.shape[0]
    batch = min(config.batch_size, n_train)
    steps = n_train // batch
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=config.learning_rate,
        warmup_steps=min(config.warmup_epochs, config.max_epochs // 2) * steps,
        decay_steps=config.max_epochs * steps,
        end_value=0.01 * config.learning_rate,
    )
    optimiser = optax.chain(optax.clip_by_global_norm(config.clip_norm), optax.adam(schedule))

    plateau_epochs = config.plateau_epochs
    if plateau_epochs is None:
        plateau_epochs = module.plateau_epochs
    init_key, _, epoch_key = jax.random.split(key, 3)
    # A stochastic loss (a generator's rng_stream) draws a fresh key a minibatch and one fixed
    # key for every validation pass, so that epochs are compared on the same noise.
    noise_key = jax.random.fold_in(key, 3)
    val_key = jax.random.fold_in(noise_key, 0)
    params = init_params(module, init_key, context.shape[1])
    if fixed:
        train_weights = weights
    else:
        x_val, c_val, w_val = x[val_rows], context[val_rows], weights[val_rows]
        train_weights = jnp.zeros_like(weights).at[train_rows].set(weights[train_rows])
    params = module.warm_start(params, x, context, train_weights)
    baseline = module.baseline_candidate(params)
    loss_and_grad = jax.value_and_grad(functools.partial(_mean_loss, module))

    def minibatch_step(carry, batch_and_key):
        params, opt_state, lr_scale = carry
        rows, step_key = batch_and_key
        loss, grads = loss_and_grad(params, x[rows], context[rows], weights[rows], step_key)
        updates, opt_state = optimiser.update(grads, opt_state, params)
        if plateau_epochs:  # without reduce on plateau the step is the plain Adam step
            updates = jax.tree.map(lambda u: lr_scale * u, updates)
        return (optax.apply_updates(params, updates), opt_state, lr_scale), loss

    def epoch(state: _LoopState) -> _LoopState:
        perm = jax.random.permutation(jax.random.fold_in(epoch_key, state.epoch), n_train)
        batches = train_rows[perm[: steps * batch]].reshape(steps, batch)
        step_keys = jax.random.split(jax.random.fold_in(noise_key, state.epoch + 1), steps)
        (params, opt_state, _), losses = jax.lax.scan(
            minibatch_step, (state.params, state.opt_state, state.lr_scale), (batches, step_keys)
        )
        if fixed:
            return state._replace(
                epoch=state.epoch + 1,
                params=params,
                opt_state=opt_state,
                best_params=params,
                best_epoch=state.epoch + 1,
                diverged=~jnp.all(jnp.isfinite(losses)),
            )
        val = _mean_loss(module, params, x_val, c_val, w_val, val_key)
        diverged = ~(jnp.all(jnp.isfinite(losses)) & jnp.isfinite(val))
        improved = (val < state.best_val) & ~diverged
        best_params = jax.tree.map(
            lambda new, old: jnp.where(improved, new, old), params, state.best_params
        )
        bad_epochs = jnp.where(improved, 0, state.bad_epochs + 1)
        lr_scale = state.lr_scale
        if plateau_epochs:
            plateau = (bad_epochs > 0) & (bad_epochs % plateau_epochs == 0)
            lr_scale = jnp.where(plateau, config.plateau_factor * lr_scale, lr_scale)
            params = jax.tree.map(lambda b, p: jnp.where(plateau, b, p), best_params, params)
        return _LoopState(
            epoch=state.epoch + 1,
            params=params,
            opt_state=opt_state,
            best_params=best_params,
            best_val=jnp.where(improved, val, state.best_val),
            best_epoch=jnp.where(improved, state.epoch + 1, state.best_epoch),
            bad_epochs=bad_epochs,
            diverged=diverged,
            lr_scale=lr_scale,
        )

    def keep_going(state: _LoopState) -> jax.Array:
        if fixed:
            return (state.epoch < epochs) & ~state.diverged
        return (
            (state.epoch < config.max_epochs)
            & (state.bad_epochs < config.patience)
            & ~state.diverged
        )

    if fixed:
        start_val = jnp.full((), jnp.nan, x.dtype)
    else:
        start_val = _mean_loss(module, params, x_val, c_val, w_val, val_key)
    init = _LoopState(
        epoch=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=optimiser.init(params),
        best_params=params,
        # The starting point (the warm start) is a candidate too: where the network cannot
        # beat the generator's linear start on held-out rows, the fit keeps the start.
        best_val=jnp.where(jnp.isfinite(start_val), start_val, jnp.inf),
        best_epoch=jnp.zeros((), jnp.int32),
        bad_epochs=jnp.zeros((), jnp.int32),
        diverged=jnp.zeros((), bool),
        lr_scale=jnp.ones((), x.dtype),
    )
    final = jax.lax.while_loop(keep_going, epoch, init)
    best_val = start_val if fixed else final.best_val
    best_params, best_epoch = final.best_params, final.best_epoch
    if baseline is not None:
        # The generator's linear baseline is a candidate too (its start is only close to it):
        # kept where no trained epoch beats it on held-out rows, or where none was trained.
        if fixed:
            keep = final.epoch == 0
        else:
            baseline_val = _mean_loss(module, baseline, x_val, c_val, w_val, val_key)
            keep = baseline_val <= best_val
            best_val = jnp.where(keep, baseline_val, best_val)
        best_params = jax.tree.map(lambda b, p: jnp.where(keep, b, p), baseline, best_params)
        best_epoch = jnp.where(keep, 0, best_epoch)
    info = FitInfo(final.epoch, best_val, final.diverged, best_epoch)
    return best_params, info


def _fit_rows(
    module: Generator,
    config: TrainConfig,
    key: jax.Array,
    x: jax.Array,
    context: jax.Array,
    weights: jax.Array,
    epochs: jax.Array | int | None = None,
) -> tuple[Any, FitInfo]:
    """Fits one generator to weighted rows; closed form when the generator has one.

    ``epochs`` (see :func:`_optimise`) defaults to ``config.fixed_epochs``.
    """
    variables = module.closed_form(x, context, weights)
    if variables is None:
        epochs = config.fixed_epochs if epochs is None else epochs
        return _optimise(module, config, key, x, context, weights, epochs)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in jax.tree.leaves(variables)]))
    zero = jnp.zeros((), jnp.int32)
    return variables, FitInfo(zero, -jnp.inf * jnp.ones((), x.dtype), ~finite, zero)


@functools.partial(jax.jit, static_argnames=("module", "config"))
def fit_generator(
    module: Generator,
    config: TrainConfig,
    key: jax.Array,
    x: jax.Array,
    context: jax.Array,
    weights: jax.Array,
    epochs: jax.Array | int | None = None,
) -> tuple[Any, FitInfo]:
    """Fits one generator; jitted with the module and config static.

    Args:
      module: the generator to fit.
      config: optimisation settings.
      key: PRNG key (initialisation, validation split, minibatch order).
      x: ``(n, 1)`` node values.
      context: ``(n, c)`` contexts.
      weights: ``(n,)`` positive observation weights.
      epochs: ``config.fixed_epochs`` as a traced value (one compilation serves every count,
        e.g. refits of many nodes or data sets at their own counts); in ``[0,
        config.max_epochs]``, which a traced value cannot be checked for.

    Returns:
      ``(variables, FitInfo)``.
    """
    return _fit_rows(module, config, key, x, context, weights, epochs)


@functools.partial(jax.jit, static_argnames=("module", "config", "mesh"))
def fit_generator_replicates(
    module: Generator,
    config: TrainConfig,
    keys: jax.Array,
    counts: jax.Array,
    x: jax.Array,
    context: jax.Array,
    weights: jax.Array,
    mesh: Mesh | None = None,
) -> tuple[Any, FitInfo]:
    """Fits one generator to each bootstrap resample under one vmap.

    A resample is given by its row counts ``counts[b]`` (``(B, n)``): replicate ``b`` is the
    fit on the original rows with weights ``weights * counts[b]``. So the training/validation
    split is one of *original* rows, as in the point fit, and no replicate validates on copies
    of its training rows (the weighted fit equals the fit on the resample's rows, duplicates
    included, for closed forms; for neural generators it is the same objective).

    ``mesh`` (static; default every device): the replicates are split across its devices
    (:func:`dcma_jax.devices.map_over_devices`), each fitted with its own key and counts.

    Returns variables and ``FitInfo`` with a leading replicate axis ``B``.
    """

    def replicates(batched, shared):
        keys, counts = batched
        x, context, weights = shared

        def one(key: jax.Array, c: jax.Array) -> tuple[Any, FitInfo]:
            return _fit_rows(module, config, key, x, context, weights * c)

        return jax.vmap(one)(keys, counts)

    shared = (x, context, weights)
    return devices.map_over_devices(replicates, devices.resolve(mesh), (keys, counts), shared)


def _context_columns(model: Model, data: MediationData, node: int) -> list[tuple[str, str]]:
    """``(role, name)`` of each column of node ``node``'s context (see :mod:`dcma_jax.graph`)."""
    t = data.treatment_var
    treatment = [f"{t.name}={level}" for level in t.levels[1:]] if t.num_levels else [t.name]
    return [
        *[("treatment", name) for name in treatment],
        *[("mediator", data.mediator_vars[p].name) for p in model.graph.nodes[node].parents],
        *[("covariate", name) for name in data.covariate_names],
    ]


def _check_designs(model: Model, data: MediationData, rows: Sequence[tuple[Any, Any]]) -> None:
    """Raises :class:`TrainingError` naming a node and the columns of a rank-deficient design."""
    for j, (node, generator, (_, context)) in enumerate(
        zip(model.graph.nodes, model.generators, rows, strict=True)
    ):
        problem = generator.fit_problem(
            None, context, data.weights, _context_columns(model, data, j)
        )
        if problem is not None:
            raise TrainingError(f"node {node.name!r}: {problem}")


def _check_finite(
    model: Model, data: MediationData, rows: Sequence[tuple[Any, Any]], infos: Sequence[FitInfo]
) -> None:
    """Raises :class:`TrainingError` naming the first node whose point fit diverged.

    A generator that can say why it failed does (``Generator.fit_problem``).
    """
    for j, (node, generator, info, (x, context)) in enumerate(
        zip(model.graph.nodes, model.generators, infos, rows, strict=True)
    ):
        if bool(np.asarray(info.diverged)):
            columns = _context_columns(model, data, j)
            problem = generator.fit_problem(x, context, data.weights, columns)
            if problem is not None:
                raise TrainingError(f"node {node.name!r}: {problem}")
            raise TrainingError(
                f"training of node {node.name!r} ({type(generator).__name__}) diverged: "
                "the loss became NaN or infinite; lower the learning rate or check the data"
            )


def fit_model(
    model: Model, data: MediationData, key: jax.Array, config: TrainConfig = TrainConfig()
) -> tuple[tuple[Any, ...], tuple[FitInfo, ...]]:
    """Fits every node's generator to the observed rows.

    Returns:
      ``(params, infos)``: per-node variables and fit diagnostics, in node order.

    Raises:
      TrainingError: a node's loss became NaN or infinite, a linear generator's design is
        rank deficient, or a binary GLM's classes are separated or its fit did not converge
        (the message names the node and, where it can, the context columns).
    """
    weights = jnp.asarray(data.weights, float_dtype())
    keys = node_keys(key, len(model.generators))
    rows = node_data(model, data)
    _check_designs(model, data, rows)
    fits = [
        fit_generator(generator, config, k, x, context, weights)
        for generator, k, (x, context) in zip(model.generators, keys, rows, strict=True)
    ]
    params, infos = tuple(f[0] for f in fits), tuple(f[1] for f in fits)
    _check_finite(model, data, rows, infos)
    return params, infos


def node_keys(key: jax.Array, num_nodes: int) -> jax.Array:
    """The point fit's key of each node (:func:`fit_model`)."""
    return jax.random.split(key, num_nodes)


def replicate_keys(key: jax.Array, num_nodes: int, num_replicates: int) -> jax.Array:
    """``(num_nodes, B)`` fitting keys: replicate ``b`` of node ``j`` uses ``keys[j, b]``.

    Defined per replicate, so fitting the replicates in blocks of any size gives the same fits.
    """
    return jnp.stack(
        [jax.random.split(k, num_replicates) for k in jax.random.split(key, num_nodes)]
    )


def fit_model_replicates(
    model: Model,
    data: MediationData,
    keys: jax.Array,
    counts: jax.Array,
    config: TrainConfig = TrainConfig(),
    mesh: Mesh | None = None,
) -> tuple[tuple[Any, ...], tuple[FitInfo, ...]]:
    """Fits every node on each bootstrap resample, vmapped over the replicates.

    Args:
      model: the model whose nodes to fit.
      data: the observed rows the resamples weight.
      keys: ``(num_nodes, B)`` keys from :func:`replicate_keys` (or a slice of them).
      counts: ``(B, n)`` row counts of the resamples (see :func:`fit_generator_replicates`).
      config: optimisation settings.
      mesh: the devices the replicates are split across (default: every device); the fits
        depend on it only by float32 rounding (a device's ``vmap`` width changes XLA's
        summation order).

    Returns:
      Per-node variables and diagnostics with a leading replicate axis. A replicate that
      diverged is flagged in ``FitInfo.diverged``, not raised: the caller decides.
    """
    if keys.shape != (len(model.generators), counts.shape[0]):
        raise ArgumentError(
            f"keys must be (num_nodes, B) = {(len(model.generators), counts.shape[0])}, "
            f"got {keys.shape}"
        )
    weights = jnp.asarray(data.weights, float_dtype())
    counts = jnp.asarray(counts, float_dtype())
    fits = [
        fit_generator_replicates(generator, config, node_keys, counts, x, context, weights, mesh)
        for generator, node_keys, (x, context) in zip(
            model.generators, keys, node_data(model, data), strict=True
        )
    ]
    return tuple(f[0] for f in fits), tuple(f[1] for f in fits)
