"""Sensitivity analysis against medsens' closed form (Imai, Keele & Yamamoto 2010) and, for a
binary mediator, a numpy port of medsens' algorithm (tests/medsens_reference.py)."""

import json

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from medsens_reference import (
    generalised_residual,
    medsens_binary_mediator,
    medsens_binary_outcome,
    probit,
)
from scipy.optimize import brentq
from scipy.stats import norm, truncnorm

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
    # Same draws, two compiled programs: XLA may reduce a float32 mean of 5000 draws in another
    # order, a few ulp apart (1 ulp, 1.2e-7 relative, in CI under xdist; bit-equal alone). A
    # wrong sensitivity path at rho = 0 would be off by Monte Carlo error, about 1e-2.
    np.testing.assert_allclose(
        result.curve.estimate.to_numpy(), table.estimate.to_numpy(), rtol=1e-6, atol=1e-7
    )


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


@pytest.mark.slow  # suite time (CI about 10 min): 18 s
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


def test_unsupported_generators_are_refused(default_data, mdn_fitted):
    # The session's mdn fit of the default study (conftest): its mdn mediator has a normal
    # score (a cdf), its mdn outcome draws from two noises.
    with pytest.raises(SensitivityError, match="MixtureDensityNetwork draws from 2 noises"):
        mdn_fitted.sensitivity()
    frame = default_data
    columns = {"A": frame.treatment, "M": (frame.mediators[:, 0] > 0).astype(int)}
    both = pd.DataFrame({**columns, "Y": (frame.outcome > 0).astype(int)})
    binary = dj.MediationData.from_dataframe(both, treatment="A", mediators=["M"], outcome="Y")
    with pytest.raises(SensitivityError, match="mediator 'M' and the outcome 'Y' are both binary"):
        dj.fit(binary, generators="linear").sensitivity()
    # A binary mediator with a continuous outcome is accepted (the latent-score reading).
    mixed = pd.DataFrame({**columns, "Y": frame.outcome})
    data = dj.MediationData.from_dataframe(mixed, treatment="A", mediators=["M"], outcome="Y")
    result = dj.fit(data, generators="linear").sensitivity(
        rho_grid=(0.0, 0.5), num_draws=1000, breakpoints=False, **ROWS
    )
    assert result.meta["latent_reading"] == "projection"
    assert np.isfinite(result.curve.estimate).all()


def test_cli_sensitivity_writes_the_documented_json_and_figures(tmp_path, capsys):
    from dcma_jax import cli

    # The default study with 4 bootstrap replicates (bands and CI breakpoints) and 2,000 draws
    # instead of its 50 and 20,000: the same JSON and figures.
    argv = ["sensitivity", "--generator", "linear", "--rho-grid=-0.6,0.6,5", "--quantiles", "0.5"]
    argv += ["--bootstrap", "4", "--draws", "2000"]
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
    assert doc["meta"]["bootstrap"] == 4 and doc["curve"][0]["ci_low"] is not None
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


def _confounded(binary_outcome: bool, seed: int = 0, binary_mediator: bool = False):
    """An SCM with an unmeasured U driving M and Y: the structural noises have correlation
    0.6 * 0.6 / (0.36 + 0.64) = 0.36; the structural NIE is known exactly or by Monte Carlo.
    A binary mediator is its latent above 0.3 (a probit model given A and X)."""
    rng = np.random.default_rng(seed)
    u, x, a = rng.normal(size=N), rng.normal(size=N), rng.integers(0, 2, N)
    m = 0.8 * a + 0.4 * x + 0.6 * u + 0.8 * rng.normal(size=N)
    m = (m > 0.3).astype(float) if binary_mediator else m
    latent = 0.5 * a + 0.7 * m + 0.2 * x + 0.6 * u + 0.8 * rng.normal(size=N)
    y = (latent > 0.3).astype(int) if binary_outcome else latent
    frame = pd.DataFrame({"A": a, "M": m, "Y": y, "X": x})
    data = dj.MediationData.from_dataframe(
        frame, treatment="A", mediators=["M"], outcome="Y", covariates=["X"]
    )
    if binary_mediator:  # 0.7 (P(M(1) = 1) - P(M(0) = 1)), the latent's SD sqrt(1.16)
        return data, 0.7 * (norm.cdf(0.5 / np.sqrt(1.16)) - norm.cdf(-0.3 / np.sqrt(1.16)))
    if not binary_outcome:
        return data, 0.8 * 0.7
    # P(Y(1, M(1)) = 1) - P(Y(1, M(0)) = 1) with shared U and noise, by Monte Carlo.
    big = np.random.default_rng(99)
    u, x, e_m, e_y = (big.normal(size=400_000) for _ in range(4))
    m0, m1 = 0.4 * x + 0.6 * u + 0.8 * e_m, 0.8 + 0.4 * x + 0.6 * u + 0.8 * e_m
    y = [(0.5 + 0.7 * m + 0.2 * x + 0.6 * u + 0.8 * e_y > 0.3).mean() for m in (m1, m0)]
    return data, y[0] - y[1]


@pytest.mark.parametrize(
    "generators, binary, binary_mediator",
    [
        ({"M": "linear", "Y": "linear"}, False, False),
        pytest.param({"M": "mdn", "Y": "linear"}, False, False, marks=pytest.mark.slow),  # 20 s
        ({"M": "linear", "Y": "linear"}, True, False),  # probit outcome: latent threshold
        ({"M": "linear", "Y": "linear"}, False, True),  # probit mediator: latent score
    ],
)
def test_the_curve_at_the_true_rho_recovers_the_structural_effect(
    generators, binary, binary_mediator
):
    # The naive (rho = 0) indirect effect is biased by the confounder; at the true rho = 0.36
    # the curve recovers the structural NIE within 4 bootstrap SDs (sampling error).
    from conftest import FAST

    data, truth = _confounded(binary, binary_mediator=binary_mediator)
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


# --------------------------------------------------------------------------------------------
# Binary mediators against a numpy port of medsens (probit mediator, linear outcome)
# --------------------------------------------------------------------------------------------

N_BINARY = 900
BINARY_GRID = tuple(np.round(np.linspace(-0.9, 0.9, 7), 10))
BINARY_DRAWS = 100_000


def _probit_mediator_scm(n: int, rho: float, seed: int):
    """Probit mediator and linear outcome whose structural noises are correlated ``rho``."""
    rng = np.random.default_rng(seed)
    x, t = rng.normal(size=n), rng.integers(0, 2, n)
    e_m = rng.normal(size=n)
    e_y = rho * e_m + np.sqrt(1 - rho**2) * rng.normal(size=n)
    m = (-0.3 + 0.9 * t + 0.5 * x + e_m > 0).astype(float)
    y = 0.2 + 0.4 * t + 0.8 * m + 0.3 * x + 1.3 * e_y
    # Structural ACME = 0.8 E[Phi(0.6 + 0.5 x) - Phi(-0.3 + 0.5 x)], x ~ N(0, 1).
    truth = 0.8 * (norm.cdf(0.6 / np.sqrt(1.25)) - norm.cdf(-0.3 / np.sqrt(1.25)))
    return x, t, m, y, truth


@pytest.fixture(scope="module")
def binary_study():
    x, t, m, y, _ = _probit_mediator_scm(N_BINARY, 0.4, seed=1)
    frame = pd.DataFrame({"A": t, "M": m, "Y": y, "X": x})
    data = dj.MediationData.from_dataframe(
        frame, treatment="A", mediators=["M"], outcome="Y", covariates=["X"]
    )
    fitted = dj.fit(data, generators="linear", link="probit", seed=0)
    result = fitted.sensitivity(
        rho_grid=BINARY_GRID, num_draws=BINARY_DRAWS, quantiles=(), cdf_points=(), distances=()
    )
    port = medsens_binary_mediator(y, m, t, x, np.asarray(BINARY_GRID), sims=None, weights="ols")
    return (x, t, m, y), fitted, result, port


def _mean_rows(result, effect):
    curve = result.curve
    rows = curve[(curve.effect == effect) & (curve.functional == "mean")]
    return rows.estimate.to_numpy()


def _acme_mc_se(port, gamma):
    # With common random numbers a draw's ACME is gamma*(rho) (M(1) - M(0)), M(1) - M(0) a 0/1
    # indicator with P = mean_i(Phi(mu_1i) - Phi(mu_0i)) over the resampled rows.
    p = float(port.mean_shift[0])
    return np.abs(gamma) * np.sqrt(p * (1 - p) / BINARY_DRAWS)


def test_binary_mediator_curve_is_the_medsens_port(binary_study):
    # dcma's latent-score reading against the port's plug-in with the same reading (unweighted
    # projection, sigma from the fitted residual variance): the direct effect has no Monte Carlo
    # error (the mediator draws are shared), the indirect effect is gamma*(rho) times the
    # simulated share of units whose mediator the treatment switches.
    _, fitted, result, port = binary_study
    assert result.meta["latent_reading"] == "projection"
    gamma = port.gamma[:, 0]
    for effect in ("NIE_treated", "NIE_control"):
        nie = _mean_rows(result, effect)
        tolerance = 4 * _acme_mc_se(port, gamma)
        np.testing.assert_array_less(np.abs(nie - port.acme), tolerance)
        # The same mediator draws at every rho: the ratios are exact (float32).
        np.testing.assert_allclose(nie / nie[3], gamma / gamma[3], rtol=2e-4)
    for effect in ("NDE_treated", "NDE_control"):
        np.testing.assert_allclose(
            _mean_rows(result, effect), port.beta_treat[:, 0], rtol=1e-4, atol=2e-5
        )


def test_binary_mediator_breakpoint_is_the_medsens_port_root(binary_study):
    # The ACME crosses zero where gamma*(rho) = 0, independent of the simulated mediator shift:
    # dcma's Newton root against the port's root (brentq) to float32 precision; medsens' own
    # breakpoint, the grid rho (rho.by = 0.1) of smallest |ACME|, is the nearest grid point.
    data, _, result, _ = binary_study
    x, t, m, y = data

    def gamma(r):
        port = medsens_binary_mediator(y, m, t, x, np.array([r]), sims=None, weights="ols")
        return float(port.gamma[0, 0])

    root = brentq(gamma, 0.0, 0.95, xtol=1e-10)
    found = result.breakpoints
    rho = found[(found.effect == "NIE_treated") & (found.bound == "estimate")].rho.to_numpy()
    assert rho == pytest.approx([root], abs=2e-4)
    grid = np.round(np.arange(-0.9, 0.91, 0.1), 10)
    medsens_grid = medsens_binary_mediator(y, m, t, x, grid, sims=None, weights="ols")
    assert medsens_grid.err_cr == pytest.approx(grid[np.argmin(np.abs(grid - root))])


def test_binary_mediator_curve_matches_medsens_simulation(binary_study):
    # medsens' estimate is the mean of sims = 1000 quasi-Bayesian draws: dcma's plug-in agrees
    # with it within the two Monte Carlo SEs. medsens as published (lm weights w) agrees at
    # rho = 0, where w = 1, and not at rho = +-0.6, where its sigma_3 is too small.
    data, _, result, port = binary_study
    x, t, m, y = data
    nie = _mean_rows(result, "NIE_treated")
    dcma_se = _acme_mc_se(port, port.gamma[:, 0])
    ours = medsens_binary_mediator(y, m, t, x, np.asarray(BINARY_GRID), weights="ols", seed=5)
    np.testing.assert_array_less(np.abs(nie - ours.acme), 4 * np.sqrt(dcma_se**2 + ours.mc_se**2))
    published = medsens_binary_mediator(y, m, t, x, np.array([-0.6, 0.0, 0.6]), seed=6)
    se = np.sqrt(dcma_se[[2, 3, 4]] ** 2 + published.mc_se**2)
    gap = np.abs(nie[[2, 3, 4]] - published.acme)
    assert gap[1] < 4 * se[1]
    assert (gap[[0, 2]] > 10 * se[[0, 2]]).all()


def test_medsens_weights_shrink_sigma_3():
    # The reference's claim in the sensitivity docstring: on data from medsens' own model,
    # lm weights w (as published) underestimate sigma_3 and miss the structural ACME at the
    # true rho, while weights 1 / w (GLS) and dcma's reading recover it. The tolerance is 4
    # posterior SDs of the draws (the estimate's sampling SE).
    for rho in (0.6, 0.8):
        x, t, m, y, truth = _probit_mediator_scm(50_000, rho, seed=11)
        for weights in ("ols", "inverse", "medsens"):
            port = medsens_binary_mediator(
                y, m, t, x, np.array([rho]), sims=40, seed=12, weights=weights
            )
            sd = port.draws.std(ddof=1)
            if weights == "medsens":
                assert port.acme[0] - truth > 8 * sd, (rho, port.acme, truth)
                assert port.sigma.mean() < 0.95 * 1.3
            else:
                assert abs(port.acme[0] - truth) < 4 * sd, (weights, rho, port.acme, truth)
                assert port.sigma.mean() == pytest.approx(1.3, abs=0.02)


def test_binary_mediator_r_squared_is_the_latent_one(binary_study):
    _, fitted, result, port = binary_study
    # medsens: var(X_m b) / (1 + var(X_m b)) with R's n - 1; dcma's weighted variance has n.
    assert result.meta["r2_mediator"] == pytest.approx(port.r2_m, rel=2 / N_BINARY)


def test_latent_moments_and_transport_of_a_binary_generator(binary_study):
    from dcma_jax.generators.base import latent_index, latent_moments, latent_transport
    from dcma_jax.model import node_data

    _, fitted, _, _ = binary_study
    generator, params = fitted.model.generators[0], fitted.params[0]
    x, context = node_data(fitted.model, fitted.data)[0]
    mu = np.asarray(latent_index(generator, params, context), np.float64)
    # A probit GLM's index is its linear predictor.
    kernel = np.asarray(params["params"]["linear"]["kernel"], np.float64)[:, 0]
    bias = float(params["params"]["linear"]["bias"][0])
    np.testing.assert_allclose(mu, np.asarray(context, np.float64) @ kernel + bias, atol=1e-5)
    mean, var = (np.asarray(v, np.float64) for v in latent_moments(generator, params, x, context))
    up = np.asarray(x[:, 0]) > 0.5
    lo, hi = np.where(up, -mu, -np.inf), np.where(up, np.inf, -mu)
    np.testing.assert_allclose(mean, truncnorm.mean(lo, hi), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(var, truncnorm.var(lo, hi), rtol=1e-3, atol=1e-5)
    # Transport: noise that drew x under one context, carried to the other treatment arm.
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.normal(size=(len(mu), 1)), context.dtype)
    p = norm.cdf(mu)
    drawn_x = jnp.asarray((norm.cdf(np.asarray(z[:, 0])) < p)[:, None], context.dtype)
    seen = context.at[:, 0].set(1.0 - context[:, 0])
    same = np.asarray(latent_transport(generator, params, z, drawn_x, context, context))
    np.testing.assert_allclose(same, -np.asarray(z[:, 0]), atol=1e-4)
    moved = np.asarray(latent_transport(generator, params, z, drawn_x, context, seen), np.float64)
    mu_seen = np.asarray(latent_index(generator, params, seen), np.float64)
    upper = np.asarray(drawn_x[:, 0]) > 0.5
    assert np.all(np.where(upper, moved > -mu_seen - 1e-5, moved < -mu_seen + 1e-5))

    # The rank within the interval is kept: P(e < e' | interval) is the same in both contexts.
    def rank(e, m):
        inside = np.where(upper, norm.cdf(e) - norm.cdf(-m), norm.cdf(e))
        return inside / np.where(upper, norm.cdf(m), norm.cdf(-m))

    np.testing.assert_allclose(rank(moved, mu_seen), rank(same, mu), atol=1e-4)


def test_flexible_reading_of_a_binary_mediator(binary_study, monkeypatch):
    # The reading a flow or diffusion outcome gets (rank transport, local variance), applied
    # to the linear outcome: y = mu_obs + s (z + rho / sqrt(1 - rho^2 v) (e' - e_a)), so
    # NIE_treated = gamma_obs E[M(1) - M(0)] - s rho E[sum_m P(m | 0, x) (lambda(m; 0, x)
    # - lambda(m; 1, x)) / sqrt(1 - rho^2 v(m; 1, x))], by numpy over the rows (exact) and
    # the Monte Carlo SE of dcma's draws from a numpy simulation of the same arms.
    import dcma_jax.sensitivity as sens

    data, fitted, _, port = binary_study
    x, t, m, y = data
    monkeypatch.setattr(sens, "_reads_projection", lambda model, coupled: False)
    grid = (0.0, 0.5)
    result = fitted.sensitivity(rho_grid=grid, num_draws=BINARY_DRAWS, breakpoints=False, **ROWS)
    assert result.meta["latent_reading"] == "rank transport"
    nie = _mean_rows(result, "NIE_treated")
    factual = result.curve[(result.curve.effect == "TE") & (result.curve.functional == "mean")]
    assert factual.estimate.iloc[0] == factual.estimate.iloc[1]  # a = a' arms do not move
    b, _ = probit(m, np.column_stack([np.ones_like(x), t, x]))
    mu0, mu1 = b[0] + b[2] * x, b[0] + b[1] + b[2] * x
    ols = sm.OLS(y, np.column_stack([np.ones_like(x), t, m, x])).fit()
    s, g = np.sqrt(ols.scale), ols.params[2]
    shift = norm.cdf(mu1) - norm.cdf(mu0)
    expected, draw_sd = [], []
    rng = np.random.default_rng(3)
    rows = rng.integers(0, len(x), 400_000)
    e = rng.normal(size=rows.size)
    for rho in grid:
        total = 0.0
        for value, p0 in ((1.0, norm.cdf(mu0)), (0.0, norm.cdf(-mu0))):
            lam0 = generalised_residual(value, mu0)
            lam1 = generalised_residual(value, mu1)
            v1 = lam1 * (lam1 + mu1)
            total = total + p0 * (lam0 - lam1) / np.sqrt(1 - rho**2 * v1)
        expected.append(g * shift.mean() - s * rho * total.mean())
        # Per-draw difference Y(1, M(1)) - Y(1, M(0)) for its SD (z cancels).
        a1, a0 = mu1[rows], mu0[rows]
        m1, m0 = (e > -a1).astype(float), (e > -a0).astype(float)
        above = (norm.cdf(e) - norm.cdf(-a0)) / norm.cdf(a0)
        rank = np.where(m0 > 0, above, norm.cdf(e) / norm.cdf(-a0))
        e_a = np.where(
            m0 > 0,
            norm.ppf(norm.cdf(-a1) + rank * norm.cdf(a1)),
            norm.ppf(rank * norm.cdf(-a1)),
        )
        lam1 = generalised_residual(m0, a1)
        k = rho / np.sqrt(1 - rho**2 * lam1 * (lam1 + a1))
        draw_sd.append(np.std(g * (m1 - m0) - s * k * (e - e_a)))
    tolerance = 4 * np.asarray(draw_sd) / np.sqrt(BINARY_DRAWS)
    np.testing.assert_array_less(np.abs(nie - np.asarray(expected)), tolerance)


def test_probit_outcome_curve_is_the_medsens_port():
    # medsens' other non-linear case, a linear mediator with a probit outcome, against the
    # port's plug-in with rho12 as the model implies: d0 = NIE_control and d1 = NIE_treated
    # within 4 Monte Carlo SEs (with common random numbers a draw's indirect effect is a 0/1
    # indicator of probability |ACME|), and the breakpoint is rho12 (medsens' err.cr). The
    # published code's rho12, sigma_2 gamma~ / (1 + sqrt(sigma_2^2 gamma~^2)), breaks earlier.
    rng = np.random.default_rng(4)
    x, t = rng.normal(size=N_BINARY), rng.integers(0, 2, N_BINARY)
    m = 0.8 * t + 0.4 * x + rng.normal(size=N_BINARY)
    y = (0.5 * t + 0.7 * m + 0.2 * x + rng.normal(size=N_BINARY) > 0.3).astype(float)
    frame = pd.DataFrame({"A": t, "M": m, "Y": y, "X": x})
    data = dj.MediationData.from_dataframe(
        frame, treatment="A", mediators=["M"], outcome="Y", covariates=["X"]
    )
    fitted = dj.fit(data, generators="linear", link="probit", seed=0)
    result = fitted.sensitivity(
        rho_grid=BINARY_GRID, num_draws=BINARY_DRAWS, quantiles=(), cdf_points=(), distances=()
    )
    # Threshold draws are flat in rho: no pathwise slope is reported (it would read 0).
    assert result.curve.d_estimate_d_rho.isna().all()
    grid = np.asarray(BINARY_GRID)
    port = medsens_binary_outcome(y, m, t, x, grid, sims=None, rho12="intended")
    for effect, acme in (("NIE_control", port.d0), ("NIE_treated", port.d1)):
        p = np.abs(acme)
        tolerance = 4 * np.sqrt(p * (1 - p) / BINARY_DRAWS)
        np.testing.assert_array_less(np.abs(_mean_rows(result, effect) - acme), tolerance)
    found = result.breakpoints
    rho = found[(found.effect == "NIE_control") & (found.bound == "estimate")].rho.to_numpy()
    assert rho == pytest.approx([port.err_cr], abs=2e-4)
    published = medsens_binary_outcome(y, m, t, x, grid, sims=None)
    assert published.err_cr < port.err_cr - 0.05
