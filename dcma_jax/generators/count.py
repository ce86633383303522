r"""Generators for count nodes: negative-binomial (NB2) laws with a log link.

A count node (``types={"M": "count"}``) holds non-negative integers, modelled in counts (its
internal coding is the raw integers). Its law given the context ``c`` is the negative binomial
of mean ``mu(c)`` and dispersion ``alpha(c) >= 0`` (NB2; Cameron & Trivedi 2013, sec. 3.3),

.. math::

    P(X = k \mid c) = \frac{\Gamma(k + 1/\alpha)}{\Gamma(1/\alpha)\, k!}
        (1 + \alpha\mu)^{-1/\alpha} \Bigl(\frac{\alpha\mu}{1 + \alpha\mu}\Bigr)^k,
    \qquad E[X] = \mu, \quad \mathrm{Var}[X] = \mu + \alpha\mu^2,

whose limit ``alpha -> 0`` is the Poisson law. :func:`log_pmf` is written so that it, and its
derivatives in ``alpha``, stay exact down to ``alpha = 0`` (power series where the closed form
cancels), so an equidispersed sample fits with ``alpha`` at (or near) 0 and no NaN.

Sampling is inversion, as the generator contract asks: ``x = min{k : F(k | c) >= Phi(z)}`` for
standard normal noise ``z``, by a sequential search from 0 that adds the pmf until the CDF
reaches ``Phi(z)`` (:func:`quantile`; ``lax.while_loop``, so under ``vmap`` a batch takes as
many steps as its largest draw). The search stops early where the mass left above ``k`` is
provably below :data:`TAIL_MASS` (the ratio bound of :func:`tail_bound`), so a ``Phi(z)``
above the largest value the rounded CDF reaches cannot run it on, and at the generator's static
``max_count``: a draw that reaches ``max_count`` with more than :data:`TAIL_MASS` above it is
NaN, never silently truncated. :func:`count_cap` sets ``max_count`` from the data (ten times
the largest observed count rounded up to a power of two, at least 128), so only a law far
beyond the data (a network extrapolating its mean) meets it; the search's cost is that of the
draws, not of the cap.

Precision: in float32 the accumulated CDF is off by rounding that grows with the mean
(measured against scipy: ``1e-6`` at a mean of 4, ``4e-6`` at 40, ``1e-4`` at 500), so that
share of the draws may land one count off, and noise within that much of 1 lands where the tail
bound stops the search; in float64 inversion is exact (tested against scipy's ``ppf``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, ndtr

from dcma_jax.generators.base import Generator
from dcma_jax.generators.linear import (
    Columns,
    _as_variables,
    _describe,
    _design,
    _nan_unless,
    _rank_tolerance,
    _weighted_least_squares,
    rank_problem,
)
from dcma_jax.generators.networks import MLP, with_count_baseline

#: Largest count a float32 holds exactly (every integer up to 2^24 is representable).
MAX_EXACT_COUNT = 2**24
#: The sequential search stops where the mass above the current count is below this bound.
TAIL_MASS = 1e-7
#: :func:`count_cap`: ``CAP_FACTOR * largest observed count``, rounded up to a power of two
#: (similar data sets then share compiled programs: the cap is a static field), at least
#: ``CAP_MIN``.
CAP_FACTOR = 10
CAP_MIN = 128
#: Newton budget of :func:`fit_negative_binomial`; a regular fit converges in well under 30.
NB_MAX_ITERATIONS = 100
#: Step halvings of one dispersion update tried before it is given up (the iterate stays).
_HALVINGS = 30
#: ``log(1 + x) / x - 1`` by its power series below this ``x``: 17 terms in float64
#: (truncation < 0.1^18 / 19), 8 in float32 (0.1^9 / 10, below its rounding of ``M ~ x / 2``).
_SERIES_BELOW = 0.1
_SERIES_TERMS = 17
_SERIES_TERMS_32 = 8
#: ``lgamma`` differences by Stirling's series where ``1 / alpha`` is at least this large.
_STIRLING_FROM = 10.0


def count_cap(values: Any) -> int:
    """``max_count`` for a node whose observed counts are ``values``: see the module docstring."""
    largest = CAP_FACTOR * float(np.max(np.asarray(values, np.float64)))
    power = 2 ** int(np.ceil(np.log2(max(largest, CAP_MIN))))
    return int(min(MAX_EXACT_COUNT - 1, power))


def _log1p_over_x_minus_one(x: jax.Array) -> jax.Array:
    """``log(1 + x) / x - 1`` for ``x >= 0``, exact with its derivatives at and near 0.

    Below :data:`_SERIES_BELOW` the series ``sum_n (-x)^n / (n + 1)`` (Horner), where the
    direct form cancels; both branches see safe inputs so that gradients through
    ``jnp.where`` stay finite.
    """
    small = x < _SERIES_BELOW
    xs = jnp.where(small, x, 0.0)
    acc = jnp.zeros_like(xs)
    terms = _SERIES_TERMS if x.dtype == jnp.float64 else _SERIES_TERMS_32
    for n in range(terms, 0, -1):
        acc = acc * xs + (-1.0) ** n / (n + 1)
    xb = jnp.where(small, 1.0, x)
    return jnp.where(small, acc * xs, jnp.log1p(xb) / xb - 1.0)


def _stirling_tail(t: jax.Array) -> jax.Array:
    """``lgamma(z) - [(z - 1/2) log z - z + log(2 pi) / 2]`` at ``t = 1/z``.

    Stirling's series to ``z^-7``: its error is below ``1e-12`` for ``z >= 10``.
    """
    t2 = t * t
    return t * (1.0 / 12.0 + t2 * (-1.0 / 360.0 + t2 * (1.0 / 1260.0 - t2 / 1680.0)))


def _log_rising(k: jax.Array, alpha: jax.Array) -> jax.Array:
    r"""``sum_{j<k} log(1 + alpha j) = lgamma(k + r) - lgamma(r) - k log r``, ``r = 1/alpha``.

    For ``r >= 10`` by Stirling's series in ``alpha``,
    ``k M(k alpha) + (k - 1/2) log(1 + k alpha) + c(alpha / (1 + k alpha)) - c(alpha)`` with
    ``M(x) = log(1 + x) / x - 1``: no ``lgamma`` of a large argument, so no cancellation, and 0
    at ``alpha = 0`` with the right derivatives. Below, ``lgamma`` directly.
    """
    stirling_range = alpha <= 1.0 / _STIRLING_FROM
    a = jnp.where(stirling_range, alpha, 0.0)
    ka = k * a
    series = (
        k * _log1p_over_x_minus_one(ka)
        + (k - 0.5) * jnp.log1p(ka)
        + _stirling_tail(a / (1.0 + ka))
        - _stirling_tail(a)
    )
    r = 1.0 / jnp.where(stirling_range, 1.0, alpha)
    direct = gammaln(k + r) - gammaln(r) - k * jnp.log(r)
    return jnp.where(stirling_range, series, direct)


def log_pmf(k: jax.Array, log_mu: jax.Array, alpha: jax.Array) -> jax.Array:
    r"""``log P(X = k)`` of the NB2 law with mean ``exp(log_mu)`` and dispersion ``alpha >= 0``.

    .. math::

        \log P(k) = \sum_{j<k} \log(1 + \alpha j) - \log k! + k \log\mu
            - k \log(1 + \alpha\mu) - \mu \bigl(1 + M(\alpha\mu)\bigr),

    ``M(x) = log(1 + x) / x - 1`` (so ``mu (1 + M) = log(1 + alpha mu) / alpha``); at
    ``alpha = 0`` the Poisson ``k log mu - mu - log k!``. Elementwise; smooth in ``log_mu``
    and ``alpha`` (also at ``alpha = 0``), defined for real ``k >= 0``.
    """
    mu = jnp.exp(log_mu)
    am = alpha * mu
    return (
        _log_rising(k, alpha)
        - gammaln(k + 1.0)
        + k * log_mu
        - k * jnp.log1p(am)
        - mu * (1.0 + _log1p_over_x_minus_one(am))
    )


def tail_bound(k: jax.Array, log_p: jax.Array, log_mu: jax.Array, alpha: jax.Array) -> jax.Array:
    r"""An upper bound on ``P(X > k)`` from ``log_p = log P(X = k)``; ``inf`` where none holds.

    ``P(X = j + 1) / P(X = j) = (1 + alpha j) / (1 + j) * mu / (1 + alpha mu)``, and
    ``(1 + alpha j) / (1 + j)`` moves monotonically from its value at ``j = k`` towards
    ``alpha``, so every ratio beyond ``k`` is at most ``rho = max((1 + alpha k) / (1 + k),
    alpha) mu / (1 + alpha mu)``; for ``rho < 1``, ``P(X > k) <= P(X = k) rho / (1 - rho)``.
    """
    log_rho = (
        jnp.log(jnp.maximum((1.0 + alpha * k) / (1.0 + k), alpha))
        + log_mu
        - jnp.log1p(alpha * jnp.exp(log_mu))
    )
    rho = jnp.exp(jnp.minimum(log_rho, 0.0))
    return jnp.where(log_rho < 0.0, jnp.exp(log_p) * rho / (1.0 - rho), jnp.inf)


def _tail_mass(dtype: Any) -> float:
    """:data:`TAIL_MASS`, or 100 machine epsilons where the dtype resolves less (float64)."""
    return min(TAIL_MASS, 100.0 * float(np.finfo(dtype).eps))


def quantile(u: jax.Array, log_mu: jax.Array, alpha: jax.Array, max_count: int) -> jax.Array:
    """``min{k : F(k) >= u}`` for one law (scalars), by sequential search; not differentiable.

    Stops where ``F(k) >= u``, where the mass above ``k`` is below :data:`TAIL_MASS`
    (:func:`tail_bound`; the draw is then exact up to that mass), or at ``max_count``, where a
    draw with more mass above it is NaN (see the module docstring). The search starts below 0
    (``F(-1) = 0``), so that its loop holds the only evaluation of the pmf.
    """
    u, log_mu, alpha = (jax.lax.stop_gradient(v) for v in (u, log_mu, alpha))
    tail = _tail_mass(log_mu.dtype)

    def searching(state):
        k, cdf, above = state
        return (cdf < u) & (k < max_count) & (above > tail)

    def step(state):
        k, cdf, _ = state
        log_p = log_pmf(k + 1.0, log_mu, alpha)
        return k + 1.0, cdf + jnp.exp(log_p), tail_bound(k + 1.0, log_p, log_mu, alpha)

    start = (-jnp.ones_like(log_mu), jnp.zeros_like(log_mu), jnp.full_like(log_mu, jnp.inf))
    k, cdf, above = jax.lax.while_loop(searching, step, start)
    return jnp.where((cdf < u) & (above > tail), jnp.nan, jnp.maximum(k, 0.0))


def cdf(x: jax.Array, log_mu: jax.Array, alpha: jax.Array) -> jax.Array:
    """``F(x) = P(X <= floor(x))`` for one law (scalars), by summing the pmf; not differentiable."""
    x, log_mu, alpha = (jax.lax.stop_gradient(v) for v in (x, log_mu, alpha))
    top = jnp.floor(x)

    def step(state):
        k, total = state
        return k + 1.0, total + jnp.exp(log_pmf(k + 1.0, log_mu, alpha))

    start = (-jnp.ones_like(log_mu), jnp.zeros_like(log_mu))
    _, total = jax.lax.while_loop(lambda s: s[0] < top, step, start)
    return jnp.minimum(total, 1.0)


# ---- the exact weighted maximum-likelihood fit ------------------------------------------------


class NegativeBinomialFit(NamedTuple):
    """Outcome of :func:`fit_negative_binomial` (all arrays; batched under ``vmap``).

    Attributes:
      coef: ``(p,)`` coefficients of the design ``[context, 1]`` (intercept last).
      dispersion: ``alpha >= 0``.
      iterations: steps taken.
      converged: the last step changed no parameter by more than ``sqrt(eps)`` relative to
        ``max(1, max |parameter|)``.
      full_rank: the first step's weighted least-squares problem (equal working weights) had a
        pivot above the rank tolerance: the design has full column rank.
      stalled: a step after the first failed (non-finite or singular); the last good iterate
        is kept.
      change: the last step's relative change.
      direction: the last step of the coefficients (names the columns of a diverging fit).
    """

    coef: jax.Array
    dispersion: jax.Array
    iterations: jax.Array
    converged: jax.Array
    full_rank: jax.Array
    stalled: jax.Array
    change: jax.Array
    direction: jax.Array

    @property
    def ok(self) -> jax.Array:
        """The fit converged to the maximum-likelihood estimate."""
        return self.converged & self.full_rank


def _dispersion_step(eta: jax.Array, y: jax.Array, weights: jax.Array, alpha: jax.Array):
    """One safeguarded Newton step on ``alpha >= 0`` of the weighted log-likelihood, ``eta`` fixed.

    Newton where the log-likelihood is concave in ``alpha`` there, else a doubling or halving
    in the direction of the score; projected on ``alpha >= 0``, then the first of the step
    and its halvings towards ``alpha`` whose log-likelihood does not fall (beyond rounding).
    The curvature is a forward difference of the exact score (step ``1e-3 alpha + 1e-5``): it
    sets the speed, not the fixed point, and a second derivative of ``lgamma`` costs seconds
    of compilation. Both the scores and the candidates are evaluated under one ``vmap``.
    """

    def loglik(a):
        return jnp.sum(weights * log_pmf(y, eta, a))

    delta = 1e-3 * alpha + 1e-5
    scores = jax.vmap(jax.grad(loglik))(jnp.stack([alpha, alpha + delta]))
    score, curvature = scores[0], (scores[1] - scores[0]) / delta
    newton = alpha - score / jnp.where(curvature < 0, curvature, -1.0)
    fallback = jnp.where(score > 0, 2.0 * alpha + 0.1, 0.5 * alpha)
    target = jnp.maximum(jnp.where(curvature < 0, newton, fallback), 0.0)
    shrink = 0.5 ** jnp.arange(_HALVINGS, dtype=eta.dtype)
    candidates = jnp.concatenate([alpha + (target - alpha) * shrink, alpha[None]])
    values = jax.vmap(loglik)(candidates)
    slack = 10.0 * jnp.finfo(eta.dtype).eps * jnp.abs(values[-1])
    return candidates[jnp.argmax(values >= values[-1] - slack)]


def fit_negative_binomial(
    context: jax.Array, x: jax.Array, weights: jax.Array
) -> NegativeBinomialFit:
    r"""The weighted maximum-likelihood NB2 regression ``log mu = b^T c + b_0``, ``alpha >= 0``.

    Alternates a Fisher-scoring step for the coefficients at the current ``alpha`` (weighted
    least squares of the working response ``eta + (y - mu) / mu`` with working weights
    ``w mu / (1 + alpha mu)``) and a safeguarded Newton step for ``alpha`` at the new
    coefficients (:func:`_dispersion_step`); the two blocks are orthogonal in the Fisher
    information, so the alternation converges nearly as fast as a joint Newton. Starts from
    the intercept ``log(mean y)`` and ``alpha = 0`` and stops when a step changes no parameter
    by more than ``sqrt(eps)`` relative to ``max(1, max |parameter|)``, when a step fails, or
    after :data:`NB_MAX_ITERATIONS`. ``alpha`` is kept at 0 where the score there is negative
    (an equidispersed or underdispersed sample): the estimate is then the Poisson MLE. Rows of
    weight 0 take no part; weights are importance weights (the estimate is invariant to their
    scale).

    Args:
      context: ``(n, c)`` contexts.
      x: ``(n, 1)`` counts.
      weights: ``(n,)`` non-negative weights.

    Returns:
      A :class:`NegativeBinomialFit`; runs traced, so the caller turns it into an error.
    """
    design = _design(context)
    y = x[:, 0]
    dtype = design.dtype
    tol = float(np.sqrt(np.finfo(dtype).eps))
    rank_tol = _rank_tolerance(dtype)
    mean = jnp.sum(weights * y) / jnp.sum(weights)
    start = jnp.zeros(design.shape[1], dtype).at[-1].set(jnp.log(mean))

    def keep_going(state: NegativeBinomialFit) -> jax.Array:
        return (
            (state.iterations < NB_MAX_ITERATIONS)
            & state.full_rank
            & ~state.converged
            & ~state.stalled
        )

    def step(state: NegativeBinomialFit) -> NegativeBinomialFit:
        eta = design @ state.coef
        mu = jnp.exp(eta)
        alpha = state.dispersion
        working = weights * mu / (1.0 + alpha * mu)
        # W z = W eta + w (y - mu) / (1 + alpha mu): finite where mu underflows.
        new, pivot = _weighted_least_squares(
            design, working, working * eta + weights * (y - mu) / (1.0 + alpha * mu)
        )
        solved = jnp.all(jnp.isfinite(new)) & (pivot > rank_tol)
        new = jnp.where(solved, new, state.coef)
        new_alpha = _dispersion_step(design @ new, y, weights, alpha)
        solved = solved & jnp.isfinite(new_alpha)
        new_alpha = jnp.where(solved, new_alpha, alpha)
        delta = new - state.coef
        size = jnp.maximum(1.0, jnp.maximum(jnp.max(jnp.abs(new)), new_alpha))
        change = jnp.maximum(jnp.max(jnp.abs(delta)), jnp.abs(new_alpha - alpha)) / size
        first = state.iterations == 0
        return NegativeBinomialFit(
            coef=new,
            dispersion=new_alpha,
            iterations=state.iterations + solved.astype(state.iterations.dtype),
            converged=solved & (change <= tol),
            full_rank=state.full_rank & (solved | ~first),
            stalled=~solved & ~first,
            change=jnp.where(solved, change, state.change),
            direction=jnp.where(solved, delta, state.direction),
        )

    init = NegativeBinomialFit(
        coef=start,
        dispersion=jnp.zeros((), dtype),
        iterations=jnp.zeros((), jnp.int32),
        converged=jnp.zeros((), bool),
        full_rank=jnp.ones((), bool),
        stalled=jnp.zeros((), bool),
        change=jnp.asarray(jnp.inf, dtype),
        direction=jnp.zeros_like(start),
    )
    return jax.lax.while_loop(keep_going, step, init)


# ---- generators -------------------------------------------------------------------------------


class _CountGenerator(Generator):
    """What the count generators share: the NB2 law from ``(log mu(c), alpha(c))``."""

    kinds: ClassVar[tuple[str, ...]] = ("count",)
    noise_dim: ClassVar[int] = 1

    def _law(self, context: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(log mu, alpha)`` at one context, scalars."""
        raise NotImplementedError

    def sample(self, noise: jax.Array, context: jax.Array) -> jax.Array:
        """``min{k : F(k | c) >= Phi(z)}`` (:func:`quantile`), shape ``(1,)``."""
        log_mu, alpha = self._law(context)
        return quantile(ndtr(noise[0]), log_mu, alpha, self.max_count)[None]

    def log_prob(self, x: jax.Array, context: jax.Array) -> jax.Array:
        """The log-mass ``log P(X = x | c)``; ``-inf`` below 0."""
        log_mu, alpha = self._law(context)
        return jnp.where(x[0] < 0.0, -jnp.inf, log_pmf(jnp.maximum(x[0], 0.0), log_mu, alpha))

    def cdf(self, x: jax.Array, context: jax.Array) -> jax.Array:
        """``F(x | c) = P(X <= floor(x) | c)`` (right-continuous; not differentiable)."""
        log_mu, alpha = self._law(context)
        return cdf(x[0], log_mu, alpha)


class NegativeBinomialGLM(_CountGenerator):
    r"""NB2 regression ``log mu(c) = b^T c + b_0`` with a constant dispersion ``alpha >= 0``.

    Fitted in closed form by :func:`fit_negative_binomial`, the exact weighted
    maximum-likelihood estimate that statsmodels' ``NegativeBinomial(loglike_method="nb2")``
    returns (and, where ``alpha`` is 0, its ``GLM(..., Poisson())``). The variables are NaN,
    and the fit reported as diverged, when the design is rank deficient or the iteration does
    not converge (e.g. every count is 0 on the rows of some context column: the coefficients
    then run off to ``-inf``). ``max_count`` bounds the sampler (see the module docstring);
    :func:`dcma_jax.model.build_model` sets it from the data (:func:`count_cap`).
    """

    registry_name: ClassVar[str] = "linear"

    max_count: int = 1024

    def setup(self) -> None:
        self.linear = nn.Dense(1)
        self.dispersion = self.param("dispersion", nn.initializers.zeros, ())

    def _law(self, context: jax.Array) -> tuple[jax.Array, jax.Array]:
        # The closed form returns alpha >= 0; the floor keeps perturbed variables a law.
        return self.linear(context)[0], jnp.maximum(self.dispersion, 0.0)

    def fit_problem(self, x: Any, context: Any, weights: Any, columns: Columns) -> str | None:
        """The rank check before a fit (``x is None``), else why the iteration diverged."""
        problem = rank_problem(self, context, weights, columns)
        if problem is not None or x is None:
            return problem
        context = jnp.asarray(context)
        result = fit_negative_binomial(
            context, jnp.asarray(x, context.dtype), jnp.asarray(weights, context.dtype)
        )
        if bool(result.ok):
            return None
        name = type(self).__name__
        y = np.asarray(x, np.float64).reshape(-1)
        w = np.asarray(weights, np.float64)
        moved = np.asarray(_design(context) @ result.direction, np.float64)
        size = np.max(np.abs(moved[w > 0])) if np.any(w > 0) else 0.0
        slack = 1e-3 * size
        zeros = (y == 0) | (w == 0)
        runs_off = size > 0 and np.all(np.abs(moved[~zeros]) <= slack)
        if runs_off and np.all(moved[zeros] <= slack):
            c = np.asarray(context, np.float64)
            sd = np.sqrt(np.average((c - np.average(c, axis=0, weights=w)) ** 2, 0, weights=w))
            share = np.abs(np.asarray(result.direction, np.float64)[:-1]) * sd
            named = [columns[j] for j in np.flatnonzero(share >= 0.5 * share.max())]
            by = f" on the rows picked out by {_describe(named)}" if named else ""
            return (
                f"every count is 0{by} ({name}'s log-mean runs off to -inf there: its "
                "maximum-likelihood coefficients do not exist); drop or coarsen the column, or "
                "fit this node with 'mdn'"
            )
        return (
            f"{name}'s Newton iteration did not converge in {NB_MAX_ITERATIONS} iterations "
            f"(last relative change {float(result.change):.1e}); check the data for extreme "
            "counts or near-collinear columns"
        )

    def closed_form(self, x: jax.Array, context: jax.Array, weights: jax.Array) -> Any:
        """The maximum-likelihood estimate (:func:`fit_negative_binomial`); NaN unless ``ok``."""
        result = fit_negative_binomial(context, x, weights)
        variables = _as_variables(result.coef, {"dispersion": result.dispersion})
        return _nan_unless(result.ok, variables)


class NegativeBinomialMLP(_CountGenerator):
    r"""NB2 law with ``log mu(c) = b + c' beta + g_1(c)`` and ``log alpha(c) = s + g_2(c)``.

    ``g = MLP(c)`` is a network correction to a negative-binomial regression: training starts
    from that regression (``b``, ``beta`` of a Poisson fit of the mean, ``s`` the log of the
    moment dispersion, floored at ``1e-4``; see :meth:`warm_start`), as the Bernoulli network
    starts from a penalised logistic fit, so that early stopping shrinks towards the linear
    model. ``max_count`` as for the GLM.
    """

    registry_name: ClassVar[str] = "mdn"

    hidden: Sequence[int] = (64, 64)
    max_count: int = 1024

    def setup(self) -> None:
        self.net = MLP(tuple(self.hidden), 2)
        zeros = nn.initializers.zeros
        self.baseline = nn.Dense(1, kernel_init=zeros, bias_init=zeros)
        self.log_dispersion = self.param("log_dispersion", zeros, ())

    def _law(self, context: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = self.net(context)
        return self.baseline(context)[0] + out[0], jnp.exp(self.log_dispersion + out[1])

    @nn.nowrap
    def warm_start(
        self, variables: Any, x: jax.Array, context: jax.Array, weights: jax.Array
    ) -> Any:
        """Starts at a Poisson regression and the moment dispersion (``with_count_baseline``).

        A penalised Newton fit of fixed length, not the GLM's exact one: the network refines it,
        and the exact fit's safeguarded loop would cost its compilation again in every training
        program.
        """
        return with_count_baseline(variables, x, context, weights)
