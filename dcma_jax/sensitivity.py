r"""Sensitivity to unmeasured mediator–outcome confounding, as a query on a fitted model.

Sequential ignorability says nothing confounds the mediator and the outcome given the treatment
and the covariates; no data can confirm it. The sensitivity model (Imai, Keele & Yamamoto 2010,
generalised to any generator through a Gaussian copula) lets the mediator's structural noise
``eps_M`` and the outcome's ``eta`` be correlated ``rho``. The fitted outcome generator is read
as a map ``g_obs(a, m, x, u)`` from a normal score ``u``; given ``rho`` the structural map is
identified from it,

    g*(a, m, x, eta) = g_obs(a, m, x, (eta - rho eps_M(m; a, x)) / sqrt(1 - rho^2)),

with ``eps_M(m; a, x) = Phi^-1(F_M(m | a, x))`` the mediator's conditional normal score. An arm
``Y(a, M(a'))`` draws ``m`` with noise ``eps'`` under ``a'`` and ``eta = rho eps' + sqrt(1 -
rho^2) z``, so its outcome score is ``u = z + rho / sqrt(1 - rho^2) (eps' - eps_M(m; a, x))``:
arms with ``a = a'`` do not move with ``rho`` (the total effect stays identified), cross-world
arms do. For linear-Gaussian models without interaction this is exactly medsens' closed form,

    ACME(rho) = (b2 s1 / s2) (rt - rho sqrt((1 - rt^2) / (1 - rho^2))),

which crosses zero at ``rho = rt``, the correlation of the residuals of ``M ~ A + X`` and
``Y ~ A + X`` (tested). A binary outcome enters through its latent threshold: the Bernoulli
generators draw ``1{u < Phi^-1(p)}``, a probit latent with normal score ``u``.

Scope: continuous mediators (their normal score from ``inverse`` or ``Phi^-1(cdf)``: linear,
mdn, flow, diffusion); outcome generators whose draw is a map of one normal score (linear,
flow, diffusion, and the binary models); one coupled mediator (``mediator=``; with several
mediators the others keep ``rho = 0``). Binary mediators (a latent score drawn within the
mediator's probability interval) and an mdn outcome (two noises: component and Gaussian) are
refused with a clear error.

Reported for every effect row and every ``rho`` of the grid: the estimate, bootstrap bands from
the stored replicates (no refit), ``d estimate / d rho`` by ``jax.jvp``, and both of medsens'
parametrisations: ``R2*_M R2*_Y = rho^2`` (the confounder's share of the residual variances)
and ``R2~_M R2~_Y = rho^2 (1 - R2_M)(1 - R2_Y)`` (its share of the total variances), with
``R2 = 1 - E[Var(X | c)] / Var(X)`` of each fitted model (conditional variances from draws).
Breakpoints, where an estimate or a CI bound crosses zero, are found by a Newton step on the
autodiff derivative, safeguarded by bisection inside the grid bracket of the sign change.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from dcma_jax.arms import Arms
from dcma_jax.errors import ArgumentError
from dcma_jax.estimands import (
    DEFAULT_QUANTILES,
    EffectLayout,
    FunctionalSpec,
    effect_rows,
    effect_values,
)
from dcma_jax.functionals import DISTANCE_FUNCTIONALS
from dcma_jax.generators.base import apply_batched
from dcma_jax.inference import percentile_interval
from dcma_jax.model import Model, float_dtype, node_data
from dcma_jax.simulate import DEFAULT_CHUNK, simulate_packed

if TYPE_CHECKING:
    from dcma_jax.fitted import FittedMediation

DEFAULT_GRID = tuple(float(r) for r in np.round(np.linspace(-0.9, 0.9, 19), 10))
DEFAULT_SENSITIVITY_DRAWS = 20_000
R2_SAMPLES = 256
CURVE_COLUMNS = (
    "rho",
    "r2_star_product",
    "r2_tilde_product",
    "effect",
    "functional",
    "level",
    "estimate",
    "ci_low",
    "ci_high",
    "d_estimate_d_rho",
)
BREAKPOINT_COLUMNS = (
    "effect",
    "functional",
    "level",
    "bound",
    "rho",
    "r2_star_product",
    "r2_tilde_product",
)


class SensitivityError(ArgumentError):
    """A sensitivity analysis the model cannot support (bad grid, missing normal score)."""


# --------------------------------------------------------------------------------------------
# Compiled cores
# --------------------------------------------------------------------------------------------


def _values_at(
    model: Model,
    layout: EffectLayout,
    spec: FunctionalSpec,
    params: tuple,
    arms: Arms,
    key: jax.Array,
    covariates: jax.Array,
    weights: jax.Array,
    center: jax.Array,
    scale: jax.Array,
    rho: jax.Array,
    num_draws: int,
    chunk_size: int,
    coupled: int,
) -> jax.Array:
    """Every effect row at ``rho`` (original units)."""
    draws = simulate_packed(
        model, params, key, covariates, weights, arms, num_draws, chunk_size, coupled, rho
    )
    return effect_values(layout, spec, draws.outcome * scale + center)


_STATIC = ("model", "layout", "spec", "num_draws", "chunk_size", "coupled")


@functools.partial(jax.jit, static_argnames=_STATIC)
def point_curve(
    model,
    layout,
    spec,
    params,
    arms,
    key,
    covariates,
    weights,
    center,
    scale,
    rhos,
    num_draws,
    chunk_size,
    coupled,
):
    """``(values, d values / d rho)`` at each ``rho`` of ``rhos``: ``(G, rows)`` each.

    The same key at every ``rho`` (common random numbers), so the curve is smooth in ``rho``.
    """

    def one(rho):
        f = functools.partial(
            _values_at,
            model,
            layout,
            spec,
            params,
            arms,
            key,
            covariates,
            weights,
            center,
            scale,
            num_draws=num_draws,
            chunk_size=chunk_size,
            coupled=coupled,
        )
        return jax.jvp(f, (rho,), (jnp.ones_like(rho),))

    return jax.lax.map(one, rhos)


@functools.partial(jax.jit, static_argnames=_STATIC)
def replicate_curves(
    model,
    layout,
    spec,
    params,
    arms,
    keys,
    covariates,
    weights,
    center,
    scale,
    rhos,
    num_draws,
    chunk_size,
    coupled,
):
    """Every replicate's effect rows at each ``rho``: ``(B, G, rows)``.

    ``params``, ``keys`` and ``weights`` carry the replicate axis; each replicate keeps its key
    across ``rho``.
    """

    def one(args):
        p, key, w = args
        return jax.lax.map(
            lambda rho: _values_at(
                model,
                layout,
                spec,
                p,
                arms,
                key,
                covariates,
                w,
                center,
                scale,
                rho,
                num_draws,
                chunk_size,
                coupled,
            ),
            rhos,
        )

    return jax.lax.map(one, (params, keys, weights))


# --------------------------------------------------------------------------------------------
# The query
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SensitivityResult:
    """Curves and breakpoints of a sensitivity analysis.

    Attributes:
      curve: one row per ``rho`` x effect row (:data:`CURVE_COLUMNS`).
      breakpoints: one row per zero crossing of an estimate or a CI bound
        (:data:`BREAKPOINT_COLUMNS`; ``bound`` is ``"estimate"``, ``"ci_low"`` or ``"ci_high"``).
      meta: settings: coupled mediator, grid, R2 of the fitted models, draws, bootstrap, seed.
    """

    curve: pd.DataFrame
    breakpoints: pd.DataFrame
    meta: dict

    def to_dict(self) -> dict:
        """``{"curve": [...], "breakpoints": [...], "meta": {...}}``, NaN as ``null``."""

        def records(frame: pd.DataFrame) -> list[dict]:
            out = []
            for row in frame.to_dict(orient="records"):
                out.append({k: _json_value(v) for k, v in row.items()})
            return out

        return {
            "curve": records(self.curve),
            "breakpoints": records(self.breakpoints),
            "meta": self.meta,
        }

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path


def _json_value(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def r_squared(fitted: FittedMediation, node: int, num_samples: int = R2_SAMPLES) -> float:
    """``1 - E[Var(X | c)] / Var(X)`` of a fitted node, conditional variances from draws.

    For a linear-Gaussian node this is ``1 - sigma^2 / Var(X)`` (``sigma^2`` with the degrees of
    freedom correction of the fit, ``Var(X)`` of the sample), close to the OLS R^2.
    """
    model, data = fitted.model, fitted.data
    x, context = node_data(model, data)[node]
    generator = model.generators[node]
    key = jax.random.fold_in(jax.random.key(fitted.seed), 1000 + node)
    noise = jax.random.normal(key, (num_samples, data.n, generator.noise_dim), x.dtype)
    draws = jax.vmap(lambda z: apply_batched(generator, "sample", fitted.params[node], z, context))(
        noise
    )[..., 0]
    conditional = np.asarray(jnp.var(draws, axis=0, ddof=1))
    w = data.weights / data.weights.sum()
    values = np.asarray(x[:, 0], np.float64)
    total = np.sum(w * (values - np.sum(w * values)) ** 2)
    return float(1.0 - np.sum(w * conditional) / total)


def _check(fitted: FittedMediation, rho_grid: Sequence[float], mediator: str | None) -> int:
    model = fitted.model
    names = [m.name for m in model.graph.mediators]
    grid = np.asarray(rho_grid, np.float64)
    if grid.ndim != 1 or grid.size == 0:
        raise SensitivityError("the rho grid is empty")
    if not np.all(np.isfinite(grid)) or np.any(np.abs(grid) >= 1.0):
        raise SensitivityError(f"rho must lie strictly between -1 and 1, got {grid.tolist()}")
    if mediator is None:
        mediator = names[-1]
    if mediator not in names:
        raise SensitivityError(f"mediator {mediator!r} is not one of {names}")
    j = names.index(mediator)
    node, generator = model.graph.mediators[j], model.generators[j]
    if node.kind != "continuous":
        raise SensitivityError(
            f"mediator {mediator!r} is binary: the latent-score model of a binary mediator is "
            "not implemented yet; sensitivity needs a continuous mediator"
        )
    cls = type(generator)
    if not (generator.noise_dim == 1 and cls.implements("inverse")) and not cls.implements("cdf"):
        raise SensitivityError(
            f"{cls.__name__} (mediator {mediator!r}) has no normal score: it needs an inverse "
            "of one noise or a cdf"
        )
    outcome = model.generators[-1]
    if outcome.noise_dim != 1:
        raise SensitivityError(
            f"the outcome generator {type(outcome).__name__} draws from {outcome.noise_dim} "
            "noises, so it is no map of one normal score; use linear, flow or diffusion for the "
            "outcome (e.g. generators={'Y': 'flow', ...})"
        )
    return j


def sensitivity(
    fitted: FittedMediation,
    *,
    rho_grid: Sequence[float] = DEFAULT_GRID,
    mediator: str | None = None,
    effects: str = "natural",
    path_specific: Sequence[str] | None = None,
    path_reference: str | None = None,
    treatment_values: Sequence[float] | None = None,
    reference: object = None,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    cdf_points: Sequence[float] | None = None,
    distances: Sequence[str] = DISTANCE_FUNCTIONALS,
    num_draws: int = DEFAULT_SENSITIVITY_DRAWS,
    bootstrap_draws: int | None = None,
    ci_level: float = 0.95,
    seed: int | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    breakpoints: bool = True,
    progress: Callable[[str], None] | None = None,
) -> SensitivityResult:
    """Effect curves over ``rho`` with bands, derivatives and breakpoints; nothing is refitted.

    Bound as ``FittedMediation.sensitivity``. The effect arguments are those of
    :func:`dcma_jax.queries.effects`; at ``rho = 0`` the curve equals the effects query with
    the same seed and draws.

    Args:
      fitted: the fitted model.
      rho_grid: correlations in ``(-1, 1)``.
      mediator: the mediator whose noise is correlated with the outcome's (default: the last).
      effects: see :func:`dcma_jax.queries.effects`.
      path_specific: see :func:`dcma_jax.queries.effects`.
      path_reference: see :func:`dcma_jax.queries.effects`.
      treatment_values: see :func:`dcma_jax.queries.effects`.
      reference: see :func:`dcma_jax.queries.effects`.
      quantiles: see :func:`dcma_jax.queries.effects`.
      cdf_points: see :func:`dcma_jax.queries.effects`.
      distances: see :func:`dcma_jax.queries.effects`.
      num_draws: draws per arm for the point curve (default 20,000).
      bootstrap_draws: draws per arm in each replicate (default ``num_draws``).
      ci_level: band coverage.
      seed: simulation seed (default: the fit's).
      chunk_size: Monte Carlo chunk size.
      breakpoints: find the zero crossings (Newton steps; costs replicate simulations).
      progress: called with a stage description before each stage.

    Raises:
      SensitivityError: a bad grid, a binary mediator, or a generator without the score it
        needs.
    """
    from dcma_jax import queries

    coupled = _check(fitted, rho_grid, mediator)
    notify = progress or (lambda _: None)
    data, model = fitted.data, fitted.model
    seed = fitted.seed if seed is None else int(seed)
    if cdf_points is None:
        cdf_points = queries.default_cdf_points(data)
    spec = FunctionalSpec(tuple(quantiles), tuple(float(t) for t in cdf_points), tuple(distances))
    estimands = queries.build_estimands(
        data, model, effects, treatment_values, reference, path_specific, path_reference
    )
    layout, rows = estimands.layout, effect_rows(estimands.layout, spec)
    dtype = float_dtype()
    arms = Arms.pack(estimands.arms, dtype)
    sim_key, boot_key, _ = queries.query_keys(seed)
    arr = queries.model_arrays(fitted)
    rhos = jnp.asarray(rho_grid, dtype)
    static = dict(num_draws=num_draws, chunk_size=chunk_size, coupled=coupled)

    notify("sensitivity curve")
    common = (arr["covariates"], arr["weights"], arr["center"], arr["scale"])
    values, slopes = point_curve(
        model, layout, spec, fitted.params, arms, sim_key, *common, rhos, **static
    )
    values, slopes = np.asarray(values, np.float64), np.asarray(slopes, np.float64)
    low = high = None
    b_static = dict(static, num_draws=bootstrap_draws or num_draws)
    if fitted.bootstrap:
        notify(f"sensitivity curves of {fitted.bootstrap} bootstrap replicates")
        keys = jax.random.split(boot_key, fitted.bootstrap)
        replicate_weights = fitted.replicate_counts * arr["weights"]
        boot = np.asarray(
            replicate_curves(
                model,
                layout,
                spec,
                fitted.replicate_params,
                arms,
                keys,
                arr["covariates"],
                replicate_weights,
                arr["center"],
                arr["scale"],
                rhos,
                **b_static,
            ),
            np.float64,
        )
        kept = fitted.kept_replicates
        low, high = percentile_interval(boot[kept], ci_level)

    r2_m, r2_y = r_squared(fitted, coupled), r_squared(fitted, len(model.generators) - 1)
    grid = np.asarray(rho_grid, np.float64)
    curve = _curve_frame(rows, grid, values, slopes, low, high, r2_m, r2_y)
    found = pd.DataFrame(columns=list(BREAKPOINT_COLUMNS))
    if breakpoints:
        notify("breakpoints (Newton steps)")
        point = functools.partial(
            _point_value_and_slope,
            model,
            layout,
            spec,
            fitted.params,
            arms,
            sim_key,
            common,
            static,
        )
        bounds = {"estimate": (values, point)}
        if fitted.bootstrap:
            replicate = functools.partial(
                _bound_value_and_slope,
                model,
                layout,
                spec,
                fitted,
                arms,
                keys,
                arr,
                b_static,
                kept,
                ci_level,
            )
            bounds["ci_low"] = (low, functools.partial(replicate, lower=True))
            bounds["ci_high"] = (high, functools.partial(replicate, lower=False))
        found = _breakpoints(rows, grid, bounds, r2_m, r2_y)
    meta = {
        "model": "Gaussian copula between the mediator's normal score and the outcome's",
        "coupled_mediator": model.graph.mediators[coupled].name,
        "rho_grid": grid.tolist(),
        "r2_mediator": r2_m,
        "r2_outcome": r2_y,
        "effects": effects,
        "num_draws": num_draws,
        "bootstrap": fitted.bootstrap,
        "bootstrap_draws": b_static["num_draws"] if fitted.bootstrap else None,
        "ci_level": ci_level,
        "seed": seed,
        "generators": {
            n.name: type(g).__name__
            for n, g in zip(model.graph.nodes, model.generators, strict=True)
        },
        "outcome": data.outcome_name,
    }
    return SensitivityResult(curve, found, meta)


def _curve_frame(rows, grid, values, slopes, low, high, r2_m, r2_y) -> pd.DataFrame:
    records = []
    for g, rho in enumerate(grid):
        for r, row in enumerate(rows):
            records.append(
                (
                    rho,
                    rho**2,
                    rho**2 * (1 - r2_m) * (1 - r2_y),
                    row.effect,
                    row.functional,
                    np.nan if row.level is None else row.level,
                    values[g, r],
                    np.nan if low is None else low[g, r],
                    np.nan if high is None else high[g, r],
                    slopes[g, r],
                )
            )
    return pd.DataFrame(records, columns=list(CURVE_COLUMNS))


def _point_value_and_slope(model, layout, spec, params, arms, key, common, static, rho, row):
    values, slopes = point_curve(
        model,
        layout,
        spec,
        params,
        arms,
        key,
        *common,
        jnp.asarray([rho], float_dtype()),
        **static,
    )
    return float(values[0, row]), float(slopes[0, row])


def _bound_value_and_slope(
    model, layout, spec, fitted, arms, keys, arr, static, kept, ci_level, rho, row, lower
):
    """A CI bound (percentile over the replicates) at ``rho`` and its ``rho`` derivative."""
    q = (1.0 - ci_level) / 2.0 if lower else 1.0 - (1.0 - ci_level) / 2.0
    weights = fitted.replicate_counts * arr["weights"]

    def bound(r):
        boot = replicate_curves(
            model,
            layout,
            spec,
            fitted.replicate_params,
            arms,
            keys,
            arr["covariates"],
            weights,
            arr["center"],
            arr["scale"],
            r[None],
            **static,
        )[:, 0, row]
        return jnp.quantile(boot[jnp.asarray(kept)], q)

    value, slope = jax.jvp(
        bound, (jnp.asarray(rho, float_dtype()),), (jnp.ones((), float_dtype()),)
    )
    return float(value), float(slope)


def newton_root(
    f: Callable[[float], tuple[float, float]],
    lo: float,
    hi: float,
    f_lo: float,
    f_hi: float,
    tol: float = 1e-7,
    max_steps: int = 40,
) -> float:
    """A root of ``f`` in ``[lo, hi]`` (``f_lo``, ``f_hi`` of opposite signs).

    ``f(x)`` returns ``(value, derivative)``. Newton steps from the end nearer zero; a step
    that leaves the bracket, or a zero derivative, is replaced by bisection, and the bracket
    shrinks around the sign change after every evaluation.
    """
    x = lo if abs(f_lo) < abs(f_hi) else hi
    value, slope = f(x)
    for _ in range(max_steps):
        if value == 0.0 or hi - lo < tol:
            break
        step_ok = slope not in (0.0, None) and math.isfinite(slope)
        candidate = x - value / slope if step_ok else None
        x = candidate if candidate is not None and lo < candidate < hi else 0.5 * (lo + hi)
        value, slope = f(x)
        if abs(value) < tol:
            break
        if (value < 0) == (f_lo < 0):
            lo, f_lo = x, value
        else:
            hi, f_hi = x, value
    return x


def _breakpoints(rows, grid, bounds, r2_m, r2_y) -> pd.DataFrame:
    records = []
    for bound, (values, fn) in bounds.items():
        for r, row in enumerate(rows):
            v = values[:, r]
            for g in range(len(grid) - 1):
                if not (np.isfinite(v[g]) and np.isfinite(v[g + 1])):
                    continue
                if v[g] == 0.0 or v[g] * v[g + 1] < 0:
                    if v[g] == 0.0:
                        rho = float(grid[g])
                    else:
                        f = functools.partial(_row_function, fn, row=r)
                        rho = newton_root(f, grid[g], grid[g + 1], v[g], v[g + 1])
                    records.append(
                        (
                            row.effect,
                            row.functional,
                            np.nan if row.level is None else row.level,
                            bound,
                            rho,
                            rho**2,
                            rho**2 * (1 - r2_m) * (1 - r2_y),
                        )
                    )
    return pd.DataFrame(records, columns=list(BREAKPOINT_COLUMNS))


def _row_function(fn, rho, row):
    return fn(float(rho), row)
