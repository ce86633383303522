"""Diagnostics against closed forms: Gaussian CRPS, density-ratio ESS, PIT calibration."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy.stats import norm

import dcma_jax as dj
from dcma_jax import diagnostics

N = 2000


def _frame(bimodal: bool, shift: float = 0.5, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=N)
    a = rng.integers(0, 2, N)
    if bimodal:
        m = np.where(rng.uniform(size=N) < 0.5, -2.0, 2.0) + 0.4 * rng.normal(size=N) + shift * a
    else:
        m = shift * a + 0.3 * x + rng.normal(size=N)
    y = 0.5 * a + 0.7 * m + 0.2 * x + rng.normal(size=N)
    return pd.DataFrame({"A": a, "M": m, "Y": y, "X": x})


def _data(frame):
    return dj.MediationData.from_dataframe(
        frame, treatment="A", mediators=["M"], outcome="Y", covariates=["X"]
    )


@pytest.fixture(scope="module")
def gaussian():
    frame = _frame(bimodal=False)
    return frame, dj.fit(_data(frame), generators="linear")


def test_crps_of_a_linear_gaussian_node_equals_the_closed_form(gaussian):
    # CRPS(N(mu, s), y) = s [z (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi)], z = (y - mu) / s, with
    # mu, s from statsmodels' OLS of M on (A, X) (the same fit, in-sample for a closed form).
    frame, fitted = gaussian
    design = sm.add_constant(frame[["A", "X"]].to_numpy(float))
    ols = sm.OLS(frame.M.to_numpy(), design).fit()
    s = np.sqrt(ols.scale)
    z = (frame.M.to_numpy() - ols.fittedvalues) / s
    exact = np.mean(s * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / np.sqrt(np.pi)))
    node = fitted.diagnostics()["M"]
    # Monte Carlo error of the 64-draw estimate, averaged over N rows: about 0.6 s / sqrt(64 N).
    assert node["crps"] == pytest.approx(exact, abs=4 * 0.6 * s / np.sqrt(64 * N))
    assert node["rows"] == f"in-sample: {N} rows (closed form)"
    # Log-likelihood in original units: the Gaussian log-density at the OLS fit.
    assert node["heldout_log_lik"] == pytest.approx(np.mean(norm.logpdf(z) - np.log(s)), abs=1e-3)


def test_ess_fraction_of_a_mean_shift_equals_exp_minus_t_squared(gaussian):
    # Mediator N(mu_a, s) shifted by d between arms: E_{a'}[f_{a'} / f_a] = exp(t^2), t = d / s,
    # so the ESS fraction is exp(-t^2); 20,000 draws give a relative MC error of
    # sqrt(exp(3 t^2) - exp(2 t^2)) / exp(t^2) / sqrt(20,000).
    frame, fitted = gaussian
    design = sm.add_constant(frame[["A", "X"]].to_numpy(float))
    ols = sm.OLS(frame.M.to_numpy(), design).fit()
    t2 = ols.params[1] ** 2 / ols.scale
    result = fitted.effects(num_draws=2000)
    overlap = {e["arm"]: e for e in result.meta["diagnostics"]["overlap"]}
    assert set(overlap) == {"Y(1,M(0))", "Y(0,M(1))"}
    rel = np.sqrt(np.exp(3 * t2) - np.exp(2 * t2)) / np.exp(t2) / np.sqrt(20_000)
    for entry in overlap.values():
        assert entry["ess_fraction"] == pytest.approx(np.exp(-t2), rel=4 * rel)
        assert entry["warning"] is None
    assert overlap["Y(1,M(0))"]["effects"] == ["NDE_control", "NIE_treated"]


def test_a_gaussian_fit_to_a_bimodal_mediator_is_visibly_miscalibrated(gaussian):
    _, well = gaussian
    bimodal = dj.fit(_data(_frame(bimodal=True)), generators="linear")
    good, bad = well.diagnostics()["M"], bimodal.diagnostics()["M"]
    # Well specified: within the KS test's 99.9% bound (1.95 / sqrt(n)); misspecified: far out.
    assert good["pit_ks"] < 1.95 / np.sqrt(N)
    assert bad["pit_ks"] > 3 * bad["pit_ks_95"]


def test_large_mediator_shifts_are_flagged():
    # t = 3 SDs: the ESS fraction exp(-9) ~ 1e-4 is far below the 0.1 threshold.
    fitted = dj.fit(_data(_frame(bimodal=False, shift=3.0)), generators="linear")
    overlap = fitted.effects(num_draws=2000).meta["diagnostics"]["overlap"]
    assert all(e["ess_fraction"] < diagnostics.ESS_WARNING for e in overlap)
    warning = overlap[0]["warning"]
    assert warning.startswith("Y(1,M(0)): the outcome model is asked about mediator values")
    assert "NDE_control, NIE_treated extrapolate" in warning


def test_marginal_arms_report_why_they_have_no_ratio():
    from dcma_jax.datasets import TWO_MEDIATORS

    data = dj.MediationData.from_dataframe(
        TWO_MEDIATORS.observational(0, 500),
        treatment="A",
        mediators=["M1", "M2"],
        outcome="Y",
        covariates=["X"],
    )
    fitted = dj.fit(data, generators="linear")
    overlap = fitted.effects(effects="interventional", num_draws=500).meta["diagnostics"]
    marginal = [e for e in overlap["overlap"] if ";" in e["arm"]]
    assert marginal and all(e["ess_fraction"] is None for e in marginal)
    assert all(
        e["note"] == "marginal arm: its mediator density has no closed form" for e in marginal
    )
    joint = [e for e in overlap["overlap"] if ";" not in e["arm"]]
    assert joint and all(0 < e["ess_fraction"] <= 1 for e in joint)
