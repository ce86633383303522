"""Cost of a binary-mediator sensitivity analysis beside a numpy port of medsens (CPU).

The workload of ``dcma sensitivity --generator linear --link probit --bootstrap 100`` on a
probit-mediator / linear-outcome study of 900 rows (the SCM of ``tests/test_sensitivity.py``,
true rho 0.4), as the Python call the command makes, ``fitted.sensitivity(rho_grid=...)``:
the 19-point grid -0.9..0.9, 20,000 draws per arm for the point curve and for each of the 100
bootstrap replicates. Two configurations:

* A, the command's defaults: natural effects with the default quantiles, CDF points and
  distances (62 effect rows per rho), curves only (``breakpoints=False``): one cold call
  (compilation plus the run), then ``--repeats`` warm ones (no recompilation); the stages
  (point curve, bootstrap curves) are timed by the ``progress`` callback.
* B, medsens' output: mean effects only (``quantiles=(), cdf_points=(), distances=()``) with
  the breakpoints of the estimates and both CI bounds (Newton steps; each step on a CI bound
  simulates all replicates at one rho, with its derivative). One untimed call without
  breakpoints compiles the curves, then one timed call.

Beside them, in the same process, ``tests/medsens_reference.py``: a numpy port of R
mediation's ``medsens`` algorithm for this pair (sims = 1000 parameter draws per rho,
iterated FGLS per draw, as published), ``--repeats`` (at least 3) runs. It is a port, not R: R
is not installed here, and R's loop over draws would be slower than the port's batched numpy.

Timing rules (shared/STYLE.md): compilation is excluded from the warm numbers, results are
numpy (synchronised), medians over repeats; the header and footer print ``os.getloadavg()``.

    .venv/bin/python benchmarks/bench_sensitivity.py            # B = 100, 19 rho (~15 min)
    .venv/bin/python benchmarks/bench_sensitivity.py --quick    # B = 10, 5 rho, 2,000 draws
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd

import dcma_jax as dj
from dcma_jax.sensitivity import DEFAULT_GRID, DEFAULT_SENSITIVITY_DRAWS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from medsens_reference import medsens_binary_mediator  # noqa: E402

OUT = Path(__file__).parent / "results" / "sensitivity_cpu.txt"


def study(n: int = 900, rho: float = 0.4, seed: int = 1):
    """Probit mediator, linear outcome, structural noises correlated ``rho``."""
    rng = np.random.default_rng(seed)
    x, t = rng.normal(size=n), rng.integers(0, 2, n)
    e_m = rng.normal(size=n)
    e_y = rho * e_m + np.sqrt(1 - rho**2) * rng.normal(size=n)
    m = (-0.3 + 0.9 * t + 0.5 * x + e_m > 0).astype(float)
    y = 0.2 + 0.4 * t + 0.8 * m + 0.3 * x + 1.3 * e_y
    return pd.DataFrame({"A": t, "M": m, "Y": y, "X": x})


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


class Stages:
    """Wall time between the sensitivity query's progress notes (its stages, in order)."""

    NAMES = ("point", "boot", "breakpoints")

    def __init__(self) -> None:
        self.marks: list[float] = []

    def __call__(self, stage: str) -> None:
        self.marks.append(time.perf_counter())

    def split(self, end: float) -> dict[str, float]:
        times = [*self.marks, end]
        return {
            name: times[i + 1] - times[i] for i, name in enumerate(self.NAMES[: len(self.marks)])
        }


def run_sensitivity(fitted, grid, draws, **kwargs):
    """One ``dcma sensitivity``-equivalent call: ``(result, wall s, cpu s, {stage: wall s})``."""
    stages = Stages()
    cpu, started = time.process_time(), time.perf_counter()
    result = fitted.sensitivity(rho_grid=grid, num_draws=draws, progress=stages, **kwargs)
    end = time.perf_counter()
    return result, end - started, time.process_time() - cpu, stages.split(end)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="B = 10, 5 rho, 2,000 draws")
    parser.add_argument("--bootstrap", type=int, default=100)
    parser.add_argument("--sims", type=int, default=1000, help="medsens' parameter draws")
    parser.add_argument("--repeats", type=int, default=1, help="warm sensitivity calls")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    boot = 10 if args.quick else args.bootstrap
    grid = tuple(np.round(np.linspace(-0.9, 0.9, 5), 10)) if args.quick else DEFAULT_GRID
    draws = 2000 if args.quick else DEFAULT_SENSITIVITY_DRAWS
    sims = 100 if args.quick else args.sims
    lines = [
        f"bench_sensitivity: {platform.machine()} cpu, {os.cpu_count()} cores, jax "
        f"{jax.__version__}; {load()} at start",
        f"study: probit mediator, linear outcome, n = 900; grid of {len(grid)} rho; "
        f"B = {boot}; {draws:,} draws per arm (point and replicates); medsens port sims = "
        f"{sims}",
        "",
    ]
    print("\n".join(lines), flush=True)
    frame = study()
    data = dj.MediationData.from_dataframe(
        frame, treatment="A", mediators=["M"], outcome="Y", covariates=["X"]
    )
    started = time.perf_counter()
    fitted = dj.fit(data, generators="linear", link="probit", bootstrap=boot, seed=0)
    fit_s = time.perf_counter() - started
    print(f"fit (closed form, B = {boot}): {fit_s:.1f} s", file=sys.stderr, flush=True)

    result, cold, cold_cpu, _ = run_sensitivity(fitted, grid, draws, breakpoints=False)
    print(f"A cold: {cold:.1f} s", file=sys.stderr, flush=True)
    warm, cpus, points, replicates = [], [], [], []
    for _ in range(args.repeats):
        again, total, cpu, split = run_sensitivity(fitted, grid, draws, breakpoints=False)
        warm.append(total)
        cpus.append(cpu)
        points.append(split["point"])
        replicates.append(split["boot"])
        print(f"A warm: {total:.1f} s {split}", file=sys.stderr, flush=True)
    same = np.array_equal(again.curve.estimate.to_numpy(), result.curve.estimate.to_numpy())
    point, replicate = statistics.median(points), statistics.median(replicates)
    rows = len(result.curve) // len(grid)

    means = dict(quantiles=(), cdf_points=(), distances=())
    run_sensitivity(fitted, grid, draws, breakpoints=False, **means)  # compiles B's curves
    mean_result, b_total, b_cpu, b_split = run_sensitivity(fitted, grid, draws, **means)
    print(f"B: {b_total:.1f} s {b_split}", file=sys.stderr, flush=True)

    x, t, m, y = (frame[c].to_numpy(float) for c in ("X", "A", "M", "Y"))
    port_times, port_cpu = [], []
    for r in range(max(args.repeats, 3)):
        cpu0, started = time.process_time(), time.perf_counter()
        port = medsens_binary_mediator(y, m, t, x, np.asarray(grid), sims=sims, seed=r)
        port_times.append(time.perf_counter() - started)
        port_cpu.append(time.process_time() - cpu0)
    port_s = statistics.median(port_times)

    curve = mean_result.curve
    nie = curve[(curve.effect == "NIE_treated") & (curve.functional == "mean")]
    found = mean_result.breakpoints
    nie_found = found[(found.effect == "NIE_treated") & (found.functional == "mean")]
    g = len(grid)
    table = [
        ("A: defaults, curves only, cold (compile + run)", cold, cold_cpu, ""),
        (
            "A: defaults, curves only, warm (median)",
            statistics.median(warm),
            statistics.median(cpus),
            "",
        ),
        ("  point curve", point, None, f"{point / g * 1e3:.1f} ms per rho point"),
        (
            "  bootstrap curves",
            replicate,
            None,
            f"{replicate / boot * 1e3:.0f} ms per replicate ({g} rho), "
            f"{replicate / boot / g * 1e3:.2f} ms per replicate-point",
        ),
        ("B: means, with breakpoints (curves compiled)", b_total, b_cpu, ""),
        (
            "  point curve",
            b_split["point"],
            None,
            f"{b_split['point'] / g * 1e3:.1f} ms per rho point",
        ),
        (
            "  bootstrap curves",
            b_split["boot"],
            None,
            f"{b_split['boot'] / boot * 1e3:.0f} ms per replicate ({g} rho)",
        ),
        (
            "  breakpoints (Newton steps)",
            b_split["breakpoints"],
            None,
            f"{len(found)} crossings, {b_split['breakpoints'] / max(len(found), 1):.1f} s each",
        ),
        (
            f"medsens port, sims = {sims} (median of {len(port_times)})",
            port_s,
            statistics.median(port_cpu),
            f"{port_s / g * 1e3:.0f} ms per rho point, "
            f"{port_s / g / sims * 1e6:.0f} us per parameter draw",
        ),
    ]
    lines += [
        f"{'work':52} {'wall s':>8} {'cpu s':>8}  per unit",
        *(
            f"{name:52} {wall:8.2f} {'' if cpu is None else f'{cpu:8.2f}':>8}  {unit}"
            for name, wall, cpu, unit in table
        ),
        "",
        f"A computes {rows} effect rows per rho (all natural effects: mean, quantiles, CDF points, "
        f"distances), B {len(curve) // g} (means), each with its bootstrap band and d/d rho; "
        "medsens one ACME (d0 = d1) with its quantile band.",
        "per rho point, A warm / port: point curve "
        f"{point / port_s:.3f}, point curve and {boot} replicates "
        f"{(point + replicate) / port_s:.2f}; B with breakpoints / port: {b_total / port_s:.1f}",
        f"A's warm repeat equals its cold call: {same}; fit with B = {boot}: {fit_s:.1f} s",
        "",
        "NIE_treated (mean) by rho: dcma plug-in [95% bootstrap band] | port mean [quantiles]",
        *(
            f"  rho {r:+.2f}: {e:+.4f} [{lo:+.4f}, {hi:+.4f}] | {pm:+.4f} [{pl:+.4f}, {pu:+.4f}]"
            for r, e, lo, hi, pm, pl, pu in zip(
                nie.rho,
                nie.estimate,
                nie.ci_low,
                nie.ci_high,
                port.acme,
                port.lower,
                port.upper,
                strict=True,
            )
        ),
        "(the port is medsens as published, lm weights w: it departs from dcma's curve away "
        "from rho = 0, see dcma_jax/sensitivity.py)",
        "dcma NIE_treated breakpoints: "
        + ", ".join(f"{b} {r:.4f}" for b, r in zip(nie_found.bound, nie_found.rho, strict=True))
        + f"; port err.cr {port.err_cr:.2f}",
        "",
        f"{load()} at end",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick or args.out != OUT:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
