"""Infinitesimal-jackknife errors of CDF and quantile effects against the bootstrap.

With linear-Gaussian generators every arm's law is a shift of every other's, so a quantile
effect equals the mean effect at every level, estimate and influence alike: the quantile rows
reach it only through the smooth CDFs and the implicit-function step ``U_Q = -U_F(Q) / f(Q)``,
which this checks.
"""

import numpy as np
import pytest

import dcma_jax as dj
from dcma_jax.datasets.recovery import RECOVERY_STUDIES

N, B, DRAWS = 600, 150, 50_000
QUANTILES, POINTS = (0.25, 0.75), (0.5, 1.5)
DISTANCES = ("wasserstein", "energy", "ks")
EFFECTS = ["TE", "NDE_control", "NIE_treated"]


def _data(study: str, n: int) -> dj.MediationData:
    frame = RECOVERY_STUDIES[study].observational(11, n)
    return dj.MediationData.from_dataframe(
        frame, treatment="A", mediators=["M"], outcome="Y", covariates=["X"]
    )


@pytest.fixture(scope="module")
def fitted():
    return dj.fit(_data("linear", N), generators="linear", bootstrap=B, seed=4)


@pytest.fixture(scope="module")
def tables(fitted):
    query = {"quantiles": QUANTILES, "cdf_points": POINTS, "distances": DISTANCES}
    ij, u = fitted.influence(**query, draws_per_row=16)
    boot = fitted.effects(num_draws=DRAWS, **query)
    keys = ["effect", "functional", "level"]
    merged = ij.merge(boot.table[[*keys, "estimate", "ci_low", "ci_high"]], on=keys)
    return merged.rename(columns={"estimate_x": "ij", "estimate_y": "plugin"}), u


@pytest.mark.slow  # the B = 150 fixture: 41 s of the suite
def test_influences_sum_to_zero(tables):
    # Scaling every weight changes nothing, so sum_i U_i = 0 -- up to the outcome scale's
    # degrees-of-freedom correction n / (n - p), which the CDF rows (unlike the means) read:
    # it leaves the scale off the likelihood's optimum by a relative p / n (p = 3 here).
    table, u = tables
    assert u.shape == (len(table), N)
    means = (table.functional == "mean").to_numpy()
    size = np.abs(u).sum(axis=1)
    np.testing.assert_allclose(u[means].sum(axis=1), 0.0, atol=1e-5 * size[means].max())
    assert np.all(np.abs(u[~means].sum(axis=1)) <= 3 / N * size[~means])


@pytest.mark.slow  # the B = 150 fixture: 41 s of the suite
def test_quantile_rows_equal_the_mean_rows_in_a_shift_model(tables):
    table, u = tables
    for effect in EFFECTS:
        mean = table.index[(table.effect == effect) & (table.functional == "mean")][0]
        for i in table.index[(table.effect == effect) & (table.functional == "quantile")]:
            assert table.ij[i] == pytest.approx(table.ij[mean], abs=1e-4)
            np.testing.assert_allclose(u[i], u[mean], atol=1e-3 * np.abs(u[mean]).max())


@pytest.mark.slow  # the B = 150 fixture: 41 s of the suite
def test_wasserstein_rows_equal_the_absolute_mean_rows_in_a_shift_model(tables):
    # W1 between two laws that differ by a shift is the shift's size, with its influence.
    table, u = tables
    for effect in EFFECTS:
        mean = table.index[(table.effect == effect) & (table.functional == "mean")][0]
        w1 = table.index[(table.effect == effect) & (table.functional == "wasserstein")][0]
        assert table.ij[w1] == pytest.approx(abs(table.ij[mean]), rel=2e-3)
        assert table.ij_se[w1] == pytest.approx(table.ij_se[mean], rel=2e-3)


@pytest.mark.slow  # the B = 150 fixture
@pytest.mark.parametrize("functional", ["cdf", "energy", "ks"])
def test_ij_errors_agree_with_the_bootstrap(tables, functional):
    # The bootstrap SD (the 95% interval's width / 3.92) from B = 150 replicates has a relative
    # standard error of about 1 / sqrt(2 B) = 5.8%: agreement within 3 of those.
    table, _ = tables
    rows = table[(table.functional == functional) & table.effect.isin(EFFECTS)]
    assert len(rows) == (6 if functional == "cdf" else 3)
    boot_sd = (rows.ci_high - rows.ci_low) / 3.92
    np.testing.assert_allclose(rows.ij_se, boot_sd, rtol=3 / np.sqrt(2 * B))


def test_binary_outcome_mean_errors_agree_with_the_bootstrap():
    # A probit outcome's draws are thresholds: its mean rows must take the outcome model's
    # share of the error from P(Y = 1 | a, m, x), not from the flat draws. (Read off the
    # draws, the TE's IJ SE was 0.0046 against a bootstrap SD of 0.037.) Tolerance as above.
    fitted = dj.fit(_data("binary_outcome", N), generators="linear", bootstrap=B, seed=4)
    ij, _ = fitted.influence(quantiles=(), cdf_points=(), draws_per_row=16)
    boot = fitted.effects(num_draws=DRAWS, quantiles=(), cdf_points=(), distances=())
    rows = ij[ij.effect.isin(EFFECTS)].merge(boot.table, on=["effect", "functional"])
    assert len(rows) == 3
    boot_sd = (rows.ci_high - rows.ci_low) / 3.92
    np.testing.assert_allclose(rows.ij_se, boot_sd, rtol=3 / np.sqrt(2 * B))
    np.testing.assert_allclose(rows.estimate_x, rows.estimate_y, atol=4 * np.sqrt(0.5 / DRAWS))


@pytest.mark.slow  # the B = 150 fixture: 41 s of the suite
def test_smooth_cdf_estimates_equal_the_draws_share(tables):
    # The smooth mixture CDF and the plug-in's share of DRAWS draws below t estimate the same
    # number; the share's Monte Carlo SD is at most sqrt(0.25 / DRAWS) per arm.
    table, _ = tables
    rows = table[table.functional == "cdf"]
    np.testing.assert_allclose(rows.ij, rows.plugin, atol=4 * np.sqrt(2 * 0.25 / DRAWS))


@pytest.mark.parametrize(
    ("study", "query", "message"),
    [
        ("binary_outcome", {"quantiles": (0.5,)}, "binary outcome"),
        ("linear", {"distances": ("hellinger",)}, "unknown distances"),
        ("binary_mediator", {}, "binary mediator 'M'"),
    ],
)
def test_refusals(study, query, message):
    fitted = dj.fit(_data(study, 300), generators="linear", seed=0)
    with pytest.raises(dj.ArgumentError, match=message):
        fitted.influence(**query)
