"""Sorting and the effect rows of an effects query, beside ``jnp.sort`` and numpy, on this machine.

Every functional of the effects layer reads each arm's sorted draws, and a bootstrap query
sorts every replicate's arms again, so the sort is a large share of a query wherever the
simulation is cheap (closed-form generators). Timed, all in float32:

* **sort** of ``(4, n)`` draws along the last axis: ``jnp.sort`` (XLA's float comparator,
  which orders ``-0.0`` and NaN), ``dcma_jax.functionals.sort`` (the same order through
  order-preserving integer keys) and ``numpy.sort`` (on the host), with whether the first two
  agree bit for bit;
* **effect rows** (``estimands.effect_values``) of the natural effects' 4 arms with the CLI's
  default functionals (mean, 5 quantiles, 1 CDF point, Wasserstein-1, energy, KS): the
  library's path on normal draws, and on 0/1 draws the general path (sort and merge) beside
  the binary one (``binary=True``: counts of ones), with their largest difference.

Every function is jitted and compiled first; the variants are timed round-robin (interleaved)
and the table gives medians. ``os.getloadavg()`` is printed before and after. Usage::

    python benchmarks/bench_functionals.py                 # ~1 minute on 2 cores
    python benchmarks/bench_functionals.py --repeats 5 --out /tmp/functionals.txt
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from _timing import Report, interleaved

from dcma_jax import functionals
from dcma_jax.estimands import FunctionalSpec, effect_values, natural_effects

RESULTS = Path(__file__).resolve().parent / "results" / "functionals_cpu.txt"
SIZES = (20_000, 100_000, 1_000_000)
SPEC = FunctionalSpec((0.1, 0.25, 0.5, 0.75, 0.9), (0.0,), functionals.DISTANCE_FUNCTIONALS)

REPORT = Report()
say = REPORT.say


def sort_rows(repeats: int) -> None:
    say("Sort of (4, n) float32 draws along the last axis, ms (median); ratio = jnp.sort / ours")
    say(f"{'n':>10} {'jnp.sort':>10} {'ours':>10} {'numpy':>10} {'ratio':>7}  same bits")
    for n in SIZES:
        x = jax.random.normal(jax.random.key(n), (4, n))
        calls = {
            "jnp": (jax.jit(lambda v: jnp.sort(v, axis=-1)), x),
            "ours": (jax.jit(functionals.sort), x),
            "numpy": (lambda v: np.sort(v, axis=-1), np.asarray(x)),
        }
        t = interleaved(calls, repeats)
        same = bool(jnp.all(calls["jnp"][0](x) == calls["ours"][0](x)))
        say(
            f"{n:>10,} {t['jnp'] * 1e3:>10.2f} {t['ours'] * 1e3:>10.2f} "
            f"{t['numpy'] * 1e3:>10.2f} {t['jnp'] / t['ours']:>7.2f}  {same}"
        )


def effect_rows(repeats: int) -> None:
    layout = natural_effects(1).layout
    say()
    say("Effect rows of the 4 natural-effect arms (5 contrasts, 12 rows each), ms (median)")
    say(
        f"{'n':>10} {'normal':>10} {'0/1 general':>12} {'0/1 binary':>11} "
        f"{'general/binary':>15} {'max |diff|':>11}"
    )
    general = jax.jit(lambda v: effect_values(layout, SPEC, v))
    binary = jax.jit(lambda v: effect_values(layout, SPEC, v, binary=True))
    for n in SIZES:
        normal = jax.random.normal(jax.random.key(n), (4, n))
        ones = (normal > 0.3).astype(jnp.float32)
        t = interleaved(
            {"normal": (general, normal), "general": (general, ones), "binary": (binary, ones)},
            repeats,
        )
        diff = float(jnp.max(jnp.abs(general(ones) - binary(ones))))
        say(
            f"{n:>10,} {t['normal'] * 1e3:>10.2f} {t['general'] * 1e3:>12.2f} "
            f"{t['binary'] * 1e3:>11.2f} {t['general'] / t['binary']:>15.1f} {diff:>11.1e}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    say(
        f"bench_functionals.py  {stamp}  jax {jax.__version__}  {platform.machine()}  "
        f"{os.cpu_count()} CPUs  backend {jax.default_backend()}  "
        f"load avg {os.getloadavg()[0]:.1f}"
    )
    sort_rows(args.repeats)
    effect_rows(args.repeats)
    say(f"load avg at the end {os.getloadavg()[0]:.1f}")
    REPORT.write(args.out)


if __name__ == "__main__":
    main()
