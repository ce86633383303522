r"""One-step (multiply robust) estimators of mean and CDF effects, with cross-fitting.

For a binary treatment and the mediators as one block, the arm ``psi(a, a') = E[h(Y(a,
M(a')))]`` with ``h(y) = y`` (mean) or ``h(y) = 1{y <= t}`` (CDF at ``t``) has the efficient
influence function (Tchetgen Tchetgen & Shpitser 2012, Annals of Statistics, eq. (7))

.. math::

    \varphi = \frac{1\{A = a\}}{\pi_a(X)} \frac{f(M \mid a', X)}{f(M \mid a, X)}
              \bigl(h(Y) - \mu_a(M, X)\bigr)
            + \frac{1\{A = a'\}}{\pi_{a'}(X)} \bigl(\mu_a(M, X) - \eta_{a a'}(X)\bigr)
            + \eta_{a a'}(X) - \psi(a, a'),

with ``pi_a(x) = P(A = a | x)`` (the propensity model, a new node), ``mu_a(m, x) = E[h(Y) | a,
m, x]`` (Monte Carlo over the outcome generator at the observed mediators) and
``eta_{a a'}(x) = E[mu_a(M, x) | A = a', x]`` (Monte Carlo over the mediator chain drawn under
``a'`` and the outcome under ``a``). For ``a = a'`` it is the AIPW influence function. The
estimator is consistent if (outcome and mediator models), (outcome model and propensity) or
(mediator models and propensity) are right, and it removes the plug-in's first-order bias.

The mediator density ratio comes from the generators' log-densities (a product over the
chain) or, by Bayes' rule, from a classifier of ``A`` on ``(M, X)``,

.. math::

    \frac{f(m \mid a', x)}{f(m \mid a, x)}
      = \frac{P(a' \mid m, x)\, \pi_a(x)}{P(a \mid m, x)\, \pi_{a'}(x)},

which needs no density (diffusion). ``density_ratio="auto"`` uses the densities where every
mediator generator is a closed-form (parametric) fit, else the classifier: a neural density's
tails make single ratios explode (measured in ``experiments/results/doubly_robust.md``: on the
linear SCM, one of 20 data sets gave an mdn-density NIE of 3.01 with SE 2.6, truth 0.42, where
the classifier's gave 0.427 with SE 0.039). Neither survives a log-normal mediator's right tail
(the logistic classifier's log-ratio is linear in ``m``); :func:`weight_overlap` flags an arm
whose estimate rests on one row.

Cross-fitting (:func:`fit_crossfit`, at fit time): rows are dealt to ``K`` folds (stratified by
treatment); every nuisance — the mediator and outcome generators, the propensity and the
classifier — is refitted on the other folds under one ``vmap`` (as the bootstrap's
replicates), and row ``i``'s influence value uses only the fits that never saw it. The
estimate is the weighted mean of the uncentred influence values; its standard error is their
standard deviation over ``sqrt(n)`` (Chernozhukov et al. 2018's DML estimator).

CDFs are corrected on a grid of ``t``, made monotone by rearrangement (sorted values on the
equally spaced grid; Chernozhukov, Fernández-Val & Galichon 2010) and clipped to [0, 1];
quantiles are read from the corrected CDFs, and their intervals come from a Gaussian multiplier
bootstrap of the CDFs' influence values, pushed through rearrangement and inversion.
Distances stay plug-in.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri

from dcma_jax import functionals
from dcma_jax.arms import Arms
from dcma_jax.data import MediationData
from dcma_jax.diagnostics import chain_log_density
from dcma_jax.errors import ArgumentError
from dcma_jax.estimands import Estimands, FunctionalSpec, Row
from dcma_jax.generators.base import Generator, apply_batched, generator_class
from dcma_jax.inference import percentile_interval
from dcma_jax.model import Model, float_dtype
from dcma_jax.simulate import simulate_rows
from dcma_jax.training import (
    TrainConfig,
    TrainingError,
    fit_generator_replicates,
    fit_model_replicates,
    replicate_keys,
)

if TYPE_CHECKING:
    from dcma_jax.fitted import FittedMediation

DEFAULT_FOLDS = 5
#: Monte Carlo draws per row for ``eta`` (mediator chain + outcome) and for ``mu``.
DEFAULT_DRAWS_PER_ROW = 500
#: Points of the equally spaced grid the CDFs are corrected on (quantiles are read from it).
GRID_POINTS = 400
#: Gaussian multiplier draws for the quantile rows' intervals.
MULTIPLIER_DRAWS = 1000
#: Propensities outside [bound, 1 - bound] are counted in the positivity diagnostic.
POSITIVITY_BOUND = 0.01
#: A cross-world arm's residual weights are flagged when one row carries more than this share
#: of them, or more than ROW_SHARE_ROWS / n_a in an arm of n_a rows (a well-behaved arm's
#: largest row carries up to about 20 / n_a: 0.018 at n = 2000, 0.027 at n = 600 measured;
#: an exploding tail ratio 0.96).
MAX_ROW_SHARE = 0.05
ROW_SHARE_ROWS = 25
DENSITY_RATIOS = ("auto", "density", "classifier")


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["params", "propensity", "classifier", "folds"],
    meta_fields=["propensity_generator", "classifier_generator"],
)
@dataclasses.dataclass(frozen=True)
class CrossFit:
    """Cross-fitted nuisances of the one-step estimator (a pytree; ``K`` folds).

    Attributes:
      params: per node (mediators, outcome) the generator variables with a leading fold axis:
        fold ``k``'s were fitted on every row outside fold ``k``.
      propensity: ``P(A = 1 | X)`` variables with a leading fold axis, or ``None`` without
        covariates (the propensity is then the treated share outside the fold).
      classifier: ``P(A = 1 | M, X)`` variables with a leading fold axis.
      folds: ``(n,)`` int32, the fold of each row.
      propensity_generator: the binary generator of ``A`` given ``X``.
      classifier_generator: the binary generator of ``A`` given ``(M, X)``.
    """

    params: tuple
    propensity: Any
    classifier: Any
    folds: jax.Array
    propensity_generator: Generator
    classifier_generator: Generator


def _binary_generator(choice: str | Generator, link: str) -> Generator:
    if isinstance(choice, Generator):
        if "binary" not in type(choice).kinds:
            raise ArgumentError(f"propensity: {type(choice).__name__} cannot model a binary node")
        return choice
    cls = generator_class(choice, "binary")
    if "link" in {f.name for f in dataclasses.fields(cls)}:
        return cls(link=link)
    return cls()


def fold_assignment(key: jax.Array, treatment: np.ndarray, num_folds: int) -> np.ndarray:
    """``(n,)`` fold of each row: a random deal into ``num_folds`` folds within each arm."""
    folds = np.empty(treatment.shape[0], np.int32)
    for i, level in enumerate(np.unique(treatment)):
        rows = np.flatnonzero(treatment == level)
        order = np.asarray(jax.random.permutation(jax.random.fold_in(key, i), rows.size))
        folds[rows[order]] = np.arange(rows.size) % num_folds
    return folds


def _contexts(data: MediationData) -> tuple[jax.Array, jax.Array | None, jax.Array]:
    """``(A (n, 1), X (n, p) or None without covariates, (M, X) (n, k + p))``."""
    dtype = float_dtype()
    a = jnp.asarray(data.treatment, dtype)[:, None]
    x = jnp.asarray(data.covariates, dtype)
    mx = jnp.concatenate([jnp.asarray(data.mediators, dtype), x], axis=1)
    return a, (x if x.shape[1] else None), mx


def check_crossfit(data: MediationData, folds: int) -> None:
    """Refuses cross-fitting the data cannot support, in one line naming the problem."""
    if data.treatment_var.kind != "binary":
        raise ArgumentError(
            "cross-fitting for the one-step estimator needs a binary treatment, "
            f"got a {data.treatment_var.kind} one"
        )
    if not 2 <= folds <= data.n // 10:
        raise ArgumentError(f"folds must be between 2 and n / 10 = {data.n // 10}, got {folds}")


def fit_crossfit(
    model: Model,
    data: MediationData,
    key: jax.Array,
    config: TrainConfig = TrainConfig(),
    *,
    folds: int = DEFAULT_FOLDS,
    propensity: str | Generator = "linear",
    link: str = "logit",
) -> CrossFit:
    """Fits every nuisance of the one-step estimator on each fold's complement (vmapped).

    Args:
      model: the mediation model (its generators are refitted per fold).
      data: the observed rows (binary treatment).
      key: PRNG key of the fold deal and the fits.
      config: optimisation settings of neural generators.
      folds: number of folds ``K >= 2``.
      propensity: the family of the propensity and classifier models (``"linear"``: logistic
        GLM; ``"mdn"``: Bernoulli MLP; or a binary generator instance).
      link: link of a GLM propensity.

    Raises:
      ArgumentError: a non-binary treatment, or too few folds or rows.
      TrainingError: a fold's fit diverged (the message names node and fold).
    """
    check_crossfit(data, folds)
    fold_key, fit_key = jax.random.split(key)
    fold_of = fold_assignment(fold_key, np.asarray(data.treatment), folds)
    generator = _binary_generator(propensity, link)
    return _fit_folds(model, data, fit_key, config, fold_of, generator, np.ones(data.n))


def fit_crossfit_replicates(
    model: Model,
    data: MediationData,
    key: jax.Array,
    config: TrainConfig,
    point: CrossFit,
    counts: jax.Array,
) -> CrossFit:
    """The cross-fit of every bootstrap resample, for the bootstrap of the whole estimator.

    ``counts`` ``(B, n)`` are the resamples' row counts; the leaves get a leading axis ``B``.

    The folds are the point fit's, by original row, so a resample's copies of a row share its
    fold and no fold's nuisances see the rows they correct.
    """
    folds = np.asarray(point.folds)
    fits = [
        _fit_folds(
            model,
            data,
            jax.random.fold_in(key, b),
            config,
            folds,
            point.propensity_generator,
            np.asarray(counts[b]),
        )
        for b in range(counts.shape[0])
    ]
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *fits)


def _fit_folds(
    model: Model,
    data: MediationData,
    key: jax.Array,
    config: TrainConfig,
    fold_of: np.ndarray,
    generator: Generator,
    resample: np.ndarray,
) -> CrossFit:
    """The nuisances of every fold, on the rows outside it weighted by ``resample``."""
    num_folds = int(fold_of.max()) + 1
    outside = fold_of[None, :] != np.arange(num_folds)[:, None]
    counts = jnp.asarray(outside * resample[None, :], float_dtype())
    node_key, prop_key = jax.random.split(key)
    params, infos = fit_model_replicates(
        model, data, replicate_keys(node_key, len(model.generators), num_folds), counts, config
    )
    for node, info in zip(model.graph.nodes, infos, strict=True):
        _check_folds(np.asarray(info.diverged), f"node {node.name!r}")
    a, x, mx = _contexts(data)
    weights = jnp.asarray(data.weights, float_dtype())
    prop_keys, clf_keys = jax.random.split(prop_key, (2, num_folds))
    prop = None
    if x is not None:
        prop, info = fit_generator_replicates(generator, config, prop_keys, counts, a, x, weights)
        _check_folds(np.asarray(info.diverged), "the propensity model")
    clf, info = fit_generator_replicates(generator, config, clf_keys, counts, a, mx, weights)
    _check_folds(np.asarray(info.diverged), "the classifier of A on (M, X)")
    return CrossFit(params, prop, clf, jnp.asarray(fold_of), generator, generator)


def _check_folds(diverged: np.ndarray, what: str) -> None:
    if diverged.any():
        bad = ", ".join(str(k) for k in np.flatnonzero(diverged))
        raise TrainingError(
            f"cross-fitting: the fit of {what} diverged on fold(s) {bad}; check that treatment "
            "and mediators are not separated by the covariates, or lower the learning rate"
        )


# --------------------------------------------------------------------------------------------
# Influence values of one fold's rows
# --------------------------------------------------------------------------------------------


def _row_cdf(draws: jax.Array, points: jax.Array) -> jax.Array:
    """The empirical CDF of each row's draws at ``points``: ``(m, R) -> (m, T)``."""
    ordered = functionals.sort(draws)
    below = jax.vmap(lambda d: jnp.searchsorted(d, points, side="right"))(ordered)
    return below / draws.shape[1]


def _h_values(draws: jax.Array, points: jax.Array) -> jax.Array:
    """``(mean, 1{y <= t} for t in points)`` Monte Carlo expectations per row: ``(m, 1 + T)``."""
    return jnp.concatenate([jnp.mean(draws, axis=1, keepdims=True), _row_cdf(draws, points)], 1)


@functools.partial(
    jax.jit, static_argnames=("model", "prop_gen", "clf_gen", "use_classifier", "draws_per_row")
)
def fold_influence(
    model: Model,
    prop_gen: Generator,
    clf_gen: Generator,
    params: tuple,
    propensity: Any,
    classifier: Any,
    treated_share: jax.Array,
    outcome_codes: jax.Array,
    mediator_codes: jax.Array,
    key: jax.Array,
    treatment: jax.Array,
    mediators: jax.Array,
    outcome: jax.Array,
    covariates: jax.Array,
    points: jax.Array,
    use_classifier: bool,
    draws_per_row: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Uncentred influence values of every arm at one fold's rows, with that fold's nuisances.

    Args:
      model: the mediation model.
      prop_gen: the propensity's generator.
      clf_gen: the classifier's generator.
      params: the fold's node variables (no fold axis).
      propensity: the fold's propensity variables, ``None`` without covariates.
      classifier: the fold's classifier variables.
      treated_share: ``P(A = 1)`` outside the fold (the propensity without covariates).
      outcome_codes: ``(n_arms,)`` the arms' ``a``.
      mediator_codes: ``(n_arms,)`` the arms' ``a'``.
      key: PRNG key of the Monte Carlo expectations.
      treatment: ``(m,)`` the fold's rows' treatment codes.
      mediators: ``(m, k)`` their mediators (internal units).
      outcome: ``(m,)`` their outcomes (internal units).
      covariates: ``(m, p)`` their covariates.
      points: ``(T,)`` the CDF points ``t`` (internal units).
      use_classifier: take the mediator density ratio from the classifier (else densities).
      draws_per_row: Monte Carlo draws per row for ``eta`` and ``mu``.

    Returns:
      ``(phi (n_arms, m, 1 + T), p1 (m,), weights (n_arms, m))``: per arm and row the
      uncentred influence values of the mean and of ``P(Y <= t)``; the propensity
      ``P(A = 1 | x)`` of each row; and the weight ``1{A = a} ratio / pi_a`` of its residual.
    """
    m, k = mediators.shape
    dtype = covariates.dtype
    ones = jnp.ones((m, 1), dtype)
    if propensity is None:
        p1 = jnp.full((m,), treated_share, dtype)
    else:
        p1 = jnp.exp(apply_batched(prop_gen, "log_prob", propensity, ones, covariates))
    chains = jnp.broadcast_to(mediator_codes[:, None, None], (mediator_codes.shape[0], 1, k))
    arms = Arms(outcome_codes, chains, jnp.zeros((mediator_codes.shape[0], k), jnp.int32))
    eta_key, mu_key = jax.random.split(key)
    # eta_{a a'}(x): the chain under a', the outcome under a, draws_per_row draws per row.
    eta = jax.vmap(_h_values, (0, None))(
        simulate_rows(model, params, eta_key, covariates, arms, draws_per_row), points
    )  # (n_arms, m, 1 + T)
    outcome_gen = model.generators[-1]
    x_rep = jnp.repeat(covariates, draws_per_row, axis=0)
    m_rep = jnp.repeat(mediators, draws_per_row, axis=0)
    noise = jax.random.normal(mu_key, (m * draws_per_row, outcome_gen.noise_dim), dtype)

    def mu(a: jax.Array) -> jax.Array:  # E[h(Y) | a, M_obs, x]: (m, 1 + T)
        context = model.graph.context(k, jnp.full((x_rep.shape[0],), a, dtype), m_rep, x_rep)
        draws = apply_batched(outcome_gen, "sample", params[-1], noise, context)[:, 0]
        return _h_values(draws.reshape(m, draws_per_row), points)

    if use_classifier:
        mx = jnp.concatenate([mediators, covariates], axis=1)
        q1 = jnp.exp(apply_batched(clf_gen, "log_prob", classifier, ones, mx))

    def arm(a: jax.Array, a_m: jax.Array, eta_arm: jax.Array) -> jax.Array:
        pi_a = jnp.where(a > 0.5, p1, 1.0 - p1)
        pi_m = jnp.where(a_m > 0.5, p1, 1.0 - p1)
        if use_classifier:
            ratio = jnp.where(a_m > 0.5, q1, 1.0 - q1) / jnp.where(a > 0.5, q1, 1.0 - q1)
            ratio = ratio * pi_a / pi_m
        else:
            log_ratio = chain_log_density(
                model, params, jnp.full((k,), a_m), mediators, covariates
            ) - chain_log_density(model, params, jnp.full((k,), a), mediators, covariates)
            ratio = jnp.exp(log_ratio)
        ratio = jnp.where(a == a_m, 1.0, ratio)
        mu_a = mu(a)
        h = jnp.concatenate([outcome[:, None], (outcome[:, None] <= points).astype(dtype)], 1)
        # Rows of the other arm get weight 0 even where their (unused) ratio overflowed.
        weight = jnp.where(treatment == a, ratio / pi_a, 0.0)
        first = weight[:, None] * (h - mu_a)
        second = jnp.where(treatment == a_m, 1.0 / pi_m, 0.0)[:, None] * (mu_a - eta_arm)
        return first + second + eta_arm, weight

    phi, weights = jax.vmap(arm)(outcome_codes, mediator_codes, eta)
    return phi, p1, weights


# --------------------------------------------------------------------------------------------
# The estimator
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OneStep:
    """One-step estimates of every arm, with per-row influence values.

    Attributes:
      arm_names: the arms.
      mean: ``(n_arms,)`` one-step ``E[Y(a, M(a'))]`` in original units.
      mean_influence: ``(n, n_arms)`` influence values of ``mean`` (original units), so that
        ``mean`` has standard error ``sqrt(sum(influence**2)) / n``.
      cdf_points: ``(P,)`` the CDF points asked for (original units).
      cdf: ``(n_arms, P)`` one-step ``P(Y(a, M(a')) <= t)`` at those points (not rearranged).
      cdf_influence: ``(n, n_arms, P)``.
      grid: ``(G,)`` the equally spaced grid of ``t`` (original units) for quantiles.
      grid_cdf: ``(n_arms, G)`` the one-step CDFs on the grid, before rearrangement.
      grid_influence: ``(n, n_arms, G)`` their influence values.
      propensity: ``(n,)`` out-of-fold ``P(A = 1 | x_i)``.
      residual_weights: ``(n, n_arms)`` each row's weight ``1{A = a} f(M | a', X) /
        (f(M | a, X) pi_a(X))`` on its outcome residual in each arm (0 off the arm).
      density_ratio: ``"density"`` or ``"classifier"``.
      discrete_outcome: whether quantiles are read as the generalised inverse on the grid (a
        binary or count outcome, whose CDF is a step function).
    """

    arm_names: tuple[str, ...]
    mean: np.ndarray
    mean_influence: np.ndarray
    cdf_points: np.ndarray
    cdf: np.ndarray
    cdf_influence: np.ndarray
    grid: np.ndarray
    grid_cdf: np.ndarray
    grid_influence: np.ndarray
    propensity: np.ndarray
    residual_weights: np.ndarray
    density_ratio: str
    discrete_outcome: bool

    def quantiles(self, levels: Sequence[float], cdfs: np.ndarray | None = None) -> np.ndarray:
        """Quantiles read from the rearranged CDFs (default: the estimates'): ``(..., L)``."""
        cdfs = rearrange(self.grid_cdf) if cdfs is None else cdfs
        return invert_cdf(self.grid, cdfs, np.asarray(levels, np.float64), self.discrete_outcome)

    def multiplier_cdfs(self, key: jax.Array, draws: int = MULTIPLIER_DRAWS) -> np.ndarray:
        """Gaussian-multiplier draws of the grid CDFs, rearranged: ``(draws, n_arms, G)``.

        Draw ``b`` is ``F + sum_i xi_bi IF_i / n`` with ``xi`` standard normal, the
        multiplier bootstrap of an asymptotically linear estimator.
        """
        n, n_arms, size = self.grid_influence.shape
        xi = np.asarray(jax.random.normal(key, (draws, n)), np.float64)
        shift = (xi @ self.grid_influence.reshape(n, -1)).reshape(draws, n_arms, size) / n
        return rearrange(self.grid_cdf[None] + shift)


def rearrange(cdf: np.ndarray) -> np.ndarray:
    """Monotone rearrangement on an equally spaced grid (sorted values), clipped to [0, 1]."""
    return np.clip(np.sort(cdf, axis=-1), 0.0, 1.0)


def invert_cdf(grid: np.ndarray, cdf: np.ndarray, levels: np.ndarray, step: bool) -> np.ndarray:
    """``Q(q) = inf{t : F(t) >= q}`` on the grid, linearly interpolated unless ``step``."""
    flat = cdf.reshape(-1, cdf.shape[-1])
    if step:
        index = np.stack([np.searchsorted(f, levels, side="left") for f in flat])
        out = grid[np.minimum(index, grid.size - 1)]
    else:
        out = np.stack([_interp_monotone(levels, f, grid) for f in flat])
    return out.reshape(*cdf.shape[:-1], levels.size)


def _interp_monotone(levels: np.ndarray, cdf: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Linear interpolation of the inverse of a non-decreasing CDF (flat stretches skipped)."""
    keep = np.concatenate([[True], np.diff(cdf) > 0])
    return np.interp(levels, cdf[keep], grid[keep])


def check_onestep(fitted: FittedMediation, estimands: Estimands) -> None:
    """Refuses what the one-step estimator does not cover, in one line naming it."""
    if fitted.crossfit is None:
        raise ArgumentError(
            "the one-step estimator needs cross-fitted nuisances: fit with crossfit=K "
            "(dcma fit/run --folds K) or use estimator='plugin'"
        )
    if fitted.data.treatment_var.kind != "binary":
        raise ArgumentError("the one-step estimator covers binary treatments only")
    for arm in estimands.arms:
        codes = {v for chain in arm.chains for v in chain}
        if not arm.is_joint or len(codes) != 1:
            raise ArgumentError(
                f"the one-step estimator covers arms Y(a, M(a')) with the mediators as one "
                f"block; {arm.expression} is not one (use estimator='plugin')"
            )


def _ratio_choice(model: Model, density_ratio: str) -> str:
    if density_ratio not in DENSITY_RATIOS:
        raise ArgumentError(f"density_ratio must be one of {DENSITY_RATIOS}, got {density_ratio!r}")
    missing = sorted(
        {type(g).__name__ for g in model.generators[:-1] if not type(g).implements("log_prob")}
    )
    dense = not missing
    if density_ratio == "density" and not dense:
        raise ArgumentError(
            f"density_ratio='density' needs mediator log-densities; {', '.join(missing)} has "
            "none (use 'classifier' or 'auto')"
        )
    if density_ratio == "auto":
        closed = all(type(g).implements("closed_form") for g in model.generators[:-1])
        return "density" if dense and closed else "classifier"
    return density_ratio


def _scale(data: MediationData) -> float:
    """The outcome's scale of internal units (1 for a binary outcome's codes)."""
    return data.outcome_var.scale if data.outcome_var.kind == "continuous" else 1.0


def _center(data: MediationData) -> float:
    return data.outcome_var.center if data.outcome_var.kind == "continuous" else 0.0


def outcome_grid(data: MediationData, extra: np.ndarray, size: int = GRID_POINTS) -> np.ndarray:
    """Equally spaced ``t`` grid (internal units) over the observed and simulated outcomes.

    A count outcome's grid is the integers from 0 to the largest value (at most ``size`` of
    them, evenly spread), where its step CDF jumps: quantiles are read off it as counts.
    """
    if data.outcome_var.kind == "binary":
        return np.linspace(-0.5, 1.5, 5)
    values = np.concatenate([np.asarray(data.outcome), np.asarray(extra).reshape(-1)])
    if data.outcome_var.kind == "count":
        top = float(np.nanmax(values))
        return np.unique(np.round(np.linspace(0.0, top, int(min(size, top + 1)))))
    lo, hi = np.quantile(values, (0.0005, 0.9995))
    pad = 0.05 * (hi - lo)
    return np.linspace(lo - pad, hi + pad, size)


def onestep(
    fitted: FittedMediation,
    estimands: Estimands,
    spec: FunctionalSpec,
    *,
    key: jax.Array,
    density_ratio: str = "auto",
    draws_per_row: int = DEFAULT_DRAWS_PER_ROW,
    grid: np.ndarray | None = None,
    replicate: int | None = None,
) -> OneStep:
    """Cross-fitted one-step estimates of every arm's mean and CDF (see the module docstring).

    Args:
      fitted: a model fitted with ``crossfit=K``.
      estimands: the arms (``Y(a, M(a'))`` with the mediators as one block).
      spec: the functionals; its ``cdf_points`` are evaluated exactly.
      key: PRNG key of the Monte Carlo expectations.
      density_ratio: ``"auto"``, ``"density"`` or ``"classifier"``.
      draws_per_row: Monte Carlo draws per row for ``eta`` and ``mu``.
      grid: ``t`` grid in internal units for the quantiles (default :func:`outcome_grid` over
        the observed outcomes).
      replicate: a bootstrap replicate ``b``: the estimate on its resample with its own
        cross-fit (``fitted.crossfit_replicates``), for the bootstrap of the whole estimator.
    """
    check_onestep(fitted, estimands)
    if draws_per_row < 2:
        raise ArgumentError(f"draws_per_row must be at least 2, got {draws_per_row}")
    model, data, cf = fitted.model, fitted.data, fitted.crossfit
    weights = np.asarray(data.weights, np.float64)
    if replicate is not None:
        cf = jax.tree.map(lambda v: v[replicate], fitted.crossfit_replicates)
        weights = weights * np.asarray(fitted.replicate_counts[replicate], np.float64)
    ratio = _ratio_choice(model, density_ratio)
    var = data.outcome_var
    dtype = float_dtype()
    scale, center = _scale(data), _center(data)
    # CDF points are in original units; a binary outcome's, like the plug-in's, in its codes.
    points = (np.asarray(spec.cdf_points, np.float64) - center) / scale
    grid = outcome_grid(data, np.empty(0)) if grid is None else np.asarray(grid, np.float64)
    all_points = jnp.asarray(np.concatenate([points, grid]), dtype)
    outcome_codes = jnp.asarray([a.outcome for a in estimands.arms], dtype)
    mediator_codes = jnp.asarray([a.chains[0][0] for a in estimands.arms], dtype)
    folds = np.asarray(cf.folds)
    num_folds = int(folds.max()) + 1
    size = int(np.bincount(folds).max())
    treatment = np.asarray(data.treatment, np.float64)
    x_all = np.asarray(data.covariates)
    n, n_arms = data.n, len(estimands.arms)
    phi = np.zeros((n, n_arms, 1 + all_points.shape[0]))
    p1 = np.zeros(n)
    residual_weights = np.zeros((n, n_arms))
    for k in range(num_folds):
        rows = np.flatnonzero(folds == k)
        padded = np.concatenate([rows, np.full(size - rows.size, rows[0])])
        outside = folds != k
        share = np.sum(weights[outside] * treatment[outside]) / np.sum(weights[outside])
        take = functools.partial(jax.tree.map, lambda v, k=k: v[k])
        fold_phi, fold_p1, fold_weights = fold_influence(
            model,
            cf.propensity_generator,
            cf.classifier_generator,
            take(cf.params),
            None if cf.propensity is None else take(cf.propensity),
            take(cf.classifier),
            jnp.asarray(share, dtype),
            outcome_codes,
            mediator_codes,
            jax.random.fold_in(key, k),
            jnp.asarray(treatment[padded], dtype),
            jnp.asarray(data.mediators[padded], dtype),
            jnp.asarray(data.outcome[padded], dtype),
            jnp.asarray(x_all[padded], dtype),
            all_points,
            ratio == "classifier",
            draws_per_row,
        )
        phi[rows] = np.moveaxis(np.asarray(fold_phi), 0, 1)[: rows.size]
        p1[rows] = np.asarray(fold_p1)[: rows.size]
        residual_weights[rows] = np.asarray(fold_weights).T[: rows.size]
    w = weights / weights.mean()
    estimate = np.einsum("n,nah->ah", w, phi) / n
    influence = w[:, None, None] * (phi - estimate[None])
    p = points.size
    return OneStep(
        arm_names=estimands.arm_names,
        mean=estimate[:, 0] * scale + center,
        mean_influence=influence[:, :, 0] * scale,
        cdf_points=np.asarray(spec.cdf_points, np.float64),
        cdf=estimate[:, 1 : 1 + p],
        cdf_influence=influence[:, :, 1 : 1 + p],
        grid=grid * scale + center,
        grid_cdf=estimate[:, 1 + p :],
        grid_influence=influence[:, :, 1 + p :],
        propensity=p1,
        residual_weights=residual_weights,
        density_ratio=ratio,
        discrete_outcome=var.kind in ("binary", "count"),
    )


# --------------------------------------------------------------------------------------------
# Effect rows and intervals
# --------------------------------------------------------------------------------------------


def row_values(
    result: OneStep,
    estimands: Estimands,
    rows: Sequence[Row],
    curve_levels: np.ndarray,
    cdfs: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One-step values of the mean, CDF and quantile rows (others ``NaN``), and the curves.

    Quantiles are read from ``cdfs``: rearranged grid CDFs ``(..., n_arms, G)`` (default the
    estimate's); a leading batch of them (multiplier or bootstrap draws) gives values
    ``(..., rows)`` and curves ``(..., n_contrasts, levels)``.
    """
    layout = estimands.layout
    levels = sorted({r.level for r in rows if r.functional == "quantile"})
    cdfs = rearrange(result.grid_cdf) if cdfs is None else cdfs
    quants = result.quantiles(levels, cdfs)
    by_name = {c.name: c for c in layout.contrasts}
    point_index = {float(t): i for i, t in enumerate(result.cdf_points)}
    values = np.full((*cdfs.shape[:-2], len(rows)), np.nan)
    means = {}
    for i, row in enumerate(rows):
        c = by_name.get(row.effect)
        if c is None:
            continue
        if row.functional == "mean":
            values[..., i] = means[row.effect] = result.mean[c.arm] - result.mean[c.reference]
        elif row.functional == "cdf":
            j = point_index[float(row.level)]
            values[..., i] = result.cdf[c.arm, j] - result.cdf[c.reference, j]
        elif row.functional == "quantile":
            j = levels.index(row.level)
            values[..., i] = quants[..., c.arm, j] - quants[..., c.reference, j]
    for name, numerator, denominator in layout.ratios:
        i = next(j for j, r in enumerate(rows) if r.effect == name and r.functional == "mean")
        values[..., i] = means[numerator] / means[denominator]
    curve_q = result.quantiles(curve_levels, cdfs)
    curves = np.stack(
        [curve_q[..., c.arm, :] - curve_q[..., c.reference, :] for c in layout.contrasts], -2
    )
    return values, curves


def effect_table(
    result: OneStep,
    estimands: Estimands,
    rows: Sequence[Row],
    ci_level: float,
    key: jax.Array,
    curve_levels: np.ndarray,
) -> dict[str, Any]:
    """One-step values and intervals of the mean, quantile and CDF rows (others: ``NaN``).

    Mean and CDF rows: Wald intervals from the influence values. Quantile rows and curves:
    percentile intervals of the Gaussian-multiplier draws. Proportions mediated: the delta
    method (influence ``(IF_NIE - PM IF_TE) / TE``).

    Returns:
      ``{"values", "low", "high", "se", "influence" (n, rows; NaN where none), "curves",
      "curves_low", "curves_high"}``.
    """
    layout = estimands.layout
    n = result.mean_influence.shape[0]
    values, curves = row_values(result, estimands, rows, curve_levels)
    by_name = {c.name: c for c in layout.contrasts}
    point_index = {float(t): i for i, t in enumerate(result.cdf_points)}
    influence = np.full((n, len(rows)), np.nan)
    for i, row in enumerate(rows):
        c = by_name.get(row.effect)
        if c is not None and row.functional == "mean":
            arms = result.mean_influence
            influence[:, i] = arms[:, c.arm] - arms[:, c.reference]
        elif c is not None and row.functional == "cdf":
            arms = result.cdf_influence[:, :, point_index[float(row.level)]]
            influence[:, i] = arms[:, c.arm] - arms[:, c.reference]
    index = {(r.effect, r.functional): i for i, r in enumerate(rows)}
    for name, numerator, denominator in layout.ratios:
        i, num, den = (index[(e, "mean")] for e in (name, numerator, denominator))
        influence[:, i] = (influence[:, num] - values[i] * influence[:, den]) / values[den]
    z = float(ndtri(0.5 + ci_level / 2.0))
    se = np.sqrt(np.sum(influence**2, axis=0)) / n
    low, high = values - z * se, values + z * se
    # Quantile rows and curves: the multiplier draws through rearrangement and inversion.
    boot_values, boot_curves = row_values(
        result, estimands, rows, curve_levels, result.multiplier_cdfs(key)
    )
    quantile = np.array([r.functional == "quantile" for r in rows])
    low[quantile], high[quantile] = percentile_interval(boot_values[:, quantile], ci_level)
    se[quantile] = np.std(boot_values[:, quantile], axis=0, ddof=1)
    curves_low, curves_high = percentile_interval(boot_curves, ci_level)
    return {
        "values": values,
        "low": low,
        "high": high,
        "se": se,
        "influence": influence,
        "curves": curves,
        "curves_low": curves_low,
        "curves_high": curves_high,
    }


def positivity(propensity: np.ndarray, treatment: np.ndarray, bound: float = POSITIVITY_BOUND):
    """``meta["diagnostics"]["positivity"]``: the out-of-fold propensities' spread and weights.

    Reports the propensity's range, the share of rows with ``P(A = 1 | x)`` outside
    ``[bound, 1 - bound]``, and the largest and 99th-percentile inverse-probability weights
    ``1 / P(A = a_i | x_i)``; ``warning`` is a sentence when any row is beyond the bound.
    """
    own = np.where(treatment > 0.5, propensity, 1.0 - propensity)
    weights = 1.0 / np.maximum(own, np.finfo(np.float64).tiny)
    beyond = float(np.mean((propensity < bound) | (propensity > 1.0 - bound)))
    warning = None
    if beyond > 0:
        warning = (
            f"poor overlap: {beyond:.1%} of rows have P(A = 1 | x) outside [{bound:g}, "
            f"{1 - bound:g}] (largest inverse-probability weight {weights.max():.3g}); the "
            "one-step estimate and its interval lean on few rows"
        )
    return {
        "propensity_min": float(propensity.min()),
        "propensity_max": float(propensity.max()),
        "bound": bound,
        "share_beyond_bound": beyond,
        "max_weight": float(weights.max()),
        "weight_p99": float(np.percentile(weights, 99)),
        "warning": warning,
    }


def weight_overlap(
    result: OneStep, estimands: Estimands, row_share: float = MAX_ROW_SHARE
) -> list[dict]:
    """How evenly each cross-world arm's residual weights spread over its rows.

    Per arm ``Y(a, M(a'))`` with ``a != a'``: over the rows with ``A = a``, the largest weight
    ``1{A = a} f(M | a', X) / (f(M | a, X) pi_a(X))``, the share of the arm's total weight it
    carries, and the effective-sample-size fraction ``(sum w)^2 / (n_a sum w^2)``. A density
    ratio that explodes at one tail row (a fitted density that is too thin there) makes one row
    carry the estimate; ``warning`` says so when a row carries more than
    ``max(row_share, ROW_SHARE_ROWS / n_a)``.
    """
    out = []
    for i, arm in enumerate(estimands.arms):
        if arm.chains[0][0] == arm.outcome:
            continue
        w = result.residual_weights[:, i]
        w = w[w > 0]
        share = float(w.max() / w.sum())
        entry = {
            "arm": arm.expression,
            "max_weight": float(w.max()),
            "max_row_share": share,
            "ess_fraction": float(w.sum() ** 2 / (w.size * np.sum(w**2))),
            "warning": None,
        }
        if share > max(row_share, ROW_SHARE_ROWS / w.size):
            entry["warning"] = (
                f"{arm.expression}: one row carries {share:.0%} of the mediator-ratio weight "
                f"(weight {w.max():.3g}); its one-step estimate rests on it -- the mediator "
                "density ratio is extreme there (a tail the fitted density makes too thin); "
                "try density_ratio='classifier' or read the plug-in"
            )
        out.append(entry)
    return out


# --------------------------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------------------------

ONESTEP_FUNCTIONALS = ("mean", "quantile", "cdf")
INTERVAL_RULES = {
    "mean": "wald_influence",
    "cdf": "wald_influence",
    "quantile": "multiplier_percentile",
}
BOOTSTRAP_RULE = "bootstrap_percentile (nuisances cross-fitted again on every resample)"


def onestep_effects(
    fitted: FittedMediation,
    estimands: Estimands,
    spec: FunctionalSpec,
    rows: Sequence[Row],
    plugin: dict[str, Any],
    *,
    key: jax.Array,
    ci_level: float,
    curve_levels: np.ndarray,
    density_ratio: str = "auto",
    draws_per_row: int = DEFAULT_DRAWS_PER_ROW,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The effects query's rows with the one-step estimator (distance rows stay plug-in).

    Args:
      fitted: a model fitted with ``crossfit=K``.
      estimands: the query's arms and contrasts.
      spec: the functionals.
      rows: the table's rows.
      plugin: the plug-in query's ``{"values", "low", "high", "outcome"}`` (bounds ``None``
        without bootstrap; ``outcome`` the arms' draws in original units, which widen the
        quantile grid to the simulated range).
      key: PRNG key of the Monte Carlo expectations and the multiplier draws.
      ci_level: interval coverage.
      curve_levels: the quantile curves' levels.
      density_ratio: ``"auto"``, ``"density"`` or ``"classifier"``.
      draws_per_row: Monte Carlo draws per row of the outcome regressions.

    Returns:
      ``(arrays, meta)``: the merged ``values``, ``low``, ``high`` and curves, and
      ``meta["onestep"]`` with the settings, the per-row plug-in estimates and the positivity
      diagnostic.
    """
    var = fitted.data.outcome_var
    draws = np.asarray(plugin["outcome"])
    if var.kind == "continuous":
        draws = (draws - var.center) / var.scale
    grid_key, mult_key = jax.random.split(key)
    result = onestep(
        fitted,
        estimands,
        spec,
        key=grid_key,
        density_ratio=density_ratio,
        draws_per_row=draws_per_row,
        grid=outcome_grid(fitted.data, draws),
    )
    table = effect_table(result, estimands, rows, ci_level, mult_key, curve_levels)
    rules = dict(INTERVAL_RULES)
    if fitted.crossfit_replicates is not None:
        table.update(
            _bootstrap_intervals(
                fitted,
                estimands,
                spec,
                rows,
                result,
                grid_key,
                ci_level,
                curve_levels,
                ratio=result.density_ratio,
                draws_per_row=draws_per_row,
            )
        )
        rules = dict.fromkeys(ONESTEP_FUNCTIONALS, BOOTSTRAP_RULE)
    replaced = np.array([r.functional in ONESTEP_FUNCTIONALS for r in rows])
    n_rows = len(rows)
    low = np.full(n_rows, np.nan) if plugin["low"] is None else np.array(plugin["low"], float)
    high = np.full(n_rows, np.nan) if plugin["high"] is None else np.array(plugin["high"], float)
    values = np.array(plugin["values"], np.float64)
    plugin_values = values.copy()
    values[replaced] = table["values"][replaced]
    low[replaced], high[replaced] = table["low"][replaced], table["high"][replaced]
    arrays = {
        "values": values,
        "low": low,
        "high": high,
        "curves": table["curves"],
        "curves_low": table["curves_low"],
        "curves_high": table["curves_high"],
    }
    meta = {
        "folds": fitted.settings.crossfit,
        "propensity": type(fitted.crossfit.propensity_generator).__name__,
        "density_ratio": result.density_ratio,
        "draws_per_row": draws_per_row,
        "grid_points": int(result.grid.size),
        "multiplier_draws": MULTIPLIER_DRAWS,
        "intervals": rules,
        "plugin_estimates": [
            float(v) if replaced[i] else None for i, v in enumerate(plugin_values)
        ],
        "standard_errors": [float(v) if replaced[i] else None for i, v in enumerate(table["se"])],
        "distances": "plug-in (the one-step form covers means, CDFs and quantiles)",
    }
    positivity_meta = positivity(result.propensity, np.asarray(fitted.data.treatment))
    positivity_meta["arms"] = weight_overlap(result, estimands)
    return arrays, {"onestep": meta, "positivity": positivity_meta}


def _bootstrap_intervals(
    fitted: FittedMediation,
    estimands: Estimands,
    spec: FunctionalSpec,
    rows: Sequence[Row],
    point: OneStep,
    key: jax.Array,
    ci_level: float,
    curve_levels: np.ndarray,
    *,
    ratio: str,
    draws_per_row: int,
) -> dict[str, np.ndarray]:
    """Percentile bounds of the one-step rows and curves over the bootstrap replicates.

    Each replicate is estimated on its resample with its own cross-fit; diverged ones are out.
    """
    grid = (point.grid - _center(fitted.data)) / _scale(fitted.data)
    values, curves = [], []
    for b in np.flatnonzero(fitted.kept_replicates):
        replicate = onestep(
            fitted,
            estimands,
            spec,
            key=jax.random.fold_in(key, int(b)),
            density_ratio=ratio,
            draws_per_row=draws_per_row,
            grid=grid,
            replicate=int(b),
        )
        v, c = row_values(replicate, estimands, rows, curve_levels)
        values.append(v)
        curves.append(c)
    low, high = percentile_interval(np.stack(values), ci_level)
    curves_low, curves_high = percentile_interval(np.stack(curves), ci_level)
    return {"low": low, "high": high, "curves_low": curves_low, "curves_high": curves_high}


def onestep_query(
    fitted: FittedMediation,
    *,
    quantiles: Sequence[float] = (),
    cdf_points: Sequence[float] = (),
    density_ratio: str = "auto",
    draws_per_row: int = DEFAULT_DRAWS_PER_ROW,
    seed: int | None = None,
) -> OneStep:
    """The natural effects' arms by the one-step estimator, with per-row influence values.

    Bound as ``FittedMediation.onestep``: the arms ``Y(1,M(1))``, ``Y(1,M(0))``,
    ``Y(0,M(1))``, ``Y(0,M(0))`` (in :attr:`OneStep.arm_names`), their means and CDFs at
    ``cdf_points`` (original units) with each row's influence value, and the corrected CDFs on
    a grid (:meth:`OneStep.quantiles` reads quantiles from them). An effect's influence values
    are the difference of its arms'.
    """
    from dcma_jax.estimands import natural_effects
    from dcma_jax.queries import query_keys

    data = fitted.data
    estimands = natural_effects(data.mediator_names)
    spec = FunctionalSpec(tuple(quantiles), tuple(float(t) for t in cdf_points), ())
    key = query_keys(fitted.seed if seed is None else int(seed))[0]
    return onestep(
        fitted,
        estimands,
        spec,
        key=jax.random.fold_in(key, 3),
        density_ratio=density_ratio,
        draws_per_row=draws_per_row,
    )
