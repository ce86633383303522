"""dcma_jax.interrupts: SIGINT/SIGTERM end long JAX work promptly, with status 130/143.

The signal tests run tests/interrupt_child.py in a subprocess, wait until its work has
started (a marker file), send the signal and time the exit.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dcma_jax.interrupts import EXIT_INTERRUPTED, EXIT_TERMINATED, run_interruptible

ROOT = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).with_name("interrupt_child.py")
# Signal to exit of the process, generous: the machine may be loaded (the exit itself is
# a flush and os._exit, a few milliseconds; the main thread notices a signal within 50 ms).
SIGNAL_TO_EXIT_LIMIT = 2.0
STARTUP_LIMIT = 90.0  # importing and compiling JAX on a busy machine


def _start_child(tmp_path, mode, *extra):
    """Starts the child and returns it once its work has begun."""
    marker = tmp_path / "started"
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), mode, str(marker), str(tmp_path / "cleaned"), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        cwd=tmp_path,
    )
    deadline = time.monotonic() + STARTUP_LIMIT
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"child did not start its work (rc {proc.returncode}):\n{out}\n{err}")
        time.sleep(0.02)
    return proc


def _run_child(tmp_path, mode, sig, linger=0.3):
    proc = _start_child(tmp_path, mode)
    try:
        time.sleep(linger)  # well inside the work (the loop or the compilation)
        sent = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err, elapsed, (tmp_path / "cleaned").exists()


@pytest.mark.parametrize(
    "mode, done_line", [("spin", "finished"), ("compile", "compiled")], ids=["running", "compiling"]
)
def test_sigint_during_jax_work_exits_130_promptly(tmp_path, mode, done_line):
    rc, out, err, elapsed, cleaned = _run_child(tmp_path, mode, signal.SIGINT)
    assert rc == EXIT_INTERRUPTED, err  # not -11 (SIGSEGV)
    assert err.splitlines()[-1:] == ["dcma: interrupted"] and "Traceback" not in err, err
    assert elapsed < SIGNAL_TO_EXIT_LIMIT, f"exit {elapsed:.2f} s after SIGINT"
    assert out == "unflushed line before the work\n"  # flushed before the exit; work cut short
    assert done_line not in out
    assert cleaned  # on_interrupt ran


def test_sigterm_exits_143_and_ignored_sigint_stays_ignored(tmp_path):
    # SIGINT ignored at start (nohup, `cmd &`): still ignored; SIGTERM then ends the process.
    proc = _start_child(tmp_path, "sleep", "ignore-sigint")
    try:
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert proc.poll() is None  # SIGINT ignored
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == EXIT_TERMINATED, err
    assert err.splitlines()[-1:] == ["dcma: terminated"] and "Traceback" not in err, err
    assert elapsed < SIGNAL_TO_EXIT_LIMIT
    assert out == "unflushed line before the work\n"
    assert (tmp_path / "cleaned").exists()


# In-process: without a signal, run_interruptible(fn) behaves like fn().


def test_returns_the_value_and_restores_handlers(capsys):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    seen = {}

    def work():
        seen["thread"] = threading.current_thread()
        print("some output")
        return 7

    assert run_interruptible(work) == 7
    assert seen["thread"] is not threading.main_thread()  # ran in the worker
    assert capsys.readouterr().out == "some output\n"
    assert {s: signal.getsignal(s) for s in before} == before


def test_exceptions_propagate_unchanged():
    before = signal.getsignal(signal.SIGINT)

    class Boom(ValueError):
        pass

    error = Boom("bad input")

    def work():
        raise error

    with pytest.raises(Boom) as info:
        run_interruptible(work)
    assert info.value is error
    assert info.traceback[-1].name == "work"  # the worker's frames are kept

    with pytest.raises(SystemExit) as info:
        run_interruptible(lambda: sys.exit(3))
    assert info.value.code == 3
    assert signal.getsignal(signal.SIGINT) is before


def test_outside_the_main_thread_runs_fn_directly():
    result = {}

    def in_thread():
        result["value"] = run_interruptible(threading.current_thread)

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert result["value"] is thread
