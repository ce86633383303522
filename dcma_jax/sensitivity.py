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
generators draw ``1{u < Phi^-1(p)}``, a probit latent with normal score ``u``. A count outcome
enters the same way through its latent score: the count generators draw ``F^-1(Phi(u))``,
increasing in ``u``. Binary and count draws are steps in ``rho``, so their pathwise derivative
is 0, not the curve's slope: for these outcomes ``d_estimate_d_rho`` is NaN (breakpoints are
found by bisection). A count mediator is refused: its normal score is no function of its
value, and no latent-score reading is implemented for it.

Binary mediators enter through their latent normal score. Every binary generator draws
``m = 1{Phi(z) < p(c)}``, i.e. ``m = 1{mu(c) + e > 0}`` with ``e = -z ~ N(0, 1)`` and
``mu = Phi^-1(p)`` the probit index (the linear predictor of a probit GLM); the copula
correlates ``e`` with ``eta`` (medsens' sign: a confounder that raises the latent ``M*``
raises ``Y``). ``e`` is no function of ``m``: among units with ``A = a, X = x, M = m`` it is
``N(0, 1)`` truncated to ``m``'s interval, with mean ``lambda(m; a, x)`` (the generalised
residual, ``phi(mu) / Phi(mu)`` for ``m = 1`` and ``-phi(mu) / Phi(-mu)`` for ``m = 0``) and
variance ``1 - v``, ``v = lambda (lambda + mu)``. So the observed outcome given ``(a, m, x)``
is a mixture over that latent: for a structural ``Y = mu*(a, m, x) + sigma eta`` its mean is
``mu* + sigma rho lambda`` and its variance ``sigma^2 (1 - rho^2 v)``, medsens' outcome
equation with its correction term ``adj = rho lambda``. An arm ``Y(a, M(a'))`` draws ``m``
with latent ``e'`` (minus the mediator's noise: a draw within ``m``'s interval under ``a'``)
and ``eta = rho e' + sqrt(1 - rho^2) z``. How ``g*`` follows from ``g_obs`` depends on what
the outcome fit identified:

* A closed-form outcome (linear-Gaussian) is the weighted least-squares projection of that
  mean on its design: ``beta_obs = beta* + sigma rho pi``, ``pi`` the projection of
  ``lambda`` (at the observed rows, under the fitted mediator) on the outcome's context, and
  its residual variance is ``s^2 = sigma^2 (1 - rho^2 q)``, ``q`` the weighted mean square of
  the projection. Given ``rho``, ``beta* = beta_obs - sigma rho pi`` and the arm draws
  ``u = (sqrt(1 - rho^2) z + rho (e' - e_hat)) / sqrt(1 - rho^2 q)``, ``e_hat = c pi`` at the
  outcome's context (:func:`latent_projection`: the outcome generator's own closed form fitted
  to ``lambda`` on the outcome's rows and weights, per bootstrap replicate; nothing else is
  refitted). Then ``NIE(rho) = (gamma_obs - sigma rho pi_m) E[Phi(mu_1) - Phi(mu_0)]`` for
  both arms and ``NDE(rho) = beta*_a``: medsens' ``d0 = d1 = gamma* mean(Phi(mu_1) -
  Phi(mu_0))`` and ``z0 = z1 = beta*_T``. The total effect moves by ``-sigma rho (pi_a + pi_m
  E[Phi(mu_1) - Phi(mu_0)])`` (within 0.7% of it over ``rho`` in [-0.9, 0.9] in the tests,
  n = 900): under confounding a linear outcome model misses the nonlinear ``sigma rho
  lambda``, and the structural linear model corrects its total effect too (by zero in
  expectation when ``A`` is randomised).
* A flexible outcome (flow, diffusion) fits the mixture itself; its ``g_obs(a, m, x, .)`` is
  read as Gaussian in ``eta`` given ``m`` (moment-matched): ``u = z + rho / sqrt(1 - rho^2 v)
  (e' - e_a)``, ``e_a`` the latent at the rank of ``e'`` within ``m``'s interval under the
  outcome's context (``latent_transport`` in :mod:`dcma_jax.generators.base`) and ``v`` there.
  Arms with ``a = a'`` are unchanged (``e_a = e'``); a cross-world arm's mean is exact for a
  structural location model whose observed law is Gaussian given ``(a, m, x)``, approximate
  otherwise (the mixture's skew).

For a continuous mediator the interval is a point, ``e_hat = e_a = eps_M(m; a, x)`` and ``q =
v = 1``, and both are the formula above. ``result.meta["latent_reading"]`` says which applies.

Differences from medsens (R ``mediation``, ``R/medsens.R``, its probit mediator with linear
outcome and linear mediator with probit outcome; ported to numpy in
``tests/medsens_reference.py`` and compared in ``tests/test_sensitivity.py``):

* medsens re-estimates the outcome model at every ``rho`` by iterated FGLS of
  ``Y - sigma_3 adj`` on the design, passing ``w = 1 - rho^2 lambda (lambda + mu)`` to ``lm``
  as its weights and taking ``sigma_3`` as ``lm``'s weighted residual SD. ``w`` is the
  residuals' relative *variance*, used as a precision, so ``sigma_3`` comes out near
  ``sigma sqrt(mean(w^2))`` instead of ``sigma`` and the correction ``sigma_3 rho lambda`` is
  too small: on medsens' own model (probit mediator, linear outcome, ``sigma = 1.3``, n =
  50,000) with true ``rho`` 0.6 / 0.8 the port's ACME at the true ``rho`` is 0.331 / 0.434
  (``sigma_3`` 1.05 / 0.86) against a structural 0.248, while ``lm`` weights ``1 / w`` (GLS)
  or dcma's reading give 0.253 / 0.252 (``sigma`` 1.30; posterior SD 0.005;
  ``test_medsens_weights_shrink_sigma_3``).
  dcma keeps the fitted, unweighted projection and ``sigma`` from ``s^2 = sigma^2 (1 - rho^2
  q)``; its curve equals the port with those two changes within Monte Carlo error, and
  medsens as published at ``rho = 0`` (where ``w = 1``). The GLS-weighted fit differs from it
  by its efficiency only (n = 900: at most 0.004 for ``|rho| <= 0.6``, 0.02-0.03 at
  ``+-0.9``). On that test data published medsens' ACME stays positive up to ``rho = 0.9``
  (its ``err.cr`` is the grid's end), while the reading above crosses zero at 0.724.
* For a linear mediator with a probit outcome (medsens' other probit case, ported too) the
  latent-threshold reading above is the model's exact answer, and medsens' procedure is the
  same up to one line: it computes the identified correlation of the mediator's and the
  reduced-form outcome's errors as ``rho12 = sigma_2 gamma~ / (1 + sqrt(sigma_2^2
  gamma~^2))``, where the probit of ``Y`` given ``M`` (coefficient ``gamma~``) implies
  ``sigma_2 gamma~ / sqrt(1 + sigma_2^2 gamma~^2)``. With the latter the port's ``d0`` /
  ``d1`` equal dcma's ``NIE_control`` / ``NIE_treated`` within Monte Carlo error (n = 900:
  at most 0.0013, 1.2 SEs) and its breakpoint ``err.cr = mean(rho12)`` is dcma's, 0.5520;
  as published ``err.cr`` is 0.398 (``test_probit_outcome_curve_is_the_medsens_port``).
* medsens' point estimate is the mean over ``sims`` parameter draws from their asymptotic
  normal (quasi-Bayesian) and its band their quantiles; dcma's is the plug-in at the fitted
  parameters with bootstrap bands. medsens' breakpoint is the grid ``rho`` of smallest
  ``|ACME|``; dcma's a Newton root between grid points.
* medsens' R2 of a binary node is its latent ``Var(mu) / (1 + Var(mu))``; dcma uses the same
  (weighted, over the rows) for binary mediators and outcomes.
* medsens refuses a logit mediator; dcma reads any binary generator through the probit index
  of its probabilities.

Scope: continuous mediators (their normal score from ``inverse`` or ``Phi^-1(cdf)``: linear,
mdn, flow, diffusion) and binary mediators (any generator of one noise with a ``log_prob``);
outcome generators whose draw is a map of one normal score (linear, flow, diffusion, and the
binary models); one coupled mediator (``mediator=``; with several mediators the others keep
``rho = 0``). Refused with one line: an mdn outcome (two noises: component and Gaussian), and
a binary mediator with a binary outcome (the outcome fit is then a mixture over the mediator's
latent that no probit threshold recovers; medsens has no such case either).

Reported for every effect row and every ``rho`` of the grid: the estimate, bootstrap bands from
the stored replicates (no refit), ``d estimate / d rho`` by ``jax.jvp``, and both of medsens'
parametrisations: ``R2*_M R2*_Y = rho^2`` (the confounder's share of the residual variances)
and ``R2~_M R2~_Y = rho^2 (1 - R2_M)(1 - R2_Y)`` (its share of the total variances), with
``R2 = 1 - E[Var(X | c)] / Var(X)`` of each fitted model (conditional variances from draws;
the latent R2 above for a binary node).
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
from dcma_jax.generators.base import apply_batched, latent_index, latent_moments
from dcma_jax.inference import percentile_interval
from dcma_jax.model import Model, float_dtype, node_data
from dcma_jax.simulate import DEFAULT_CHUNK, LatentProjection, simulate_packed

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
    projection: LatentProjection | None = None,
) -> jax.Array:
    """Every effect row at ``rho`` (original units)."""
    draws = simulate_packed(
        model,
        params,
        key,
        covariates,
        weights,
        arms,
        num_draws,
        chunk_size,
        coupled,
        rho,
        projection,
    )
    binary = model.graph.outcome.kind == "binary"
    return effect_values(layout, spec, draws.outcome * scale + center, binary=binary)


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
    projection=None,
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
            projection=projection,
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
    projections=None,
):
    """Every replicate's effect rows at each ``rho``: ``(B, G, rows)``.

    ``params``, ``keys``, ``weights`` and ``projections`` carry the replicate axis; each
    replicate keeps its key across ``rho``.
    """

    def one(args):
        p, key, w, projection = args
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
                projection,
            ),
            rhos,
        )

    return jax.lax.map(one, (params, keys, weights, projections))


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
    freedom correction of the fit, ``Var(X)`` of the sample), close to the OLS R^2. A binary
    node gets medsens' latent R^2, ``Var(mu) / (1 + Var(mu))`` of its probit index
    ``mu(c) = Phi^-1(P(x = 1 | c))`` over the (weighted) rows: the share of the latent
    threshold variable's variance the context explains.
    """
    model, data = fitted.model, fitted.data
    x, context = node_data(model, data)[node]
    generator = model.generators[node]
    w = data.weights / data.weights.sum()
    if model.graph.nodes[node].kind == "binary":
        mu = np.asarray(latent_index(generator, fitted.params[node], context), np.float64)
        spread = np.sum(w * (mu - np.sum(w * mu)) ** 2)
        return float(spread / (1.0 + spread))
    key = jax.random.fold_in(jax.random.key(fitted.seed), 1000 + node)
    noise = jax.random.normal(key, (num_samples, data.n, generator.noise_dim), x.dtype)
    draws = jax.vmap(lambda z: apply_batched(generator, "sample", fitted.params[node], z, context))(
        noise
    )[..., 0]
    conditional = np.asarray(jnp.var(draws, axis=0, ddof=1))
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
    cls = type(generator)
    outcome = model.generators[-1]
    if node.kind == "count":
        raise SensitivityError(
            f"mediator {mediator!r} is a count: its normal score is no function of its value "
            "(a discrete law), and the latent-score model the sensitivity analysis reads for "
            "discrete mediators is the probit threshold of a binary one; choose another "
            "mediator, or declare it continuous"
        )
    if node.kind == "binary":
        if model.graph.outcome.kind == "binary":
            raise SensitivityError(
                f"mediator {mediator!r} and the outcome {model.graph.outcome.name!r} are both "
                "binary: the outcome's fit is then a mixture over the mediator's latent score "
                "that no probit threshold recovers; sensitivity takes a binary mediator with a "
                "continuous outcome (medsens: probit mediator, linear outcome)"
            )
        if generator.noise_dim != 1 or not cls.implements("log_prob"):
            raise SensitivityError(
                f"{cls.__name__} (binary mediator {mediator!r}) has no latent score: it needs "
                "one noise and a log_prob"
            )
    elif not (generator.noise_dim == 1 and cls.implements("inverse")) and not cls.implements("cdf"):
        raise SensitivityError(
            f"{cls.__name__} (mediator {mediator!r}) has no normal score: it needs an inverse "
            "of one noise or a cdf"
        )
    if outcome.noise_dim != 1:
        raise SensitivityError(
            f"the outcome generator {type(outcome).__name__} draws from {outcome.noise_dim} "
            "noises, so it is no map of one normal score; use linear, flow or diffusion for the "
            "outcome (e.g. generators={'Y': 'flow', ...})"
        )
    return j


@functools.partial(jax.jit, static_argnames=("model", "coupled"))
def latent_projection(
    model: Model,
    coupled: int,
    params: tuple,
    mediator_rows: tuple[jax.Array, jax.Array],
    outcome_context: jax.Array,
    weights: jax.Array,
) -> LatentProjection:
    r"""What a closed-form outcome fit absorbed of binary mediator ``coupled``'s latent score.

    ``lambda_i = E[e | m_i, c_i]`` at every observed row
    (:func:`~dcma_jax.generators.base.latent_moments` under the fitted mediator), fitted by the
    outcome generator's own closed form on the outcome's context with the outcome fit's
    weights: for a linear-Gaussian outcome the weighted least-squares projection ``c pi`` of
    ``lambda``, read back as the fit's draw at zero noise. ``share`` is its weighted mean
    square ``q``.

    Args:
      model: the model (static).
      coupled: the binary mediator's index (static).
      params: per-node variables.
      mediator_rows: the mediator's observed ``(x (n, 1), context (n, c))``.
      outcome_context: ``(n, c_y)`` the outcome's observed context.
      weights: ``(n,)`` the outcome fit's weights (a replicate's: ``counts * weights``).
    """
    x, context = mediator_rows
    lam, _ = latent_moments(model.generators[coupled], params[coupled], x, context)
    outcome = model.generators[-1]
    variables = outcome.closed_form(lam[:, None], outcome_context, weights)
    zero = jnp.zeros((x.shape[0], outcome.noise_dim), x.dtype)
    fitted = apply_batched(outcome, "sample", variables, zero, outcome_context)[:, 0]
    return LatentProjection(variables, jnp.sum(weights * fitted**2) / jnp.sum(weights))


def _reads_projection(model: Model, coupled: int) -> bool:
    """A binary coupled mediator with a closed-form (linear) continuous outcome fit."""
    outcome = model.generators[-1]
    return (
        model.graph.mediators[coupled].kind == "binary"
        and model.graph.outcome.kind == "continuous"
        and type(outcome).implements("closed_form")
    )


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
      SensitivityError: a bad grid, a binary mediator with a binary outcome, or a generator
        without the score it needs.
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
    replicate_weights = fitted.replicate_counts * arr["weights"] if fitted.bootstrap else None
    projection = projections = None
    if _reads_projection(model, coupled):
        observed = node_data(model, data)
        project = functools.partial(latent_projection, model, coupled)
        args = (observed[coupled], observed[-1][1])
        projection = project(fitted.params, *args, arr["weights"])
        if fitted.bootstrap:
            projections = jax.lax.map(
                lambda pw: project(pw[0], *args, pw[1]),
                (fitted.replicate_params, replicate_weights),
            )

    notify("sensitivity curve")
    common = (arr["covariates"], arr["weights"], arr["center"], arr["scale"])
    values, slopes = point_curve(
        model,
        layout,
        spec,
        fitted.params,
        arms,
        sim_key,
        *common,
        rhos,
        **static,
        projection=projection,
    )
    values, slopes = np.asarray(values, np.float64), np.asarray(slopes, np.float64)
    if model.graph.outcome.kind in ("binary", "count"):
        # Threshold and integer draws are steps in rho: their pathwise derivative (0) is not
        # the slope of the curve.
        slopes = np.full_like(slopes, np.nan)
    low = high = None
    b_static = dict(static, num_draws=bootstrap_draws or num_draws)
    if fitted.bootstrap:
        notify(f"sensitivity curves of {fitted.bootstrap} bootstrap replicates")
        keys = jax.random.split(boot_key, fitted.bootstrap)
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
                projections=projections,
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
            projection,
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
                projections,
            )
            bounds["ci_low"] = (low, functools.partial(replicate, lower=True))
            bounds["ci_high"] = (high, functools.partial(replicate, lower=False))
        found = _breakpoints(rows, grid, bounds, r2_m, r2_y)
    meta = {
        "model": "Gaussian copula between the mediator's normal score and the outcome's",
        "coupled_mediator": model.graph.mediators[coupled].name,
        "latent_reading": _latent_reading(model, coupled),
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


def _latent_reading(model: Model, coupled: int) -> str | None:
    """How a binary mediator's latent score enters (``None`` for a continuous mediator)."""
    if model.graph.mediators[coupled].kind != "binary":
        return None
    return "projection" if _reads_projection(model, coupled) else "rank transport"


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


def _point_value_and_slope(
    model, layout, spec, params, arms, key, common, static, projection, rho, row
):
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
        projection=projection,
    )
    return float(values[0, row]), float(slopes[0, row])


def _bound_value_and_slope(
    model,
    layout,
    spec,
    fitted,
    arms,
    keys,
    arr,
    static,
    kept,
    ci_level,
    projections,
    rho,
    row,
    lower,
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
            projections=projections,
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
