"""Accelerator benchmark: nested draws/s per generator family, bootstrap fits, compile, memory.

Run through ``benchmarks/gpu.sh`` (see benchmarks/README.md)::

    benchmarks/gpu.sh                  # accelerator: 1e6, 1e7, 1e8 draws, B = 100; < 8 min
    benchmarks/gpu.sh --quick          # any machine (CPU): 1e4-1e6 draws, B = 10, 5 min

Writes ``benchmarks/results/gpu_<device>.txt`` (``gpu_<device>_quick.txt`` with ``--quick``).

Every measurement runs in a fresh child process, so its peak device memory is its own and an
out-of-memory failure costs one row, not the run. Rows are run in increasing size; a size is
skipped (and the file says so) when the previous size's throughput predicts it would not fit
in what is left of the time budget, or when its output would not fit in device memory. The
children use every device (dcma's default mesh): on several devices the draws and replicates
are split across them.

Draws: ``simulate_packed`` on the default study (1 mediator, 4 covariate columns) with the 4
natural-effect arms, float32, randomly initialised generators (the cost of a draw does not
depend on fitted values). *draws/s* counts draws per arm; *nested draws/s* counts one outcome
(with its mediator) per arm per draw, i.e. 4 x draws/s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import bench_core
from bench_core import CHILD_MARK, REPO, _fmt_rate, _fmt_s, _table, _timed

FAMILIES = ("linear", "mdn", "flow", "diffusion")
NUM_ARMS = bench_core.NUM_ARMS
GIB = 1024.0**3
#: Share of the time budget kept for the bootstrap rows.
BOOTSTRAP_SHARE = 0.3


# --------------------------------------------------------------------------------------------
# children


def _device_memory() -> dict:
    """``memory_stats()`` of the first local device (``{}`` where the backend has none)."""
    import jax

    return jax.local_devices()[0].memory_stats() or {}


def _peak(before_rss: float | None) -> dict:
    """Peak device memory (accelerators) or peak RSS growth (CPU) of this child, GiB."""
    stats = _device_memory()
    if "peak_bytes_in_use" in stats:
        return {"peak_gib": stats["peak_bytes_in_use"] / GIB, "peak_kind": "device peak"}
    if before_rss is None:
        return {"peak_gib": None, "peak_kind": "n/a"}
    return {"peak_gib": (bench_core._maxrss() - before_rss) / GIB, "peak_kind": "RSS growth"}


def _probe(spec: dict) -> dict:
    """The devices the children will use (``spec`` unused: every child takes one)."""
    import jax

    from dcma_jax import devices
    from dcma_jax.simulate import DEFAULT_CHUNK

    stats = _device_memory()
    return {
        "default_chunk": DEFAULT_CHUNK,
        "devices": devices.describe(),
        "kind": jax.devices()[0].device_kind,
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "bytes_limit": stats.get("bytes_limit"),
        "physical_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
    }


def _random_params(model, seed: int) -> tuple:
    """Each node's generator initialised at random (jitted ``init_params``)."""
    import jax

    from dcma_jax.generators.base import init_params

    return tuple(
        jax.jit(init_params, static_argnums=(0, 2))(
            g, jax.random.key(seed + j), model.graph.context_dim(j, model.num_covariates)
        )
        for j, g in enumerate(model.generators)
    )


def _simulate_child(spec: dict) -> None:
    """One family and chunk size at increasing draws: a record line per size, as it ends.

    Before each size the previous size's throughput predicts its time; a size that would run
    past ``spec["deadline"]`` (epoch seconds) or whose output would not fit in 0.8 x
    ``spec["memory"]`` bytes is reported as skipped, and the larger ones are not tried.
    """
    import jax

    from dcma_jax.simulate import simulate_packed

    _, model, covariates, weights, arms = bench_core._setup(spec["family"])
    params = _random_params(model, 0)
    rate = compile_s = None
    for draws in spec["sizes"]:
        warmup, repeats = (1, 3) if draws <= 10**7 else (0, 1)
        record = {"draws": draws, "repeats": repeats}
        left = spec["deadline"] - time.time()
        predicted = None if rate is None else 1.5 * compile_s + (warmup + repeats) * draws / rate
        if _output_bytes(draws) > 0.8 * spec["memory"]:
            record["skipped"] = (
                f"output {_output_bytes(draws) / GIB:.1f} GiB > 0.8 x memory "
                f"{spec['memory'] / GIB:.1f} GiB"
            )
        elif predicted is not None and predicted > left:
            record["skipped"] = (
                f"predicted {predicted:.0f} s at {_fmt_rate(rate)} draws/s > {left:.0f} s left"
            )
        if "skipped" in record:
            print(CHILD_MARK + json.dumps(record), flush=True)
            return
        t0 = time.perf_counter()
        compiled = simulate_packed.lower(
            model,
            params,
            jax.random.key(0),
            covariates,
            weights,
            arms,
            num_draws=draws,
            chunk_size=spec["chunk"],
        ).compile()
        compile_s = time.perf_counter() - t0
        bench_core._reset_peak_rss()
        before_rss = bench_core._rss_now()
        times = [
            _timed(lambda s=s, f=compiled: f(params, jax.random.key(s), covariates, weights, arms))[
                0
            ]
            for s in range(warmup + repeats)
        ][warmup:]
        rate = draws / sorted(times)[len(times) // 2]
        record.update(compile_s=compile_s, times=times, **_peak(before_rss))
        print(CHILD_MARK + json.dumps(record), flush=True)


def _bootstrap_child(spec: dict) -> dict:
    """``fit_model_replicates`` of B replicates: first call (compile + run), second call."""
    import jax

    from dcma_jax.inference import bootstrap_counts
    from dcma_jax.training import TrainConfig, fit_model_replicates, replicate_keys

    data, model, *_ = bench_core._setup(spec["family"])
    config = TrainConfig(max_epochs=spec["epochs"], patience=spec["epochs"])
    bench_core._reset_peak_rss()
    before_rss = bench_core._rss_now()
    times = []
    for seed in (0, 1):
        keys = replicate_keys(jax.random.key(seed), len(model.generators), spec["B"])
        counts = bootstrap_counts(jax.random.key(10 + seed), data.n, spec["B"])
        times.append(
            _timed(lambda k=keys, c=counts: fit_model_replicates(model, data, k, c, config))
        )
    return {"first_s": times[0][0], "second_s": times[1][0], **_peak(before_rss)}


CHILDREN = {"probe": _probe, "simulate": _simulate_child, "bootstrap": _bootstrap_child}


def _run_child(spec: dict, timeout: float) -> tuple[list[dict], str | None]:
    """A child's record lines, and why it ended early (``None`` when it finished)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--_child", json.dumps(spec)]
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, cwd=REPO, timeout=max(timeout, 1.0)
        )
        stdout, stderr, error = proc.stdout, proc.stderr, None
    except subprocess.TimeoutExpired as stopped:
        stdout, stderr = (
            (b or b"").decode() if isinstance(b, bytes) else (b or "")
            for b in (stopped.stdout, stopped.stderr)
        )
        error = f"stopped: ran past {timeout:.0f} s"
    records = [
        json.loads(line[len(CHILD_MARK) :])
        for line in stdout.splitlines()
        if line.startswith(CHILD_MARK)
    ]
    if error is None and proc.returncode != 0:
        tail = stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        memory = "RESOURCE_EXHAUSTED" in stderr or "out of memory" in stderr.lower()
        error = ("out of memory: " if memory else "failed: ") + tail[0][:160]
    return records, error


# --------------------------------------------------------------------------------------------
# parent


def _output_bytes(draws: int) -> float:
    """Bytes of the returned draws, twice: one device writes them in place (once), several
    stack their chunks and join them (twice); the bound covers both."""
    return 2 * (NUM_ARMS * draws * 2 * 4 + draws * 4)


def simulate_rows(args, probe: dict, deadline: float, log) -> list[str]:
    """Draws/s of every family at each size (one child per family and chunk size)."""
    memory = probe["bytes_limit"] or probe["physical_bytes"]
    rows, notes = [], []
    series = [(f, c) for f in FAMILIES for c in args.chunks]
    for i, (family, chunk) in enumerate(series):
        budget = (deadline - time.perf_counter()) / (len(series) - i)
        log(f"simulate {family} chunk {chunk} (budget {budget:.0f} s)")
        spec = {
            "child": "simulate",
            "family": family,
            "chunk": chunk,
            "sizes": args.sizes,
            "memory": memory,
            "deadline": time.time() + budget,
        }
        # The child stops itself before its deadline; the timeout only catches a size that
        # ran far slower than predicted.
        records, error = _run_child(spec, timeout=budget + 60)
        for r in records:
            label = f"{family} {r['draws']:.0e} chunk {chunk}"
            if "skipped" in r:
                notes.append(f"{label}: skipped, {r['skipped']}")
                continue
            median = sorted(r["times"])[len(r["times"]) // 2]
            peak = "n/a" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
            rate = r["draws"] / median
            rows.append(
                [
                    family,
                    f"{r['draws']:.0e}",
                    str(chunk),
                    str(r["repeats"]),
                    _fmt_s(r["compile_s"]),
                    _fmt_s(median),
                    _fmt_rate(rate),
                    _fmt_rate(NUM_ARMS * rate),
                    peak,
                ]
            )
        if error is not None:
            done = records[-1]["draws"] if records else None
            notes.append(f"{family} chunk {chunk}: {error} (after {done or 'no'} draws)")
    header = [
        "family",
        "draws",
        "chunk",
        "reps",
        "compile s",
        "median s",
        "draws/s",
        "nested draws/s",
        "peak GiB",
    ]
    kind = "peak GiB: " + (
        "memory_stats()['peak_bytes_in_use'] of the child so far (sizes grow, so: this size's)"
        if probe["bytes_limit"]
        else "peak RSS growth during this size's runs"
    )
    return _table(header, rows) + ["", kind] + (notes or ["every size ran"])


def bootstrap_rows(args, deadline: float, log) -> list[str]:
    """B replicate fits per neural family: compile + first run, then a second run."""
    rows, notes = [], []
    families = ("mdn", "flow")
    for i, family in enumerate(families):
        budget = (deadline - time.perf_counter()) / (len(families) - i)
        log(f"bootstrap {family} B={args.B} (budget {budget:.0f} s)")
        spec = {"child": "bootstrap", "family": family, "B": args.B, "epochs": args.epochs}
        records, error = _run_child(spec, timeout=budget)
        if error is not None:
            notes.append(f"bootstrap {family} B={args.B}: {error}")
            continue
        res = records[0]
        first, second = res["first_s"], res["second_s"]
        peak = "n/a" if res["peak_gib"] is None else f"{res['peak_gib']:.2f}"
        rows.append(
            [
                family,
                str(args.B),
                str(args.epochs),
                _fmt_s(first),
                _fmt_s(second),
                _fmt_s(max(first - second, 0.0)),
                f"{1e3 * second / args.B:.3g}",
                peak,
            ]
        )
    header = [
        "family",
        "B",
        "epochs",
        "1st call s",
        "fit s",
        "compile s (1st - fit)",
        "ms/replicate",
        "peak GiB",
    ]
    return _table(header, rows) + ([""] + notes if notes else [])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    quick_env = os.environ.get("DCMA_BENCH_QUICK", "") not in ("", "0")
    parser.add_argument(
        "--quick",
        action="store_true",
        default=quick_env,
        help="small sizes, for a CPU (also DCMA_BENCH_QUICK=1)",
    )
    parser.add_argument("--budget", type=float, help="seconds in all (default 450; quick 300)")
    parser.add_argument("--out", type=Path, help="default benchmarks/results/gpu_<device>.txt")
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child:
        spec = json.loads(args._child)
        record = CHILDREN[spec["child"]](spec)
        if record is not None:
            print(CHILD_MARK + json.dumps(record), flush=True)
        return

    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:5.0f}s] {msg}", file=sys.stderr, flush=True)

    budget = args.budget or (300.0 if args.quick else 450.0)
    records, error = _run_child({"child": "probe"}, timeout=120)
    if error is not None:
        raise SystemExit(f"cannot start jax: {error}")
    probe = records[0]
    accelerator = probe["backend"] != "cpu"
    args.sizes = [10**4, 10**5, 10**6] if args.quick else [10**6, 10**7, 10**8]
    args.chunks = [probe["default_chunk"]] + ([2**20] if accelerator else [])
    args.B, args.epochs = (10, 5) if args.quick else (100, 20)
    device = "_".join(probe["kind"].lower().replace("-", " ").split())
    out = (
        args.out
        or REPO / "benchmarks" / "results" / f"gpu_{device}{'_quick' if args.quick else ''}.txt"
    )

    load = os.getloadavg()
    info = probe["devices"]
    lines = [
        f"dcma_jax accelerator benchmark ({'QUICK, ' if args.quick else ''}{probe['backend']})",
        f"date      {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"device    {probe['kind']} x {info['count']} ({info['platform']}, "
        f"{info['processes']} process); memory limit "
        + (f"{probe['bytes_limit'] / GIB:.1f} GiB" if probe["bytes_limit"] else "n/a (host RAM)"),
        f"jax       {probe['jax']}",
        f"code      {bench_core._code_version()}",
        f"load avg  {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start, {os.cpu_count()} cpus",
        f"budget    {budget:.0f} s; draws {args.sizes}, chunks {args.chunks}, "
        f"bootstrap B={args.B} x {args.epochs} epochs",
    ]
    if not accelerator and not args.quick:
        lines.append("WARNING   no accelerator visible to jax: this is a CPU run")
    sim_deadline = started + (1.0 - BOOTSTRAP_SHARE) * budget
    lines += ["", "== nested draws (simulate_packed, 4 natural-effect arms) =="]
    lines += simulate_rows(args, probe, sim_deadline, log)
    lines += ["", f"== bootstrap fits (fit_model_replicates, B={args.B}, {args.epochs} epochs) =="]
    lines += bootstrap_rows(args, started + budget, log)
    lines += ["", f"total {time.perf_counter() - started:.0f} s"]
    text = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text, end="")
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
