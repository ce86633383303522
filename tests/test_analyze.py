"""The analysis entry point: determinism, intervals, argument errors, the default study."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import MIXED_QUERY

import dcma_jax as dj
from dcma_jax.datasets.default_study import NUM_ROWS, SEED


@pytest.fixture(scope="module")
def result(mixed_analysis):
    """``dj.analyze`` of the default study: mdn mediator, linear outcome, B = 4, seed 11."""
    return mixed_analysis


def test_same_seed_same_numbers(result, mixed_fitted):
    # A second run with the same seed, its fit made separately (dj.fit, then effects with
    # the fit's seed): the same numbers, and analyze is fit then effects.
    again = mixed_fitted.effects(**MIXED_QUERY)
    pd.testing.assert_frame_equal(result.table, again.table)


def test_table_rows_and_intervals(result):
    table = result.summary()
    assert list(table.columns) == ["effect", "functional", "level", "estimate", "ci_low", "ci_high"]
    effects = ["TE", "NDE_control", "NDE_treated", "NIE_control", "NIE_treated"]
    assert list(table.effect.unique()) == effects + ["PM_control", "PM_treated"]
    per_effect = table[table.effect == "TE"]
    # mean + 5 quantiles + 3 CDF points (observed quartiles) + 3 distances
    assert len(per_effect) == 12
    assert table[["estimate", "ci_low", "ci_high"]].notna().all().all()
    assert (table.ci_low <= table.ci_high).all()
    assert result.meta["bootstrap"] == 4 and len(result.meta["bootstrap_epochs"][0]) == 4


def test_json_shape(result, tmp_path):
    doc = json.loads(result.to_json(tmp_path / "effects.json").read_text())
    assert set(doc) == {"effects", "meta"}
    row = doc["effects"][0]
    assert set(row) == {"effect", "functional", "level", "estimate", "ci_low", "ci_high"}
    assert {r["functional"] for r in doc["effects"]} == {
        "mean",
        "quantile",
        "cdf",
        "wasserstein",
        "energy",
        "ks",
    }
    assert all(r["level"] is None for r in doc["effects"] if r["functional"] == "mean")


def test_no_bootstrap_means_null_intervals(default_data, tmp_path):
    plain = dj.analyze(default_data, generators="linear", num_draws=2000, seed=0)
    doc = plain.to_dict()
    assert all(r["ci_low"] is None and r["ci_high"] is None for r in doc["effects"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_draws=0), "num_draws must be positive"),
        (dict(bootstrap=-1), "bootstrap must be >= 0"),
        (dict(ci_level=1.5), "ci_level must lie in"),
        (dict(quantiles=(0.5, 1.2)), "quantile levels must lie in"),
        (dict(distances=("hellinger",)), "unknown distances"),
        (dict(generators="nonesuch"), "unknown generator 'nonesuch'"),
        (dict(generators={"M": "linear"}), r"no generator given for nodes \['Y'\]"),
        (dict(generators={"M": "linear", "Y": "linear", "Z": "mdn"}), "unknown nodes"),
    ],
)
def test_bad_arguments_are_refused(default_data, kwargs, message):
    # The query's arguments are checked by effects, after the fit: a linear fit is enough.
    with pytest.raises(ValueError, match=message):
        dj.analyze(default_data, **{"generators": "linear", **kwargs})


def test_per_node_generators(result):
    # result was fitted with generators=MIXED, a mapping from node name to family.
    assert result.meta["generators"] == {"M": "MixtureDensityNetwork", "Y": "LinearGaussian"}


def test_shipped_csv_is_the_scm_draw(default_data):
    frame = dj.DEFAULT_STUDY.observational(SEED, NUM_ROWS)
    shipped = dj.datasets.load_default_frame()
    pd.testing.assert_frame_equal(shipped, frame, check_exact=False, atol=1e-6)


def test_default_study_truth_has_zero_mean_nie_but_large_quantile_nie():
    spec = dj.FunctionalSpec(quantiles=(0.1, 0.9), cdf_points=(), distances=("wasserstein",))
    truth = dj.DEFAULT_STUDY.true_effects(dj.natural_effects(1), spec, num_draws=200_000)
    # Mean NIE is exactly 0 in the SCM; with shared draws its Monte Carlo SD is
    # 0.8 * 1.5 * sd(eps_M) / sqrt(n) = 1.2 / sqrt(2e5) ~ 0.0027.
    assert abs(truth[("NIE_treated", "mean", None)]) < 4 * 1.2 / np.sqrt(200_000)
    # Var Y(1, M(a')) = 0.8156 + 0.64 s^2 with s = 1 + 1.5 a': SD 2.19 (a' = 1) vs 1.21 (a' = 0).
    # Y is close to normal, so the 0.9 quantile moves by ~1.28 * 0.99 = 1.27 (and -1.27 at 0.1).
    assert truth[("NIE_treated", "quantile", 0.9)] == pytest.approx(1.27, abs=0.05)
    assert truth[("NIE_treated", "quantile", 0.1)] == pytest.approx(-1.27, abs=0.05)
    # NDE: Y(1, M(0)) - Y(0, M(0)) = 0.5 draw by draw.
    assert truth[("NDE_control", "mean", None)] == pytest.approx(0.5, abs=1e-4)
