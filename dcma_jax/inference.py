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
    concatenate,
    effect_rows,
    effect_values,
    interventional_effects,
    natural_effects,
    path_specific_effects,
    quantile_curves,
)
from dcma_jax.functionals import DISTANCE_FUNCTIONALS
from dcma_jax.graph import resolve_parents
from dcma_jax.model import GeneratorChoice, Model, build_model, float_dtype
from dcma_jax.paths import resolve as resolve_paths
from dcma_jax.results import MediationResult
from dcma_jax.simulate import DEFAULT_CHUNK, Arms, simulate
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
    arms: Arms | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Simulates the arms and evaluates every effect row and quantile-effect curve.

    ``arms`` (traced) overrides ``estimands.arm_spec()``; passing it with
    ``estimands.structure()`` as the static argument lets estimands that differ only in
    treatment values (continuous values, categorical levels) share one compilation.

    Returns:
      ``(values, curves, outcome)``: effect values in row order, quantile-effect curves on
      :data:`CURVE_LEVELS`, and the arms' outcome draws in original units.
    """
    if arms is None:
        arms = estimands.arm_spec()
    draws = simulate(model, params, key, covariates, weights, arms, num_draws, chunk_size)
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
    arms: Arms | None = None,
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
            arms,
        )
        return values, curves

    return jax.lax.map(one, (params, keys, weights))


@functools.partial(jax.jit, static_argnames=("model", "num_draws", "chunk_size", "method"))
def dose_response(
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
      :func:`simulate` (pathwise derivatives of the Monte Carlo mean; the draws are smooth in
      the treatment code for continuous nodes). Their sum is the local total effect
      ``d mu(a, a) / d a``.

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
        arms = jnp.concatenate([a[:, None], jnp.repeat(a_m[:, None], k, axis=1)], axis=1)
        draws = simulate(model, params, key, covariates, weights, arms, num_draws, chunk_size)
        return jnp.mean(draws.outcome, axis=1)

    mu = means(jnp.repeat(grid, size), jnp.tile(grid, size)).reshape(size, size)
    if method == "autodiff":
        # Arm i depends only on its own codes, so the gradient of the sum is the diagonal.
        grad = jax.grad(lambda a, b: jnp.sum(means(a, b)), argnums=(0, 1))
        direct, indirect = grad(grid, grid)
        return mu, direct, indirect
    if method != "finite_difference":
        raise ValueError(f"method must be 'autodiff' or 'finite_difference', got {method!r}")
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


def _contrast_pairs(
    data: MediationData, treatment_values: Sequence | None, reference: object
) -> list[tuple[float, float, tuple[str, str], str]]:
    """``(treated code, control code, labels, effect-name suffix)`` for each contrast."""
    var = data.treatment_var

    def label(v: object) -> str:
        return f"{v:g}" if isinstance(v, float) else str(v)

    if var.kind == "binary":
        if treatment_values is not None or reference is not None:
            raise ValueError("treatment_values and reference apply to non-binary treatments")
        return [(1.0, 0.0, ("1", "0"), "")]
    if var.kind == "continuous":
        if reference is not None:
            raise ValueError("reference applies to a categorical treatment")
        if treatment_values is None:
            observed = var.decode(data.treatment)
            treatment_values = tuple(float(f"{q:.4g}") for q in np.quantile(observed, (0.75, 0.25)))
        if len(treatment_values) != 2:
            raise ValueError(
                f"treatment_values must be (treated, control), got {tuple(treatment_values)}"
            )
        t, c = (float(v) for v in treatment_values)
        if not (np.isfinite(t) and np.isfinite(c)) or t == c:
            raise ValueError(f"treatment_values must be two different finite numbers, got {t}, {c}")
        return [(float(var.encode(t)), float(var.encode(c)), (label(t), label(c)), "")]
    # categorical: every other level against the reference level
    if treatment_values is not None:
        raise ValueError("treatment_values applies to a continuous treatment; use reference")
    levels = list(var.levels)
    ref = levels[0] if reference is None else reference
    matches = [lv for lv in levels if lv == ref or str(lv) == str(ref)]
    if not matches:
        raise ValueError(
            f"reference {ref!r} is not a level of treatment {var.name!r} (levels: {levels})"
        )
    ref = matches[0]
    return [
        (float(levels.index(lv)), float(levels.index(ref)), (str(lv), str(ref)), f"[{lv}]")
        for lv in levels
        if lv != ref
    ]


def build_estimands(
    data: MediationData,
    model: Model,
    effects: str = "natural",
    treatment_values: Sequence | None = None,
    reference: object = None,
    path_specific: Sequence[str] | None = None,
    path_reference: str | None = None,
) -> Estimands:
    """The estimands :func:`analyze` simulates, in treatment codes (see its docstring)."""
    if effects not in ("natural", "interventional"):
        raise ValueError(f"effects must be 'natural' or 'interventional', got {effects!r}")
    pairs = _contrast_pairs(data, treatment_values, reference)
    parts, suffixes = [], []
    for treated, control, labels, suffix in pairs:
        if effects == "natural":
            parts.append(natural_effects(data.num_mediators, treated, control, labels))
        else:
            parts.append(interventional_effects(data.mediator_names, treated, control, labels))
        suffixes.append(suffix)
    if path_specific:
        var = data.treatment_var

        def encode(v: object) -> float:
            # A binary treatment with text levels also accepts its codes 0 and 1.
            numeric = all(isinstance(lv, (int, float, np.number)) for lv in var.levels)
            if var.kind == "binary" and not numeric and v in (0.0, 1.0):
                return float(v)
            return float(var.encode(v))

        _, control, labels, _ = pairs[0]
        if path_reference is None:
            path_reference = f"{model.graph.outcome.name}({labels[1]})"
        resolved = resolve_paths(
            list(path_specific), model.graph, encode, treatment=data.treatment_name
        )
        (ref,) = resolve_paths([path_reference], model.graph, encode, data.treatment_name)
        parts.append(path_specific_effects(resolved, ref))
        suffixes.append("")
    return parts[0] if len(parts) == 1 else concatenate(parts, suffixes)


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
    effects: str = "natural",
    parents: str | Mapping[str, Sequence[str]] | Sequence[Sequence[int]] | None = None,
    path_specific: Sequence[str] | None = None,
    path_reference: str | None = None,
    treatment_values: Sequence[float] | None = None,
    reference: object = None,
    dose_grid: Sequence[float] | None = None,
) -> MediationResult:
    """Distributional mediation analysis: natural, interventional or path-specific effects.

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
      effects: ``"natural"`` (TE, NDE, NIE with the mediators as one block) or
        ``"interventional"`` (TE, IDE, IIE per mediator, IIE_dependence; see
        :mod:`dcma_jax.estimands`).
      parents: the mediators' causal structure: ``None``/``"chain"`` (every earlier mediator
        is a parent), ``"parallel"`` (none), or ``{"M2": ["M1"], ...}``.
      path_specific: nested counterfactuals such as ``"Y(1,M1(0),M2(1,M1(0)))"``, each
        reported as ``PSE[...]`` against ``path_reference``; refused with
        :class:`~dcma_jax.paths.PathSpecificError` when not identified.
      path_reference: the reference expression (default ``Y(<control>)``: everything under
        the control value).
      treatment_values: ``(treated, control)`` values of a continuous treatment, original
        units (default: the observed upper and lower quartiles).
      reference: the reference level of a categorical treatment (default: the first sorted
        level); every other level is contrasted with it, effect names suffixed ``[level]``.
      dose_grid: continuous treatment only: treatment values (original units) at which to
        report the mean dose-response surface ``E[Y(a, M(a'))]`` and the local direct and
        indirect effects (derivatives by ``jax.grad``) in ``meta["dose_response"]``.

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
    if dose_grid is not None and data.treatment_var.kind != "continuous":
        raise ValueError("dose_grid needs a continuous treatment")
    notify = progress or (lambda _: None)
    started = time.perf_counter()
    if cdf_points is None:
        cdf_points = default_cdf_points(data)
    spec = FunctionalSpec(tuple(quantiles), tuple(float(t) for t in cdf_points), tuple(distances))
    parent_idx = resolve_parents(data.mediator_names, parents)
    model = build_model(data, generators, link=link, parents=parent_idx)
    estimands = build_estimands(
        data, model, effects, treatment_values, reference, path_specific, path_reference
    )
    fit_key, sim_key, row_key, boot_fit_key, boot_sim_key = jax.random.split(
        jax.random.key(seed), 5
    )
    dose_key = jax.random.fold_in(sim_key, 1)
    dtype = float_dtype()
    covariates = jnp.asarray(data.covariates, dtype)
    weights = jnp.asarray(data.weights, dtype)
    center = jnp.asarray(data.outcome_var.center, dtype)
    scale = jnp.asarray(data.outcome_var.scale, dtype)

    notify("fitting generators")
    params, infos = fit_model(model, data, fit_key, config)
    notify("simulating arms")
    static_estimands, arm_spec = estimands.structure(), estimands.arm_spec()
    values, curves, outcome = arm_effects(
        model,
        static_estimands,
        spec,
        params,
        sim_key,
        covariates,
        weights,
        center,
        scale,
        num_draws,
        chunk_size,
        arm_spec,
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
            static_estimands,
            spec,
            boot_params,
            jax.random.split(boot_sim_key, bootstrap),
            covariates,
            counts * weights,
            center,
            scale,
            b_draws,
            chunk_size,
            arm_spec,
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
        "arms": estimands.arms_json(),
        "effects": effects,
        "treatment_kind": data.treatment_var.kind,
        "parents": {
            node.name: [model.graph.mediators[p].name for p in node.parents]
            for node in model.graph.mediators
        },
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
    if data.treatment_var.kind != "binary":
        meta["contrasts"] = [
            {"treated": labels[0], "control": labels[1], "suffix": suffix}
            for _, _, labels, suffix in _contrast_pairs(data, treatment_values, reference)
        ]
    if path_specific:
        meta["path_reference"] = estimands.arm_names[-1]
    if dose_grid is not None:
        notify("dose-response and local effects")
        var = data.treatment_var
        grid = jnp.asarray(var.encode(np.asarray(dose_grid, np.float64)), dtype)
        method = "autodiff" if pathwise_differentiable(model) else "finite_difference"
        mu, direct, indirect = dose_response(
            model, params, dose_key, covariates, weights, grid, num_draws, chunk_size, method
        )
        y_scale = float(data.outcome_var.scale)
        meta["dose_response"] = {
            "method": method,
            "grid": [float(v) for v in dose_grid],
            "mean": (np.asarray(mu) * y_scale + float(data.outcome_var.center)).tolist(),
            "local_direct": (np.asarray(direct) * y_scale / var.scale).tolist(),
            "local_indirect": (np.asarray(indirect) * y_scale / var.scale).tolist(),
            "note": "mean[i][j] = E[Y(grid[i], M(grid[j]))]; local effects are derivatives "
            "per unit of treatment at a = a' = grid[i]: jax.grad through the simulation "
            "(method autodiff) or central differences on common random numbers",
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
