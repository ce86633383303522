"""The Monte Carlo core: shapes, determinism, common random numbers, weights, compilation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import f as f_dist

import dcma_jax as dj

ARMS = dj.natural_effects(1).arms
DRAWS = 1000  # one draw count (one compilation) shared by most tests


def test_shapes_and_determinism(mdn_fit):
    model, params, x, w = mdn_fit
    draws = dj.simulate(model, params, jax.random.key(1), x, w, ARMS, DRAWS)
    assert draws.outcome.shape == (4, DRAWS) and draws.mediators.shape == (4, DRAWS, 1)
    again = dj.simulate(model, params, jax.random.key(1), x, w, ARMS, DRAWS)
    np.testing.assert_array_equal(draws.outcome, again.outcome)
    other = dj.simulate(model, params, jax.random.key(2), x, w, ARMS, DRAWS)
    assert not np.allclose(draws.outcome, other.outcome)


def test_arms_share_mediator_draws_under_the_same_treatment(mdn_fit):
    # Y(1, M(0)) and Y(0, M(0)) see the same covariate rows and mediator noise, so their
    # mediator draws are identical; so are those of Y(1, M(1)) and Y(0, M(1)).
    model, params, x, w = mdn_fit
    draws = dj.simulate(model, params, jax.random.key(3), x, w, ARMS, DRAWS)
    np.testing.assert_array_equal(draws.mediators[1], draws.mediators[3])
    np.testing.assert_array_equal(draws.mediators[0], draws.mediators[2])


def test_each_distinct_chain_is_drawn_once_with_the_same_draws(mdn_fit):
    # The natural effects' 4 arms read 2 distinct mediator chains; interventional arms mix
    # chains by position. Drawing each distinct chain once must give every arm's own draws.
    model, params, x, w = mdn_fit
    packed = dj.Arms.pack(ARMS)
    np.testing.assert_array_equal(packed.chain_index, [[0], [1], [0], [1]])  # a_M = 1, 0, 1, 0
    np.testing.assert_array_equal(packed.representatives, [[0, 0], [1, 0]])
    own = packed._replace(chain_index=None, representatives=None)
    key = jax.random.key(4)
    shared = dj.simulate_packed(model, params, key, x, w, packed, DRAWS)
    separate = dj.simulate_packed(model, params, key, x, w, own, DRAWS)
    np.testing.assert_array_equal(shared.outcome, separate.outcome)
    np.testing.assert_array_equal(shared.mediators, separate.mediators)
    two = [
        dj.Arm.marginal("Y(1;G_M1(1),G_M2(0))", 1.0, (1.0, 0.0)),  # chains (1, 1) and (0, 0)
        dj.Arm.joint("Y(1,M1(1),M2(1))", 1.0, (1.0, 1.0)),  # chain (1, 1), padded with itself
    ]
    mixed = dj.Arms.pack(two)
    # Position 0 under (1, 1) in both arms is one chain; the joint arm's padding chain is
    # never read, so it is not drawn: 2 distinct chains for the 4 positions.
    np.testing.assert_array_equal(mixed.chain_index, [[0, 1], [0, 0]])
    np.testing.assert_array_equal(mixed.representatives, [[0, 0], [0, 1]])


def test_common_random_numbers_reduce_effect_variance(mdn_fit):
    # Monte Carlo SD of the NDE_control mean, Y(1, M(0)) - Y(0, M(0)), over seeds, with common
    # random numbers versus each arm simulated with its own key. Under H0 (no reduction) the
    # ratio of the two sample variances over R seeds is F(R-1, R-1); we require it to exceed
    # the 0.999 quantile.
    model, params, x, w = mdn_fit
    reps, draws = 20, DRAWS
    crn, indep = [], []
    for r in range(reps):
        key = jax.random.key(100 + r)
        y = dj.simulate(model, params, key, x, w, ARMS, draws).outcome
        crn.append(float(jnp.mean(y[1]) - jnp.mean(y[3])))
        k0, k1 = jax.random.split(key)
        y1 = dj.simulate(model, params, k0, x, w, ARMS[1:2], draws).outcome[0]
        y0 = dj.simulate(model, params, k1, x, w, ARMS[3:4], draws).outcome[0]
        indep.append(float(jnp.mean(y1) - jnp.mean(y0)))
    ratio = np.var(indep, ddof=1) / np.var(crn, ddof=1)
    assert ratio > f_dist.ppf(0.999, reps - 1, reps - 1), ratio


def test_weights_select_covariate_rows(mdn_fit):
    # Weight on a single row: every draw uses that row's covariates.
    model, params, x, _ = mdn_fit
    w = jnp.zeros(x.shape[0]).at[7].set(1.0)
    draws = dj.simulate(model, params, jax.random.key(4), x, w, ARMS, DRAWS)
    # Same key, so the same noise: only the covariate rows could differ, and they must not.
    alone = dj.simulate(model, params, jax.random.key(4), x[7:8], jnp.ones(1), ARMS, DRAWS)
    np.testing.assert_allclose(draws.outcome, alone.outcome, rtol=1e-6, atol=1e-6)


def test_bad_shapes_are_refused(mdn_fit):
    model, params, x, w = mdn_fit
    with pytest.raises(TypeError, match=r"arms must be a sequence of dcma_jax.Arm"):
        dj.simulate(model, params, jax.random.key(0), x, w, jnp.zeros((4, 2)), 10)
    two = dj.Arm.joint("Y(1,M1(0),M2(0))", 1.0, (0.0, 0.0))
    with pytest.raises(ValueError, match=r"arms: mediators must be \(n_arms, C, 1\)"):
        dj.simulate(model, params, jax.random.key(0), x, w, [two], 10)
    with pytest.raises(ValueError, match=r"covariates must have shape \(n, 4\)"):
        dj.simulate(model, params, jax.random.key(0), x[:, :2], w, ARMS, 10)


def test_second_call_does_not_retrace(mdn_fit):
    model, params, x, w = mdn_fit
    dj.simulate(model, params, jax.random.key(5), x, w, ARMS, DRAWS)
    before = dj.simulate_packed._cache_size()
    shifted = jax.tree.map(lambda p: p + 0.01, params)
    other_arms = dj.natural_effects(1, 0.5, 0.0).arms  # other codes, same layout
    dj.simulate(model, shifted, jax.random.key(6), x + 1.0, w * 2.0, other_arms, DRAWS)
    assert dj.simulate_packed._cache_size() == before


def test_chunks_are_laid_out_in_order_the_last_ending_at_the_last_draw(mdn_fit):
    # 750 draws in chunks of 250 are chunks 0, 1, 2 (keys fold_in(key, i)). 626 draws are three
    # chunks too, the last written over the end of chunk 1 (at 376..626), not trimmed: no buffer
    # outgrows the draws kept.
    model, params, x, w = mdn_fit
    key = jax.random.key(7)
    whole = dj.simulate(model, params, key, x, w, ARMS, 750, chunk_size=250)
    part = dj.simulate(model, params, key, x, w, ARMS, 626, chunk_size=250)
    assert part.outcome.shape == (4, 626) and part.mediators.shape == (4, 626, 1)
    for field, axis in (("outcome", 1), ("mediators", 1), ("rows", 0)):
        got, full = np.asarray(getattr(part, field)), np.asarray(getattr(whole, field))
        np.testing.assert_array_equal(got.take(range(376), axis), full.take(range(376), axis))
        np.testing.assert_array_equal(
            got.take(range(376, 626), axis), full.take(range(500, 750), axis)
        )
