"""Throughput of the flow and diffusion generators, against flowjax, on this machine.

Measures, in one run:

* draws/second of the Monte Carlo core (``dcma_jax.simulate.simulate``) for a model with one
  continuous mediator and a continuous outcome, both modelled by ``SplineFlow`` (4 spline
  layers, width 64) or by ``Diffusion`` (default steps), at 1e5 and 1e6 draws (1e7 and the
  diffusion at 1e6 with ``--large``);
* the time of one training step (Adam, batch 256) of each generator;
* peak memory: ``resource.getrusage(RUSAGE_SELF).ru_maxrss``, the process's resident-set
  high-water mark. XLA allocates outside Python's allocator, so tracemalloc would not see it;
  because it is a high-water mark, each row reports the peak after the row and by how much
  the row raised it (0: the row fit under an earlier peak);
* the share of the machine's matmul FLOP rate (a 2048x2048 float32 ``jnp.dot`` measured in
  the same run) that the flow's context networks reach, counting 2 FLOPs per multiply-add of
  their dense layers (spline arithmetic, ~100 FLOPs a layer, is left out);
* the same-size conditional spline flow in flowjax (masked autoregressive flow with
  ``dim=1``: 4 layers of rational-quadratic splines with 8 bins on [-5, 5], one MLP of two
  hidden layers of width 64 a layer), timed interleaved with ours: sampling (noise ->
  sample, the work the Monte Carlo core does) and one training step; reported as
  our time / flowjax's time (below 1: ours is faster);
* the diffusion sampler's steps trade-off: a model fitted to a bimodal conditional, then
  sampled with 5..200 DDIM steps; KS distance to the 400-step sampler and to the truth.

Everything is compiled first and synchronised with ``block_until_ready``; times are medians
over repeats. Usage::

    python benchmarks/bench_flow.py            # ~4 minutes on 2 cores
    python benchmarks/bench_flow.py --large    # adds 1e7 flow draws and 1e6 diffusion draws

flowjax is a benchmark-only dependency (``pip install flowjax``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dcma_jax.arms import Arm
from dcma_jax.generators import Diffusion, SplineFlow, apply_batched, init_params
from dcma_jax.graph import CausalGraph
from dcma_jax.simulate import simulate
from dcma_jax.training import TrainConfig, fit_generator

try:
    from dcma_jax.model import Model
except ImportError:  # older layout: Model lived in simulate
    from dcma_jax.simulate import Model

RESULTS = Path(__file__).resolve().parent / "results" / "flow_cpu.txt"
LAYERS, WIDTH, DEPTH, BINS, BOUND = 4, 64, 2, 8, 5.0
NUM_COVARIATES = 2
TRAIN_BATCH = 256

_lines: list[str] = []


def say(line: str = "") -> None:
    print(line, flush=True)
    _lines.append(line)


def peak_rss_mib() -> float:
    """Process resident-set high-water mark in MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def median_time(fn, *args, repeats: int) -> float:
    """Median wall time of ``fn(*args)`` after one warm-up call (compilation)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def interleaved(fns: dict, repeats: int) -> dict[str, float]:
    """Median times of several zero-argument callables, run round-robin after a warm-up."""
    for fn in fns.values():
        jax.block_until_ready(fn())
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def perturbed(variables, seed: int, scale: float = 0.05):
    """Initial variables plus small noise, so no layer is the identity (as after training)."""
    leaves, tree = jax.tree.flatten(variables)
    rng = np.random.default_rng(seed)
    return jax.tree.unflatten(
        tree, [leaf + jnp.asarray(rng.normal(0, scale, leaf.shape), leaf.dtype) for leaf in leaves]
    )


def matmul_rate(repeats: int) -> float:
    a = jax.random.normal(jax.random.key(0), (2048, 2048), jnp.float32)
    dot = jax.jit(lambda m: jnp.dot(m, m))
    return 2 * 2048**3 / median_time(dot, a, repeats=repeats)


def flow_flops_per_sample(flow: SplineFlow, context_dim: int) -> int:
    """Dense-layer FLOPs of one sample: 2 per multiply-add of the context network(s).

    The networks read the context and its treatment interactions (``flow._features``).
    """
    per_layer_out = 3 * flow.num_bins - 1 + 2
    nets = 1 if flow.shared_conditioner else flow.num_layers
    out = per_layer_out * (flow.num_layers if flow.shared_conditioner else 1)
    width = flow.treatment_interactions or 0
    sizes = [context_dim + width * (context_dim - width), *flow.hidden, out]
    return nets * sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


# --------------------------------------------------------------------------------------------
# flowjax reference
# --------------------------------------------------------------------------------------------


def flowjax_flow(context_dim: int):
    try:
        import paramax
        from flowjax.bijections import RationalQuadraticSpline
        from flowjax.distributions import Normal
        from flowjax.flows import masked_autoregressive_flow
    except ImportError:
        sys.exit("bench_flow.py compares against flowjax: `pip install flowjax` (bench only)")
    flow = masked_autoregressive_flow(
        jax.random.key(0),
        base_dist=Normal(jnp.zeros(1)),
        transformer=RationalQuadraticSpline(knots=BINS, interval=BOUND),
        cond_dim=context_dim,
        flow_layers=LAYERS,
        nn_width=WIDTH,
        nn_depth=DEPTH,
        nn_activation=jax.nn.silu,
    )
    return flow, paramax


def compare_with_flowjax(repeats: int) -> None:
    import equinox as eqx

    context_dim = 1 + 1 + NUM_COVARIATES  # the outcome node: (a, m, x)
    fj, paramax = flowjax_flow(context_dim)
    fj_params, fj_static = eqx.partition(
        fj, eqx.is_inexact_array, is_leaf=lambda leaf: isinstance(leaf, paramax.NonTrainable)
    )
    ours = {
        "ours (shared MLP)": SplineFlow(num_layers=LAYERS),
        "ours (MLP a layer)": SplineFlow(num_layers=LAYERS, shared_conditioner=False),
    }
    our_vars = {
        name: perturbed(init_params(flow, jax.random.key(0), context_dim), 1)
        for name, flow in ours.items()
    }

    @eqx.filter_jit
    def fj_sample(params, z, c):
        dist = paramax.unwrap(eqx.combine(params, fj_static))
        return jax.vmap(dist.bijection.transform)(z, c)

    def our_sample(flow):
        return jax.jit(lambda v, z, c: apply_batched(flow, "sample", v, z, c))

    say(
        "Sampling, noise -> sample for one conditional flow node (context dim "
        f"{context_dim}), ns per sample, median of {repeats}; ratio = ours / flowjax"
    )
    say(
        f"{'draws':>9} {'flowjax':>10} {'ours shared':>12} {'ratio':>7} "
        f"{'ours per-layer':>15} {'ratio':>7}"
    )
    for n in (65_536, 1_000_000):
        z = jax.random.normal(jax.random.key(1), (n, 1))
        c = jax.random.normal(jax.random.key(2), (n, context_dim))
        fns = {"flowjax": lambda z=z, c=c: fj_sample(fj_params, z, c)}
        for name, flow in ours.items():
            fn = our_sample(flow)
            fns[name] = lambda fn=fn, v=our_vars[name], z=z, c=c: fn(v, z, c)
        t = interleaved(fns, repeats)
        ns = {k: v / n * 1e9 for k, v in t.items()}
        say(
            f"{n:>9,} {ns['flowjax']:>10.0f} {ns['ours (shared MLP)']:>12.0f} "
            f"{t['ours (shared MLP)'] / t['flowjax']:>7.2f} {ns['ours (MLP a layer)']:>15.0f} "
            f"{t['ours (MLP a layer)'] / t['flowjax']:>7.2f}"
        )

    # One Adam step of maximum likelihood on a batch.
    x = jax.random.normal(jax.random.key(3), (TRAIN_BATCH, 1))
    c = jax.random.normal(jax.random.key(4), (TRAIN_BATCH, context_dim))
    optimiser = optax.adam(1e-3)

    def fj_loss(params, x, c):
        dist = paramax.unwrap(eqx.combine(params, fj_static))
        return -jnp.mean(dist.log_prob(x, c))

    @eqx.filter_jit
    def fj_step(params, state, x, c):
        loss, grads = eqx.filter_value_and_grad(fj_loss)(params, x, c)
        updates, state = optimiser.update(grads, state, params)
        return eqx.apply_updates(params, updates), state, loss

    def our_step(flow):
        def loss(v, x, c):
            return jnp.mean(apply_batched(flow, "loss", v, x, c))

        @jax.jit
        def step(v, state, x, c):
            value, grads = jax.value_and_grad(loss)(v, x, c)
            updates, state = optimiser.update(grads, state, v)
            return optax.apply_updates(v, updates), state, value

        return step

    fj_state = optimiser.init(fj_params)
    fns = {"flowjax": lambda: fj_step(fj_params, fj_state, x, c)}
    for name, flow in ours.items():
        step, v = our_step(flow), our_vars[name]
        state = optimiser.init(v)
        fns[name] = lambda step=step, v=v, s=state: step(v, s, x, c)
    t = interleaved(fns, repeats * 10)
    say()
    say(f"Training step (Adam, batch {TRAIN_BATCH}), ms, median of {repeats * 10}")
    say(f"{'flowjax':>10} {'ours shared':>12} {'ratio':>7} {'ours per-layer':>15} {'ratio':>7}")
    say(
        f"{t['flowjax'] * 1e3:>10.2f} {t['ours (shared MLP)'] * 1e3:>12.2f} "
        f"{t['ours (shared MLP)'] / t['flowjax']:>7.2f} {t['ours (MLP a layer)'] * 1e3:>15.2f} "
        f"{t['ours (MLP a layer)'] / t['flowjax']:>7.2f}"
    )


# --------------------------------------------------------------------------------------------
# The Monte Carlo core
# --------------------------------------------------------------------------------------------


def mediation_model(generator) -> tuple[Model, tuple]:
    graph = CausalGraph.chain(["M"], ["continuous"], "Y", "continuous")
    model = Model(graph, (generator, generator), NUM_COVARIATES)
    # The model's generators: the flow's treatment interactions filled in for the graph.
    params = tuple(
        perturbed(init_params(g, jax.random.key(j), graph.context_dim(j, NUM_COVARIATES)), 10 + j)
        for j, g in enumerate(model.generators)
    )
    return model, params


def bench_simulate(sizes_flow, sizes_diffusion, gflops_matmul: float, repeats: int) -> None:
    covariates = jax.random.normal(jax.random.key(5), (1000, NUM_COVARIATES))
    weights = jnp.ones(1000)
    # The total-effect contrast Y(1,M(1)) vs Y(0,M(0)).
    arms = (Arm.joint("Y(1,M(1))", 1.0, (1.0,)), Arm.joint("Y(0,M(0))", 0.0, (0.0,)))
    say(
        f"Monte Carlo core: simulate(), mediator M and outcome Y, {len(arms)} arms; "
        "draws/s counts outcome draws over all arms"
    )
    say(
        f"{'generator':<22} {'draws/arm':>10} {'time s':>8} {'draws/s':>11} {'GFLOP/s':>8} "
        f"{'% matmul':>8} {'peak MiB':>9} {'+MiB':>6}"
    )
    rows = [(f"flow L={LAYERS} w={WIDTH}", SplineFlow(num_layers=LAYERS), n) for n in sizes_flow]
    rows += [(f"diffusion {Diffusion().num_steps} steps", Diffusion(), n) for n in sizes_diffusion]
    for label, generator, n in rows:
        model, params = mediation_model(generator)
        before = peak_rss_mib()
        reps = repeats if n <= 1_000_000 and isinstance(generator, SplineFlow) else 1
        t = median_time(
            lambda p, model=model, n=n: simulate(
                model, p, jax.random.key(6), covariates, weights, arms, n
            ),
            params,
            repeats=reps,
        )
        draws = n * len(arms)
        if isinstance(generator, SplineFlow):
            flops = draws * sum(
                flow_flops_per_sample(g, model.graph.context_dim(j, NUM_COVARIATES))
                for j, g in enumerate(model.generators)
            )
            rate = flops / t / 1e9
            share = f"{100 * rate / gflops_matmul:>7.1f}%"
            rate_s = f"{rate:>8.1f}"
        else:
            rate_s, share = f"{'':>8}", f"{'':>8}"
        after = peak_rss_mib()
        say(
            f"{label:<22} {n:>10,} {t:>8.2f} {draws / t:>11,.0f} {rate_s} {share} "
            f"{after:>9.0f} {after - before:>6.0f}"
        )


def bench_training_steps(repeats: int) -> None:
    say(
        f"Training step inside fit_generator's loop (Adam, batch {TRAIN_BATCH}); "
        "ms per step from a fit of fixed length"
    )
    n = 20 * TRAIN_BATCH
    rng = np.random.default_rng(0)
    context = jnp.asarray(rng.standard_normal((n, 3)), jnp.float32)
    x = jnp.asarray(rng.standard_normal((n, 1)), jnp.float32)
    weights = jnp.ones(n)
    for label, generator in (("flow", SplineFlow(num_layers=LAYERS)), ("diffusion", Diffusion())):
        config = TrainConfig(max_epochs=5, patience=100, batch_size=TRAIN_BATCH, val_fraction=0.2)
        steps = 5 * ((n - int(round(0.2 * n))) // TRAIN_BATCH)
        t = median_time(
            lambda key, g=generator, c=config: fit_generator(g, c, key, x, context, weights),
            jax.random.key(0),
            repeats=repeats,
        )
        say(f"  {label:<10} {t / steps * 1e3:8.2f} ms/step ({steps} steps, incl. validation)")


def bench_diffusion_steps() -> None:
    """Fit a diffusion model to a bimodal conditional; sample it with several step counts."""
    import scipy.stats

    rng = np.random.default_rng(0)
    n = 4000
    a = rng.integers(0, 2, n).astype(np.float32)
    cov = rng.standard_normal(n).astype(np.float32)

    def truth(a, cov, rng):
        sign = np.where(rng.random(a.shape) < 0.5, -1.0, 1.0)
        return 0.5 * a + 0.4 * cov + 1.2 * sign + 0.3 * rng.standard_normal(a.shape)

    m = truth(a, cov, rng).astype(np.float32)
    context = jnp.asarray(np.c_[a, cov])
    fitted, _ = fit_generator(
        Diffusion(),
        TrainConfig(max_epochs=80, patience=15),
        jax.random.key(0),
        jnp.asarray(m[:, None]),
        context,
        jnp.ones(n),
    )
    n_eval = 20_000
    c_eval = jnp.broadcast_to(jnp.array([1.0, 0.5]), (n_eval, 2))
    z = jax.random.normal(jax.random.key(1), (n_eval, 1))
    true = truth(np.ones(n_eval), np.full(n_eval, 0.5), np.random.default_rng(1))

    def draw(steps):
        model = Diffusion(num_steps=steps)
        fn = jax.jit(lambda v, z, c: apply_batched(model, "sample", v, z, c))
        t = median_time(fn, fitted, z, c_eval, repeats=2)
        return np.asarray(fn(fitted, z, c_eval))[:, 0], t

    reference = np.asarray(apply_batched(Diffusion(num_steps=400), "sample", fitted, z, c_eval))[
        :, 0
    ]
    say(
        "Diffusion steps trade-off: model fitted to a bimodal conditional (4000 rows); "
        f"{n_eval:,} draws at one context, same noise"
    )
    say(
        f"{'steps':>6} {'us/draw':>8} {'KS to 400 steps':>16} {'max |x - x_400|':>16} "
        f"{'KS to truth':>12}"
    )
    for steps in (5, 10, 20, 50, 100, 200):
        x, t = draw(steps)
        say(
            f"{steps:>6} {t / n_eval * 1e6:>8.2f} "
            f"{scipy.stats.ks_2samp(x, reference).statistic:>16.4f} "
            f"{np.max(np.abs(x - reference)):>16.4f} "
            f"{scipy.stats.ks_2samp(x, true).statistic:>12.4f}"
        )
    say(
        f"(KS distance between two independent samples of {n_eval:,} from one law: "
        f"~{1.36 * np.sqrt(2 / n_eval):.3f} at the 95% point)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true", help="add 1e7 flow / 1e6 diffusion draws")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    say(
        f"bench_flow.py  {datetime.datetime.now():%Y-%m-%d %H:%M}  jax {jax.__version__}  "
        f"{platform.processor() or platform.machine()}  {os.cpu_count()} CPUs  "
        f"backend {jax.default_backend()}  load avg {os.getloadavg()[0]:.1f}"
    )
    rate = matmul_rate(args.repeats)
    say(f"matmul 2048x2048 float32: {rate / 1e9:.1f} GFLOP/s")
    say()
    # The Monte Carlo core first, so that its peak-memory rows are not hidden under the
    # high-water mark of the unchunked 1e6-sample comparison below.
    sizes_flow = [100_000, 1_000_000] + ([10_000_000] if args.large else [])
    sizes_diffusion = [100_000] + ([1_000_000] if args.large else [])
    bench_simulate(sizes_flow, sizes_diffusion, rate / 1e9, args.repeats)
    say()
    compare_with_flowjax(args.repeats)
    say()
    bench_training_steps(args.repeats)
    say()
    bench_diffusion_steps()
    say(
        f"matmul rate re-measured at the end: {matmul_rate(args.repeats) / 1e9:.1f} GFLOP/s; "
        f"load avg {os.getloadavg()[0]:.1f}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(_lines) + "\n")
    print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
