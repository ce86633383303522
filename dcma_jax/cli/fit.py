"""``dcma fit``: fit the model once and save it (resumable)."""

from __future__ import annotations

import argparse

from dcma_jax.cli import args as flags
from dcma_jax.cli import steps


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Adds ``dcma fit`` and its flags."""
    parser = commands.add_parser(
        "fit",
        help="fit the model (and its bootstrap replicates) once and save it",
        description=(
            "Fit a conditional generator for every mediator and the outcome, and each "
            "bootstrap replicate, and save the fitted model to --save DIR (readable JSON spec "
            "plus msgpack arrays, no pickle). Replicates are fitted in blocks of --block-size "
            "and DIR is updated after each block: rerunning an interrupted or killed command "
            "with the same flags resumes after the last finished block and ends with exactly "
            "the numbers of an uninterrupted fit. Query the saved model with 'dcma effects "
            "--model DIR' and describe it with 'dcma info --model DIR'."
        ),
    )
    flags.add_data_flags(parser)
    flags.add_model_flags(parser)
    flags.add_crossfit_flags(parser)
    parser.add_argument(
        "--save",
        metavar="DIR",
        required=True,
        help="folder to save the fitted model to (new, empty, or an unfinished fit of the "
        "same data and flags, which is resumed)",
    )
    flags.add_debug_flag(parser)
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace, out: steps.Out) -> None:
    """Runs ``dcma fit``; ``out`` prints a line."""
    data = steps.load_data(args)
    steps.describe_data(args, data, out)
    auto = args.generator == "auto"
    folds = steps.crossfit_folds(args)
    bar = steps.StageBar(
        steps.fit_stages(steps.bootstrap_count(args), args.block_size, auto, folds)
    )
    done = False
    try:
        fitted = steps.fit_from_args(args, data, bar.stage, checkpoint=args.save)
        done = True
    finally:
        bar.close(done)
    out("Model graph:")
    out("\n".join(f"  {line}" for line in fitted.model.describe().splitlines()))
    out("")
    if fitted.report.selection:
        out("\n".join([*steps.selection_lines(fitted.describe()["generator_selection"]), ""]))
    out(f"Saved the fitted model: {args.save} ({fitted.bootstrap} bootstrap replicates)")
    out(f"Fit time: {fitted.report.seconds:.1f} s")
