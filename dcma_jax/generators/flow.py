r"""Conditional normalizing flow for a one-dimensional node: stacked rational-quadratic splines.

The flow maps base noise ``z ~ N(0, 1)`` to a node value ``x`` through ``L`` layers

.. math::

    x = T_L \circ \dots \circ T_1(z), \qquad
    T_l(u) = a_l(c) + b_l(c)\, s_l(u; c),

where ``s_l`` is a monotone rational-quadratic spline (Durkan et al., 2019) on ``[-B, B]``
with ``K`` bins, the identity outside it (linear tails), and ``a_l, b_l > 0`` a conditional
affine layer that recentres and rescales between splines; the last layer's affine map also
carries a linear baseline ``mu(c) + sigma (.)`` that training starts at the least-squares fit
(:class:`~dcma_jax.generators.networks.LinearBaseline`). Every parameter of every layer
is read off the context ``c`` by one MLP (for a 1-D node there is nothing else to condition
on, so one network can emit all layers' parameters at once; set ``shared_conditioner=False``
for one network a layer, the layout of flowjax's masked autoregressive flow with ``dim=1``).

Because ``T = T_L ∘ ... ∘ T_1`` is strictly increasing,

* ``sample(z, c) = T(z)``,
* ``inverse(x, c) = T^{-1}(x) = Phi^{-1}(F(x | c))`` — the conditional normal score,
* ``cdf(x, c) = Phi(T^{-1}(x))`` (the base class's default from ``inverse``),
* ``log_prob(x, c) = log phi(T^{-1}(x)) - log T'(T^{-1}(x))``,

all in closed form: the spline inverse solves one quadratic per layer, no root finding.

Reference: C. Durkan, A. Bekasov, I. Murray, G. Papamakarios, "Neural Spline Flows",
NeurIPS 2019 (arXiv:1906.04032).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from dcma_jax.generators.base import Generator
from dcma_jax.generators.networks import (
    LinearBaseline,
    treatment_interactions,
    with_least_squares_baseline,
)

if TYPE_CHECKING:
    import distrax

_LOG_SQRT_2PI = 0.9189385332046727


# --------------------------------------------------------------------------------------------
# The spline kernel: one scalar, one layer. Pure functions, written for a single example.
# --------------------------------------------------------------------------------------------


def spline_param_count(num_bins: int) -> int:
    """Unconstrained parameters of one spline: ``K`` widths, ``K`` heights, ``K - 1`` slopes."""
    return 3 * num_bins - 1


def spline_knots(
    raw: jax.Array,
    num_bins: int,
    bound: float,
    min_bin_size: float = 1e-3,
    min_derivative: float = 1e-3,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""Knots of a monotone rational-quadratic spline from unconstrained parameters.

    Widths and heights are softmaxes floored at ``min_bin_size`` (as a share of ``2B``);
    interior slopes are ``min_derivative + softplus(.)``, shifted so that all-zero ``raw``
    gives slope 1, i.e. the identity spline. The end slopes are fixed at 1 so that the
    spline joins its identity tails with a continuous derivative (continuous density).

    Args:
      raw: ``(3K - 1,)`` unconstrained parameters.
      num_bins: ``K``.
      bound: ``B``; the spline acts on ``[-B, B]``.
      min_bin_size: smallest bin width/height as a share of the interval.
      min_derivative: smallest interior slope.

    Returns:
      ``(x_knots, y_knots, slopes)``, each ``(K + 1,)``, increasing knots from ``-B`` to ``B``.
    """
    k = num_bins
    dtype = raw.dtype
    steps = jnp.arange(k + 1, dtype=dtype)

    def knots(u: jax.Array) -> jax.Array:
        e = jnp.exp(u - jnp.max(u))
        # A K-term running sum written out: under vmap it fuses into one elementwise loop on
        # CPU, where a matmul by a triangular matrix or a cumsum adds extra passes over memory.
        partial = [jnp.zeros((), dtype)]
        for i in range(k):
            partial.append(partial[-1] + e[i])
        cum = jnp.stack(partial) / partial[-1]
        return bound * (2.0 * (min_bin_size * steps + (1.0 - k * min_bin_size) * cum) - 1.0)

    # Softplus shift so that raw = 0 gives slope exactly 1: log(expm1(1 - min_derivative)).
    shift = jnp.log(jnp.expm1(1.0 - min_derivative))
    inner = min_derivative + jax.nn.softplus(raw[2 * k :] + shift)
    one = jnp.ones((1,), dtype)
    slopes = jnp.concatenate([one, inner, one])
    return knots(raw[:k]), knots(raw[k : 2 * k]), slopes


def _bin(
    value: jax.Array, knots: jax.Array, x_knots: jax.Array, y_knots: jax.Array, slopes: jax.Array
) -> tuple[jax.Array, ...]:
    """Left knot, width, height and end slopes of the bin of ``knots`` that holds ``value``."""
    k = jnp.sum(value >= knots[1:-1])
    x0, x1 = x_knots[k], x_knots[k + 1]
    y0, y1 = y_knots[k], y_knots[k + 1]
    return x0, x1 - x0, y0, y1 - y0, slopes[k], slopes[k + 1]


def rq_spline_forward(
    u: jax.Array, x_knots: jax.Array, y_knots: jax.Array, slopes: jax.Array, bound: float
) -> tuple[jax.Array, jax.Array]:
    r"""Forward spline ``y = s(u)`` and ``log s'(u)`` for one scalar ``u``.

    In bin ``k`` with ``xi = (u - x_k) / w_k`` and bin slope ``s_k = h_k / w_k``
    (Durkan et al. 2019, eq. 4 and 5):

    .. math::

        y = y_k + \frac{h_k (s_k \xi^2 + d_k \xi (1 - \xi))}
                       {s_k + (d_k + d_{k+1} - 2 s_k) \xi (1 - \xi)}.

    Outside ``[-B, B]`` the map is the identity with log-slope 0.
    """
    inside = jnp.abs(u) < bound
    uc = jnp.clip(u, -bound, bound)
    x0, w, y0, h, d0, d1 = _bin(uc, x_knots, x_knots, y_knots, slopes)
    s = h / w
    xi = (uc - x0) / w
    xi1 = xi * (1.0 - xi)
    den = s + (d0 + d1 - 2.0 * s) * xi1
    y = y0 + h * (s * xi * xi + d0 * xi1) / den
    deriv = s * s * (d1 * xi * xi + 2.0 * s * xi1 + d0 * (1.0 - xi) ** 2) / (den * den)
    return jnp.where(inside, y, u), jnp.where(inside, jnp.log(deriv), 0.0)


def rq_spline_inverse(
    y: jax.Array, x_knots: jax.Array, y_knots: jax.Array, slopes: jax.Array, bound: float
) -> tuple[jax.Array, jax.Array]:
    r"""Inverse spline ``u = s^{-1}(y)`` and ``log s'(u)`` (the forward log-slope) for one scalar.

    Solves the quadratic ``a xi^2 + b xi + c = 0`` of Durkan et al. (2019, eq. 6–8) for its
    root in ``[0, 1]``, ``xi = 2c / (-b - sqrt(b^2 - 4ac)) = (-b + sqrt(b^2 - 4ac)) / (2a)``,
    in whichever form has no cancellation: the first for ``b >= 0``, the second for ``b < 0``
    (then ``a = h s - b > 0``). The first form alone cancels where ``b < 0``: its roots were off
    by up to 2.5e-5 in units of ``y`` (~200 float32 ulps), against 2e-7 for distrax's kernel,
    which branches on ``b`` the same way (``tests/test_distributions.py``).
    """
    inside = jnp.abs(y) < bound
    yc = jnp.clip(y, -bound, bound)
    x0, w, y0, h, d0, d1 = _bin(yc, y_knots, x_knots, y_knots, slopes)
    s = h / w
    dy = yc - y0
    kappa = d0 + d1 - 2.0 * s
    a = h * (s - d0) + dy * kappa
    b = h * d0 - dy * kappa
    c = -s * dy
    root = jnp.sqrt(jnp.maximum(b * b - 4.0 * a * c, 0.0))
    # Both denominators are bounded away from 0 on their own branch, so neither select passes
    # an inf or nan (nor its gradient) through: -b - root <= -2b < 0 when b > 0, 2a > 0 when b < 0.
    positive = b >= 0.0
    xi = jnp.where(positive, 2.0 * c, root - b) / jnp.where(positive, -b - root, 2.0 * a)
    xi = jnp.clip(xi, 0.0, 1.0)
    xi1 = xi * (1.0 - xi)
    den = s + kappa * xi1
    deriv = s * s * (d1 * xi * xi + 2.0 * s * xi1 + d0 * (1.0 - xi) ** 2) / (den * den)
    u = x0 + xi * w
    return jnp.where(inside, u, y), jnp.where(inside, jnp.log(deriv), 0.0)


def flow_forward(
    z: jax.Array, layers: tuple[jax.Array, ...], bound: float
) -> tuple[jax.Array, jax.Array]:
    r"""``x = T_L o ... o T_1(z)`` and ``log T'(z)`` for one scalar ``z``.

    Args:
      z: scalar base noise.
      layers: per-layer ``(x_knots, y_knots, slopes, shift, log_scale)`` stacked on axis 0
        (``SplineFlow._layers`` at one context).
      bound: the spline interval's half-width ``B``.
    """

    def layer(carry, p):
        u, log_det = carry
        x_knots, y_knots, slopes, shift, log_scale = p
        v, ld = rq_spline_forward(u, x_knots, y_knots, slopes, bound)
        return (shift + jnp.exp(log_scale) * v, log_det + ld + log_scale), None

    # A rolled scan over layers: compiles ~3x faster than unrolling, and ran faster too.
    (x, log_det), _ = jax.lax.scan(layer, (z, jnp.zeros((), z.dtype)), layers)
    return x, log_det


def flow_inverse(
    x: jax.Array, layers: tuple[jax.Array, ...], bound: float
) -> tuple[jax.Array, jax.Array]:
    """``z = T^{-1}(x)`` and ``log T'(z)`` (the forward log-slope) for one scalar ``x``."""

    def layer(carry, p):
        v, log_det = carry
        x_knots, y_knots, slopes, shift, log_scale = p
        u, ld = rq_spline_inverse(
            (v - shift) * jnp.exp(-log_scale), x_knots, y_knots, slopes, bound
        )
        return (u, log_det + ld + log_scale), None

    (z, log_det), _ = jax.lax.scan(layer, (x, jnp.zeros((), x.dtype)), layers, reverse=True)
    return z, log_det


# --------------------------------------------------------------------------------------------
# The generator.
# --------------------------------------------------------------------------------------------


class _Conditioner(nn.Module):
    """Context MLP with SiLU hidden layers and an output layer initialised near zero.

    With ``output_init = 0`` (the default) the output layer is zero, so every flow layer
    starts as the identity and an initialised flow is its linear baseline: ``N(0, 1)`` from
    ``init``, the least-squares linear-Gaussian fit after ``warm_start``. A positive value
    draws its kernel from ``N(0, output_init^2)``: the start is then only close to the
    baseline, but the hidden layers get gradients from the first step.
    """

    hidden: Sequence[int]
    out: int
    output_init: float = 0.0

    @nn.compact
    def __call__(self, context: jax.Array) -> jax.Array:
        h = context
        for width in self.hidden:
            h = nn.silu(nn.Dense(width)(h))
        zeros = nn.initializers.zeros
        kernel = nn.initializers.normal(self.output_init) if self.output_init else zeros
        return nn.Dense(self.out, kernel_init=kernel, bias_init=zeros, name="output")(h)


class SplineFlow(Generator):
    r"""Conditional rational-quadratic spline flow for a continuous 1-D node.

    ``x = T(z; c)`` with ``L = num_layers`` layers, each a monotone rational-quadratic spline
    with ``num_bins`` bins on ``[-bound, bound]`` (identity tails) followed by a conditional
    affine map ``u -> a(c) + b(c) u``. Trained by maximum likelihood (the default loss,
    ``-log_prob``). Exact, invertible and differentiable in both noise and context, so
    common random numbers, the normal score used by sensitivity analysis and ``jax.grad``
    all apply.

    Attributes:
      num_layers: spline layers ``L``. Two by default: on five of the recovery study's SCMs
        (n = 2000) four layers gave effects up to 1.4x the RMSE of two (never lower beyond
        noise) at 1.4-2.2x the fit time (``experiments/results/flow_tuning.md``).
      hidden: hidden widths of the context MLP.
      num_bins: spline bins ``K``.
      bound: half-width ``B`` of the spline interval; outside it each spline is the identity.
        Data are standardised, so 5 covers all but extreme tails; samples outside stay sane
        (linear tails, Gaussian base).
      shared_conditioner: one MLP emits every layer's parameters (default; fewer FLOPs, the
        context is the only input for a 1-D node). ``False``: one MLP a layer.
      min_scale: floor of the affine scales ``b_l(c)``.
      treatment_interactions: how many leading context columns (the treatment block) the
        flow also reads multiplied by each later column, so that its linear baseline and
        least-squares start are the exposure-mediator interaction model ``A + M + A M + X +
        A X``. ``None`` (the default): the model's treatment width, filled in when a
        :class:`~dcma_jax.model.Model` is built (a flow used outside one reads none); 0: the
        plain linear baseline. Early stopping shrinks the network towards its start, and from
        the plain one it kept too little of an outcome's ``A x M`` interaction: on the binary-
        mediator SCM effect RMSE went from 1.32-1.84x mdn's to 0.90-1.12x, the worst recovery
        cell against mdn from 1.87x to 1.51x (``experiments/results/flow_tuning.md``).
      output_init: SD of the conditioner's initial output kernel. 0 (the default) starts the
        flow exactly at its linear baseline; a positive value starts near it, with the exact
        baseline kept as a candidate (:meth:`baseline_candidate`). No value beat 0 on every recovery
        SCM: 0.1 lowered the binary-mediator SCM's effect errors, raised the heteroscedastic
        one's, and with the candidate kept the interaction-free baseline on 4 of 20 data sets
        (``experiments/results/flow_tuning.md``).

    Example:
      >>> flow = SplineFlow()
      >>> variables = init_params(flow, jax.random.key(0), context_dim=3)
      >>> x = flow.apply(variables, jnp.array([0.3]), jnp.zeros(3), method=flow.sample)
    """

    registry_name: ClassVar[str] = "flow"
    kinds: ClassVar[tuple[str, ...]] = ("continuous",)
    noise_dim: ClassVar[int] = 1
    # Reduce on plateau by default (TrainConfig.plateau_epochs): effect RMSE x0.68-0.90 on four
    # of five recovery SCMs against the plain schedule, 1.02-1.16 (noise) on the fifth
    # (experiments/results/flow_tuning.md).
    plateau_epochs: ClassVar[int] = 4

    num_layers: int = 2
    hidden: Sequence[int] = (64, 64)
    num_bins: int = 8
    bound: float = 5.0
    shared_conditioner: bool = True
    min_scale: float = 1e-3
    output_init: float = 0.0
    treatment_interactions: int | None = None

    def setup(self) -> None:
        if self.num_layers < 1 or self.num_bins < 2 or self.bound <= 0:
            raise ValueError("need num_layers >= 1, num_bins >= 2 and bound > 0")
        width = self._layer_param_count()
        self.baseline = LinearBaseline()
        if self.shared_conditioner:
            self.conditioners = [
                _Conditioner(
                    tuple(self.hidden),
                    self.num_layers * width,
                    self.output_init,
                    name="conditioner",
                )
            ]
        else:
            # One plain MLP a layer. They all read the same context, so they are independent:
            # a short static list of modules compiles to plain matmuls (a vmapped stack of
            # MLPs compiles to batched matmuls with transposes, measured 1.3-2x slower on CPU).
            self.conditioners = [
                _Conditioner(
                    tuple(self.hidden), width, self.output_init, name=f"conditioner_{layer}"
                )
                for layer in range(self.num_layers)
            ]

    def _layer_param_count(self) -> int:
        return spline_param_count(self.num_bins) + 2

    @nn.nowrap
    def _features(self, context: jax.Array) -> jax.Array:
        """The context and its treatment interactions (``treatment_interactions``)."""
        return treatment_interactions(context, self.treatment_interactions or 0)

    @nn.nowrap
    def for_treatment_width(self, width: int) -> SplineFlow:
        """Fills ``treatment_interactions`` (if ``None``) with the model's treatment width."""
        if self.treatment_interactions is not None:
            return self
        return self.clone(treatment_interactions=width)

    def _layers(self, context: jax.Array) -> tuple[jax.Array, ...]:
        """Per-layer ``(x_knots, y_knots, slopes, shift, log_scale)``, stacked on axis 0."""
        context = self._features(context)
        raw = jnp.concatenate([net(context) for net in self.conditioners])
        raw = raw.reshape(self.num_layers, self._layer_param_count())
        n_spline = spline_param_count(self.num_bins)
        knots = jax.vmap(lambda r: spline_knots(r, self.num_bins, self.bound))(raw[:, :n_spline])
        shift = raw[:, n_spline]
        # Softplus offset so that raw = 0 gives scale exactly 1.
        offset = jnp.log(jnp.expm1(1.0 - self.min_scale))
        log_scale = jnp.log(self.min_scale + jax.nn.softplus(raw[:, n_spline + 1] + offset))
        # The linear baseline x = mu(c) + sigma T(z) folds into the last layer's affine map.
        mu, log_sigma = self.baseline(context)
        shift = shift.at[-1].set(mu + jnp.exp(log_sigma) * shift[-1])
        log_scale = log_scale.at[-1].add(log_sigma)
        return (*knots, shift, log_scale)

    @nn.nowrap
    def warm_start(
        self, variables: Any, x: jax.Array, context: jax.Array, weights: jax.Array
    ) -> Any:
        """Starts at the least-squares linear-Gaussian fit (the splines start as identities)."""
        return with_least_squares_baseline(variables, x, self._features(context), weights)

    @nn.nowrap
    def baseline_candidate(self, variables: Any) -> Any | None:
        """The warm start with the conditioners' output layers zeroed: the linear baseline.

        Zero outputs make every spline and affine map the identity, so the flow is exactly the
        least-squares linear-Gaussian fit. ``None`` when ``output_init`` is 0 (the start is it).
        """
        if not self.output_init:
            return None
        params = dict(variables["params"])
        for name, layers in params.items():
            if name.startswith("conditioner"):
                output = jax.tree.map(jnp.zeros_like, layers["output"])
                params[name] = {**layers, "output": output}
        return {**variables, "params": params}

    def _forward(self, z: jax.Array, context: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``x = T(z)`` and ``log T'(z)`` for a scalar ``z``."""
        return flow_forward(z, self._layers(context), self.bound)

    def _inverse(self, x: jax.Array, context: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``z = T^{-1}(x)`` and ``log T'(z)`` for a scalar ``x``."""
        return flow_inverse(x, self._layers(context), self.bound)

    def sample(self, noise: jax.Array, context: jax.Array) -> jax.Array:
        """``x = T(z; c)`` for ``z = noise[0]``; shape ``(1,)``."""
        return self._forward(noise[0], context)[0][None]

    def inverse(self, x: jax.Array, context: jax.Array) -> jax.Array:
        """Conditional normal score ``T^{-1}(x; c) = Phi^{-1}(F(x | c))``; shape ``(1,)``."""
        return self._inverse(x[0], context)[0][None]

    def log_prob(self, x: jax.Array, context: jax.Array) -> jax.Array:
        """``log phi(T^{-1}(x)) - log T'(T^{-1}(x))`` (change of variables)."""
        z, log_det = self._inverse(x[0], context)
        return -0.5 * z * z - _LOG_SQRT_2PI - log_det

    def law(self, context: jax.Array) -> distrax.Distribution:
        """``distrax.Transformed(N(0, 1), T(.; c))``, with ``cdf = Phi(T^{-1}(x))``."""
        import distrax  # here, not at import: distrax loads tfp's jax substrate (~0.7 s)

        from dcma_jax.generators.distributions import FlowBijector, IncreasingTransformed

        base = distrax.Normal(jnp.zeros((), context.dtype), jnp.ones((), context.dtype))
        return IncreasingTransformed(base, FlowBijector(self._layers(context), self.bound))
