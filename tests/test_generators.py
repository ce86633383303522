"""One generic test suite over every registered generator, plus a user subclass defined here.

Every ``(name, kind)`` pair in the registry — the built-in families and
:class:`HeteroscedasticGaussian`, registered by this module the way a user would register
theirs — runs the same contract tests: shapes and dtypes, determinism, jit against eager,
noise -> sample -> noise round trips, log-density normalisation and agreement with samples,
CDF monotonicity and ``d cdf / dx = exp(log_prob)``. The recovery tests fit generators with
``training.fit_generator`` to known conditional laws (Gaussian, heteroscedastic, bimodal,
skewed) and compare fitted with true draws by a two-sample KS test (see ``_KS_ALPHA``).

A generator's optional parts are detected by ``Generator.implements``: ``log_prob`` and
``inverse`` when overridden, ``cdf`` when overridden or derived from ``inverse``. The
jit-equals-eager test runs under ``chex.variants``; the ``distrax`` views of generators are
tested in ``tests/test_distributions.py``.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Sequence
from typing import ClassVar

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from absl.testing import parameterized
from jax.scipy.special import ndtr

from dcma_jax import training
from dcma_jax.generators import (
    BernoulliMLP,
    Diffusion,
    Generator,
    MixtureDensityNetwork,
    SplineFlow,
    apply_batched,
    generator_class,
    init_params,
    registered_names,
)
from dcma_jax.generators.base import NODE_KINDS
from dcma_jax.generators.flow import (
    rq_spline_forward,
    rq_spline_inverse,
    spline_knots,
    spline_param_count,
)
from dcma_jax.generators.networks import MLP, treatment_interactions, with_logistic_baseline
from dcma_jax.model import build_model

CONTEXT_DIM = 3


# --------------------------------------------------------------------------------------------
# A user-defined generator: the ~30 lines docs/generators.md shows.
# --------------------------------------------------------------------------------------------


class HeteroscedasticGaussian(Generator):
    """``x = mu(c) + sigma(c) z`` with ``mu`` and ``log sigma`` from one small MLP."""

    registry_name: ClassVar[str] = "test_hetero_gaussian"
    kinds: ClassVar[tuple[str, ...]] = ("continuous",)
    noise_dim: ClassVar[int] = 1

    hidden: Sequence[int] = (32, 32)

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

    def inverse(self, x, context):  # the conditional normal score; cdf = Phi(inverse) is derived
        loc, scale = self._loc_scale(context)
        return ((x[0] - loc) / scale)[None]


def registered_pairs() -> list[tuple[str, str]]:
    """Every ``(name, kind)`` with a generator registered under exactly that name and kind.

    Binary fallbacks (``generator_class("flow", "binary")`` is the ``mdn`` Bernoulli network)
    are excluded: they are tested under their own name.
    """
    pairs = []
    for name in registered_names():
        for kind in NODE_KINDS:
            try:
                cls = generator_class(name, kind)
            except ValueError:
                continue
            if cls.registry_name == name and kind in cls.kinds:
                pairs.append((name, kind))
    return pairs


PAIRS = registered_pairs()
PAIR_IDS = [f"{name}-{kind}" for name, kind in PAIRS]


def _module(name: str, kind: str) -> Generator:
    """A small instance of each family, so contract tests compile quickly."""
    cls = generator_class(name, kind)
    small = {
        SplineFlow: dict(num_layers=2, hidden=(16,), num_bins=6),
        Diffusion: dict(hidden=(16,), num_steps=20),
        MixtureDensityNetwork: dict(hidden=(16,), num_components=3),
        BernoulliMLP: dict(hidden=(16,)),
    }
    return cls(**small.get(cls, {}))


def _has(module: Generator, method: str) -> bool:
    """Whether the generator implements an optional method."""
    return type(module).implements(method)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _apply(module: Generator, method: str, variables, *args: jax.Array) -> jax.Array:
    """``apply_batched`` under jit: eager op-by-op dispatch of whole networks is slow."""
    return apply_batched(module, method, variables, *args)


def _variables(module: Generator, seed: int = 0):
    """Random variables from numpy: ``N(0, 0.25 / fan_in)`` kernels, ``N(0, 0.05^2)`` others.

    Not the initialisers' values: the flow's zero output layer would make round trips and
    density checks trivial. Drawing on the host also avoids compiling a PRNG for every
    parameter shape, which costs seconds a generator on two cores.
    """
    shapes = jax.eval_shape(lambda key: init_params(module, key, CONTEXT_DIM), jax.random.key(0))
    rng = np.random.default_rng(seed)

    def draw(leaf):
        scale = 0.5 / math.sqrt(leaf.shape[-2]) if len(leaf.shape) >= 2 else 0.05
        return jnp.asarray(rng.normal(0.0, scale, leaf.shape), leaf.dtype)

    return jax.tree.map(draw, shapes)


def _inputs(module: Generator, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, type(module).noise_dim))
    context = rng.standard_normal((n, CONTEXT_DIM))
    return jnp.asarray(noise, jnp.float32), jnp.asarray(context, jnp.float32)


# Shapes of the battery. One compiled function a generator evaluates every method the contract
# tests look at (compiling each method and shape separately costs minutes on two cores).
N_SMALL = 256
N_LARGE = 4096
GRID = jnp.linspace(-30.0, 30.0, 16_385)  # step 3.7e-3
COUNTS = jnp.arange(256.0)  # a count node's support, far past these laws' mass
_TRACES: dict[Generator, int] = {}


@functools.partial(jax.jit, static_argnums=(0, 1))
def _battery(
    module: Generator,
    kind: str,
    variables,
    key: jax.Array,
    context: jax.Array,
    big_noise: jax.Array,
) -> dict[str, jax.Array]:
    """Every method on fixed-shape inputs; optional methods where present.

    The small batch's noise is drawn from ``key`` inside, so determinism under a key is part
    of what is compared; the large batch's noise comes from the host.
    """
    _TRACES[module] = _TRACES.get(module, 0) + 1
    noise = jax.random.normal(key, (N_SMALL, type(module).noise_dim))
    anchors = context[:2]  # two fixed contexts for grids and large samples

    def run(method, *args):
        return apply_batched(module, method, variables, *args)

    def at(anchor, size):
        return jnp.broadcast_to(anchor, (size, CONTEXT_DIM))

    x = run("sample", noise, context)
    out = {
        "noise": noise,
        "context": context,
        "x": x,
        "loss": run("loss", x, context),
        "big": run("sample", big_noise, at(anchors[0], N_LARGE)),
    }
    values = {"binary": jnp.array([[0.0], [1.0]]), "count": COUNTS[:, None]}.get(
        kind, GRID[:, None]
    )
    if _has(module, "log_prob"):
        out["log_prob"] = run("log_prob", x, context)
        out["grid_log_prob"] = jnp.stack(
            [run("log_prob", values, at(a, values.shape[0])) for a in anchors]
        )
    if _has(module, "inverse"):
        out["back"] = run("inverse", x, context)
        out["again"] = run("sample", out["back"], context)
    if _has(module, "cdf") and kind == "continuous":
        out["cdf"] = run("cdf", x, context)
        out["grid_cdf"] = jnp.stack([run("cdf", values, at(a, values.shape[0])) for a in anchors])

        def cdf_at(value, c):
            return module.apply(variables, value[None], c, method=type(module).cdf)

        out["cdf_slope"] = jax.vmap(jax.grad(cdf_at))(x[:, 0], context)
    if _has(module, "cdf") and kind == "count":
        out["count_cdf"] = run("cdf", x, context)
        out["count_cdf_below"] = run("cdf", x - 1.0, context)
        out["grid_count_cdf"] = jnp.stack(
            [run("cdf", values, at(a, values.shape[0])) for a in anchors]
        )
    return out


_CACHE: dict[tuple[str, str], tuple[Generator, dict[str, np.ndarray]]] = {}


def _battery_inputs(module: Generator, seed: int):
    big_noise, _ = _inputs(module, N_LARGE, seed)
    _, context = _inputs(module, N_SMALL, seed + 1)
    return jax.random.key(seed), context, big_noise


def _results(name: str, kind: str) -> tuple[Generator, dict[str, np.ndarray]]:
    if (name, kind) not in _CACHE:
        module = _module(name, kind)
        out = _battery(module, kind, _variables(module), *_battery_inputs(module, 1))
        _CACHE[name, kind] = module, jax.tree.map(np.asarray, out)
    return _CACHE[name, kind]


@pytest.fixture(params=PAIRS, ids=PAIR_IDS)
def generator(request):
    name, kind = request.param
    module, out = _results(name, kind)
    return module, kind, out


# --------------------------------------------------------------------------------------------
# Contract tests, every registered generator.
# --------------------------------------------------------------------------------------------


def test_registry_holds_builtins_and_user_subclass():
    names = set(registered_names())
    assert {"linear", "mdn", "flow", "diffusion", "test_hetero_gaussian"} <= names
    assert ("test_hetero_gaussian", "continuous") in PAIRS


def test_implements_reports_optional_methods():
    flow, mdn = generator_class("flow", "continuous"), generator_class("mdn", "continuous")
    assert flow.implements("cdf") and flow.implements("inverse") and flow.implements("law")
    assert mdn.implements("cdf") and not mdn.implements("inverse")  # its own closed form
    assert HeteroscedasticGaussian.implements("cdf")  # derived: Phi(inverse)
    assert not generator_class("linear", "binary").implements("cdf")  # inverse, but binary
    assert not Diffusion.implements("log_prob") and Diffusion.implements("cdf")


def test_default_cdf_refuses_generators_it_does_not_fit():
    module = BernoulliMLP(hidden=(4,))
    variables = _variables(module)
    with pytest.raises(NotImplementedError, match="BernoulliMLP has no cdf"):
        module.apply(variables, jnp.zeros(1), jnp.zeros(CONTEXT_DIM), method=BernoulliMLP.cdf)


@pytest.mark.parametrize(
    ("method", "args", "message"),
    [
        ("sample", ((8, 2), (8, CONTEXT_DIM)), r"shape \(8, 2\) but expected \(8, 1\)"),
        ("log_prob", ((8,), (8, CONTEXT_DIM)), r"rank 1 \(shape \(8,\)\) but expected 2"),
        ("cdf", ((8, 1), (7, CONTEXT_DIM)), r"different shape prefixes: \[\(8,\), \(7,\)\]"),
    ],
    ids=["noise-size", "x-rank", "batch-size"],
)
def test_apply_batched_names_expected_and_actual_shapes(method, args, message):
    module = SplineFlow(num_layers=1, hidden=(4,))
    arrays = [jnp.zeros(shape) for shape in args]
    with pytest.raises(AssertionError, match=message) as error:
        apply_batched(module, method, _variables(module), *arrays)
    assert f"SplineFlow.{method}" in str(error.value)


@pytest.mark.parametrize("name", ["flow", "diffusion"])
def test_binary_nodes_fall_back_to_bernoulli_mlp(name):
    assert generator_class(name, "continuous").registry_name == name
    assert generator_class(name, "binary") is BernoulliMLP


def test_shapes_and_dtypes(generator):
    module, kind, out = generator
    assert out["x"].shape == (N_SMALL, 1) and out["x"].dtype == np.float32
    assert out["big"].shape == (N_LARGE, 1)
    if kind == "binary":
        assert set(np.unique(out["x"])) <= {0.0, 1.0}
    assert out["loss"].shape == (N_SMALL,) and out["loss"].dtype == np.float32
    assert np.all(np.isfinite(out["loss"]))
    if "log_prob" in out:
        assert out["log_prob"].shape == (N_SMALL,) and out["log_prob"].dtype == np.float32
    if "back" in out:
        assert out["back"].shape == (N_SMALL, type(module).noise_dim)
    if "cdf" in out:
        assert out["cdf"].shape == (N_SMALL,) and out["cdf"].dtype == np.float32


def test_same_key_same_samples(generator):
    module, kind, out = generator
    again = _battery(module, kind, _variables(module), *_battery_inputs(module, 1))
    for name, value in out.items():
        np.testing.assert_array_equal(np.asarray(again[name]), value, err_msg=name)
    key, context, big_noise = _battery_inputs(module, 1)
    other = _battery(module, kind, _variables(module), jax.random.key(2), context, big_noise)
    if kind == "continuous":
        assert not np.array_equal(np.asarray(other["x"]), out["x"])
    # Same shapes, new values: the battery compiled once for this generator.
    assert _TRACES[module] == 1


class JitMatchesEagerTest(chex.TestCase):
    """``sample`` under ``jax.jit`` and op by op, against the battery's (jitted) samples."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(
        *[(pid.replace("-", "_"), *pair) for pid, pair in zip(PAIR_IDS, PAIRS, strict=True)]
    )
    def test_sample(self, name, kind):
        # Under jit XLA fuses and may reassociate float32 arithmetic; eager runs op by op. The
        # two agree to a few ulps per operation, accumulated over at most num_steps = 20
        # sequential diffusion steps: rtol 1e-4 is ~100x float32 eps times that depth.
        module, out = _results(name, kind)
        sample = self.variant(functools.partial(apply_batched, module, "sample"))
        got = sample(_variables(module), out["noise"][:16], out["context"][:16])
        chex.assert_shape(got, (16, 1))
        np.testing.assert_allclose(got, out["x"][:16], rtol=1e-4, atol=1e-5)


def test_noise_sample_noise_round_trip(generator):
    module, kind, out = generator
    if kind != "continuous" or type(module).noise_dim != 1 or "back" not in out:
        pytest.skip("round trip needs an invertible continuous map of one noise")
    # Closed-form inverses are exact to float32 rounding (x ~ O(1): ~1e-6). The diffusion
    # inverse solves each step by 3 fixed-point sweeps; the error left after them is
    # (tan(delta) |dv/dx|)^3 of a step, far below 1e-4 for these networks.
    np.testing.assert_allclose(out["back"], out["noise"], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(out["again"], out["x"], atol=1e-4, rtol=1e-4)


def test_log_prob_normalised(generator):
    module, kind, out = generator
    if "log_prob" not in out:
        pytest.skip("no density")
    mass = np.exp(out["grid_log_prob"].astype(np.float64))
    if kind in ("binary", "count"):
        np.testing.assert_allclose(mass.sum(axis=1), 1.0, rtol=1e-5)
        return
    # Trapezoid rule on [-30, 30], step h = 3.7e-3: the error O(h^2 max|p''|) is ~1e-5 for
    # these O(1)-scale densities and the mass outside is < 1e-12 (Gaussian-type tails).
    np.testing.assert_allclose(np.trapezoid(mass, np.asarray(GRID), axis=1), 1.0, atol=1e-3)


def test_samples_follow_log_prob(generator):
    # Samples and density must describe the same law: 4096 samples at one context against the
    # CDF integrated from exp(log_prob) (one-sample KS; the integration error ~1e-5 is far
    # below the test's resolution 1/sqrt(4096)), or for binary nodes an exact binomial test of
    # the share of ones. alpha = 1e-3, fixed seeds.
    module, kind, out = generator
    if "log_prob" not in out:
        pytest.skip("no density")
    mass = np.exp(out["grid_log_prob"][0].astype(np.float64))
    if kind == "binary":
        ones = int(out["big"].sum())
        assert scipy.stats.binomtest(ones, N_LARGE, mass[1]).pvalue > 1e-3
        return
    if kind == "count":
        # Pearson's chi-square over the counts, cells of expected size < 5 pooled into the top.
        observed = np.bincount(out["big"][:, 0].astype(int), minlength=COUNTS.size)
        expected = N_LARGE * mass / mass.sum()
        keep = expected >= 5.0
        cells_o = np.append(observed[keep], observed[~keep].sum())
        cells_e = np.append(expected[keep], expected[~keep].sum())
        assert scipy.stats.chisquare(cells_o, cells_e).pvalue > 1e-3
        return
    grid = np.asarray(GRID, np.float64)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (mass[1:] + mass[:-1]) * np.diff(grid))])
    cdf /= cdf[-1]
    p_value = scipy.stats.kstest(out["big"][:, 0], lambda v: np.interp(v, grid, cdf)).pvalue
    assert p_value > 1e-3


def test_cdf_monotone_and_matches_log_prob(generator):
    module, kind, out = generator
    if "cdf" not in out:
        pytest.skip("no cdf")
    for cdf in out["grid_cdf"]:
        assert np.all(np.diff(cdf) >= 0.0)
        assert 0.0 <= cdf[0] < 1e-6 and 1.0 - 1e-6 < cdf[-1] <= 1.0
    if "log_prob" not in out:
        return
    # Both are float32 evaluations of the same closed form; rtol 1e-3 allows for the
    # cancellation in Phi'(z) z' where z' is a ratio of spline terms.
    np.testing.assert_allclose(out["cdf_slope"], np.exp(out["log_prob"]), rtol=1e-3, atol=1e-6)


def test_count_sample_inverts_its_cdf(generator):
    # x = min{k : F(k) >= Phi(z)}: F(x - 1) < Phi(z) <= F(x), up to float32 rounding of F.
    module, kind, out = generator
    if "count_cdf" not in out:
        pytest.skip("not a count generator")
    u = ndtr(out["noise"][:, 0].astype(np.float64))
    assert np.all(out["count_cdf_below"] < u + 1e-6) and np.all(u <= out["count_cdf"] + 1e-6)
    assert np.all(out["x"] == np.round(out["x"])) and np.all(out["x"] >= 0)
    mass = np.exp(out["grid_log_prob"].astype(np.float64))
    np.testing.assert_allclose(out["grid_count_cdf"], np.cumsum(mass, axis=1), atol=1e-5)


def test_cdf_of_sample_is_phi_of_noise(generator):
    module, kind, out = generator
    if "cdf" not in out or type(module).noise_dim != 1:
        pytest.skip("needs a cdf and one noise")
    np.testing.assert_allclose(out["cdf"], ndtr(out["noise"][:, 0]), atol=1e-4)


# --------------------------------------------------------------------------------------------
# The spline kernel and the diffusion loss, directly.
# --------------------------------------------------------------------------------------------


def _spline(seed: int, num_bins: int = 8, bound: float = 3.0, scale: float = 1.5):
    raw = np.random.default_rng(seed).normal(0.0, scale, spline_param_count(num_bins))
    return spline_knots(jnp.asarray(raw, jnp.float32), num_bins, bound), bound


@functools.partial(jax.jit, static_argnums=(2,))
def _spline_checks(u, knots, bound):
    fwd = jax.vmap(lambda a: rq_spline_forward(a, *knots, bound))
    inv = jax.vmap(lambda a: rq_spline_inverse(a, *knots, bound))
    y, log_det = fwd(u)
    back, log_det_inv = inv(y)
    slope = jax.vmap(jax.grad(lambda a: rq_spline_forward(a, *knots, bound)[0]))(u)
    return y, log_det, back, log_det_inv, fwd(back)[1], slope


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rq_spline_inverse_and_log_det(seed):
    (x_knots, y_knots, slopes), bound = _spline(seed)
    assert float(x_knots[0]) == -bound and abs(float(x_knots[-1]) - bound) < 1e-5
    assert np.all(np.diff(np.asarray(x_knots)) > 0) and np.all(np.diff(np.asarray(y_knots)) > 0)
    # End slopes are 1: the density is continuous where the identity tails join.
    assert float(slopes[0]) == 1.0 and float(slopes[-1]) == 1.0
    u = jnp.linspace(-4.0, 4.0, 4001)
    y, log_det, back, log_det_inv, log_det_back, slope = _spline_checks(
        u, (x_knots, y_knots, slopes), bound
    )
    assert np.all(np.diff(np.asarray(y)) > 0)
    # The inverse is exact up to float32 rounding of y divided by the local slope.
    np.testing.assert_allclose(back, u, atol=2e-6 / float(jnp.min(jnp.exp(log_det))))
    # Where the inverse lands, it reports the forward log-slope at that point.
    np.testing.assert_allclose(log_det_inv, log_det_back, atol=1e-4)
    np.testing.assert_allclose(jnp.log(slope), log_det, atol=1e-4)
    outside = np.abs(np.asarray(u)) > bound
    np.testing.assert_array_equal(np.asarray(y)[outside], np.asarray(u)[outside])


def test_zero_parameters_give_identity_spline():
    knots = spline_knots(jnp.zeros(spline_param_count(8), jnp.float32), 8, 3.0)
    u = jnp.linspace(-4.0, 4.0, 4001)
    y, log_det, *_ = _spline_checks(u, knots, 3.0)
    np.testing.assert_allclose(y, u, atol=1e-6)
    np.testing.assert_allclose(log_det, 0.0, atol=1e-6)


def test_untrained_flow_with_a_zero_output_layer_is_standard_normal():
    flow = SplineFlow(num_layers=2, hidden=(16,), output_init=0.0)
    variables = jax.jit(init_params, static_argnums=(0, 2))(flow, jax.random.key(0), CONTEXT_DIM)
    noise, context = _inputs(flow, 32)
    np.testing.assert_allclose(_apply(flow, "sample", variables, noise, context), noise, atol=1e-5)


def test_flow_output_init_draws_the_conditioner_output_kernel():
    # 0 (the default): a zero output layer, the identity flow; s > 0: kernel entries of SD s,
    # so the untrained flow moves off the identity but stays invertible.
    for scale in (0.0, 0.1):
        flow = SplineFlow(num_layers=2, hidden=(16,), output_init=scale)
        variables = init_params(flow, jax.random.key(0), CONTEXT_DIM)
        layers = variables["params"]["conditioner"]
        kernel = np.asarray(layers[sorted(layers)[-1]]["kernel"])
        assert kernel.std() == pytest.approx(scale, rel=0.15, abs=1e-12)
        noise, context = _inputs(flow, 32)
        x = _apply(flow, "sample", variables, noise, context)
        np.testing.assert_allclose(_apply(flow, "inverse", variables, x, context), noise, atol=1e-4)
        assert (np.max(np.abs(x - noise)) > 1e-3) == (scale > 0)


def test_flow_per_layer_conditioners_match_contract():
    flow = SplineFlow(shared_conditioner=False, num_layers=3, hidden=(8,))
    variables = _variables(flow)
    assert set(variables["params"]) == {"baseline", *(f"conditioner_{i}" for i in range(3))}
    noise, context = _inputs(flow, 32)
    x = _apply(flow, "sample", variables, noise, context)
    np.testing.assert_allclose(_apply(flow, "inverse", variables, x, context), noise, atol=1e-4)


def test_diffusion_loss_is_deterministic_and_fresh_per_step():
    model = Diffusion(hidden=(16,), num_steps=10)
    variables = _variables(model)
    noise, context = _inputs(model, 32)
    x = noise * 0.7
    loss = jax.jit(lambda v: apply_batched(model, "loss", v, x, context))
    np.testing.assert_array_equal(loss(variables), loss(variables))
    nudged = jax.tree.map(lambda leaf: leaf + 1e-3, variables)
    # A parameter change redraws the times and noise: losses move by far more than the
    # O(1e-3) a smooth change of the network alone could cause.
    assert float(jnp.max(jnp.abs(loss(nudged) - loss(variables)))) > 1e-2
    # An explicit rng stream takes precedence over the hashed key.
    with_rng = jax.jit(
        lambda v, key: model.apply(
            v, x[0], context[0], rngs={"diffusion": key}, method=Diffusion.loss
        )
    )
    first, second = with_rng(variables, jax.random.key(1)), with_rng(variables, jax.random.key(2))
    assert np.isfinite(float(first)) and float(first) != float(second)


def test_diffusion_sampler_converges_at_first_order():
    # DDIM is a first-order exponential integrator of the probability-flow ODE: doubling
    # num_steps halves the sampler's error (against a 1024-step reference) asymptotically;
    # for these random networks the ratio is 2.06 from 32 to 64 steps (3.0 from 16 to 32:
    # not yet asymptotic there).
    variables = _variables(Diffusion(hidden=(16,)))
    noise, context = _inputs(Diffusion(), 256)

    def draw(steps):
        return np.asarray(
            _apply(Diffusion(hidden=(16,), num_steps=steps), "sample", variables, noise, context),
            np.float64,
        )

    reference = draw(1024)
    coarse, fine = (np.max(np.abs(draw(steps) - reference)) for steps in (32, 64))
    assert coarse > 0.0 and 1.6 < coarse / fine < 2.5, (coarse, fine)


# --------------------------------------------------------------------------------------------
# Recovery of known conditional distributions by training.fit_generator.
# --------------------------------------------------------------------------------------------

# Test design. For each case a generator is fitted to N_TRAIN rows of (a, x) -> m, then at
# three fixed contexts N_CHECK fitted draws are compared with N_CHECK draws from the true law
# by a two-sample KS test at _KS_ALPHA (fixed seeds, so the outcome is deterministic). With
# N_CHECK = 400 the test rejects at KS distance D >~ 1.95 sqrt(2 / 400) = 0.14: above the
# estimation error of a flexible model fitted to 3000 rows (D up to ~0.12 measured across
# seeds for diffusion, ~0.03-0.08 for flow and mdn), below the misfit of a model that misses
# the shape (a Gaussian fitted to the bimodal case: D ~ 0.2).
# The negative control (linear on bimodal data) checks that the test does have that power.
N_TRAIN = 3000
N_CHECK = 400
_KS_ALPHA = 1e-3
CHECK_CONTEXTS = ((0.0, -1.0), (1.0, 0.0), (0.0, 1.2))
FIT_CONFIG = training.TrainConfig(max_epochs=150, patience=25, batch_size=256, learning_rate=1e-3)
# Fits take "rbg" keys: same semantics, and XLA compiles its generator far faster than
# threefry's unrolled rounds, which dominate compile time of a short fit on two cores.
FIT_KEY = jax.random.key(0, impl="rbg")


def _true_draws(case: str, rng: np.random.Generator, a: np.ndarray, x: np.ndarray):
    e = rng.standard_normal(a.shape)
    if case == "gaussian":
        return 0.5 * a + 0.6 * x + 0.5 * e
    if case == "heteroscedastic":
        return 0.5 * a + 0.5 * x + 0.3 * np.exp(0.6 * x) * e
    if case == "bimodal":
        sign = np.where(rng.random(a.shape) < 0.5, -1.0, 1.0)
        return 0.5 * a + 0.4 * x + 1.2 * sign + 0.3 * e
    if case == "skewed":  # centred Gamma(2) noise, skewness sqrt(2)
        return 0.5 * a + 0.5 * x + 0.6 * (rng.gamma(2.0, 1.0, a.shape) - 2.0) / math.sqrt(2.0)
    raise ValueError(case)


def _training_rows(case: str):
    rng = np.random.default_rng(2024)
    a = rng.integers(0, 2, N_TRAIN).astype(float)
    x = rng.standard_normal(N_TRAIN)
    m = _true_draws(case, rng, a, x)
    return jnp.asarray(m[:, None], jnp.float32), jnp.asarray(np.c_[a, x], jnp.float32)


def _fit(module, config, key, x, context):
    """``fit_generator`` with unit weights where its signature takes them."""
    if "weights" in inspect.signature(training.fit_generator).parameters:
        return training.fit_generator(module, config, key, x, context, jnp.ones(x.shape[0]))
    return training.fit_generator(module, config, key, x, context)


def _ks_p_values(module, variables, case: str) -> list[float]:
    p_values = []
    for i, (a, x) in enumerate(CHECK_CONTEXTS):
        rng = np.random.default_rng(100 + i)
        truth = _true_draws(case, rng, np.full(N_CHECK, a), np.full(N_CHECK, x))
        context = jnp.broadcast_to(jnp.array([a, x], jnp.float32), (N_CHECK, 2))
        noise = jax.random.normal(jax.random.key(200 + i), (N_CHECK, type(module).noise_dim))
        fitted = _apply(module, "sample", variables, noise, context)
        p_values.append(scipy.stats.ks_2samp(np.asarray(fitted[:, 0]), truth).pvalue)
    return p_values


RECOVERY = [
    ("linear", "gaussian"),
    ("flow", "heteroscedastic"),
    ("flow", "bimodal"),
    ("flow", "skewed"),
    ("mdn", "bimodal"),
    ("diffusion", "bimodal"),
]
SLOW_RECOVERY = [
    ("mdn", "heteroscedastic"),
    ("mdn", "skewed"),
    ("diffusion", "heteroscedastic"),
    ("diffusion", "skewed"),
    ("test_hetero_gaussian", "heteroscedastic"),
    *[(name, "gaussian") for name in ("mdn", "flow", "diffusion", "test_hetero_gaussian")],
]


_FITS: dict[tuple[str, str], tuple] = {}


def _recovery_fit(name: str, case: str):
    """``(module, variables, info)`` of the default ``name`` generator fitted to ``case``."""
    if (name, case) not in _FITS:
        module = generator_class(name, "continuous")()
        x, context = _training_rows(case)
        _FITS[name, case] = (module, *_fit(module, FIT_CONFIG, FIT_KEY, x, context))
    return _FITS[name, case]


def _check_recovery(name: str, case: str) -> list[float]:
    module, variables, info = _recovery_fit(name, case)
    assert not bool(info.diverged)
    return _ks_p_values(module, variables, case)


@pytest.mark.parametrize(("name", "case"), RECOVERY, ids=[f"{n}-{c}" for n, c in RECOVERY])
def test_fit_recovers_conditional_distribution(name, case):
    p_values = _check_recovery(name, case)
    assert min(p_values) > _KS_ALPHA, p_values


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "case"), SLOW_RECOVERY, ids=[f"{n}-{c}" for n, c in SLOW_RECOVERY]
)
def test_fit_recovers_conditional_distribution_slow(name, case):
    p_values = _check_recovery(name, case)
    assert min(p_values) > _KS_ALPHA, p_values


def test_recovery_check_rejects_linear_fit_of_bimodal_data():
    p_values = _check_recovery("linear", "bimodal")
    assert min(p_values) < _KS_ALPHA, p_values


def test_list_valued_attributes_make_hashable_jit_statics():
    # Generators are jit statics (fit_generator, simulate), hashed by their fields: lists are
    # frozen to tuples on construction, for built-ins and user subclasses alike.
    user = HeteroscedasticGaussian(hidden=[8, 8])
    assert user.hidden == (8, 8) and hash(user) == hash(HeteroscedasticGaussian(hidden=(8, 8)))
    module = MixtureDensityNetwork(hidden=[64, 64])
    assert module == MixtureDensityNetwork() and hash(module) == hash(MixtureDensityNetwork())
    # The same static arguments and shapes as the mdn-bimodal recovery fit, so fit_generator
    # reuses that compilation and must return exactly its variables.
    x, context = _training_rows("bimodal")
    variables, info = _fit(module, FIT_CONFIG, FIT_KEY, x, context)
    assert not bool(info.diverged)
    chex.assert_trees_all_equal(variables, _recovery_fit("mdn", "bimodal")[1])
    noise = jax.random.normal(jax.random.key(1), (8, type(module).noise_dim))
    samples = _apply(module, "sample", variables, noise, context[:8])  # module static
    assert samples.shape == (8, 1) and np.all(np.isfinite(samples))


@pytest.mark.parametrize(
    "module",
    [SplineFlow(hidden=(16,), num_layers=2), Diffusion(hidden=(16,), num_steps=10)],
    ids=["flow", "diffusion"],
)
def test_fit_generator_replicates_vmaps_bootstrap(module):
    x, context = _training_rows("heteroscedastic")
    x, context = x[:400], context[:400]
    rows = jnp.asarray(np.random.default_rng(0).integers(0, 400, (2, 400)))
    keys = jax.random.split(FIT_KEY, 2)
    config = training.TrainConfig(max_epochs=4, patience=4, batch_size=128)
    args = (module, config, keys, rows, x, context)
    if "weights" in inspect.signature(training.fit_generator_replicates).parameters:
        args = (*args, jnp.ones(400))
    variables, info = training.fit_generator_replicates(*args)
    leaves = jax.tree.leaves(variables)
    assert all(leaf.shape[0] == 2 and np.all(np.isfinite(leaf)) for leaf in leaves)
    assert info.epochs.shape == (2,) and not np.any(info.diverged)
    assert not all(np.array_equal(leaf[0], leaf[1]) for leaf in leaves)
    one = jax.tree.map(lambda leaf: leaf[1], variables)
    noise = jax.random.normal(jax.random.key(2), (8, 1))
    assert np.all(np.isfinite(_apply(module, "sample", one, noise, context[:8])))


def _linear_rows(n: int = 400, seed: int = 3):
    """Rows of ``x = 0.4 + c' (0.5, -1, 0.2) + 0.7 z`` with some weights 0 (validation rows)."""
    rng = np.random.default_rng(seed)
    context = rng.standard_normal((n, CONTEXT_DIM))
    x = 0.4 + context @ np.array([0.5, -1.0, 0.2]) + 0.7 * rng.standard_normal(n)
    weights = rng.uniform(0.5, 2.0, n) * (rng.uniform(size=n) > 0.2)
    return (
        jnp.asarray(x[:, None], jnp.float32),
        jnp.asarray(context, jnp.float32),
        jnp.asarray(weights, jnp.float32),
    )


@pytest.mark.parametrize("width", [0, 2])
def test_warm_started_flow_is_the_weighted_least_squares_fit(width):
    """With a zero output layer a fresh flow's splines and affine maps are identities, so after
    ``warm_start`` its law is exactly ``N(b + d' beta, sigma^2)`` of the weighted least-squares
    fit (numpy's, on the rows of positive weight; sigma^2 the weighted mean squared residual),
    ``d`` the context followed, with ``treatment_interactions = width``, by its first ``width``
    columns times each later one."""
    # test_untrained_flow_with_a_zero_output_layer's flow at width 0: one compiled init
    flow = SplineFlow(num_layers=2, hidden=(16,), output_init=0.0, treatment_interactions=width)
    x, context, weights = _linear_rows()
    # Both jitted: op-by-op dispatch of the initialisation and of the solve took seconds.
    initial = jax.jit(init_params, static_argnums=(0, 2))(flow, jax.random.key(0), CONTEXT_DIM)
    variables = jax.jit(flow.warm_start)(initial, x, context, weights)
    w, c = np.asarray(weights, np.float64), np.asarray(context, np.float64)
    products = [c[:, i] * c[:, j] for i in range(width) for j in range(width, CONTEXT_DIM)]
    design = np.column_stack([np.ones(len(w)), c, *products])
    root = np.sqrt(w)[:, None]
    beta = np.linalg.lstsq(root * design, root[:, 0] * np.asarray(x[:, 0], np.float64))[0]
    residual = np.asarray(x[:, 0], np.float64) - design @ beta
    sigma = math.sqrt(np.sum(w * residual**2) / np.sum(w))
    expected = scipy.stats.norm.logpdf(np.asarray(x[:, 0]), design @ beta, sigma)
    np.testing.assert_allclose(_apply(flow, "log_prob", variables, x, context), expected, atol=2e-4)


def test_a_model_gives_its_flows_the_treatment_width(default_data):
    # None (the default) becomes the graph's treatment width; an explicit count is kept.
    model = build_model(default_data, {"M": "flow", "Y": SplineFlow(treatment_interactions=0)})
    assert [g.treatment_interactions for g in model.generators] == [1, 0]
    assert SplineFlow().treatment_interactions is None


def test_logistic_baseline_matches_statsmodels_logit():
    """``with_logistic_baseline`` with a negligible ridge is the weighted logistic MLE."""
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(5)
    context = rng.standard_normal((600, CONTEXT_DIM))
    logit = -0.3 + context @ np.array([0.8, -0.5, 0.3])
    y = (rng.uniform(size=600) < 1.0 / (1.0 + np.exp(-logit))).astype(float)
    module = BernoulliMLP(hidden=(4,))
    # Jitted: op by op, the initialisation and the Newton steps dispatch slowly.
    variables = jax.jit(init_params, static_argnums=(0, 2))(module, jax.random.key(0), CONTEXT_DIM)
    fitted = jax.jit(functools.partial(with_logistic_baseline, ridge=1e-9))(
        variables,
        jnp.asarray(y[:, None], jnp.float32),
        jnp.asarray(context, jnp.float32),
        jnp.ones(600, jnp.float32),
    )["params"]["baseline"]
    reference = sm.Logit(y, sm.add_constant(context)).fit(disp=0).params
    estimate = np.concatenate([np.asarray(fitted["bias"]), np.asarray(fitted["kernel"][:, 0])])
    np.testing.assert_allclose(estimate, reference, atol=1e-4)


def test_treatment_interactions_append_each_treatment_column_times_each_later_one():
    context = jnp.arange(1.0, 9.0).reshape(2, 4)  # rows (1, 2, 3, 4) and (5, 6, 7, 8)
    np.testing.assert_array_equal(treatment_interactions(context, 0), context)
    np.testing.assert_array_equal(treatment_interactions(context, 1)[0], [1, 2, 3, 4, 2, 3, 4])
    # width 2: a1 * (x1, x2), then a2 * (x1, x2)
    np.testing.assert_array_equal(
        treatment_interactions(context, 2)[1], [5, 6, 7, 8, 35, 40, 42, 48]
    )
    assert treatment_interactions(context[0], 1).shape == (7,)
