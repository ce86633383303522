"""Cost of a query on a saved model against a whole run, as the user waits for it (CPU).

Run from the repository root::

    .venv/bin/python benchmarks/bench_query.py                    # B = 20 and 200, mdn
    .venv/bin/python benchmarks/bench_query.py --max-epochs 30    # cap training (run and fit)
    .venv/bin/python benchmarks/bench_query.py --quick            # smoke: B = 2, 2,000 draws

On the embedded default study with the mdn generator, for each number of bootstrap replicates
``B`` (in one benchmark run), the wall time of each command as a subprocess, start-up,
compilation and exit included:

* ``dcma run --bootstrap B --no-plots --out DIR``: fit and effects in one command;
* ``dcma fit --bootstrap B --save MODEL``: fit once and save;
* ``dcma effects --model MODEL --no-plots --out DIR``: the query (timed alone);
* ``dcma info --model MODEL`` and ``dcma --version``: start-up plus loading the model, and
  start-up alone, to split the query's time.

The effect flags are the same for ``run`` and ``effects`` (defaults: 100,000 draws, bootstrap
draws min(draws, 20,000)); ``--max-epochs`` is passed identically to ``run`` and ``fit``. The
report checks that ``dcma run`` and ``dcma effects`` (same seed) write the same ``effects``
list, gives the saved model's size on disk, and the ratio query/run. A last section runs the
query inside one fresh process, twice, to separate compilation from simulation, and times the
default study's true effects, which both commands compute.

Timing rules: ``time.perf_counter`` around each subprocess; CPU seconds of a command from
``getrusage(RUSAGE_CHILDREN)`` (all its threads; on 2 cores ``cpu/wall`` 2.0 = both cores
busy, well under 1 = other processes took the CPU). ``os.getloadavg()`` is printed at start and
end and the 1-minute load beside each command. Each command runs once: these are what a user
waits for, not medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "benchmarks" / "results" / "query_cpu.txt"
CHILD_MARK = "@@BENCH_QUERY_CHILD@@"
GENERATOR = "mdn"


# --------------------------------------------------------------------------------------------
# commands


def _dcma() -> list[str]:
    """The ``dcma`` entry point of this interpreter's environment."""
    exe = Path(sys.executable).with_name("dcma")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dcma_jax.cli"]


def _command(argv: list[str], log, cache: Path | None = None) -> dict:
    """Runs one command; wall and CPU seconds, 1-minute load at its start, its stdout.

    ``cache``: the persistent compilation cache folder, or ``None`` for the cache off (every
    command then compiles from scratch, as on a first use).
    """
    log(" ".join(["dcma", *argv[len(_dcma()) :]]))
    env = {**os.environ, "DCMA_COMPILATION_CACHE": "0" if cache is None else "1"}
    if cache is not None:
        env["DCMA_CACHE_DIR"] = str(cache)
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, check=False, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    log(f"  {wall:.1f} s wall, {cpu:.1f} s cpu")
    return {"wall": wall, "cpu": cpu, "load": load, "stdout": proc.stdout}


def _reported(stdout: str, pattern: str) -> float:
    """A number the command printed (``Fit time: X s`` ...), or NaN."""
    match = re.search(pattern, stdout)
    return float(match.group(1)) if match else float("nan")


def _disk_usage(folder: Path) -> tuple[int, int, int]:
    """(files, apparent bytes, allocated bytes as ``du`` counts them) of a folder."""
    files = apparent = allocated = 0
    for path in folder.rglob("*"):
        if path.is_file():
            st = path.stat()
            files += 1
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return files, apparent, allocated


def _same_effects(a: Path, b: Path) -> tuple[bool, int, list[str]]:
    """Whether two effects JSONs hold the same ``effects`` list; rows; differing meta keys."""
    da, db = json.loads(a.read_text()), json.loads(b.read_text())
    timing = {"seconds", "fit_seconds"}
    keys = sorted(set(da["meta"]) | set(db["meta"]))
    differ = [k for k in keys if k not in timing and da["meta"].get(k) != db["meta"].get(k)]
    return da["effects"] == db["effects"], len(da["effects"]), differ


# --------------------------------------------------------------------------------------------
# child: the query inside one fresh process, twice


def _child(spec: dict) -> dict:
    """Imports, load, ``effects`` twice (cold, warm), point-only warm, truth twice."""
    import dataclasses

    t0 = time.perf_counter()
    import jax  # noqa: F401 - timed with the package

    from dcma_jax.cli import build_parser, steps
    from dcma_jax.persistence import load

    out = {"import": time.perf_counter() - t0}
    t0 = time.perf_counter()
    fitted = load(spec["model"])
    out["load"] = time.perf_counter() - t0
    args = build_parser().parse_args(["effects", "--model", spec["model"], *spec["flags"]])
    kwargs = steps.effect_kwargs(args, fitted.data)
    for name in ("effects_cold", "effects_warm"):
        t0 = time.perf_counter()
        result = fitted.effects(**kwargs)
        out[name] = time.perf_counter() - t0
        out[name + "_meta"] = result.meta["seconds"]
    # The same model without replicates: the point estimates alone (compiled already).
    point = dataclasses.replace(
        fitted,
        replicate_params=None,
        replicate_counts=None,
        settings=dataclasses.replace(fitted.settings, bootstrap=0),
    )
    t0 = time.perf_counter()
    point.effects(**kwargs)
    out["point_warm"] = time.perf_counter() - t0
    for name in ("truth_cold", "truth_warm"):
        t0 = time.perf_counter()
        steps.truth_of(fitted.data, kwargs)
        out[name] = time.perf_counter() - t0
    return out


def _run_child(model: Path, flags: list[str], log) -> dict:
    log(f"in-process anatomy of the query on {model.name} ...")
    spec = json.dumps({"model": str(model), "flags": flags})
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--_child", spec],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(CHILD_MARK):
            return json.loads(line[len(CHILD_MARK) :])
    raise RuntimeError(f"child failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")


# --------------------------------------------------------------------------------------------
# report


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    line = "  ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True))
    out = [line, "-" * len(line)]
    out += ["  ".join(f"{c:>{w}}" for c, w in zip(r, widths, strict=True)) for r in rows]
    return out


def _s(x: float) -> str:
    if abs(x) < 10:
        return f"{x:.2f}"
    return f"{x:.1f}" if abs(x) < 1000 else f"{x:.0f}"


def _header(args, start_load, epochs: str) -> list[str]:
    import jax
    import jaxlib

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    lines = [
        "dcma_jax query benchmark (CPU): dcma effects on a saved model vs dcma run",
        f"date      {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"host      {platform.node()} {platform.machine()}",
        f"python    {platform.python_version()}  jax {jax.__version__}  "
        f"jaxlib {jaxlib.__version__}",
        f"cpus      os.cpu_count()={os.cpu_count()}  usable={usable}",
        f"load avg  {start_load[0]:.2f} {start_load[1]:.2f} {start_load[2]:.2f} (1/5/15 min) "
        "at start",
        f"study     embedded default study (2,000 rows), --generator {GENERATOR}, seed 0",
        f"effects   {args.draws:,} draws, bootstrap draws "
        f"{args.bootstrap_draws or min(args.draws, 20_000):,}, natural effects, no plots",
        f"training  {epochs}",
        f"settings  {'--quick ' if args.quick else ''}B = {', '.join(map(str, args.boot))}",
    ]
    if start_load[0] > 0.75 * usable:
        lines.append(
            f"WARNING   load average {start_load[0]:.1f} on {usable} cores: other processes "
            "compete for the CPUs; wall times are inflated (see cpu/wall)."
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: B = 2, 2,000 draws, max-epochs 3"
    )
    parser.add_argument(
        "--boot", default=None, help="comma-separated replicate counts (default: 20,200)"
    )
    parser.add_argument("--draws", type=int, default=None, help="--draws (default: 100,000)")
    parser.add_argument(
        "--bootstrap-draws", type=int, default=None, help="--bootstrap-draws (default: the CLI's)"
    )
    parser.add_argument(
        "--max-epochs",
        type=int,
        default=None,
        help="--max-epochs of both run and fit (default: none passed, the CLI's default)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"report file (default: {DEFAULT_OUT.relative_to(REPO)}; with --quick a temp file)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="scratch (default: a temp dir)")
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._child:
        print(CHILD_MARK + json.dumps(_child(json.loads(args._child))), flush=True)
        return
    from dcma_jax.training import TrainConfig  # after the child's branch: it times imports

    if args.quick:
        args.boot = args.boot or "2"
        args.draws = args.draws or 2_000
        args.max_epochs = args.max_epochs or 3
    args.boot = [int(b) for b in (args.boot or "20,200").split(",")]
    args.draws = args.draws or 100_000
    if args.out is None:
        args.out = (
            Path(tempfile.gettempdir()) / "bench_query_quick.txt" if args.quick else DEFAULT_OUT
        )
    effect_flags = ["--draws", str(args.draws), "--no-plots"]
    if args.bootstrap_draws:
        effect_flags += ["--bootstrap-draws", str(args.bootstrap_draws)]
    fit_flags = ["--generator", GENERATOR, "--seed", "0"]
    if args.max_epochs:
        fit_flags += ["--max-epochs", str(args.max_epochs)]
        epochs = (
            f"--max-epochs {args.max_epochs} passed to run and fit (CLI default "
            f"{TrainConfig().max_epochs} not used), patience {TrainConfig().patience}"
        )
    else:
        epochs = (
            f"CLI defaults: max_epochs {TrainConfig().max_epochs}, patience "
            f"{TrainConfig().patience} (early stopping)"
        )

    start_load = os.getloadavg()
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.0f}s] {msg}", file=sys.stderr, flush=True)

    report = _header(args, start_load, epochs)
    print("\n".join(report), flush=True)

    def emit(lines: list[str]) -> None:
        report.extend(lines)
        print("\n".join(lines), flush=True)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_query_"))
    work.mkdir(parents=True, exist_ok=True)
    dcma = _dcma()
    version = _command([*dcma, "--version"], log)
    rows, sizes, checks, splits, anatomy = [], [], [], [], {}
    for b in args.boot:
        boot = ["--bootstrap", str(b)]
        run_dir, model_dir, eff_dir = work / f"run_B{b}", work / f"model_B{b}", work / f"eff_B{b}"
        for folder in (run_dir, model_dir, eff_dir):
            shutil.rmtree(folder, ignore_errors=True)
        run = _command([*dcma, "run", *boot, *fit_flags, *effect_flags, "--out", str(run_dir)], log)
        fit = _command([*dcma, "fit", *boot, *fit_flags, "--save", str(model_dir)], log)
        eff = _command(
            [*dcma, "effects", "--model", str(model_dir), *effect_flags, "--out", str(eff_dir)],
            log,
        )
        info = _command([*dcma, "info", "--model", str(model_dir)], log)
        # The same query twice with the persistent compilation cache on (a fresh folder): the
        # first fills it, the second is what a repeated query costs.
        cache = work / f"jaxcache_B{b}"
        shutil.rmtree(cache, ignore_errors=True)
        query_argv = [*dcma, "effects", "--model", str(model_dir), *effect_flags]
        _command([*query_argv, "--out", str(eff_dir) + "_fill"], log, cache)
        warm = _command([*query_argv, "--out", str(eff_dir) + "_warm"], log, cache)
        run_fit = _reported(run["stdout"], r"\(fit ([\d.]+) s\)")
        fit_fit = _reported(fit["stdout"], r"Fit time: ([\d.]+) s")
        query = _reported(eff["stdout"], r"Query time: ([\d.]+) s")
        warm_query = _reported(warm["stdout"], r"Query time: ([\d.]+) s")
        run_query = _reported(run["stdout"], r"Analysis time: ([\d.]+) s") - run_fit
        for name, res, inner in (
            ("dcma run", run, f"fit {_s(run_fit)} + effects {_s(run_query)}"),
            ("dcma fit --save", fit, f"fit {_s(fit_fit)}"),
            ("dcma effects --model", eff, f"effects {_s(query)}"),
            ("dcma info --model", info, ""),
            ("dcma effects, cache warm", warm, f"effects {_s(warm_query)}"),
        ):
            rows.append(
                [
                    str(b),
                    name,
                    _s(res["wall"]),
                    _s(res["cpu"]),
                    f"{res['cpu'] / res['wall']:.2f}",
                    f"{res['load']:.2f}",
                    inner,
                ]
            )
        rows.append(
            [
                str(b),
                "=> query / run",
                f"{eff['wall'] / run['wall']:.3f}",
                f"{eff['cpu'] / run['cpu']:.3f}",
                "",
                "",
                f"run is {run['wall'] / eff['wall']:.1f}x the query's wall time",
            ]
        )
        rows.append(
            [
                str(b),
                "=> warm query / run",
                f"{warm['wall'] / run['wall']:.3f}",
                f"{warm['cpu'] / run['cpu']:.3f}",
                "",
                "",
                "query with the persistent compilation cache warm vs a run without it",
            ]
        )
        files, apparent, allocated = _disk_usage(model_dir)
        sizes.append(
            [str(b), str(files), f"{apparent / 1024:.0f}", f"{allocated / 1024:.0f}", str(b)]
        )
        same, n_rows, differ = _same_effects(run_dir / "effects.json", eff_dir / "effects.json")
        checks.append(
            f"B={b}: effects list of dcma run == dcma effects: {same} ({n_rows} rows); "
            f"meta keys differing besides timings: {differ or 'none'}"
        )
        splits.append(
            [
                str(b),
                _s(eff["wall"]),
                _s(version["wall"]),
                _s(info["wall"] - version["wall"]),
                _s(query),
                _s(eff["wall"] - info["wall"] - query),
            ]
        )
        anatomy[b] = _run_child(model_dir, effect_flags, log)
        log(f"B={b} done; load {os.getloadavg()[0]:.2f}")

    emit(
        [
            "",
            "== 1. wall time of each command (subprocess: start-up, compilation and exit "
            "included; one run each) ==",
        ]
    )
    emit(
        _table(
            [
                "B",
                "command",
                "wall s",
                "cpu s",
                "cpu/wall",
                "load 1m",
                "inside (the command's own report, s)",
            ],
            rows,
        )
    )
    emit(["", f"dcma --version (start-up alone): {_s(version['wall'])} s wall"])
    emit(["", "== 2. saved model on disk (dcma fit --save DIR) =="])
    emit(_table(["B", "files", "KiB", "du KiB", "replicates"], sizes))
    emit(["", "== 3. same numbers from dcma run and dcma effects (same seed) =="])
    emit(checks)
    emit(
        [
            "",
            "== 4. where the wall time of dcma effects goes (differences of single runs) ==",
        ]
    )
    emit(
        _table(
            [
                "B",
                "effects wall s",
                "start-up s (--version)",
                "load + node diagnostics s (info - version)",
                "query s (compile + simulate)",
                "rest s (truth, table, JSON, exit)",
            ],
            splits,
        )
    )
    rows = []
    for b, a in anatomy.items():
        rows.append(
            [
                str(b),
                _s(a["import"]),
                _s(a["load"]),
                _s(a["effects_cold"]),
                _s(a["effects_warm"]),
                _s(a["effects_cold"] - a["effects_warm"]),
                _s(a["point_warm"]),
                _s(a["effects_warm"] - a["point_warm"]),
                _s(a["truth_cold"]),
                _s(a["truth_warm"]),
            ]
        )
    emit(
        [
            "",
            "== 5. the query inside one fresh process: FittedMediation.effects cold and warm, "
            "the default study's true effects ==",
        ]
    )
    emit(
        _table(
            [
                "B",
                "import s",
                "load s",
                "effects 1st s",
                "effects 2nd s",
                "=> compile+trace s",
                "point only s",
                "=> replicates s",
                "truth 1st s",
                "truth 2nd s",
            ],
            rows,
        )
    )
    end_load = os.getloadavg()
    emit(
        [
            "",
            f"load avg at end {end_load[0]:.2f} {end_load[1]:.2f} {end_load[2]:.2f}; "
            f"total wall {time.perf_counter() - t_start:.0f} s",
        ]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(report) + "\n")
    log(f"wrote {args.out}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
