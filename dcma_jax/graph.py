"""Causal structure: mediators in causal order, their parents, and each node's context.

Nodes are the ``k`` mediators (indices ``0..k-1``, in causal order) followed by the outcome
(index ``k``). A node's context — the input of its generator — is

    c_j = (a_j, m_{parents(j)}, x)

where ``a_j`` is the treatment value assigned to that node by an arm. The outcome's parents are
all mediators. Treatment comes first in every context, so the layout is fixed and known.

Treatment encoding. Arms and data carry one scalar treatment *code* per node: 0/1 for a binary
treatment, the standardised value for a continuous one, the level index ``0..L-1`` for a
categorical one. :meth:`CausalGraph.encode_treatment` turns codes into the block that enters
contexts: the code itself (width 1) for binary and continuous treatments, the one-hot vector
without the reference level (width ``L - 1``) for a categorical treatment with ``L`` levels.
So arms stay ``(n_arms, ...)`` arrays of scalars whatever the treatment type, and gradients
with respect to a continuous treatment value flow through the context.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp

from dcma_jax.errors import ArgumentError


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
    treatment_levels: int = 0

    @classmethod
    def chain(
        cls,
        mediator_names: Sequence[str],
        mediator_kinds: Sequence[str],
        outcome_name: str,
        outcome_kind: str,
        parents: Sequence[Sequence[int]] | None = None,
        treatment_levels: int = 0,
    ) -> CausalGraph:
        """Builds a graph whose mediator ``j`` has parents ``parents[j]``.

        By default every earlier mediator is a parent (a full causal chain); ``parents=[()] * k``
        makes the mediators parallel. Parents must be earlier mediators, which keeps the graph
        acyclic and the order causal. ``treatment_levels`` is 0 for a binary or continuous
        treatment (the code enters contexts as is) and ``L >= 3`` for a categorical one.
        """
        if treatment_levels < 0:
            raise ArgumentError(f"treatment_levels must be >= 0, got {treatment_levels}")
        k = len(mediator_names)
        if len(mediator_kinds) != k:
            raise ArgumentError("need one kind per mediator")
        if parents is None:
            parents = [tuple(range(j)) for j in range(k)]
        if len(parents) != k:
            raise ArgumentError(f"need parents for each of the {k} mediators")
        nodes = []
        rows = zip(mediator_names, mediator_kinds, parents, strict=True)
        for j, (name, kind, pa) in enumerate(rows):
            pa = tuple(sorted(int(p) for p in pa))
            if any(p < 0 or p >= j for p in pa):
                raise ArgumentError(
                    f"mediator {name!r}: parents must be earlier mediators (indices < {j})"
                )
            nodes.append(Node(name, kind, pa))
        return cls(
            tuple(nodes),
            Node(outcome_name, outcome_kind, tuple(range(k))),
            int(treatment_levels) if treatment_levels >= 3 else 0,
        )

    @property
    def nodes(self) -> tuple[Node, ...]:
        """All nodes: the mediators in causal order, then the outcome."""
        return (*self.mediators, self.outcome)

    @property
    def num_mediators(self) -> int:
        return len(self.mediators)

    @property
    def treatment_width(self) -> int:
        """Width of the treatment block of every context (1, or ``L - 1`` if categorical)."""
        return self.treatment_levels - 1 if self.treatment_levels else 1

    def encode_treatment(self, codes: jax.Array) -> jax.Array:
        """``(n,)`` treatment codes -> ``(n, treatment_width)`` context block.

        Categorical codes are level indices; level 0 is the reference (all zeros).
        """
        if not self.treatment_levels:
            return codes[:, None]
        levels = jnp.arange(1, self.treatment_levels, dtype=codes.dtype)
        return (codes[:, None] == levels[None, :]).astype(codes.dtype)

    def context_dim(self, node: int, num_covariates: int) -> int:
        """Size of node ``node``'s context ``(a, parent mediators, covariates)``."""
        return self.treatment_width + len(self.nodes[node].parents) + num_covariates

    def context(
        self, node: int, treatment: jax.Array, mediators: jax.Array, covariates: jax.Array
    ) -> jax.Array:
        """Builds node ``node``'s context for a batch.

        Args:
          node: node index (``k`` is the outcome).
          treatment: ``(n,)`` treatment code seen by this node.
          mediators: ``(n, k)`` mediator values (only the parents' columns are read).
          covariates: ``(n, p)``.

        Returns:
          ``(n, treatment_width + |parents| + p)`` context.
        """
        parents = list(self.nodes[node].parents)
        return jnp.concatenate(
            [self.encode_treatment(treatment), mediators[:, parents], covariates], axis=1
        )

    def describe(self) -> str:
        """One line a node: ``M2 <- A, M1, X``."""
        lines = []
        for node in self.nodes:
            inputs = ["A"] + [self.mediators[p].name for p in node.parents] + ["X"]
            lines.append(f"{node.name} ({node.kind}) <- {', '.join(inputs)}")
        return "\n".join(lines)


def resolve_parents(
    mediator_names: Sequence[str],
    parents: str | Mapping[str, Sequence[str]] | Sequence[Sequence[int]] | None,
) -> tuple[tuple[int, ...], ...] | None:
    """Normalises a parents specification to index tuples (``None``: the full chain).

    Accepts ``None`` (every earlier mediator is a parent), ``"chain"`` (the same),
    ``"parallel"`` (no mediator has a mediator parent), a mapping ``{"M2": ["M1"]}`` from
    mediator name to parent names (mediators not named keep every earlier mediator), or a
    sequence of index sequences, one per mediator.

    Raises:
      ValueError: unknown names, or a parent that is not an earlier mediator.
    """
    names = list(mediator_names)
    k = len(names)
    if parents is None or (isinstance(parents, str) and parents == "chain"):
        return None
    if isinstance(parents, str):
        if parents != "parallel":
            raise ArgumentError(
                f"parents must be 'chain', 'parallel' or a mapping, got {parents!r}"
            )
        return tuple(() for _ in range(k))
    if isinstance(parents, Mapping):
        unknown = sorted(set(parents) - set(names))
        if unknown:
            raise ArgumentError(
                f"parents given for unknown mediators {unknown}; mediators: {names}"
            )
        out = []
        for j, name in enumerate(names):
            if name not in parents:
                out.append(tuple(range(j)))
                continue
            idx = []
            for p in parents[name]:
                if p not in names:
                    raise ArgumentError(f"parent {p!r} of mediator {name!r} is not a mediator")
                if names.index(p) >= j:
                    raise ArgumentError(
                        f"parent {p!r} of mediator {name!r} must come earlier in the causal "
                        f"order {names}"
                    )
                idx.append(names.index(p))
            out.append(tuple(sorted(idx)))
        return tuple(out)
    return tuple(tuple(int(p) for p in pa) for pa in parents)
