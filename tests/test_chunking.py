"""The partial last chunk of a simulation is drawn at its own size, not a full chunk's.

Its draws must be the ones a full last chunk would have started with (same key, counter-based
random bits, aligned vector loops): so a simulation of ``n`` draws is the first ``n`` draws of
one with the last chunk full, bit for bit, and trimming the padding changed no number.
"""

import jax
import numpy as np
import pytest
from sharding_child import _inputs, _random_params

import dcma_jax as dj


@pytest.mark.parametrize("family", ["linear", "mdn"])
def test_a_partial_last_chunk_draws_the_start_of_a_full_one(default_data, family):
    model = dj.build_model(default_data, family)
    params = _random_params(default_data, model, 3)
    _, arms, (covariates, weights, *_) = _inputs(default_data, model)

    def draws(n):
        return dj.simulate_packed(
            model, params, jax.random.key(4), covariates, weights, arms, n, 1000
        )

    partial, full = draws(2_300), draws(3_000)  # last chunks of 300 (rounded up to 384) and 1000
    assert partial.outcome.shape == (4, 2_300)
    for got, want in zip(partial, full, strict=True):
        np.testing.assert_array_equal(got, want[..., :2_300] if want.ndim == 1 else want[:, :2_300])
