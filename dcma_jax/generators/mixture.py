"""Mixture density network: a context MLP emitting a heteroscedastic Gaussian mixture.

``p(x | c) = sum_k pi_k(c) N(x; mu_k(c), sigma_k(c)^2)`` — flexible enough for skewed,
multimodal and heteroscedastic conditionals, with an exact density and CDF. The ``mdn`` family
models binary nodes with :class:`~dcma_jax.generators.discrete.BernoulliMLP`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr

from dcma_jax.generators.base import Generator
from dcma_jax.generators.networks import MLP, LinearBaseline, with_least_squares_baseline

if TYPE_CHECKING:
    import distrax

_MIN_SCALE = 1e-3


class MixtureDensityNetwork(Generator):
    r"""Heteroscedastic Gaussian mixture with ``num_components`` components.

    Sampling consumes two normals: ``u = Phi(z_0)`` picks component ``k`` by inverting the
    cumulative mixture weights, and ``x = mu_k + sigma_k z_1``. The map is a deterministic,
    piecewise-smooth function of the noise, so common random numbers apply.
    """

    registry_name: ClassVar[str] = "mdn"
    kinds: ClassVar[tuple[str, ...]] = ("continuous",)
    noise_dim: ClassVar[int] = 2

    hidden: Sequence[int] = (64, 64)
    num_components: int = 5

    def setup(self) -> None:
        self.net = MLP(tuple(self.hidden), 3 * self.num_components)
        self.baseline = LinearBaseline()

    @nn.nowrap
    def warm_start(
        self, variables: Any, x: jax.Array, context: jax.Array, weights: jax.Array
    ) -> Any:
        """Centres and scales the mixture on the least-squares linear-Gaussian fit."""
        return with_least_squares_baseline(variables, x, context, weights)

    def _mixture(self, context: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Log-weights, means and SDs: ``mu_k = mu(c) + sigma m_k(c)``, ``sd_k = sigma s_k(c)``."""
        logits, loc, raw_scale = jnp.split(self.net(context), 3)
        mu, log_sigma = self.baseline(context)
        sigma = jnp.exp(log_sigma)
        scale = sigma * (jax.nn.softplus(raw_scale) + _MIN_SCALE)
        return jax.nn.log_softmax(logits), mu + sigma * loc, scale

    def sample(self, noise: jax.Array, context: jax.Array) -> jax.Array:
        log_w, loc, scale = self._mixture(context)
        cum = jnp.cumsum(jnp.exp(log_w))
        k = jnp.minimum(jnp.sum(cum < ndtr(noise[0])), self.num_components - 1)
        return (loc[k] + scale[k] * noise[1])[None]

    def log_prob(self, x: jax.Array, context: jax.Array) -> jax.Array:
        log_w, loc, scale = self._mixture(context)
        return jax.nn.logsumexp(log_w + jax.scipy.stats.norm.logpdf(x[0], loc, scale))

    def cdf(self, x: jax.Array, context: jax.Array) -> jax.Array:
        """Conditional CDF ``sum_k pi_k Phi((x - mu_k) / sigma_k)``."""
        log_w, loc, scale = self._mixture(context)
        return jnp.sum(jnp.exp(log_w) * ndtr((x[0] - loc) / scale))

    def law(self, context: jax.Array) -> distrax.Distribution:
        """``distrax.MixtureSameFamily(Categorical(pi(c)), Normal(mu(c), sigma(c)))``, with cdf."""
        import distrax  # here, not at import: distrax loads tfp's jax substrate (~0.7 s)

        from dcma_jax.generators.distributions import MixtureWithCdf

        log_w, loc, scale = self._mixture(context)
        return MixtureWithCdf(distrax.Categorical(logits=log_w), distrax.Normal(loc, scale))
