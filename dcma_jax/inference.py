"""End-to-end analysis: fit, simulate the arms, evaluate effects, bootstrap intervals.

The nonparametric bootstrap resamples rows, refits every generator on each resample (all ``B``
replicates under one ``vmap`` per node), re-simulates with the resample's empirical covariate
distribution, and reports percentile intervals for every effect row.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dcma_jax.data import MediationData
from dcma_jax.estimands import (
    DEFAULT_QUANTILES,
    Estimands,
    FunctionalSpec,
    effect_rows,
    effect_values,
    natural_effects,
    quantile_curves,
)
from dcma_jax.functionals import DISTANCE_FUNCTIONALS
from dcma_jax.model import GeneratorChoice, Model, build_model, float_dtype
from dcma_jax.results import MediationResult
from dcma_jax.simulate import DEFAULT_CHUNK, simulate
from dcma_jax.training import TrainConfig, fit_model, fit_model_replicates

CURVE_LEVELS = np.linspace(0.02, 0.98, 49)
PLOT_DRAWS = 20_000
DEFAULT_BOOTSTRAP_DRAWS = 20_000


@functools.partial(
    jax.jit, static_argnames=("model", "estimands", "spec", "num_draws", "chunk_size")
)
def arm_effects(
    model: Model,
    estimands: Estimands,
    spec: FunctionalSpec,
    params: tuple,
    key: jax.Array,
    covariates: jax.Array,
    weights: jax.Array,
    outcome_center: jax.Array,
    outcome_scale: jax.Array,
    num_draws: int,
    chunk_size: int = DEFAULT_CHUNK,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Simulates the arms and evaluates every effect row and quantile-effect curve.

    Returns:
      ``(values, curves, outcome)``: effect values in row order, quantile-effect curves on
      :data:`CURVE_LEVELS`, and the arms' outcome draws in original units.
    """
    draws = simulate(
        model, params, key, covariates, weights, estimands.arm_array(), num_draws, chunk_size
    )
    outcome = draws.outcome * outcome_scale + outcome_center
    values = effect_values(estimands, spec, outcome)
    return values, quantile_curves(estimands, outcome, CURVE_LEVELS), outcome


@functools.partial(
    jax.jit, static_argnames=("model", "estimands", "spec", "num_draws", "chunk_size")
)
def replicate_effects(
    model: Model,
    estimands: Estimands,
    spec: FunctionalSpec,
    params: tuple,
    keys: jax.Array,
    covariates: jax.Array,
    weights: jax.Array,
    outcome_center: jax.Array,
    outcome_scale: jax.Array,
    num_draws: int,
    chunk_size: int = DEFAULT_CHUNK,
) -> tuple[jax.Array, jax.Array]:
    """:func:`arm_effects` for each bootstrap replicate, one after another under ``lax.map``.

    ``params``, ``keys`` and ``weights`` carry a leading replicate axis; replicates run in
    sequence so memory stays that of one replicate.

    Returns:
      ``(values (B, rows), curves (B, n_contrasts, n_levels))``.
    """

    def one(args):
        p, key, w = args
        values, curves, _ = arm_effects(
            model,
            estimands,
            spec,
            p,
            key,
            covariates,
            w,
            outcome_center,
            outcome_scale,
            num_draws,
            chunk_size,
        )
        return values, curves

    return jax.lax.map(one, (params, keys, weights))


def _percentile_interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    tail = 100.0 * (1.0 - level) / 2.0
    return np.percentile(samples, tail, axis=0), np.percentile(samples, 100.0 - tail, axis=0)


def default_cdf_points(data: MediationData) -> tuple[float, ...]:
    """Observed outcome quartiles (original units, 4 significant digits); ``(0,)`` if binary."""
    if data.outcome_var.kind == "binary":
        return (0.0,)
    observed = data.outcome_var.decode(data.outcome)
    return tuple(float(f"{q:.4g}") for q in np.quantile(observed, (0.25, 0.5, 0.75)))


def analyze(
    data: MediationData,
    *,
    generators: GeneratorChoice | Mapping[str, GeneratorChoice] = "mdn",
    link: str = "logit",
    num_draws: int = 100_000,
    bootstrap: int = 0,
    bootstrap_draws: int | None = None,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    cdf_points: Sequence[float] | None = None,
    distances: Sequence[str] = DISTANCE_FUNCTIONALS,
    ci_level: float = 0.95,
    config: TrainConfig = TrainConfig(),
    seed: int = 0,
    chunk_size: int = DEFAULT_CHUNK,
    progress: Callable[[str], None] | None = None,
) -> MediationResult:
    """Distributional mediation analysis of a binary treatment with one mediator block.

    Args:
      data: validated :class:`MediationData`.
      generators: generator family name or instance for all nodes, or a mapping from node
        name to one (see :func:`dcma_jax.model.build_model`).
      link: link of binary GLM nodes (``"logit"`` or ``"probit"``).
      num_draws: Monte Carlo draws per arm for the point estimates.
      bootstrap: number of bootstrap replicates ``B``; 0 turns intervals off.
      bootstrap_draws: draws per arm in each replicate (default ``min(num_draws, 20000)``).
      quantiles: quantile levels for quantile effects.
      cdf_points: outcome values ``t`` for CDF effects (default: observed quartiles).
      distances: distances to report between the arms of each contrast.
      ci_level: percentile-interval coverage.
      config: optimisation settings of neural generators.
      seed: the one seed everything derives from.
      chunk_size: Monte Carlo chunk size (bounds memory).
      progress: called with a stage description before each stage (the CLI's progress bar).

    Returns:
      A :class:`MediationResult`.

    Raises:
      ValueError: bad arguments. TrainingError: a generator diverged.
    """
    if num_draws < 1:
        raise ValueError(f"num_draws must be positive, got {num_draws}")
    if bootstrap < 0:
        raise ValueError(f"bootstrap must be >= 0, got {bootstrap}")
    if not 0.0 < ci_level < 1.0:
        raise ValueError(f"ci_level must lie in (0, 1), got {ci_level}")
    if data.treatment_var.kind != "binary":
        raise ValueError("analyze supports a binary treatment only")
    notify = progress or (lambda _: None)
    started = time.perf_counter()
    if cdf_points is None:
        cdf_points = default_cdf_points(data)
    spec = FunctionalSpec(tuple(quantiles), tuple(float(t) for t in cdf_points), tuple(distances))
    estimands = natural_effects(data.num_mediators)
    model = build_model(data, generators, link=link)
    fit_key, sim_key, row_key, boot_fit_key, boot_sim_key = jax.random.split(
        jax.random.key(seed), 5
    )
    dtype = float_dtype()
    covariates = jnp.asarray(data.covariates, dtype)
    weights = jnp.asarray(data.weights, dtype)
    center = jnp.asarray(data.outcome_var.center, dtype)
    scale = jnp.asarray(data.outcome_var.scale, dtype)

    notify("fitting generators")
    params, infos = fit_model(model, data, fit_key, config)
    notify("simulating arms")
    values, curves, outcome = arm_effects(
        model,
        estimands,
        spec,
        params,
        sim_key,
        covariates,
        weights,
        center,
        scale,
        num_draws,
        chunk_size,
    )
    low = high = curves_low = curves_high = None
    boot_epochs = None
    if bootstrap:
        b_draws = bootstrap_draws or min(num_draws, DEFAULT_BOOTSTRAP_DRAWS)
        rows = jax.random.randint(row_key, (bootstrap, data.n), 0, data.n)
        notify(f"fitting {bootstrap} bootstrap replicates (vmapped)")
        boot_params, boot_infos = fit_model_replicates(model, data, boot_fit_key, rows, config)
        boot_epochs = [np.asarray(i.epochs).tolist() for i in boot_infos]
        counts = jax.vmap(lambda r: jnp.bincount(r, length=data.n))(rows)
        notify(f"simulating {bootstrap} bootstrap replicates")
        boot_values, boot_curves = replicate_effects(
            model,
            estimands,
            spec,
            boot_params,
            jax.random.split(boot_sim_key, bootstrap),
            covariates,
            counts * weights,
            center,
            scale,
            b_draws,
            chunk_size,
        )
        low, high = _percentile_interval(np.asarray(boot_values), ci_level)
        curves_low, curves_high = _percentile_interval(np.asarray(boot_curves), ci_level)

    meta = {
        "n": data.n,
        "treatment": data.treatment_name,
        "mediators": list(data.mediator_names),
        "outcome": data.outcome_name,
        "covariates": list(data.covariate_names),
        "graph": model.describe().splitlines(),
        "generators": {
            node.name: type(g).__name__
            for node, g in zip(model.graph.nodes, model.generators, strict=True)
        },
        "arms": dict(zip(estimands.arm_names, map(list, estimands.arms), strict=True)),
        "num_draws": num_draws,
        "bootstrap": bootstrap,
        "bootstrap_draws": (bootstrap_draws or min(num_draws, DEFAULT_BOOTSTRAP_DRAWS))
        if bootstrap
        else None,
        "ci_level": ci_level,
        "ci_method": "percentile" if bootstrap else None,
        "seed": seed,
        "epochs": {
            node.name: int(info.epochs) for node, info in zip(model.graph.nodes, infos, strict=True)
        },
        "bootstrap_epochs": boot_epochs,
        "energy_convention": "2E|X-Y| - E|X-X'| - E|Y-Y'| (scipy's energy_distance squared)",
        "seconds": None,
    }
    meta["seconds"] = round(time.perf_counter() - started, 2)
    return MediationResult.from_arrays(
        rows=effect_rows(estimands, spec),
        estimates=np.asarray(values, np.float64),
        ci_low=low,
        ci_high=high,
        meta=meta,
        arm_names=estimands.arm_names,
        arm_samples=np.asarray(outcome[:, :PLOT_DRAWS]),
        contrast_names=tuple(c.name for c in estimands.contrasts),
        curve_levels=CURVE_LEVELS,
        curves=np.asarray(curves),
        curves_low=curves_low,
        curves_high=curves_high,
    )
