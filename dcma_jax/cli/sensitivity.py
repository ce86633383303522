"""``dcma sensitivity``: effect curves over the sensitivity parameter rho, and breakpoints."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from dcma_jax.cli import args as flags
from dcma_jax.cli import steps
from dcma_jax.cli.args import UsageError, floats


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Adds ``dcma sensitivity`` and its flags."""
    from dcma_jax.sensitivity import DEFAULT_SENSITIVITY_DRAWS

    parser = commands.add_parser(
        "sensitivity",
        help="sensitivity of the effects to unmeasured mediator-outcome confounding (rho)",
        description=(
            "Correlate the mediator's and the outcome's structural noise by rho (a Gaussian "
            "copula; Imai, Keele & Yamamoto 2010 for linear models) and report every effect "
            "row over a grid of rho with bootstrap bands, d(effect)/d(rho), medsens' R-squared "
            "products, and the rho at which each estimate and CI bound crosses zero (Newton "
            "steps on the autodiff derivative). Fits like 'dcma run', or reads a model saved "
            "by 'dcma fit --save DIR' (--model DIR); nothing is refitted per rho."
        ),
    )
    parser.add_argument(
        "--model", metavar="DIR", default=None, help="a model saved by dcma fit (default: fit)"
    )
    flags.add_data_flags(parser)
    flags.add_model_flags(parser)
    flags.add_effect_flags(parser, seed=False)
    sens = parser.add_argument_group("sensitivity")
    sens.add_argument(
        "--rho-grid",
        metavar="START,STOP,NUM",
        default="-0.9,0.9,19",
        help="rho values: NUM evenly spaced from START to STOP, inside (-1, 1) "
        "(default: %(default)s)",
    )
    sens.add_argument(
        "--mediator",
        metavar="COL",
        default=None,
        help="the mediator whose noise is correlated with the outcome's (default: the last)",
    )
    flags.add_output_flags(parser)
    flags.add_debug_flag(parser)
    parser.set_defaults(execute=execute, draws=DEFAULT_SENSITIVITY_DRAWS, seed=None)


def rho_grid(text: str) -> np.ndarray:
    """``"START,STOP,NUM"`` -> the grid; one line naming the problem otherwise."""
    values = floats(text, "--rho-grid")
    if len(values) != 3 or values[2] != int(values[2]) or values[2] < 1:
        raise UsageError(
            f"--rho-grid: expected START,STOP,NUM with NUM a positive integer, got {text!r}"
        )
    start, stop, num = values[0], values[1], int(values[2])
    if not (-1.0 < start < 1.0 and -1.0 < stop < 1.0):
        raise UsageError(f"--rho-grid: rho must lie strictly between -1 and 1, got {text!r}")
    return np.round(np.linspace(start, stop, num), 10) + 0.0  # no -0.0


def execute(args: argparse.Namespace, out: steps.Out) -> None:
    """Runs ``dcma sensitivity``; ``out`` prints a line."""
    from dcma_jax.persistence import load
    from dcma_jax.plotting import save_sensitivity_figures

    grid = rho_grid(args.rho_grid)
    if args.model is not None:
        given = [f"--{f}" for f in flags.ROLE_FLAGS if getattr(args, f) is not None]
        if args.data is not None or given:
            raise UsageError("--model reads a saved model: give no --data or role flags")
        fitted = load(args.model)
        out(f"Model: {args.model}")
    else:
        data = steps.load_data(args)
        steps.describe_data(args, data, out)
        auto = args.generator == "auto"
        bar = steps.StageBar(steps.fit_stages(steps.bootstrap_count(args), args.block_size, auto))
        done = False
        try:
            fitted = steps.fit_from_args(args, data, bar.stage)
            done = True
        finally:
            bar.close(done)
    kwargs = steps.effect_kwargs(args, fitted.data)
    kwargs.pop("dose_grid")
    kwargs["bootstrap_draws"] = kwargs["bootstrap_draws"] or args.draws
    if args.seed is not None:
        kwargs["seed"] = args.seed
    bar = steps.StageBar(3 if fitted.bootstrap else 2)
    done = False
    try:
        result = fitted.sensitivity(
            rho_grid=grid, mediator=args.mediator, progress=bar.stage, **kwargs
        )
        done = True
    finally:
        bar.close(done)
    meta = result.meta
    out(
        f"Sensitivity to confounding of {meta['coupled_mediator']} and {meta['outcome']} "
        f"(R2 of the fitted models: mediator {meta['r2_mediator']:.3f}, outcome "
        f"{meta['r2_outcome']:.3f}); mean effects by rho:"
    )
    curve = result.curve[result.curve.functional == "mean"]
    wide = curve.pivot_table(index="rho", columns="effect", values="estimate", sort=False)
    out(wide.to_string(float_format=lambda v: f"{v:.3f}"))
    out("")
    found = result.breakpoints
    if len(found):
        out("Breakpoints (rho at which an estimate or a CI bound crosses zero):")
        shown = found.assign(level=found.level.map(lambda v: "" if np.isnan(v) else f"{v:g}"))
        out(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    else:
        out("Breakpoints: no estimate or CI bound crosses zero on the grid.")
    out("")
    json_path = Path(args.json) if args.json else Path(args.out) / "sensitivity.json"
    result.to_json(json_path)
    out(f"Wrote sensitivity JSON: {json_path}")
    if not args.no_plots:
        for path in save_sensitivity_figures(result, args.out):
            out(f"Wrote figure: {path}")
