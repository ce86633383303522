r"""Named effects: the arms they need and how each functional contrasts them.

Binary treatment, all mediators as one block (natural effects, R ``mediation`` terms in
brackets)::

    TE          = phi(Y(1, M(1))) - phi(Y(0, M(0)))
    NDE_control = phi(Y(1, M(0))) - phi(Y(0, M(0)))      [ADE(control)]
    NDE_treated = phi(Y(1, M(1))) - phi(Y(0, M(1)))      [ADE(treated)]
    NIE_control = phi(Y(0, M(1))) - phi(Y(0, M(0)))      [ACME(control)]
    NIE_treated = phi(Y(1, M(1))) - phi(Y(1, M(0)))      [ACME(treated)]

so ``TE = NDE_control + NIE_treated = NDE_treated + NIE_control`` exactly for any scalar
functional ``phi`` (mean, quantile, CDF). For a distance ``D`` the effect is ``D`` between the two
arms of the contrast; distances do not add up. ``PM_control = NIE_control / TE`` and
``PM_treated = NIE_treated / TE`` are the proportions mediated on the mean scale.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dcma_jax import functionals
from dcma_jax.model import float_dtype

DEFAULT_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


@dataclasses.dataclass(frozen=True)
class Contrast:
    """An effect: ``phi(arm) - phi(reference)`` (or ``D(arm, reference)`` for distances)."""

    name: str
    arm: int
    reference: int


@dataclasses.dataclass(frozen=True)
class Estimands:
    """Arms to simulate and the contrasts between them.

    Attributes:
      arm_names: display names of the arms, e.g. ``"Y(1,M(0))"``.
      arms: ``(n_arms, 1 + k)`` treatment values: outcome first, then each mediator.
      contrasts: the effects.
      ratios: ``(name, numerator, denominator)`` contrast-name triples on the mean scale.
    """

    arm_names: tuple[str, ...]
    arms: tuple[tuple[float, ...], ...]
    contrasts: tuple[Contrast, ...]
    ratios: tuple[tuple[str, str, str], ...] = ()

    def arm_array(self) -> jax.Array:
        return jnp.asarray(self.arms, float_dtype())

    def contrast(self, name: str) -> Contrast:
        return next(c for c in self.contrasts if c.name == name)


def natural_effects(num_mediators: int) -> Estimands:
    """TE, NDE and NIE for a binary treatment with all mediators as one block."""

    def arm(a: int, a_m: int) -> tuple[float, ...]:
        return (float(a),) + (float(a_m),) * num_mediators

    names = ("Y(1,M(1))", "Y(1,M(0))", "Y(0,M(1))", "Y(0,M(0))")
    arms = (arm(1, 1), arm(1, 0), arm(0, 1), arm(0, 0))
    y11, y10, y01, y00 = range(4)
    contrasts = (
        Contrast("TE", y11, y00),
        Contrast("NDE_control", y10, y00),
        Contrast("NDE_treated", y11, y01),
        Contrast("NIE_control", y01, y00),
        Contrast("NIE_treated", y11, y10),
    )
    ratios = (("PM_control", "NIE_control", "TE"), ("PM_treated", "NIE_treated", "TE"))
    return Estimands(names, arms, contrasts, ratios)


@dataclasses.dataclass(frozen=True)
class FunctionalSpec:
    """Which functionals to report.

    Attributes:
      quantiles: quantile levels in (0, 1).
      cdf_points: points ``t`` (original outcome units) at which to report ``P(Y <= t)``.
      distances: names from :data:`functionals.DISTANCES`.
    """

    quantiles: tuple[float, ...] = DEFAULT_QUANTILES
    cdf_points: tuple[float, ...] = ()
    distances: tuple[str, ...] = functionals.DISTANCE_FUNCTIONALS

    def __post_init__(self) -> None:
        if any(not 0.0 < q < 1.0 for q in self.quantiles):
            raise ValueError(f"quantile levels must lie in (0, 1), got {self.quantiles}")
        unknown = [d for d in self.distances if d not in functionals.DISTANCES]
        if unknown:
            raise ValueError(
                f"unknown distances {unknown}; choose from {list(functionals.DISTANCES)}"
            )


class Row(NamedTuple):
    """Label of one reported number: effect name, functional, level (``None`` if none)."""

    effect: str
    functional: str
    level: float | None


def effect_rows(estimands: Estimands, spec: FunctionalSpec) -> list[Row]:
    """Row labels, in the order :func:`effect_values` returns the numbers."""
    rows = []
    for c in estimands.contrasts:
        rows.append(Row(c.name, "mean", None))
        rows += [Row(c.name, "quantile", q) for q in spec.quantiles]
        rows += [Row(c.name, "cdf", t) for t in spec.cdf_points]
        rows += [Row(c.name, d, None) for d in spec.distances]
    rows += [Row(name, "mean", None) for name, _, _ in estimands.ratios]
    return rows


@functools.partial(jax.jit, static_argnames=("estimands", "spec"))
def effect_values(estimands: Estimands, spec: FunctionalSpec, outcome: jax.Array) -> jax.Array:
    """All reported numbers from the arms' outcome samples (original units).

    Args:
      estimands: arms and contrasts.
      spec: functionals to evaluate.
      outcome: ``(n_arms, num_draws)`` samples of Y in original units.

    Returns:
      ``(len(effect_rows(estimands, spec)),)`` values; jit- and vmap-compatible.
    """
    # Sort each arm once; every functional below reads the sorted draws.
    outcome = jnp.sort(outcome, axis=1)
    means = jax.vmap(functionals.mean)(outcome)
    quants = jax.vmap(lambda y: functionals.quantile(y, spec.quantiles, presorted=True))(outcome)
    points = jnp.asarray(spec.cdf_points, outcome.dtype)
    cdfs = jax.vmap(lambda y: functionals.cdf(y, points, presorted=True))(outcome)
    values, mean_effect = [], {}
    for c in estimands.contrasts:
        mean_effect[c.name] = means[c.arm] - means[c.reference]
        values.append(mean_effect[c.name][None])
        values.append(quants[c.arm] - quants[c.reference])
        values.append(cdfs[c.arm] - cdfs[c.reference])
        values += [
            functionals.DISTANCES[d](outcome[c.arm], outcome[c.reference], presorted=True)[None]
            for d in spec.distances
        ]
    values += [(mean_effect[num] / mean_effect[den])[None] for _, num, den in estimands.ratios]
    return jnp.concatenate(values)


def quantile_curves(estimands: Estimands, outcome: jax.Array, levels: np.ndarray) -> jax.Array:
    """Quantile-effect curves ``Q_arm(q) - Q_reference(q)``: ``(n_contrasts, len(levels))``."""
    quants = jax.vmap(lambda y: functionals.quantile(y, levels))(outcome)
    return jnp.stack([quants[c.arm] - quants[c.reference] for c in estimands.contrasts])
