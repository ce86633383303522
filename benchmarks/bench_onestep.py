"""Cost of the one-step estimator beside the plug-in: cross-fitting at fit time, the correction
at query time (CPU by default).

On one SCM (``ROBUSTNESS_STUDIES["outcome_misspecified"]``, n = 2000, data seed 0), for the
linear and mdn families, in one process:

* fit: ``dj.fit(data, generators=family, seed=0)`` (plain), the same with ``crossfit=5``
  (the five folds' nuisances refitted under one ``vmap``, plus the logistic propensity and
  classifier), and with ``bootstrap=B`` (the plug-in's route to intervals);
* query (the study's rows: natural effects on the mean, quantiles 0.25 / 0.5 / 0.75, CDF at
  three points, no distances, 20,000 draws per arm): ``effects(estimator="plugin")`` on the
  cross-fitted model (point estimates only), ``effects(estimator="onestep")`` on it (point
  estimates and influence-function intervals; it simulates the plug-in too), and
  ``effects()`` on the bootstrap model (plug-in with percentile intervals); with the
  one-step's parts: ``fitted.onestep(...)`` (the cross-fitted influence values alone) and
  ``OneStep.multiplier_cdfs`` (the Gaussian-multiplier draws behind the quantile intervals).

Timing rules (shared/STYLE.md): every callable runs once untimed (compilation), then the
variants of a table are interleaved for ``--repeats`` rounds and the median is reported, with
``block_until_ready`` where a JAX value comes back. *cpu s* is the median process CPU time
(all threads; on 2 cores 2.0 x wall = both busy), so *cpu/wall* well under 1 means other
processes took the CPU. ``uptime`` is printed at the start and the end.

    .venv/bin/python benchmarks/bench_onestep.py            # ~10 min on 2 shared cores
    .venv/bin/python benchmarks/bench_onestep.py --quick    # n = 500, 1 round, linear only
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax

import dcma_jax as dj
from dcma_jax.datasets.recovery import ROBUSTNESS_STUDIES

OUT = Path(__file__).parent / "results" / "onestep.txt"
STUDY = "outcome_misspecified"
FOLDS = 5
QUERY = {
    "quantiles": (0.25, 0.5, 0.75),
    "cdf_points": (0.5, 1.0, 2.0),
    "distances": (),
    "num_draws": 20_000,
}


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _once(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn())
    return time.perf_counter() - wall, time.process_time() - cpu


def _interleaved(variants: dict, rounds: int, log) -> dict[str, tuple[float, float, float]]:
    """``{name: (first s, median wall s, median cpu s)}``, rounds alternating the order."""
    first = {}
    for name, fn in variants.items():
        first[name] = _once(fn)[0]
        log(f"  {name}: first call {first[name]:.1f} s")
    times = {name: [] for name in variants}
    names = list(variants)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(_once(variants[name]))
    return {
        name: (
            first[name],
            statistics.median(t[0] for t in times[name]),
            statistics.median(t[1] for t in times[name]),
        )
        for name in variants
    }


def _table(title: str, results: dict, base: str) -> list[str]:
    lines = [title, ""]
    lines.append(f"{'variant':<44} {'first s':>8} {'median s':>9} {'cpu s':>7} {'cpu/wall':>8}"
                 f" {'x ' + base:>12}")  # fmt: skip
    ref = results[base][1]
    for name, (first, wall, cpu) in results.items():
        lines.append(
            f"{name:<44} {first:8.2f} {wall:9.2f} {cpu:7.2f} {cpu / wall:8.2f} {wall / ref:12.2f}"
        )
    return [*lines, ""]


def bench_family(family: str, data, bootstrap: int, rounds: int, log) -> list[str]:
    log(f"{family}: fits")
    fits = _interleaved(
        {
            "fit (plain)": lambda: dj.fit(data, generators=family, seed=0).params,
            f"fit crossfit={FOLDS}": lambda: (
                dj.fit(data, generators=family, crossfit=FOLDS, seed=0).params
            ),
            f"fit bootstrap={bootstrap}": lambda: (
                dj.fit(data, generators=family, bootstrap=bootstrap, seed=0).params
            ),
        },
        rounds,
        log,
    )
    crossfitted = dj.fit(data, generators=family, crossfit=FOLDS, seed=0)
    booted = dj.fit(data, generators=family, bootstrap=bootstrap, seed=0)
    log(f"{family}: queries")
    onestep = crossfitted.onestep(quantiles=QUERY["quantiles"], cdf_points=QUERY["cdf_points"])
    key = jax.random.key(0)
    queries = _interleaved(
        {
            "effects plugin (point only)": lambda: crossfitted.effects(**QUERY).table,
            "effects onestep (point + IF intervals)": lambda: (
                crossfitted.effects(estimator="onestep", **QUERY).table
            ),
            f"effects plugin, B={bootstrap} intervals": lambda: booted.effects(**QUERY).table,
            "  of onestep: influence values (.onestep)": lambda: (
                crossfitted.onestep(
                    quantiles=QUERY["quantiles"], cdf_points=QUERY["cdf_points"]
                ).mean
            ),
            "  of onestep: multiplier draws (1000)": lambda: onestep.multiplier_cdfs(key),
        },
        rounds,
        log,
    )
    head = f"== {family} (n = {data.n}, {rounds} interleaved rounds; medians) =="
    return [
        head,
        "",
        *_table("fit", fits, "fit (plain)"),
        *_table("query", queries, "effects plugin (point only)"),
    ]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds")
    parser.add_argument("--bootstrap", type=int, default=20, help="B of the plug-in's intervals")
    parser.add_argument("--families", default="linear,mdn")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--quick", action="store_true", help="n = 500, 1 round, linear only")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.rounds, args.families, args.bootstrap = 500, 1, "linear", 5

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    start = _uptime()
    study = ROBUSTNESS_STUDIES[STUDY]
    data = dj.MediationData.from_dataframe(
        study.observational(0, args.n),
        treatment=study.treatment,
        mediators=list(study.mediators),
        outcome=study.outcome,
        covariates=list(study.covariates),
    )
    lines = [
        "bench_onestep: cross-fitting and the one-step query beside the plug-in",
        f"study {STUDY} (n = {args.n}), folds {FOLDS}, bootstrap B = {args.bootstrap}, "
        f"query {QUERY}",
        f"jax {jax.__version__}, backend {jax.default_backend()}, {platform.processor() or ''} "
        f"python {platform.python_version()}",
        f"uptime at start: {start}",
        "",
    ]
    for family in args.families.split(","):
        lines += bench_family(family.strip(), data, args.bootstrap, args.rounds, log)
    lines.append(f"uptime at end:   {_uptime()}")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
