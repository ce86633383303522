r"""A numpy/scipy port of R mediation's ``medsens`` for its two probit cases.

:func:`medsens_binary_mediator` is medsens' probit mediator with a linear outcome (described
below); :func:`medsens_binary_outcome` its linear mediator with a probit outcome.

Not R (it is not installed here): a re-implementation, written from the algorithm of
``medsens`` (R package ``mediation``, ``R/medsens.R``, the case "continuous outcome + binary
mediator"; Imai, Keele & Tingley 2010, *Psychological Methods* 15(4), appendix) so that
dcma's sensitivity curves can be checked against it. No code was copied; the steps are:

1. Fit the probit mediator model ``M* = X_m b + e``, ``M = 1{M* > 0}`` (R: ``glm`` with
   ``binomial("probit")``; its ``vcov`` is the inverse expected information, as statsmodels'
   IRLS ``GLM`` gives) and the linear outcome model ``Y = X_y beta + eps`` (``lm``).
2. Draw ``sims`` mediator coefficient vectors from ``N(b, vcov(b))``, once for all ``rho``.
3. For each ``rho`` and each draw ``k``: the generalised residual (inverse Mills ratio)
   ``lambda_i = E[e | M_i, X_m,i]`` under draw ``k``, ``adj = rho lambda`` and
   ``w = 1 - rho^2 lambda (lambda + mu)``; fit ``Y ~ X_y + adj`` with lm weights ``w`` for a
   starting ``sigma_3`` (lm's residual SD), then iterate ``Y* = Y - sigma_3 adj``,
   ``Y* ~ X_y`` with weights ``w``, ``sigma_3 <-`` its residual SD until it changes by less
   than ``sqrt(.Machine$double.eps)``; draw one outcome coefficient vector from
   ``N(coef, vcov)`` of that fit; ``ACME_k = gamma_k * mean_i(Phi(mu_1i) - Phi(mu_0i))``
   (``gamma`` the coefficient of ``M``, ``mu_t`` the mediator index with the treatment set to
   ``t``, draw ``k``). Without a treatment-mediator interaction ``d0 = d1``.
4. ``ACME(rho)`` is the mean over draws, the interval their quantiles (R's type 7, numpy's
   default); the breakpoint ``err.cr`` the grid ``rho`` with the smallest ``|ACME|``.
   ``R2_M`` is the latent ``var(X_m b) / (1 + var(X_m b))``, ``R2_Y`` the outcome lm's.

``weights`` switches step 3's lm weights: ``"medsens"`` as published; ``"inverse"`` lm weights
``1 / w`` (generalised least squares: ``w`` is the residuals' relative *variance*, so lm's
residual SD is then the structural ``sigma_3``); ``"ols"`` dcma's reading, no refit of the
outcome model: ``beta*(rho) = OLS(Y - sigma rho lambda)`` (the fitted coefficients minus
``sigma rho pi``, ``pi`` the OLS projection of ``lambda`` on ``X_y``) with the structural SD
from the fitted residual variance, ``sigma^2 = s^2 / (1 - rho^2 q)``, ``q = mean((X_y pi)^2)``,
and the outcome draw from that lm's ``vcov``. ``sims=None`` evaluates the plug-in at the fitted
coefficients instead of the quasi-Bayesian mean.

Sampling runs batched over the draws (numpy arrays of shape ``(sims, ...)``); the iteration of
each draw is medsens', stopped per draw.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import statsmodels.api as sm
from scipy.special import log_ndtr, ndtr

EPS = float(np.sqrt(np.finfo(np.float64).eps))  # R's sqrt(.Machine$double.eps)
WEIGHTS = ("medsens", "inverse", "ols")


@dataclasses.dataclass(frozen=True)
class MedsensCurve:
    """``medsens`` output for one probit-mediator / linear-outcome pair.

    Attributes:
      rho: the grid.
      acme: ``d0 = d1`` at each ``rho`` (mean over draws, or the plug-in).
      lower, upper: quantile interval of the draws (NaN for the plug-in).
      draws: ``(G, sims)`` the draws' ACMEs (``(G, 1)`` for the plug-in).
      gamma: ``(G, sims)`` the outcome draws' mediator coefficients.
      beta_treat: ``(G, sims)`` the outcome draws' treatment coefficients (the ADE).
      sigma: ``(G, sims)`` ``sigma_3`` of each fit.
      mean_shift: ``(sims,)`` ``mean_i(Phi(mu_1i) - Phi(mu_0i))`` of each mediator draw.
      err_cr: the grid ``rho`` with the smallest ``|ACME|``.
      r2_m, r2_y: medsens' R-squared of the mediator (latent) and outcome models.
    """

    rho: np.ndarray
    acme: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    draws: np.ndarray
    gamma: np.ndarray
    beta_treat: np.ndarray
    sigma: np.ndarray
    mean_shift: np.ndarray
    err_cr: float
    r2_m: float
    r2_y: float

    @property
    def mc_se(self) -> np.ndarray:
        """Monte Carlo SE of ``acme``: the draws' SD over ``sqrt(sims)`` (0 for the plug-in)."""
        sims = self.draws.shape[1]
        return self.draws.std(axis=1, ddof=1) / np.sqrt(sims) if sims > 1 else 0 * self.acme


def generalised_residual(m: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """``E[e | M, mu]`` for ``M = 1{mu + e > 0}``: ``phi/Phi(mu)`` or ``-phi/Phi(-mu)``."""
    log_phi = -0.5 * mu**2 - 0.5 * np.log(2 * np.pi)
    return np.where(m > 0.5, np.exp(log_phi - log_ndtr(mu)), -np.exp(log_phi - log_ndtr(-mu)))


def probit(m: np.ndarray, design: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probit MLE and its inverse expected information (R's ``glm`` ``coef`` and ``vcov``)."""
    fit = sm.GLM(m, design, family=sm.families.Binomial(link=sm.families.links.Probit())).fit()
    return np.asarray(fit.params), np.asarray(fit.cov_params())


def _weighted_lm(y: np.ndarray, design: np.ndarray, w: np.ndarray):
    """R's ``lm(y ~ design - 1, weights = w)`` batched over a leading axis of ``y`` / ``w``.

    ``y``, ``w``: ``(S, n)``; ``design``: ``(n, p)``. Returns ``coef (S, p)``,
    ``sigma (S,)`` = ``sqrt(sum w r^2 / (n - p))`` and ``(X^T W X)^-1 (S, p, p)`` (lm's
    ``vcov`` is ``sigma^2`` times it).
    """
    n, p = design.shape
    gram = np.swapaxes(w[:, :, None] * design, 1, 2) @ design
    rhs = (w * y) @ design
    inverse = np.linalg.inv(gram)
    coef = np.einsum("sij,sj->si", inverse, rhs)
    resid = y - coef @ design.T
    sigma = np.sqrt(np.sum(w * resid**2, axis=1) / (n - p))
    return coef, sigma, inverse


def _outcome_fit(y, design, lam, mu, rho, weights):
    """Step 3's outcome fit for each mediator draw: ``coef (S, p)``, ``sigma (S,)``, vcov."""
    sims, n = lam.shape
    p = design.shape[1]
    adj = rho * lam
    w = 1.0 - rho**2 * lam * (lam + mu)
    if weights == "ols":
        ones = np.ones_like(lam)
        coef_y, s, _ = _weighted_lm(np.broadcast_to(y, lam.shape), design, ones)
        pi, _, _ = _weighted_lm(lam, design, ones)
        q = np.mean((pi @ design.T) ** 2, axis=1)
        sigma = s / np.sqrt(1.0 - rho**2 * q)
        coef, resid_sd, inverse = _weighted_lm(y - sigma[:, None] * adj, design, ones)
        return coef, sigma, resid_sd[:, None, None] ** 2 * inverse
    lm_w = w if weights == "medsens" else 1.0 / w
    # The starting fit Y ~ X_y + adj: a design per draw, solved by its normal equations. At
    # rho = 0 adj is 0, which lm drops as aliased (its coefficient NA, df n - p).
    columns = [np.broadcast_to(design, (sims, n, p))] + ([adj[..., None]] if rho != 0 else [])
    augmented = np.concatenate(columns, axis=2)
    gram = np.swapaxes(lm_w[:, :, None] * augmented, 1, 2) @ augmented
    rhs = np.einsum("sni,sn->si", augmented, lm_w * y)
    start = np.linalg.solve(gram, rhs[..., None])[..., 0]
    resid = y - np.einsum("sni,si->sn", augmented, start)
    sigma = np.sqrt(np.sum(lm_w * resid**2, axis=1) / (n - augmented.shape[2]))
    active = np.ones(sims, bool)
    coef = np.empty((sims, p))
    resid_sd = np.empty(sims)
    inverse = np.empty((sims, p, p))
    for _ in range(10_000):
        c, s, inv = _weighted_lm(y - sigma[active, None] * adj[active], design, lm_w[active])
        coef[active], resid_sd[active], inverse[active] = c, s, inv
        done = np.abs(s - sigma[active]) <= EPS
        sigma[active] = s
        index = np.flatnonzero(active)
        active[index[done]] = False
        if not active.any():
            break
    else:
        raise RuntimeError("medsens' sigma_3 iteration did not converge")
    return coef, sigma, sigma[:, None, None] ** 2 * inverse


def medsens_binary_mediator(
    y: np.ndarray,
    m: np.ndarray,
    treat: np.ndarray,
    covariates: np.ndarray,
    rho: np.ndarray,
    *,
    sims: int | None = 1000,
    seed: int = 0,
    weights: str = "medsens",
    conf_level: float = 0.95,
) -> MedsensCurve:
    """``medsens`` for ``M ~ probit(1, T, X)`` and ``Y ~ lm(1, T, M, X)`` (no interaction).

    Args:
      y, m, treat: ``(n,)`` outcome, 0/1 mediator, 0/1 treatment.
      covariates: ``(n, p)`` (``p`` may be 0).
      rho: the grid (medsens: ``seq(-1 + rho.by, 1 - rho.by, rho.by)``).
      sims: parameter draws (medsens' ``sims``); ``None``: the plug-in.
      seed: numpy seed of the draws (R's streams differ anyway).
      weights: ``"medsens"``, ``"inverse"`` or ``"ols"`` (module docstring).
      conf_level: interval level.
    """
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}")
    n = len(y)
    x = np.asarray(covariates, np.float64).reshape(n, -1)
    ones = np.ones(n)
    design_m = np.column_stack([ones, treat, x])
    design_y = np.column_stack([ones, treat, m, x])
    b, vb = probit(m, design_m)
    rng = np.random.default_rng(seed)
    mediator_draws = b[None] if sims is None else rng.multivariate_normal(b, vb, size=sims)
    mu = mediator_draws @ design_m.T  # (S, n)
    mu1 = mediator_draws @ np.column_stack([ones, ones, x]).T
    mu0 = mediator_draws @ np.column_stack([ones, 0 * ones, x]).T
    shift = np.mean(ndtr(mu1) - ndtr(mu0), axis=1)  # (S,)
    lam = generalised_residual(m[None], mu)
    gamma, beta_treat, sigma, acme = [], [], [], []
    for r in np.asarray(rho, np.float64):
        coef, sig, vcov = _outcome_fit(y, design_y, lam, mu, r, weights)
        if sims is not None:  # one draw from N(coef_k, vcov_k) per mediator draw k
            z = rng.standard_normal(coef.shape)
            coef = coef + np.einsum("sij,sj->si", np.linalg.cholesky(vcov), z)
        gamma.append(coef[:, 2])
        beta_treat.append(coef[:, 1])
        sigma.append(sig)
        acme.append(coef[:, 2] * shift)
    draws = np.asarray(acme)
    low = (1 - conf_level) / 2
    plug_in = sims is None
    fitted_index = design_m @ b
    spread = np.var(fitted_index, ddof=1)
    r2_y = sm.OLS(y, design_y).fit().rsquared
    acme_mean = draws.mean(axis=1)
    rho = np.asarray(rho, np.float64)
    return MedsensCurve(
        rho=rho,
        acme=acme_mean,
        lower=np.full(len(rho), np.nan) if plug_in else np.quantile(draws, low, axis=1),
        upper=np.full(len(rho), np.nan) if plug_in else np.quantile(draws, 1 - low, axis=1),
        draws=draws,
        gamma=np.asarray(gamma),
        beta_treat=np.asarray(beta_treat),
        sigma=np.asarray(sigma),
        mean_shift=shift,
        err_cr=float(rho[np.argmin(np.abs(acme_mean))]),
        r2_m=float(spread / (1 + spread)),
        r2_y=float(r2_y),
    )


@dataclasses.dataclass(frozen=True)
class MedsensBinaryOutcome:
    """``medsens`` output for a linear mediator with a probit outcome.

    Attributes:
      rho: the grid.
      d0, d1: ACME(control), ACME(treated) at each ``rho`` (means over draws, or the plug-in).
      tau: the total effect at each ``rho`` (it does not move).
      rho12: ``(sims,)`` the identified correlation of the mediator's and the reduced-form
        outcome's errors; medsens reports its mean as the breakpoint ``err.cr``.
      draws_d0, draws_d1: ``(G, sims)`` the draws' ACMEs.
    """

    rho: np.ndarray
    d0: np.ndarray
    d1: np.ndarray
    tau: np.ndarray
    rho12: np.ndarray
    draws_d0: np.ndarray
    draws_d1: np.ndarray

    @property
    def err_cr(self) -> float:
        return float(np.mean(self.rho12))


def medsens_binary_outcome(
    y: np.ndarray,
    m: np.ndarray,
    treat: np.ndarray,
    covariates: np.ndarray,
    rho: np.ndarray,
    *,
    sims: int | None = 1000,
    seed: int = 0,
    rho12: str = "medsens",
) -> MedsensBinaryOutcome:
    r"""``medsens`` for ``M ~ lm(1, T, X)`` and ``Y ~ probit(1, T, M, X)`` (no interaction).

    medsens' case "binary outcome + continuous mediator", the procedure of Imai, Keele &
    Tingley (2010): draws of the mediator coefficients (normal), of ``sigma_2`` (``sigma_2^2``
    scaled-inverse-chi-square with the lm's degrees of freedom) and of the probit coefficients
    (normal); ``rho12`` from the probit's mediator coefficient ``gamma~``; the reduced-form
    index coefficients of ``Y*`` on ``(1, T, X)``, ``theta = beta_obs sqrt(1 - rho12^2) +
    b rho12 / sigma_2``; then at each ``rho`` ``gamma = (-rho + rho12 sqrt((1 - rho^2) /
    (1 - rho12^2))) / sigma_2``, ``sigma_1* = sqrt(gamma^2 sigma_2^2 + 2 gamma rho sigma_2 +
    1)``, ``d0 = mean(Phi(x_0 theta + gamma beta_2 / sigma_1*) - Phi(x_0 theta))`` and ``d1 =
    mean(Phi(x_1 theta) - Phi(x_1 theta - gamma beta_2 / sigma_1*))``.

    ``rho12="medsens"`` computes ``rho12`` as the published code does,
    ``sigma_2 gamma~ / (1 + sqrt(sigma_2^2 gamma~^2))``; ``"intended"`` as the model implies,
    ``sigma_2 gamma~ / sqrt(1 + sigma_2^2 gamma~^2)`` (the probit of ``Y`` given ``M`` has
    ``gamma~ = rho12 / (sigma_2 sqrt(1 - rho12^2))``). The two agree to first order in
    ``sigma_2 gamma~``.
    """
    if rho12 not in ("medsens", "intended"):
        raise ValueError("rho12 must be 'medsens' or 'intended'")
    n = len(y)
    x = np.asarray(covariates, np.float64).reshape(n, -1)
    ones = np.ones(n)
    design_m = np.column_stack([ones, treat, x])
    lm = sm.OLS(m, design_m).fit()
    glm = sm.GLM(
        y,
        np.column_stack([ones, treat, m, x]),
        family=sm.families.Binomial(link=sm.families.links.Probit()),
    ).fit()
    b, vb, sigma_2 = np.asarray(lm.params), np.asarray(lm.cov_params()), np.sqrt(lm.scale)
    c, vc = np.asarray(glm.params), np.asarray(glm.cov_params())
    if sims is None:
        b_sim, c_sim, s_sim = b[None], c[None], np.array([sigma_2])
    else:
        rng = np.random.default_rng(seed)
        b_sim = rng.multivariate_normal(b, vb, size=sims)
        shape, invscale = lm.df_resid / 2, lm.df_resid / 2 * sigma_2**2
        s_sim = np.sqrt(1.0 / rng.gamma(shape, 1.0 / invscale, size=sims))
        c_sim = rng.multivariate_normal(c, vc, size=sims)
    g_tilde = c_sim[:, 2]
    t_s = s_sim * g_tilde
    r12 = t_s / (1 + np.sqrt(t_s**2)) if rho12 == "medsens" else t_s / np.sqrt(1 + t_s**2)
    keep = np.r_[0, 1, 3 : c_sim.shape[1]]  # (1, T, X): the probit's columns less M
    theta = c_sim[:, keep] * np.sqrt(1 - r12**2)[:, None] + b_sim * (r12 / s_sim)[:, None]
    index0 = theta @ np.column_stack([ones, 0 * ones, x]).T  # (S, n)
    index1 = theta @ np.column_stack([ones, ones, x]).T
    beta_2 = b_sim[:, 1]
    d0, d1, tau = [], [], []
    for r in np.asarray(rho, np.float64):
        gamma = (-r + r12 * np.sqrt((1 - r**2) / (1 - r12**2))) / s_sim
        sigma_1 = np.sqrt(gamma**2 * s_sim**2 + 2 * gamma * r * s_sim + 1)
        step = (gamma * beta_2 / sigma_1)[:, None]
        d0.append(np.mean(ndtr(index0 + step) - ndtr(index0), axis=1))
        d1.append(np.mean(ndtr(index1) - ndtr(index1 - step), axis=1))
        tau.append(np.mean(ndtr(index1) - ndtr(index0), axis=1))
    draws_d0, draws_d1 = np.asarray(d0), np.asarray(d1)
    return MedsensBinaryOutcome(
        rho=np.asarray(rho, np.float64),
        d0=draws_d0.mean(axis=1),
        d1=draws_d1.mean(axis=1),
        tau=np.asarray(tau).mean(axis=1),
        rho12=r12,
        draws_d0=draws_d0,
        draws_d1=draws_d1,
    )
