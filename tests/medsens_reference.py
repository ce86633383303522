r"""A numpy/scipy port of R mediation's ``medsens`` for a probit mediator and a linear outcome.

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
