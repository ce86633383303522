"""Influence and infinitesimal-jackknife SEs against statsmodels' sandwich delta method."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import dcma_jax as dj

N = 2000


@pytest.fixture(scope="module")
def linear():
    rng = np.random.default_rng(0)
    x, a = rng.normal(size=N), rng.integers(0, 2, N)
    m = 0.8 * a + 0.4 * x + rng.normal(size=N)
    y = 0.5 * a + 0.7 * m + 0.2 * x + rng.normal(size=N)
    frame = pd.DataFrame({"A": a, "M": m, "Y": y, "X": x})
    data = dj.MediationData.from_dataframe(
        frame, treatment="A", mediators=["M"], outcome="Y", covariates=["X"]
    )
    fitted = dj.fit(data, generators="linear", bootstrap=100, seed=1)
    table, u = fitted.influence()
    return frame, fitted, table.set_index("effect"), u


def _ols(frame):
    a, x, m, y = (frame[c].to_numpy(float) for c in "AXMY")
    mediator = sm.OLS(m, sm.add_constant(np.c_[a, x])).fit()
    outcome = sm.OLS(y, sm.add_constant(np.c_[a, m, x])).fit()
    return mediator, outcome


def test_influences_sum_to_zero(linear):
    # theta does not change when every weight is scaled, so sum_i w_i d theta / d w_i = 0.
    _, _, table, u = linear
    np.testing.assert_allclose(u.sum(axis=1), 0.0, atol=1e-5 * np.abs(u).sum(axis=1).max())
    assert u.shape == (len(table), N)


def test_ij_errors_equal_the_sandwich_delta_method(linear):
    # NDE = t (A in Y): its IJ SE is statsmodels' HC0 SE of t. NIE = b d: the delta method with
    # the stacked HC0 sandwich of both regressions, cross term included, per-row scores
    # psi_i = (X'X)^-1 x_i r_i from statsmodels' pseudo-inverse and residuals.
    frame, _, table, _ = linear
    mediator, outcome = _ols(frame)
    hc0 = outcome.get_robustcov_results("HC0")
    assert table.loc["NDE_control", "ij_se"] == pytest.approx(
        np.sqrt(hc0.cov_params()[1, 1]), rel=1e-3
    )
    psi_b = mediator.model.pinv_wexog[1] * mediator.resid
    psi_d = outcome.model.pinv_wexog[2] * outcome.resid
    b, d = mediator.params[1], outcome.params[2]
    se = np.sqrt(np.sum((d * psi_b + b * psi_d) ** 2))
    assert table.loc["NIE_treated", "ij_se"] == pytest.approx(se, rel=1e-3)
    assert table.loc["NIE_treated", "estimate"] == pytest.approx(b * d, rel=1e-4)


def test_ij_errors_agree_with_the_bootstrap(linear):
    # The bootstrap SD from 100 replicates (the 95% interval's width / 3.92) has a relative
    # standard error of about 1 / sqrt(2 B) = 7%: agreement within 3 of those.
    _, fitted, table, _ = linear
    result = fitted.effects(num_draws=20_000, quantiles=(), cdf_points=(), distances=())
    rows = result.table[result.table.functional == "mean"].set_index("effect")
    for effect in ("TE", "NDE_control", "NIE_treated"):
        boot_sd = (rows.loc[effect, "ci_high"] - rows.loc[effect, "ci_low"]) / 3.92
        assert table.loc[effect, "ij_se"] == pytest.approx(boot_sd, rel=3 * 0.07), effect


def test_neural_generators_are_refused(mixed_fitted):
    # The session's fit of the default study with an mdn mediator (conftest.MIXED).
    with pytest.raises(dj.ArgumentError, match="influence needs closed-form generators"):
        mixed_fitted.influence()
