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
arms of the contrast; distances do not add up (how they are estimated from the draws:
:func:`effect_values`). ``PM_control = NIE_control / TE`` and
``PM_treated = NIE_treated / TE`` are the proportions mediated on the mean scale.

Several mediators, interventional effects (Vansteelandt & Daniel 2017; Nguyen et al. 2021), with
``G12(a')`` the mediators drawn jointly under ``a'`` and ``G_j(a_j)`` mediator ``j`` drawn from its
own interventional distribution given ``x`` (see :mod:`dcma_jax.simulate`)::

    TE             = phi(Y(1; G12(1))) - phi(Y(0; G12(0)))
    IDE            = phi(Y(1; G12(0))) - phi(Y(0; G12(0)))
    IIE_<Mj>       = phi(Y(1; G_1(1)..G_j(1), G_{j+1}(0)..G_k(0)))
                   - phi(Y(1; G_1(1)..G_{j-1}(1), G_j(0)..G_k(0)))
    IIE_dependence = [phi(Y(1; G12(1))) - phi(Y(1; G12(0)))]
                   - [phi(Y(1; G_1(1)..G_k(1))) - phi(Y(1; G_1(0)..G_k(0)))]

so ``TE = IDE + sum_j IIE_<Mj> + IIE_dependence`` exactly for every scalar functional (the sum
telescopes). ``IIE_dependence`` is a difference of differences: it is reported for scalar
functionals only, not for distances.

Natural path-specific effects: :func:`path_specific_effects` (parsed and checked by
:mod:`dcma_jax.paths`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dcma_jax import functionals
from dcma_jax.arms import Arm
from dcma_jax.errors import ArgumentError

DEFAULT_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


@dataclasses.dataclass(frozen=True)
class Contrast:
    """An effect: ``phi(arm) - phi(reference)`` (or ``D(arm, reference)`` for distances)."""

    name: str
    arm: int
    reference: int


@dataclasses.dataclass(frozen=True)
class Combination:
    """A linear combination ``sum_i w_i phi(arm_i)`` of arms, for scalar functionals only."""

    name: str
    terms: tuple[tuple[float, int], ...]


@dataclasses.dataclass(frozen=True)
class EffectLayout:
    """The contrasts between arms, without the arms: the static part of a compiled query.

    Estimands that differ only in their arms' treatment values share one layout, so they share
    one compilation (the arms' codes are traced, see :class:`dcma_jax.arms.Arms`).
    """

    num_arms: int
    contrasts: tuple[Contrast, ...]
    ratios: tuple[tuple[str, str, str], ...] = ()
    combinations: tuple[Combination, ...] = ()

    def __post_init__(self) -> None:
        used = [i for c in self.contrasts for i in (c.arm, c.reference)]
        used += [i for m in self.combinations for _, i in m.terms]
        if any(not 0 <= i < self.num_arms for i in used):
            raise ArgumentError(f"contrasts refer to arms outside 0..{self.num_arms - 1}")
        names = {c.name for c in self.contrasts}
        missing = {n for _, a, b in self.ratios for n in (a, b)} - names
        if missing:
            raise ArgumentError(f"ratios refer to unknown contrasts {sorted(missing)}")


@dataclasses.dataclass(frozen=True)
class Estimands:
    """Arms to simulate and the contrasts between them.

    Attributes:
      arms: the arms (:class:`~dcma_jax.arms.Arm`), each named by its expression.
      layout: the contrasts, ratios and combinations over the arms' indices.
    """

    arms: tuple[Arm, ...]
    layout: EffectLayout

    def __post_init__(self) -> None:
        if len(self.arms) != self.layout.num_arms:
            raise ArgumentError(f"layout expects {self.layout.num_arms} arms, got {len(self.arms)}")

    @property
    def arm_names(self) -> tuple[str, ...]:
        return tuple(a.expression for a in self.arms)

    @property
    def contrasts(self) -> tuple[Contrast, ...]:
        return self.layout.contrasts

    def arms_json(self) -> dict:
        return {a.expression: a.to_json() for a in self.arms}


def _fmt_value(v: float) -> str:
    return f"{v:g}"


def _mediator_names(mediators: int | Sequence[str]) -> list[str]:
    if isinstance(mediators, int):
        return ["M"] if mediators == 1 else [f"M{j + 1}" for j in range(mediators)]
    return list(mediators)


def _joint_name(outcome: str, mediator_value: str, names: Sequence[str]) -> str:
    """``Y(a,M1(a'),...)``: every mediator under one value (see :func:`arms.render_joint`)."""
    return f"Y({outcome}," + ",".join(f"{n}({mediator_value})" for n in names) + ")"


def natural_effects(
    mediators: int | Sequence[str],
    treated: float = 1.0,
    control: float = 0.0,
    labels: tuple[str, str] | None = None,
) -> Estimands:
    """TE, NDE and NIE with all mediators as one block.

    Args:
      mediators: the mediator names (or their number ``k``: names ``M`` or ``M1..Mk``).
      treated: the treatment code of the treated arms (default 1).
      control: the treatment code of the control arms (default 0).
      labels: display values of ``(treated, control)`` in arm names (default the codes).
    """
    names = _mediator_names(mediators)
    k = len(names)
    t, c = labels or (_fmt_value(treated), _fmt_value(control))
    on, off = (treated, t), (control, c)
    arms = tuple(
        Arm.joint(_joint_name(a[1], m[1], names), a[0], (m[0],) * k)
        for a, m in ((on, on), (on, off), (off, on), (off, off))
    )
    y11, y10, y01, y00 = range(4)
    contrasts = (
        Contrast("TE", y11, y00),
        Contrast("NDE_control", y10, y00),
        Contrast("NDE_treated", y11, y01),
        Contrast("NIE_control", y01, y00),
        Contrast("NIE_treated", y11, y10),
    )
    ratios = (("PM_control", "NIE_control", "TE"), ("PM_treated", "NIE_treated", "TE"))
    return Estimands(arms, EffectLayout(4, contrasts, ratios))


def interventional_effects(
    mediators: int | Sequence[str],
    treated: float = 1.0,
    control: float = 0.0,
    labels: tuple[str, str] | None = None,
) -> Estimands:
    """TE, IDE, IIE per mediator and IIE_dependence (see the module docstring).

    Arms: three joint arms ``Y(1; G12(1))``, ``Y(1; G12(0))``, ``Y(0; G12(0))`` (named as the
    nested counterfactuals with the same distribution, ``Y(1,M1(1),M2(1))``...) and ``k + 1``
    marginal arms ``Y(1;G_M1(1),..,G_Mi(1),G_Mi+1(0),..)``, ``i = 0..k``, switching the
    mediators to treated one at a time in causal order.
    """
    names = _mediator_names(mediators)
    k = len(names)
    t, c = labels or (_fmt_value(treated), _fmt_value(control))
    arms = [
        Arm.joint(_joint_name(t, t, names), treated, (treated,) * k),
        Arm.joint(_joint_name(t, c, names), treated, (control,) * k),
        Arm.joint(_joint_name(c, c, names), control, (control,) * k),
    ]
    for i in range(k + 1):
        shown = [t] * i + [c] * (k - i)
        expression = (
            f"Y({t};" + ",".join(f"G_{n}({v})" for n, v in zip(names, shown, strict=True)) + ")"
        )
        arms.append(Arm.marginal(expression, treated, (treated,) * i + (control,) * (k - i)))
    j11, j10, j00 = 0, 1, 2
    marg = [3 + i for i in range(k + 1)]
    contrasts = [Contrast("TE", j11, j00), Contrast("IDE", j10, j00)]
    contrasts += [Contrast(f"IIE_{n}", marg[i + 1], marg[i]) for i, n in enumerate(names)]
    dependence = Combination(
        "IIE_dependence", ((1.0, j11), (-1.0, j10), (-1.0, marg[k]), (1.0, marg[0]))
    )
    layout = EffectLayout(len(arms), tuple(contrasts), (), (dependence,))
    return Estimands(tuple(arms), layout)


def path_specific_effects(expressions: Sequence[Arm], reference: Arm) -> Estimands:
    """Contrasts of identified nested counterfactuals against a reference one.

    Args:
      expressions: arms from :func:`dcma_jax.arms.parse_arms` (identified, in codes).
      reference: the reference arm.

    Effects are named ``PSE[<expression>]``: ``phi(expression) - phi(reference)``.
    """
    arms = (*expressions, reference)
    ref = len(arms) - 1
    contrasts = tuple(Contrast(f"PSE[{a.expression}]", i, ref) for i, a in enumerate(expressions))
    return Estimands(arms, EffectLayout(len(arms), contrasts))


def concatenate(parts: Sequence[Estimands], suffixes: Sequence[str]) -> Estimands:
    """Several estimand sets simulated together; effect names get ``suffixes``.

    An arm whose expression repeats an earlier one is renamed with the part's suffix, so
    every arm keeps a unique name.
    """
    arms, contrasts, ratios, combos = [], [], [], []
    for part, suffix in zip(parts, suffixes, strict=True):
        off = len(arms)
        names = {a.expression for a in arms}
        arms += [
            dataclasses.replace(a, expression=a.expression + suffix) if a.expression in names else a
            for a in part.arms
        ]
        layout = part.layout
        contrasts += [
            Contrast(c.name + suffix, c.arm + off, c.reference + off) for c in layout.contrasts
        ]
        ratios += [(r + suffix, a + suffix, b + suffix) for r, a, b in layout.ratios]
        combos += [
            Combination(m.name + suffix, tuple((w, i + off) for w, i in m.terms))
            for m in layout.combinations
        ]
    layout = EffectLayout(len(arms), tuple(contrasts), tuple(ratios), tuple(combos))
    return Estimands(tuple(arms), layout)


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
            raise ArgumentError(f"quantile levels must lie in (0, 1), got {self.quantiles}")
        unknown = [d for d in self.distances if d not in functionals.DISTANCES]
        if unknown:
            raise ArgumentError(
                f"unknown distances {unknown}; choose from {list(functionals.DISTANCES)}"
            )


class Row(NamedTuple):
    """Label of one reported number: effect name, functional, level (``None`` if none)."""

    effect: str
    functional: str
    level: float | None


def effect_rows(layout: EffectLayout, spec: FunctionalSpec) -> list[Row]:
    """Row labels, in the order :func:`effect_values` returns the numbers."""
    rows = []
    for c in layout.contrasts:
        rows.append(Row(c.name, "mean", None))
        rows += [Row(c.name, "quantile", q) for q in spec.quantiles]
        rows += [Row(c.name, "cdf", t) for t in spec.cdf_points]
        rows += [Row(c.name, d, None) for d in spec.distances]
    rows += [Row(name, "mean", None) for name, _, _ in layout.ratios]
    for m in layout.combinations:
        rows.append(Row(m.name, "mean", None))
        rows += [Row(m.name, "quantile", q) for q in spec.quantiles]
        rows += [Row(m.name, "cdf", t) for t in spec.cdf_points]
    return rows


def count_ones(draws: jax.Array) -> jax.Array:
    """Each sample's number of ones along the last axis, in int32.

    int32, not float32: a float32 sum of ones is exact only up to 2^24 draws. Count each arm
    once and derive every functional from the counts: XLA:CPU fused a separate integer
    reduction per contrast with the simulation feeding it and re-ran the simulation for each
    (the framing study's 1,000 replicates took 3.4 s that way, 1.6 s counted once).
    """
    return jnp.sum(draws.astype(jnp.int32), axis=-1)


def sort_draws(draws: jax.Array, binary: bool = False) -> jax.Array:
    """Each arm's draws sorted along the last axis, by :func:`functionals.sort`.

    For a 0/1 outcome (``binary``) the sorted draws are laid out from each arm's count of ones
    instead, in ``O(n)``: the same values.
    """
    if not binary:
        return functionals.sort(draws)
    return _sorted_binary(count_ones(draws), draws.shape[-1], draws.dtype)


def _sorted_binary(ones: jax.Array, n: int, dtype: jnp.dtype) -> jax.Array:
    """Sorted 0/1 samples of size ``n`` with ``ones`` ones each: zeros first, then ones."""
    return (jnp.arange(n, dtype=jnp.int32) >= n - ones[..., None]).astype(dtype)


def _binary_distance(
    name: str, ones_x: jax.Array, ones_y: jax.Array, n: int, dtype: jnp.dtype
) -> jax.Array:
    """A distance between two 0/1 samples of size ``n``, from their counts of ones.

    Both CDFs are flat on ``[0, 1)`` and differ there by ``gap = mean(y) - mean(x)``, so
    ``W1 = KS = |gap|`` and the (V-statistic) energy distance is ``2 gap^2``: what the pooled
    merge of :mod:`dcma_jax.functionals` computes, without it.
    """
    gap = (ones_y - ones_x).astype(dtype) / n
    return 2.0 * jnp.square(gap) if name == "energy" else jnp.abs(gap)


@functools.partial(jax.jit, static_argnames=("layout", "spec", "distance_draws", "binary"))
def effect_values(
    layout: EffectLayout,
    spec: FunctionalSpec,
    outcome: jax.Array,
    distance_draws: int | None = None,
    binary: bool = False,
) -> jax.Array:
    """All reported numbers from the arms' outcome samples (original units).

    Distances: ``energy`` is the paired U-statistic :func:`functionals.energy_unbiased` over
    all draws (draw ``i`` of two arms shares covariate row and noise, so the pairs ``i = j``
    are left out of every term): unbiased for the energy distance of the simulated laws at any
    number of draws. ``wasserstein`` and ``ks`` have no unbiased form (their Monte Carlo bias
    is positive and shrinks with the draws); with ``distance_draws = d`` they are the mean over
    the ``num_draws // d`` disjoint blocks of ``d`` draws (the first ``d``, the next ``d``, ...;
    left-over draws unused), whose Monte Carlo bias is that of ``d`` draws whatever the total
    -- the effects query evaluates the bootstrap replicates this way (see
    :func:`dcma_jax.queries.effects`).

    Args:
      layout: the contrasts (``estimands.layout``).
      spec: functionals to evaluate.
      outcome: ``(n_arms, num_draws)`` samples of Y in original units, draw ``i`` of every
        arm from the same covariate row and noise (as :mod:`dcma_jax.simulate` draws them);
        draws i.i.d. over ``i``.
      distance_draws: draws per block for ``wasserstein`` and ``ks`` (default, or
        ``>= num_draws``: one block of all draws).
      binary: the draws are 0/1 (a binary outcome node): the same numbers from the arms'
        counts of ones, without sorting or merging (:func:`sort_draws`).

    Returns:
      ``(len(effect_rows(estimands, spec)),)`` values; jit- and vmap-compatible.
    """
    num_draws = outcome.shape[1]
    paired = outcome
    blocks = None
    if distance_draws is not None and distance_draws < num_draws:
        if distance_draws < 1:
            raise ArgumentError(f"distance_draws must be positive, got {distance_draws}")
        n_blocks = num_draws // distance_draws
        blocks = paired[:, : n_blocks * distance_draws].reshape(-1, n_blocks, distance_draws)
    # Sort each arm once (a 0/1 outcome: count its ones once); every functional below reads
    # the sorted draws (or the counts).
    if binary:
        ones = count_ones(paired)
        outcome = _sorted_binary(ones, num_draws, paired.dtype)
        block_ones, block_size = (
            (ones[:, None], num_draws) if blocks is None else (count_ones(blocks), distance_draws)
        )
    else:
        outcome = functionals.sort(paired)
        blocks = None if blocks is None else functionals.sort(blocks)

    def distance(name: str, c: Contrast) -> jax.Array:
        if name == "energy":
            pair_distance = jnp.mean(jnp.abs(paired[c.arm] - paired[c.reference]))
            if binary:
                v = _binary_distance(name, ones[c.arm], ones[c.reference], num_draws, paired.dtype)
                return num_draws / (num_draws - 1) * (v - 2.0 * pair_distance / num_draws)
            return functionals.energy_unbiased(
                outcome[c.arm], outcome[c.reference], presorted=True, pair_distance=pair_distance
            )
        if binary:
            x, y = block_ones[c.arm], block_ones[c.reference]
            return jnp.mean(_binary_distance(name, x, y, block_size, paired.dtype))
        fn = functools.partial(functionals.DISTANCES[name], presorted=True)
        if blocks is None:
            return fn(outcome[c.arm], outcome[c.reference])
        return jnp.mean(jax.vmap(fn)(blocks[c.arm], blocks[c.reference]))

    means = jax.vmap(functionals.mean)(outcome)
    quants = jax.vmap(lambda y: functionals.quantile(y, spec.quantiles, presorted=True))(outcome)
    points = jnp.asarray(spec.cdf_points, outcome.dtype)
    cdfs = jax.vmap(lambda y: functionals.cdf(y, points, presorted=True))(outcome)
    values, mean_effect = [], {}
    for c in layout.contrasts:
        mean_effect[c.name] = means[c.arm] - means[c.reference]
        values.append(mean_effect[c.name][None])
        values.append(quants[c.arm] - quants[c.reference])
        values.append(cdfs[c.arm] - cdfs[c.reference])
        values += [distance(d, c)[None] for d in spec.distances]
    values += [(mean_effect[num] / mean_effect[den])[None] for _, num, den in layout.ratios]
    for m in layout.combinations:
        values.append(sum(w * means[i] for w, i in m.terms)[None])
        values.append(sum(w * quants[i] for w, i in m.terms))
        values.append(sum(w * cdfs[i] for w, i in m.terms))
    return jnp.concatenate(values)


def quantile_curves(
    layout: EffectLayout, outcome: jax.Array, levels: np.ndarray, binary: bool = False
) -> jax.Array:
    """Quantile-effect curves ``Q_arm(q) - Q_reference(q)``: ``(n_contrasts, len(levels))``.

    ``binary``: the draws are 0/1 (see :func:`sort_draws`).
    """
    ordered = sort_draws(outcome, binary)
    quants = jax.vmap(lambda y: functionals.quantile(y, levels, presorted=True))(ordered)
    return jnp.stack([quants[c.arm] - quants[c.reference] for c in layout.contrasts])
