"""The generator contract: a conditional, noise-outsourced sampler for one node.

A generator models the conditional distribution of one node (a mediator or the outcome) given
its context ``c = (a, parent mediators, covariates)``. It is a flax.linen module whose methods
are written for ONE example; batching is done outside with ``jax.vmap`` (see :func:`apply_batched`).

Subclass :class:`Generator` to add a generator. Nothing else in the package has to change: the
subclass registers itself under ``registry_name`` for the node kinds it lists in ``kinds``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

NODE_KINDS = ("continuous", "binary")

_REGISTRY: dict[tuple[str, str], type[Generator]] = {}


class Generator(nn.Module):
    """Base class for conditional generators ``x = G(noise; context)``.

    Contract for subclass authors (all methods act on a single example):

    * ``sample(noise, context) -> x``: ``noise`` has shape ``(noise_dim,)`` and is standard
      normal; ``context`` has shape ``(context_dim,)``; ``x`` has shape ``(1,)``. Must be a
      deterministic function of ``(params, noise, context)``, so that common random numbers
      and ``jax.grad`` work. A generator needing uniforms uses ``jax.scipy.stats.norm.cdf(noise)``.
    * ``loss(x, context) -> scalar``: the per-example training loss. Defaults to
      ``-log_prob(x, context)``; generators without a density (diffusion) override it.
    * ``log_prob(x, context) -> scalar`` (optional): log-density (or log-mass for binary nodes).
    * ``inverse(x, context) -> noise`` (optional): the map back to noise, where it exists; for a
      continuous one-dimensional node this is the conditional normal score
      ``Phi^-1(F(x | context))``.
    * ``closed_form(x, context, weights) -> variables`` (optional, plain method, not traced by
      linen): the exact weighted maximum-likelihood fit. When it returns variables, training
      uses it instead of stochastic optimisation. Inputs are batched: ``x`` ``(n, 1)``,
      ``context`` ``(n, c)``, ``weights`` ``(n,)``; it must be jit/vmap-compatible.

    Class attributes a subclass sets:

    * ``registry_name``: the name users pick it by (``None``: not registered).
    * ``kinds``: the node kinds it models, a subset of ``("continuous", "binary")``.
    * ``noise_dim``: the size of the standard normal noise one sample consumes.

    ``__call__`` evaluates the loss; it is what ``init`` traces to create the parameters.
    """

    registry_name: ClassVar[str | None] = None
    kinds: ClassVar[tuple[str, ...]] = ("continuous",)
    noise_dim: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("registry_name")
        if name is None:
            return
        for kind in cls.kinds:
            if kind not in NODE_KINDS:
                raise ValueError(f"{cls.__name__}.kinds has unknown node kind {kind!r}")
            _REGISTRY[(name, kind)] = cls

    def sample(self, noise: jax.Array, context: jax.Array) -> jax.Array:
        """Maps standard normal noise and a context to one sample of shape ``(1,)``."""
        raise NotImplementedError

    def log_prob(self, x: jax.Array, context: jax.Array) -> jax.Array:
        """Log-density of ``x`` (shape ``(1,)``) given ``context``."""
        raise NotImplementedError(f"{type(self).__name__} has no density")

    def inverse(self, x: jax.Array, context: jax.Array) -> jax.Array:
        """Noise that maps to ``x`` given ``context`` (shape ``(noise_dim,)``)."""
        raise NotImplementedError(f"{type(self).__name__} has no inverse map")

    def loss(self, x: jax.Array, context: jax.Array) -> jax.Array:
        """Per-example training loss; negative log-likelihood by default."""
        return -self.log_prob(x, context)

    def closed_form(self, x: jax.Array, context: jax.Array, weights: jax.Array) -> Any | None:
        """Exact weighted fit returning linen variables, or ``None`` to train by optimisation."""
        return None

    def __call__(self, x: jax.Array, context: jax.Array) -> jax.Array:
        return self.loss(x, context)


def registered_names() -> list[str]:
    """Names of all registered generator families, sorted."""
    return sorted({name for name, _ in _REGISTRY})


def generator_class(name: str, kind: str) -> type[Generator]:
    """Looks up the generator class registered as ``name`` for nodes of ``kind``.

    A family without a model for binary nodes falls back to the ``mdn`` family's Bernoulli
    network, so that every name can be used for every node.

    Raises:
      ValueError: if ``name`` is not registered.
    """
    if (name, kind) in _REGISTRY:
        return _REGISTRY[(name, kind)]
    if name not in registered_names():
        raise ValueError(f"unknown generator {name!r}; available: {', '.join(registered_names())}")
    if kind == "binary" and ("mdn", "binary") in _REGISTRY:
        return _REGISTRY[("mdn", "binary")]
    raise ValueError(f"generator {name!r} cannot model a {kind} node")


def apply_batched(
    module: Generator, method: str | Callable, variables: Any, *args: jax.Array
) -> jax.Array:
    """Applies a single-example ``method`` over a leading batch axis of every argument."""
    fn = getattr(type(module), method) if isinstance(method, str) else method
    return jax.vmap(lambda *a: module.apply(variables, *a, method=fn))(*args)


def init_params(module: Generator, key: jax.Array, context_dim: int) -> Any:
    """Creates a generator's variables for a context of size ``context_dim``."""
    return module.init(key, jnp.zeros((1,)), jnp.zeros((context_dim,)))
