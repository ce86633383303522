r"""Interventional arms: one representation, named by the expressions users write.

An :class:`Arm` is one interventional outcome distribution to simulate, in treatment *codes*
(see :mod:`dcma_jax.graph`), together with its expression in the user's units:

* a *joint* arm, a nested counterfactual such as ``Y(1,M(0))`` or ``Y(1,M1(0),M2(1,M1(0)))``:
  one chain of mediators drawn in causal order, mediator ``j`` under its own treatment value,
  each seeing its parents' values in the same chain (natural and identified path-specific
  effects, and the interventional ``Y(a; G(a'))``, which has the same distribution);
* a *marginal* arm ``Y(1;G_M1(1),G_M2(0))``: mediator ``j`` drawn from its own interventional
  distribution given ``x`` (chain ``j`` drawn wholly under ``a_j``), independently of the
  others given ``x`` (Vansteelandt & Daniel 2017).

In general an arm holds ``C`` chains (the code each mediator is drawn under in each chain) and,
for every mediator, the chain the outcome reads it from (see :mod:`dcma_jax.simulate`).

:func:`parse_arms` turns expressions into arms (joint ones checked for identification by
:mod:`dcma_jax.paths`); :meth:`Arms.pack` stacks arms into the array form the compiled Monte
Carlo core traces, so arms that differ only in treatment values share one compilation.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from dcma_jax.errors import ArgumentError
from dcma_jax.graph import CausalGraph
from dcma_jax.paths import PathSpecificError, identify, parse, show_value
from dcma_jax.paths import parse_value as _value

__all__ = ["Arm", "Arms", "parse_arms", "render_joint"]


@dataclasses.dataclass(frozen=True)
class Arm:
    """One arm: its expression and its treatment codes.

    Attributes:
      expression: how users write it, in their units (``"Y(1,M(0))"``).
      outcome: treatment code seen by the outcome.
      chains: per chain, the code each mediator is drawn under (``C`` tuples of ``k``).
      sources: for each mediator, the chain the outcome reads it from.
    """

    expression: str
    outcome: float
    chains: tuple[tuple[float, ...], ...]
    sources: tuple[int, ...]

    def __post_init__(self) -> None:
        chains = tuple(tuple(float(v) for v in c) for c in self.chains)
        object.__setattr__(self, "outcome", float(self.outcome))
        object.__setattr__(self, "chains", chains)
        object.__setattr__(self, "sources", tuple(int(s) for s in self.sources))
        k = len(self.sources)
        if not chains or any(len(c) != k for c in chains):
            raise ArgumentError(f"arm {self.expression}: every chain needs {k} mediator codes")
        if any(not 0 <= s < len(chains) for s in self.sources):
            raise ArgumentError(
                f"arm {self.expression}: sources must index its {len(chains)} chains"
            )

    @classmethod
    def joint(cls, expression: str, outcome: float, mediators: Sequence[float]) -> Arm:
        """``Y(a, M1(a_1), ...)``: one chain, mediator ``j`` drawn under ``a_j``."""
        mediators = tuple(float(v) for v in mediators)
        return cls(expression, float(outcome), (mediators,), (0,) * len(mediators))

    @classmethod
    def marginal(cls, expression: str, outcome: float, mediators: Sequence[float]) -> Arm:
        """``Y(a; G_1(a_1), ..., G_k(a_k))``: chain ``j`` drawn wholly under ``a_j``."""
        k = len(mediators)
        chains = tuple((float(v),) * k for v in mediators)
        return cls(expression, float(outcome), chains, tuple(range(k)))

    @property
    def is_joint(self) -> bool:
        return len(self.chains) == 1

    def to_json(self) -> dict:
        """``{"outcome", "chains", "sources"}`` in codes (the expression is the key)."""
        return {
            "outcome": self.outcome,
            "chains": [list(c) for c in self.chains],
            "sources": list(self.sources),
        }


class Arms(NamedTuple):
    """Arms stacked for the compiled core (all fields traced).

    One compilation serves every set of arms with the same arm, chain, distinct-chain and
    mediator counts.

    Attributes:
      outcome: ``(n_arms,)`` treatment code seen by the outcome.
      mediators: ``(n_arms, C, k)``: code under which mediator ``j`` is drawn in chain ``c``.
      sources: ``(n_arms, k)`` integers in ``[0, C)``: the chain the outcome reads mediator
        ``j`` from.
      chain_index: ``(n_arms, C)`` integers, or ``None``: chain ``c`` of arm ``i`` is the
        distinct chain ``chain_index[i, c]``. Chains in the same position ``c`` (so with the
        same noise) and with the same codes are the same draws, so the core draws each distinct
        chain once and the arms read it: the natural effects' four arms need two mediator
        chains, not four. A chain the outcome reads no mediator from (padding) is not drawn.
        :meth:`pack` fills it; ``None`` draws every arm's chains.
      representatives: ``(U, 2)`` integers ``(arm, chain)``, one per distinct chain, whose
        codes it takes (so derivatives in the codes flow through it); ``None`` with
        ``chain_index``.
    """

    outcome: jax.Array
    mediators: jax.Array
    sources: jax.Array
    chain_index: jax.Array | None = None
    representatives: jax.Array | None = None

    @classmethod
    def pack(cls, arms: Sequence[Arm], dtype: Any = jnp.float32) -> Arms:
        """Stacks arms, padding chains to a common count (padding chains are never read)."""
        if not arms:
            raise ArgumentError("need at least one arm")
        if len({len(a.sources) for a in arms}) != 1:
            raise ArgumentError("all arms must have the same number of mediators")
        c = max(len(a.chains) for a in arms)
        chains = [a.chains + (a.chains[-1],) * (c - len(a.chains)) for a in arms]
        distinct: dict[tuple, int] = {}
        representatives, index = [], []
        for i, (arm, arm_chains) in enumerate(zip(arms, chains, strict=True)):
            read = sorted(set(arm.sources))
            for position in read:
                if (position, arm_chains[position]) not in distinct:
                    distinct[(position, arm_chains[position])] = len(representatives)
                    representatives.append((i, position))
            # A chain the outcome never reads (padding) is not drawn: it points at one it does.
            positions = [p if p in read else read[0] for p in range(c)]
            index.append([distinct[(p, arm_chains[p])] for p in positions])
        return cls(
            jnp.asarray([a.outcome for a in arms], dtype),
            jnp.asarray(chains, dtype),
            jnp.asarray([a.sources for a in arms], jnp.int32),
            jnp.asarray(index, jnp.int32),
            jnp.asarray(representatives, jnp.int32),
        )

    def with_dtype(self, dtype: Any) -> Arms:
        """The same arms with the treatment codes in ``dtype``."""
        return self._replace(
            outcome=self.outcome.astype(dtype), mediators=self.mediators.astype(dtype)
        )


def render_joint(
    graph: CausalGraph, outcome: Any, values: Sequence[Any], show: Callable[[Any], str] = str
) -> str:
    """The shortest nested counterfactual of a joint arm ``(a; a_1..a_k)``.

    A mediator argument is left out where it takes its natural value under the enclosing
    node's treatment (the convention of :func:`dcma_jax.paths.parse`), so
    ``(1; 0, 0)`` renders as ``Y(1,M1(0),M2(0))`` and ``(1; 0, 1)`` as
    ``Y(1,M1(0),M2(1,M1(0)))``. The outcome lists every mediator.
    """
    names = [m.name for m in graph.mediators]

    def uniform(j: int, value: Any) -> bool:
        # Mediator j and all its ancestors are drawn under `value`.
        return values[j] == value and all(uniform(p, value) for p in graph.mediators[j].parents)

    def node(j: int) -> str:
        args = [show(values[j])]
        args += [node(p) for p in graph.mediators[j].parents if not uniform(p, values[j])]
        return f"{names[j]}({','.join(args)})"

    return f"Y({','.join([show(outcome)] + [node(j) for j in range(len(names))])})"


_MARGINAL = re.compile(r"^\s*([^()\s;,]+)\s*\(\s*([^;()]+?)\s*;(.*)\)\s*$")
_TERM = re.compile(r"^\s*G(?:_([^()\s]+))?\s*\(\s*([^()]+?)\s*\)\s*$")


def _parse_interventional(
    text: str, graph: CausalGraph, encode: Callable[[Any], float], show: Callable
) -> Arm:
    """``Y(a;G(a'))`` (joint) or ``Y(a;G_M1(a1),...,G_Mk(ak))`` (marginal)."""
    names = [m.name for m in graph.mediators]
    match = _MARGINAL.match(text)
    if not match or match.group(1) not in (graph.outcome.name, "Y"):
        raise PathSpecificError(
            f"cannot parse {text!r}: expected Y(a;G(a')) or Y(a;G_M1(a1),...) "
            f"with mediators {names}"
        )
    outcome = _value(match.group(2))
    terms = [_TERM.match(t) for t in match.group(3).split(",")]
    if any(t is None for t in terms):
        raise PathSpecificError(f"cannot parse {text!r}: each term must be G(a) or G_<mediator>(a)")
    if len(terms) == 1 and terms[0].group(1) is None:
        value = _value(terms[0].group(2))
        codes = [encode(value)] * len(names)
        expression = render_joint(graph, outcome, [value] * len(names), show)
        return Arm.joint(expression, encode(outcome), codes)
    given = {}
    for t in terms:
        name = t.group(1)
        if name not in names:
            raise PathSpecificError(f"{text!r}: G_{name} names no mediator (mediators: {names})")
        if name in given:
            raise PathSpecificError(f"{text!r}: G_{name} is given twice")
        given[name] = _value(t.group(2))
    missing = [n for n in names if n not in given]
    if missing:
        raise PathSpecificError(f"{text!r}: a marginal arm needs G_<M>(a) for {missing} too")
    expression = f"Y({show(outcome)};" + ",".join(f"G_{n}({show(given[n])})" for n in names) + ")"
    return Arm.marginal(expression, encode(outcome), [encode(given[n]) for n in names])


def parse_arms(
    texts: Sequence[str],
    graph: CausalGraph,
    encode: Callable[[Any], float] = float,
    treatment: str = "A",
    show: Callable[[Any], str] | None = None,
) -> tuple[Arm, ...]:
    """Arms from expressions: nested counterfactuals or interventional ``Y(a;G...)`` forms.

    Args:
      texts: e.g. ``"Y(1,M(0))"``, ``"Y(1,M1(0),M2(1,M1(0)))"``, ``"Y(1;G(0))"``,
        ``"Y(1;G_M1(1),G_M2(0))"``; treatment values in the user's units.
      graph: the causal graph the names refer to.
      encode: maps a treatment value in the user's units to its code.
      treatment: the treatment's name, for messages.
      show: renders a value in canonical expressions (default: ``%g`` for numbers).

    Raises:
      PathSpecificError: malformed text, unknown names, or a nested counterfactual that is not
        identified (a recanting witness; the message names the interventional analogue).
    """
    show = show or show_value
    arms = []
    for text in texts:
        if ";" in text:
            arms.append(_parse_interventional(text, graph, encode, show))
            continue
        a, values = identify(parse(text, graph), graph, treatment)
        expression = render_joint(graph, a, values, show)
        arms.append(Arm.joint(expression, encode(a), [encode(v) for v in values]))
    return tuple(arms)
