"""Generators for binary nodes beyond the GLM: a Bernoulli network."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr

from dcma_jax.generators.base import Generator
from dcma_jax.generators.networks import MLP, with_logistic_baseline

if TYPE_CHECKING:
    import distrax


class BernoulliMLP(Generator):
    """``P(x = 1 | c) = sigmoid(b + c' beta + MLP(c))``; samples ``x = 1{Phi(z) < p(c)}``."""

    registry_name: ClassVar[str] = "mdn"
    kinds: ClassVar[tuple[str, ...]] = ("binary",)
    noise_dim: ClassVar[int] = 1

    hidden: Sequence[int] = (64, 64)

    def setup(self) -> None:
        self.net = MLP(tuple(self.hidden), 1)
        zeros = nn.initializers.zeros
        self.baseline = nn.Dense(1, kernel_init=zeros, bias_init=zeros)

    @nn.nowrap
    def warm_start(
        self, variables: Any, x: jax.Array, context: jax.Array, weights: jax.Array
    ) -> Any:
        """Starts the logit's linear part at the (lightly penalised) logistic regression fit."""
        return with_logistic_baseline(variables, x, context, weights)

    def _logit(self, context: jax.Array) -> jax.Array:
        """``b + c' beta + MLP(c)``: a logistic regression plus a network correction; ``(1,)``."""
        return self.baseline(context) + self.net(context)

    def sample(self, noise: jax.Array, context: jax.Array) -> jax.Array:
        prob = jax.nn.sigmoid(self._logit(context))
        return (ndtr(noise) < prob).astype(context.dtype)

    def log_prob(self, x: jax.Array, context: jax.Array) -> jax.Array:
        logit = self._logit(context)
        return jnp.sum(x * jax.nn.log_sigmoid(logit) + (1.0 - x) * jax.nn.log_sigmoid(-logit))

    def law(self, context: jax.Array) -> distrax.Distribution:
        """``distrax.Bernoulli(logits=MLP(c))`` with float samples."""
        import distrax  # here, not at import: distrax loads tfp's jax substrate (~0.7 s)

        return distrax.Bernoulli(logits=self._logit(context)[0], dtype=context.dtype)
