r"""Natural path-specific effects: nested counterfactuals, parsed and checked for identification.

A nested counterfactual names the treatment value each node sees and, for each of its mediator
parents, the counterfactual that parent takes::

    Y(1, M1(0), M2(1, M1(0)))

reads "the outcome under treatment 1, seeing M1 as it would be under 0 and M2 as it would be
under 1 had M1 been as under 0". A mediator argument left out takes its natural value under the
enclosing node's treatment: ``M2(1)`` means ``M2(1, M1(1))``, and ``Y(1, M1(0))`` with two
sequential mediators means ``Y(1, M1(0), M2(1, M1(1)))``.

Identification (Avin, Shpitser & Pearl 2005): with one treatment, a nested counterfactual is
identified from observational data under sequential ignorability iff no mediator is a
*recanting witness*, i.e. every mediator is seen by all its descendants (every path through it
to the outcome) under one and the same treatment value. For two sequential mediators that is
``a1 == a3`` in ``Y(a, M1(a1), M2(a2, M1(a3)))``. An identified expression is then one joint
arm: each mediator drawn once, under its unique value, through the mediator chain
(:func:`dcma_jax.arms.parse_arms`). An expression that is not identified is refused with a
:class:`PathSpecificError` naming the offending paths and pointing to the interventional
analogue ``Y(a; G_1(a_1), ..., G_k(a_k))``, which is always identified.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from dcma_jax.graph import CausalGraph

__all__ = ["Counterfactual", "PathSpecificError", "identify", "parse", "parse_value", "show_value"]

_TOKEN = re.compile(r"\s*([(),])\s*|\s*([^(),\s]+)\s*")


class PathSpecificError(ValueError):
    """A nested counterfactual that is malformed or not identified."""


@dataclasses.dataclass(frozen=True)
class Counterfactual:
    """``node(value, parent counterfactuals...)``; ``value`` in the user's units."""

    node: str
    value: Any
    parents: tuple[Counterfactual, ...]

    def render(self) -> str:
        inner = [show_value(self.value)] + [p.render() for p in self.parents]
        return f"{self.node}({','.join(inner)})"


def show_value(value: Any) -> str:
    """A treatment value as expressions print it (``%g`` for numbers)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _tokens(text: str) -> list[str]:
    pos, out = 0, []
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise PathSpecificError(f"cannot parse {text!r} at position {pos}")
        out.append(m.group(1) or m.group(2))
        pos = m.end()
    return out


def parse_value(token: str) -> Any:
    """A treatment value as written in an expression: a number where it is one."""
    try:
        return float(token)
    except ValueError:
        return token


def _parse_raw(text: str) -> tuple:
    tokens = _tokens(text)
    pos = 0

    def node():
        nonlocal pos
        if pos + 1 >= len(tokens) or tokens[pos + 1] != "(" or tokens[pos] in "(),":
            raise PathSpecificError(f"expected NAME(value, ...) in {text!r}")
        name = tokens[pos]
        pos += 2
        if pos >= len(tokens) or tokens[pos] in "(),":
            raise PathSpecificError(f"{name}( needs a treatment value first in {text!r}")
        value = parse_value(tokens[pos])
        pos += 1
        args = []
        while pos < len(tokens) and tokens[pos] == ",":
            pos += 1
            args.append(node())
        if pos >= len(tokens) or tokens[pos] != ")":
            raise PathSpecificError(f"missing ')' after the arguments of {name} in {text!r}")
        pos += 1
        return (name, value, args)

    tree = node()
    if pos != len(tokens):
        raise PathSpecificError(f"unexpected text after the expression in {text!r}")
    return tree


def parse(text: str, graph: CausalGraph) -> Counterfactual:
    """Parses a nested counterfactual over ``graph``'s nodes, filling in omitted parents.

    The outermost node is the outcome (its name, or ``Y``); each node's arguments are
    counterfactuals of its mediator parents, in any order, each at most once.

    Raises:
      PathSpecificError: malformed text, unknown nodes, or a node given a non-parent.
    """
    names = [m.name for m in graph.mediators]
    outcome = graph.outcome.name

    def build(raw: tuple, index: int) -> Counterfactual:
        name, value, args = raw
        node = graph.nodes[index]
        given: dict[int, tuple] = {}
        for arg in args:
            if arg[0] not in names:
                raise PathSpecificError(f"{arg[0]!r} is not a mediator (mediators: {names})")
            j = names.index(arg[0])
            if j not in node.parents:
                raise PathSpecificError(f"{arg[0]} is not a parent of {node.name}")
            if j in given:
                raise PathSpecificError(f"{arg[0]} is given twice as an argument of {node.name}")
            given[j] = arg
        parents = tuple(build(given.get(p, (names[p], value, [])), p) for p in node.parents)
        return Counterfactual(node.name, value, parents)

    raw = _parse_raw(text)
    if raw[0] not in (outcome, "Y"):
        raise PathSpecificError(
            f"the outermost node must be the outcome {outcome!r}, got {raw[0]!r} in {text!r}"
        )
    return build(raw, len(graph.nodes) - 1)


def _occurrences(cf: Counterfactual, path: tuple[str, ...], out: dict) -> None:
    for parent in cf.parents:
        route = (parent.node, *path)
        out.setdefault(parent.node, []).append((route, parent.value))
        _occurrences(parent, route, out)


def identify(
    cf: Counterfactual, graph: CausalGraph, treatment: str = "A"
) -> tuple[Any, tuple[Any, ...]]:
    """The identified joint arm ``(a, (a_1..a_k))`` of ``cf``, in the user's units.

    Raises:
      PathSpecificError: a mediator is a recanting witness; the message names it, two paths
        through it set to different values, and the identified interventional analogue.
    """
    show = show_value
    seen: dict[str, list] = {}
    _occurrences(cf, (graph.outcome.name,), seen)
    values = []
    for m in graph.mediators:
        occ = seen[m.name]
        first_route, first = occ[0]
        for route, value in occ[1:]:
            if value != first:
                direct = {r: v for r, v in occ if len(r) == 2}
                analogue = (
                    f"Y({show_value(cf.value)}; "
                    + ", ".join(
                        f"G_{n.name}({show(direct.get((n.name, graph.outcome.name), cf.value))})"
                        for n in graph.mediators
                    )
                    + ")"
                )
                raise PathSpecificError(
                    f"{m.name} is a recanting witness: {_route(treatment, first_route)} is set to "
                    f"{show(first)} but {_route(treatment, route)} to {show(value)}, so "
                    f"{cf.render()} is not identified (Avin, Shpitser & Pearl 2005); use the "
                    f"interventional analogue {analogue} (effects='interventional')"
                )
        values.append(first)
    return cf.value, tuple(values)


def _route(treatment: str, route: tuple[str, ...]) -> str:
    return "→".join((treatment, *route))
