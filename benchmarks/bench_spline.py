"""The flow's lean spline kernel against distrax's ``RationalQuadraticSpline``, on this machine.

Same layout on both sides: one monotone rational-quadratic spline per sample with ``K = 8``
bins on ``[-5, 5]``, identity tails (``boundary_slopes="identity"`` in distrax: end slopes 1,
identity outside), float32, and a different spline for every sample — in ``SplineFlow`` every
sample's spline parameters come from its own context — so each timing includes turning
unconstrained parameters into knots:

* **forward** (sampling): ``u -> (y, log s'(u))``. Ours: ``vmap`` over samples of
  ``spline_knots`` + ``rq_spline_forward``; distrax: ``RationalQuadraticSpline(params, -5, 5,
  boundary_slopes="identity").forward_and_log_det(u)`` on ``(n, 3K + 1)`` parameters (ours
  takes ``3K - 1``: its end slopes are fixed, so distrax's two end-slope parameters are unused).
* **inverse** (log-density): ``y -> (u, log-slope)`` the same way with
  ``rq_spline_inverse`` / ``inverse_and_log_det``. Also timed: our inverse before the
  ``b < 0`` root branch was added (``_inverse_single_root`` below, the previous kernel), to
  show what the accuracy fix costs.
* **kernel only**: both evaluation kernels on the same precomputed knots ``(n, K + 1)``
  (distrax's private scalar kernels, vectorised as its bijector does), separating the
  evaluation from the parametrisation; the max difference of their outputs is printed.

Every function is jitted and compiled first; calls are synchronised with
``block_until_ready`` and the variants are timed round-robin (interleaved), reporting medians
over repeats. ``os.getloadavg()`` is printed before and after. Usage::

    python benchmarks/bench_spline.py              # ~1.5 minutes on 2 cores
    python benchmarks/bench_spline.py --repeats 11 --out /tmp/spline.txt
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

import distrax
import jax
import jax.numpy as jnp
import numpy as np
from distrax._src.bijectors import rational_quadratic_spline as distrax_rqs

from dcma_jax.generators.flow import _bin, rq_spline_forward, rq_spline_inverse, spline_knots

RESULTS = Path(__file__).resolve().parent / "results" / "spline_distrax_cpu.txt"
BINS, BOUND = 8, 5.0
SIZES = (65_536, 1_000_000)

_lines: list[str] = []


def say(line: str = "") -> None:
    print(line, flush=True)
    _lines.append(line)


def interleaved(calls: dict[str, tuple], repeats: int) -> dict[str, float]:
    """Median times of ``fn(*args)`` for ``name: (fn, *args)``, round-robin after a warm-up."""
    for fn, *fn_args in calls.values():
        jax.block_until_ready(fn(*fn_args))
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, (fn, *fn_args) in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(*fn_args))
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def _inverse_single_root(y, x_knots, y_knots, slopes, bound):
    """The previous ``rq_spline_inverse``: the root ``2c / (-b - sqrt(disc))`` for every ``b``."""
    inside = jnp.abs(y) < bound
    yc = jnp.clip(y, -bound, bound)
    x0, w, y0, h, d0, d1 = _bin(yc, y_knots, x_knots, y_knots, slopes)
    s = h / w
    dy = yc - y0
    kappa = d0 + d1 - 2.0 * s
    a = h * (s - d0) + dy * kappa
    b = h * d0 - dy * kappa
    c = -s * dy
    disc = jnp.maximum(b * b - 4.0 * a * c, 0.0)
    xi = jnp.clip(2.0 * c / (-b - jnp.sqrt(disc)), 0.0, 1.0)
    xi1 = xi * (1.0 - xi)
    den = s + kappa * xi1
    deriv = s * s * (d1 * xi * xi + 2.0 * s * xi1 + d0 * (1.0 - xi) ** 2) / (den * den)
    return jnp.where(inside, x0 + xi * w, y), jnp.where(inside, jnp.log(deriv), 0.0)


def _ours(kernel):
    def run(raw, v):
        return jax.vmap(lambda r, a: kernel(a, *spline_knots(r, BINS, BOUND), BOUND))(raw, v)

    return jax.jit(run)


def _distrax_bijector(params):
    return distrax.RationalQuadraticSpline(params, -BOUND, BOUND, boundary_slopes="identity")


distrax_forward = jax.jit(lambda p, u: _distrax_bijector(p).forward_and_log_det(u))
distrax_inverse = jax.jit(lambda p, y: _distrax_bijector(p).inverse_and_log_det(y))
ours_forward = _ours(rq_spline_forward)
ours_inverse = _ours(rq_spline_inverse)
ours_inverse_old = _ours(_inverse_single_root)


@jax.jit
def ours_kernel(knots, u):
    return jax.vmap(lambda a, xk, yk, d: rq_spline_forward(a, xk, yk, d, BOUND))(u, *knots)


@jax.jit
def distrax_kernel(knots, u):
    return jnp.vectorize(
        distrax_rqs._rational_quadratic_spline_fwd, signature="(),(n),(n),(n)->(),()"
    )(u, *knots)


def inputs(n: int):
    rng = np.random.default_rng(n)
    free = rng.normal(0.0, 1.0, (n, 3 * BINS - 1)).astype(np.float32)
    # distrax's layout: K widths, K heights, K + 1 slopes; the end slopes are overridden by
    # boundary_slopes="identity", so they are padding here.
    widths, heights, inner = free[:, :BINS], free[:, BINS : 2 * BINS], free[:, 2 * BINS :]
    pad = np.zeros((n, 1), np.float32)
    params = np.concatenate([widths, heights, pad, inner, pad], axis=1)
    u = rng.normal(0.0, 2.0, n).astype(np.float32)  # ~1% outside [-5, 5]: the tails too
    return jnp.asarray(free), jnp.asarray(params), jnp.asarray(u)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=41)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    say(
        f"bench_spline.py  {datetime.datetime.now():%Y-%m-%d %H:%M}  jax {jax.__version__}  "
        f"distrax {distrax.__version__}  {platform.processor() or platform.machine()}  "
        f"{os.cpu_count()} CPUs  backend {jax.default_backend()}"
    )
    load = os.getloadavg()
    say(f"load avg at start (1, 5, 15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    say(
        f"One rational-quadratic spline per sample, K = {BINS} bins on [-{BOUND:g}, {BOUND:g}], "
        "identity tails, float32; parameters -> knots -> spline in every timing."
    )
    say(f"ns per sample, median of {args.repeats} interleaved repeats; ratio = distrax / ours")
    say()
    say(
        f"{'direction':<26} {'samples':>9} {'ours':>8} {'distrax':>8} {'ratio':>6} "
        f"{'ours, old inverse':>18}"
    )
    for n in SIZES:
        free, params, u = inputs(n)
        y = ours_forward(free, u)[0]
        calls = {
            "ours fwd": (ours_forward, free, u),
            "distrax fwd": (distrax_forward, params, u),
            "ours inv": (ours_inverse, free, y),
            "distrax inv": (distrax_inverse, params, y),
            "ours inv old": (ours_inverse_old, free, y),
        }
        t = {k: v / n * 1e9 for k, v in interleaved(calls, args.repeats).items()}
        say(
            f"{'forward (sampling)':<26} {n:>9,} {t['ours fwd']:>8.1f} {t['distrax fwd']:>8.1f} "
            f"{t['distrax fwd'] / t['ours fwd']:>6.2f}"
        )
        say(
            f"{'inverse (log-density)':<26} {n:>9,} {t['ours inv']:>8.1f} "
            f"{t['distrax inv']:>8.1f} {t['distrax inv'] / t['ours inv']:>6.2f} "
            f"{t['ours inv old']:>18.1f}"
        )

    say()
    say("Evaluation kernels only, on the same precomputed knots (n, K + 1)")
    say(f"{'samples':>9} {'ours':>8} {'distrax':>8} {'ratio':>6} {'max |y diff|':>13}")
    for n in SIZES:
        free, _, u = inputs(n)
        knots = jax.jit(jax.vmap(lambda r: spline_knots(r, BINS, BOUND)))(free)
        diff = float(jnp.max(jnp.abs(ours_kernel(knots, u)[0] - distrax_kernel(knots, u)[0])))
        calls = {"ours": (ours_kernel, knots, u), "distrax": (distrax_kernel, knots, u)}
        t = {k: v / n * 1e9 for k, v in interleaved(calls, args.repeats).items()}
        say(
            f"{n:>9,} {t['ours']:>8.1f} {t['distrax']:>8.1f} {t['distrax'] / t['ours']:>6.2f} "
            f"{diff:>13.2e}"
        )

    load = os.getloadavg()
    say()
    say(f"load avg at end (1, 5, 15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(_lines) + "\n")
    print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
