"""Interventional effects with two sequential mediators: the exact decomposition and recovery.

SCM: dcma_jax.datasets.TWO_MEDIATORS (linear-Gaussian, binary A, M1 -> M2). Closed-form truths
(linear_truths): IDE = t, IIE_M1 = g1 b1, IIE_M2 = g2 (b2 + d b1), IIE_dependence = 0 on the
mean. With linear generators and common random numbers every mean contrast is a deterministic
function of the OLS coefficients (each draw of the two arms differs by the same fitted shift), so
the Monte Carlo error of the mean effects is float32 rounding only; the tolerance is 4 standard
errors of that function of the coefficients (delta method on the three OLS fits; a false alarm
per check ~6e-5).
"""

import jax
import numpy as np
import pytest
from multi_mediator_fits import CLOSED_FORMS, frame, interventional_result, ols_standard_errors

import dcma_jax as dj
from dcma_jax.arms import Arm, Arms
from dcma_jax.datasets import TWO_MEDIATORS, linear_truths
from dcma_jax.estimands import interventional_effects


@pytest.fixture(scope="module")
def result():
    return interventional_result()


def test_effect_names_and_arms(result):
    names = list(result.table.effect.unique())
    assert names[:4] == ["TE", "IDE", "IIE_M1", "IIE_M2"]
    assert "IIE_dependence" in names
    arms = result.meta["arms"]
    # The joint arm Y(1;G(0)) is named by the nested counterfactual it equals in law.
    joint = arms["Y(1,M1(0),M2(0))"]
    assert joint == {"outcome": 1.0, "chains": [[0.0, 0.0]], "sources": [0, 0]}
    marginal = arms["Y(1;G_M1(1),G_M2(0))"]
    assert marginal == {"outcome": 1.0, "chains": [[1.0, 1.0], [0.0, 0.0]], "sources": [0, 1]}
    assert result.meta["effects"] == "interventional"


def test_decomposition_identity_is_exact(result):
    # TE = IDE + IIE_M1 + IIE_M2 + IIE_dependence for every scalar functional: the sum
    # telescopes over arms; only float32 rounding of O(5) values separates the two sides.
    t = result.table
    for functional in ("mean", "quantile", "cdf"):
        rows = t[t.functional == functional]
        wide = rows.pivot_table(index="level", columns="effect", values="estimate", dropna=False)
        if functional == "mean":
            wide = rows.set_index("effect").estimate.to_frame().T
        total = wide["IDE"] + wide["IIE_M1"] + wide["IIE_M2"] + wide["IIE_dependence"]
        np.testing.assert_allclose(wide["TE"], total, atol=2e-5)


def test_mean_effects_recover_closed_form(result):
    truth = linear_truths()
    se = ols_standard_errors(frame(), CLOSED_FORMS)
    for effect in ("IDE", "IIE_M1", "IIE_M2", "TE"):
        got = result.estimate(effect, "mean")
        assert abs(got - truth[effect]) < 4 * se[effect], (effect, got, truth[effect], se[effect])
    # Linear generators: within each pair of arms (joint J11 vs J10, marginal R2 vs R0) every
    # draw moves by the same fitted shift, so the mean dependence term is 0 up to float32 rounding.
    assert abs(result.estimate("IIE_dependence", "mean")) < 1e-5


def test_dependence_is_distributional_in_the_scm():
    # M1 -> M2 makes the mediators dependent given X: joint arms have a larger spread than
    # marginal ones, so the CDF dependence term is non-zero although the mean term is 0.
    spec = dj.FunctionalSpec(quantiles=(), cdf_points=(3.0,), distances=())
    truth = TWO_MEDIATORS.true_effects(
        interventional_effects(["M1", "M2"]), spec, num_draws=200_000
    )
    # Mean: exactly 0 in expectation; Monte Carlo SD of the shared-draw difference ~0.005.
    assert abs(truth[("IIE_dependence", "mean", None)]) < 0.02
    assert abs(truth[("IIE_dependence", "cdf", 3.0)]) > 0.01


@pytest.mark.slow
def test_single_mediator_interventional_equals_natural(default_data):
    # With one mediator, IDE = NDE_control and IIE_M = NIE_treated draw for draw: the joint
    # and the marginal chain coincide and share noise with the natural arms.
    kw = dict(generators="linear", num_draws=2000, seed=0)  # test_analyze's settings
    nat = dj.analyze(default_data, **kw)
    itv = dj.analyze(default_data, effects="interventional", **kw)
    for a, b in (("IDE", "NDE_control"), ("IIE_M", "NIE_treated"), ("TE", "TE")):
        assert itv.estimate(a, "mean") == pytest.approx(nat.estimate(b, "mean"), abs=1e-5)
    assert abs(itv.estimate("IIE_dependence", "mean")) < 1e-5


def test_marginal_arms_use_independent_chains():
    # Arm.marginal: mediator j is read from chain j; chains share nothing but x.
    arms = Arms.pack([Arm.marginal("Y(1;G_M1(0),G_M2(1))", 1.0, (0.0, 1.0))])
    assert arms.sources.tolist() == [[0, 1]]
    assert arms.mediators.tolist() == [[[0.0, 0.0], [1.0, 1.0]]]


def test_one_compiled_call_for_joint_and_marginal_arms():
    # All arms of the interventional estimands go through one simulate call: its cache grows by
    # one entry (one trace) for the whole arm set.
    data = dj.MediationData.from_dataframe(
        frame(), treatment="A", mediators=["M1", "M2"], outcome="Y", covariates=["X"]
    )
    model = dj.build_model(data, "linear")
    params, _ = dj.fit_model(model, data, jax.random.key(0))
    est = interventional_effects(["M1", "M2"])
    x = jax.numpy.asarray(data.covariates, jax.numpy.float32)
    w = jax.numpy.ones(data.n)
    before = dj.simulate_packed._cache_size()
    draws = dj.simulate(model, params, jax.random.key(1), x, w, est.arms, 500)
    assert draws.outcome.shape == (6, 500) and draws.mediators.shape == (6, 500, 2)
    assert dj.simulate_packed._cache_size() == before + 1
    dj.simulate(model, params, jax.random.key(2), x, w, est.arms, 500)
    assert dj.simulate_packed._cache_size() == before + 1
    # Joint arms Y(1;G(1)) and Y(1;G(0)) share chain-0 noise: M1 differs by the fitted shift.
    shift = np.asarray(draws.mediators[0, :, 0] - draws.mediators[1, :, 0])
    np.testing.assert_allclose(shift, shift[0], atol=1e-5)


@pytest.mark.slow
def test_experiment_runs_quick(tmp_path):
    # experiments/multi_mediator.py --quick must not rot (about 2 minutes on 2 cores).
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "experiments" / "multi_mediator.py"
    spec = importlib.util.spec_from_file_location("multi_mediator_experiment", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--quick", "--out", str(tmp_path / "table.md")])
    text = (tmp_path / "table.md").read_text()
    assert "| two_mediators | linear | IIE_M2 | mean |" in text
