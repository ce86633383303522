"""Linear generators: a linear-Gaussian model and a binary GLM, both fitted in closed form.

These are the classical parametric models of Baron–Kenny and of R ``mediation``'s default
fits: their parameters equal OLS and maximum-likelihood GLM estimates, so analyses with them
reproduce the textbook numbers.

Weights are importance (probability) weights: every estimate is unchanged when all weights are
multiplied by one constant. Integer weights therefore do *not* mean "this row n times" for
``LinearGaussian``'s ``sigma`` (its degrees-of-freedom correction uses Kish's effective sample
size); the coefficients of both models are the same under either reading.

The fits run traced (under ``jit`` and, for bootstrap replicates, ``vmap``), so they cannot
raise: a design that is rank deficient, a binary node whose classes are separated, or Fisher
scoring that does not converge makes the variables NaN, which the training code reports as a
diverged fit (a bootstrap replicate is dropped and counted). :func:`rank_problem` (before the
point fit) and :func:`fit_problem` (after a diverged one) say on the host, in one line, what
went wrong and which context columns are responsible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr, ndtr, ndtri

from dcma_jax.generators.base import Generator

if TYPE_CHECKING:
    import distrax

LINKS = ("logit", "probit")
#: Fisher-scoring budget of :class:`BinaryGLM`; a regular fit converges in well under 20.
IRLS_MAX_ITERATIONS = 50
#: A context column counts as a linear combination of the earlier ones (and the intercept)
#: when ``1 - R^2`` of its weighted regression on them is below this many machine epsilons of
#: the fit's dtype (float32: 1.2e-4, a correlation of 0.99994 between two columns).
RANK_EPS_FACTOR = 1e3

#: ``(role, name)`` of each context column, e.g. ``("covariate", "X1")``.
Columns = Sequence[tuple[str, str]]


def _design(context: jax.Array) -> jax.Array:
    """``[context, 1]``: the regression design with an intercept column last."""
    return jnp.concatenate([context, jnp.ones((context.shape[0], 1), context.dtype)], axis=1)


def _rank_tolerance(dtype: Any) -> float:
    return RANK_EPS_FACTOR * float(np.finfo(dtype).eps)


def _weighted_least_squares(
    design: jax.Array, weights: jax.Array, weighted_y: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``argmin_b sum_i w_i (y_i - d_i b)^2`` and the smallest pivot of the normal equations.

    Takes ``weighted_y = w * y``. The normal equations ``D^T W D b = D^T W y`` are equilibrated
    (columns scaled to unit weighted norm) and solved by Cholesky. Pivot ``j`` of the
    equilibrated Cholesky factor, ``L_jj^2``, is ``1 - R_j^2`` of column ``j``'s weighted
    regression on the columns before it, so the smallest pivot measures how close the design is
    to rank deficiency: 0 (or NaN, when the factorisation fails) for a constant or collinear
    column, 0 for a column that is 0 on every weighted row.

    The design is a handful of standardised columns, so the ``p x p`` system is small and the
    ``D^T W D`` product dominates: Cholesky costs what the LU solve it replaced did (25
    replicates vmapped, ``p = 7``: 0.34 vs 0.40 ms at ``n = 2000``, 59 vs 54 ms at ``n = 1e5``,
    on a busy 2-core CPU). Neither stalls on oversubscribed machines the way ``lstsq`` does,
    where LAPACK's threads spin-wait (benchmarks/bench_core.py, section 5).
    """
    gram = (design * weights[:, None]).T @ design
    norm = jnp.sqrt(jnp.diagonal(gram))
    scale = jnp.where(norm > 0, norm, 1.0)
    chol = jnp.linalg.cholesky(gram / jnp.outer(scale, scale))
    coef = jax.scipy.linalg.cho_solve((chol, True), (design.T @ weighted_y) / scale) / scale
    pivots = jnp.where(norm > 0, jnp.diagonal(chol) ** 2, 0.0)
    return coef, jnp.min(pivots)


def _as_variables(coef: jax.Array, extra: dict[str, jax.Array]) -> dict[str, Any]:
    """Packs design coefficients ``[slopes..., intercept]`` into linen variables."""
    dense = {"kernel": coef[:-1, None], "bias": coef[-1:]}
    return {"params": {"linear": dense, **extra}}


def _nan_unless(ok: jax.Array, variables: Any) -> Any:
    return jax.tree.map(lambda v: jnp.where(ok, v, jnp.nan), variables)


def effective_sample_size(weights: jax.Array) -> jax.Array:
    """Kish's effective sample size ``(sum_i w_i)^2 / sum_i w_i^2`` (``n`` for equal weights)."""
    return jnp.sum(weights) ** 2 / jnp.sum(weights**2)


class LinearGaussian(Generator):
    r"""``x = b^T c + b_0 + sigma * z``, ``z ~ N(0, 1)``.

    Fitted by weighted least squares, with

    .. math::

        \sigma^2 = \frac{\sum_i w_i r_i^2}{\sum_i w_i} \cdot \frac{n_e}{n_e - p},
        \qquad n_e = \frac{(\sum_i w_i)^2}{\sum_i w_i^2},

    ``p`` the number of coefficients (intercept included). Both factors are invariant to
    rescaling the weights, so weights are importance weights; for equal weights ``n_e = n`` and
    ``sigma^2`` is ``sum_i r_i^2 / (n - p)``, the residual variance statsmodels reports as
    ``scale``. (The frequency-weight form ``sum w r^2 / (sum w - p)`` depends on the scale of
    the weights: weights of ``1/n`` make it negative.) A bootstrap replicate is fitted with
    weights ``w * counts``, whose ``n_e`` is about ``n / 2`` for ``w = 1``, so its ``sigma^2``
    exceeds the fit on the resample's duplicated rows by a factor
    ``(n_e / (n_e - p)) / (n / (n - p)) = 1 + O(p / n)``: the same consistent estimate.
    ``cdf = Phi((x - mu(c)) / sigma)`` is the base class's ``Phi(inverse(x))``.
    """

    registry_name: ClassVar[str] = "linear"
    kinds: ClassVar[tuple[str, ...]] = ("continuous",)
    noise_dim: ClassVar[int] = 1

    def setup(self) -> None:
        self.linear = nn.Dense(1)
        self.log_scale = self.param("log_scale", nn.initializers.zeros, ())

    def _loc_scale(self, context: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.linear(context), jnp.exp(self.log_scale)

    def sample(self, noise: jax.Array, context: jax.Array) -> jax.Array:
        loc, scale = self._loc_scale(context)
        return loc + scale * noise

    def log_prob(self, x: jax.Array, context: jax.Array) -> jax.Array:
        loc, scale = self._loc_scale(context)
        return jnp.sum(jax.scipy.stats.norm.logpdf(x, loc, scale))

    def inverse(self, x: jax.Array, context: jax.Array) -> jax.Array:
        loc, scale = self._loc_scale(context)
        return (x - loc) / scale

    def law(self, context: jax.Array) -> distrax.Distribution:
        """``distrax.Normal(mu(c), sigma)``."""
        import distrax  # here, not at import: distrax loads tfp's jax substrate (~0.7 s)

        loc, scale = self._loc_scale(context)
        return distrax.Normal(loc[0], scale)

    def fit_problem(self, x: Any, context: Any, weights: Any, columns: Columns) -> str | None:
        """The rank check before a fit (``x is None``), else :func:`fit_problem`'s diagnosis."""
        if x is None:
            return rank_problem(self, context, weights, columns)
        return fit_problem(self, x, context, weights, columns)

    def closed_form(self, x: jax.Array, context: jax.Array, weights: jax.Array) -> Any:
        """WLS coefficients and ``sigma`` (above); NaN for a rank-deficient design."""
        design = _design(context)
        coef, pivot = _weighted_least_squares(design, weights, weights * x[:, 0])
        resid = x[:, 0] - design @ coef
        n_eff = effective_sample_size(weights)
        mean_square = jnp.sum(weights * resid**2) / jnp.sum(weights)
        variance = mean_square * n_eff / (n_eff - design.shape[1])
        variables = _as_variables(coef, {"log_scale": 0.5 * jnp.log(variance)})
        return _nan_unless(pivot > _rank_tolerance(design.dtype), variables)


class FisherScoring(NamedTuple):
    """Outcome of :meth:`BinaryGLM.fisher_scoring` (all arrays; batched under ``vmap``).

    Attributes:
      coef: design coefficients ``[slopes..., intercept]`` of the last iterate.
      iterations: Fisher-scoring steps taken.
      converged: the last step changed no coefficient by more than ``sqrt(eps)`` relative to
        ``max(1, max_j |b_j|)``.
      full_rank: the design (context columns and intercept, under the observation weights) has
        full column rank; if not, nothing was fitted.
      complete: an iterate's linear predictor classifies every weighted row correctly (complete
        separation: the maximum-likelihood estimate does not exist).
      quasi: no convergence, and the last step's change of the linear predictor is ``>= 0`` on
        every row of class 1 and ``<= 0`` on every row of class 0 (up to ``1e-3`` of its largest
        absolute value): the coefficients run off along a (quasi-)separating direction.
      stalled: a step after the first failed (the Fisher information became numerically
        singular or the solve non-finite); the last good iterate is kept.
      change: the last step's relative change of the coefficients.
      direction: the separating direction (the coefficients for complete separation, the last
        step for quasi-complete separation), to name the columns responsible.
    """

    coef: jax.Array
    iterations: jax.Array
    converged: jax.Array
    full_rank: jax.Array
    complete: jax.Array
    quasi: jax.Array
    stalled: jax.Array
    change: jax.Array
    direction: jax.Array

    @property
    def ok(self) -> jax.Array:
        """The fit converged to the maximum-likelihood estimate."""
        return self.converged & self.full_rank & ~self.complete & ~self.quasi


class BinaryGLM(Generator):
    r"""Bernoulli GLM ``P(x = 1 | c) = h(b^T c + b_0)`` with a logit or probit link ``h``.

    Sampling thresholds a uniform made from the noise: ``x = 1{Phi(z) < p(c)}``. Fitted by
    iteratively reweighted least squares (Fisher scoring, :meth:`fisher_scoring`) to the
    weighted maximum-likelihood estimate, the same estimate statsmodels'
    ``GLM(..., Binomial(link))`` returns. Weights enter the likelihood as importance weights
    (the estimate is invariant to their scale). The variables are NaN, and the fit reported as
    diverged, when the design is rank deficient, the classes are (quasi-)completely separated
    (the estimate does not exist) or the iteration does not converge within
    :data:`IRLS_MAX_ITERATIONS` steps.
    """

    registry_name: ClassVar[str] = "linear"
    kinds: ClassVar[tuple[str, ...]] = ("binary",)
    noise_dim: ClassVar[int] = 1

    link: str = "logit"

    def setup(self) -> None:
        if self.link not in LINKS:
            raise ValueError(f"unknown link {self.link!r}; choose one of {LINKS}")
        self.linear = nn.Dense(1)

    def _prob(self, eta: jax.Array) -> jax.Array:
        return jax.nn.sigmoid(eta) if self.link == "logit" else ndtr(eta)

    def _log_probs(self, eta: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(log P(x=1), log P(x=0))`` computed stably."""
        if self.link == "logit":
            return jax.nn.log_sigmoid(eta), jax.nn.log_sigmoid(-eta)
        return log_ndtr(eta), log_ndtr(-eta)

    def sample(self, noise: jax.Array, context: jax.Array) -> jax.Array:
        prob = self._prob(self.linear(context))
        return (ndtr(noise) < prob).astype(context.dtype)

    def log_prob(self, x: jax.Array, context: jax.Array) -> jax.Array:
        log_p1, log_p0 = self._log_probs(self.linear(context))
        return jnp.sum(x * log_p1 + (1.0 - x) * log_p0)

    def inverse(self, x: jax.Array, context: jax.Array) -> jax.Array:
        """Mid-point of the noise interval mapping to ``x`` (binary maps are not invertible)."""
        prob = self._prob(self.linear(context))
        return ndtri(jnp.where(x > 0.5, 0.5 * prob, 0.5 * (1.0 + prob)))

    def law(self, context: jax.Array) -> distrax.Distribution:
        """``distrax.Bernoulli`` with ``logit = log P(x=1) - log P(x=0)``, float samples."""
        import distrax  # here, not at import: distrax loads tfp's jax substrate (~0.7 s)

        log_p1, log_p0 = self._log_probs(self.linear(context)[0])
        return distrax.Bernoulli(logits=log_p1 - log_p0, dtype=context.dtype)

    def _working(self, eta: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        """IRLS weights ``W = h'^2 / (h (1 - h))`` and ``W z``, ``z = eta + (y - h) / h'``.

        In log space: ``W z = W eta + y h'/h - (1 - y) h'/(1 - h)`` stays finite where a
        row's fitted probability is numerically 0 or 1 (as it is under separation).
        """
        log_p1, log_p0 = self._log_probs(eta)
        if self.link == "logit":
            log_dmu = log_p1 + log_p0
        else:
            log_dmu = jax.scipy.stats.norm.logpdf(eta)
        w = jnp.exp(2.0 * log_dmu - log_p1 - log_p0)
        score = y * jnp.exp(log_dmu - log_p1) - (1.0 - y) * jnp.exp(log_dmu - log_p0)
        return w, w * eta + score

    @nn.nowrap
    def fisher_scoring(self, x: jax.Array, context: jax.Array, weights: jax.Array) -> FisherScoring:
        """Fisher scoring from ``b = 0`` with convergence and separation diagnostics.

        Each step solves the weighted least-squares problem of the working response; the
        iteration stops when a step changes no coefficient by more than ``sqrt(eps)`` relative
        to ``max(1, max_j |b_j|)`` (then the error is ``O(eps)``: scoring converges
        quadratically for the logit link, fast and linearly for the probit), when an iterate
        separates the classes completely, when a step fails (the Fisher information is
        numerically singular; at the first step, from equal working weights, that is the
        design's rank check) or after :data:`IRLS_MAX_ITERATIONS` steps. Rows of weight 0
        (bootstrap rows left out of a resample) take no part.

        Returns:
          A :class:`FisherScoring`; runs traced, so the caller turns it into an error.
        """
        design = _design(context)
        y = x[:, 0]
        active = weights > 0
        dtype = design.dtype
        tol = float(np.sqrt(np.finfo(dtype).eps))
        rank_tol = _rank_tolerance(dtype)
        zeros = jnp.zeros(design.shape[1], dtype)

        def keep_going(state: FisherScoring) -> jax.Array:
            return (
                (state.iterations < IRLS_MAX_ITERATIONS)
                & state.full_rank
                & ~state.converged
                & ~state.complete
                & ~state.stalled
            )

        def step(state: FisherScoring) -> FisherScoring:
            eta = design @ state.coef
            correct = jnp.where(y > 0.5, eta > 0, eta < 0)
            complete = (state.iterations > 0) & jnp.all(correct | ~active)
            w, wz = self._working(eta, y)
            new, pivot = _weighted_least_squares(design, weights * w, weights * wz)
            solved = jnp.all(jnp.isfinite(new)) & (pivot > rank_tol)
            take = solved & ~complete
            delta = new - state.coef
            change = jnp.max(jnp.abs(delta)) / jnp.maximum(1.0, jnp.max(jnp.abs(new)))
            first = state.iterations == 0
            return FisherScoring(
                coef=jnp.where(take, new, state.coef),
                iterations=state.iterations + take.astype(state.iterations.dtype),
                converged=take & (change <= tol),
                full_rank=state.full_rank & (solved | ~first),
                complete=complete,
                quasi=state.quasi,
                stalled=~solved & ~first,
                change=jnp.where(take, change, state.change),
                direction=jnp.where(take, delta, state.direction),
            )

        init = FisherScoring(
            coef=zeros,
            iterations=jnp.zeros((), jnp.int32),
            converged=jnp.zeros((), bool),
            full_rank=jnp.ones((), bool),
            complete=jnp.zeros((), bool),
            quasi=jnp.zeros((), bool),
            stalled=jnp.zeros((), bool),
            change=jnp.asarray(jnp.inf, dtype),
            direction=zeros,
        )
        final = jax.lax.while_loop(keep_going, step, init)
        # A step that runs off to infinity along a direction that never lowers the linear
        # predictor of a class-1 row nor raises that of a class-0 row: quasi-separation.
        moved = design @ final.direction
        size = jnp.max(jnp.where(active, jnp.abs(moved), 0.0))
        slack = 1e-3 * size
        agrees = jnp.where(y > 0.5, moved >= -slack, moved <= slack) | ~active
        quasi = final.full_rank & ~final.converged & ~final.complete & (size > 0)
        quasi = quasi & jnp.all(agrees)
        direction = jnp.where(final.complete, final.coef, final.direction)
        return final._replace(quasi=quasi, direction=direction)

    def fit_problem(self, x: Any, context: Any, weights: Any, columns: Columns) -> str | None:
        """The rank check before a fit (``x is None``), else :func:`fit_problem`'s diagnosis."""
        if x is None:
            return rank_problem(self, context, weights, columns)
        return fit_problem(self, x, context, weights, columns)

    def closed_form(self, x: jax.Array, context: jax.Array, weights: jax.Array) -> Any:
        """The maximum-likelihood estimate by :meth:`fisher_scoring`; NaN unless it is ``ok``."""
        result = self.fisher_scoring(x, context, weights)
        return _nan_unless(result.ok, _as_variables(result.coef, {}))


# ---- host-side explanations of failed fits ---------------------------------------------------


def _describe(columns: Columns) -> str:
    """``"covariates 'X1' and 'X2'"``, ``"treatment 'A', mediator 'M' and covariate 'X1'"``."""
    groups: list[tuple[str, list[str]]] = []
    for role, name in columns:
        if groups and groups[-1][0] == role:
            groups[-1][1].append(repr(name))
        else:
            groups.append((role, [repr(name)]))

    def join(items: list[str]) -> str:
        return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"

    if len(groups) == 1:
        role, names = groups[0]
        return f"{role}{'s' if len(names) > 1 else ''} {join(names)}"
    return join([f"{role}{'s' if len(n) > 1 else ''} {', '.join(n)}" for role, n in groups])


def _host_design(context: Any, weights: Any) -> tuple[np.ndarray, np.ndarray, Any]:
    """``([1, context], weights, fit dtype)`` in float64, the intercept *first*."""
    dtype = np.dtype(getattr(context, "dtype", np.float64))
    c = np.asarray(context, np.float64)
    return np.column_stack([np.ones(len(c)), c]), np.asarray(weights, np.float64), dtype


def rank_problem(generator: Generator, context: Any, weights: Any, columns: Columns) -> str | None:
    """Why a regression's design is rank deficient, naming the columns; ``None`` if not.

    The host-side twin of the closed forms' rank check, on concrete arrays: the design
    ``[1, context]`` (intercept first) with rows scaled by ``sqrt(w)`` and columns to unit
    norm has a QR factor whose ``R_jj^2`` is ``1 - R^2`` of column ``j`` on the columns before
    it, with the tolerance of the fit's dtype (:data:`RANK_EPS_FACTOR`). The first column
    below it is a combination of earlier ones; the earlier context columns with a weight of
    at least ``1e-3`` of the largest in that combination are named with it. A column that is
    a multiple of the intercept alone is constant. For the generators whose fit is a
    regression on ``[1, context]`` (the linear ones, ``NegativeBinomialGLM``): they call it
    from their ``fit_problem``.

    Args:
      generator: the node's generator (named in the message).
      context: ``(n, c)`` context the fit sees (its dtype sets the tolerance).
      weights: ``(n,)`` observation weights.
      columns: ``(role, name)`` of each context column.

    Returns:
      One line, e.g. ``"covariates 'X1' and 'X2' are collinear (the design of LinearGaussian
      is rank deficient); drop one"``, or ``None``.
    """
    design, w, dtype = _host_design(context, weights)
    scaled = design * np.sqrt(np.maximum(w, 0.0))[:, None]
    norm = np.linalg.norm(scaled, axis=0)
    r = np.linalg.qr(scaled / np.where(norm > 0, norm, 1.0), mode="r")
    pivots = np.where(norm > 0, np.abs(np.diagonal(r)) ** 2, 0.0)
    below = np.flatnonzero(pivots < _rank_tolerance(dtype))
    if below.size == 0:
        return None
    k = int(below[0])
    what = f"(the design of {type(generator).__name__} is rank deficient)"
    involved = []
    if norm[k] > 0:  # else: 0 on every weighted row
        # Column k ~ sum_j b_j column_j over the (independent) earlier columns, intercept first.
        combination = np.abs(np.linalg.solve(r[:k, :k], r[:k, k]))
        involved = [j - 1 for j in range(1, k) if combination[j] >= 1e-3 * combination.max()]
    if not involved:
        return f"{_describe([columns[k - 1]])} is constant {what}; drop it"
    named = [columns[j] for j in involved] + [columns[k - 1]]
    return f"{_describe(named)} are collinear {what}; drop one"


def fit_problem(
    generator: Generator, x: Any, context: Any, weights: Any, columns: Columns
) -> str | None:
    """Why a linear generator's closed form failed on these rows (one line), or ``None``.

    For a diverged point fit: a rank-deficient design (:func:`rank_problem`); for
    :class:`BinaryGLM`, classes separated completely or quasi-completely by the context columns
    with the largest share ``|b_j| sd_j`` (at least half the largest) of the separating
    direction, or Fisher scoring that did not converge; for :class:`LinearGaussian`, too few
    effective rows for its coefficients.
    """
    problem = rank_problem(generator, context, weights, columns)
    if problem is not None or not isinstance(generator, LinearGaussian | BinaryGLM):
        return problem
    name = type(generator).__name__
    if isinstance(generator, LinearGaussian):
        design, w, _ = _host_design(context, weights)
        n_eff = float(w.sum() ** 2 / np.sum(w**2))
        if n_eff <= design.shape[1]:
            return (
                f"{name} has {design.shape[1]} coefficients but only {n_eff:.1f} effective rows "
                "(n_e = (sum w)^2 / sum w^2), so its residual variance is undefined"
            )
        return None
    context = jnp.asarray(context)
    result = generator.fisher_scoring(
        jnp.asarray(x, context.dtype), context, jnp.asarray(weights, context.dtype)
    )
    if bool(result.complete) or bool(result.quasi):
        kind = "completely" if bool(result.complete) else "quasi-completely"
        c = np.asarray(context, np.float64)
        w = np.asarray(weights, np.float64)
        sd = np.sqrt(np.average((c - np.average(c, axis=0, weights=w)) ** 2, axis=0, weights=w))
        share = np.abs(np.asarray(result.direction, np.float64)[:-1]) * sd
        named = (
            [columns[j] for j in np.flatnonzero(share >= 0.5 * share.max())] if any(share) else []
        )
        by, fix = (f" by {_describe(named)}", "drop or coarsen it") if named else ("", "check it")
        return (
            f"its classes are {kind} separated{by} (rows fitted with probability 0 or 1: "
            f"{name}'s maximum-likelihood coefficients do not exist); {fix}, or fit this node "
            "with a neural generator such as 'mdn'"
        )
    if not bool(result.converged):
        return (
            f"{name}'s Fisher scoring did not converge in {IRLS_MAX_ITERATIONS} iterations "
            f"(last relative change of the coefficients {float(result.change):.1e}); check the "
            "data for near-collinear columns or extreme values"
        )
    return None
