"""Why vmapping bootstrap replicates does not speed up neural fits on CPU: one step's anatomy.

``fit_model_replicates`` trains B replicates under one ``vmap``; on this 2-core CPU that is no
faster than a loop of single fits (``bench_core.py`` section 4: 0.88-0.99x for mdn at B = 1-100,
fixed epochs). This benchmark takes one Adam step of the default study's mdn outcome node
(batch 256, the library's loss and optimiser settings) apart, for one replicate and for
``--replicates`` replicates under ``vmap`` (each with its own minibatch rows, as in the
bootstrap), each call running 20 steps in one ``lax.scan`` as the training loop does (so no
dispatch is timed), and reports milliseconds per step and replicate and the speed-up of
vmapping for:

* the dense layers alone: one ``(256, 64) @ (64, 64)`` matmul, and the same batched;
* the MLP forward and backward (a squared-output loss), the mdn loss forward and backward,
  and the whole step (loss, gradient, clipping, Adam);
* the 2048 x 2048 float32 matmul rate, as the machine's reference.

It also counts the step's dense-layer FLOPs (2 per multiply-add, forward and two backward
products) to give the share of the step the matmuls could take at the batched matmul rate.
Everything is jitted and compiled first, then timed round-robin (medians). Usage::

    python benchmarks/bench_boot_step.py                 # ~1 minute on 2 cores
    python benchmarks/bench_boot_step.py --replicates 25 --out /tmp/boot_step.txt
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import platform
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from _timing import Report, interleaved

import dcma_jax as dj
from dcma_jax.datasets import load_default_study
from dcma_jax.generators.base import init_params
from dcma_jax.model import build_model, node_data
from dcma_jax.training import _mean_loss

RESULTS = Path(__file__).resolve().parent / "results" / "boot_step_cpu.txt"
BATCH = 256
STEPS = 20  # steps a timed call runs in one lax.scan, as the training loop does

REPORT = Report()
say = REPORT.say


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    b = args.replicates
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    say(
        f"bench_boot_step.py  {stamp}  jax {jax.__version__}  {platform.machine()}  "
        f"{os.cpu_count()} CPUs  load avg {os.getloadavg()[0]:.1f}  replicates {b}"
    )
    data = load_default_study()
    model = build_model(data, "mdn")
    generator = model.generators[-1]
    x, context = node_data(model, data)[-1]
    key = jax.random.key(0)
    params = init_params(generator, key, context.shape[1])
    config = dj.TrainConfig()
    optimiser = optax.chain(
        optax.clip_by_global_norm(config.clip_norm), optax.adam(config.learning_rate)
    )
    ones = jnp.ones(BATCH)
    loss = functools.partial(_mean_loss, generator)

    def network(p, c):
        return generator.apply(p, c, method=lambda self, c: self.net(c))

    def mlp_grad(p, rows):
        return jax.grad(lambda q: jnp.sum(network(q, context[rows]) ** 2))(p)

    def loss_grad(p, rows):
        return jax.grad(loss)(p, x[rows], context[rows], ones, None)

    def scanned(gradient):
        """``STEPS`` gradients on successive minibatches in one ``lax.scan`` (no dispatch)."""

        def run(p, rows):
            def body(total, r):
                return total + sum(jnp.sum(g) for g in jax.tree.leaves(gradient(p, r))), None

            return jax.lax.scan(body, jnp.zeros(()), rows)[0]

        return run

    def steps(p, state, rows):
        """``STEPS`` Adam steps, as the training loop's ``lax.scan`` runs them."""

        def body(carry, r):
            p, state = carry
            grads = jax.grad(loss)(p, x[r], context[r], ones, None)
            updates, state = optimiser.update(grads, state, p)
            return (optax.apply_updates(p, updates), state), None

        return jax.lax.scan(body, (p, state), rows)[0]

    def matmuls(hs, w):
        """``STEPS`` products of different ``(256, 64)`` inputs with one ``(64, 64)`` kernel."""
        return jax.lax.scan(lambda acc, h: (acc + jnp.sum(h @ w), None), 0.0, hs)[0]

    def stack(tree):
        return jax.tree.map(lambda v: jnp.broadcast_to(v, (b, *v.shape)), tree)

    state = optimiser.init(params)
    row_keys = jax.random.split(jax.random.key(1), b * STEPS)
    rows_b = jax.vmap(lambda k: jax.random.permutation(k, data.n)[:BATCH])(row_keys)
    rows_b = rows_b.reshape(b, STEPS, BATCH)  # replicate b's minibatches
    rows_1 = rows_b[0]
    params_b, state_b = stack(params), stack(state)
    h_b = jax.random.normal(key, (b, STEPS, BATCH, 64))
    w_b = jax.random.normal(key, (b, 64, 64))
    h, w = h_b[0], w_b[0]
    big = jax.random.normal(key, (2048, 2048))
    stages = {
        "(256, 64) @ (64, 64) matmul": (
            (jax.jit(matmuls), h, w),
            (jax.jit(jax.vmap(matmuls)), h_b, w_b),
        ),
        "MLP forward + backward": (
            (jax.jit(scanned(mlp_grad)), params, rows_1),
            (jax.jit(jax.vmap(scanned(mlp_grad))), params_b, rows_b),
        ),
        "mdn loss forward + backward": (
            (jax.jit(scanned(loss_grad)), params, rows_1),
            (jax.jit(jax.vmap(scanned(loss_grad))), params_b, rows_b),
        ),
        "whole step (loss, gradient, clip, Adam)": (
            (jax.jit(steps), params, state, rows_1),
            (jax.jit(jax.vmap(steps)), params_b, state_b, rows_b),
        ),
    }
    calls = {"2048 matmul": (jax.jit(jnp.dot), big, big)}
    for name, (one, many) in stages.items():
        calls[f"{name} | 1"] = one
        calls[f"{name} | {b}"] = many
    t = interleaved(calls, args.repeats)
    peak = 2 * 2048**3 / t["2048 matmul"] / 1e9
    kernels = [v.shape for v in jax.tree.leaves(params["params"]["net"]) if v.ndim == 2]
    flops = 3 * sum(2 * BATCH * m * n for m, n in kernels)
    small = 2 * BATCH * 64 * 64
    say(f"2048 x 2048 float32 matmul: {peak:.1f} GFLOP/s")
    say(f"mdn outcome network: dense kernels {kernels}, {flops / 1e6:.2f} MFLOP per step")
    say()
    say(f"{'work, ms per step':<42} {'1 rep':>9} {f'vmap {b}, per rep':>16} {'speed-up':>9}")
    for name in stages:
        single, batched = t[f"{name} | 1"] / STEPS, t[f"{name} | {b}"] / (b * STEPS)
        say(f"{name:<42} {single * 1e3:>9.3f} {batched * 1e3:>16.3f} {single / batched:>9.2f}")
    rate_1 = STEPS * small / t["(256, 64) @ (64, 64) matmul | 1"] / 1e9
    rate_b = STEPS * b * small / t[f"(256, 64) @ (64, 64) matmul | {b}"] / 1e9
    whole = "whole step (loss, gradient, clip, Adam)"
    step_1, step_b = t[f"{whole} | 1"] / STEPS, t[f"{whole} | {b}"] / (b * STEPS)
    say()
    say(f"matmul rate: {rate_1:.1f} GFLOP/s one at a time, {rate_b:.1f} batched ({b})")
    say(
        f"the step's dense FLOPs at those rates: {flops / rate_1 / 1e6:.3f} ms and "
        f"{flops / rate_b / 1e6:.3f} ms, against whole steps of {step_1 * 1e3:.3f} ms (1) and "
        f"{step_b * 1e3:.3f} ms per replicate ({b}): the rest of the step, elementwise work "
        "that grows with the replicates, bounds what vmapping can gain"
    )
    say(f"load avg at the end {os.getloadavg()[0]:.1f}")
    REPORT.write(args.out)


if __name__ == "__main__":
    main()
