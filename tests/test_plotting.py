"""Tests for dcma_jax.plotting: figures are written as non-empty PNGs, no pyplot state leaks."""

import sys

import numpy as np
import pytest

from dcma_jax.plotting import (
    ARM_FIGURE,
    CURVE_FIGURE,
    plot_arm_distributions,
    plot_quantile_effects,
    save_figures,
    smoothed_density,
)
from dcma_jax.results import MediationResult

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ARMS = ("Y(1,M(1))", "Y(1,M(0))", "Y(0,M(1))", "Y(0,M(0))")
CONTRASTS = ("TE", "NDE_control", "NDE_treated", "NIE_control", "NIE_treated")
LEVELS = np.linspace(0.02, 0.98, 49)


def fake_result(binary=False, bands=True):
    """A result with the shapes analyze() produces, built without running an analysis."""
    rng = np.random.default_rng(0)
    if binary:
        samples = (rng.uniform(size=(4, 3000)) < [[0.6], [0.5], [0.4], [0.3]]).astype(float)
    else:
        samples = rng.normal(size=(4, 3000)) * [[2.5], [2.5], [1.0], [1.0]] + [
            [0.5],
            [0],
            [0.5],
            [0],
        ]
    curves = np.stack([np.linspace(-1, 1, LEVELS.size) * (i + 1) / 5 for i in range(5)])
    return MediationResult.from_arrays(
        rows=[("TE", "mean", None)],
        estimates=np.array([0.5]),
        ci_low=None,
        ci_high=None,
        meta={"outcome": "Y", "ci_level": 0.9},
        arm_names=ARMS,
        arm_samples=samples,
        contrast_names=CONTRASTS,
        curve_levels=LEVELS,
        curves=curves,
        curves_low=curves - 0.2 if bands else None,
        curves_high=curves + 0.2 if bands else None,
    )


def assert_png(path):
    assert path.is_file()
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 5_000  # a real figure, not an empty canvas


def test_save_figures_writes_both_pngs_and_leaves_no_pyplot_figures(tmp_path):
    paths = save_figures(fake_result(), tmp_path / "figs")
    assert [p.name for p in paths] == [ARM_FIGURE, CURVE_FIGURE]
    for path in paths:
        assert_png(path)
    pyplot = sys.modules.get("matplotlib.pyplot")  # plotting never imports it itself
    assert pyplot is None or not pyplot.get_fignums()


@pytest.mark.parametrize("binary", [False, True])
def test_arm_distributions(tmp_path, binary):
    path = plot_arm_distributions(fake_result(binary=binary), tmp_path / "arms.png")
    assert_png(path)


@pytest.mark.parametrize("bands", [False, True])
def test_quantile_effects_with_truth(tmp_path, bands):
    truth = {"NIE_treated": np.linspace(-2, 2, LEVELS.size), "TE": np.zeros(LEVELS.size)}
    path = plot_quantile_effects(fake_result(bands=bands), tmp_path / "q.png", truth_curves=truth)
    assert_png(path)


def test_truth_curve_of_wrong_length_is_refused(tmp_path):
    with pytest.raises(ValueError, match="truth curve 'TE'"):
        plot_quantile_effects(fake_result(), tmp_path / "q.png", truth_curves={"TE": np.zeros(3)})


def test_smoothed_density_matches_gaussian():
    """Binned KDE of a large normal sample is close to the N(0, 1) density (integrates to 1)."""
    x = np.random.default_rng(1).standard_normal(200_000)
    grid = np.linspace(-5, 5, 501)
    density = smoothed_density(x, grid)
    exact = np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi)
    # Silverman's h ~ 0.077 here: smoothing bias ~ h^2/2 * |f''| <= 0.003, MC error ~ 0.002.
    np.testing.assert_allclose(density, exact, atol=0.01)
    assert abs(np.trapezoid(density, grid) - 1.0) < 0.01
