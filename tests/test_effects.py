"""Effects against closed forms on a linear-Gaussian SCM, and the exact decomposition identity.

SCM (X ~ N(0, 1)):  M = 0.2 + b A + c X + s1 e1,   Y = 0.1 + t A + g M + h X + s2 e2.
Then Y(a, M(a')) ~ N(mu(a, a'), sigma^2) with mu = 0.1 + t a + g (0.2 + b a') and
sigma^2 = (g c + h)^2 + g^2 s1^2 + s2^2, the same in every arm. So NDE = t, NIE = g b and
TE = t + g b at every quantile; W1 = |effect|; KS = 2 Phi(|effect| / (2 sigma)) - 1.

Tolerances: 4 standard errors of the estimated contrast, the SEs taken from statsmodels' OLS
fits on the same data (a false alarm per check ~6e-5), plus Monte Carlo terms where the draws
matter. With common random numbers and linear generators each draw's contrast is exactly the
fitted shift, so quantile effects equal the mean effect up to float32 rounding.
"""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy.stats import norm

import dcma_jax as dj

B, C, S1 = 0.8, 0.5, 1.0
T, G, H, S2 = 0.5, 0.7, 0.3, 0.8
SIGMA = np.sqrt((G * C + H) ** 2 + G**2 * S1**2 + S2**2)
TRUE = {"NDE": T, "NIE": G * B, "TE": T + G * B}
N, DRAWS = 4000, 200_000


def _scm_frame(seed, n=N):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    a = (rng.uniform(size=n) < 1 / (1 + np.exp(-0.5 * x))).astype(int)
    m = 0.2 + B * a + C * x + S1 * rng.normal(size=n)
    y = 0.1 + T * a + G * m + H * x + S2 * rng.normal(size=n)
    return {"X": x, "A": a, "M": m, "Y": y}


@pytest.fixture(scope="module")
def linear_fit():
    frame = _scm_frame(0)
    data = dj.MediationData.from_dataframe(
        pd.DataFrame(frame),
        treatment="A",
        mediators="M",
        outcome="Y",
        covariates=["X"],
    )
    result = dj.analyze(data, generators="linear", num_draws=DRAWS, seed=1)
    med = sm.OLS(frame["M"], sm.add_constant(np.c_[frame["A"], frame["X"]])).fit()
    out = sm.OLS(frame["Y"], sm.add_constant(np.c_[frame["A"], frame["M"], frame["X"]])).fit()
    b_hat, g_hat = med.params[1], out.params[2]
    se = {
        "NDE": out.bse[1],
        "NIE": np.sqrt(g_hat**2 * med.bse[1] ** 2 + b_hat**2 * out.bse[2] ** 2),
    }
    se["TE"] = np.hypot(se["NDE"], se["NIE"])
    return result, se


@pytest.mark.parametrize(
    "effect, kind",
    [
        ("TE", "TE"),
        ("NDE_control", "NDE"),
        ("NDE_treated", "NDE"),
        ("NIE_control", "NIE"),
        ("NIE_treated", "NIE"),
    ],
)
def test_mean_and_quantile_effects_match_closed_form(linear_fit, effect, kind):
    result, se = linear_fit
    mean = result.estimate(effect, "mean")
    assert abs(mean - TRUE[kind]) < 4 * se[kind], (mean, TRUE[kind], se[kind])
    for q in dj.estimands.DEFAULT_QUANTILES:
        quantile = result.estimate(effect, "quantile", q)
        # Shifted samples: quantile contrasts equal the mean contrast up to float32 rounding of
        # values of size ~5 (a few ulps, ~1e-6).
        assert abs(quantile - mean) < 2e-5, (q, quantile, mean)
    assert abs(result.estimate(effect, "wasserstein") - abs(mean)) < 2e-5


@pytest.mark.parametrize(
    "effect, kind", [("TE", "TE"), ("NDE_control", "NDE"), ("NIE_treated", "NIE")]
)
def test_ks_matches_closed_form(linear_fit, effect, kind):
    result, se = linear_fit

    def ks(delta, sigma):
        return 2 * norm.cdf(abs(delta) / (2 * sigma)) - 1

    d_delta = norm.pdf(TRUE[kind] / (2 * SIGMA)) / SIGMA
    d_sigma = norm.pdf(TRUE[kind] / (2 * SIGMA)) * TRUE[kind] / SIGMA**2
    # sigma is estimated from n rows: SE ~ sigma / sqrt(2 n); the empirical KS of DRAWS shared
    # draws adds at most ~1 / sqrt(DRAWS).
    tol = 4 * np.hypot(d_delta * se[kind], d_sigma * SIGMA / np.sqrt(2 * N)) + 4 / np.sqrt(DRAWS)
    got = result.estimate(effect, "ks")
    assert abs(got - ks(TRUE[kind], SIGMA)) < tol, (got, ks(TRUE[kind], SIGMA), tol)


def test_proportion_mediated(linear_fit):
    result, _ = linear_fit
    te, nie = result.estimate("TE", "mean"), result.estimate("NIE_treated", "mean")
    assert result.estimate("PM_treated", "mean") == pytest.approx(nie / te, rel=1e-5)


@pytest.mark.parametrize("fit", ["linear", "mdn"])
def test_decomposition_identity_is_exact(fit, request):
    # TE = NDE_control + NIE_treated = NDE_treated + NIE_control for every scalar functional,
    # by construction of the contrasts; only float32 rounding of O(5) values separates them.
    # linear: this file's fit; mdn: an mdn mediator (arms that differ in shape, not only by a
    # shift) with a linear outcome, the session's analysis of the default study (conftest).
    if fit == "linear":
        result, _ = request.getfixturevalue("linear_fit")
    else:
        result = request.getfixturevalue("mixed_analysis")
    table = result.summary()
    scalar = table[table.functional.isin(["mean", "quantile", "cdf"])]
    scalar = scalar[~scalar.effect.str.startswith("PM")]
    leveled = scalar[scalar.functional != "mean"]
    wide = leveled.pivot_table(index=["functional", "level"], columns="effect", values="estimate")
    assert len(wide) == 8  # the default 5 quantiles and 3 CDF points
    mean = scalar[scalar.functional == "mean"].set_index("effect").estimate
    for lhs in (wide, mean):
        np.testing.assert_allclose(lhs["TE"], lhs["NDE_control"] + lhs["NIE_treated"], atol=2e-5)
        np.testing.assert_allclose(lhs["TE"], lhs["NDE_treated"] + lhs["NIE_control"], atol=2e-5)
