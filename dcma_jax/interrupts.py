"""Prompt, crash-free exits on Ctrl-C (SIGINT) and SIGTERM for long JAX commands.

Why this module exists. A Python signal handler runs only when the main thread is back in the
interpreter, and jaxlib polls for signals only while it waits for some results. So Ctrl-C
during ``dcma run`` either waits for the current compiled call to finish, or jaxlib raises
``KeyboardInterrupt`` in the main thread while the XLA work it was waiting for keeps running
on XLA's own threads. The command then returns 130, the interpreter tears down, the garbage
collector frees JAX's client, the client's destructor joins its thread pool, and a compilation
still in flight on that pool calls into freed state: the process dies of SIGSEGV (exit status
-11 instead of 130). An interrupt during ``import jax`` crashes the same way, when a half-made
jaxlib extension module is freed at shutdown.

:func:`run_interruptible` avoids both. It runs the command in a worker thread while the main
thread only waits, in short timed waits, so that it can run a signal handler within a few
tens of milliseconds whatever the worker is doing. On a signal it runs a quick cleanup hook,
flushes ``sys.stdout`` and ``sys.stderr``, writes one line (``dcma: interrupted``) to
stderr and ends the process with :func:`os._exit`: no interpreter teardown, no C++ static
destructors, no thread-pool joins, so nothing can crash after the message. The worker and
XLA's threads are stopped by the kernel as the process exits.

Signals handled:

* SIGINT (Ctrl-C): ``<prog>: interrupted``, exit status 130 (128 + 2).
* SIGTERM (``kill``, ``timeout``, job schedulers): ``<prog>: terminated``, exit status 143
  (128 + 15), handled the same way so that the cleanup hook runs and buffered output is
  flushed. Without the handler SIGTERM kills the process at once, losing both.

A signal that was ignored when :func:`run_interruptible` was called (``nohup``, background jobs
of a non-interactive shell, which start with SIGINT ignored) stays ignored. A second signal
while the cleanup hook runs ends the process at once, and a watchdog ends it
:data:`GRACE_SECONDS` after the first signal even if the cleanup or a flush blocks.

Only the standard library is imported here.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

__all__ = ["EXIT_INTERRUPTED", "EXIT_TERMINATED", "GRACE_SECONDS", "run_interruptible"]

T = TypeVar("T")

EXIT_INTERRUPTED = 128 + signal.SIGINT
"""Exit status after SIGINT (130), the shell convention for a command ended by Ctrl-C."""

EXIT_TERMINATED = 128 + signal.SIGTERM
"""Exit status after SIGTERM (143)."""

GRACE_SECONDS = 2.0
"""Longest time from the first signal to the end of the process, whatever blocks."""

_POLL_SECONDS = 0.05  # the main thread's wait slice: the delay before a handler can run
_WORKER_STACK_BYTES = 64 * 2**20  # like a main thread's stack (macOS gives threads 512 KiB)
_WORDS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}


def run_interruptible(
    fn: Callable[[], T],
    *,
    on_interrupt: Callable[[], None] | None = None,
    prog: str = "dcma",
    signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM),
) -> T:
    """Runs ``fn()`` so that SIGINT or SIGTERM ends the process within a fraction of a second.

    ``fn`` runs in a worker thread; the calling (main) thread waits for it. Its return value is
    returned and an exception it raises (``SystemExit`` included) is re-raised in the calling
    thread, as the same object with its traceback, after the previous signal handlers are
    restored. So for a run without a signal the caller sees exactly what ``fn()`` would give.

    On a signal the process ends and this function never returns: ``on_interrupt()`` runs (in
    the main thread, while ``fn`` may still be running: keep it short and lock-free, e.g. remove
    a partial output file; its exceptions are ignored), ``sys.stdout`` and ``sys.stderr`` are
    flushed, ``"<prog>: interrupted"`` (SIGINT) or ``"<prog>: terminated"`` (SIGTERM) is written
    to stderr as one line (after a newline when stderr is a terminal, so that it does not land on
    a progress bar), and :func:`os._exit` ends the process with status 130 or 143, skipping
    ``atexit`` handlers, ``finally`` blocks of ``fn`` and the interpreter teardown.

    When it cannot install handlers (called from a thread other than the main thread, or every
    one of ``signals`` is ignored) it just returns ``fn()``.

    Args:
      fn: the work, e.g. ``lambda: _main(argv)``; called once, without arguments.
      on_interrupt: optional quick cleanup run once a signal has arrived.
      prog: program name for the message.
      signals: the signals to handle (default SIGINT and SIGTERM); others keep their handlers.

    Returns:
      What ``fn()`` returned.
    """
    if threading.current_thread() is not threading.main_thread():
        return fn()  # signal handlers can only be installed, and only run, in the main thread

    received: list[int] = []
    exiting = threading.Event()

    def handler(signum: int, frame: object) -> None:
        # Only record the signal: the main loop acts on it. Taking locks here could deadlock.
        if exiting.is_set():  # a second signal during the cleanup: end now
            os._exit(128 + signum)
        received.append(signum)

    previous = {}
    for signum in signals:
        if signal.getsignal(signum) is signal.SIG_IGN:  # nohup, background job: keep ignoring
            continue
        previous[signum] = signal.signal(signum, handler)
    if not previous:
        return fn()

    outcome: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed over to the main thread
            outcome["error"] = exc
        finally:
            done.set()

    try:
        worker = _start_thread(work, name=f"{prog}-worker")
        # Timed waits: the handler runs between them (a plain join is not interruptible on
        # Windows). A signal that comes as fn returns still ends the process, as promised.
        while not done.wait(_POLL_SECONDS) and not received:
            pass
        if received:
            exiting.set()
            _exit_on_signal(received[0], on_interrupt, prog)
    finally:
        for signum, old in previous.items():
            if old is not None:  # None: a handler set outside Python, which cannot be restored
                signal.signal(signum, old)
    worker.join()
    if "error" in outcome:
        error = outcome.pop("error")
        try:
            raise error
        finally:
            del error  # break the frame <-> traceback cycle
    return outcome["value"]


def _start_thread(target: Callable[[], None], name: str) -> threading.Thread:
    """Starts a daemon thread with a main-thread-sized stack (deep tracing recursion)."""
    old = threading.stack_size()
    try:
        threading.stack_size(max(old, _WORKER_STACK_BYTES))
    except (ValueError, RuntimeError):  # size not supported here: keep the default
        pass
    try:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
    finally:
        threading.stack_size(old)
    return thread


def _exit_on_signal(signum: int, on_interrupt: Callable[[], None] | None, prog: str) -> None:
    """Cleans up, flushes, writes the one line and ends the process without teardown."""
    status = 128 + signum
    watchdog = threading.Thread(target=_exit_later, args=(status,), daemon=True)
    watchdog.start()
    if on_interrupt is not None:
        try:
            on_interrupt()
        except BaseException:  # the exit must happen regardless
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except BaseException:  # a closed or broken stream
            pass
    word = _WORDS.get(signum, f"stopped by signal {signum}")
    line = f"{prog}: {word}\n"
    try:
        if sys.stderr.isatty():
            line = "\n" + line
        sys.stderr.write(line)
        sys.stderr.flush()
    except BaseException:  # no usable sys.stderr: write to fd 2 directly
        try:
            os.write(2, line.encode())
        except OSError:
            pass
    os._exit(status)


def _exit_later(status: int) -> None:
    """Watchdog: ends the process after ``GRACE_SECONDS`` if the orderly exit is stuck."""
    threading.Event().wait(GRACE_SECONDS)
    os._exit(status)
