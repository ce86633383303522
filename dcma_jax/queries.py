"""Queries on a fitted model: effects with intervals, draws of arms, dose-response.

Every query is a pure function of a :class:`~dcma_jax.fitted.FittedMediation`; none refits.
The compiled cores below take the model structure, the effect layout and the functionals as
static arguments and everything else (parameters, keys, covariate rows, weights, arm codes)
traced, so a second query with same-shaped inputs reuses the compilation.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.sharding import Mesh

from dcma_jax import devices, diagnostics, robust
from dcma_jax.arms import Arm, Arms, parse_arms
from dcma_jax.data import MediationData
from dcma_jax.errors import ArgumentError
from dcma_jax.estimands import (
    DEFAULT_QUANTILES,
    EffectLayout,
    Estimands,
    FunctionalSpec,
    concatenate,
    effect_rows,
    effect_values,
    interventional_effects,
    natural_effects,
    path_specific_effects,
    quantile_curves,
)
from dcma_jax.functionals import DISTANCE_FUNCTIONALS
from dcma_jax.inference import distance_interval, percentile_interval
from dcma_jax.model import Model, float_dtype
from dcma_jax.results import MediationResult
from dcma_jax.simulate import DEFAULT_CHUNK, simulate_packed

if TYPE_CHECKING:
    from dcma_jax.fitted import FittedMediation

CURVE_LEVELS = np.linspace(0.02, 0.98, 49)
PLOT_DRAWS = 20_000
DEFAULT_DRAWS = 100_000
DEFAULT_BOOTSTRAP_DRAWS = 20_000
ESTIMATORS = ("plugin", "onestep")
#: The point estimate's draws per arm over the draws per block of a replicate's Wasserstein and
#: KS values (at least): see :func:`effects`.
POINT_TO_REPLICATE_DRAWS = 4
PERCENTILE_RULE = "percentile"
DISTANCE_RULE = "percentile_to_zero"
CI_METHOD = (
    "percentile; distances: percentile_to_zero = the percentile bounds, the lower one moved to "
    "0 where the basic bound 2*estimate - q_high is <= 0 (inference.distance_interval), "
    "wasserstein and ks replicates over blocks of distance_draws <= num_draws / 4 draws"
)
ENERGY_CONVENTION = (
    "2E|X-Y| - E|X-X'| - E|Y-Y'| as the U-statistic over draw pairs i != j (unbiased, can be "
    "negative); dcma_jax.energy is the V-statistic, scipy's energy_distance squared"
)


# --------------------------------------------------------------------------------------------
# Compiled cores
# --------------------------------------------------------------------------------------------


_STATIC = ("model", "layout", "spec", "num_draws", "chunk_size", "distance_draws", "mesh")


@functools.partial(jax.jit, static_argnames=_STATIC)
def arm_effects(
    model: Model,
    layout: EffectLayout,
    spec: FunctionalSpec,
    params: tuple,
    arms: Arms,
    key: jax.Array,
    covariates: jax.Array,
    weights: jax.Array,
    outcome_center: jax.Array,
    outcome_scale: jax.Array,
    num_draws: int,
    chunk_size: int = DEFAULT_CHUNK,
    distance_draws: int | None = None,
    mesh: Mesh | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Simulates the arms and evaluates every effect row and quantile-effect curve.

    ``distance_draws``: draws per block of the Wasserstein and KS rows (see
    :func:`~dcma_jax.estimands.effect_values`; default all ``num_draws``). ``mesh``: the
    devices the Monte Carlo chunks are split across (default every device; see
    :func:`~dcma_jax.simulate.simulate_packed`).

    Returns:
      ``(values, curves, outcome)``: effect values in row order, quantile-effect curves on
      :data:`CURVE_LEVELS`, and the arms' outcome draws in original units.
    """
    draws = simulate_packed(
        model, params, key, covariates, weights, arms, num_draws, chunk_size, mesh=mesh
    )
    outcome = draws.outcome * outcome_scale + outcome_center
    binary = model.graph.outcome.kind == "binary"
    values = effect_values(layout, spec, outcome, distance_draws, binary)
    return values, quantile_curves(layout, outcome, CURVE_LEVELS, binary), outcome


@functools.partial(jax.jit, static_argnames=_STATIC)
def replicate_effects(
    model: Model,
    layout: EffectLayout,
    spec: FunctionalSpec,
    params: tuple,
    arms: Arms,
    keys: jax.Array,
    covariates: jax.Array,
    weights: jax.Array,
    outcome_center: jax.Array,
    outcome_scale: jax.Array,
    num_draws: int,
    chunk_size: int = DEFAULT_CHUNK,
    distance_draws: int | None = None,
    mesh: Mesh | None = None,
) -> tuple[jax.Array, jax.Array]:
    """:func:`arm_effects` for each bootstrap replicate, one after another under ``lax.map``.

    ``params``, ``keys`` and ``weights`` carry a leading replicate axis; replicates run in
    sequence so memory stays that of one replicate per device. ``mesh`` (default every
    device): the replicates are split across its devices
    (:func:`~dcma_jax.devices.map_over_devices`), each simulated on one device with its own
    key, so the values do not depend on the number of devices.

    Returns:
      ``(values (B, rows), curves (B, n_contrasts, n_levels))``.
    """

    def replicates(batched, shared):
        arms, covariates, outcome_center, outcome_scale = shared

        def one(args):
            p, key, w = args
            values, curves, _ = arm_effects(
                model,
                layout,
                spec,
                p,
                arms,
                key,
                covariates,
                w,
                outcome_center,
                outcome_scale,
                num_draws,
                chunk_size,
                distance_draws,
                # A replicate runs whole on the device that holds it.
                mesh=devices.device_mesh(1),
            )
            return values, curves

        return jax.lax.map(one, batched)

    shared = (arms, covariates, outcome_center, outcome_scale)
    return devices.map_over_devices(
        replicates, devices.resolve(mesh), (params, keys, weights), shared
    )


@functools.partial(jax.jit, static_argnames=("model", "num_draws", "chunk_size", "method"))
def dose_response_surface(
    model: Model,
    params: tuple,
    key: jax.Array,
    covariates: jax.Array,
    weights: jax.Array,
    grid: jax.Array,
    num_draws: int,
    chunk_size: int = DEFAULT_CHUNK,
    method: str = "autodiff",
    step: float = 0.05,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""Mean dose-response surface and local direct/indirect effects, in one compiled call.

    With ``mu(a, a') = E[Y(a, M(a'))]`` (mediators drawn jointly under ``a'``), returns

    * ``mu`` on the grid: ``(G, G)``, ``mu[i, j] = mu(grid[i], grid[j])``;
    * the local direct effects ``d mu(a, a') / d a`` and local indirect effects
      ``d mu(a, a') / d a'`` at ``a = a' = grid[i]``: ``(G,)`` each, by ``jax.grad`` through
      :func:`~dcma_jax.simulate.simulate_packed` (pathwise derivatives of the Monte Carlo mean;
      the draws are smooth in the treatment code for continuous nodes). Their sum is the local
      total effect ``d mu(a, a) / d a``.

    ``method="autodiff"`` needs draws that are smooth in the treatment code: true for the
    linear-Gaussian, flow and diffusion generators, not for a mixture density network (its
    component is picked by thresholding noise, so the pathwise derivative misses the change of
    mixture weights) nor for binary nodes. ``method="finite_difference"`` uses central
    differences of step ``step`` (treatment-code units) on common random numbers instead.

    Everything is in internal units (treatment codes, internal outcome); all ``G**2`` arms are
    simulated together with common random numbers.
    """
    k = model.graph.num_mediators
    size = grid.shape[0]

    def means(a: jax.Array, a_m: jax.Array) -> jax.Array:
        n = a.shape[0]
        arms = Arms(a, jnp.repeat(a_m[:, None, None], k, axis=2), jnp.zeros((n, k), jnp.int32))
        draws = simulate_packed(
            model, params, key, covariates, weights, arms, num_draws, chunk_size
        )
        return jnp.mean(draws.outcome, axis=1)

    mu = means(jnp.repeat(grid, size), jnp.tile(grid, size)).reshape(size, size)
    if method == "autodiff":
        # Arm i depends only on its own codes, so the gradient of the sum is the diagonal.
        grad = jax.grad(lambda a, b: jnp.sum(means(a, b)), argnums=(0, 1))
        direct, indirect = grad(grid, grid)
        return mu, direct, indirect
    if method != "finite_difference":
        raise ArgumentError(f"method must be 'autodiff' or 'finite_difference', got {method!r}")
    a = jnp.concatenate([grid + step, grid - step, grid, grid])
    b = jnp.concatenate([grid, grid, grid + step, grid - step])
    y = means(a, b).reshape(4, size)
    return mu, (y[0] - y[1]) / (2 * step), (y[2] - y[3]) / (2 * step)


def pathwise_differentiable(model: Model) -> bool:
    """Whether every node's draws are smooth in the treatment code (see :func:`dose_response`).

    A generator class may declare it with a ``pathwise_gradient`` class attribute; by default
    continuous nodes are smooth except mixture density networks, binary nodes are not.
    """
    from dcma_jax.generators.mixture import MixtureDensityNetwork

    for node, g in zip(model.graph.nodes, model.generators, strict=True):
        default = node.kind == "continuous" and not isinstance(g, MixtureDensityNetwork)
        if not getattr(type(g), "pathwise_gradient", default):
            return False
    return True


# --------------------------------------------------------------------------------------------
# From the user's terms to estimands
# --------------------------------------------------------------------------------------------


def _label(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def contrast_pairs(
    data: MediationData, treatment_values: Sequence | None, reference: object
) -> list[tuple[float, float, tuple[str, str], str]]:
    """``(treated code, control code, labels, effect-name suffix)`` for each contrast."""
    var = data.treatment_var
    if var.kind == "binary":
        if treatment_values is not None or reference is not None:
            raise ArgumentError("treatment_values and reference apply to non-binary treatments")
        return [(1.0, 0.0, ("1", "0"), "")]
    if var.kind == "continuous":
        if reference is not None:
            raise ArgumentError("reference applies to a categorical treatment")
        if treatment_values is None:
            observed = var.decode(data.treatment)
            treatment_values = tuple(float(f"{q:.4g}") for q in np.quantile(observed, (0.75, 0.25)))
        if len(treatment_values) != 2:
            raise ArgumentError(
                f"treatment_values must be (treated, control), got {tuple(treatment_values)}"
            )
        t, c = (float(v) for v in treatment_values)
        if not (np.isfinite(t) and np.isfinite(c)) or t == c:
            raise ArgumentError(
                f"treatment_values must be two different finite numbers, got {t}, {c}"
            )
        return [(float(var.encode(t)), float(var.encode(c)), (_label(t), _label(c)), "")]
    # categorical: every other level against the reference level
    if treatment_values is not None:
        raise ArgumentError("treatment_values applies to a continuous treatment; use reference")
    levels = list(var.levels)
    ref = levels[0] if reference is None else reference
    matches = [lv for lv in levels if lv == ref or str(lv) == str(ref)]
    if not matches:
        raise ArgumentError(
            f"reference {ref!r} is not a level of treatment {var.name!r} (levels: {levels})"
        )
    ref = matches[0]
    return [
        (float(levels.index(lv)), float(levels.index(ref)), (str(lv), str(ref)), f"[{lv}]")
        for lv in levels
        if lv != ref
    ]


def treatment_encoder(data: MediationData) -> Callable[[Any], float]:
    """Maps a treatment value in the user's units to its code.

    A binary treatment with text levels also accepts its codes 0 and 1.
    """
    var = data.treatment_var
    numeric = all(isinstance(lv, (int, float, np.number)) for lv in var.levels)

    def encode(value: Any) -> float:
        if var.kind == "binary" and not numeric and value in (0.0, 1.0):
            return float(value)
        return float(var.encode(value))

    return encode


def parse_user_arms(data: MediationData, model: Model, texts: Sequence[str]) -> tuple[Arm, ...]:
    """Arms from the user's expressions over ``data``'s roles (see :func:`parse_arms`)."""
    return parse_arms(list(texts), model.graph, treatment_encoder(data), data.treatment_name)


def build_estimands(
    data: MediationData,
    model: Model,
    effects: str = "natural",
    treatment_values: Sequence | None = None,
    reference: object = None,
    path_specific: Sequence[str] | None = None,
    path_reference: str | None = None,
) -> Estimands:
    """The estimands of an effects query, in codes (see :meth:`FittedMediation.effects`)."""
    if effects not in ("natural", "interventional"):
        raise ArgumentError(f"effects must be 'natural' or 'interventional', got {effects!r}")
    pairs = contrast_pairs(data, treatment_values, reference)
    build = natural_effects if effects == "natural" else interventional_effects
    parts = [build(data.mediator_names, t, c, labels) for t, c, labels, _ in pairs]
    suffixes = [suffix for *_, suffix in pairs]
    if path_specific:
        control_label = pairs[0][2][1]
        reference_text = path_reference or f"{model.graph.outcome.name}({control_label})"
        arms = parse_user_arms(data, model, [*path_specific, reference_text])
        parts.append(path_specific_effects(arms[:-1], arms[-1]))
        suffixes.append("")
    return parts[0] if len(parts) == 1 else concatenate(parts, suffixes)


def default_cdf_points(data: MediationData) -> tuple[float, ...]:
    """Observed outcome quartiles (original units, 4 significant digits); ``(0,)`` if binary.

    A count outcome's quartiles often coincide (``(1, 1, 2)``); each is kept once.
    """
    if data.outcome_var.kind == "binary":
        return (0.0,)
    observed = data.outcome_var.decode(data.outcome)
    points = tuple(float(f"{q:.4g}") for q in np.quantile(observed, (0.25, 0.5, 0.75)))
    return tuple(dict.fromkeys(points)) if data.outcome_var.kind == "count" else points


# --------------------------------------------------------------------------------------------
# The queries
# --------------------------------------------------------------------------------------------


def query_keys(seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(point simulation, bootstrap simulation, dose-response)`` keys of a query seed.

    They are split from the same root as the fit's keys (:func:`dcma_jax.fitted.fit_keys`), so
    a query with the fit's seed reproduces what one ``analyze`` call with that seed reports.
    """
    _, sim_key, _, _, boot_sim_key = jax.random.split(jax.random.key(seed), 5)
    return sim_key, boot_sim_key, jax.random.fold_in(sim_key, 1)


def model_arrays(fitted: FittedMediation) -> dict[str, jax.Array]:
    """The traced inputs every query passes: covariate rows, weights, the outcome's encoding."""
    data, dtype = fitted.data, float_dtype()
    return {
        "covariates": jnp.asarray(data.covariates, dtype),
        "weights": jnp.asarray(data.weights, dtype),
        "center": jnp.asarray(data.outcome_var.center, dtype),
        "scale": jnp.asarray(data.outcome_var.scale, dtype),
    }


def effects(
    fitted: FittedMediation,
    *,
    effects: str = "natural",
    path_specific: Sequence[str] | None = None,
    path_reference: str | None = None,
    treatment_values: Sequence[float] | None = None,
    reference: object = None,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    cdf_points: Sequence[float] | None = None,
    distances: Sequence[str] = DISTANCE_FUNCTIONALS,
    num_draws: int = DEFAULT_DRAWS,
    bootstrap_draws: int | None = None,
    ci_level: float = 0.95,
    seed: int | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    dose_grid: Sequence[float] | None = None,
    estimator: str = "plugin",
    density_ratio: str = "auto",
    draws_per_row: int = robust.DEFAULT_DRAWS_PER_ROW,
    progress: Callable[[str], None] | None = None,
) -> MediationResult:
    """Effects with bootstrap intervals from the stored replicates; nothing is refitted.

    Bound as :meth:`FittedMediation.effects <dcma_jax.fitted.FittedMediation>`.

    Intervals (recorded in ``meta["intervals"]``): percentile intervals for the scalar
    functionals, the proportions mediated and the quantile curves. A distance (``wasserstein``,
    ``energy``, ``ks``) and each of its replicates is >= 0, so its percentile interval could
    never contain 0; distance rows get :func:`~dcma_jax.inference.distance_interval` instead:
    the percentile bounds, the lower one moved to 0 where the basic bootstrap bound
    ``2 * estimate - q_high`` is <= 0 (coverage measured in
    ``experiments/results/distance_intervals.md``). ``energy`` is the unbiased paired
    U-statistic (:func:`~dcma_jax.functionals.energy_unbiased`), so it can be negative.
    Wasserstein and KS are biased upward by Monte Carlo error (~ draws^(-1/2) near 0) that
    the zero test must not see: their replicates are evaluated over blocks of
    ``meta["distance_draws"] = min(bootstrap_draws, num_draws // 4)`` draws, so that the point
    estimate, on all ``num_draws``, has at most half their bias, and the bias cancels in
    ``2 * estimate - replicate``.

    Args:
      fitted: the fitted model.
      effects: ``"natural"`` (TE, NDE, NIE with the mediators as one block) or
        ``"interventional"`` (TE, IDE, IIE per mediator, IIE_dependence; see
        :mod:`dcma_jax.estimands`).
      path_specific: nested counterfactuals such as ``"Y(1,M1(0),M2(1,M1(0)))"``, each
        reported as ``PSE[...]`` against ``path_reference``; refused with
        :class:`~dcma_jax.paths.PathSpecificError` when not identified.
      path_reference: the reference expression (default ``Y(<control>)``: everything under
        the control value).
      treatment_values: ``(treated, control)`` values of a continuous treatment, original
        units (default: the observed upper and lower quartiles).
      reference: the reference level of a categorical treatment (default: the first sorted
        level); every other level is contrasted with it, effect names suffixed ``[level]``.
      quantiles: quantile levels for quantile effects.
      cdf_points: outcome values ``t`` for CDF effects (default: observed quartiles).
      distances: distances to report between the arms of each contrast.
      num_draws: Monte Carlo draws per arm for the point estimates.
      bootstrap_draws: draws per arm in each replicate (default ``min(num_draws, 20000)``).
      ci_level: interval coverage.
      seed: simulation seed (default: the fit's seed, so ``fit(seed=s).effects()`` equals
        ``analyze(seed=s)``).
      chunk_size: Monte Carlo chunk size (bounds memory; part of the random stream).
      dose_grid: continuous treatment only: treatment values (original units) at which to
        report the mean dose-response ``E[Y(a, M(a'))]`` and the local direct and indirect
        effects (derivatives by ``jax.grad``) in ``meta["dose_response"]``.
      estimator: ``"plugin"`` (the default) or ``"onestep"``: the mean, CDF and quantile rows
        (and proportions mediated) by the cross-fitted one-step estimator of
        :mod:`dcma_jax.robust` with influence-function intervals (needs a fit with
        ``crossfit=K``, a binary treatment and natural effects); distance rows stay plug-in.
        The plug-in estimates of the replaced rows go to ``meta["onestep"]``, the propensity's
        positivity diagnostic to ``meta["diagnostics"]["positivity"]``.
      density_ratio: one-step only: the mediator density ratio from the generators'
        log-densities (``"density"``), from a classifier of ``A`` on ``(M, X)``
        (``"classifier"``), or ``"auto"`` (densities of closed-form mediator models, the
        classifier for neural ones).
      draws_per_row: one-step only: Monte Carlo draws per row of the outcome regressions.
      progress: called with a stage description before each stage.

    Returns:
      A :class:`~dcma_jax.results.MediationResult`.

    Raises:
      ValueError: bad arguments; PathSpecificError: an expression that is not identified.
    """
    if num_draws < 1:
        raise ArgumentError(f"num_draws must be positive, got {num_draws}")
    if bootstrap_draws is not None and bootstrap_draws < 1:
        raise ArgumentError(f"bootstrap_draws must be positive, got {bootstrap_draws}")
    if not 0.0 < ci_level < 1.0:
        raise ArgumentError(f"ci_level must lie in (0, 1), got {ci_level}")
    data, model = fitted.data, fitted.model
    if dose_grid is not None and data.treatment_var.kind != "continuous":
        raise ArgumentError("dose_grid needs a continuous treatment")
    if estimator not in ESTIMATORS:
        raise ArgumentError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    notify = progress or (lambda _: None)
    started = time.perf_counter()
    seed = fitted.seed if seed is None else int(seed)
    if cdf_points is None:
        cdf_points = default_cdf_points(data)
    spec = FunctionalSpec(tuple(quantiles), tuple(float(t) for t in cdf_points), tuple(distances))
    estimands = build_estimands(
        data, model, effects, treatment_values, reference, path_specific, path_reference
    )
    if estimator == "onestep":
        robust.check_onestep(fitted, estimands)
    sim_key, boot_sim_key, dose_key = query_keys(seed)
    arr = model_arrays(fitted)
    arms = Arms.pack(estimands.arms, float_dtype())
    common = (arr["covariates"], arr["weights"], arr["center"], arr["scale"])

    b_draws = d_draws = None
    if fitted.bootstrap:
        b_draws = bootstrap_draws or min(num_draws, DEFAULT_BOOTSTRAP_DRAWS)
        # Wasserstein and KS carry a positive Monte Carlo bias, ~ draws^(-1/2) near 0: the
        # replicates evaluate them over blocks of at most num_draws / 4 draws, so that the
        # point estimate (all num_draws) has at most half their bias and the zero test of
        # inference.distance_interval is not made liberal by it.
        d_draws = max(1, min(b_draws, num_draws // POINT_TO_REPLICATE_DRAWS))

    notify("simulating arms")
    values, curves, outcome = arm_effects(
        model, estimands.layout, spec, fitted.params, arms, sim_key, *common, num_draws, chunk_size
    )
    rows = effect_rows(estimands.layout, spec)
    low = high = curves_low = curves_high = None
    if fitted.bootstrap:
        notify(f"simulating {fitted.bootstrap} bootstrap replicates")
        low, high, curves_low, curves_high = _replicate_intervals(
            fitted,
            estimands.layout,
            spec,
            arms,
            boot_sim_key,
            b_draws,
            chunk_size,
            ci_level,
            rows,
            np.asarray(values),
            None if d_draws >= b_draws else d_draws,
        )

    extra_meta = {}
    if estimator == "onestep":
        notify(f"one-step correction ({fitted.settings.crossfit} folds)")
        plugin = {"values": values, "low": low, "high": high, "outcome": outcome}
        merged, extra_meta = robust.onestep_effects(
            fitted,
            estimands,
            spec,
            rows,
            plugin,
            key=jax.random.fold_in(sim_key, 3),
            ci_level=ci_level,
            curve_levels=CURVE_LEVELS,
            density_ratio=density_ratio,
            draws_per_row=draws_per_row,
        )
        values, low, high = merged["values"], merged["low"], merged["high"]
        curves, curves_low, curves_high = (
            merged["curves"],
            merged["curves_low"],
            merged["curves_high"],
        )
    undefined = _undefined_ratios(estimands.layout, rows, np.asarray(values), low, high)
    if low is not None:
        for i in undefined:
            low[i] = high[i] = np.nan
    meta = fitted.describe()
    meta.update(
        {
            "arms": estimands.arms_json(),
            "effects": effects,
            "num_draws": num_draws,
            "bootstrap_draws": b_draws,
            "distance_draws": d_draws,
            "ci_level": ci_level,
            "estimator": estimator,
            "ci_method": CI_METHOD if fitted.bootstrap else None,
            "intervals": _interval_rules(
                spec, fitted.bootstrap, extra_meta.get("onestep", {}).get("intervals")
            ),
            "seed": seed,
            "devices": devices.describe(),
            "energy_convention": ENERGY_CONVENTION,
            "undefined": [
                {"effect": rows[i].effect, "what": what, "reason": reason}
                for i, (what, reason) in undefined.items()
            ],
        }
    )
    if data.treatment_var.kind != "binary":
        meta["contrasts"] = [
            {"treated": labels[0], "control": labels[1], "suffix": suffix}
            for _, _, labels, suffix in contrast_pairs(data, treatment_values, reference)
        ]
    if path_specific:
        meta["path_reference"] = estimands.arm_names[-1]
    notify("diagnostics")
    meta["diagnostics"] = {
        "nodes": diagnostics.node_diagnostics(fitted),
        "overlap": diagnostics.overlap(fitted, estimands, key=jax.random.fold_in(sim_key, 2)),
    }
    if estimator == "onestep":
        meta["onestep"] = extra_meta["onestep"]
        meta["diagnostics"]["positivity"] = extra_meta["positivity"]
    if dose_grid is not None:
        notify("dose-response and local effects")
        meta["dose_response"] = dose_response(
            fitted, dose_grid, num_draws=num_draws, chunk_size=chunk_size, key=dose_key
        )
    meta["seconds"] = round(time.perf_counter() - started, 2)
    return MediationResult.from_arrays(
        rows=rows,
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


def _interval_rules(spec: FunctionalSpec, bootstrap: int, onestep: dict | None) -> dict | None:
    """``meta["intervals"]``: the interval rule of each functional in the table (or ``None``).

    ``onestep``: the one-step estimator's rules of the rows it replaced.
    """
    rules = {}
    if bootstrap:
        rules = dict.fromkeys(("mean", "quantile", "cdf"), PERCENTILE_RULE)
        rules.update(dict.fromkeys(spec.distances, DISTANCE_RULE))
    rules.update(onestep or {})
    return rules or None


def _replicate_intervals(
    fitted: FittedMediation,
    layout: EffectLayout,
    spec: FunctionalSpec,
    arms: Arms,
    key: jax.Array,
    num_draws: int,
    chunk_size: int,
    ci_level: float,
    rows: Sequence,
    estimates: np.ndarray,
    distance_draws: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bootstrap bounds of every row and curve over the stored replicates (diverged ones out).

    Each replicate is simulated with its own key and its resample's covariate distribution.
    Scalar functionals and the curves get percentile bounds; distance rows get
    :func:`~dcma_jax.inference.distance_interval` about their point ``estimates``.
    """
    arr = model_arrays(fitted)
    values, curves = replicate_effects(
        fitted.model,
        layout,
        spec,
        fitted.replicate_params,
        arms,
        jax.random.split(key, fitted.bootstrap),
        arr["covariates"],
        fitted.replicate_counts * arr["weights"],
        arr["center"],
        arr["scale"],
        num_draws,
        chunk_size,
        distance_draws,
    )
    kept = fitted.kept_replicates
    values = np.asarray(values)[kept]
    low, high = percentile_interval(values, ci_level)
    for name in spec.distances:
        at = np.array([r.functional == name for r in rows])
        upper = 1.0 if name == "ks" else np.inf
        low[at], high[at] = distance_interval(values[:, at], estimates[at], ci_level, upper)
    curves_low, curves_high = percentile_interval(np.asarray(curves)[kept], ci_level)
    return low, high, curves_low, curves_high


def _undefined_ratios(
    layout: EffectLayout,
    rows: Sequence,
    values: np.ndarray,
    low: np.ndarray | None,
    high: np.ndarray | None,
) -> dict[int, tuple[str, str]]:
    """Ratio rows (proportions mediated) whose interval is undefined: ``{row: (what, why)}``.

    ``NIE / TE`` is unbounded near ``TE = 0``: when the TE's interval contains 0, the ratio's
    replicates straddle a pole and their percentiles mean nothing, so the interval is reported
    as undefined (``null``) with this reason rather than as numbers.
    """
    index = {(r.effect, r.functional, r.level): i for i, r in enumerate(rows)}
    out = {}
    for name, _, denominator in layout.ratios:
        i, den = index[(name, "mean", None)], index[(denominator, "mean", None)]
        if low is not None and low[den] <= 0.0 <= high[den]:
            out[i] = (
                "interval",
                f"the interval of {denominator} contains 0, so the ratio is unbounded there",
            )
        elif not np.isfinite(values[i]):
            out[i] = ("estimate", f"{denominator} is 0")
    return out


def dose_response(
    fitted: FittedMediation,
    grid: Sequence[float],
    *,
    num_draws: int = DEFAULT_DRAWS,
    seed: int | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    key: jax.Array | None = None,
) -> dict:
    """Mean dose-response ``E[Y(a, M(a'))]`` on ``grid`` and local effects, original units.

    Bound as ``FittedMediation.dose_response``.

    Args:
      fitted: the fitted model (continuous treatment).
      grid: treatment values, original units.
      num_draws: draws per arm.
      seed: simulation seed (default: the fit's).
      chunk_size: Monte Carlo chunk size.
      key: a PRNG key to use instead of the seed's.

    Returns:
      ``{"method", "grid", "mean", "local_direct", "local_indirect", "note"}``: ``mean[i][j]``
      is ``E[Y(grid[i], M(grid[j]))]``; the local effects are derivatives per unit of treatment
      at ``a = a' = grid[i]`` (see :func:`dose_response_surface`).
    """
    data, model = fitted.data, fitted.model
    var = data.treatment_var
    if var.kind != "continuous":
        raise ArgumentError("dose_response needs a continuous treatment")
    values = np.asarray(grid, np.float64)
    if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)):
        raise ArgumentError(f"grid must be a non-empty list of finite numbers, got {list(grid)}")
    if key is None:
        key = query_keys(fitted.seed if seed is None else int(seed))[2]
    arr = model_arrays(fitted)
    codes = jnp.asarray(var.encode(values), float_dtype())
    method = "autodiff" if pathwise_differentiable(model) else "finite_difference"
    mu, direct, indirect = dose_response_surface(
        model,
        fitted.params,
        key,
        arr["covariates"],
        arr["weights"],
        codes,
        num_draws,
        chunk_size,
        method,
    )
    y_scale = float(data.outcome_var.scale)
    return {
        "method": method,
        "grid": [float(v) for v in values],
        "mean": (np.asarray(mu) * y_scale + float(data.outcome_var.center)).tolist(),
        "local_direct": (np.asarray(direct) * y_scale / var.scale).tolist(),
        "local_indirect": (np.asarray(indirect) * y_scale / var.scale).tolist(),
        "note": "mean[i][j] = E[Y(grid[i], M(grid[j]))]; local effects are derivatives "
        "per unit of treatment at a = a' = grid[i]: jax.grad through the simulation "
        "(method autodiff) or central differences on common random numbers",
    }


def simulate_arms(
    fitted: FittedMediation,
    arms: Sequence[str],
    *,
    num_draws: int = 10_000,
    seed: int | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> pd.DataFrame:
    """Draws of the mediators and the outcome under each arm, in original units.

    Bound as ``FittedMediation.simulate``.

    Args:
      fitted: the fitted model.
      arms: expressions such as ``"Y(1,M(0))"``, ``"Y(1,M1(0),M2(1,M1(0)))"`` or
        ``"Y(1;G_M1(1),G_M2(0))"`` (see :func:`dcma_jax.arms.parse_arms`).
      num_draws: draws per arm.
      seed: simulation seed (default: the fit's).
      chunk_size: Monte Carlo chunk size.

    Returns:
      A long DataFrame: column ``arm`` (the canonical expression), one column per mediator
      (the values the outcome saw) and one for the outcome; ``num_draws`` rows per arm.
      Arms share covariate rows and noise (common random numbers).
    """
    from dcma_jax.simulate import simulate

    if isinstance(arms, str):
        arms = [arms]
    if num_draws < 1:
        raise ArgumentError(f"num_draws must be positive, got {num_draws}")
    data, model = fitted.data, fitted.model
    parsed = parse_user_arms(data, model, arms)
    key = query_keys(fitted.seed if seed is None else int(seed))[0]
    arr = model_arrays(fitted)
    draws = simulate(
        model, fitted.params, key, arr["covariates"], arr["weights"], parsed, num_draws, chunk_size
    )
    outcome, mediators = np.asarray(draws.outcome), np.asarray(draws.mediators)
    frame = {"arm": np.repeat([a.expression for a in parsed], num_draws)}
    columns = [mediators[:, :, j] for j in range(mediators.shape[2])] + [outcome]
    for var, values in zip((*data.mediator_vars, data.outcome_var), columns, strict=True):
        values = values.reshape(-1)
        if var.kind == "binary":  # the user's labels, not the 0/1 codes
            frame[var.name] = np.asarray(var.levels, dtype=object)[values.round().astype(int)]
        else:
            frame[var.name] = var.decode(values)
    return pd.DataFrame(frame)
