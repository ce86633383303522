"""Causal structure: mediators in causal order, their parents, and each node's context.

Nodes are the ``k`` mediators (indices ``0..k-1``, in causal order) followed by the outcome
(index ``k``). A node's context — the input of its generator — is

    c_j = (a_j, m_{parents(j)}, x)

where ``a_j`` is the treatment value assigned to that node by an arm. The outcome's parents are
all mediators. Treatment comes first in every context, so the layout is fixed and known.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Node:
    """One modelled variable: its name, kind and parent mediators (indices)."""

    name: str
    kind: str
    parents: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class CausalGraph:
    """Mediators in causal order plus the outcome; hashable, so usable as a jit static."""

    mediators: tuple[Node, ...]
    outcome: Node

    @classmethod
    def chain(
        cls,
        mediator_names: Sequence[str],
        mediator_kinds: Sequence[str],
        outcome_name: str,
        outcome_kind: str,
        parents: Sequence[Sequence[int]] | None = None,
    ) -> CausalGraph:
        """Builds a graph whose mediator ``j`` has parents ``parents[j]``.

        By default every earlier mediator is a parent (a full causal chain). Parents must be
        earlier mediators, which keeps the graph acyclic and the order causal.
        """
        k = len(mediator_names)
        if len(mediator_kinds) != k:
            raise ValueError("need one kind per mediator")
        if parents is None:
            parents = [tuple(range(j)) for j in range(k)]
        if len(parents) != k:
            raise ValueError(f"need parents for each of the {k} mediators")
        nodes = []
        rows = zip(mediator_names, mediator_kinds, parents, strict=True)
        for j, (name, kind, pa) in enumerate(rows):
            pa = tuple(sorted(int(p) for p in pa))
            if any(p < 0 or p >= j for p in pa):
                raise ValueError(
                    f"mediator {name!r}: parents must be earlier mediators (indices < {j})"
                )
            nodes.append(Node(name, kind, pa))
        return cls(tuple(nodes), Node(outcome_name, outcome_kind, tuple(range(k))))

    @property
    def nodes(self) -> tuple[Node, ...]:
        """All nodes: the mediators in causal order, then the outcome."""
        return (*self.mediators, self.outcome)

    @property
    def num_mediators(self) -> int:
        return len(self.mediators)

    def context_dim(self, node: int, num_covariates: int) -> int:
        """Size of node ``node``'s context ``(a, parent mediators, covariates)``."""
        return 1 + len(self.nodes[node].parents) + num_covariates

    def context(
        self, node: int, treatment: jax.Array, mediators: jax.Array, covariates: jax.Array
    ) -> jax.Array:
        """Builds node ``node``'s context for a batch.

        Args:
          node: node index (``k`` is the outcome).
          treatment: ``(n,)`` treatment value seen by this node.
          mediators: ``(n, k)`` mediator values (only the parents' columns are read).
          covariates: ``(n, p)``.

        Returns:
          ``(n, 1 + |parents| + p)`` context.
        """
        parents = list(self.nodes[node].parents)
        return jnp.concatenate([treatment[:, None], mediators[:, parents], covariates], axis=1)

    def describe(self) -> str:
        """One line a node: ``M2 <- A, M1, X``."""
        lines = []
        for node in self.nodes:
            inputs = ["A"] + [self.mediators[p].name for p in node.parents] + ["X"]
            lines.append(f"{node.name} ({node.kind}) <- {', '.join(inputs)}")
        return "\n".join(lines)
