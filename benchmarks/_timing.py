"""What the small benchmarks share: a report that prints and keeps its lines, interleaved timing."""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np


class Report:
    """Lines printed as they come and written to a file at the end."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def say(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(self.lines) + "\n")


def interleaved(calls: dict[str, tuple], repeats: int) -> dict[str, float]:
    """Median seconds of ``fn(*args)`` for ``name: (fn, *args)``, round-robin after a warm-up."""
    for fn, *args in calls.values():
        jax.block_until_ready(fn(*args))
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, (fn, *args) in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}
