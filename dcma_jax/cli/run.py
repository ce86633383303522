"""``dcma run``: fit and query in one command (``dcma fit`` then ``dcma effects``)."""

from __future__ import annotations

import argparse

from dcma_jax.cli import args as flags
from dcma_jax.cli import steps


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Adds ``dcma run`` and its flags."""
    parser = commands.add_parser(
        "run",
        help="analyse a CSV file (or, without --data, the embedded default study)",
        description=(
            "Fit the mediation model, simulate the four arms Y(1,M(1)), Y(1,M(0)), Y(0,M(1)), "
            "Y(0,M(0)), and report TE, NDE_control/treated (R mediation: ADE) and "
            "NIE_control/treated (ACME) on the mean, quantiles, CDF points, Wasserstein-1, "
            "energy distance and KS; or, with --effects interventional, the interventional "
            "direct and per-mediator indirect effects (TE, IDE, IIE_<M>, IIE_dependence); "
            "and path-specific effects with --path-specific. "
            "Without --data the embedded default study is analysed "
            "(roles fixed: treatment A, mediator M, outcome Y, covariates X1, X2, site; "
            f"bootstrap {flags.DEFAULT_STUDY_BOOTSTRAP} by default) and the true effects are "
            "printed beside the estimates. Equals 'dcma fit ... --save DIR' followed by "
            "'dcma effects --model DIR ...'."
        ),
    )
    flags.add_data_flags(parser)
    flags.add_model_flags(parser)
    flags.add_crossfit_flags(parser)
    flags.add_effect_flags(parser, seed=False)
    flags.add_estimator_flags(parser)
    flags.add_output_flags(parser)
    flags.add_debug_flag(parser)
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace, out: steps.Out) -> None:
    """Runs ``dcma run``; ``out`` prints a line."""
    data = steps.load_data(args)
    kwargs = steps.effect_kwargs(args, data)
    default_study = args.data is None
    steps.describe_data(args, data, out)
    bootstrap = steps.bootstrap_count(args)
    auto, folds = args.generator == "auto", steps.crossfit_folds(args)
    total = steps.fit_stages(bootstrap, args.block_size, auto, folds)
    total += steps.effect_stages(
        bootstrap,
        default_study,
        not args.no_plots,
        kwargs["dose_grid"] is not None,
        args.estimator == "onestep",
    )
    bar = steps.StageBar(total)
    done = False
    try:
        fitted = steps.fit_from_args(args, data, bar.stage)
        result, figures = steps.effects_and_figures(args, fitted, kwargs, default_study, bar.stage)
        done = True
    finally:
        bar.close(done)
    steps.report(args, result, figures, default_study, out)
    seconds = fitted.report.seconds + result.meta["seconds"]
    out(f"Analysis time: {seconds:.1f} s (fit {fitted.report.seconds:.1f} s)")
