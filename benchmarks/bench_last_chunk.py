"""No wasted padding in the last chunk: a partial last chunk drawn at its own size, vs. the library.

Run from the repository root::

    .venv/bin/python benchmarks/bench_last_chunk.py [--out PATH] [--rounds R]

``simulate_packed`` draws ``ceil(num_draws / chunk_size)`` full chunks and trims the excess.
The prototype here (``_simulate_own_size``) draws the full chunks and then one last chunk of
the remaining draws, rounded up to ``REST_ALIGN`` (the first draws of a chunk's key do not
depend on its size, threefry being counter-based, and at an aligned size XLA's vector loops
compute them alike: the draws are the library's bit for bit, checked per row). Both are
compiled ahead of time and timed interleaved (ABBA...) in one process, on the default study's
4 natural-effect arms with randomly initialised generators. Writes
``benchmarks/results/last_chunk_cpu.txt``.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from pathlib import Path

import bench_core
from bench_core import REPO, _fmt_s, _table, _timed
from bench_gpu import _random_params

CASES = [("linear", 70_000), ("linear", 100_000), ("mdn", 70_000), ("mdn", 100_000)]
CASES += [("mdn", 1_000_000), ("flow", 100_000)]


REST_ALIGN = 128


def _simulate_own_size(model, params, key, covariates, weights, arms, num_draws, chunk_size):
    """``simulate_packed`` (one device) with the partial last chunk drawn at its own size."""
    import jax
    import jax.numpy as jnp

    from dcma_jax.simulate import Draws, _chunk

    k = model.graph.num_mediators
    dtype = covariates.dtype
    arms = arms.with_dtype(dtype)
    size = min(chunk_size, num_draws)
    n_full, rest = divmod(num_draws, size)
    probs = weights / jnp.sum(weights)

    def draw(i, size):
        return _chunk(model, params, jax.random.fold_in(key, i), covariates, probs, arms, size)

    outcome, mediators, rows = jax.lax.map(lambda i: draw(i, size), jnp.arange(n_full))
    n_arms = arms.outcome.shape[0]
    outcome = jnp.moveaxis(outcome, 0, 1).reshape(n_arms, -1)
    mediators = jnp.moveaxis(mediators, 0, 1).reshape(n_arms, -1, k)
    rows = rows.reshape(-1)
    if rest:
        last = draw(n_full, min(-(-rest // REST_ALIGN) * REST_ALIGN, size))
        outcome = jnp.concatenate([outcome, last[0]], axis=1)
        mediators = jnp.concatenate([mediators, last[1]], axis=1)
        rows = jnp.concatenate([rows, last[2]])
    return Draws(outcome[:, :num_draws], mediators[:, :num_draws], rows[:num_draws])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/last_chunk_cpu.txt")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    import jax
    import numpy as np

    from dcma_jax.simulate import DEFAULT_CHUNK, simulate_packed

    own_size = jax.jit(_simulate_own_size, static_argnames=("model", "num_draws", "chunk_size"))
    load = os.getloadavg()
    rows = []
    for family, draws in CASES:
        _, model, covariates, weights, arms = bench_core._setup(family)
        params = _random_params(model, 0)
        compiled, compile_s = {}, {}
        for name, fn in (("old", simulate_packed), ("new", own_size)):
            t0 = time.perf_counter()
            compiled[name] = fn.lower(
                model,
                params,
                jax.random.key(0),
                covariates,
                weights,
                arms,
                num_draws=draws,
                chunk_size=DEFAULT_CHUNK,
            ).compile()
            compile_s[name] = time.perf_counter() - t0
        run = {
            name: functools.partial(f, params, jax.random.key(1), covariates, weights, arms)
            for name, f in compiled.items()
        }
        same = all(np.array_equal(a, b) for a, b in zip(run["old"](), run["new"](), strict=True))
        samples = {"old": [], "new": []}
        for r in range(args.rounds):
            for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
                samples[name].append(_timed(run[name]))
        wall = {n: statistics.median(s[0] for s in v) for n, v in samples.items()}
        cpu = {n: statistics.median(s[1] for s in v) for n, v in samples.items()}
        size = min(DEFAULT_CHUNK, draws)
        full, rest = divmod(draws, size)
        computed_old = -(-draws // size) * size
        computed_new = full * size + (min(-(-rest // REST_ALIGN) * REST_ALIGN, size) if rest else 0)
        rows.append(
            [
                family,
                f"{draws:,}",
                f"{computed_old:,}",
                f"{computed_new:,}",
                _fmt_s(compile_s["old"]),
                _fmt_s(compile_s["new"]),
                _fmt_s(wall["old"]),
                _fmt_s(wall["new"]),
                f"{wall['old'] / wall['new']:.2f}x",
                f"{cpu['old'] / cpu['new']:.2f}x",
                "yes" if same else "NO",
            ]
        )
        print("  ".join(rows[-1]), flush=True)
    header = [
        "family",
        "draws",
        "computed old",
        "computed new",
        "compile old s",
        "compile new s",
        "old s",
        "new s",
        "old/new wall",
        "old/new cpu",
        "same draws",
    ]
    end = os.getloadavg()
    lines = [
        "Partial last chunk at its own size (new, prototype) vs. full and trimmed (old, library)",
        f"date {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {bench_core._code_version()}",
        f"chunk {DEFAULT_CHUNK}, REST_ALIGN {REST_ALIGN}, 4 arms, median of {args.rounds} "
        f"interleaved runs each; load avg {load[0]:.1f} at start, {end[0]:.1f} at end, "
        f"{os.cpu_count()} cpus",
        "",
        *_table(header, rows),
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
