r"""Conditional diffusion model for a one-dimensional node, sampled by a deterministic DDIM.

Forward (noising) process on the trigonometric variance-preserving schedule:

.. math::

    x_t = \alpha_t x_0 + \sigma_t \varepsilon, \qquad
    \alpha_t = \cos(\pi t / 2),\ \sigma_t = \sin(\pi t / 2),\ t \in [0, 1],

so ``x_1 = eps`` is exactly the ``N(0, 1)`` base noise. What is diffused is the standardised
residual ``(x - mu(c)) / sigma`` of a linear baseline fitted by least squares before training
(:class:`~dcma_jax.generators.networks.LinearBaseline`, fixed during training), so that an
under-trained network still carries the linear dependence on the context. A context MLP
predicts the velocity ``v = alpha_t eps - sigma_t x_0`` from ``(x_t, t, c)`` (Salimans & Ho,
2022); it is a reparametrised noise prediction, ``eps_hat = sigma_t x_t + alpha_t v_hat`` and
``x0_hat = alpha_t x_t - sigma_t v_hat``, and unlike ``eps`` it stays well conditioned at both
ends of the schedule. Training minimises the denoising score-matching loss
``E_{t, eps} |v_hat(x_t, t, c) - v|^2``.

Sampling integrates the probability-flow ODE from ``t = 1`` to ``t = 0`` with DDIM
(Song, Meng & Ermon, 2021) on ``num_steps`` equal steps in ``t``. On this schedule a DDIM step
is a rotation by the constant angle ``delta = pi / (2 num_steps)``:

.. math::

    x_{t - 1/N} = \cos(\delta)\, x_t - \sin(\delta)\, \hat v(x_t, t, c),

so a sample is a deterministic, differentiable function of ``(noise, context)`` compiled as one
``lax.scan``. Cost and accuracy both scale with ``num_steps`` (one network evaluation a step);
DDIM is first-order, so the sampler's own error shrinks like ``1 / num_steps`` — see
``docs/generators.md`` for measured numbers.

The discrete sampler is a strictly increasing map of the noise for any reasonably trained
network (each step is, when ``sin(delta) dv/dx < cos(delta)``), so it is inverted step by
step with a few fixed-point iterations: ``inverse`` is the exact normal score of the
distribution that ``sample`` draws from, and ``cdf = Phi(inverse)`` (the base class's
default). There is no density: ``log_prob`` raises ``NotImplementedError``, and so does
``log_prob`` of ``distribution(variables, context)``, which supports ``sample`` and ``cdf``.

Training randomness: the class declares the ``"diffusion"`` rng stream (``rng_stream``), so the
training loop applies the loss with ``rngs={"diffusion": key}``: a fresh key every minibatch,
and one fixed key for every validation pass, so that early stopping compares epochs on the
same diffusion times and noise rather than on a re-drawn Monte Carlo estimate. Called without
the stream (e.g. ``apply_batched`` with no ``rng``), the times and noise of one example come
from a key hashed from the bits of ``(x, context)`` and of the current parameters: a
deterministic function of ``(params, x, context)`` that still changes with every optimisation
step. Each example's loss averages ``num_levels`` stratified times
``t_j = (j + u_j) / num_levels``, lowering its variance.

References: J. Ho, A. Jain, P. Abbeel, "Denoising Diffusion Probabilistic Models", 2020;
J. Song, C. Meng, S. Ermon, "Denoising Diffusion Implicit Models", ICLR 2021;
T. Salimans, J. Ho, "Progressive Distillation for Fast Sampling of Diffusion Models", 2022.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from dcma_jax.generators.base import Generator
from dcma_jax.generators.networks import MLP, LinearBaseline, with_least_squares_baseline

RNG_STREAM = "diffusion"

_GOLDEN = 0x9E3779B1  # odd multiplier (2^32 / golden ratio) for a multiplicative hash


def _bits(values: jax.Array) -> jax.Array:
    """The float32 bit patterns of ``values`` as uint32."""
    values = jax.lax.stop_gradient(jnp.asarray(values, jnp.float32))
    return jax.lax.bitcast_convert_type(values, jnp.uint32)


def hashed_key(values: jax.Array, salt: jax.Array) -> jax.Array:
    """A PRNG key that is a deterministic function of the bits of ``values`` and ``salt``.

    ``sum_i bits_i * (2i + 1) * golden (mod 2^32)`` distinguishes nearby floats; threefry's
    ``fold_in`` then mixes it into a well-distributed key.
    """
    weights = (2 * jnp.arange(values.size, dtype=jnp.uint32) + 1) * jnp.uint32(_GOLDEN)
    digest = jnp.sum(_bits(values.ravel()) * weights, dtype=jnp.uint32)
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(0), digest), salt)


class Diffusion(Generator):
    r"""Conditional denoising diffusion model with a deterministic DDIM sampler.

    Attributes:
      hidden: hidden widths of the velocity MLP on ``(x_t, time features, context)``.
      num_steps: DDIM steps of ``sample`` (and of ``inverse``); the speed/accuracy knob.
        Sampling costs ``num_steps`` network evaluations; the sampler's error falls like
        ``1 / num_steps``. 50 is close to converged for smooth 1-D conditionals; 10–20 is
        faster and visibly coarser for sharp multimodal ones.
      num_frequencies: sinusoidal time features ``sin(2^k pi t), cos(2^k pi t)``,
        ``k < num_frequencies``.
      num_levels: stratified diffusion times per example in the training loss.
      inverse_iterations: fixed-point iterations per step when inverting the sampler.

    Example:
      >>> model = Diffusion(num_steps=20)
      >>> variables = init_params(model, jax.random.key(0), context_dim=3)
      >>> x = model.apply(variables, jnp.array([0.3]), jnp.zeros(3), method=model.sample)
    """

    registry_name: ClassVar[str] = "diffusion"
    kinds: ClassVar[tuple[str, ...]] = ("continuous",)
    noise_dim: ClassVar[int] = 1
    rng_stream: ClassVar[str] = RNG_STREAM

    hidden: Sequence[int] = (64, 64)
    num_steps: int = 50
    num_frequencies: int = 6
    num_levels: int = 8
    inverse_iterations: int = 3

    def setup(self) -> None:
        if self.num_steps < 1 or self.num_levels < 1 or self.inverse_iterations < 0:
            raise ValueError("need num_steps >= 1, num_levels >= 1, inverse_iterations >= 0")
        self.net = MLP(tuple(self.hidden), 1)
        self.baseline = LinearBaseline()

    @nn.nowrap
    def warm_start(
        self, variables: Any, x: jax.Array, context: jax.Array, weights: jax.Array
    ) -> Any:
        """Diffuses the residual of the least-squares linear-Gaussian fit."""
        return with_least_squares_baseline(variables, x, context, weights)

    def _standardise(self, x: jax.Array, context: jax.Array) -> jax.Array:
        """The baseline's standardised residual ``(x - mu(c)) / sigma``, which is diffused."""
        mu, log_sigma = self.baseline(context)
        return (x - mu) * jnp.exp(-log_sigma)

    def velocity(self, x_t: jax.Array, t: jax.Array, context: jax.Array) -> jax.Array:
        """Predicted velocity ``v_hat(x_t, t, c)`` for scalar ``x_t`` and ``t``; a scalar."""
        freqs = math.pi * 2.0 ** jnp.arange(self.num_frequencies, dtype=context.dtype)
        features = jnp.concatenate([x_t[None], jnp.sin(freqs * t), jnp.cos(freqs * t), context])
        return self.net(features)[0]

    def _key(self, x: jax.Array, context: jax.Array) -> jax.Array:
        if self.has_rng(RNG_STREAM):
            return self.make_rng(RNG_STREAM)
        # Parameter-dependent salt: new noise after every optimisation step.
        total = sum(jnp.sum(leaf) for leaf in jax.tree.leaves(self.variables))
        return hashed_key(jnp.concatenate([x, context]), _bits(total))

    def loss(self, x: jax.Array, context: jax.Array) -> jax.Array:
        """Denoising score matching ``mean_j |v_hat(x_{t_j}, t_j) - v_j|^2``, stratified times."""
        time_key, noise_key = jax.random.split(self._key(x, context))
        # The baseline stays at its warm start: denoising is not a likelihood, and would be
        # minimised by inflating sigma until the residual vanishes.
        x = jax.lax.stop_gradient(self._standardise(x, context))
        m = self.num_levels
        u = jax.random.uniform(time_key, (m,), x.dtype)
        t = (jnp.arange(m, dtype=x.dtype) + u) / m
        eps = jax.random.normal(noise_key, (m,), x.dtype)
        alpha, sigma = jnp.cos(0.5 * math.pi * t), jnp.sin(0.5 * math.pi * t)
        x_t = alpha * x[0] + sigma * eps
        target = alpha * eps - sigma * x[0]
        pred = jax.vmap(self.velocity, in_axes=(0, 0, None))(x_t, t, context)
        return jnp.mean((pred - target) ** 2)

    def _times(self, dtype: jnp.dtype) -> jax.Array:
        """Step start times ``1, 1 - 1/N, ..., 1/N``."""
        return 1.0 - jnp.arange(self.num_steps, dtype=dtype) / self.num_steps

    def sample(self, noise: jax.Array, context: jax.Array) -> jax.Array:
        """DDIM from ``x_1 = noise[0]`` to ``x_0``; shape ``(1,)``."""
        delta = 0.5 * math.pi / self.num_steps
        cos, sin = math.cos(delta), math.sin(delta)

        def step(x, t):
            return cos * x - sin * self.velocity(x, t, context), None

        x, _ = jax.lax.scan(step, noise[0], self._times(noise.dtype))
        mu, log_sigma = self.baseline(context)
        return (mu + jnp.exp(log_sigma) * x)[None]

    def inverse(self, x: jax.Array, context: jax.Array) -> jax.Array:
        r"""Noise that ``sample`` maps to ``x``: the sampler run backwards, step by step.

        Step ``x_s = cos(d) x_t - sin(d) v(x_t, t)`` is solved for ``x_t`` by the fixed-point
        iteration ``x_t <- (x_s + sin(d) v(x_t, t)) / cos(d)``, started from the explicit
        guess ``cos(d) x_s + sin(d) v(x_s, t)``; it contracts by ``tan(d) |dv/dx|`` a sweep.
        """
        delta = 0.5 * math.pi / self.num_steps
        cos, sin = math.cos(delta), math.sin(delta)

        def step(x_s, t):
            guess = cos * x_s + sin * self.velocity(x_s, t, context)

            def refine(_, x_t):
                return (x_s + sin * self.velocity(x_t, t, context)) / cos

            return jax.lax.fori_loop(0, self.inverse_iterations, refine, guess), None

        residual = self._standardise(x[0], context)
        z, _ = jax.lax.scan(step, residual, self._times(x.dtype), reverse=True)
        return z[None]
