"""The one-step estimator (dcma_jax.robust) against closed forms and the true SCMs.

Statistical checks fit several data sets per SCM (fixed seeds) and compare with the truth
computed from the structural equations (``SyntheticStudy.true_effects``, 1e6 shared draws):
the one-step estimate must be unbiased within sampling error, its influence-function standard
error calibrated, and the plug-in's bias on a misspecified model must be visible at the same
sample size (so the test can fail both ways).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy.stats import norm

import dcma_jax as dj
from dcma_jax import robust
from dcma_jax.datasets.recovery import RECOVERY_STUDIES, ROBUSTNESS_STUDIES
from dcma_jax.errors import ArgumentError
from dcma_jax.estimands import FunctionalSpec, natural_effects

ARMS = ("Y(1,M(1))", "Y(1,M(0))", "Y(0,M(1))", "Y(0,M(0))")
#: effect -> (arm, reference) in ARMS.
EFFECTS = {"TE": (0, 3), "NDE_control": (1, 3), "NIE_treated": (0, 1)}
SEEDS = (0, 1, 2, 3)
N = 1500
#: Rows of the functional tests: one size, so that they share compiled programs.
SMALL = 600


def _data(frame):
    return dj.MediationData.from_dataframe(
        frame, treatment="A", mediators=["M"], outcome="Y", covariates=["X"]
    )


def _truths(study, points):
    """True means and CDFs at ``points`` of the four arms' effects, from the SCM."""
    spec = FunctionalSpec((), tuple(points), ())
    return study.true_effects(natural_effects(["M"]), spec)


def _z_scores(name: str, ratios: tuple[str, ...] = ("auto",), link: str = "logit") -> dict:
    """Per effect row, over SEEDS: (one-step - truth) / SE for each density ratio in
    ``ratios`` (same fits), and (plug-in - truth) / SE (the one-step's SE) under "plugin"."""
    study = {**RECOVERY_STUDIES, **ROBUSTNESS_STUDIES}[name]
    points = (1.0,)  # near every SCM's outcome median
    truth = _truths(study, points)
    z = {key: {} for key in (*ratios, "plugin")}
    for seed in SEEDS:
        data = _data(study.observational(200 + seed, N))
        fitted = dj.fit(data, generators="linear", link=link, crossfit=5, seed=seed)
        draws = fitted.simulate(list(ARMS), num_draws=200_000)
        y = [draws.loc[draws.arm == a, "Y"].to_numpy() for a in ARMS]
        plugin = {"mean": [v.mean() for v in y], "cdf": [np.mean(v <= 1.0) for v in y]}
        for ratio in ratios:
            os = fitted.onestep(cdf_points=points, density_ratio=ratio, draws_per_row=200)
            assert os.arm_names == ARMS
            estimates = {
                "mean": (os.mean, os.mean_influence),
                "cdf": (os.cdf[:, 0], os.cdf_influence[:, :, 0]),
            }
            for effect, (i, j) in EFFECTS.items():
                for functional, (est, infl) in estimates.items():
                    se = np.sqrt(np.sum((infl[:, i] - infl[:, j]) ** 2)) / N
                    true = truth[(effect, functional, None if functional == "mean" else 1.0)]
                    key = f"{effect} {functional}"
                    z[ratio].setdefault(key, []).append((est[i] - est[j] - true) / se)
                    if ratio == ratios[0]:
                        pl = plugin[functional][i] - plugin[functional][j]
                        z["plugin"].setdefault(key, []).append((pl - true) / se)
    return z


# Over 4 data sets the mean z has SD 1/2 when the estimator is unbiased and its SE right:
# |mean z| <= 3/2 is a 3-sigma bound per row; mean z^2 (chi^2_4 / 4 under the null) is below
# 4.6 with probability 0.999, so the influence-function SE is not too small.
MEAN_Z = 3.0 / np.sqrt(len(SEEDS))
MEAN_Z2 = 4.6


def _check_unbiased(z: dict[str, list[float]]) -> None:
    for row, values in z.items():
        values = np.asarray(values)
        assert abs(values.mean()) <= MEAN_Z, (row, values)
        assert np.mean(values**2) <= MEAN_Z2, (row, values)


@pytest.fixture(scope="module")
def outcome_misspecified():
    return _z_scores("outcome_misspecified", ("density", "classifier"))


@pytest.mark.slow  # suite time (CI about 10 min): the shared fixture fits 20 s
def test_onestep_is_unbiased_where_the_outcome_model_is_wrong(outcome_misspecified):
    # Y has A x M and M^2 terms the linear outcome model lacks; the mediator model and the
    # logistic propensity are right, so the one-step estimator stays consistent.
    _check_unbiased(outcome_misspecified["density"])


@pytest.mark.slow  # the same fixture
def test_plugin_is_biased_there(outcome_misspecified):
    # The same fits' plug-in misses NDE_control's mean by several SEs (z about +2 to +4 per
    # data set at n = 1500): the SCM does separate the two estimators.
    plugin = np.asarray(outcome_misspecified["plugin"]["NDE_control mean"])
    assert plugin.mean() > MEAN_Z, plugin


@pytest.mark.slow  # the same fixture
def test_classifier_density_ratio_is_unbiased_too(outcome_misspecified):
    # The same fits with the mediator density ratio from the classifier of A on (M, X),
    # which is logistic-linear here: Bayes' rule must give an unbiased estimator as well.
    _check_unbiased(outcome_misspecified["classifier"])


@pytest.mark.slow
def test_onestep_is_unbiased_with_a_binary_mediator():
    # A probit mediator (density ratio from the GLM's mass) and an A x M term the linear
    # outcome model lacks; the probit GLM and the logistic propensity are right.
    scores = _z_scores("binary_mediator", link="probit")
    _check_unbiased(scores["auto"])
    plugin = np.asarray(scores["plugin"]["NIE_treated mean"])
    assert plugin.mean() < -MEAN_Z, plugin


@pytest.mark.slow  # suite time (CI about 10 min): 16 s
def test_onestep_is_unbiased_on_the_linear_scm():
    _check_unbiased(_z_scores("linear")["auto"])


def test_effects_query_reports_onestep_rows_with_influence_intervals():
    study = ROBUSTNESS_STUDIES["outcome_misspecified"]
    fitted = dj.fit(_data(study.observational(7, SMALL)), generators="linear", crossfit=3, seed=3)
    kwargs = {"num_draws": 5_000, "quantiles": (0.5,), "cdf_points": (1.0,), "seed": 5}
    plugin = fitted.effects(**kwargs)
    result = fitted.effects(estimator="onestep", draws_per_row=50, **kwargs)
    table, meta = result.summary(), result.meta
    assert meta["estimator"] == "onestep" and meta["onestep"]["folds"] == 3
    assert meta["intervals"]["mean"] == "wald_influence"
    same = table.functional.isin(["wasserstein", "energy", "ks"])
    # Distances stay plug-in: the same numbers as the plug-in query with the same seed.
    np.testing.assert_array_equal(table.estimate[same], plugin.summary().estimate[same])
    replaced = (~same).to_numpy()
    stored = np.array([np.nan if v is None else v for v in meta["onestep"]["plugin_estimates"]])
    np.testing.assert_allclose(stored[replaced], plugin.summary().estimate[replaced], rtol=1e-6)
    assert np.isnan(stored[~replaced]).all()
    se = np.array([np.nan if s is None else s for s in meta["onestep"]["standard_errors"]])
    means = table.functional.eq("mean").to_numpy()
    z = norm.ppf(0.975)
    np.testing.assert_allclose(table.ci_high[means], table.estimate[means] + z * se[means])
    assert (table.ci_low[replaced] < table.estimate[replaced]).all()
    assert meta["diagnostics"]["positivity"]["warning"] is None
    # PM = NIE / TE by the delta method.
    te, nie, pm = (
        table.set_index(["effect", "functional"]).estimate[(e, "mean")]
        for e in ("TE", "NIE_treated", "PM_treated")
    )
    assert pm == pytest.approx(nie / te)


def test_saved_crossfit_model_gives_the_same_onestep(tmp_path):
    study = ROBUSTNESS_STUDIES["linear"]
    fitted = dj.fit(_data(study.observational(3, SMALL)), generators="linear", crossfit=3, seed=1)
    loaded = dj.load(fitted.save(tmp_path / "model"))
    a = fitted.onestep(cdf_points=(1.0,), draws_per_row=50)
    b = loaded.onestep(cdf_points=(1.0,), draws_per_row=50)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.cdf_influence, b.cdf_influence)


def test_estimates_ignore_the_scale_of_the_weights():
    frame = ROBUSTNESS_STUDIES["linear"].observational(4, SMALL)
    frame["w"] = np.random.default_rng(0).uniform(0.5, 2.0, len(frame))
    out = []
    for factor in (1.0, 1000.0):
        data = dj.MediationData.from_dataframe(
            frame.assign(w=frame.w * factor),
            treatment="A",
            mediators=["M"],
            outcome="Y",
            covariates=["X"],
            weights="w",
        )
        fitted = dj.fit(data, generators="linear", crossfit=3, seed=2)
        out.append(fitted.onestep(draws_per_row=50).mean)
    np.testing.assert_allclose(out[0], out[1], rtol=1e-4)


def test_positivity_warning_names_poor_overlap():
    rng = np.random.default_rng(0)
    frame = ROBUSTNESS_STUDIES["linear"].observational(5, SMALL)
    frame["A"] = (rng.uniform(size=SMALL) < 1 / (1 + np.exp(-5 * frame.X))).astype(int)
    fitted = dj.fit(_data(frame), generators="linear", crossfit=3, seed=0)
    propensity = fitted.onestep(draws_per_row=50).propensity
    diag = robust.positivity(propensity, np.asarray(fitted.data.treatment))
    assert diag["share_beyond_bound"] > 0.05
    assert diag["warning"].startswith("poor overlap")


def test_refusals_are_one_line_argument_errors():
    study = ROBUSTNESS_STUDIES["linear"]
    data = _data(study.observational(6, 300))
    plain = dj.fit(data, generators="linear", seed=0)
    with pytest.raises(ArgumentError, match="fit with crossfit=K"):
        plain.effects(estimator="onestep", num_draws=1000)
    with pytest.raises(ArgumentError, match="estimator must be one of"):
        plain.effects(estimator="aipw", num_draws=1000)
    with pytest.raises(ArgumentError, match="at least 2 folds"):
        dj.fit(data, generators="linear", crossfit=1)
    two = dj.MediationData.from_dataframe(
        RECOVERY_STUDIES["two_mediators"].observational(0, 300),
        treatment="A",
        mediators=["M1", "M2"],
        outcome="Y",
        covariates=["X"],
    )
    crossfitted = dj.fit(two, generators="linear", crossfit=2, seed=0)
    # Interventional arms draw each mediator from its own marginal: not one block.
    with pytest.raises(ArgumentError, match="mediators as one"):
        crossfitted.effects(estimator="onestep", effects="interventional", num_draws=1000)
    frame = study.observational(6, 300)
    frame["A"] = frame.X + np.random.default_rng(1).normal(size=len(frame))
    continuous = dj.MediationData.from_dataframe(
        frame,
        treatment="A",
        mediators=["M"],
        outcome="Y",
        covariates=["X"],
        types={"A": "continuous"},
    )
    with pytest.raises(ArgumentError, match="binary treatment"):
        dj.fit(continuous, generators="linear", crossfit=2)


def test_density_ratio_choice_follows_the_generators():
    data = _data(ROBUSTNESS_STUDIES["linear"].observational(0, 100))
    closed = dj.build_model(data, "linear")
    neural = dj.build_model(data, "mdn")
    without = dj.build_model(data, {"M": "diffusion", "Y": "linear"})
    assert robust._ratio_choice(closed, "auto") == "density"
    assert robust._ratio_choice(neural, "auto") == "classifier"
    assert robust._ratio_choice(neural, "density") == "density"
    assert robust._ratio_choice(without, "auto") == "classifier"
    with pytest.raises(ArgumentError, match="has none"):
        robust._ratio_choice(without, "density")


def test_quantiles_from_a_rearranged_normal_cdf():
    grid = np.linspace(-4, 4, 401)
    noisy = norm.cdf(grid) + 0.002 * np.sin(40 * grid)  # not monotone
    cdf = robust.rearrange(noisy[None])
    assert np.all(np.diff(cdf) >= 0)
    levels = np.array([0.1, 0.5, 0.9])
    got = robust.invert_cdf(grid, cdf, levels, step=False)[0]
    # The perturbation moves F by at most 0.002, so Q by at most 0.002 / phi(Q) (+ the grid).
    tolerance = 0.002 / norm.pdf(norm.ppf(levels)) + grid[1] - grid[0]
    assert np.all(np.abs(got - norm.ppf(levels)) <= tolerance)


# --------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------


class _Captured(Exception):
    pass


def test_cli_flags_reach_fit_and_effects(tmp_path, monkeypatch):
    from dcma_jax import cli
    from dcma_jax.cli import steps

    csv = tmp_path / "d.csv"
    ROBUSTNESS_STUDIES["linear"].observational(0, 200).to_csv(csv, index=False)
    calls = []

    class Fake:
        def __init__(self, kwargs):
            self.kwargs = kwargs

        def effects(self, **kwargs):
            calls.append({**self.kwargs, **kwargs})
            raise _Captured

    monkeypatch.setattr(steps, "fit", lambda data, **kwargs: Fake(kwargs))
    roles = ["--data", str(csv), "--treatment", "A", "--mediators", "M", "--outcome", "Y"]
    out = ["--out", str(tmp_path), "--debug"]
    with pytest.raises(_Captured):
        cli.main(["run", *roles, "--estimator", "onestep", *out])
    with pytest.raises(_Captured):
        cli.main(
            [
                "run",
                *roles,
                "--folds",
                "3",
                "--propensity",
                "mdn",
                "--density-ratio",
                "classifier",
                "--draws-per-row",
                "77",
                *out,
            ]
        )
    assert calls[0]["crossfit"] == 5 and calls[0]["estimator"] == "onestep"
    assert calls[1]["crossfit"] == 3 and calls[1]["propensity"] == "mdn"
    assert calls[1]["estimator"] == "plugin" and calls[1]["density_ratio"] == "classifier"
    assert calls[1]["draws_per_row"] == 77


def test_cli_fit_then_onestep_effects(tmp_path, capsys):
    import json

    from dcma_jax import cli

    csv = tmp_path / "d.csv"
    ROBUSTNESS_STUDIES["outcome_misspecified"].observational(1, SMALL).to_csv(csv, index=False)
    roles = ["--data", str(csv), "--treatment", "A", "--mediators", "M", "--outcome", "Y"]
    roles += ["--covariates", "X"]
    assert cli.main(["run", *roles, "--folds", "1", "--out", str(tmp_path)]) == 2
    assert "at least 2 folds" in capsys.readouterr().err
    model = tmp_path / "model"
    fit = ["fit", *roles, "--generator", "linear", "--folds", "3", "--save", str(model)]
    assert cli.main(fit) == 0
    capsys.readouterr()
    query = ["--estimator", "onestep", "--draws", "5000", "--draws-per-row", "50", "--no-plots"]
    path = tmp_path / "e.json"
    code = cli.main(["effects", "--model", str(model), *query, "--json", str(path)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "one-step estimator, 3-fold cross-fitted" in printed
    assert "Propensity P(A=1|X), out of fold" in printed
    meta = json.loads(path.read_text())["meta"]
    assert meta["estimator"] == "onestep" and meta["crossfit_folds"] == 3


@pytest.mark.slow  # suite time (CI about 10 min): 10 s
def test_bootstrap_of_the_whole_onestep_estimator(tmp_path):
    # Every resample cross-fitted again: percentile intervals whose width matches the
    # influence-function interval's; with B = 30 the bootstrap SD has a relative SE of
    # 1 / sqrt(2 B) = 13%, so the width ratio lies within 1 +- 3 * 0.13.
    study = ROBUSTNESS_STUDIES["outcome_misspecified"]
    data = _data(study.observational(8, SMALL))
    fitted = dj.fit(
        data, generators="linear", crossfit=3, bootstrap=30, crossfit_bootstrap=True, seed=2
    )
    leaves = jax.tree.leaves(fitted.crossfit_replicates.classifier)
    assert all(leaf.shape[:2] == (30, 3) for leaf in leaves)
    kwargs = {"num_draws": 5_000, "quantiles": (0.5,), "cdf_points": (1.0,), "draws_per_row": 50}
    result = fitted.effects(estimator="onestep", distances=(), **kwargs)
    assert result.meta["intervals"]["mean"].startswith("bootstrap_percentile")
    table = result.table
    se = np.array(result.meta["onestep"]["standard_errors"], np.float64)
    rows = table.functional.isin(["mean", "cdf"]).to_numpy() & ~table.effect.str.startswith("PM")
    width = (table.ci_high - table.ci_low).to_numpy()[rows]
    ratio = width / (2 * norm.ppf(0.975) * se[rows])
    assert np.all(np.abs(ratio - 1) <= 3 / np.sqrt(2 * 30)), ratio
    loaded = dj.load(fitted.save(tmp_path / "model")).crossfit_replicates
    for a, b in zip(
        jax.tree.leaves(loaded), jax.tree.leaves(fitted.crossfit_replicates), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ArgumentError, match="crossfit_bootstrap needs"):
        dj.fit(data, generators="linear", crossfit=3, crossfit_bootstrap=True)


def _numpy_onestep(frame, folds):
    """NIE_treated, NDE_control and TE by the cross-fitted one-step estimator, in numpy.

    An independent implementation of the same estimator with the same folds: per fold OLS
    mediator and outcome models (residual variance RSS / (n - p), as LinearGaussian), a
    logistic propensity by Newton steps, the mediator density ratio from the two normal
    densities, and the closed-form outcome regressions eta in place of Monte Carlo.
    """
    a, x, m, y = (frame[c].to_numpy(float) for c in "AXMY")
    phi = {arm: np.empty(len(a)) for arm in ((1, 1), (1, 0), (0, 0))}
    for k in np.unique(folds):
        fit, rows = folds != k, folds == k
        design_m = np.c_[np.ones(fit.sum()), a[fit], x[fit]]
        g, rss = np.linalg.lstsq(design_m, m[fit], rcond=None)[:2]
        sigma2 = rss[0] / (fit.sum() - 3)
        b = np.linalg.lstsq(np.c_[np.ones(fit.sum()), a[fit], m[fit], x[fit]], y[fit])[0]
        z, t = np.c_[np.ones(fit.sum()), x[fit]], np.zeros(2)
        for _ in range(30):
            q = 1 / (1 + np.exp(-z @ t))
            t += np.linalg.solve(z.T @ (z * (q * (1 - q))[:, None]), z.T @ (a[fit] - q))
        ak, xk, mk, yk = a[rows], x[rows], m[rows], y[rows]
        p1 = 1 / (1 + np.exp(-(t[0] + t[1] * xk)))
        for arm in phi:
            out, med = arm
            m_out, m_med = (g[0] + g[1] * v + g[2] * xk for v in (out, med))
            mu = b[0] + b[1] * out + b[2] * mk + b[3] * xk
            eta = b[0] + b[1] * out + b[2] * m_med + b[3] * xk
            ratio = np.exp(((mk - m_out) ** 2 - (mk - m_med) ** 2) / (2 * sigma2))
            pi_out = np.where(out == 1, p1, 1 - p1)
            pi_med = np.where(med == 1, p1, 1 - p1)
            first = (ak == out) / pi_out * ratio * (yk - mu)
            phi[arm][rows] = first + (ak == med) / pi_med * (mu - eta) + eta
    return {
        "TE": phi[(1, 1)].mean() - phi[(0, 0)].mean(),
        "NDE_control": phi[(1, 0)].mean() - phi[(0, 0)].mean(),
        "NIE_treated": phi[(1, 1)].mean() - phi[(1, 0)].mean(),
    }


def test_onestep_equals_an_independent_numpy_implementation():
    # Same data, same folds, closed-form nuisances: the two differ only by dcma's Monte Carlo
    # outcome regressions (R draws a row), whose error in a mean effect is about
    # sd(Y) * rms(weights) / sqrt(n R); 4 of those.
    frame = ROBUSTNESS_STUDIES["outcome_misspecified"].observational(21, SMALL)
    fitted = dj.fit(_data(frame), generators="linear", crossfit=3, seed=5)
    draws = 2000
    os = fitted.onestep(draws_per_row=draws)
    reference = _numpy_onestep(frame, np.asarray(fitted.crossfit.folds))
    weights = 1 / np.minimum(os.propensity, 1 - os.propensity)
    tolerance = 4 * frame.Y.std() * np.sqrt(np.mean((1 + weights) ** 2) / (SMALL * draws))
    for effect, (i, j) in EFFECTS.items():
        assert os.mean[i] - os.mean[j] == pytest.approx(reference[effect], abs=tolerance)


def test_an_exploding_tail_ratio_is_flagged():
    # Log-normal mediator fitted by a normal one: on this data set one row in the right tail
    # gets f(m | 1, x) / f(m | 0, x) ~ 1e4 (true ~ 18) and carries 96% of the arm's weight;
    # the well-specified linear SCM's largest row carries under 3% (n = 600, measured).
    flagged = {}
    for name, seed, n in (("mediator_misspecified", 2, 2000), ("linear", 4, SMALL)):
        data = _data(ROBUSTNESS_STUDIES[name].observational(seed, n))
        fitted = dj.fit(data, generators="linear", crossfit=3, seed=seed)
        entries = robust.weight_overlap(fitted.onestep(draws_per_row=50), natural_effects(["M"]))
        assert [e["arm"] for e in entries] == ["Y(1,M(0))", "Y(0,M(1))"]
        flagged[name] = [e["arm"] for e in entries if e["warning"]]
    assert flagged == {"mediator_misspecified": ["Y(0,M(1))"], "linear": []}
