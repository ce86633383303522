"""``Generator.distribution``: every generator's conditional law as a ``distrax.Distribution``.

For each built-in family (and a user subclass without a ``law``, which gets the generic
wrapper) one jitted function builds the distribution at one context and queries it; the
tests compare its ``log_prob`` and ``cdf`` with the generator's own methods and with scipy
where there is a closed form, its samples' shape, and its samples against its own CDF
(one-sample KS, or an exact binomial test for binary nodes; alpha = 1e-3, fixed seeds).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import chex
import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from dcma_jax.generators import (
    BernoulliMLP,
    BinaryGLM,
    Diffusion,
    Generator,
    LinearGaussian,
    MixtureDensityNetwork,
    SplineFlow,
    apply_batched,
    init_params,
)
from dcma_jax.generators.distributions import GeneratorDistribution
from dcma_jax.generators.flow import rq_spline_forward, rq_spline_inverse, spline_knots
from dcma_jax.generators.networks import MLP

CONTEXT_DIM = 3
N_SAMPLES = 2000
VALUES = jnp.linspace(-4.0, 4.0, 33)
_ALPHA = 1e-3


class UserGaussian(Generator):
    """A user subclass with no ``law``: its distribution is the generic wrapper (unregistered)."""

    hidden: Sequence[int] = (8,)

    def setup(self) -> None:
        self.net = MLP(tuple(self.hidden), 2)

    def _loc_scale(self, context):
        loc, raw_scale = self.net(context)
        return loc, nn.softplus(raw_scale) + 1e-3

    def sample(self, noise, context):
        loc, scale = self._loc_scale(context)
        return (loc + scale * noise[0])[None]

    def log_prob(self, x, context):
        loc, scale = self._loc_scale(context)
        return jax.scipy.stats.norm.logpdf(x[0], loc, scale)

    def inverse(self, x, context):
        loc, scale = self._loc_scale(context)
        return ((x[0] - loc) / scale)[None]


MODULES = {
    "linear": (LinearGaussian(), "continuous"),
    "linear-logit": (BinaryGLM(), "binary"),
    "linear-probit": (BinaryGLM(link="probit"), "binary"),
    "mdn": (MixtureDensityNetwork(hidden=(8,), num_components=3), "continuous"),
    "mdn-binary": (BernoulliMLP(hidden=(8,)), "binary"),
    "flow": (SplineFlow(num_layers=2, hidden=(8,), num_bins=6), "continuous"),
    "diffusion": (Diffusion(hidden=(8,), num_steps=10), "continuous"),
    "user": (UserGaussian(), "continuous"),
}
LAW_TYPES = {
    "linear": distrax.Normal,
    "linear-logit": distrax.Bernoulli,
    "linear-probit": distrax.Bernoulli,
    "mdn": distrax.MixtureSameFamily,
    "mdn-binary": distrax.Bernoulli,
    "flow": distrax.Transformed,
    "diffusion": GeneratorDistribution,
    "user": GeneratorDistribution,
}
CONTEXT = jnp.asarray([0.4, -0.7, 1.1], jnp.float32)


def _variables(module: Generator, seed: int = 0):
    """``N(0, 0.25 / fan_in)`` kernels, ``N(0, 0.05^2)`` others, drawn on the host."""
    shapes = jax.eval_shape(lambda key: init_params(module, key, CONTEXT_DIM), jax.random.key(0))
    rng = np.random.default_rng(seed)

    def draw(leaf):
        scale = 0.5 / math.sqrt(leaf.shape[-2]) if len(leaf.shape) >= 2 else 0.05
        return jnp.asarray(rng.normal(0.0, scale, leaf.shape), leaf.dtype)

    return jax.tree.map(draw, shapes)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _queries(module: Generator, kind: str, variables, key: jax.Array) -> dict[str, jax.Array]:
    """The distribution at ``CONTEXT``, queried, next to the generator's own methods."""
    law = module.distribution(variables, CONTEXT)
    values = jnp.array([0.0, 1.0]) if kind == "binary" else VALUES
    contexts = jnp.broadcast_to(CONTEXT, (values.shape[0], CONTEXT_DIM))

    def own(method):
        return apply_batched(module, method, variables, values[:, None], contexts)

    out = {"sample": law.sample(seed=key, sample_shape=(N_SAMPLES,))}
    noise = jax.random.normal(key, (N_SAMPLES, type(module).noise_dim))
    out["own_sample"] = apply_batched(
        module, "sample", variables, noise, jnp.broadcast_to(CONTEXT, (N_SAMPLES, CONTEXT_DIM))
    )[:, 0]
    if module.implements("log_prob"):
        out["log_prob"], out["own_log_prob"] = law.log_prob(values), own("log_prob")
        # The batching recipe of Generator.distribution's docstring.
        out["vmapped_log_prob"] = jax.vmap(
            lambda c, x: module.distribution(variables, c).log_prob(x)
        )(contexts, values)
    if module.implements("cdf") or kind == "binary":
        out["cdf"] = law.cdf(values)
        out["sample_cdf"] = law.cdf(out["sample"])
    if module.implements("cdf"):
        out["own_cdf"] = own("cdf")
    return out


_CACHE: dict[str, tuple[Generator, str, dict[str, np.ndarray]]] = {}


def _results(name: str):
    if name not in _CACHE:
        module, kind = MODULES[name]
        out = _queries(module, kind, _variables(module), jax.random.key(7))
        _CACHE[name] = module, kind, jax.tree.map(np.asarray, out)
    return _CACHE[name]


@pytest.fixture(params=list(MODULES))
def results(request):
    return (request.param, *_results(request.param))


def test_distribution_type_and_sample_shape(results):
    name, module, kind, out = results
    law = jax.eval_shape(module.distribution, _variables(module), CONTEXT)  # traced only
    assert isinstance(law, LAW_TYPES[name])
    chex.assert_shape(out["sample"], (N_SAMPLES,))
    chex.assert_type(out["sample"], float)
    assert np.all(np.isfinite(out["sample"]))
    if kind == "binary":
        assert set(np.unique(out["sample"])) <= {0.0, 1.0}


def test_log_prob_and_cdf_match_the_generator(results):
    # Same float32 closed forms evaluated by different code (distrax's Normal, mixture,
    # Transformed and Bernoulli formulas): agreement to float32 rounding of O(1) values.
    name, module, kind, out = results
    if "log_prob" in out:
        np.testing.assert_allclose(out["log_prob"], out["own_log_prob"], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out["vmapped_log_prob"], out["log_prob"], rtol=1e-6)
    if "own_cdf" in out:
        np.testing.assert_allclose(out["cdf"], out["own_cdf"], rtol=1e-5, atol=1e-6)


def test_samples_follow_the_distributions_cdf(results):
    name, module, kind, out = results
    if "cdf" not in out:
        pytest.skip("no cdf")
    if kind == "binary":
        p_one = 1.0 - float(out["cdf"][0])  # cdf(0) = P(x = 0)
        ones = int(out["sample"].sum())
        assert scipy.stats.binomtest(ones, N_SAMPLES, p_one).pvalue > _ALPHA
        return
    # Under H0 cdf(sample) is uniform; the probability-integral transform needs no grid.
    assert scipy.stats.kstest(out["sample_cdf"], "uniform").pvalue > _ALPHA


@pytest.mark.parametrize("name", ["linear", "flow", "diffusion", "user"])
def test_sample_pushes_the_same_noise_through_the_generator(name):
    # distrax.Normal, the Transformed flow and the generic wrapper all draw z ~ N(0, 1) with
    # jax.random.normal(key, ...) and map it by the generator's own map.
    module, kind, out = _results(name)
    np.testing.assert_allclose(out["sample"], out["own_sample"], rtol=1e-5, atol=1e-5)


def test_linear_gaussian_matches_scipy():
    module, _, out = _results("linear")
    p = jax.tree.map(np.float64, _variables(module))["params"]
    loc = np.asarray(CONTEXT, np.float64) @ p["linear"]["kernel"][:, 0] + p["linear"]["bias"][0]
    scale = np.exp(p["log_scale"])
    values = np.asarray(VALUES, np.float64)
    np.testing.assert_allclose(
        out["log_prob"], scipy.stats.norm.logpdf(values, loc, scale), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(out["cdf"], scipy.stats.norm.cdf(values, loc, scale), atol=1e-6)


@pytest.mark.parametrize("name", ["linear-logit", "linear-probit"])
def test_binary_glm_matches_scipy_bernoulli(name):
    module, _, out = _results(name)
    p = jax.tree.map(np.float64, _variables(module))["params"]["linear"]
    eta = np.asarray(CONTEXT, np.float64) @ p["kernel"][:, 0] + p["bias"][0]
    prob = scipy.special.expit(eta) if module.link == "logit" else scipy.stats.norm.cdf(eta)
    np.testing.assert_allclose(out["log_prob"], scipy.stats.bernoulli.logpmf([0, 1], prob), 1e-5)
    np.testing.assert_allclose(out["cdf"], scipy.stats.bernoulli.cdf([0, 1], prob), 1e-6)


def test_mixture_matches_scipy():
    module, _, out = _results("mdn")
    variables = _variables(module)
    log_w, loc, scale = (
        np.asarray(a, np.float64)
        for a in module.apply(variables, CONTEXT, method=MixtureDensityNetwork._mixture)
    )
    values = np.asarray(VALUES, np.float64)[:, None]
    weights = np.exp(log_w)
    density = np.sum(weights * scipy.stats.norm.pdf(values, loc, scale), axis=1)
    cdf = np.sum(weights * scipy.stats.norm.cdf(values, loc, scale), axis=1)
    np.testing.assert_allclose(out["log_prob"], np.log(density), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["cdf"], cdf, atol=1e-6)


def test_untrained_flow_with_a_zero_output_layer_is_scipy_standard_normal():
    flow = SplineFlow(num_layers=2, hidden=(8,), output_init=0.0)
    # Jitted: eager initialisation dispatches op by op (~3 s on two cores).
    variables = jax.jit(init_params, static_argnums=(0, 2))(flow, jax.random.key(0), CONTEXT_DIM)
    values = np.asarray(VALUES, np.float64)

    @jax.jit
    def query(variables):
        law = flow.distribution(variables, CONTEXT)
        return law.log_prob(VALUES), law.cdf(VALUES)

    log_prob, cdf = query(variables)  # the zero output layer makes every layer the identity
    np.testing.assert_allclose(log_prob, scipy.stats.norm.logpdf(values), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(cdf, scipy.stats.norm.cdf(values), atol=1e-6)


@pytest.mark.parametrize("name", ["linear", "user"])
def test_distribution_is_a_pytree_that_crosses_jit(name):
    module, _, out = _results(name)
    law = jax.jit(module.distribution)(_variables(module), CONTEXT)
    np.testing.assert_allclose(law.log_prob(VALUES), out["log_prob"], rtol=1e-5, atol=1e-5)


def test_distribution_takes_one_context():
    module = LinearGaussian()
    batch = jnp.zeros((4, CONTEXT_DIM))
    with pytest.raises(AssertionError, match=r"rank 2 \(shape \(4, 3\)\) but expected 1"):
        module.distribution(_variables(module), batch)


def test_diffusion_distribution_has_no_density():
    module, _, out = _results("diffusion")
    law = module.distribution(_variables(module), CONTEXT)
    with pytest.raises(NotImplementedError, match=r"Diffusion has no log_prob \(no density"):
        law.log_prob(0.0)
    assert "cdf" in out  # Phi(inverse): sample and cdf are supported


def test_spline_kernel_matches_distrax_kernel_on_the_same_knots():
    # Reference implementation: distrax's scalar rational-quadratic spline (its private kernel,
    # since the public bijector parametrises knots differently), fed our knots. Same formulas
    # (Durkan et al. 2019, eq. 4-8), differently arranged. Forward: agreement to float32
    # rounding. Inverse: a preimage is only determined to (rounding of y) / slope, so it is
    # compared in units of y — |u_ours - u_distrax| * s'(u) — where both kernels must reach
    # float32 rounding (before the b < 0 branch ours was 2.5e-5 off here, distrax 2e-7).
    from distrax._src.bijectors import rational_quadratic_spline as distrax_rqs

    raw = np.random.default_rng(3).normal(0.0, 1.5, 3 * 8 - 1)
    knots = spline_knots(jnp.asarray(raw, jnp.float32), 8, 3.0)
    u = jnp.linspace(-2.99, 2.99, 1001)

    @jax.jit
    def both(u):
        ours = jax.vmap(lambda a: rq_spline_forward(a, *knots, 3.0))(u)
        theirs = jax.vmap(lambda a: distrax_rqs._rational_quadratic_spline_fwd(a, *knots))(u)
        y = ours[0]
        ours_inv = jax.vmap(lambda a: rq_spline_inverse(a, *knots, 3.0))(y)
        theirs_inv = jax.vmap(lambda a: distrax_rqs._rational_quadratic_spline_inv(a, *knots))(y)
        return ours, theirs, ours_inv, theirs_inv

    ours, theirs, ours_inv, theirs_inv = (jax.tree.map(np.asarray, t) for t in both(u))
    np.testing.assert_allclose(ours[0], theirs[0], atol=2e-6)
    np.testing.assert_allclose(ours[1], theirs[1], atol=5e-5)  # log of slopes down to 2e-5
    slope = np.exp(ours[1])
    assert np.max(np.abs(ours_inv[0] - np.asarray(u)) * slope) < 1e-6
    assert np.max(np.abs(ours_inv[0] - theirs_inv[0]) * slope) < 1e-6
    # Ours reports the forward log-slope at the preimage, distrax the inverse's (its negative);
    # compared where the preimage is well determined (slope > 0.05).
    steep = slope > 0.05
    np.testing.assert_allclose(ours_inv[1][steep], -theirs_inv[1][steep], atol=5e-5)
