"""The fitted model as a value: fit once, query many; pytree; no refit or retrace per query.

That ``fit`` then ``effects`` equals ``analyze`` with the same seed is
``test_analyze.test_same_seed_same_numbers`` (the same two session fits).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from conftest import MIXED_FIT, MIXED_QUERY

import dcma_jax as dj
from dcma_jax import queries
from dcma_jax.datasets import TWO_MEDIATORS

QUERY = MIXED_QUERY


@pytest.fixture(scope="module")
def fitted(mixed_fitted):
    """The default study fitted with ``conftest.MIXED_FIT`` (mdn M, linear Y, B = 4, seed 11)."""
    assert MIXED_FIT["seed"] == 11 and MIXED_FIT["bootstrap"] == 4  # what the tests assume
    return mixed_fitted


def test_queries_do_not_refit(fitted, monkeypatch):
    def no_fitting(*args, **kwargs):
        raise AssertionError("a query refitted")

    monkeypatch.setattr(dj.fitted, "fit_model", no_fitting)
    monkeypatch.setattr(dj.fitted, "fit_bootstrap", no_fitting)
    result = fitted.effects(quantiles=(0.2, 0.8), distances=("ks",), **QUERY)
    assert set(result.table.functional) == {"mean", "quantile", "cdf", "ks"}
    assert result.table[["ci_low", "ci_high"]].notna().all().all()


def test_second_effects_query_does_not_retrace(fitted):
    fitted.effects(seed=1, **QUERY)
    points, replicates = queries.arm_effects._cache_size(), queries.replicate_effects._cache_size()
    other = fitted.effects(seed=2, **QUERY)  # new seed, same shapes
    assert queries.arm_effects._cache_size() == points
    assert queries.replicate_effects._cache_size() == replicates
    assert other.meta["seed"] == 2 and other.meta["fit_seed"] == 11


def test_query_seed_defaults_to_the_fit_seed(fitted):
    default = fitted.effects(**QUERY)
    pd.testing.assert_frame_equal(default.table, fitted.effects(seed=11, **QUERY).table)
    assert not default.table.equals(fitted.effects(seed=12, **QUERY).table)


def test_fitted_model_is_a_pytree(fitted):
    leaves = jax.tree.leaves(fitted)
    assert len(leaves) == len(jax.tree.leaves(fitted.params)) * 2 + 1  # + replicate counts
    assert fitted.replicate_counts.shape == (4, fitted.data.n)
    np.testing.assert_array_equal(fitted.replicate_counts.sum(axis=1), fitted.data.n)
    # jit and vmap see the parameters; the structure is static.
    doubled = jax.jit(lambda f: jax.tree.map(lambda v: 2 * v, f))(fitted)
    assert isinstance(doubled, dj.FittedMediation) and doubled.model is fitted.model
    first = jax.vmap(lambda p: jax.tree.leaves(p)[0])(fitted.replicate_params)
    assert first.shape[0] == 4


def test_grad_of_an_arm_mean_through_the_fitted_model(default_data):
    # Linear outcome Y = b'c + b0 + sigma z (internal units): d E[Y(1, M(0))] / d b0 = 1 and
    # d / d(coefficient of A) = 1 (the outcome sees a = 1); exact, whatever the draws.
    fitted = dj.fit(default_data, generators="linear")
    arms = dj.Arms.pack(dj.parse_arms(["Y(1,M(0))"], fitted.model.graph), jnp.float32)
    x = jnp.asarray(default_data.covariates, jnp.float32)
    w = jnp.ones(default_data.n)

    def mean_outcome(f):
        draws = dj.simulate_packed(f.model, f.params, jax.random.key(0), x, w, arms, 1000)
        return jnp.mean(draws.outcome)

    grads = jax.grad(mean_outcome)(fitted)
    assert isinstance(grads, dj.FittedMediation)
    outcome = jax.tree_util.tree_flatten_with_path(grads.params[1])[0]
    by_name = {jax.tree_util.keystr(path): np.asarray(v) for path, v in outcome}
    np.testing.assert_allclose(by_name["['params']['linear']['bias']"], 1.0, rtol=1e-5)
    # The outcome's context is (a, m, x): the treatment's coefficient gets d/db_a = a = 1.
    np.testing.assert_allclose(by_name["['params']['linear']['kernel']"][0], 1.0, rtol=1e-5)


def test_simulate_returns_draws_in_original_units(default_data):
    fitted = dj.fit(default_data, generators="linear", seed=3)
    draws = fitted.simulate(["Y(1,M(0))", "Y(0;G(0))", "Y(1, M(1))"], num_draws=20_000)
    assert list(draws.columns) == ["arm", "M", "Y"]
    assert list(draws.arm.unique()) == ["Y(1,M(0))", "Y(0,M(0))", "Y(1,M(1))"]
    arm = {name: g for name, g in draws.groupby("arm", sort=False)}
    # Common random numbers: arms under the same mediator value share mediator draws.
    np.testing.assert_array_equal(arm["Y(1,M(0))"].M.to_numpy(), arm["Y(0,M(0))"].M.to_numpy())
    # Original units: E[M(1)] = mean over the covariate rows of the OLS prediction at A = 1
    # (statsmodels on the same rows), within the draws' Monte Carlo error.
    import statsmodels.api as sm

    d = default_data
    design = sm.add_constant(np.c_[d.treatment, d.covariates])
    beta = sm.OLS(d.mediators[:, 0], design).fit().params
    design[:, 1] = 1.0
    expected = d.mediator_vars[0].decode(np.mean(design @ beta))
    m1 = arm["Y(1,M(1))"].M
    assert abs(m1.mean() - expected) < 4 * m1.std() / np.sqrt(len(m1))


def test_simulate_refuses_unidentified_and_malformed_arms(default_data):
    data = dj.MediationData.from_dataframe(
        TWO_MEDIATORS.observational(0, 500),
        treatment="A",
        mediators=["M1", "M2"],
        outcome="Y",
        covariates=["X"],
    )
    fitted = dj.fit(data, generators="linear")
    draws = fitted.simulate("Y(1;G_M1(1),G_M2(0))", num_draws=100)
    assert list(draws.columns) == ["arm", "M1", "M2", "Y"] and len(draws) == 100
    with pytest.raises(dj.PathSpecificError, match="M1 is a recanting witness"):
        fitted.simulate(["Y(1,M1(0),M2(1,M1(1)))"])
    with pytest.raises(dj.PathSpecificError, match="a marginal arm needs G_<M>"):
        fitted.simulate(["Y(1;G_M1(1))"])
    with pytest.raises(dj.PathSpecificError, match="names no mediator"):
        fitted.simulate(["Y(1;G_M3(1),G_M1(0),G_M2(0))"])


def test_dose_response_query_matches_the_effects_meta():
    from multi_mediator_fits import SETTINGS, continuous_result, data_of, frame

    from dcma_jax.datasets import CONTINUOUS_TREATMENT

    result = continuous_result()
    fit_args = {k: v for k, v in SETTINGS.items() if k in ("generators", "seed")}
    fitted = dj.fit(data_of(frame(CONTINUOUS_TREATMENT), "continuous"), **fit_args)
    dose = fitted.dose_response((-1.0, 0.0, 1.0), num_draws=SETTINGS["num_draws"])
    np.testing.assert_allclose(dose["mean"], result.meta["dose_response"]["mean"], rtol=1e-6)
    with pytest.raises(ValueError, match="grid must be a non-empty list"):
        fitted.dose_response([])


def test_fit_arguments_are_checked(default_data):
    with pytest.raises(ValueError, match="bootstrap must be >= 0"):
        dj.fit(default_data, bootstrap=-1)
    with pytest.raises(ValueError, match="block_size must be positive"):
        dj.fit(default_data, bootstrap=2, block_size=0)
