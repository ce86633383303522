"""Tests for the `dcma` command, run in-process through dcma_jax.cli.main.

The analyses use tiny settings (linear generators, 2,000 draws) and the same settings across
tests, so jitted functions compile once per process; error cases fail before any compilation.
"""

import json

import numpy as np
import pytest

import dcma_jax as dj
from dcma_jax import cli
from dcma_jax.cli import steps
from dcma_jax.datasets import DEFAULT_STUDY, load_default_frame
from dcma_jax.functionals import DISTANCE_FUNCTIONALS
from dcma_jax.training import TrainingError

FUNCTIONALS = {"mean", "quantile", "cdf", "wasserstein", "energy", "ks"}
EFFECT_KEYS = {"effect", "functional", "level", "estimate", "ci_low", "ci_high"}
FAST = ["--generator", "linear", "--draws", "2000"]


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    """The default study's rows as a user CSV: same shapes as the no --data run, one compile."""
    path = tmp_path_factory.mktemp("data") / "study.csv"
    load_default_frame().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def csv_with_nan(tmp_path_factory):
    frame = DEFAULT_STUDY.observational(seed=7, n=100)
    frame.loc[5, "M"] = np.nan
    path = tmp_path_factory.mktemp("data") / "nan.csv"
    frame.to_csv(path, index=False)
    return path


def roles(path):
    return ["--data", str(path), "--treatment", "A", "--mediators", "M", "--outcome", "Y"]


def one_error_line(capsys):
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("dcma: error: "), lines[0]
    assert "Traceback" not in captured.err
    return lines[0]


def test_run_on_csv_writes_documented_json_and_figures(csv, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["run", *roles(csv), "--covariates", "X1,X2,site", *FAST, "--out", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0
    for expected in ("MediationData: n=2000", "Model graph:", "LinearGaussian", "NIE_treated"):
        assert expected in stdout
    assert f"Wrote effects JSON: {out / 'effects.json'}" in stdout

    doc = json.loads((out / "effects.json").read_text())
    assert set(doc) == {"effects", "meta"}
    assert doc["meta"]["bootstrap"] == 0 and doc["meta"]["graph"]
    effects = doc["effects"]
    assert {e["effect"] for e in effects} >= {
        "TE",
        "NDE_control",
        "NDE_treated",
        "NIE_control",
        "NIE_treated",
    }
    for entry in effects:
        assert set(entry) == EFFECT_KEYS
        assert entry["functional"] in FUNCTIONALS
        assert isinstance(entry["estimate"], float)
        if entry["functional"] in ("quantile", "cdf"):
            assert isinstance(entry["level"], float)
        else:
            assert entry["level"] is None
        assert entry["ci_low"] is None and entry["ci_high"] is None
    te_quantiles = [
        e["level"] for e in effects if e["effect"] == "TE" and e["functional"] == "quantile"
    ]
    assert te_quantiles == [0.1, 0.25, 0.5, 0.75, 0.9]

    for name in ("arm_distributions.png", "quantile_effects.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")


class Captured(Exception):
    """Raised by the fake fitted model once the query has recorded its arguments."""


@pytest.fixture
def captured_analyze(monkeypatch):
    """``(data, fit kwargs + effects kwargs)`` of each ``dcma run``, without fitting."""
    calls = []

    class FakeFitted:
        def __init__(self, data, kwargs):
            self.data, self.kwargs = data, kwargs

        def effects(self, **kwargs):
            calls.append((self.data, {**self.kwargs, **kwargs}))
            raise Captured

    monkeypatch.setattr(steps, "fit", lambda data, **kwargs: FakeFitted(data, kwargs))
    return calls


def test_flags_reach_the_analysis(csv, tmp_path, captured_analyze):
    args = [
        "run",
        *roles(csv),
        "--covariates",
        "X1,X2",
        "--types",
        "X2=continuous",
        "--generator",
        "linear",
        "--link",
        "probit",
        "--draws",
        "1234",
        "--bootstrap",
        "7",
        "--bootstrap-draws",
        "99",
        "--block-size",
        "3",
        "--seed",
        "3",
        "--quantiles",
        "0.2, 0.8",
        "--cdf-points",
        "0,1.5",
        "--ci-level",
        "0.9",
        "--max-epochs",
        "5",
        "--out",
        str(tmp_path),
    ]
    with pytest.raises(Captured):
        cli.main([*args, "--debug"])
    data, kwargs = captured_analyze[0]
    assert data.covariate_names == ("X1", "X2")
    assert kwargs["generators"] == "linear" and kwargs["link"] == "probit"
    assert kwargs["num_draws"] == 1234 and kwargs["bootstrap"] == 7 and kwargs["block_size"] == 3
    assert kwargs["bootstrap_draws"] == 99 and kwargs["seed"] == 3
    assert tuple(kwargs["quantiles"]) == (0.2, 0.8)
    assert tuple(kwargs["cdf_points"]) == (0.0, 1.5)
    assert kwargs["ci_level"] == 0.9 and kwargs["config"].max_epochs == 5


def test_bootstrap_defaults(csv, tmp_path, captured_analyze):
    """Bootstrap is off for user data and on (DEFAULT_STUDY_BOOTSTRAP) for the default study."""
    with pytest.raises(Captured):
        cli.main(["run", *roles(csv), "--out", str(tmp_path), "--debug"])
    with pytest.raises(Captured):
        cli.main(["run", "--out", str(tmp_path), "--debug"])
    assert [kw["bootstrap"] for _, kw in captured_analyze] == [0, cli.DEFAULT_STUDY_BOOTSTRAP]
    # cdf points default to the observed quartiles, the same for both (same rows).
    assert captured_analyze[0][1]["cdf_points"] == captured_analyze[1][1]["cdf_points"]


def test_default_study_prints_truth(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(steps, "TRUTH_DRAWS", 100_000)
    target = tmp_path / "elsewhere" / "fx.json"
    code = cli.main(
        [
            "run",
            *FAST,
            "--bootstrap",
            "0",
            "--json",
            str(target),
            "--no-plots",
            "--out",
            str(tmp_path / "demo"),
        ]
    )
    stdout = capsys.readouterr().out
    assert code == 0
    assert "Default study" in stdout
    header = next(
        line for line in stdout.splitlines() if line.split()[:2] == ["effect", "functional"]
    )
    assert header.split()[-1] == "truth"
    assert "What a mean-only analysis misses" in stdout
    assert f"Wrote effects JSON: {target}" in stdout
    assert not (tmp_path / "demo").exists()  # --no-plots and --json: nothing else to write
    doc = json.loads(target.read_text())
    assert all(set(entry) == EFFECT_KEYS | {"truth"} for entry in doc["effects"])
    truth = {
        (e["effect"], e["functional"]): e["truth"] for e in doc["effects"] if e["level"] is None
    }
    # The study's mean indirect effect is exactly 0; its W1 is not (MC error ~ 0.01 at 1e5 draws).
    assert abs(truth[("NIE_treated", "mean")]) < 0.02
    assert truth[("NIE_treated", "wasserstein")] > 0.5
    assert set(DISTANCE_FUNCTIONALS) <= {f for _, f in truth}


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            [
                "run",
                "--data",
                "no/such/file.csv",
                "--treatment",
                "A",
                "--mediators",
                "M",
                "--outcome",
                "Y",
            ],
            "does not exist",
        ),
        (["run", "{csv}", "--outcome", "Z"], "outcome column 'Z' is not in the data"),
        (["run", "{nan}"], "mediator column 'M' has 1 missing"),
        (["run", "{csv}", "--quantiles", "0.1,abc"], "--quantiles: 'abc' is not a number"),
        (["run", "{csv}", "--quantiles", "0.5,1.5"], "--quantiles: levels must lie strictly"),
        (["run", "{csv}", "--quantiles", "0.1,,0.5"], "--quantiles: expected a comma-separated"),
        (["run", "{csv}", "--cdf-points", "x"], "--cdf-points: 'x' is not a number"),
        (["run", "{csv}", "--generator", "nope"], "argument --generator: invalid choice: 'nope'"),
        (["run", "--treatment", "A"], "--treatment requires --data"),
        (
            ["run", "--mediators", "M", "--covariates", "X1"],
            "--mediators, --covariates require --data",
        ),
        (["run", "--data", "{path}"], "--data needs --treatment, --mediators, --outcome"),
        (["run", "{csv}", "--types", "M=weird"], "--types: unknown kind 'weird'"),
        (["run", "{csv}", "--types", "M"], "--types: expected COL=KIND"),
        (["run", "{csv}", "--draws", "0"], "argument --draws: must be a positive integer"),
        (["run", "{csv}", "--ci-level", "1.5"], "argument --ci-level: must lie strictly"),
        (["run", "{csv}", "--bootstrap", "two"], "argument --bootstrap: 'two' is not an integer"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "choose a command: run, fit, effects, info"),
        (["effects", "--model", "{path}"], "is not a folder"),
        (["effects"], "the following arguments are required: --model"),
        (["fit", "{csv}"], "the following arguments are required: --save"),
        (["run", "{csv}", "--treatment-values", "1,0"], "--treatment-values needs a continuous"),
        (["run", "{csv}", "--block-size", "0"], "argument --block-size: must be a positive"),
    ],
)
def test_user_errors_are_one_line_exit_2(args, expected, csv, csv_with_nan, capsys):
    expanded = []
    for arg in args:
        if arg == "{csv}":
            expanded += roles(csv)
        elif arg == "{nan}":
            expanded += roles(csv_with_nan)
        else:
            expanded.append(arg.replace("{path}", str(csv)))
    assert cli.main(expanded) == 2
    line = one_error_line(capsys)
    assert expected in line


def test_debug_shows_the_traceback(capsys):
    with pytest.raises(ValueError, match="does not exist"):
        cli.main(
            [
                "run",
                "--data",
                "missing.csv",
                "--treatment",
                "A",
                "--mediators",
                "M",
                "--outcome",
                "Y",
                "--debug",
            ]
        )


def test_help_documents_every_flag(capsys):
    assert cli.main(["--help"]) == 0
    top = capsys.readouterr().out
    assert "run" in top and "--version" in top
    assert cli.main(["run", "--help"]) == 0
    text = capsys.readouterr().out
    flags = [
        "--data",
        "--treatment",
        "--mediators",
        "--outcome",
        "--covariates",
        "--generator",
        "--link",
        "--treatment-type",
        "--types",
        "--draws",
        "--bootstrap",
        "--bootstrap-draws",
        "--seed",
        "--quantiles",
        "--cdf-points",
        "--ci-level",
        "--max-epochs",
        "--out",
        "--json",
        "--no-plots",
        "--debug",
    ]
    for flag in flags:
        assert flag in text, flag
    assert text.count("default") >= 15
    for name in ("linear", "mdn"):
        assert name in text


@pytest.mark.parametrize(
    "error, code, prefix",
    [
        (TrainingError("generator for 'Y' diverged (NaN loss)"), 2, "dcma: error: "),
        (RuntimeError("unexpected"), 1, "dcma: internal error: RuntimeError: unexpected"),
        (ValueError("a bug"), 1, "dcma: internal error: ValueError: a bug"),
        (dj.ArgumentError("bad value"), 2, "dcma: error: bad value"),
    ],
)
def test_failures_during_the_analysis_are_one_line(
    csv, tmp_path, capsys, monkeypatch, error, code, prefix
):
    def failing_fit(data, **kwargs):
        raise error

    monkeypatch.setattr(steps, "fit", failing_fit)
    assert cli.main(["run", *roles(csv), "--out", str(tmp_path)]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(prefix)
