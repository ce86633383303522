"""Sensitivity analysis against medsens' closed form (Imai, Keele & Yamamoto 2010)."""

import json

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import dcma_jax as dj
from dcma_jax.sensitivity import SensitivityError, newton_root

N = 2000
GRID = (-0.6, -0.3, 0.0, 0.3, 0.6)
ROWS = dict(quantiles=(0.5,), cdf_points=(1.0,), distances=())  # few rows: cheap curves


@pytest.fixture(scope="module")
def study():
    rng = np.random.default_rng(0)
    x = rng.normal(size=N)
    a = rng.integers(0, 2, N)
    m = 0.8 * a + 0.4 * x + rng.normal(size=N)
    y = 0.5 * a + 0.7 * m + 0.2 * x + rng.normal(size=N)
    frame = pd.DataFrame({"A": a, "M": m, "Y": y, "X": x})
    data = dj.MediationData.from_dataframe(
        frame, treatment="A", mediators=["M"], outcome="Y", covariates=["X"]
    )
    mediator = sm.OLS(m, sm.add_constant(np.c_[a, x])).fit()
    outcome = sm.OLS(y, sm.add_constant(np.c_[a, m, x])).fit()
    total = sm.OLS(y, sm.add_constant(np.c_[a, x])).fit()
    ols = {
        "b2": mediator.params[1],  # A -> M
        "s_m": np.sqrt(mediator.scale),
        "d": outcome.params[2],  # M -> Y
        "s_y": np.sqrt(outcome.scale),
        "rt": np.corrcoef(mediator.resid, total.resid)[0, 1],
    }
    return data, dj.fit(data, generators="linear", seed=2), ols


def _rows(curve, effect, functional="mean"):
    rows = curve[(curve.effect == effect) & (curve.functional == functional)]
    return rows.rho.to_numpy(), rows.estimate.to_numpy(), rows.d_estimate_d_rho.to_numpy()


def test_acme_curve_is_medsens_closed_form(study):
    # ACME(rho) = b2 d - s_y rho / sqrt(1 - rho^2) * b2 / s_m, the medsens closed form written
    # with the fitted models' own coefficients and residual SDs (statsmodels). With common random
    # numbers the shift is the same for every draw, so the curve is exact up to float32 rounding.
    _, fitted, ols = study
    result = fitted.sensitivity(rho_grid=GRID, breakpoints=False, **ROWS)
    rho, acme, slope = _rows(result.curve, "NIE_treated")
    closed = ols["b2"] * ols["d"] - ols["s_y"] * rho / np.sqrt(1 - rho**2) * ols["b2"] / ols["s_m"]
    np.testing.assert_allclose(acme, closed, rtol=1e-5, atol=1e-5)
    # d ACME / d rho by jax.jvp against the closed form's derivative.
    d_closed = -ols["s_y"] * ols["b2"] / ols["s_m"] / (1 - rho**2) ** 1.5
    np.testing.assert_allclose(slope, d_closed, rtol=1e-4)
    # The total effect is identified: it does not move with rho.
    _, te, te_slope = _rows(result.curve, "TE")
    np.testing.assert_allclose(te, te[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(te_slope, 0.0, atol=1e-6)


def test_rho_zero_is_the_effects_query(study):
    _, fitted, _ = study
    result = fitted.sensitivity(rho_grid=(0.0,), breakpoints=False, num_draws=5000, **ROWS)
    table = fitted.effects(num_draws=5000, **ROWS).table
    np.testing.assert_allclose(result.curve.estimate.to_numpy(), table.estimate.to_numpy())


def test_breakpoint_is_the_residual_correlation(study):
    # The ACME crosses zero where rho / sqrt(1 - rho^2) = d s_m / s_y; in medsens' terms at
    # rho = rt, the correlation of the residuals of M ~ A + X and Y ~ A + X (equal up to the
    # models' degrees-of-freedom corrections, O(p / n)).
    _, fitted, ols = study
    result = fitted.sensitivity(rho_grid=np.linspace(-0.9, 0.9, 7), **ROWS)
    found = result.breakpoints
    acme = found[(found.effect == "NIE_treated") & (found.functional == "mean")]
    (rho,) = acme.rho.to_numpy()
    t = ols["d"] * ols["s_m"] / ols["s_y"]
    assert rho == pytest.approx(t / np.sqrt(1 + t**2), abs=1e-5)
    assert rho == pytest.approx(ols["rt"], abs=4 / N)
    row = acme.iloc[0]
    assert row.r2_star_product == pytest.approx(rho**2)
    r2 = (1 - result.meta["r2_mediator"]) * (1 - result.meta["r2_outcome"])
    assert row.r2_tilde_product == pytest.approx(rho**2 * r2)
    assert set(found.bound) == {"estimate"}  # no bootstrap: no CI bounds


def test_r_squared_of_linear_models_is_close_to_ols(study):
    data, fitted, _ = study
    result = fitted.sensitivity(rho_grid=(0.0,), breakpoints=False, **ROWS)
    m, y = data.mediators[:, 0], data.outcome
    x = np.c_[data.treatment, data.covariates]
    r2_m = sm.OLS(m, sm.add_constant(x)).fit().rsquared
    r2_y = sm.OLS(y, sm.add_constant(np.c_[x, m])).fit().rsquared
    # 1 - sigma^2 / Var: sigma^2 has the (n - p) correction and 256 draws per row.
    assert result.meta["r2_mediator"] == pytest.approx(r2_m, abs=0.01)
    assert result.meta["r2_outcome"] == pytest.approx(r2_y, abs=0.01)


def test_bands_and_ci_breakpoints_from_the_stored_replicates(study):
    data, _, ols = study
    fitted = dj.fit(data, generators="linear", bootstrap=8, seed=2)
    result = fitted.sensitivity(
        rho_grid=np.linspace(-0.9, 0.9, 7), quantiles=(), cdf_points=(), distances=()
    )
    curve = result.curve
    acme = curve[(curve.effect == "NIE_treated") & (curve.functional == "mean")]
    assert (acme.ci_low <= acme.estimate).all() and (acme.estimate <= acme.ci_high).all()
    found = result.breakpoints
    acme_found = found[found.effect == "NIE_treated"].set_index("bound").rho
    # The curve decreases in rho: the upper bound crosses zero after the estimate, the lower
    # bound before it.
    assert acme_found["ci_low"] < acme_found["estimate"] < acme_found["ci_high"]


def test_newton_root_finds_a_root_inside_the_bracket():
    calls = []

    def f(x):
        calls.append(x)
        return np.tanh(3 * x) - 0.4, 3 / np.cosh(3 * x) ** 2

    root = newton_root(f, -0.9, 0.9, f(-0.9)[0], f(0.9)[0])
    assert root == pytest.approx(np.arctanh(0.4) / 3, abs=1e-7)
    assert len(calls) < 12  # Newton, not bisection


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(rho_grid=()), "the rho grid is empty"),
        (dict(rho_grid=(0.0, 1.0)), "rho must lie strictly between -1 and 1"),
        (dict(mediator="Z"), "mediator 'Z' is not one of"),
    ],
)
def test_bad_arguments_are_refused(study, kwargs, message):
    _, fitted, _ = study
    with pytest.raises(SensitivityError, match=message):
        fitted.sensitivity(**kwargs)


def test_unsupported_generators_are_refused(default_data):
    fitted = dj.fit(
        default_data, generators={"M": "linear", "Y": "mdn"}, config=dj.TrainConfig(max_epochs=1)
    )
    with pytest.raises(SensitivityError, match="MixtureDensityNetwork draws from 2 noises"):
        fitted.sensitivity()
    frame = default_data
    binary = dj.MediationData.from_dataframe(
        pd.DataFrame(
            {"A": frame.treatment, "M": (frame.mediators[:, 0] > 0).astype(int), "Y": frame.outcome}
        ),
        treatment="A",
        mediators=["M"],
        outcome="Y",
    )
    with pytest.raises(SensitivityError, match="mediator 'M' is binary"):
        dj.fit(binary, generators="linear").sensitivity()


def test_cli_sensitivity_writes_the_documented_json_and_figures(tmp_path, capsys):
    from dcma_jax import cli

    argv = ["sensitivity", "--generator", "linear", "--rho-grid=-0.6,0.6,5", "--quantiles", "0.5"]
    assert cli.main([*argv, "--out", str(tmp_path)]) == 0
    stdout = capsys.readouterr().out
    assert "mean effects by rho" in stdout and "NIE_treated" in stdout
    doc = json.loads((tmp_path / "sensitivity.json").read_text())
    assert set(doc) == {"curve", "breakpoints", "meta"}
    assert set(doc["curve"][0]) == {
        "rho", "r2_star_product", "r2_tilde_product", "effect", "functional", "level",
        "estimate", "ci_low", "ci_high", "d_estimate_d_rho",
    }  # fmt: skip
    assert sorted({row["rho"] for row in doc["curve"]}) == [-0.6, -0.3, 0.0, 0.3, 0.6]
    for name in ("sensitivity_rho.png", "sensitivity_r2.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--rho-grid=-1,1,5"], "--rho-grid: rho must lie strictly between -1 and 1"),
        (["--rho-grid=0,0.5"], "--rho-grid: expected START,STOP,NUM"),
        (["--model", "m", "--data", "x.csv"], "--model reads a saved model"),
    ],
)
def test_cli_sensitivity_errors_are_one_line(argv, message, capsys):
    from dcma_jax import cli

    assert cli.main(["sensitivity", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def _confounded(binary_outcome: bool, seed: int = 0):
    """An SCM with an unmeasured U driving M and Y: the structural noises have correlation
    0.6 * 0.6 / (0.36 + 0.64) = 0.36; the structural NIE is known exactly or by Monte Carlo."""
    rng = np.random.default_rng(seed)
    u, x, a = rng.normal(size=N), rng.normal(size=N), rng.integers(0, 2, N)
    m = 0.8 * a + 0.4 * x + 0.6 * u + 0.8 * rng.normal(size=N)
    latent = 0.5 * a + 0.7 * m + 0.2 * x + 0.6 * u + 0.8 * rng.normal(size=N)
    y = (latent > 0.3).astype(int) if binary_outcome else latent
    frame = pd.DataFrame({"A": a, "M": m, "Y": y, "X": x})
    data = dj.MediationData.from_dataframe(
        frame, treatment="A", mediators=["M"], outcome="Y", covariates=["X"]
    )
    if not binary_outcome:
        return data, 0.8 * 0.7
    # P(Y(1, M(1)) = 1) - P(Y(1, M(0)) = 1) with shared U and noise, by Monte Carlo.
    big = np.random.default_rng(99)
    u, x, e_m, e_y = (big.normal(size=400_000) for _ in range(4))
    m0, m1 = 0.4 * x + 0.6 * u + 0.8 * e_m, 0.8 + 0.4 * x + 0.6 * u + 0.8 * e_m
    y = [(0.5 + 0.7 * m + 0.2 * x + 0.6 * u + 0.8 * e_y > 0.3).mean() for m in (m1, m0)]
    return data, y[0] - y[1]


@pytest.mark.parametrize(
    "generators, binary",
    [
        ({"M": "linear", "Y": "linear"}, False),
        ({"M": "mdn", "Y": "linear"}, False),
        ({"M": "linear", "Y": "linear"}, True),  # probit outcome: latent threshold
    ],
)
def test_the_curve_at_the_true_rho_recovers_the_structural_effect(generators, binary):
    # The naive (rho = 0) indirect effect is biased by the confounder; at the true rho = 0.36
    # the curve recovers the structural NIE within 4 bootstrap SDs (sampling error).
    from conftest import FAST

    data, truth = _confounded(binary)
    fitted = dj.fit(data, generators=generators, link="probit", bootstrap=20, config=FAST)
    result = fitted.sensitivity(
        rho_grid=(0.0, 0.36), quantiles=(), cdf_points=(), distances=(), breakpoints=False
    )
    acme = result.curve[
        (result.curve.effect == "NIE_treated") & (result.curve.functional == "mean")
    ]
    naive, corrected = acme.estimate.to_numpy()
    sd = (acme.ci_high.to_numpy()[1] - acme.ci_low.to_numpy()[1]) / (2 * 1.96)
    assert abs(corrected - truth) < 4 * sd, (corrected, truth, sd)
    assert abs(naive - truth) > 4 * sd  # the confounder's bias is real


def test_with_two_mediators_rho_couples_the_chosen_mediator_only():
    # Sequential linear mediators M1 -> M2. Coupling M2 with Y, the arm Y(1, M(0)) gets the
    # outcome-score shift rho / sqrt(1 - rho^2) * (mu2(0, m1) - mu2(1, m1)) / s2 = -t b2 / s2,
    # b2 the A coefficient of M2 ~ A + M1 + X: NIE_treated moves by -s_y t b2 / s2, with s_y
    # the outcome's residual SD (statsmodels). Coupling M1 instead moves it by -s_y t b1 / s1.
    from dcma_jax.datasets import TWO_MEDIATORS

    frame = TWO_MEDIATORS.observational(0, N)
    data = dj.MediationData.from_dataframe(
        frame, treatment="A", mediators=["M1", "M2"], outcome="Y", covariates=["X"]
    )
    fitted = dj.fit(data, generators="linear")
    a, x, m1, m2, y = (frame[c].to_numpy(float) for c in ("A", "X", "M1", "M2", "Y"))
    fit_m1 = sm.OLS(m1, sm.add_constant(np.c_[a, x])).fit()
    fit_m2 = sm.OLS(m2, sm.add_constant(np.c_[a, m1, x])).fit()
    s_y = np.sqrt(sm.OLS(y, sm.add_constant(np.c_[a, m1, m2, x])).fit().scale)
    t = 0.4 / np.sqrt(1 - 0.4**2)
    for mediator, fit in (("M2", fit_m2), ("M1", fit_m1)):
        result = fitted.sensitivity(
            rho_grid=(0.0, 0.4), mediator=mediator, breakpoints=False, **ROWS
        )
        assert result.meta["coupled_mediator"] == mediator
        _, nie, _ = _rows(result.curve, "NIE_treated")
        expected = -s_y * t * fit.params[1] / np.sqrt(fit.scale)
        assert nie[1] - nie[0] == pytest.approx(expected, rel=1e-4), mediator
