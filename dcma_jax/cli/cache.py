"""JAX's persistent compilation cache for the ``dcma`` command.

Compilation is most of what a ``dcma effects`` query on a saved model costs; with the cache on,
a second query (or run) with same-shaped inputs loads the compiled programs from disk instead.
On by default; off with ``--no-compilation-cache`` or ``DCMA_COMPILATION_CACHE=0``. The folder
is ``$DCMA_CACHE_DIR``, else ``$XDG_CACHE_HOME/dcma_jax/jax``, else ``~/.cache/dcma_jax/jax``.
Every program is stored, however quickly it compiled (:data:`MIN_COMPILE_SECONDS` = 0): a run
compiles dozens of small ones (eager operations, the closed-form fits), and on the framing study
with 1,000 bootstrap replicates storing only those over 0.2 s left 2-3 s of compilation in every
repeated run (``benchmarks/bench_framing.py``); they take about 20 KiB each. The library itself
never turns the cache on: that is the application's choice (``jax.config``).
"""

from __future__ import annotations

import os
from pathlib import Path

MIN_COMPILE_SECONDS = 0.0


def cache_dir() -> Path:
    """Where the CLI keeps compiled programs."""
    if os.environ.get("DCMA_CACHE_DIR"):
        return Path(os.environ["DCMA_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dcma_jax" / "jax"


def enabled(flag_off: bool) -> bool:
    """Whether the cache is on: not turned off by flag or ``DCMA_COMPILATION_CACHE=0``."""
    return not flag_off and os.environ.get("DCMA_COMPILATION_CACHE", "1") not in ("0", "false")


def enable() -> Path:
    """Points JAX's persistent compilation cache at :func:`cache_dir`; returns the folder."""
    import jax

    folder = cache_dir()
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return folder
