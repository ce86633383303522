"""Tests for dcma_jax.functionals against numpy / scipy references and brute-force formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from dcma_jax import functionals as F

# Tolerances. Samples are drawn as float32, and references are computed in float64 on the same
# float32 values, so the only discrepancy is float32 arithmetic in jax (eps ~ 1.2e-7). The
# distances are sums of up to ~200 O(1) terms, whose rounding error grows at worst like
# N * eps ~ 2.4e-5 relative and typically like sqrt(N) * eps ~ 2e-6; rtol=2e-5 covers that with
# margin while still catching any off-by-one in a CDF count (an error >= 1/N ~ 5e-3).
# atol=1e-6 covers values that are exactly zero in exact arithmetic.
RTOL, ATOL = 2e-5, 1e-6


def _normal(seed, size, loc=0.0, scale=1.0):
    return np.random.default_rng(seed).normal(loc, scale, size).astype(np.float32)


def _ints(seed, size, high):
    # Integer-valued floats: heavy ties within and across samples.
    return np.random.default_rng(seed).integers(0, high, size).astype(np.float32)


# Pairs (x, y): equal and unequal sizes, shifted/scaled, heavy ties, identical values shared
# across arms, singletons, constant samples, and identical samples.
PAIRS = {
    "equal": (_normal(0, 50), _normal(1, 50, 0.3, 1.5)),
    "unequal": (_normal(2, 37), _normal(3, 53, -0.5, 0.7)),
    "unequal_far": (_normal(4, 11), _normal(5, 120, 4.0, 2.0)),
    "ties_equal": (_ints(6, 40, 5), _ints(7, 40, 6)),
    "ties_unequal": (_ints(8, 23, 4), _ints(9, 61, 7)),
    "repeated_across": (
        np.array([1.0, 1.0, 2.0, 2.0, 2.0, 5.0], np.float32),
        np.array([2.0, 2.0, 5.0, 5.0, 1.0], np.float32),
    ),
    "singletons": (np.array([0.5], np.float32), np.array([-1.25], np.float32)),
    "single_vs_many": (np.array([0.0], np.float32), _normal(10, 17)),
    "constant": (np.full(9, 3.0, np.float32), np.full(4, 3.0, np.float32)),
    "identical": (_normal(11, 30), _normal(11, 30)),
}
PAIR_IDS = list(PAIRS)
SAMPLES = {
    "normal": _normal(20, 101),
    "small": _normal(21, 4),
    "single": np.array([2.5], np.float32),
    "ties": _ints(22, 33, 3),
    "constant": np.full(7, -1.0, np.float32),
}
LEVELS = (0.0, 0.01, 0.1, 0.25, 0.3, 0.5, 0.7, 0.75, 0.9, 0.99, 1.0)


def _maybe_jit(fn, jit, **kwargs):
    return jax.jit(fn, **kwargs) if jit else fn


def _energy_bruteforce(x, y):
    """2 E|X-Y| - E|X-X'| - E|Y-Y'| over all pairs (V-statistic), in float64."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    exy = np.abs(x[:, None] - y[None, :]).mean()
    exx = np.abs(x[:, None] - x[None, :]).mean()
    eyy = np.abs(y[:, None] - y[None, :]).mean()
    return 2 * exy - exx - eyy


def _f64(a):
    return np.asarray(a, np.float64)


# --- scalar functionals -------------------------------------------------------------------------


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("name", list(SAMPLES))
def test_mean(name, jit):
    x = SAMPLES[name]
    np.testing.assert_allclose(_maybe_jit(F.mean, jit)(x), _f64(x).mean(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("name", list(SAMPLES))
def test_quantile_matches_numpy_linear(name, jit):
    x = SAMPLES[name]
    got = _maybe_jit(F.quantile, jit, static_argnums=1)(x, LEVELS)
    assert got.shape == (len(LEVELS),)
    np.testing.assert_allclose(got, np.quantile(_f64(x), LEVELS), rtol=RTOL, atol=ATOL)


def test_quantile_endpoints_are_exact_order_statistics():
    x = SAMPLES["normal"]
    got = np.asarray(F.quantile(x, (0.0, 0.5, 1.0)))
    # n = 101, so every level hits an order statistic: no interpolation, no rounding at all.
    assert got[0] == x.min() and got[1] == np.median(x) and got[2] == x.max()


def test_quantile_shapes_and_traced_levels():
    x = SAMPLES["normal"]
    assert F.quantile(x, 0.5).shape == ()
    assert F.quantile(x, np.array([[0.1, 0.2], [0.3, 0.4]])).shape == (2, 2)
    levels = jnp.asarray(LEVELS)
    traced = jax.jit(F.quantile)(x, levels)
    np.testing.assert_allclose(traced, np.quantile(_f64(x), LEVELS), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("levels", [(-0.1, 0.5), (0.5, 1.2), 2.0])
def test_quantile_rejects_levels_outside_unit_interval(levels):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        F.quantile(SAMPLES["normal"], levels)


def test_quantile_gradient_is_interpolation_weights():
    x = SAMPLES["small"]  # n = 4: level 0.5 sits halfway between order statistics 1 and 2
    grad = np.asarray(jax.grad(lambda s: F.quantile(s, 0.5))(x))
    order = np.argsort(x)
    expected = np.zeros(4)
    expected[order[1]] = expected[order[2]] = 0.5
    np.testing.assert_allclose(grad, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("name", list(SAMPLES))
def test_cdf_matches_counting(name, jit):
    x = SAMPLES[name]
    # Evaluate at every sample value (the jumps, where side="right" matters), between them, and
    # outside the range.
    points = np.concatenate([x, x + 0.5, [-1e6, 1e6]]).astype(np.float32)
    expected = (_f64(x)[None, :] <= _f64(points)[:, None]).mean(axis=1)
    got = _maybe_jit(F.cdf, jit)(x, points)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    assert F.cdf(x, np.float32(0.0)).shape == ()


# --- distances ----------------------------------------------------------------------------------


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("pair", PAIR_IDS)
def test_wasserstein_matches_scipy(pair, jit):
    x, y = PAIRS[pair]
    got = _maybe_jit(F.wasserstein, jit)(x, y)
    expected = scipy.stats.wasserstein_distance(_f64(x), _f64(y))
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("pair", ["equal", "ties_equal", "identical"])
def test_wasserstein_equal_size_shortcut_equals_pooled_integral(pair):
    x, y = PAIRS[pair]
    gap, width, _ = F._pooled_cdf_gap(jnp.asarray(x), jnp.asarray(y))
    pooled = jnp.sum(jnp.abs(gap) * width)
    sorted_gap = np.abs(np.sort(_f64(x)) - np.sort(_f64(y))).mean()
    np.testing.assert_allclose(pooled, sorted_gap, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(F.wasserstein(x, y), sorted_gap, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("pair", PAIR_IDS)
def test_energy_matches_scipy_squared_and_bruteforce(pair, jit):
    x, y = PAIRS[pair]
    got = _maybe_jit(F.energy, jit)(x, y)
    # scipy returns sqrt(2 * int (F - G)^2); ours is the unrooted energy distance.
    scipy_squared = scipy.stats.energy_distance(_f64(x), _f64(y)) ** 2
    np.testing.assert_allclose(got, scipy_squared, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got, _energy_bruteforce(x, y), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("pair", PAIR_IDS)
def test_ks_matches_scipy(pair, jit):
    x, y = PAIRS[pair]
    got = _maybe_jit(F.ks, jit)(x, y)
    expected = scipy.stats.ks_2samp(_f64(x), _f64(y)).statistic
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", F.DISTANCE_FUNCTIONALS)
def test_distance_properties(name):
    dist = F.DISTANCES[name]
    x, y = PAIRS["unequal"]
    assert float(dist(x, x)) == 0.0
    np.testing.assert_allclose(dist(x, y), dist(y, x), rtol=RTOL, atol=ATOL)
    assert float(dist(x, y)) > 0.0
    # Location shift: W1 = |shift| exactly, KS = 1 and energy = 2 |shift| - E|X-X'| - E|Y-Y'|
    # once the supports separate.
    shifted = x + 100.0
    if name == "wasserstein":
        np.testing.assert_allclose(dist(x, shifted), 100.0, rtol=RTOL)
    if name == "ks":
        assert float(dist(x, shifted)) == 1.0


@pytest.mark.parametrize("name", F.DISTANCE_FUNCTIONALS)
def test_distances_accept_integer_samples(name):
    x, y = PAIRS["ties_unequal"]
    got = F.DISTANCES[name](x.astype(np.int32), y.astype(np.int32))
    assert jnp.issubdtype(got.dtype, jnp.floating)
    np.testing.assert_allclose(got, F.DISTANCES[name](x, y), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "fn", [F.mean, lambda x: F.quantile(x, 0.5), lambda x: F.cdf(x, 0.0)], ids=["mean", "q", "cdf"]
)
@pytest.mark.parametrize("bad", [np.zeros((3, 4), np.float32), np.zeros(0, np.float32)])
def test_scalar_functionals_reject_bad_shapes(fn, bad):
    with pytest.raises(ValueError, match="1-D sample"):
        fn(bad)


@pytest.mark.parametrize("name", F.DISTANCE_FUNCTIONALS)
def test_distances_reject_bad_shapes(name):
    x = _normal(0, 5)
    with pytest.raises(ValueError, match=r"y must be a non-empty 1-D sample, got shape \(2, 5\)"):
        F.DISTANCES[name](x, np.stack([x, x]))


# --- batching -----------------------------------------------------------------------------------


ARMS_X = np.random.default_rng(30).normal(0.0, 1.0, (6, 40)).astype(np.float32)
ARMS_Y = np.random.default_rng(31).normal(0.5, 1.3, (6, 25)).astype(np.float32)


@pytest.mark.parametrize("name", F.DISTANCE_FUNCTIONALS)
def test_distances_vmap_over_arms_equals_loop(name):
    dist = F.DISTANCES[name]
    batched = jax.jit(jax.vmap(dist))(ARMS_X, ARMS_Y)
    looped = np.array([dist(x, y) for x, y in zip(ARMS_X, ARMS_Y, strict=True)])
    assert batched.shape == (6,)
    np.testing.assert_allclose(batched, looped, rtol=RTOL, atol=ATOL)
    # One reference sample against every arm, as the effects layer does.
    against_one = jax.vmap(dist, in_axes=(0, None))(ARMS_X, ARMS_Y[0])
    looped_one = np.array([dist(x, ARMS_Y[0]) for x in ARMS_X])
    np.testing.assert_allclose(against_one, looped_one, rtol=RTOL, atol=ATOL)


def test_scalar_functionals_vmap_over_arms_equals_loop():
    points = np.linspace(-2.0, 2.0, 9, dtype=np.float32)
    summaries = jax.vmap(lambda x: (F.mean(x), F.quantile(x, LEVELS), F.cdf(x, points)))
    batched = jax.jit(summaries)(ARMS_X)
    assert batched[0].shape == (6,)
    assert batched[1].shape == (6, len(LEVELS))
    assert batched[2].shape == (6, len(points))
    for arm, x in enumerate(ARMS_X):
        np.testing.assert_allclose(batched[0][arm], F.mean(x), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(batched[1][arm], F.quantile(x, LEVELS), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(batched[2][arm], F.cdf(x, points), rtol=RTOL, atol=ATOL)


def test_jitted_distance_does_not_retrace():
    traces = []

    def counted(x, y):
        traces.append(None)
        return F.wasserstein(x, y)

    fn = jax.jit(counted)
    x, y = PAIRS["unequal"]
    fn(x, y).block_until_ready()
    fn(x + 1.0, y * 2.0).block_until_ready()
    assert len(traces) == 1


# --- gradients ----------------------------------------------------------------------------------


@pytest.mark.parametrize("jit", [False, True])
def test_wasserstein_grad_equal_sizes_is_analytic(jit):
    x, y = PAIRS["equal"]
    grad = _maybe_jit(jax.grad(F.wasserstein), jit)(x, y)
    # dW1/dx_(i) = sign(x_(i) - y_(i)) / n, permuted back to the original order of x.
    n = x.shape[0]
    order = np.argsort(x)
    expected = np.empty(n)
    expected[order] = np.sign(np.sort(_f64(x)) - np.sort(_f64(y))) / n
    np.testing.assert_allclose(grad, expected, rtol=RTOL, atol=ATOL)


def _sign_grad_energy(x, y):
    """Analytic d/dx_i of the brute-force energy distance (valid without ties)."""
    x, y = _f64(x), _f64(y)
    n, m = len(x), len(y)
    cross = np.sign(x[:, None] - y[None, :]).sum(axis=1) * 2 / (n * m)
    within = np.sign(x[:, None] - x[None, :]).sum(axis=1) * 2 / n**2
    return cross - within


@pytest.mark.parametrize("pair", ["equal", "unequal", "unequal_far"])
def test_energy_grad_matches_analytic(pair):
    x, y = PAIRS[pair]
    grad = jax.jit(jax.grad(F.energy))(x, y)
    np.testing.assert_allclose(grad, _sign_grad_energy(x, y), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("pair", ["unequal", "unequal_far"])
def test_wasserstein_grad_unequal_sizes_matches_finite_differences(pair):
    x, y = PAIRS[pair]
    grad = jax.jit(jax.grad(F.wasserstein))(x, y)
    # W1 is piecewise linear in x, so a central difference in float64 is exact while the step
    # does not reorder the pooled sample (min spacing of these samples is far above 1e-7).
    eps = 1e-7
    x64, y64 = _f64(x), _f64(y)
    pooled = np.sort(np.concatenate([x64, y64]))
    assert np.diff(pooled).min() > 100 * eps
    fd = np.empty_like(x64)
    for i in range(len(x64)):
        up, down = x64.copy(), x64.copy()
        up[i] += eps
        down[i] -= eps
        fd[i] = (
            scipy.stats.wasserstein_distance(up, y64) - scipy.stats.wasserstein_distance(down, y64)
        ) / (2 * eps)
    np.testing.assert_allclose(grad, fd, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", ["wasserstein", "energy"])
@pytest.mark.parametrize("pair", PAIR_IDS)
def test_distance_grads_are_finite_even_with_ties(name, pair):
    x, y = PAIRS[pair]
    gx, gy = jax.grad(F.DISTANCES[name], argnums=(0, 1))(x, y)
    assert np.all(np.isfinite(gx)) and np.all(np.isfinite(gy))
    assert gx.shape == x.shape and gy.shape == y.shape


# --- registry -----------------------------------------------------------------------------------


def test_registry():
    assert F.SCALAR_FUNCTIONALS == ("mean", "quantile", "cdf")
    assert F.DISTANCE_FUNCTIONALS == ("wasserstein", "energy", "ks")
    assert tuple(F.DISTANCES) == F.DISTANCE_FUNCTIONALS
    for name in F.SCALAR_FUNCTIONALS + F.DISTANCE_FUNCTIONALS:
        assert callable(getattr(F, name))
    for name, fn in F.DISTANCES.items():
        assert fn is getattr(F, name)
