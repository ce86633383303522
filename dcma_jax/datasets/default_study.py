r"""The embedded default study: the treatment widens the mediator without moving its mean.

    X1, X2 ~ N(0, 1),  site ~ Uniform{north, south, west}
    A ~ Bernoulli(sigmoid(0.4 X1 - 0.3 X2))
    M = 0.5 X1 + (1 + 1.5 A) eps_M
    Y = 1 + 0.5 A + 0.8 M + 0.3 X1 + 0.2 X2 + 0.4 [site = west] + 0.5 eps_Y

``E[M | A, X]`` does not depend on ``A``, so every *mean* indirect effect is exactly zero; but the
mediator's spread grows 2.5-fold under treatment, so quantile, CDF and distance indirect effects
are large. A mean-only analysis (or a homoscedastic linear mediator model) reports no
mediation; a distributional one finds it. The data file ``default_study.csv`` holds 2,000 rows
drawn from this SCM with seed 2026 (``scripts/make_default_study.py`` rewrites it).
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

from dcma_jax.data import MediationData
from dcma_jax.datasets.synthetic import Covariates, SyntheticStudy

SEED = 2026
NUM_ROWS = 2000
CSV_NAME = "default_study.csv"
SITES = np.array(["north", "south", "west"])


def _covariates(rng: np.random.Generator, n: int) -> Covariates:
    return {
        "X1": rng.standard_normal(n),
        "X2": rng.standard_normal(n),
        "site": SITES[rng.integers(0, len(SITES), n)],
    }


def _propensity(cov: Covariates) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(0.4 * cov["X1"] - 0.3 * cov["X2"])))


def _mediator(a: np.ndarray, cov: Covariates, eps: np.ndarray) -> np.ndarray:
    return (0.5 * cov["X1"] + (1.0 + 1.5 * a) * eps[:, 0])[:, None]


def _outcome(a: np.ndarray, m: np.ndarray, cov: Covariates, eps: np.ndarray) -> np.ndarray:
    west = (cov["site"] == "west").astype(np.float64)
    return (
        1.0 + 0.5 * a + 0.8 * m[:, 0] + 0.3 * cov["X1"] + 0.2 * cov["X2"] + 0.4 * west + 0.5 * eps
    )


DEFAULT_STUDY = SyntheticStudy(
    name="default",
    description=(
        "Treatment A widens the mediator M (SD 1 -> 2.5) without changing its mean; "
        "Y is linear in A and M. Mean indirect effects are exactly 0, quantile and "
        "distance indirect effects are large."
    ),
    mediators=("M",),
    covariates=("X1", "X2", "site"),
    sample_covariates=_covariates,
    propensity=_propensity,
    mediator_model=_mediator,
    outcome_model=_outcome,
)


def load_default_frame() -> pd.DataFrame:
    """The shipped 2,000-row data set as a DataFrame."""
    with resources.files("dcma_jax.datasets").joinpath(CSV_NAME).open("r") as f:
        return pd.read_csv(f)


def load_default_study() -> MediationData:
    """The shipped data set with its roles: ``A`` -> ``M`` -> ``Y``, covariates X1, X2, site."""
    study = DEFAULT_STUDY
    return MediationData.from_dataframe(
        load_default_frame(),
        treatment=study.treatment,
        mediators=list(study.mediators),
        outcome=study.outcome,
        covariates=list(study.covariates),
    )
