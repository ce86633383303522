r"""Figures of a :class:`~dcma_jax.results.MediationResult`: arm distributions and effect curves.

Figures, written as PNG files:

* :func:`plot_arm_distributions` -- the simulated outcome distribution of every arm
  ``Y(a, M(a'))``: empirical CDFs on the left, smoothed densities on the right;
* :func:`plot_quantile_effects` -- quantile-effect curves
  ``q -> Q_{Y(arm)}(q) - Q_{Y(reference)}(q)`` of TE, NDE and NIE, one panel per effect, with
  bootstrap bands when the result has them and the true curves when they are known;
* :func:`plot_sensitivity` and :func:`plot_sensitivity_r2` -- a
  :class:`~dcma_jax.sensitivity.SensitivityResult` in medsens' style: effects against ``rho``
  with bands and breakpoints, and an effect's contours over the R-squared products.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas, never through
``pyplot``, so no global figure state is created or leaked and no display is needed.

Example:
    >>> paths = save_figures(result, "dcma_output")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dcma_jax.errors import ArgumentError
from dcma_jax.results import MediationResult

__all__ = [
    "ARM_FIGURE",
    "CURVE_FIGURE",
    "SENSITIVITY_FIGURE",
    "SENSITIVITY_R2_FIGURE",
    "plot_arm_distributions",
    "plot_quantile_effects",
    "plot_sensitivity",
    "plot_sensitivity_r2",
    "save_figures",
    "save_sensitivity_figures",
]

#: File names :func:`save_figures` writes.
ARM_FIGURE = "arm_distributions.png"
CURVE_FIGURE = "quantile_effects.png"

DPI = 120
_GRID_POINTS = 512  # density grid
_BINS = 2048  # fine histogram the density is smoothed from


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, format="png")
    return path


def smoothed_density(
    samples: np.ndarray, grid: np.ndarray, bandwidth: float | None = None
) -> np.ndarray:
    r"""Gaussian kernel density estimate on an evenly spaced grid, by binned smoothing.

    The samples are binned on a fine histogram over ``grid``'s range and the histogram is
    convolved with a Gaussian kernel, which approximates the exact KDE
    :math:`\hat f(t) = (n h)^{-1} \sum_i \varphi((t - x_i) / h)` to within the bin width, in
    :math:`O(n + B \log B)` rather than :math:`O(n \cdot |grid|)`. The default bandwidth is
    Silverman's rule, :math:`h = 0.9 \min(\hat\sigma, \mathrm{IQR} / 1.34)\, n^{-1/5}`.

    Args:
      samples: 1-D sample.
      grid: evenly spaced, increasing evaluation points (at least 2).
      bandwidth: kernel standard deviation; Silverman's rule when ``None``.

    Returns:
      The density at ``grid``, same shape.
    """
    x = np.asarray(samples, np.float64).ravel()
    x = x[np.isfinite(x)]
    grid = np.asarray(grid, np.float64)
    if x.size < 2:
        return np.zeros_like(grid)
    if bandwidth is None:
        q75, q25 = np.percentile(x, [75, 25])
        spread = min(np.std(x), (q75 - q25) / 1.34) or np.std(x)
        bandwidth = 0.9 * spread * x.size ** (-0.2)
    if not bandwidth > 0:  # a point mass: nothing to smooth
        return np.zeros_like(grid)
    low, high = grid[0], grid[-1]
    counts, edges = np.histogram(x, bins=_BINS, range=(low, high))
    width = edges[1] - edges[0]
    half = int(np.ceil(4.0 * bandwidth / width))
    offsets = np.arange(-half, half + 1) * width
    kernel = np.exp(-0.5 * (offsets / bandwidth) ** 2)
    kernel /= kernel.sum()
    smooth = np.convolve(counts, kernel, mode="same") if half < _BINS else counts.astype(float)
    centers = 0.5 * (edges[:-1] + edges[1:])
    return np.interp(grid, centers, smooth / (x.size * width))


def _is_binary(samples: np.ndarray) -> bool:
    return bool(np.all((samples == 0.0) | (samples == 1.0)))


def plot_arm_distributions(result: MediationResult, path: str | Path) -> Path:
    """Writes the arms' outcome distributions: CDFs (left) and densities (right).

    A binary outcome is drawn as the CDF steps and a bar of ``P(Y = 1)`` per arm.

    Args:
      result: an analysis result; its ``arm_samples`` (original units) are plotted.
      path: PNG file to write (parent folders are created).

    Returns:
      ``path`` as a :class:`~pathlib.Path`.
    """
    samples = np.asarray(result.arm_samples, np.float64)
    outcome = result.meta.get("outcome", "Y")
    figure = _new_figure(11.0, 4.2)
    ax_cdf, ax_pdf = figure.subplots(1, 2)
    colors = [f"C{i}" for i in range(len(result.arm_names))]
    binary = _is_binary(samples)

    finite = samples[np.isfinite(samples)]
    low, high = np.percentile(finite, [0.2, 99.8]) if finite.size else (0.0, 1.0)
    pad = 0.08 * (high - low or 1.0)
    low, high = low - pad, high + pad

    for name, arm, color in zip(result.arm_names, samples, colors, strict=True):
        values = np.sort(arm[np.isfinite(arm)])
        levels = np.arange(1, values.size + 1) / values.size
        ax_cdf.step(values, levels, where="post", color=color, lw=1.4, label=name)
    ax_cdf.set_xlim(low, high)
    ax_cdf.set_ylim(0.0, 1.0)
    ax_cdf.set_xlabel(outcome)
    ax_cdf.set_ylabel(f"P({outcome} <= t)")
    ax_cdf.set_title("Interventional CDFs")
    ax_cdf.grid(alpha=0.3)
    ax_cdf.legend(loc="lower right", fontsize=9)

    if binary:
        shares = samples.mean(axis=1)
        ax_pdf.bar(result.arm_names, shares, color=colors)
        ax_pdf.set_ylim(0.0, 1.0)
        ax_pdf.set_ylabel(f"P({outcome} = 1)")
        ax_pdf.set_title("Interventional outcome probability")
        ax_pdf.tick_params(axis="x", labelsize=8)
    else:
        grid = np.linspace(low, high, _GRID_POINTS)
        for name, arm, color in zip(result.arm_names, samples, colors, strict=True):
            ax_pdf.plot(grid, smoothed_density(arm, grid), color=color, lw=1.4, label=name)
        ax_pdf.set_xlim(low, high)
        ax_pdf.set_ylim(bottom=0.0)
        ax_pdf.set_xlabel(outcome)
        ax_pdf.set_ylabel("density")
        ax_pdf.set_title("Interventional densities (Gaussian KDE)")
        ax_pdf.legend(loc="upper right", fontsize=9)
    ax_pdf.grid(alpha=0.3)
    draws = samples.shape[1]
    figure.suptitle(f"Simulated outcome distribution of each arm ({draws:,} draws per arm)")
    return _save(figure, path)


def plot_quantile_effects(
    result: MediationResult,
    path: str | Path,
    truth_curves: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Writes the quantile-effect curves of every contrast, one panel per effect.

    Each panel shows ``Q_arm(q) - Q_reference(q)`` against the quantile level ``q``, the
    bootstrap band when ``result.curves_low``/``curves_high`` exist, a zero line, and the true
    curve when ``truth_curves`` has one for that effect. A flat curve is a pure location shift;
    a sloped one means the effect changes the outcome's spread or shape, which a mean effect
    cannot show.

    Args:
      result: an analysis result.
      path: PNG file to write (parent folders are created).
      truth_curves: optional ``{effect name: true curve on result.curve_levels}``.

    Returns:
      ``path`` as a :class:`~pathlib.Path`.

    Raises:
      ValueError: a truth curve whose length differs from ``result.curve_levels``.
    """
    levels = np.asarray(result.curve_levels, np.float64)
    curves = np.asarray(result.curves, np.float64)
    truth_curves = dict(truth_curves or {})
    for name, curve in truth_curves.items():
        if np.shape(curve) != levels.shape:
            raise ArgumentError(
                f"truth curve {name!r} has shape {np.shape(curve)}, expected {levels.shape} "
                f"(one value per curve level)"
            )
    has_band = result.curves_low is not None and result.curves_high is not None
    names = result.contrast_names
    figure = _new_figure(3.0 * len(names) + 1.0, 3.8)
    axes = np.atleast_1d(figure.subplots(1, len(names), sharey=True))
    for i, (ax, name) in enumerate(zip(axes, names, strict=True)):
        ax.axhline(0.0, color="0.3", lw=0.8)
        if has_band:
            ax.fill_between(
                levels,
                np.asarray(result.curves_low)[i],
                np.asarray(result.curves_high)[i],
                color="C0",
                alpha=0.25,
                lw=0,
                label=f"{result.meta.get('ci_level', 0.95):.0%} bootstrap band",
            )
        ax.plot(levels, curves[i], color="C0", lw=1.6, label="estimate")
        if name in truth_curves:
            ax.plot(
                levels, np.asarray(truth_curves[name]), color="k", lw=1.2, ls="--", label="truth"
            )
        ax.set_title(name)
        ax.set_xlabel("quantile level q")
        ax.set_xlim(0.0, 1.0)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"quantile effect on {result.meta.get('outcome', 'Y')}")
    axes[0].legend(loc="best", fontsize=8)
    figure.suptitle("Quantile effects: Q_arm(q) - Q_reference(q)")
    return _save(figure, path)


def save_figures(
    result: MediationResult,
    out_dir: str | Path,
    truth_curves: Mapping[str, np.ndarray] | None = None,
) -> list[Path]:
    """Writes both figures into ``out_dir`` (created if needed) and returns their paths.

    Files: :data:`ARM_FIGURE` and :data:`CURVE_FIGURE`.
    """
    out = Path(out_dir)
    return [
        plot_arm_distributions(result, out / ARM_FIGURE),
        plot_quantile_effects(result, out / CURVE_FIGURE, truth_curves=truth_curves),
    ]


# --------------------------------------------------------------------------------------------
# Sensitivity figures (medsens style)
# --------------------------------------------------------------------------------------------

SENSITIVITY_FIGURE = "sensitivity_rho.png"
SENSITIVITY_R2_FIGURE = "sensitivity_r2.png"


def _mean_rows(result, effect: str):
    curve = result.curve
    rows = curve[(curve.effect == effect) & (curve.functional == "mean")]
    return rows.sort_values("rho")


def plot_sensitivity(result, path: str | Path, effects: tuple[str, ...] | None = None) -> Path:
    """Mean effects against ``rho`` with bootstrap bands, zero line and breakpoints.

    One panel per effect (default: every effect with a mean row, proportions excluded); the
    breakpoint of the estimate is marked, as in R mediation's ``plot.medsens``.
    """
    curve = result.curve
    names = effects or tuple(
        e
        for e in dict.fromkeys(curve.effect)
        if not e.startswith("PM_") and "mean" in set(curve[curve.effect == e].functional)
    )
    figure = _new_figure(3.2 * len(names), 3.0)
    axes = np.atleast_1d(figure.subplots(1, len(names), sharey=True))
    outcome = result.meta.get("outcome", "Y")
    for ax, name in zip(axes, names, strict=True):
        rows = _mean_rows(result, name)
        ax.plot(rows.rho, rows.estimate, color="k", lw=1.5)
        if rows.ci_low.notna().all():
            ax.fill_between(rows.rho, rows.ci_low, rows.ci_high, color="0.8", lw=0)
        ax.axhline(0.0, color="0.4", lw=0.8, ls="--")
        found = result.breakpoints
        found = found[(found.effect == name) & (found.functional == "mean")]
        for rho in found[found.bound == "estimate"].rho:
            ax.axvline(rho, color="C3", lw=0.8)
            ax.annotate(
                f"ρ = {rho:.2f}",
                (rho, 0.0),
                xytext=(3, 3),
                textcoords="offset points",
                fontsize=8,
                color="C3",
            )
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("sensitivity parameter ρ")
    axes[0].set_ylabel(f"mean effect on {outcome}")
    return _save(figure, path)


def plot_sensitivity_r2(result, path: str | Path, effect: str = "NIE_treated") -> Path:
    """The mean ``effect`` as contours over ``(R2*_M, R2*_Y)``, ``rho = sign sqrt(product)``.

    Left panel: the confounder's share of the residual variances (``R2*``); right: of the total
    variances (``R2~``). The sign of ``rho`` is that of the effect's breakpoint (positive when
    there is none), as medsens' ``sign.prod``.
    """
    rows = _mean_rows(result, effect)
    found = result.breakpoints
    found = found[(found.effect == effect) & (found.functional == "mean")]
    sign = float(np.sign(found[found.bound == "estimate"].rho.iloc[0])) if len(found) else 1.0
    sign = sign or 1.0
    top = float(np.max(rows.rho.abs()))
    grid = np.linspace(0.0, 1.0, 201)
    rm, ry = np.meshgrid(grid, grid)
    product = rm * ry
    # Beyond the grid's largest |rho| the curve is unknown: left blank, not extrapolated.
    value = np.where(
        product <= top**2,
        np.interp(sign * np.sqrt(product), rows.rho.to_numpy(), rows.estimate.to_numpy()),
        np.nan,
    )
    meta = result.meta
    figure = _new_figure(7.0, 3.2)
    axes = figure.subplots(1, 2)
    # R2~_M = R2*_M (1 - R2_M), R2~_Y = R2*_Y (1 - R2_Y): shares of the total variances.
    panels = ((1.0, 1.0, "R²*"), (1 - meta["r2_mediator"], 1 - meta["r2_outcome"], "R̃²"))
    for ax, (sx, sy, label) in zip(axes, panels, strict=True):
        contours = ax.contour(rm * sx, ry * sy, value, levels=9, colors="k", linewidths=0.8)
        ax.clabel(contours, fontsize=7)
        ax.contour(rm * sx, ry * sy, value, levels=[0.0], colors="C3", linewidths=1.5)
        ax.set_xlabel(f"{label}_M")
        ax.set_ylabel(f"{label}_Y")
        ax.set_title(f"{effect} (sign of ρ: {'+' if sign > 0 else '-'})", fontsize=10)
    return _save(figure, path)


def save_sensitivity_figures(result, out_dir: str | Path) -> list[Path]:
    """Writes :data:`SENSITIVITY_FIGURE` and :data:`SENSITIVITY_R2_FIGURE` into ``out_dir``."""
    out = Path(out_dir)
    return [
        plot_sensitivity(result, out / SENSITIVITY_FIGURE),
        plot_sensitivity_r2(result, out / SENSITIVITY_R2_FIGURE),
    ]
