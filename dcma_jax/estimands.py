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
from dcma_jax.model import float_dtype
from dcma_jax.simulate import Arms

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
class Arm:
    """One arm in treatment *codes*: see :class:`dcma_jax.simulate.Arms`.

    Attributes:
      outcome: code seen by the outcome.
      chains: per chain, the code each mediator is drawn under (``C`` tuples of ``k``).
      sources: for each mediator, the chain the outcome reads it from.
    """

    outcome: float
    chains: tuple[tuple[float, ...], ...]
    sources: tuple[int, ...]

    @classmethod
    def joint(cls, outcome: float, mediators: Sequence[float]) -> Arm:
        """``Y(a; G(a_1..a_k))``: one chain, mediator ``j`` drawn under ``a_j``."""
        mediators = tuple(float(v) for v in mediators)
        return cls(float(outcome), (mediators,), (0,) * len(mediators))

    @classmethod
    def marginal(cls, outcome: float, mediators: Sequence[float]) -> Arm:
        """``Y(a; G_1(a_1), ..., G_k(a_k))``: chain ``j`` drawn wholly under ``a_j``."""
        k = len(mediators)
        chains = tuple((float(v),) * k for v in mediators)
        return cls(float(outcome), chains, tuple(range(k)))

    @property
    def is_joint(self) -> bool:
        return len(self.chains) == 1

    def to_json(self) -> list | dict:
        """``[a, a_1..a_k]`` for a joint arm, else ``{"outcome", "chains", "sources"}``."""
        if self.is_joint:
            return [self.outcome, *self.chains[0]]
        return {
            "outcome": self.outcome,
            "chains": [list(c) for c in self.chains],
            "sources": list(self.sources),
        }


@dataclasses.dataclass(frozen=True)
class Estimands:
    """Arms to simulate and the contrasts between them.

    Attributes:
      arm_names: display names of the arms, e.g. ``"Y(1,M(0))"``.
      arms: the arms (:class:`Arm`; a plain tuple ``(a, a_1..a_k)`` is read as a joint arm).
      contrasts: the effects.
      ratios: ``(name, numerator, denominator)`` contrast-name triples on the mean scale.
      combinations: linear combinations of arms reported for scalar functionals
        (e.g. ``IIE_dependence``).
    """

    arm_names: tuple[str, ...]
    arms: tuple[Arm, ...]
    contrasts: tuple[Contrast, ...]
    ratios: tuple[tuple[str, str, str], ...] = ()
    combinations: tuple[Combination, ...] = ()

    def __post_init__(self) -> None:
        arms = tuple(a if isinstance(a, Arm) else Arm.joint(a[0], a[1:]) for a in self.arms)
        object.__setattr__(self, "arms", arms)
        if len(self.arm_names) != len(arms):
            raise ValueError(f"{len(self.arm_names)} arm names for {len(arms)} arms")

    @property
    def num_chains(self) -> int:
        return max(len(a.chains) for a in self.arms)

    def arm_array(self) -> jax.Array:
        """``(n_arms, 1 + k)`` codes of joint arms (the plain form :func:`simulate` accepts)."""
        if self.num_chains != 1:
            raise ValueError("arm_array() needs joint arms only; use arm_spec()")
        return jnp.asarray([(a.outcome, *a.chains[0]) for a in self.arms], float_dtype())

    def arm_spec(self) -> Arms:
        """All arms as one :class:`~dcma_jax.simulate.Arms` (chains padded to a common count)."""
        c = self.num_chains
        chains = [a.chains + (a.chains[-1],) * (c - len(a.chains)) for a in self.arms]
        return Arms(
            jnp.asarray([a.outcome for a in self.arms], float_dtype()),
            jnp.asarray(chains, float_dtype()),
            jnp.asarray([a.sources for a in self.arms], jnp.int32),
        )

    def structure(self) -> Estimands:
        """A copy without treatment values or arm names: the static part of a compiled call.

        Estimands that differ only in their arms' treatment codes share one structure, so
        ``arm_effects(model, e.structure(), ..., arms=e.arm_spec())`` compiles once for all.
        """
        arms = tuple(
            Arm(0.0, tuple((0.0,) * len(c) for c in a.chains), a.sources) for a in self.arms
        )
        return dataclasses.replace(self, arm_names=("",) * len(arms), arms=arms)

    def contrast(self, name: str) -> Contrast:
        return next(c for c in self.contrasts if c.name == name)

    def arms_json(self) -> dict:
        return {n: a.to_json() for n, a in zip(self.arm_names, self.arms, strict=True)}


def _fmt_value(v: float) -> str:
    return f"{v:g}"


def natural_effects(
    num_mediators: int,
    treated: float = 1.0,
    control: float = 0.0,
    labels: tuple[str, str] | None = None,
) -> Estimands:
    """TE, NDE and NIE with all mediators as one block.

    Args:
      num_mediators: ``k``.
      treated: the treatment code of the treated arms (default 1).
      control: the treatment code of the control arms (default 0).
      labels: display values of ``(treated, control)`` in arm names (default the codes).
    """
    t, c = labels or (_fmt_value(treated), _fmt_value(control))

    def arm(a: float, a_m: float) -> Arm:
        return Arm.joint(a, (a_m,) * num_mediators)

    names = (f"Y({t},M({t}))", f"Y({t},M({c}))", f"Y({c},M({t}))", f"Y({c},M({c}))")
    arms = (arm(treated, treated), arm(treated, control), arm(control, treated))
    arms += (arm(control, control),)
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


def interventional_effects(
    mediator_names: Sequence[str],
    treated: float = 1.0,
    control: float = 0.0,
    labels: tuple[str, str] | None = None,
) -> Estimands:
    """TE, IDE, IIE per mediator and IIE_dependence (see the module docstring).

    Arms: three joint arms ``Y(1; G12(1))``, ``Y(1; G12(0))``, ``Y(0; G12(0))`` and ``k + 1``
    marginal arms ``Y(1; G_1(1)..G_i(1), G_{i+1}(0)..G_k(0))``, ``i = 0..k``, switching the
    mediators to treated one at a time in causal order.
    """
    names = list(mediator_names)
    k = len(names)
    t, c = labels or (_fmt_value(treated), _fmt_value(control))
    arm_names = [f"Y({t};G({t}))", f"Y({t};G({c}))", f"Y({c};G({c}))"]
    arms = [
        Arm.joint(treated, (treated,) * k),
        Arm.joint(treated, (control,) * k),
        Arm.joint(control, (control,) * k),
    ]
    for i in range(k + 1):
        values = [t] * i + [c] * (k - i)
        arm_names.append(
            f"Y({t};" + ",".join(f"G_{n}({v})" for n, v in zip(names, values, strict=True)) + ")"
        )
        arms.append(Arm.marginal(treated, (treated,) * i + (control,) * (k - i)))
    j11, j10, j00 = 0, 1, 2
    marg = [3 + i for i in range(k + 1)]
    contrasts = [Contrast("TE", j11, j00), Contrast("IDE", j10, j00)]
    contrasts += [Contrast(f"IIE_{n}", marg[i + 1], marg[i]) for i, n in enumerate(names)]
    dependence = Combination(
        "IIE_dependence", ((1.0, j11), (-1.0, j10), (-1.0, marg[k]), (1.0, marg[0]))
    )
    return Estimands(tuple(arm_names), tuple(arms), tuple(contrasts), (), (dependence,))


def path_specific_effects(
    expressions: Sequence[tuple[str, tuple[float, tuple[float, ...]]]],
    reference: tuple[str, tuple[float, tuple[float, ...]]],
) -> Estimands:
    """Contrasts of identified nested counterfactuals against a reference one.

    Args:
      expressions: ``(canonical text, (a, (a_1..a_k)))`` pairs from
        :func:`dcma_jax.paths.resolve` (identified, in codes).
      reference: the same for the reference expression.

    Effects are named ``PSE[<expression>]``: ``phi(expression) - phi(reference)``.
    """
    items = [*expressions, reference]
    names = tuple(text for text, _ in items)
    arms = tuple(Arm.joint(a, ms) for _, (a, ms) in items)
    ref = len(items) - 1
    contrasts = tuple(Contrast(f"PSE[{text}]", i, ref) for i, (text, _) in enumerate(expressions))
    return Estimands(names, arms, contrasts)


def concatenate(parts: Sequence[Estimands], suffixes: Sequence[str]) -> Estimands:
    """Several estimand sets simulated together; effect names get ``suffixes``."""
    names, arms, contrasts, ratios, combos = [], [], [], [], []
    for part, suffix in zip(parts, suffixes, strict=True):
        off = len(arms)
        names += [f"{n}{suffix}" if n in names else n for n in part.arm_names]
        arms += list(part.arms)
        contrasts += [
            Contrast(c.name + suffix, c.arm + off, c.reference + off) for c in part.contrasts
        ]
        ratios += [(r + suffix, a + suffix, b + suffix) for r, a, b in part.ratios]
        combos += [
            Combination(m.name + suffix, tuple((w, i + off) for w, i in m.terms))
            for m in part.combinations
        ]
    return Estimands(tuple(names), tuple(arms), tuple(contrasts), tuple(ratios), tuple(combos))


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
    for m in estimands.combinations:
        rows.append(Row(m.name, "mean", None))
        rows += [Row(m.name, "quantile", q) for q in spec.quantiles]
        rows += [Row(m.name, "cdf", t) for t in spec.cdf_points]
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
    for m in estimands.combinations:
        values.append(sum(w * means[i] for w, i in m.terms)[None])
        values.append(sum(w * quants[i] for w, i in m.terms))
        values.append(sum(w * cdfs[i] for w, i in m.terms))
    return jnp.concatenate(values)


def quantile_curves(estimands: Estimands, outcome: jax.Array, levels: np.ndarray) -> jax.Array:
    """Quantile-effect curves ``Q_arm(q) - Q_reference(q)``: ``(n_contrasts, len(levels))``."""
    quants = jax.vmap(lambda y: functionals.quantile(y, levels))(outcome)
    return jnp.stack([quants[c.arm] - quants[c.reference] for c in estimands.contrasts])
