"""Natural path-specific effects: parsing, the recanting-witness check, recovery, the CLI flag.

Truth: the SCM's nested counterfactual evaluated through its structural equations on shared
unit noise (SequentialStudy.counterfactual_outcomes), independent of the identification formula
the estimator uses. With linear generators the estimated contrast is a deterministic function of
the OLS coefficients (t + g2 b2 for A -> M2 -> Y plus the direct path), so the tolerance is 4
delta-method standard errors (see multi_mediator_fits.ols_standard_errors).
"""

import json

import numpy as np
import pytest
from multi_mediator_fits import (
    CLOSED_FORMS,
    PSE,
    data_of,
    frame,
    interventional_result,
    ols_standard_errors,
)

import dcma_jax as dj
from dcma_jax import cli
from dcma_jax.datasets import TWO_MEDIATORS
from dcma_jax.graph import CausalGraph
from dcma_jax.paths import PathSpecificError, identify, parse

TWO = CausalGraph.chain(["M1", "M2"], ["continuous"] * 2, "Y", "continuous")
THREE = CausalGraph.chain(["M1", "M2", "M3"], ["continuous"] * 3, "Y", "continuous")
PARALLEL = CausalGraph.chain(["M1", "M2"], ["continuous"] * 2, "Y", "continuous", [(), ()])


@pytest.mark.parametrize(
    "text, canonical, arm",
    [
        ("Y(1,M1(0),M2(1,M1(0)))", "Y(1,M1(0),M2(1,M1(0)))", (1.0, (0.0, 1.0))),
        ("Y(1, M2(1, M1(0)), M1(0))", "Y(1,M1(0),M2(1,M1(0)))", (1.0, (0.0, 1.0))),
        ("Y(0)", "Y(0,M1(0),M2(0,M1(0)))", (0.0, (0.0, 0.0))),
        ("Y(1,M1(0),M2(0))", "Y(1,M1(0),M2(0,M1(0)))", (1.0, (0.0, 0.0))),
        ("Y(0,M1(1),M2(1))", "Y(0,M1(1),M2(1,M1(1)))", (0.0, (1.0, 1.0))),
    ],
)
def test_identified_expressions(text, canonical, arm):
    cf = parse(text, TWO)
    assert cf.render() == canonical
    assert identify(cf, TWO) == arm


def test_recanting_witness_is_refused_with_the_offending_paths():
    cf = parse("Y(1,M1(0),M2(1,M1(1)))", TWO)
    with pytest.raises(PathSpecificError) as info:
        identify(cf, TWO)
    message = str(info.value)
    assert "M1 is a recanting witness: A→M1→Y is set to 0 but A→M1→M2→Y to 1" in message
    assert "interventional analogue Y(1; G_M1(0), G_M2(1))" in message
    # Shorthand that implies the conflict: M2(1) means M2(1, M1(1)).
    with pytest.raises(PathSpecificError, match="M1 is a recanting witness"):
        identify(parse("Y(1,M1(0),M2(1))", TWO), TWO)


def test_three_mediators_every_descendant_must_agree():
    ok = parse("Y(1,M1(0),M2(1,M1(0)),M3(0,M1(0),M2(1,M1(0))))", THREE)
    assert identify(ok, THREE) == (1.0, (0.0, 1.0, 0.0))
    bad = parse("Y(1,M1(0),M2(1,M1(0)),M3(0,M1(0),M2(0,M1(0))))", THREE)
    with pytest.raises(PathSpecificError, match=r"M2 is a recanting witness: A→M2→Y is set to 1"):
        identify(bad, THREE)


def test_parallel_mediators_have_no_recanting_witness():
    cf = parse("Y(1,M1(0),M2(1))", PARALLEL)
    assert cf.render() == "Y(1,M1(0),M2(1))"
    assert identify(cf, PARALLEL) == (1.0, (0.0, 1.0))
    with pytest.raises(PathSpecificError, match="M1 is not a parent of M2"):
        parse("Y(1,M1(0),M2(1,M1(0)))", PARALLEL)


@pytest.mark.parametrize(
    "text, message",
    [
        ("M1(0)", "outermost node must be the outcome"),
        ("Y(1,M3(0))", "'M3' is not a mediator"),
        ("Y(1,M1(0),M1(1))", "M1 is given twice"),
        ("Y(1,M1(0)", "missing '\\)'"),
        ("Y()", "needs a treatment value"),
        ("Y(1))", "unexpected text"),
    ],
)
def test_malformed_expressions(text, message):
    with pytest.raises(PathSpecificError, match=message):
        parse(text, TWO)


def test_path_specific_effect_recovers_the_scm_truth():
    result = interventional_result()
    y = TWO_MEDIATORS.counterfactual_outcomes(7, 400_000, [PSE, "Y(0,M1(0),M2(0,M1(0)))"])
    truth = float(y[0].mean() - y[1].mean())  # nested counterfactual, shared noise
    # The truth's own Monte Carlo error: the contrast is t + g2 b2 draw for draw (shared noise).
    assert truth == pytest.approx(0.8, abs=1e-9)
    se = ols_standard_errors(frame(), CLOSED_FORMS)[f"PSE[{PSE}]"]
    got = result.estimate(f"PSE[{PSE}]", "mean")
    assert abs(got - truth) < 4 * se, (got, truth, se)
    assert result.meta["path_reference"] == "Y(0,M1(0),M2(0))"  # shortest form


def test_analyze_refuses_before_fitting():
    data = data_of(frame())
    with pytest.raises(PathSpecificError, match="M1 is a recanting witness"):
        dj.analyze(data, generators="linear", path_specific=["Y(1,M1(0),M2(1,M1(1)))"])


def test_cli_refuses_a_non_identified_expression(tmp_path, capsys):
    path = tmp_path / "two.csv"
    frame().to_csv(path, index=False)
    code = cli.main(
        [
            "run",
            "--data",
            str(path),
            "--treatment",
            "A",
            "--mediators",
            "M1,M2",
            "--outcome",
            "Y",
            "--generator",
            "linear",
            "--path-specific",
            "Y(1,M1(0),M2(1,M1(1)))",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dcma: error: M1 is a recanting witness: A→M1→Y is set to 0")
    assert np.char.count(err, "\n") == 0


def test_cli_interventional_and_path_specific(tmp_path, capsys):
    # Same settings as multi_mediator_fits.SETTINGS, so the compiled arm_effects is reused.
    path = tmp_path / "two.csv"
    frame().to_csv(path, index=False)
    out = tmp_path / "out"
    args = ["run", "--data", str(path), "--treatment", "A", "--mediators", "M1,M2"]
    args += ["--outcome", "Y", "--covariates", "X", "--generator", "linear", "--draws", "20000"]
    args += ["--cdf-points", "2", "--effects", "interventional", "--parents", "M2:M1"]
    args += ["--path-specific", PSE, "--no-plots", "--out", str(out)]
    assert cli.main(args) == 0
    stdout = capsys.readouterr().out
    assert "M2 (continuous) <- A, M1, X" in stdout and "IIE_dependence" in stdout
    doc = json.loads((out / "effects.json").read_text())
    effects = {e["effect"] for e in doc["effects"]}
    assert {"TE", "IDE", "IIE_M1", "IIE_M2", "IIE_dependence", f"PSE[{PSE}]"} <= effects
    assert doc["meta"]["parents"] == {"M1": [], "M2": ["M1"]}
    assert doc["meta"]["effects"] == "interventional"


def test_cli_parents_flag_errors(tmp_path, capsys):
    path = tmp_path / "two.csv"
    frame().to_csv(path, index=False)
    args = ["run", "--data", str(path), "--treatment", "A", "--mediators", "M1,M2"]
    args += ["--outcome", "Y", "--parents", "M1:M2"]
    assert cli.main(args) == 2
    assert "parent 'M2' of mediator 'M1' must come earlier" in capsys.readouterr().err
