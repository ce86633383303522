"""Tests for dcma_jax.functionals against numpy / scipy references and brute-force formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from dcma_jax import functionals as F

# Tolerances. Samples are drawn as float32 and the references are computed in float64 on the same
# float32 values, so the only discrepancy is float32 arithmetic in jax (eps ~ 1.2e-7). The
# distances are sums of up to ~170 O(1) terms, whose rounding error is at worst ~N * eps ~ 2e-5
# relative and typically ~sqrt(N) * eps ~ 2e-6; rtol=2e-5 covers that, while an off-by-one in any
# CDF count (an error >= 1/N ~ 6e-3 in a gap) would still fail by orders of magnitude.
# atol=1e-6 covers quantities that are exactly zero in exact arithmetic.
RTOL, ATOL = 2e-5, 1e-6


def _normal(seed, size, loc=0.0, scale=1.0):
    return np.random.default_rng(seed).normal(loc, scale, size).astype(np.float32)


def _ints(seed, size, high):
    # Integer-valued floats: heavy ties within and across samples.
    return np.random.default_rng(seed).integers(0, high, size).astype(np.float32)


def _f64(a):
    return np.asarray(a, np.float64)


# Pairs (x, y): equal and unequal sizes, shifted/scaled laws, heavy ties, values repeated across
# arms, singletons, constant samples with equal CDFs, identical samples. Sizes are shared between
# pairs where possible, because every new shape costs a compilation.
PAIRS = {
    "equal": (_normal(0, 40), _normal(1, 40, 0.3, 1.5)),
    "unequal": (_normal(2, 37), _normal(3, 53, -0.5, 0.7)),
    "unequal_far": (_normal(4, 11), _normal(5, 120, 4.0, 2.0)),
    "ties_equal": (_ints(6, 40, 5), _ints(7, 40, 6)),
    "ties_unequal": (_ints(8, 37, 4), _ints(9, 53, 7)),
    "repeated_across": (
        np.array([1.0, 1.0, 2.0, 2.0, 2.0, 5.0], np.float32),
        np.array([2.0, 2.0, 5.0, 5.0, 1.0], np.float32),
    ),
    "constant": (np.full(6, 3.0, np.float32), np.full(5, 3.0, np.float32)),
    "singletons": (np.array([0.5], np.float32), np.array([-1.25], np.float32)),
    "single_vs_many": (np.array([0.0], np.float32), _normal(10, 17)),
    "identical": (_normal(11, 40), _normal(11, 40)),
}
SAMPLES = {
    "normal": _normal(20, 101),
    "small": _normal(21, 4),
    "single": np.array([2.5], np.float32),
    "ties": _ints(22, 33, 3),
    "constant": np.full(7, -1.0, np.float32),
}
LEVELS = (0.0, 0.01, 0.1, 0.25, 0.3, 0.5, 0.7, 0.75, 0.9, 0.99, 1.0)


# Everything the tests evaluate is jitted once here, several functionals to a program, so that
# compilations are shared between tests: eager jax compiles each primitive separately for each
# new shape (~1 s per distance call on CPU). test_jit_equals_eager covers the eager path.
def _all_distances(x, y):
    return {name: fn(x, y) for name, fn in F.DISTANCES.items()}


def _all_scalars(x, points):
    return F.mean(x), F.quantile(x, LEVELS), F.cdf(x, points)


def _grads(x, y):
    return {
        name: jax.grad(F.DISTANCES[name], argnums=(0, 1))(x, y)
        for name in ("wasserstein", "energy")
    }


DISTANCES = jax.jit(_all_distances)
SCALARS = jax.jit(_all_scalars)
GRADS = jax.jit(_grads)


def _energy_bruteforce(x, y):
    """2 E|X-Y| - E|X-X'| - E|Y-Y'| over all pairs (V-statistic), in float64."""
    x, y = _f64(x), _f64(y)
    exy = np.abs(x[:, None] - y[None, :]).mean()
    exx = np.abs(x[:, None] - x[None, :]).mean()
    eyy = np.abs(y[:, None] - y[None, :]).mean()
    return 2 * exy - exx - eyy


def _energy_u_bruteforce(x, y, paired):
    """The U-statistic over pairs i != j in float64 (the cross term too when ``paired``)."""
    x, y = _f64(x), _f64(y)
    n, m = len(x), len(y)
    cross = np.abs(x[:, None] - y[None, :])
    exy = (cross.sum() - np.trace(cross)) / (n * (n - 1)) if paired else cross.mean()
    exx = np.abs(x[:, None] - x[None, :]).sum() / (n * (n - 1))
    eyy = np.abs(y[:, None] - y[None, :]).sum() / (m * (m - 1))
    return 2 * exy - exx - eyy


def _references(x, y):
    x, y = _f64(x), _f64(y)
    return {
        "wasserstein": scipy.stats.wasserstein_distance(x, y),
        # scipy returns sqrt(2 * int (F - G)^2); ours is the unrooted energy distance.
        "energy": scipy.stats.energy_distance(x, y) ** 2,
        "ks": scipy.stats.ks_2samp(x, y).statistic,
    }


# --- scalar functionals -------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SAMPLES))
def test_scalar_functionals_match_numpy(name):
    x = SAMPLES[name]
    # cdf at every sample value (the jumps, where side="right" matters), between them, and
    # outside the range.
    points = np.concatenate([x, x + 0.5, [-1e6, 1e6]]).astype(np.float32)
    mean, quantiles, cdf = SCALARS(x, points)
    np.testing.assert_allclose(mean, _f64(x).mean(), rtol=RTOL, atol=ATOL)
    assert quantiles.shape == (len(LEVELS),)
    np.testing.assert_allclose(quantiles, np.quantile(_f64(x), LEVELS), rtol=RTOL, atol=ATOL)
    counted = (_f64(x)[None, :] <= _f64(points)[:, None]).mean(axis=1)
    np.testing.assert_allclose(cdf, counted, rtol=RTOL, atol=ATOL)
    if name == "normal":
        # n = 101, so level k / 100 is order statistic k: no interpolation, exact equality.
        order_stats = [round(100 * q) for q in LEVELS]
        np.testing.assert_array_equal(quantiles, np.sort(x)[order_stats])


def test_quantile_and_cdf_shapes_and_traced_levels():
    x = SAMPLES["small"]

    @jax.jit
    def run(x, levels):
        return (
            F.quantile(x, 0.5),
            F.quantile(x, ((0.1, 0.2), (0.3, 0.4))),
            F.quantile(x, levels),
            F.cdf(x, 0.0),
            F.cdf(x, jnp.zeros((2, 3))),
        )

    scalar_q, matrix_q, traced_q, scalar_cdf, matrix_cdf = run(x, jnp.asarray(LEVELS))
    assert scalar_q.shape == () and matrix_q.shape == (2, 2)
    assert scalar_cdf.shape == () and matrix_cdf.shape == (2, 3)
    np.testing.assert_allclose(traced_q, np.quantile(_f64(x), LEVELS), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("levels", [(-0.1, 0.5), (0.5, 1.2), 2.0])
def test_quantile_rejects_levels_outside_unit_interval(levels):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        F.quantile(SAMPLES["normal"], levels)


def test_quantile_gradient_is_interpolation_weights():
    x = SAMPLES["small"]  # n = 4: level 0.5 sits halfway between order statistics 1 and 2.
    grad = np.asarray(jax.jit(jax.grad(lambda s: F.quantile(s, 0.5)))(x))
    order = np.argsort(x)
    expected = np.zeros(4)
    expected[order[1]] = expected[order[2]] = 0.5
    np.testing.assert_allclose(grad, expected, rtol=RTOL, atol=ATOL)


# --- distances ----------------------------------------------------------------------------------


@pytest.mark.parametrize("pair", list(PAIRS))
def test_distances_match_scipy(pair):
    x, y = PAIRS[pair]
    got, expected = DISTANCES(x, y), _references(x, y)
    for name in F.DISTANCE_FUNCTIONALS:
        np.testing.assert_allclose(got[name], expected[name], rtol=RTOL, atol=ATOL, err_msg=name)
    np.testing.assert_allclose(got["energy"], _energy_bruteforce(x, y), rtol=RTOL, atol=ATOL)


ENERGY_U = jax.jit(
    lambda x, y, paired: {
        "direct": F.energy_unbiased(x, y, paired=paired),
        "presorted": F.energy_unbiased(
            jnp.sort(x),
            jnp.sort(y),
            presorted=True,
            pair_distance=jnp.mean(jnp.abs(x - y)) if paired else None,
        ),
    },
    static_argnames="paired",
)
# Pairs with at least two draws per sample (the U-statistic needs i != j).
U_PAIRS = [p for p in PAIRS if min(len(PAIRS[p][0]), len(PAIRS[p][1])) >= 2]


@pytest.mark.parametrize("pair", U_PAIRS)
def test_energy_unbiased_matches_bruteforce(pair):
    x, y = PAIRS[pair]
    for paired in (False, True) if len(x) == len(y) else (False,):
        expected = _energy_u_bruteforce(x, y, paired)
        for path, got in ENERGY_U(x, y, paired).items():
            np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL, err_msg=(path, paired))


def test_energy_unbiased_paired_flag_equals_pair_distance():
    x, y = PAIRS["equal"]
    got = jax.jit(lambda x, y: F.energy_unbiased(x, y, paired=True))(x, y)
    np.testing.assert_allclose(got, ENERGY_U(x, y, True)["presorted"], rtol=RTOL, atol=ATOL)


# Many small samples of one law: the mean of each statistic over R replications is within
# 4 standard errors (SD / sqrt(R)) of its expectation (a false alarm ~6e-5 per check).
R_UNBIASED, N_UNBIASED = 4000, 20


@jax.jit
def _same_law_statistics(key):
    """U and V for pairs of samples from N(0, 1): independent, and dependent pairs (rho 0.8)."""
    kx, ky = jax.random.split(key)
    x = jax.random.normal(kx, (N_UNBIASED,))
    z = jax.random.normal(ky, (N_UNBIASED,))
    y_dep = 0.8 * x + 0.6 * z  # the same N(0, 1) law, dependent on x draw by draw
    return {
        "u_independent": F.energy_unbiased(x, z),
        "u_independent_paired": F.energy_unbiased(x, z, paired=True),
        "v_independent": F.energy(x, z),
        "u_dependent_paired": F.energy_unbiased(x, y_dep, paired=True),
        "u_dependent_unpaired": F.energy_unbiased(x, y_dep),
    }


def test_energy_unbiased_is_unbiased_for_equal_laws():
    keys = jax.random.split(jax.random.key(0), R_UNBIASED)
    stats = {k: np.asarray(v, np.float64) for k, v in jax.vmap(_same_law_statistics)(keys).items()}
    mean = {k: v.mean() for k, v in stats.items()}
    se = {k: v.std(ddof=1) / np.sqrt(R_UNBIASED) for k, v in stats.items()}
    for name in ("u_independent", "u_independent_paired", "u_dependent_paired"):
        assert abs(mean[name]) < 4 * se[name], (name, mean[name], se[name])
        assert (stats[name] < 0).mean() > 0.25  # negative for a good share of the samples
    # The V-statistic's bias is E|X - X'| (1/n + 1/m) = (2 / sqrt(pi)) (2 / n) for N(0, 1).
    bias = 2 / np.sqrt(np.pi) * 2 / N_UNBIASED
    assert abs(mean["v_independent"] - bias) < 4 * se["v_independent"], (mean, bias)
    assert (stats["v_independent"] > 0).all()
    # Dependent pairs need the paired form: counting i = j in the cross term biases U downward
    # (E|X_i - Y_i| < E|X - Y|).
    assert mean["u_dependent_unpaired"] < -10 * se["u_dependent_unpaired"]


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((np.ones(1, np.float32), np.ones(3, np.float32)), {}, "at least two draws"),
        ((np.ones(3, np.float32), np.ones(4, np.float32)), {"paired": True}, "same size"),
        (
            (np.ones(3, np.float32), np.ones(3, np.float32)),
            {"paired": True, "presorted": True},
            "pass pair_distance",
        ),
    ],
)
def test_energy_unbiased_rejects_bad_arguments(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        F.energy_unbiased(*args, **kwargs)


def test_energy_unbiased_grad_matches_bruteforce():
    x, y = PAIRS["equal"]

    def brute(x, y):  # the paired U-statistic over i != j, written out in jax
        off = 1.0 - jnp.eye(x.shape[0])
        n = x.shape[0]

        def mean_off(d):
            return jnp.sum(d * off) / (n * (n - 1))

        return (
            2 * mean_off(jnp.abs(x[:, None] - y[None, :]))
            - mean_off(jnp.abs(x[:, None] - x[None, :]))
            - mean_off(jnp.abs(y[:, None] - y[None, :]))
        )

    got = jax.jit(jax.grad(lambda x, y: F.energy_unbiased(x, y, paired=True), (0, 1)))(x, y)
    expected = jax.jit(jax.grad(brute, (0, 1)))(x, y)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=RTOL, atol=ATOL)


PRESORTED_DISTANCES = jax.jit(
    lambda x, y: {n: fn(x, y, presorted=True) for n, fn in F.DISTANCES.items()}
)
PRESORTED_SCALARS = jax.jit(
    lambda x, points: (F.quantile(x, LEVELS, presorted=True), F.cdf(x, points, presorted=True))
)


@pytest.mark.parametrize("pair", list(PAIRS))
def test_presorted_path_merges_like_the_pooled_sort(pair):
    # The presorted path merges by binary search instead of sorting; ties across the two
    # samples are where a wrong merge order would show.
    x, y = PAIRS[pair]
    got = PRESORTED_DISTANCES(np.sort(x), np.sort(y))
    expected = _references(x, y)
    for name in F.DISTANCE_FUNCTIONALS:
        np.testing.assert_allclose(got[name], expected[name], rtol=RTOL, atol=ATOL, err_msg=name)
    points = np.concatenate([y[:3], [x.min() - 1.0, x.max()]]).astype(np.float32)
    quants, cdfs = PRESORTED_SCALARS(np.sort(x), points)
    np.testing.assert_allclose(quants, np.quantile(_f64(x), LEVELS), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(cdfs, (_f64(x)[None, :] <= points[:, None]).mean(1), atol=ATOL)


@pytest.mark.parametrize("pair", ["equal", "ties_equal", "identical"])
def test_wasserstein_equal_size_shortcut_equals_pooled_integral(pair):
    x, y = PAIRS[pair]

    @jax.jit
    def pooled(x, y):
        gap, width, _ = F._pooled_cdf_gap(x, y)
        return jnp.sum(jnp.abs(gap) * width)

    sorted_gap = np.abs(np.sort(_f64(x)) - np.sort(_f64(y))).mean()
    np.testing.assert_allclose(pooled(x, y), sorted_gap, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(DISTANCES(x, y)["wasserstein"], sorted_gap, rtol=RTOL, atol=ATOL)


def test_distance_properties():
    x, y = PAIRS["unequal"]
    forward, backward = DISTANCES(x, y), DISTANCES(y, x)
    for name in F.DISTANCE_FUNCTIONALS:
        assert float(forward[name]) > 0.0
        np.testing.assert_allclose(forward[name], backward[name], rtol=RTOL, atol=ATOL)
    # Equal empirical laws give exactly zero, for equal and for unequal sizes.
    for pair in ("identical", "constant"):
        for name, value in DISTANCES(*PAIRS[pair]).items():
            assert float(value) == 0.0, (pair, name)
    # A shift that separates the supports: W1 = shift and KS = 1.
    shifted = DISTANCES(y + 100.0, x)
    np.testing.assert_allclose(shifted["wasserstein"], 100.0 + y.mean() - x.mean(), rtol=RTOL)
    assert float(shifted["ks"]) == 1.0


def test_distances_accept_integer_samples():
    x, y = PAIRS["ties_unequal"]
    got, expected = DISTANCES(x.astype(np.int32), y.astype(np.int32)), DISTANCES(x, y)
    for name in F.DISTANCE_FUNCTIONALS:
        assert jnp.issubdtype(got[name].dtype, jnp.floating)
        np.testing.assert_allclose(got[name], expected[name], rtol=RTOL, atol=ATOL)


def test_jit_equals_eager():
    # The same float32 program either way, but XLA fuses the jitted one, so compare with a
    # tolerance rather than bitwise.
    x, y = PAIRS["ties_unequal"]
    jitted = DISTANCES(x, y)
    for name, fn in F.DISTANCES.items():
        np.testing.assert_allclose(fn(x, y), jitted[name], rtol=RTOL, atol=ATOL, err_msg=name)
    x = SAMPLES["ties"]
    for eager, jitted in zip(_all_scalars(x, x), SCALARS(x, x), strict=True):
        np.testing.assert_allclose(eager, jitted, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "fn",
    [F.mean, lambda x: F.quantile(x, 0.5), lambda x: F.cdf(x, 0.0)],
    ids=["mean", "quantile", "cdf"],
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


# --- batching and compilation -------------------------------------------------------------------


ARMS_X = np.random.default_rng(30).normal(0.0, 1.0, (6, 37)).astype(np.float32)
ARMS_Y = np.random.default_rng(31).normal(0.5, 1.3, (6, 53)).astype(np.float32)


def test_distances_vmap_over_arms_equals_loop():
    batched = jax.jit(jax.vmap(_all_distances))(ARMS_X, ARMS_Y)
    # One reference sample against every arm, as the effects layer does.
    against_one = jax.jit(jax.vmap(_all_distances, in_axes=(0, None)))(ARMS_X, ARMS_Y[0])
    for arm in range(len(ARMS_X)):
        looped = DISTANCES(ARMS_X[arm], ARMS_Y[arm])
        looped_one = DISTANCES(ARMS_X[arm], ARMS_Y[0])
        for name in F.DISTANCE_FUNCTIONALS:
            assert batched[name].shape == (len(ARMS_X),)
            np.testing.assert_allclose(batched[name][arm], looped[name], rtol=RTOL, atol=ATOL)
            np.testing.assert_allclose(
                against_one[name][arm], looped_one[name], rtol=RTOL, atol=ATOL
            )


def test_scalar_functionals_vmap_over_arms_equals_loop():
    points = ARMS_X[0]
    batched = jax.jit(jax.vmap(_all_scalars, in_axes=(0, None)))(ARMS_X, points)
    assert [b.shape for b in batched] == [(6,), (6, len(LEVELS)), (6, len(points))]
    for arm, x in enumerate(ARMS_X):
        for got, looped in zip(batched, SCALARS(x, points), strict=True):
            np.testing.assert_allclose(got[arm], looped, rtol=RTOL, atol=ATOL)


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


# --- sort ---------------------------------------------------------------------------------------

# No subnormals: XLA:CPU flushes them to zero, so both sorts rank them as zeros (in input order).
SPECIALS = np.array(
    [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1.2e-38, -1.2e-38, 3.4e38, -3.4e38, 1, -1, 1],
    np.float32,
)


@pytest.mark.parametrize(
    "x",
    [
        SPECIALS,
        np.random.default_rng(30).permutation(np.tile(SPECIALS, 5)),
        _normal(31, (3, 257)),  # batched: sorts the last axis
        _ints(32, (2, 4, 50), 3),  # heavy ties
    ],
    ids=["specials", "specials_repeated", "batched", "ties_3d"],
)
def test_sort_equals_jnp_sort(x):
    # Same values in the same order as jnp.sort (NaNs last), -0.0 read as 0.0.
    got = np.asarray(jax.jit(F.sort)(x))
    expected = np.asarray(jnp.sort(x, axis=-1))
    np.testing.assert_array_equal(got, expected)
    assert not np.any(np.signbit(got[got == 0]))


def test_sort_of_integers_and_float64():
    ints = np.random.default_rng(33).integers(-50, 50, 99).astype(np.int32)
    np.testing.assert_array_equal(F.sort(ints), np.sort(ints))
    with jax.enable_x64(True):
        x = np.random.default_rng(34).normal(size=99) * 1e300
        x[::7] = -x[::7] * 1e-10
        got = F.sort(jnp.asarray(x))
        assert got.dtype == jnp.float64
        np.testing.assert_array_equal(got, np.sort(x))


def test_sort_gradient_permutes_the_tangent():
    # d sort(x)_k / dx_i = 1 where x_i is the k-th smallest: jnp.sort's derivative.
    x = _normal(35, 9)
    weights = np.arange(1.0, 10.0, dtype=np.float32)
    ours = jax.grad(lambda v: jnp.sum(weights * F.sort(v)))(x)
    reference = jax.grad(lambda v: jnp.sum(weights * jnp.sort(v)))(x)
    np.testing.assert_array_equal(ours, reference)
    tangent = jax.jvp(F.sort, (x,), (np.ones_like(x),))[1]
    np.testing.assert_array_equal(tangent, np.ones_like(x))


# --- gradients ----------------------------------------------------------------------------------


def test_wasserstein_grad_equal_sizes_is_analytic():
    x, y = PAIRS["equal"]
    grad_x, grad_y = GRADS(x, y)["wasserstein"]
    # dW1/dx_(i) = sign(x_(i) - y_(i)) / n, permuted back to the original order of x.
    n = x.shape[0]
    sign = np.sign(np.sort(_f64(x)) - np.sort(_f64(y)))
    expected_x, expected_y = np.empty(n), np.empty(n)
    expected_x[np.argsort(x)] = sign / n
    expected_y[np.argsort(y)] = -sign / n
    np.testing.assert_allclose(grad_x, expected_x, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(grad_y, expected_y, rtol=RTOL, atol=ATOL)


def _energy_grad_x(x, y):
    """d/dx_i of the brute-force energy distance (valid without ties)."""
    x, y = _f64(x), _f64(y)
    n, m = len(x), len(y)
    cross = np.sign(x[:, None] - y[None, :]).sum(axis=1) * 2 / (n * m)
    within = np.sign(x[:, None] - x[None, :]).sum(axis=1) * 2 / n**2
    return cross - within


@pytest.mark.parametrize("pair", ["equal", "unequal", "unequal_far"])
def test_energy_grad_matches_analytic(pair):
    x, y = PAIRS[pair]
    grad_x, grad_y = GRADS(x, y)["energy"]
    np.testing.assert_allclose(grad_x, _energy_grad_x(x, y), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(grad_y, _energy_grad_x(y, x), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("pair", ["unequal", "unequal_far"])
def test_wasserstein_grad_unequal_sizes_matches_finite_differences(pair):
    x, y = PAIRS[pair]
    grad_x, _ = GRADS(x, y)["wasserstein"]
    # W1 is piecewise linear in x, so a float64 central difference is exact up to rounding as
    # long as the step does not reorder the pooled sample (checked: min spacing > 10 * eps).
    eps = 1e-7
    x64, y64 = _f64(x), _f64(y)
    assert np.diff(np.sort(np.concatenate([x64, y64]))).min() > 10 * eps
    fd = np.empty_like(x64)
    for i in range(len(x64)):
        up, down = x64.copy(), x64.copy()
        up[i] += eps
        down[i] -= eps
        w_up = scipy.stats.wasserstein_distance(up, y64)
        w_down = scipy.stats.wasserstein_distance(down, y64)
        fd[i] = (w_up - w_down) / (2 * eps)
    np.testing.assert_allclose(grad_x, fd, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("pair", ["ties_equal", "ties_unequal", "repeated_across", "constant"])
def test_distance_grads_are_finite_with_ties(pair):
    x, y = PAIRS[pair]
    for name, (grad_x, grad_y) in GRADS(x, y).items():
        assert grad_x.shape == x.shape and grad_y.shape == y.shape
        assert np.all(np.isfinite(grad_x)) and np.all(np.isfinite(grad_y)), name


# --- registry -----------------------------------------------------------------------------------


def test_registry():
    assert F.SCALAR_FUNCTIONALS == ("mean", "quantile", "cdf")
    assert F.DISTANCE_FUNCTIONALS == ("wasserstein", "energy", "ks")
    assert tuple(F.DISTANCES) == F.DISTANCE_FUNCTIONALS
    for name in F.SCALAR_FUNCTIONALS + F.DISTANCE_FUNCTIONALS:
        assert callable(getattr(F, name))
    for name, fn in F.DISTANCES.items():
        assert fn is getattr(F, name)
    assert "energy_unbiased" in F.__all__
