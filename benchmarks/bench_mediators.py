"""Cost of the Monte Carlo core with k = 1, 2, 4 sequential mediators (CPU by default).

For each k, a linear-Gaussian SCM with k chained mediators is fitted (linear generators: closed
form; mdn: 1 epoch, since the cost of simulate does not depend on parameter values), then three
ways of simulating are timed at the same number of draws per arm:

* natural: the 4 natural-effect arms, one chain (the pre-existing workload);
* interventional: the 3 joint + (k + 1) marginal arms, k chains, in ONE compiled call
  (``dj.simulate(..., arms=interventional_effects(names).arms)``, which stacks the
  :class:`~dcma_jax.arms.Arm` values with ``Arms.pack``: arms vmapped, common random numbers);
* per-arm: the same interventional arms, one ``simulate`` call per arm (what one call avoids;
  it also loses common random numbers). Each call packs its one arm; joint and marginal arms
  have different chain counts, so this path compiles twice.

Timing rules (shared/STYLE.md): a warm-up call compiles first (its time is reported as
``compile+1``), then ``block_until_ready`` medians over repeats.

    .venv/bin/python benchmarks/bench_mediators.py --quick   # 1e5 draws, linear only
    .venv/bin/python benchmarks/bench_mediators.py           # 1e6 draws, linear and mdn
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import dcma_jax as dj
from dcma_jax.estimands import interventional_effects, natural_effects

OUT = Path(__file__).parent / "results" / "mediators_cpu.txt"


def _data(k, n=2000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    a = (rng.uniform(size=n) < 0.5).astype(int)
    cols = {"X1": x[:, 0], "X2": x[:, 1], "A": a}
    prev = np.zeros(n)
    y = 0.5 * a + 0.2 * x[:, 0]
    for j in range(k):
        m = 0.5 * a + 0.5 * prev + 0.3 * x[:, 1] + rng.normal(size=n)
        cols[f"M{j + 1}"] = m
        y = y + 0.4 * m
        prev = m
    cols["Y"] = y + rng.normal(size=n)
    return dj.MediationData.from_dataframe(
        pd.DataFrame(cols),
        treatment="A",
        mediators=[f"M{j + 1}" for j in range(k)],
        outcome="Y",
        covariates=["X1", "X2"],
    )


def _time(fn, repeats):
    started = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - started
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - started)
    return first, statistics.median(times)


def _per_arm(sim, arms):
    return [sim(arms=a) for a in arms]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--generators", default=None, help="comma-separated (default: see mode)")
    parser.add_argument("--draws", type=int, default=None, help="draws per arm")
    args = parser.parse_args(argv)
    draws = args.draws or (100_000 if args.quick else 1_000_000)
    repeats = 3 if args.quick else 5
    generators = ("linear",) if args.quick else ("linear", "mdn")
    if args.generators:
        generators = tuple(args.generators.split(","))
    lines = [
        f"bench_mediators: {draws:,} draws per arm, median of {repeats}; "
        f"{platform.machine()} {jax.devices()[0].platform}, jax {jax.__version__}",
        f"{'gen':>6} {'k':>2} {'workload':>15} {'arms':>4} {'chains':>6} "
        f"{'compile+1 s':>11} {'median s':>9} {'Mdraws/s':>9}",
    ]
    print(lines[0], flush=True)
    for gen in generators:
        for k in (1, 2, 4):
            data = _data(k)
            model = dj.build_model(data, gen)
            params, _ = dj.fit_model(model, data, jax.random.key(0), dj.TrainConfig(max_epochs=1))
            x = jnp.asarray(data.covariates, jnp.float32)
            w = jnp.ones(data.n)
            key = jax.random.key(1)
            names = [f"M{j + 1}" for j in range(k)]
            nat = natural_effects(k).arms  # tuples of dcma_jax.Arm
            itv = interventional_effects(names).arms
            single = [(arm,) for arm in itv]
            sim = functools.partial(dj.simulate, model, params, key, x, w, num_draws=draws)
            cases = [
                ("natural", nat, functools.partial(sim, arms=nat)),
                ("interventional", itv, functools.partial(sim, arms=itv)),
                ("per-arm calls", itv, functools.partial(_per_arm, sim, single)),
            ]
            for name, arms, fn in cases:
                first, med = _time(fn, repeats)
                n_arms, chains = len(arms), max(len(a.chains) for a in arms)
                line = (
                    f"{gen:>6} {k:>2} {name:>15} {n_arms:>4} {chains:>6} {first:>11.2f} "
                    f"{med:>9.3f} {n_arms * draws / med / 1e6:>9.2f}"
                )
                lines.append(line)
                print(line, flush=True)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text("\n".join(lines) + "\n")  # kept current as rows arrive
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
