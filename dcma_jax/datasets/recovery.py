r"""The structural models of the recovery study, each with exact nested-counterfactual truths.

Every study has one binary treatment ``A`` (logistic in the covariates) and covariates ``X``;
truths come from the structural equations with shared noise (:class:`SyntheticStudy`,
:class:`SequentialStudy`), never from the identification formula the estimators use.

* ``linear``          -- linear-Gaussian mediator and outcome (every family should recover it).
* ``heteroscedastic`` -- the default study: ``A`` widens ``M`` (SD 1 -> 2.5), mean unchanged.
* ``bimodal``         -- a two-mode mediator; ``A`` moves mass between the modes.
* ``skewed``          -- a log-normal mediator and a treatment x mediator interaction.
* ``interaction``     -- a nonlinear, heteroscedastic outcome with ``A x M`` and ``M^2`` terms.
* ``binary_mediator`` -- a probit mediator and an ``A x M`` interaction in the outcome.
* ``binary_outcome``  -- a probit outcome of a continuous mediator.
* ``two_mediators``   -- two sequential linear-Gaussian mediators (natural effects of the block).

:data:`ROBUSTNESS_STUDIES` are the one-step estimator's test bed (:mod:`dcma_jax.robust`): a
logistic propensity throughout, so that a logistic GLM propensity is right, and one of the
linear family's two models wrong:

* ``linear``                -- both right (the one-step should cost little variance);
* ``outcome_misspecified``  -- ``Y`` has ``A x M`` and ``M^2`` terms; the mediator is linear;
* ``mediator_misspecified`` -- ``M`` is log-normal; ``Y`` is linear-Gaussian in ``(A, M, X)``.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from dcma_jax.datasets.default_study import DEFAULT_STUDY
from dcma_jax.datasets.sequential import TWO_MEDIATORS, SequentialStudy
from dcma_jax.datasets.synthetic import Covariates, SyntheticStudy


def _one_covariate(rng: np.random.Generator, n: int) -> Covariates:
    return {"X": rng.standard_normal(n)}


def _logistic(cov: Covariates) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-0.5 * cov["X"]))


def _half(cov: Covariates) -> np.ndarray:
    return 0.5 + 0.2 * np.tanh(cov["X"])


def _linear_mediator(a, cov, eps):
    return (0.5 + 0.6 * a + 0.5 * cov["X"] + eps[:, 0])[:, None]


def _linear_outcome(a, m, cov, eps):
    return 0.3 + 0.5 * a + 0.7 * m[:, 0] + 0.3 * cov["X"] + eps


def _bimodal_mediator(a, cov, eps):
    # One uniform picks the component (P(upper) = 0.25 + 0.5 a) and, rescaled within the
    # component, gives that component's normal: an exact two-mode draw from one noise value.
    u = norm.cdf(eps[:, 0])
    p_up = 0.25 + 0.5 * a
    upper = u < p_up
    within = np.where(upper, u / p_up, (u - p_up) / (1.0 - p_up))
    z = norm.ppf(np.clip(within, 1e-12, 1 - 1e-12))
    return (np.where(upper, 1.5, -1.5) + 0.3 * cov["X"] + 0.5 * z)[:, None]


def _bimodal_outcome(a, m, cov, eps):
    return 0.5 * a + m[:, 0] + 0.3 * cov["X"] + 0.5 * eps


def _skewed_mediator(a, cov, eps):
    return np.exp(0.4 * a + 0.3 * cov["X"] + 0.6 * eps[:, 0])[:, None]


def _skewed_outcome(a, m, cov, eps):
    return 0.5 * a + 0.6 * m[:, 0] + 0.4 * a * m[:, 0] + 0.3 * cov["X"] + 0.5 * eps


def _interaction_mediator(a, cov, eps):
    return (0.8 * a + 0.5 * cov["X"] + eps[:, 0])[:, None]


def _interaction_outcome(a, m, cov, eps):
    mm = m[:, 0]
    return (
        0.5 * a
        + 0.7 * mm
        + 0.6 * a * mm
        + 0.3 * mm**2
        + 0.3 * np.sin(2 * cov["X"])
        + (0.3 + 0.4 * np.abs(mm)) * eps
    )


def _quadratic_outcome(a, m, cov, eps):
    mm = m[:, 0]
    return 0.3 + 0.5 * a + 0.7 * mm + 0.8 * a * mm + 0.4 * mm**2 + 0.3 * cov["X"] + eps


def _lognormal_mediator(a, cov, eps):
    return np.exp(0.6 * a + 0.3 * cov["X"] + 0.6 * eps[:, 0])[:, None]


def _binary_mediator(a, cov, eps):
    return (eps[:, 0] < -0.2 + 0.9 * a + 0.5 * cov["X"]).astype(np.float64)[:, None]


def _binary_mediator_outcome(a, m, cov, eps):
    return 0.2 + 0.4 * a + 1.0 * m[:, 0] + 0.5 * a * m[:, 0] + 0.3 * cov["X"] + 0.6 * eps


def _binary_outcome(a, m, cov, eps):
    return (eps < -0.3 + 0.4 * a + 0.6 * m[:, 0] + 0.3 * cov["X"]).astype(np.float64)


def _study(name, description, mediator, outcome, propensity=_logistic) -> SyntheticStudy:
    return SyntheticStudy(
        name=name,
        description=description,
        mediators=("M",),
        covariates=("X",),
        sample_covariates=_one_covariate,
        propensity=propensity,
        mediator_model=mediator,
        outcome_model=outcome,
    )


RECOVERY_STUDIES: dict[str, SyntheticStudy | SequentialStudy] = {
    "linear": _study(
        "linear",
        "M = 0.5 + 0.6 A + 0.5 X + e, Y = 0.3 + 0.5 A + 0.7 M + 0.3 X + e.",
        _linear_mediator,
        _linear_outcome,
    ),
    "heteroscedastic": DEFAULT_STUDY,
    "bimodal": _study(
        "bimodal",
        "Two-mode mediator (modes at -1.5 and 1.5, P(upper) = 0.25 + 0.5 A); "
        "Y = 0.5 A + M + 0.3 X + 0.5 e.",
        _bimodal_mediator,
        _bimodal_outcome,
        propensity=_half,
    ),
    "skewed": _study(
        "skewed",
        "M = exp(0.4 A + 0.3 X + 0.6 e), Y = 0.5 A + 0.6 M + 0.4 A M + 0.3 X + 0.5 e.",
        _skewed_mediator,
        _skewed_outcome,
    ),
    "interaction": _study(
        "interaction",
        "M = 0.8 A + 0.5 X + e, Y = 0.5 A + 0.7 M + 0.6 A M + 0.3 M^2 + 0.3 sin 2X "
        "+ (0.3 + 0.4 |M|) e.",
        _interaction_mediator,
        _interaction_outcome,
        propensity=_half,
    ),
    "binary_mediator": _study(
        "binary_mediator",
        "M = 1{e < -0.2 + 0.9 A + 0.5 X} (probit), Y = 0.2 + 0.4 A + M + 0.5 A M + 0.3 X + 0.6 e.",
        _binary_mediator,
        _binary_mediator_outcome,
    ),
    "binary_outcome": _study(
        "binary_outcome",
        "M = 0.5 + 0.6 A + 0.5 X + e, Y = 1{e < -0.3 + 0.4 A + 0.6 M + 0.3 X} (probit).",
        _linear_mediator,
        _binary_outcome,
    ),
    "two_mediators": TWO_MEDIATORS,
}


ROBUSTNESS_STUDIES: dict[str, SyntheticStudy] = {
    "linear": RECOVERY_STUDIES["linear"],
    "outcome_misspecified": _study(
        "outcome_misspecified",
        "M = 0.5 + 0.6 A + 0.5 X + e, Y = 0.3 + 0.5 A + 0.7 M + 0.8 A M + 0.4 M^2 + 0.3 X + e.",
        _linear_mediator,
        _quadratic_outcome,
    ),
    "mediator_misspecified": _study(
        "mediator_misspecified",
        "M = exp(0.6 A + 0.3 X + 0.6 e) (log-normal), Y = 0.3 + 0.5 A + 0.7 M + 0.3 X + e.",
        _lognormal_mediator,
        _linear_outcome,
    ),
}
