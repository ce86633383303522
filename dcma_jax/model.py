"""A mediation model's static structure: the causal graph and one generator per node.

``build_model`` turns data roles and generator choices (a family name for every node, or per
node, or generator instances) into a :class:`Model`; ``node_data`` lays out each node's
training pairs ``(x, context)`` from the observed rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dcma_jax.data import MediationData
from dcma_jax.errors import ArgumentError
from dcma_jax.generators.base import Generator, generator_class
from dcma_jax.generators.count import count_cap
from dcma_jax.graph import CausalGraph

GeneratorChoice = str | Generator


@dataclasses.dataclass(frozen=True)
class Model:
    """Static structure of a mediation model: the graph and one generator per node.

    Hashable, so it is a static argument of the jitted entry points. Parameters live apart,
    as a tuple of per-node variable pytrees in node order (mediators, then outcome). Each
    generator is stored as ``generator.for_treatment_width(graph.treatment_width)``.
    """

    graph: CausalGraph
    generators: tuple[Generator, ...]
    num_covariates: int

    def __post_init__(self) -> None:
        if len(self.generators) != len(self.graph.nodes):
            raise ArgumentError(
                f"need {len(self.graph.nodes)} generators (one per node), "
                f"got {len(self.generators)}"
            )
        for node, generator in zip(self.graph.nodes, self.generators, strict=True):
            if node.kind not in type(generator).kinds:
                raise ArgumentError(
                    f"node {node.name!r} is {node.kind} but {type(generator).__name__} "
                    f"models {', '.join(type(generator).kinds)} nodes"
                )
        width = self.graph.treatment_width
        adapted = tuple(g.for_treatment_width(width) for g in self.generators)
        object.__setattr__(self, "generators", adapted)

    def describe(self) -> str:
        """The graph, one line a node, with each node's generator."""
        lines = self.graph.describe().splitlines()
        return "\n".join(
            f"{line}   [{type(g).__name__}]" for line, g in zip(lines, self.generators, strict=True)
        )


def _make_generator(choice: GeneratorChoice, kind: str, link: str, values: np.ndarray) -> Generator:
    """The node's generator, from an instance as is or from a family name.

    A family name is built with the fields its kind takes from the data: a binary GLM's
    ``link``, a count generator's ``max_count`` (:func:`~dcma_jax.generators.count.count_cap`
    of the node's observed ``values``).
    """
    if isinstance(choice, Generator):
        return choice
    cls = generator_class(choice, kind)
    fields = {f.name for f in dataclasses.fields(cls)}
    if kind == "binary" and "link" in fields:
        return cls(link=link)
    if kind == "count" and "max_count" in fields:
        return cls(max_count=count_cap(values))
    return cls()


def build_model(
    data: MediationData,
    generators: GeneratorChoice | Mapping[str, GeneratorChoice] = "mdn",
    *,
    link: str = "logit",
    parents: Sequence[Sequence[int]] | None = None,
) -> Model:
    """Builds the model for ``data``'s roles.

    Args:
      data: the validated data; fixes node names, kinds and the covariate count.
      generators: a registered family name (``"linear"``, ``"mdn"``, ...) or a generator
        instance for every node, or a mapping from node name to either. Nodes missing from
        the mapping are refused, so nothing falls back silently. A count node built from a
        name gets ``max_count`` from its observed counts (an instance keeps its own).
      link: link of binary GLM nodes (``"logit"`` or ``"probit"``).
      parents: mediator parents (indices of earlier mediators); default: every earlier one.

    Raises:
      ValueError: unknown node names or generator names, or a generator unable to model
        its node's kind.
    """
    graph = CausalGraph.chain(
        data.mediator_names,
        [v.kind for v in data.mediator_vars],
        data.outcome_name,
        data.outcome_var.kind,
        parents=parents,
        treatment_levels=data.treatment_var.num_levels,
    )
    names = [node.name for node in graph.nodes]
    if isinstance(generators, Mapping):
        unknown = sorted(set(generators) - set(names))
        missing = [name for name in names if name not in generators]
        if unknown:
            raise ArgumentError(f"generators given for unknown nodes {unknown}; nodes: {names}")
        if missing:
            raise ArgumentError(f"no generator given for nodes {missing}")
        choices = [generators[name] for name in names]
    else:
        choices = [generators] * len(names)
    values = np.concatenate([data.mediators, data.outcome[:, None]], axis=1)
    built = tuple(
        _make_generator(choice, node.kind, link, values[:, j])
        for j, (choice, node) in enumerate(zip(choices, graph.nodes, strict=True))
    )
    return Model(graph, built, data.covariates.shape[1])


def float_dtype() -> np.dtype:
    """The working float dtype: float32, or float64 when ``jax_enable_x64`` is on."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def node_data(model: Model, data: MediationData) -> list[tuple[jnp.ndarray, jnp.ndarray]]:
    """Each node's observed training pairs ``(x (n, 1), context (n, c))`` in node order."""
    dtype = float_dtype()
    treatment = jnp.asarray(data.treatment, dtype)
    mediators = jnp.asarray(data.mediators, dtype)
    covariates = jnp.asarray(data.covariates, dtype)
    values = np.concatenate([data.mediators, data.outcome[:, None]], axis=1)
    return [
        (
            jnp.asarray(values[:, j : j + 1], dtype),
            model.graph.context(j, treatment, mediators, covariates),
        )
        for j in range(len(model.graph.nodes))
    ]
