r"""distrax views of generators: the conditional law of a node at one context.

:meth:`Generator.distribution(variables, context) <dcma_jax.generators.Generator.distribution>`
returns a ``distrax.Distribution`` over the scalar node value. Generators build it from
distrax's own parts where they fit (their ``law`` method): ``distrax.Normal`` (linear),
:class:`MixtureWithCdf` — ``distrax.MixtureSameFamily`` of normals — (mdn), an
:class:`IncreasingTransformed` normal pushed through :class:`FlowBijector` (flow),
``distrax.Bernoulli`` (binary nodes). Any other generator gets :class:`GeneratorDistribution`,
which wraps its ``sample``, ``log_prob`` and ``cdf``.

The module imports distrax (and with it tfp's jax substrate, ~0.7 s), so the generators
import it only when a distribution is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import distrax
import jax
import jax.numpy as jnp

from dcma_jax.generators.base import apply_batched
from dcma_jax.generators.flow import flow_forward, flow_inverse

if TYPE_CHECKING:
    from dcma_jax.generators.base import Generator


class GeneratorDistribution(distrax.Distribution):
    r"""The law of a generator at one context, through the generator's own methods.

    ``sample`` draws ``z ~ N(0, I_{noise_dim})`` and returns ``generator.sample(z, c)``: the
    distribution the Monte Carlo core simulates. ``log_prob`` and ``cdf`` are the generator's,
    applied elementwise; they raise ``NotImplementedError`` where it has none (a diffusion
    model has no density: it is trained by score matching and defines its law only through
    its sampler, whose CDF is ``Phi(inverse(x))``).

    A pytree (distrax's ``Jittable``): the generator is static metadata — generators hash — and
    the variables and context are leaves.

    Args:
      generator: the (unbound) generator.
      variables: its variables.
      context: ``(context_dim,)`` context.
    """

    def __init__(self, generator: Generator, variables: Any, context: jax.Array):
        self._generator = generator
        self._variables = variables
        self._context = context

    @property
    def event_shape(self) -> tuple[int, ...]:
        return ()

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return ()

    @property
    def dtype(self) -> jnp.dtype:
        return self._context.dtype

    def _sample_n(self, key: jax.Array, n: int) -> jax.Array:
        noise = jax.random.normal(key, (n, type(self._generator).noise_dim), self.dtype)
        context = jnp.broadcast_to(self._context, (n, self._context.shape[0]))
        return apply_batched(self._generator, "sample", self._variables, noise, context)[:, 0]

    def _elementwise(self, method: str, value: jax.Array) -> jax.Array:
        cls = type(self._generator)
        if not cls.implements(method):
            why = "no density: its law is defined by its sampler" if method == "log_prob" else ""
            raise NotImplementedError(
                f"{cls.__name__} has no {method}{f' ({why})' if why else ''}, so its "
                f"distribution supports only {self._supported()}"
            )
        value = jnp.asarray(value, self.dtype)
        flat = value.reshape(-1, 1)
        context = jnp.broadcast_to(self._context, (flat.shape[0], self._context.shape[0]))
        return apply_batched(self._generator, method, self._variables, flat, context).reshape(
            value.shape
        )

    def _supported(self) -> str:
        cls = type(self._generator)
        parts = ["sample"] + [m for m in ("log_prob", "cdf") if cls.implements(m)]
        return ", ".join(parts)

    def log_prob(self, value: jax.Array) -> jax.Array:
        """The generator's ``log_prob`` at every element of ``value``."""
        return self._elementwise("log_prob", value)

    def cdf(self, value: jax.Array) -> jax.Array:
        """The generator's ``cdf`` at every element of ``value``."""
        return self._elementwise("cdf", value)

    def log_cdf(self, value: jax.Array) -> jax.Array:
        """``log cdf(value)``."""
        return jnp.log(self.cdf(value))


class FlowBijector(distrax.Bijector):
    r"""A :class:`~dcma_jax.generators.SplineFlow`'s map ``T(.; c)`` at one context.

    Scalar events (``event_ndims_in = 0``), applied elementwise; forward is ``sample``'s map
    from noise, inverse the normal score, both through the flow's own kernel
    (:func:`~dcma_jax.generators.flow.flow_forward`, ``flow_inverse``).

    Args:
      layers: per-layer ``(x_knots, y_knots, slopes, shift, log_scale)`` stacked on axis 0.
      bound: the spline interval's half-width.
    """

    def __init__(self, layers: tuple[jax.Array, ...], bound: float):
        super().__init__(event_ndims_in=0)
        self._layers = tuple(layers)
        self._bound = bound

    def forward_and_log_det(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``y = T(x)`` and ``log T'(x)``, elementwise."""
        return jnp.vectorize(lambda z: flow_forward(z, self._layers, self._bound))(x)

    def inverse_and_log_det(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``x = T^{-1}(y)`` and ``log (T^{-1})'(y) = -log T'(x)``, elementwise."""
        x, log_det = jnp.vectorize(lambda v: flow_inverse(v, self._layers, self._bound))(y)
        return x, -log_det


class IncreasingTransformed(distrax.Transformed):
    r"""``distrax.Transformed`` of a scalar law by an increasing bijector, plus its CDF.

    For ``Y = f(X)`` with ``f`` strictly increasing, ``F_Y(y) = F_X(f^{-1}(y))``; distrax's
    ``Transformed`` leaves ``cdf`` out because it does not hold for every bijector.
    """

    def cdf(self, value: jax.Array) -> jax.Array:
        """``F_X(f^{-1}(value))``."""
        return self.distribution.cdf(self.bijector.inverse(value))

    def log_cdf(self, value: jax.Array) -> jax.Array:
        """``log F_X(f^{-1}(value))``."""
        return self.distribution.log_cdf(self.bijector.inverse(value))


class MixtureWithCdf(distrax.MixtureSameFamily):
    r"""``distrax.MixtureSameFamily`` of scalar components, plus ``cdf = sum_k pi_k F_k``."""

    def log_cdf(self, value: jax.Array) -> jax.Array:
        """``log sum_k pi_k F_k(value)``, by log-sum-exp."""
        component = self.components_distribution.log_cdf(jnp.expand_dims(value, -1))
        return jax.nn.logsumexp(component + self.mixture_distribution.logits, -1)

    def cdf(self, value: jax.Array) -> jax.Array:
        """``sum_k pi_k F_k(value)``."""
        component = self.components_distribution.cdf(jnp.expand_dims(value, -1))
        return jnp.sum(component * self.mixture_distribution.probs, -1)
