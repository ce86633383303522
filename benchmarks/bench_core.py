"""Benchmarks of dcma_jax's compute core on CPU: Monte Carlo throughput and memory, bootstrap fits.

Run from the repository root::

    .venv/bin/python benchmarks/bench_core.py            # default: draws up to 1e7, B up to 100
    .venv/bin/python benchmarks/bench_core.py --quick    # draws up to 1e6, B in {1, 10}
    .venv/bin/python benchmarks/bench_core.py --large    # adds 1e8 draws (minutes, ~7 GiB RSS)

Sections (see benchmarks/README.md for every column):

1. ``simulate`` throughput and peak memory on the default study (1 continuous mediator, continuous
   outcome, 4 covariate columns) for the linear and mdn generators, the 4 natural-effect arms.
   Each size runs in a fresh subprocess so that its peak RSS is its own.
2. The effect of ``chunk_size`` at 1e6 draws (mdn): memory from fresh subprocesses, throughput
   timed in this process with the variants interleaved.
3. Where one mdn ``simulate`` call spends its time (pieces timed separately, interleaved), and
   two what-if variants that only live in this file.
4. Bootstrap fitting: ``fit_model_replicates`` (one vmapped computation per node) against a Python
   loop of ``fit_generator`` calls on the resampled rows, interleaved.
5. The linear generator's closed-form solve against ``jnp.linalg.lstsq`` (speed and accuracy).

Timing rules (shared/STYLE.md): compile first (AOT ``lower().compile()`` or a warm-up call),
``block_until_ready``, medians over repeats. CPU share (process CPU seconds / wall seconds) is
printed beside each median: on 2 cores, 2.0 means both cores busy; well under 1 means the process
was starved by other load.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "benchmarks" / "results" / "core_cpu.txt"
CHILD_MARK = "@@BENCH_CHILD@@"
MIB = 1024.0 * 1024.0
NUM_ARMS = 4  # natural_effects(1): Y(1,M(1)), Y(1,M(0)), Y(0,M(1)), Y(0,M(0))
GENERATORS = ("linear", "mdn")
# (timed repeats, warm-up runs) per number of draws. Compilation is always excluded (AOT
# lower().compile() before any run); the warm-up run is skipped only where one run takes a
# minute or more, so that first-touch page faults are <1% of it.
REPEATS = {10**5: (7, 1), 10**6: (5, 1), 10**7: (3, 1), 10**8: (1, 0)}
MDN_REPEATS = {10**5: (5, 1), 10**6: (3, 1), 10**7: (2, 0), 10**8: (1, 0)}
CHUNKS = (4_096, 16_384, 65_536, 262_144)
BOOT_ROUNDS = {1: 5, 10: 3, 100: 2}


# --------------------------------------------------------------------------------------------
# small helpers


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of ``fn()`` with its outputs blocked on."""
    import jax

    c0, t0 = time.process_time(), time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0, time.process_time() - c0


def _median_share(samples: list[tuple[float, float]]) -> tuple[float, float]:
    """Median wall time and the median CPU share (cpu / wall) of the samples."""
    return (
        statistics.median(s[0] for s in samples),
        statistics.median(s[1] / s[0] for s in samples),
    )


def _median_cpu(samples: list[tuple[float, float]]) -> float:
    """Median process CPU seconds of the samples (less sensitive to other load than wall)."""
    return statistics.median(s[1] for s in samples)


def _rss_now() -> float | None:
    """Current resident set size in bytes (Linux), else ``None``."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return None


def _maxrss() -> float:
    """Peak resident set size of this process in bytes.

    On Linux this is ``VmHWM`` of /proc/self/status, the high-water mark of this process's own
    memory. ``getrusage(RUSAGE_SELF).ru_maxrss`` is not used there: after ``exec`` it also
    carries the peak RSS of the process image that exec replaced, i.e. of the benchmark
    parent that spawned the child (several hundred MiB here), which swamps small results.
    Elsewhere ``ru_maxrss`` (KiB on Linux, bytes on macOS) is the fallback.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _proc_status() -> dict[str, str]:
    """Memory and thread lines of /proc/self/status (Linux), for diagnostics."""
    try:
        with open("/proc/self/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return {}
    keys = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads")
    return {k: fields[k].strip() for k in keys if k in fields}


def _reset_peak_rss() -> bool:
    """Resets this process's peak-RSS high-water mark to its current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _fmt_rate(x: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


def _fmt_s(x: float) -> str:
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    line = "  ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True))
    out = [line, "-" * len(line)]
    out += ["  ".join(f"{c:>{w}}" for c, w in zip(r, widths, strict=True)) for r in rows]
    return out


def _setup(gen: str):
    """Default study, model, inputs of ``simulate_packed`` (float32, as the queries use)."""
    import jax.numpy as jnp

    from dcma_jax.arms import Arms
    from dcma_jax.datasets import load_default_study
    from dcma_jax.estimands import natural_effects
    from dcma_jax.model import build_model

    data = load_default_study()
    model = build_model(data, gen)
    covariates = jnp.asarray(data.covariates, jnp.float32)
    weights = jnp.asarray(data.weights, jnp.float32)
    arms = Arms.pack(natural_effects(model.graph.num_mediators).arms, jnp.float32)
    return data, model, covariates, weights, arms


def _save_params(path: str, params: dict) -> None:
    """Writes ``{generator: per-node params}`` as msgpack (flax.serialization; no pickle)."""
    import jax
    import numpy as np
    from flax import serialization

    state = {g: serialization.to_state_dict(jax.tree.map(np.asarray, p)) for g, p in params.items()}
    with open(path, "wb") as f:
        f.write(serialization.msgpack_serialize(state))


def _load_params(path: str, gen: str) -> tuple:
    """The per-node params of ``gen`` written by :func:`_save_params`, as a tuple of jax arrays.

    ``to_state_dict`` stores the per-node tuple as ``{"0": ..., "1": ...}``; the tuple is
    rebuilt here (the parent checks the round trip gives the fitted tree back exactly).
    """
    import jax
    import jax.numpy as jnp
    from flax import serialization

    with open(path, "rb") as f:
        state = serialization.msgpack_restore(f.read())[gen]
    return tuple(jax.tree.map(jnp.asarray, state[str(i)]) for i in range(len(state)))


# --------------------------------------------------------------------------------------------
# child process: one simulate configuration, fresh process so that ru_maxrss is its own


def _child(spec: dict) -> dict:
    import jax

    from dcma_jax.simulate import simulate_packed

    _, model, covariates, weights, arms = _setup(spec["gen"])
    params = _load_params(spec["params"], spec["gen"])
    key = jax.random.key(0)
    fn = simulate_packed if spec.get("variant", "library") == "library" else _stacked_jitted()
    t0 = time.perf_counter()
    compiled = fn.lower(
        model,
        params,
        key,
        covariates,
        weights,
        arms,
        num_draws=spec["draws"],
        chunk_size=spec["chunk"],
    ).compile()
    compile_s = time.perf_counter() - t0
    try:
        mem = compiled.memory_analysis()
        xla_temp, xla_out = mem.temp_size_in_bytes, mem.output_size_in_bytes
    except Exception:  # noqa: BLE001 - not every backend reports it
        xla_temp = xla_out = None
    # Baseline after imports, parameter loading and compilation of this very program. The
    # compiler's own transient peak would mask smaller execution peaks in ru_maxrss, so the
    # high-water mark is reset to the current RSS first where the kernel allows it.
    gc.collect()
    reset = _reset_peak_rss()
    rss_base, maxrss_compiled = _rss_now(), _maxrss()
    status = {"base": _proc_status()}
    run = functools.partial(compiled, params)
    warm, times, maxrss_first = [], [], None
    plan = [(warm, 100 + i) for i in range(spec["warmup"])]
    plan += [(times, i) for i in range(spec["repeats"])]
    for store, seed in plan:
        store.append(_timed(lambda seed=seed: run(jax.random.key(seed), covariates, weights, arms)))
        if maxrss_first is None:  # the peak of one execution, before allocator caching builds up
            maxrss_first = _maxrss()
            status["first"] = _proc_status()
    status["end"] = _proc_status()
    return {
        "compile_s": compile_s,
        "reset": reset,
        "warm": warm,
        "times": times,
        "rss_base": rss_base,
        "maxrss_compiled": maxrss_compiled,
        "maxrss_first": maxrss_first,
        "status": status,
        "maxrss_end": _maxrss(),
        "xla_temp": xla_temp,
        "xla_out": xla_out,
    }


def _run_child(spec: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--_child", json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(CHILD_MARK):
            return json.loads(line[len(CHILD_MARK) :])
    raise RuntimeError(f"child {spec} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")


def _rss_growth(res: dict, which: str = "maxrss_end") -> str:
    """Peak RSS growth over the post-compile baseline, MiB (``which``: first run or all runs).

    Without a high-water reset, if execution never pushed RSS above the compiler's own peak,
    ru_maxrss cannot see the execution peak; the growth is then only bounded, printed ``<=X``.
    """
    if res["rss_base"] is None or res[which] is None:
        return "n/a"
    if res["reset"] or res[which] > res["maxrss_compiled"]:
        return f"{(res[which] - res['rss_base']) / MIB:.0f}"
    return f"<={(res['maxrss_compiled'] - res['rss_base']) / MIB:.0f}"


def _output_bytes(draws: int, num_mediators: int = 1) -> int:
    return NUM_ARMS * draws * (1 + num_mediators) * 4


# --------------------------------------------------------------------------------------------
# what-if: simulate writing each chunk into the final buffers


def _simulate_stacked_impl(model, params, key, covariates, weights, arms, num_draws, chunk_size):
    """``simulate_packed`` as it was before chunks were written in place (the reference).

    ``lax.map`` stacks the chunk results as ``(n_chunks, n_arms, size)``; moveaxis, reshape and
    trim lay them out as ``(n_arms, num_draws)``, which needs a second output-sized buffer. The
    last chunk is trimmed, so draws equal the library's except in the last chunk. Uses the
    library's ``_chunk`` and arm handling.
    """
    import jax
    import jax.numpy as jnp

    # The module, not the function: dcma_jax/__init__ rebinds the name ``simulate``.
    lib = importlib.import_module("dcma_jax.simulate")
    k = model.graph.num_mediators
    arms = arms.with_dtype(covariates.dtype)
    n_arms = arms.outcome.shape[0]
    size = min(chunk_size, num_draws)
    probs = weights / jnp.sum(weights)
    outcome, mediators, rows = jax.lax.map(
        lambda i: lib._chunk(
            model, params, jax.random.fold_in(key, i), covariates, probs, arms, size
        ),
        jnp.arange(-(-num_draws // size)),
    )
    outcome = jnp.moveaxis(outcome, 0, 1).reshape(n_arms, -1)[:, :num_draws]
    mediators = jnp.moveaxis(mediators, 0, 1).reshape(n_arms, -1, k)[:, :num_draws]
    return lib.Draws(outcome, mediators, rows.reshape(-1)[:num_draws])


@functools.cache
def _stacked_jitted():
    import jax

    return jax.jit(_simulate_stacked_impl, static_argnames=("model", "num_draws", "chunk_size"))


# --------------------------------------------------------------------------------------------
# section 1: simulate throughput and memory per size


def bench_sizes(sizes: list[int], params_path: str, log) -> list[str]:
    from dcma_jax.simulate import DEFAULT_CHUNK

    # Every (generator, size), then the stacked-output reference (the library before chunks were
    # written in place) for linear at the largest size (its memory story is the mdn's too: see
    # the XLA temp column).
    plan = [(gen, draws, "library") for gen in GENERATORS for draws in sizes]
    plan.append(("linear", max(sizes), "stacked"))
    rows = []
    for gen, draws, variant in plan:
        repeats, warmup = (MDN_REPEATS if gen == "mdn" else REPEATS)[draws]
        log(f"simulate {gen} {variant} {draws:.0e} draws ({repeats} repeats) ...")
        spec = {
            "gen": gen,
            "draws": draws,
            "chunk": DEFAULT_CHUNK,
            "repeats": repeats,
            "warmup": warmup,
            "params": params_path,
            "variant": variant,
        }
        try:
            res = _run_child(spec)
        except RuntimeError as err:  # the what-if uses library internals that may move
            if variant == "library":
                raise
            log(f"  what-if failed, skipped: {str(err).splitlines()[-1]}")
            continue
        wall, share = _median_share(res["times"])
        rows.append(
            [
                gen if variant == "library" else f"{gen} [before: stacked output]",
                f"{draws:.0e}",
                str(DEFAULT_CHUNK),
                str(repeats),
                _fmt_s(res["compile_s"]),
                _fmt_s(wall),
                _fmt_s(_median_cpu(res["times"])),
                _fmt_rate(draws / wall),
                _fmt_rate(NUM_ARMS * draws / wall),
                f"{share:.2f}",
                _rss_growth(res, "maxrss_first"),
                _rss_growth(res),
                f"{_output_bytes(draws) / MIB:.0f}",
                "n/a" if res["xla_temp"] is None else f"{res['xla_temp'] / MIB:.0f}",
            ]
        )
        log(f"  median {wall:.3g} s, cpu/wall {share:.2f}, RSS+ {rows[-1][10:12]} MiB")
    header = [
        "gen",
        "draws",
        "chunk",
        "reps",
        "compile s",
        "median s",
        "cpu s",
        "draws/s",
        "arm-draws/s",
        "cpu/wall",
        "RSS+ 1st",
        "RSS+ all",
        "output MiB",
        "XLA temp MiB",
    ]
    return _table(header, rows)


# --------------------------------------------------------------------------------------------
# section 2: chunk size at 1e6 draws, every generator


def bench_chunks(draws: int, params, params_path: str, rounds: int, log) -> list[str]:
    rows = []
    for gen in GENERATORS:
        rows += _chunk_rows(gen, draws, params, params_path, rounds, log)
    header = [
        "gen",
        "draws",
        "chunk",
        "rounds",
        "median s",
        "cpu s",
        "arm-draws/s",
        "cpu/wall",
        "RSS+ 1st",
        "XLA temp MiB",
    ]
    return _table(header, rows)


def _chunk_rows(gen: str, draws: int, params, params_path: str, rounds: int, log) -> list:
    """One generator's rows: memory from fresh processes, throughput interleaved here."""
    import jax

    from dcma_jax.simulate import simulate_packed

    _, model, covariates, weights, arms = _setup(gen)
    mem = {}
    for chunk in CHUNKS:
        log(f"{gen} chunk {chunk}: memory in a fresh process ...")
        mem[chunk] = _run_child(
            {
                "gen": gen,
                "draws": draws,
                "chunk": chunk,
                "repeats": 0,
                "warmup": 1,
                "params": params_path,
            }
        )
    compiled = {}
    for chunk in CHUNKS:
        log(f"{gen} chunk {chunk}: compile + warm-up ...")
        compiled[chunk] = simulate_packed.lower(
            model,
            params[gen],
            jax.random.key(0),
            covariates,
            weights,
            arms,
            num_draws=draws,
            chunk_size=chunk,
        ).compile()
        _timed(
            lambda c=compiled[chunk]: c(params[gen], jax.random.key(1), covariates, weights, arms)
        )
    samples: dict[int, list] = {c: [] for c in CHUNKS}
    for r in range(rounds):
        order = CHUNKS if r % 2 == 0 else CHUNKS[::-1]  # ABCD DCBA ABCD: drift cancels
        for chunk in order:
            samples[chunk].append(
                _timed(
                    lambda c=compiled[chunk], r=r: c(
                        params[gen], jax.random.key(10 + r), covariates, weights, arms
                    )
                )
            )
        log(f"  round {r + 1}/{rounds} done")
    rows = []
    for chunk in CHUNKS:
        wall, share = _median_share(samples[chunk])
        res = mem[chunk]
        rows.append(
            [
                gen,
                f"{draws:.0e}",
                str(chunk),
                str(rounds),
                _fmt_s(wall),
                _fmt_s(_median_cpu(samples[chunk])),
                _fmt_rate(NUM_ARMS * draws / wall),
                f"{share:.2f}",
                _rss_growth(res, "maxrss_first"),
                "n/a" if res["xla_temp"] is None else f"{res['xla_temp'] / MIB:.0f}",
            ]
        )
    return rows


# --------------------------------------------------------------------------------------------
# section 3: anatomy of one mdn simulate call, and what-if variants


def _dense_stack(variables, context, activation):
    """The MDN's MLP applied by hand (same parameters), with a chosen hidden activation."""
    layers = variables["params"]["net"]
    names = sorted(layers, key=lambda s: int(s.split("_")[-1]))
    h = context
    for i, name in enumerate(names):
        h = h @ layers[name]["kernel"] + layers[name]["bias"]
        if i < len(names) - 1:
            h = activation(h)
    return h


def _stage_chunk(model, params, key, covariates, probs, arms, size, stage):
    """One chunk of ``simulate``'s work up to ``stage``, reduced to ``(n_arms, size)``.

    Stages are cumulative: ``rows`` (covariate rows by ``choice(p)`` + gather, noise normals),
    ``rows_randint`` (the same with uniform ``randint`` rows), ``dense`` (+ both nodes' MLPs for
    every arm without the hidden activation), ``silu`` (+ the SiLU activations). The outcome's
    mediator input is a noise column standing in for the sampled mediator (same cost). Keys,
    chunking and contexts follow ``simulate._chunk``.
    """
    import jax
    import jax.numpy as jnp

    gens, graph = model.generators, model.graph
    row_key, *noise_keys = jax.random.split(key, 1 + len(gens))
    if stage == "rows_randint":
        rows = jax.random.randint(row_key, (size,), 0, covariates.shape[0])
    else:
        rows = jax.random.choice(row_key, covariates.shape[0], (size,), p=probs)
    x = covariates[rows]
    noise = [
        jax.random.normal(k, (size, g.noise_dim), x.dtype)
        for k, g in zip(noise_keys, gens, strict=True)
    ]
    base = x.sum(1) + sum(e.sum(1) for e in noise)
    if stage in ("rows", "rows_randint"):
        return jnp.broadcast_to(base, (arms.outcome.shape[0], size))
    activation = jax.nn.silu if stage == "silu" else (lambda h: h)

    def one_arm(arm):
        total = base
        for j in range(len(gens)):
            a = arm.outcome if j == graph.num_mediators else arm.mediators[0, j]  # chain 0
            context = graph.context(j, jnp.full((size,), a, x.dtype), noise[0][:, :1], x)
            out = _dense_stack(params[j], context, activation)
            # Reduced by a matvec: on XLA:CPU a reduce straight over a dot's output made the
            # dense layers ~2x slower than in simulate (measured), which would skew the stage.
            total = total + out @ jnp.ones((out.shape[-1],), out.dtype)
        return total

    return jax.vmap(one_arm)(arms)


def _simulate_stage(model, params, key, covariates, weights, arms, num_draws, chunk_size, stage):
    """``lax.map`` of :func:`_stage_chunk` over chunks, exactly as ``simulate`` maps ``_chunk``."""
    import jax
    import jax.numpy as jnp

    size = min(chunk_size, num_draws)
    probs = weights / jnp.sum(weights)
    return jax.lax.map(
        lambda i: _stage_chunk(
            model, params, jax.random.fold_in(key, i), covariates, probs, arms, size, stage
        ),
        jnp.arange(-(-num_draws // size)),
    )


def bench_anatomy(draws: int, params, rounds: int, log) -> list[str]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from dcma_jax.generators.base import apply_batched
    from dcma_jax.simulate import DEFAULT_CHUNK, simulate_packed

    gen = "mdn"
    _, model, covariates, weights, arms = _setup(gen)
    p = params[gen]
    size = DEFAULT_CHUNK
    key = jax.random.key(0)

    # sanity: the hand-written layer stack equals the module's own MLP
    ctx = jax.random.normal(key, (8, model.graph.context_dim(1, covariates.shape[1])))
    ref = apply_batched(model.generators[1], lambda self, c: self.net(c), p[1], ctx)
    np.testing.assert_allclose(
        np.asarray(_dense_stack(p[1], ctx, jax.nn.silu)), np.asarray(ref), rtol=1e-4, atol=1e-4
    )

    static = ("model", "num_draws", "chunk_size")

    # Without chain_index every arm draws its own mediator chain (the library before it drew
    # each distinct chain once): 4 mediator draws per draw instead of 2.
    own_chains = arms._replace(chain_index=None, representatives=None)
    arms_of = {"simulate, every arm draws its own chain [before]": own_chains}

    def compile_fn(fn, name=None, **extra):
        jitted = jax.jit(functools.partial(fn, **extra), static_argnames=static)
        arms_here = arms_of.get(name, arms)
        return jitted.lower(
            model, p, key, covariates, weights, arms_here, num_draws=draws, chunk_size=size
        ).compile()

    log("anatomy: compile ...")
    compiled = {
        "rows + noise [library: choice(p)]": compile_fn(_simulate_stage, stage="rows"),
        "rows + noise [what-if: randint, uniform weights only]": compile_fn(
            _simulate_stage, stage="rows_randint"
        ),
        "rows + noise + MLPs, dense layers only": compile_fn(_simulate_stage, stage="dense"),
        "rows + noise + MLPs with SiLU": compile_fn(_simulate_stage, stage="silu"),
        "simulate [library]": compile_fn(simulate_packed),
        "simulate, every arm draws its own chain [before]": compile_fn(
            simulate_packed, "simulate, every arm draws its own chain [before]"
        ),
    }
    lib = compiled["simulate [library]"](p, key, covariates, weights, arms)
    own = compiled["simulate, every arm draws its own chain [before]"](
        p, key, covariates, weights, own_chains
    )
    same = bool(
        jnp.array_equal(lib.outcome, own.outcome) and jnp.array_equal(lib.mediators, own.mediators)
    )
    log("anatomy: warm-up ...")
    arms_for = {name: arms_of.get(name, arms) for name in compiled}
    for name, c in compiled.items():
        _timed(lambda c=c, a=arms_for[name]: c(p, jax.random.key(1), covariates, weights, a))
    samples: dict[str, list] = {name: [] for name in compiled}
    names = list(compiled)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            samples[name].append(
                _timed(
                    lambda c=compiled[name], r=r, a=arms_for[name]: c(
                        p, jax.random.key(20 + r), covariates, weights, a
                    )
                )
            )
        log(f"  round {r + 1}/{rounds} done")
    med = {name: _median_share(s) for name, s in samples.items()}
    wall = {name: w for name, (w, _) in med.items()}
    cpu = {name: _median_cpu(s) for name, s in samples.items()}
    lib_name = "simulate [library]"
    rows = [
        [
            name,
            _fmt_s(wall[name]),
            _fmt_s(cpu[name]),
            f"{100 * wall[name] / wall[lib_name]:.0f}%",
            f"{100 * cpu[name] / cpu[lib_name]:.0f}%",
            f"{share:.2f}",
        ]
        for name, (_, share) in med.items()
    ]
    rows[-1][0] += f" (identical draws: {same})"
    rows_s, dense_s = "rows + noise [library: choice(p)]", "rows + noise + MLPs, dense layers only"
    silu_s = "rows + noise + MLPs with SiLU"
    derived = {  # differences of medians: attributions, not separate timings
        "=> covariate rows + noise": (rows_s, None),
        "=> MLP matmuls (dense - rows)": (dense_s, rows_s),
        "=> SiLU activations (silu - dense)": (silu_s, dense_s),
        "=> mixture sampling, causal order, output layout (library - silu)": (lib_name, silu_s),
        "=> saved by randint rows": (
            rows_s,
            "rows + noise [what-if: randint, uniform weights only]",
        ),
        "=> saved by drawing each distinct chain once": (
            "simulate, every arm draws its own chain [before]",
            lib_name,
        ),
    }
    for label, (a, b) in derived.items():
        dw = wall[a] - (wall[b] if b else 0.0)
        dc = cpu[a] - (cpu[b] if b else 0.0)
        rows.append(
            [
                label,
                _fmt_s(dw),
                _fmt_s(dc),
                f"{100 * dw / wall[lib_name]:.0f}%",
                f"{100 * dc / cpu[lib_name]:.0f}%",
                "",
            ]
        )
    n_chunks = -(-draws // size)
    header = [
        f"stage ({draws:.0e} draws = {n_chunks} chunks of {size}, 4 arms, lax.map like simulate)",
        "median s",
        "cpu s",
        "% wall",
        "% cpu",
        "cpu/wall",
    ]
    return _table(header, rows)


# --------------------------------------------------------------------------------------------
# section 4: bootstrap fits, vmapped vs loop


def bench_bootstrap(boot_sizes: list[int], config, log) -> list[str]:
    import jax
    import jax.numpy as jnp

    from dcma_jax.model import node_data
    from dcma_jax.training import fit_generator, fit_model_replicates, replicate_keys

    rows_out = []
    for gen in GENERATORS:
        data, model, *_ = _setup(gen)
        pairs = node_data(model, data)
        weights = jnp.asarray(data.weights, jnp.float32)
        n = data.n
        for B in boot_sizes:
            rows = jax.random.randint(jax.random.key(B), (B, n), 0, n)
            # (num_nodes, B): replicate b of node j uses keys[j, b] in both paths
            keys = replicate_keys(jax.random.key(3), len(model.generators), B)

            def vmapped(rows=rows, keys=keys, model=model, data=data):
                return fit_model_replicates(model, data, keys, rows, config)

            def loop(rows=rows, keys=keys, model=model, pairs=pairs, weights=weights, B=B):
                fits = []
                for b in range(B):
                    r = rows[b]
                    for j, (g, (x, c)) in enumerate(zip(model.generators, pairs, strict=True)):
                        fits.append(fit_generator(g, config, keys[j, b], x[r], c[r], weights[r]))
                return fits

            log(f"bootstrap {gen} B={B}: first vmapped call (compile + run) ...")
            first_v = _timed(vmapped)[0]
            # the loop's programs have the shapes of a full-data fit: warm them with one replicate
            _timed(functools.partial(loop, B=1))
            rounds = BOOT_ROUNDS.get(B, 2)
            sv, sl = [], []
            for r in range(rounds):  # alternate which path goes first: drift cancels
                pair = [(sv, vmapped), (sl, loop)]
                for store, fn in pair if r % 2 == 0 else pair[::-1]:
                    store.append(_timed(fn))
                log(f"  round {r + 1}/{rounds}: vmapped {sv[-1][0]:.3g} s, loop {sl[-1][0]:.3g} s")
            wv, share_v = _median_share(sv)
            wl, share_l = _median_share(sl)
            epochs = "closed form" if gen == "linear" else str(config.max_epochs)
            rows_out.append(
                [
                    gen,
                    str(B),
                    epochs,
                    str(rounds),
                    _fmt_s(first_v),
                    _fmt_s(wv),
                    _fmt_s(wl),
                    f"{wl / wv:.2f}x",
                    f"{_median_cpu(sl) / _median_cpu(sv):.2f}x",
                    f"{1e3 * wv / B:.3g}",
                    f"{1e3 * wl / B:.3g}",
                    f"{share_v:.2f}/{share_l:.2f}",
                ]
            )
    header = [
        "gen",
        "B",
        "epochs",
        "rounds",
        "vmap 1st s",
        "vmap s",
        "loop s",
        "loop/vmap",
        "same, cpu s",
        "vmap ms/rep",
        "loop ms/rep",
        "cpu/wall v/l",
    ]
    return _table(header, rows_out)


# --------------------------------------------------------------------------------------------
# section 5: the linear generator's closed-form solve


def bench_lstsq(log, repeats: int = 21) -> list[str]:
    """Weighted least squares of the outcome node: the library's closed form vs ``lstsq``.

    ``jnp.linalg.lstsq`` (SVD) was the library's solve until the normal equations replaced it;
    it stays here as the accuracy reference and as a guard against a slow solve coming back.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from dcma_jax.model import node_data

    data, model, *_ = _setup("linear")
    x, context = node_data(model, data)[-1]
    weights = jnp.asarray(data.weights, jnp.float32)
    generator = model.generators[-1]

    def design(context):
        return jnp.concatenate([context, jnp.ones((context.shape[0], 1), context.dtype)], 1)

    def lstsq(x, context, weights):
        root_w = jnp.sqrt(weights)[:, None]
        return jnp.linalg.lstsq(design(context) * root_w, x * root_w)[0][:, 0]

    def normal_equations(x, context, weights):
        weighted = design(context) * weights[:, None]
        return jnp.linalg.solve(weighted.T @ design(context), weighted.T @ x)[:, 0]

    def library_coef(x, context, weights):
        dense = generator.closed_form(x, context, weights)["params"]["linear"]
        return jnp.concatenate([dense["kernel"][:, 0], dense["bias"]])

    reference = "jnp.linalg.lstsq, SVD [reference]"
    variants = {
        "LinearGaussian.closed_form [library]": jax.jit(library_coef),
        reference: jax.jit(lstsq),
        "normal equations + jnp.linalg.solve": jax.jit(normal_equations),
    }
    coefs = {name: np.asarray(f(x, context, weights)) for name, f in variants.items()}
    samples: dict[str, list] = {name: [] for name in variants}
    log("closed-form solve ...")
    for r in range(repeats):
        for name in list(variants) if r % 2 == 0 else list(variants)[::-1]:
            samples[name].append(_timed(lambda f=variants[name]: f(x, context, weights)))
    rows = [
        [
            name,
            f"{1e3 * _median_share(samples[name])[0]:.3g}",
            f"{1e3 * _median_cpu(samples[name]):.3g}",
            f"{np.max(np.abs(coefs[name] - coefs[reference])):.2g}",
        ]
        for name in variants
    ]
    header = [
        f"solve ({data.n} x {context.shape[1] + 1} design, float32, one node)",
        "median ms",
        "cpu ms",
        "max |coef - lstsq coef|",
    ]
    return _table(header, rows)


# --------------------------------------------------------------------------------------------
# driver


def _code_version() -> str:
    """Git HEAD, whether the library differs from it, and short hashes of the timed modules."""
    import hashlib

    def git(*cmd: str) -> str:
        try:
            out = subprocess.run(
                ["git", *cmd], cwd=REPO, capture_output=True, text=True, check=False, timeout=10
            )
            return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "dcma_jax")
    hashes = " ".join(
        f"{name}:{hashlib.sha1((REPO / 'dcma_jax' / name).read_bytes()).hexdigest()[:8]}"
        for name in ("simulate.py", "arms.py", "training.py", "model.py", "graph.py")
        if (REPO / "dcma_jax" / name).exists()
    )
    state = f"dcma_jax/ has {len(dirty.splitlines())} uncommitted changes" if dirty else "clean"
    return f"HEAD {head} ({state}); {hashes}"


def _header(args, start_load) -> list[str]:
    import jax
    import jaxlib

    cpus = os.cpu_count() or 1
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cpus
    lines = [
        "dcma_jax core benchmark (CPU)",
        f"date      {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"host      {platform.node()} {platform.machine()} {platform.processor() or ''}".rstrip(),
        f"python    {platform.python_version()}  jax {jax.__version__}  "
        f"jaxlib {jaxlib.__version__}",
        f"devices   {jax.devices()}",
        f"cpus      os.cpu_count()={cpus}  usable={usable}",
        f"load avg  {start_load[0]:.2f} {start_load[1]:.2f} {start_load[2]:.2f} (1/5/15 min) "
        "at start",
        f"code      {_code_version()}",
        f"settings  {'--quick ' if args.quick else ''}{'--large ' if args.large else ''}"
        f"epochs={args.epochs}",
    ]
    if start_load[0] > 0.75 * usable:
        lines.append(
            f"WARNING   load average {start_load[0]:.1f} on {usable} cores: other processes "
            "compete for the CPUs; absolute times are inflated and noisy (see cpu/wall), "
            "interleaved comparisons remain meaningful."
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="draws <= 1e6, B in {1, 10}")
    parser.add_argument("--large", action="store_true", help="add 1e8 draws")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the text")
    parser.add_argument(
        "--epochs",
        type=int,
        default=20,
        help="fixed epochs of every mdn fit (max_epochs = patience)",
    )
    parser.add_argument(
        "--sections",
        default="sim,chunks,anatomy,boot,lstsq",
        help="comma-separated subset of sim,chunks,anatomy,boot,lstsq",
    )
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._child:
        result = _child(json.loads(args._child))
        print(CHILD_MARK + json.dumps(result), flush=True)
        return

    sections = set(args.sections.split(","))
    start_load = os.getloadavg()
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.0f}s] {msg}", file=sys.stderr, flush=True)

    import jax
    import numpy as np

    from dcma_jax.training import TrainConfig, fit_model

    if args.epochs < 1:
        parser.error("--epochs must be positive")
    # patience = max_epochs: every mdn fit runs exactly E epochs, in the loop and under vmap.
    config = TrainConfig(max_epochs=args.epochs, patience=args.epochs)
    sizes = [10**5, 10**6] + ([] if args.quick else [10**7]) + ([10**8] if args.large else [])
    boot_sizes = [1, 10] if args.quick else [1, 10, 100]

    report = _header(args, start_load)
    print("\n".join(report), flush=True)

    def emit(lines: list[str]) -> None:
        report.extend(lines)
        print("\n".join(lines), flush=True)

    # Fit once per generator. Parameter values do not change the cost of simulate. The config
    # is the bootstrap loop's, so this also compiles the loop path's fit_generator programs.
    params, fit_lines = {}, []
    for gen in GENERATORS:
        data, model, *_ = _setup(gen)
        log(f"fit_model {gen} ...")
        t0 = time.perf_counter()
        params[gen] = jax.block_until_ready(fit_model(model, data, jax.random.key(0), config)[0])
        wall = time.perf_counter() - t0
        fit_lines.append(
            f"fit_model {gen}: {wall:.3g} s first call (compile + fit), "
            f"{data.n} rows, {model.describe().replace(chr(10), '; ')}"
        )
    emit(["", *fit_lines])
    with tempfile.TemporaryDirectory() as tmp:
        params_path = os.path.join(tmp, "params.msgpack")
        _save_params(params_path, params)
        for gen, p in params.items():  # the children's copy is the fitted tree, exactly
            back = _load_params(params_path, gen)
            assert jax.tree.structure(back) == jax.tree.structure(p), gen
            assert all(
                np.array_equal(a, b)
                for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(p), strict=True)
            ), gen

        if "sim" in sections:
            emit(
                [
                    "",
                    "== 1. simulate: throughput and peak memory (default study, 4 natural-effect "
                    "arms, 1 mediator; fresh process per row) ==",
                ]
            )
            emit(bench_sizes(sizes, params_path, log))
        if "chunks" in sections:
            emit(
                [
                    "",
                    "== 2. chunk_size at 1e6 draws (linear and mdn): memory from fresh processes, "
                    "throughput interleaved in one process ==",
                ]
            )
            emit(bench_chunks(10**6, params, params_path, rounds=3, log=log))
    if "anatomy" in sections:
        emit(
            [
                "",
                "== 3. where one mdn simulate call spends its time (pieces timed separately, "
                "interleaved; what-ifs are prototypes in this file) ==",
            ]
        )
        emit(bench_anatomy(10**6, params, rounds=3, log=log))
    if "boot" in sections:
        emit(
            [
                "",
                f"== 4. bootstrap fits: fit_model_replicates (vmapped) vs a loop of "
                f"fit_generator per node and replicate; mdn runs exactly {args.epochs} epochs "
                "(patience = max_epochs), interleaved ==",
            ]
        )
        emit(bench_bootstrap(boot_sizes, config, log))
    if "lstsq" in sections:
        emit(
            [
                "",
                "== 5. linear generator's closed-form fit (every linear fit and bootstrap "
                "replicate runs it; binary GLMs run it in each of 50 IRLS steps), interleaved ==",
            ]
        )
        emit(bench_lstsq(log))
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


if __name__ == "__main__":
    main()
