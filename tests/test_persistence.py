"""Saving, loading and resuming fitted models: exact round trips, and one clear line per fault."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import jax
import numpy as np
import pandas as pd
import pytest
from conftest import FAST

import dcma_jax as dj
from dcma_jax import cli
from dcma_jax.cli import steps
from dcma_jax.datasets import load_default_frame
from dcma_jax.generators import LinearGaussian
from dcma_jax.persistence import _sha256

MIXED = {"M": "mdn", "Y": "linear"}
QUERY = dict(num_draws=2000, bootstrap_draws=500)


class ShiftedLinear(LinearGaussian):
    """A user's generator: linear-Gaussian with a field, registered from a test module."""

    registry_name: ClassVar[str] = "shifted_linear_test"
    shift: float = 0.0
    widths: tuple = (3, 4)

    def sample(self, noise, context):
        return super().sample(noise, context) + self.shift


@pytest.fixture(scope="module")
def saved(default_data, tmp_path_factory):
    fitted = dj.fit(default_data, generators=MIXED, bootstrap=4, block_size=3, config=FAST, seed=5)
    path = fitted.save(tmp_path_factory.mktemp("models") / "mixed")
    return fitted, path


def test_loaded_model_gives_the_same_numbers_bit_for_bit(saved):
    fitted, path = saved
    loaded = dj.load(path)
    for a, b in zip(jax.tree.leaves(fitted), jax.tree.leaves(loaded), strict=True):
        np.testing.assert_array_equal(a, b)
    assert loaded.settings == fitted.settings and loaded.report == fitted.report
    pd.testing.assert_frame_equal(loaded.effects(**QUERY).table, fitted.effects(**QUERY).table)


def test_saved_spec_is_readable_json(saved):
    _, path = saved
    spec = json.loads((path / "spec.json").read_text())
    assert [n["generator"]["class"] for n in spec["nodes"]] == [
        "dcma_jax.generators.mixture.MixtureDensityNetwork",
        "dcma_jax.generators.linear.LinearGaussian",
    ]
    assert spec["nodes"][0]["generator"]["fields"]["hidden"] == [64, 64]
    assert spec["fit"]["bootstrap"] == 4 and spec["fit"]["block_size"] == 3
    assert spec["variables"]["treatment"]["levels"] == [0, 1]
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["complete"] and set(manifest["files"]) == {
        "spec.json",
        "data.msgpack",
        "params.msgpack",
        "replicates/block_00000.msgpack",
        "replicates/block_00001.msgpack",
    }
    assert not list(path.rglob("*.tmp")) and not list(path.rglob("*.pkl"))


def _copy(path, tmp_path):
    return Path(shutil.copytree(path, tmp_path / "copy"))


def _rewrite(folder, name, data):
    """Replaces a file and its checksum in the manifest (a consistent tampering)."""
    (folder / name).write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][name] = _sha256(data)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _edit_spec(folder, edit):
    spec = json.loads((folder / "spec.json").read_text())
    edit(spec)
    _rewrite(folder, "spec.json", json.dumps(spec).encode())


def _corrupt(case, folder):
    if case == "missing manifest":
        (folder / "manifest.json").unlink()
    elif case == "missing params":
        (folder / "params.msgpack").unlink()
    elif case == "truncated block":
        block = folder / "replicates/block_00001.msgpack"
        block.write_bytes(block.read_bytes()[:100])
    elif case == "tampered data":
        raw = bytearray((folder / "data.msgpack").read_bytes())
        raw[-1] ^= 1
        (folder / "data.msgpack").write_bytes(bytes(raw))
    elif case == "spec does not match the parameters":
        _edit_spec(folder, lambda s: s["nodes"][0]["generator"]["fields"].update(hidden=[32, 32]))
    elif case == "unknown generator class":
        _edit_spec(folder, lambda s: s["nodes"][0]["generator"].update({"class": "lab.gens.Odd"}))
    elif case == "newer format":
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["format_version"] = 99
        (folder / "manifest.json").write_text(json.dumps(manifest))
    elif case == "unfinished fit":
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["complete"] = False
        (folder / "manifest.json").write_text(json.dumps(manifest))
    elif case == "not json":
        (folder / "manifest.json").write_text("{")
    elif case == "swapped data":
        other = dj.MediationData.from_dataframe(
            load_default_frame().iloc[:1000], treatment="A", mediators=["M"], outcome="Y"
        )
        from dcma_jax.persistence import _data_bytes

        _rewrite(folder, "data.msgpack", _data_bytes(other))


CASES = {
    "missing manifest": "manifest.json is missing (not a saved model)",
    "missing params": "params.msgpack is missing",
    "truncated block": "replicates/block_00001.msgpack does not match its checksum",
    "tampered data": "data.msgpack does not match its checksum",
    "spec does not match the parameters": "the spec and the parameters do not match",
    "unknown generator class": "uses generator class lab.gens.Odd, which is not defined in "
    "this process; import lab.gens",
    "newer format": "format version 99 is not supported",
    "unfinished fit": "the fit is unfinished; rerun the same fit",
    "not json": "manifest.json is not valid JSON",
    "swapped data": "data.msgpack is not the data the spec was fitted to",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_fault_is_one_line_and_exit_2(case, saved, tmp_path, capsys):
    folder = _copy(saved[1], tmp_path)
    _corrupt(case, folder)
    with pytest.raises(dj.ModelFileError, match="^model .*" + re.escape(CASES[case])):
        dj.load(folder)
    for argv in (["effects", "--out", str(tmp_path)], ["info"]):
        assert cli.main([*argv, "--model", str(folder)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("dcma: error: model "), err
        assert CASES[case] in err[0]


def test_missing_folder(tmp_path):
    with pytest.raises(dj.ModelFileError, match="no such folder"):
        dj.load(tmp_path / "nothing")


def test_user_generator_round_trips(default_data, tmp_path):
    fitted = dj.fit(default_data, generators={"M": ShiftedLinear(shift=0.5), "Y": "linear"})
    loaded = dj.load(fitted.save(tmp_path / "user"))
    assert loaded.model.generators[0] == ShiftedLinear(shift=0.5, widths=(3, 4))
    pd.testing.assert_frame_equal(
        loaded.effects(num_draws=1000).table, fitted.effects(num_draws=1000).table
    )


class _Stop(Exception):
    pass


def test_interrupted_fit_resumes_to_the_uninterrupted_numbers(default_data, tmp_path, saved):
    # saved[0] is the uninterrupted fit. Stop a checkpointed fit of the same model as its
    # second bootstrap block starts, then rerun the same call: it resumes after block one.
    reference, _ = saved
    stages = []

    def stop_at_second_block(stage):
        stages.append(stage)
        if stage.startswith("bootstrap block 2/"):
            raise _Stop

    settings = dict(generators=MIXED, bootstrap=4, block_size=3, config=FAST, seed=5)
    with pytest.raises(_Stop):
        dj.fit(default_data, checkpoint=tmp_path / "ck", progress=stop_at_second_block, **settings)
    assert (tmp_path / "ck/replicates/block_00000.msgpack").exists()
    with pytest.raises(dj.ModelFileError, match="the fit is unfinished"):
        dj.load(tmp_path / "ck")
    resumed_stages = []
    resumed = dj.fit(
        default_data, checkpoint=tmp_path / "ck", progress=resumed_stages.append, **settings
    )
    assert resumed_stages == ["bootstrap block 2/2 (replicates 4-4)"]  # nothing else refitted
    for a, b in zip(jax.tree.leaves(reference), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    loaded = dj.load(tmp_path / "ck")
    pd.testing.assert_frame_equal(loaded.effects(**QUERY).table, reference.effects(**QUERY).table)


def test_a_checkpoint_folder_holding_another_model_is_refused(default_data, saved, tmp_path):
    _, path = saved
    with pytest.raises(dj.ModelFileError, match="holds a model with other fit"):
        dj.fit(default_data, generators=MIXED, bootstrap=4, config=FAST, seed=6, checkpoint=path)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(dj.ModelFileError, match="not empty and holds no model"):
        dj.fit(default_data, generators="linear", checkpoint=tmp_path / "busy")


def test_fit_then_effects_prints_what_run_prints(tmp_path, capsys, monkeypatch):
    # The default study's truth from 100,000 draws (test_cli's) rather than 1,000,000: run and
    # effects compute it alike, so the tables still match line for line.
    monkeypatch.setattr(steps, "TRUTH_DRAWS", 100_000)
    fit_flags = ["--generator", "linear", "--bootstrap", "3", "--block-size", "2", "--seed", "4"]
    effect_flags = ["--draws", "2000", "--quantiles", "0.2,0.8", "--no-plots"]
    out = ["--json", str(tmp_path / "run.json")]
    assert cli.main(["run", *fit_flags, *effect_flags, *out]) == 0
    run_out = capsys.readouterr().out
    assert cli.main(["fit", *fit_flags, "--save", str(tmp_path / "m")]) == 0
    capsys.readouterr()
    out = ["--json", str(tmp_path / "effects.json")]
    assert cli.main(["effects", "--model", str(tmp_path / "m"), *effect_flags, *out]) == 0
    effects_out = capsys.readouterr().out

    def table(text):
        start = text.index("Model graph:")
        return text[start : text.index("Wrote effects JSON")]

    assert table(effects_out) == table(run_out)
    assert "true" in table(run_out)  # the default study: truth beside the estimates
    run_doc = json.loads((tmp_path / "run.json").read_text())
    effects_doc = json.loads((tmp_path / "effects.json").read_text())
    assert run_doc["effects"] == effects_doc["effects"]
    assert cli.main(["info", "--model", str(tmp_path / "m")]) == 0
    info = capsys.readouterr().out
    assert "Bootstrap: 3 replicates in blocks of 2" in info and "LinearGaussian" in info


@pytest.mark.slow  # suite time (CI about 10 min): 28 s
def test_ctrl_c_during_a_fit_exits_130_and_a_rerun_resumes(tmp_path):
    # A real process and a real SIGINT, during compilation or fitting of an mdn bootstrap.
    folder = tmp_path / "m"
    command = [
        sys.executable,
        "-m",
        "dcma_jax.cli",
        "fit",
        "--max-epochs",
        "3",
        "--bootstrap",
        "2",
        "--block-size",
        "1",
        "--save",
        str(folder),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (folder / "params.msgpack").exists() and time.monotonic() < deadline:
        if process.poll() is not None:
            break
        time.sleep(0.05)
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    elapsed = time.monotonic() - sent
    assert process.returncode == 130, err.decode()
    assert err.decode().strip().splitlines()[-1] == "dcma: interrupted"
    assert elapsed < 5.0  # about a second; generous for a loaded 2-core machine
    rerun = subprocess.run(command, capture_output=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert dj.load(folder).bootstrap == 2


def test_the_cli_keeps_compiled_programs_in_the_persistent_cache(tmp_path, monkeypatch):
    from dcma_jax.cli import cache

    env = {**os.environ, "DCMA_COMPILATION_CACHE": "1", "DCMA_CACHE_DIR": str(tmp_path / "jc")}
    command = [sys.executable, "-m", "dcma_jax.cli", "fit", "--generator", "linear"]
    done = subprocess.run([*command, "--save", str(tmp_path / "m")], env=env, timeout=300)
    assert done.returncode == 0
    assert any((tmp_path / "jc").iterdir())  # compiled programs written
    # Off by flag or by environment variable.
    assert not cache.enabled(flag_off=True)
    monkeypatch.setenv("DCMA_COMPILATION_CACHE", "0")
    assert not cache.enabled(flag_off=False)
    monkeypatch.setenv("DCMA_COMPILATION_CACHE", "1")
    assert cache.enabled(flag_off=False)
