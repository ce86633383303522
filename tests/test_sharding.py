"""Sharding over devices: 4 (simulated CPU) devices give the numbers of one.

Both runs are fresh interpreters (the device count is fixed when jax is imported) running
tests/sharding_child.py side by side. Simulations (the Monte Carlo chunks and the bootstrap
replicates' simulations, split across devices) must agree bit for bit: each device runs the
one-device program on its units, with their own keys. Replicate fits agree to float32
rounding: a device fits its share of the replicates under one vmap, and XLA reassociates
sums over rows differently for a different vmap width (measured: at most 5 ulps of a leaf's
largest value; a replicate fitted with the wrong key or counts, or padding kept in place of a
replicate, is off by the bootstrap's spread, ~1e4 ulps).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from dcma_jax import devices
from dcma_jax.errors import ArgumentError

CHILD = Path(__file__).with_name("sharding_child.py")
#: Replicate fits may differ by this many float32 ulps of each leaf's largest magnitude.
FIT_ULPS = 16


def _run(part: str, tmp_path: Path) -> tuple[dict, dict]:
    """``numbers(part)`` on 1 and on 4 CPU devices, run in parallel."""
    runs = {}
    for count in (1, 4):
        flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}"
        env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
        out = tmp_path / f"{part}_{count}.npz"
        command = [sys.executable, str(CHILD), part, str(out)]
        runs[count] = (subprocess.Popen(command, env=env, stderr=subprocess.PIPE), out)
    for process, _ in runs.values():
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err.decode()[-3000:]
    one, four = (dict(np.load(out)) for _, out in runs.values())
    assert (int(one.pop("device_count")), int(four.pop("device_count"))) == (1, 4)
    assert one.keys() == four.keys()
    return one, four


def _assert_fits_agree(one: dict, four: dict) -> None:
    eps = np.finfo(np.float32).eps
    for name, value in one.items():
        if value.dtype.kind == "f":
            scale = np.nanmax(np.abs(value), initial=0.0, where=np.isfinite(value))
            np.testing.assert_allclose(
                four[name], value, rtol=0, atol=FIT_ULPS * eps * scale, err_msg=name
            )
        else:
            np.testing.assert_array_equal(four[name], value, err_msg=name)


def test_four_devices_simulate_the_numbers_of_one(tmp_path):
    one, four = _run("core", tmp_path)
    fits = {k for k in one if k.startswith("linear_fit/")}
    assert fits and one["replicate/values"].shape[0] == 6
    for name in one.keys() - fits:
        np.testing.assert_array_equal(four[name], one[name], err_msg=name)
    np.testing.assert_array_equal(one["map/one_unit"], [3.0])
    _assert_fits_agree({k: one[k] for k in fits}, {k: four[k] for k in fits})


@pytest.mark.slow
def test_four_devices_fit_mdn_replicates_as_one(tmp_path):
    _assert_fits_agree(*_run("fits", tmp_path))


def test_one_device_mesh_runs_the_function_itself():
    mesh = devices.device_mesh(1)
    calls = []

    def fn(batched, shared):
        calls.append(type(batched))
        return batched + shared

    x = np.arange(3.0)
    np.testing.assert_array_equal(devices.map_over_devices(fn, mesh, x, 1.0), x + 1.0)
    assert calls == [np.ndarray]  # not traced: no shard_map around it


def test_describe_is_json_ready():
    info = devices.describe(devices.device_mesh(1))
    assert json.loads(json.dumps(info)) == info
    device = jax.devices()[0]
    assert info == {
        "platform": device.platform,
        "kind": [device.device_kind],
        "count": 1,
        "processes": 1,
    }
    assert devices.describe()["count"] == jax.device_count()


def test_device_counts_out_of_range_are_refused():
    with pytest.raises(ArgumentError, match=r"devices must be in 1\.\."):
        devices.device_mesh(jax.device_count() + 1)
    with pytest.raises(ArgumentError, match="at least one device"):
        devices.device_mesh([])
