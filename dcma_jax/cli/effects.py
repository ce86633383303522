"""``dcma effects``: query a saved model (no refit)."""

from __future__ import annotations

import argparse

from dcma_jax.cli import args as flags
from dcma_jax.cli import steps


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Adds ``dcma effects`` and its flags."""
    parser = commands.add_parser(
        "effects",
        help="effects, intervals and figures from a saved model (no refit)",
        description=(
            "Load a model saved by 'dcma fit --save DIR' and report the same table, JSON and "
            "figures as 'dcma run', with intervals from its stored bootstrap replicates; "
            "nothing is refitted. With the seed stored in the model (the default), the numbers "
            "equal those 'dcma run' prints for the fit's flags and these."
        ),
    )
    parser.add_argument(
        "--model", metavar="DIR", required=True, help="folder written by dcma fit --save"
    )
    flags.add_effect_flags(parser, seed=True)
    flags.add_estimator_flags(parser)
    flags.add_output_flags(parser)
    flags.add_debug_flag(parser)
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace, out: steps.Out) -> None:
    """Runs ``dcma effects``; ``out`` prints a line."""
    from dcma_jax.persistence import load

    fitted = load(args.model)
    kwargs = steps.effect_kwargs(args, fitted.data)
    if args.seed is not None:
        kwargs["seed"] = args.seed
    default_study = steps.is_default_study(fitted.data)
    out(f"Model: {args.model}")
    out(fitted.data.summary())
    out("")
    total = steps.effect_stages(
        fitted.bootstrap,
        default_study,
        not args.no_plots,
        kwargs["dose_grid"] is not None,
        args.estimator == "onestep",
    )
    bar = steps.StageBar(total)
    done = False
    try:
        result, figures = steps.effects_and_figures(args, fitted, kwargs, default_study, bar.stage)
        done = True
    finally:
        bar.close(done)
    steps.report(args, result, figures, default_study, out)
    out(f"Query time: {result.meta['seconds']:.1f} s")
