"""Treatments beyond binary: continuous (arms at values, dose-response, autodiff local effects)
and categorical (one-hot contexts, each level against a reference).

Truths are closed forms of linear-Gaussian SCMs; with linear generators every mean contrast is a
deterministic function of the OLS coefficients, so tolerances are 4 delta-method standard
errors of those coefficients (a false alarm per check ~6e-5).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from multi_mediator_fits import CLOSED_FORMS, continuous_result, frame, ols_standard_errors

import dcma_jax as dj
from dcma_jax.data import DataError
from dcma_jax.datasets import CONTINUOUS_TREATMENT, linear_truths
from dcma_jax.graph import CausalGraph

# ---- data validation --------------------------------------------------------------------------


def _frame(a, n=60, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"A": a, "M": rng.normal(size=n), "Y": rng.normal(size=n)})


def test_continuous_treatment_is_standardised():
    a = np.linspace(-2, 4, 60)
    data = dj.MediationData.from_dataframe(
        _frame(a), treatment="A", mediators="M", outcome="Y", types={"A": "continuous"}
    )
    assert data.treatment_var.kind == "continuous"
    np.testing.assert_allclose(data.treatment_var.decode(data.treatment), a)
    assert "continuous (mean 1" in data.summary()


def test_categorical_treatment_codes_levels():
    a = np.tile(["placebo", "low", "high"], 20)
    data = dj.MediationData.from_dataframe(
        _frame(a), treatment="A", mediators="M", outcome="Y", types={"A": "categorical"}
    )
    var = data.treatment_var
    assert var.kind == "categorical" and var.levels == ("high", "low", "placebo")
    assert var.num_levels == 3
    np.testing.assert_array_equal(data.treatment[:3], [2.0, 1.0, 0.0])
    assert "reference 'high'" in var.describe()
    with pytest.raises(DataError, match="value 'mid' is not one of its levels"):
        var.encode(["mid"])


@pytest.mark.parametrize(
    "a, types, message",
    [
        (np.tile([0, 1], 30), {"A": "categorical"}, "needs at least 3 levels"),
        (np.tile(["a", "b", "c"], 20), {"A": "continuous"}, "has text in a numeric role"),
        (np.full(60, 2.0), {"A": "continuous"}, "is constant"),
        (np.tile([0, 1, 2], 20), None, r"types=\{'A': 'categorical'\} or 'continuous'"),
        (np.tile(["a", "b", "c"], 20), None, r"declare a multi-valued treatment"),
    ],
)
def test_treatment_type_errors(a, types, message):
    with pytest.raises(DataError, match=message):
        dj.MediationData.from_dataframe(
            _frame(a), treatment="A", mediators="M", outcome="Y", types=types
        )


def test_treated_level_is_for_binary_only():
    with pytest.raises(DataError, match="treated_level applies to a binary treatment"):
        dj.MediationData.from_dataframe(
            _frame(np.linspace(0, 1, 60)),
            treatment="A",
            mediators="M",
            outcome="Y",
            types={"A": "continuous"},
            treated_level=1,
        )


def test_graph_encodes_categorical_treatment_one_hot():
    graph = CausalGraph.chain(["M"], ["continuous"], "Y", "continuous", treatment_levels=3)
    assert graph.treatment_width == 2 and graph.context_dim(0, 4) == 6
    codes = jnp.asarray([0.0, 1.0, 2.0])
    np.testing.assert_array_equal(graph.encode_treatment(codes), [[0, 0], [1, 0], [0, 1]])
    binary = CausalGraph.chain(["M"], ["continuous"], "Y", "continuous")
    assert binary.treatment_width == 1


# ---- continuous treatment ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def continuous():
    return continuous_result()


def test_continuous_interventional_effects_recover_closed_form(continuous):
    truth = linear_truths(delta=1.0)  # treatment_values (1, 0): a change of one unit
    se = ols_standard_errors(frame(CONTINUOUS_TREATMENT), CLOSED_FORMS)
    for effect in ("IDE", "IIE_M1", "IIE_M2", "TE"):
        got = continuous.estimate(effect, "mean")
        assert abs(got - truth[effect]) < 4 * se[effect], (effect, got, truth[effect])
    assert "Y(1,M1(0),M2(0))" in continuous.meta["arms"]


def test_local_effects_by_autodiff_recover_closed_form(continuous):
    dose = continuous.meta["dose_response"]
    truth = linear_truths()
    se = ols_standard_errors(frame(CONTINUOUS_TREATMENT), CLOSED_FORMS)
    se_indirect = ols_standard_errors(
        frame(CONTINUOUS_TREATMENT),
        {"LIE": lambda c: c["g1"] * c["b1"] + c["g2"] * (c["b2"] + c["d"] * c["b1"])},
    )["LIE"]
    for direct, indirect in zip(dose["local_direct"], dose["local_indirect"], strict=True):
        assert abs(direct - truth["IDE"]) < 4 * se["IDE"]
        assert abs(indirect - truth["NIE"]) < 4 * se_indirect
    # The dose-response surface is linear: mu(a, a') differences match the local slopes.
    mu = np.asarray(dose["mean"])
    np.testing.assert_allclose(np.diff(mu, axis=0), dose["local_direct"][0], atol=1e-3)
    np.testing.assert_allclose(np.diff(mu, axis=1), dose["local_indirect"][0], atol=1e-3)


def test_autodiff_is_used_for_smooth_generators(continuous):
    assert continuous.meta["dose_response"]["method"] == "autodiff"


@pytest.mark.slow
def test_mixture_generators_fall_back_to_finite_differences(mdn_fit):
    model, params, x, w = mdn_fit
    assert not dj.queries.pathwise_differentiable(model)  # mixture: component switching
    grid = jnp.asarray([0.0, 0.5])
    mu, d_fd, i_fd = dj.queries.dose_response_surface(
        model, params, jax.random.key(9), x, w, grid, 1000, method="finite_difference"
    )
    # Finite differences of the CRN means: the arms at a' +- step share all noise.
    assert mu.shape == (2, 2) and np.all(np.isfinite(d_fd)) and np.all(np.isfinite(i_fd))


@pytest.mark.slow
def test_grad_through_simulate_for_linear_generators():
    # Linear generators: jax.grad through simulate equals central differences on the same
    # noise exactly (the draws are affine in the treatment code), up to float32 rounding.
    data = dj.MediationData.from_dataframe(
        frame(CONTINUOUS_TREATMENT),
        treatment="A",
        mediators=["M1", "M2"],
        outcome="Y",
        covariates=["X"],
        types={"A": "continuous"},
    )
    model = dj.build_model(data, "linear")
    params, _ = dj.fit_model(model, data, jax.random.key(0))
    x, w = jnp.asarray(data.covariates, jnp.float32), jnp.ones(data.n)
    assert dj.queries.pathwise_differentiable(model)

    def mean_y(a_m):
        codes = jnp.stack([a_m, a_m])[None, None]
        arms = dj.Arms(jnp.asarray([0.3]), codes, jnp.zeros((1, 2), int))
        draws = dj.simulate_packed(model, params, jax.random.key(9), x, w, arms, 1000)
        return jnp.mean(draws.outcome)

    grad = float(jax.grad(mean_y)(jnp.asarray(0.5)))
    h = 0.1
    fd = float((mean_y(jnp.asarray(0.5 + h)) - mean_y(jnp.asarray(0.5 - h))) / (2 * h))
    assert grad == pytest.approx(fd, abs=1e-3)


def test_continuous_arguments_are_checked():
    data = dj.MediationData.from_dataframe(
        frame(CONTINUOUS_TREATMENT),
        treatment="A",
        mediators=["M1", "M2"],
        outcome="Y",
        types={"A": "continuous"},
    )
    with pytest.raises(ValueError, match="two different finite numbers"):
        dj.analyze(data, generators="linear", treatment_values=(1.0, 1.0))
    with pytest.raises(ValueError, match="reference applies to a categorical treatment"):
        dj.analyze(data, generators="linear", reference="a")


# ---- categorical treatment ---------------------------------------------------------------------

LEVELS = ("high", "low", "placebo")
BETA = {"placebo": 0.0, "low": 0.4, "high": 1.0}  # A -> M
TAU = {"placebo": 0.0, "low": 0.3, "high": 0.5}  # A -> Y
GAMMA = 0.7  # M -> Y


@pytest.fixture(scope="module")
def categorical():
    rng = np.random.default_rng(3)
    n = 3000
    x = rng.normal(size=n)
    a = np.asarray(LEVELS)[rng.integers(0, 3, n)]
    m = 0.2 + np.vectorize(BETA.get)(a) + 0.5 * x + rng.normal(size=n)
    y = 0.1 + np.vectorize(TAU.get)(a) + GAMMA * m + 0.3 * x + rng.normal(size=n)
    df = pd.DataFrame({"X": x, "A": a, "M": m, "Y": y})
    data = dj.MediationData.from_dataframe(
        df, treatment="A", mediators="M", outcome="Y", covariates=["X"], types={"A": "categorical"}
    )
    result = dj.analyze(
        data, generators="linear", num_draws=2000, reference="placebo", quantiles=(0.5,), seed=0
    )
    dummies = np.c_[(a == "low"), (a == "high")].astype(float)
    med = sm.OLS(m, sm.add_constant(np.c_[dummies, x])).fit()
    out = sm.OLS(y, sm.add_constant(np.c_[dummies, m, x])).fit()
    return result, med, out


def test_categorical_levels_against_reference(categorical):
    result, med, out = categorical
    assert {"TE[low]", "TE[high]", "NIE_treated[high]"} <= set(result.table.effect)
    assert result.meta["contrasts"][0] == {
        "treated": "high",
        "control": "placebo",
        "suffix": "[high]",
    }
    g, se_g = out.params[3], out.bse[3]
    for i, level in ((1, "low"), (2, "high")):
        nde = result.estimate(f"NDE_control[{level}]", "mean")
        assert abs(nde - TAU[level]) < 4 * out.bse[i]
        nie = result.estimate(f"NIE_treated[{level}]", "mean")
        b = med.params[i]
        se = np.hypot(g * med.bse[i], b * se_g)
        assert abs(nie - GAMMA * BETA[level]) < 4 * se, (level, nie)


def test_continuous_path_specific_effect(continuous):
    # A -> Y plus A -> M2 -> Y for a one-unit change: t + g2 b2 (closed form of the SCM).
    se = ols_standard_errors(frame(CONTINUOUS_TREATMENT), CLOSED_FORMS)
    name = "PSE[Y(1,M1(0),M2(1,M1(0)))]"
    assert abs(continuous.estimate(name, "mean") - linear_truths()["PSE_A_M2_Y"]) < 4 * se[name]
