"""The ``dcma`` command: distributional mediation analysis of a CSV file from the shell.

Sub-commands, one module each:

* ``dcma run`` (:mod:`.run`): fit and report effects in one go; without ``--data`` the
  embedded default study, with the true effects beside the estimates;
* ``dcma fit`` (:mod:`.fit`): fit once (bootstrap included) and save the model, resumably;
* ``dcma effects`` (:mod:`.effects`): the same report as ``run`` from a saved model, no refit;
* ``dcma info`` (:mod:`.info`): describe a saved model;
* ``dcma sensitivity`` (:mod:`.sensitivity`): effect curves over the sensitivity parameter
  ``rho`` (unmeasured mediator–outcome confounding), with bands and breakpoints.

Every user error (bad data, bad flags, a missing or corrupted model, a diverged fit; see
:mod:`dcma_jax.errors`) ends the command with one line ``dcma: error: ...`` on stderr and exit
status 2; anything else is an internal error, ``dcma: internal error: ...`` and exit status 1.
``--debug`` shows the traceback. Ctrl-C ends any command within about a second with
``dcma: interrupted`` and exit status 130 (see :mod:`dcma_jax.interrupts`). See
``docs/cli.md`` for the full reference.

Example:
    $ dcma fit --data study.csv --treatment A --mediators M --outcome Y --bootstrap 200 --save m
    $ dcma effects --model m --quantiles 0.1,0.5,0.9
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dcma_jax.cli import cache, effects, fit, info, run, sensitivity
from dcma_jax.cli.args import DEFAULT_STUDY_BOOTSTRAP, Parser, UsageError
from dcma_jax.data import DataError
from dcma_jax.errors import ArgumentError
from dcma_jax.interrupts import run_interruptible
from dcma_jax.paths import PathSpecificError
from dcma_jax.persistence import ModelFileError
from dcma_jax.training import TrainingError

__all__ = ["DEFAULT_STUDY_BOOTSTRAP", "build_parser", "main"]

COMMANDS = (run, fit, effects, info, sensitivity)


def build_parser() -> Parser:
    """The ``dcma`` argument parser; each sub-command module adds its own parser."""
    from dcma_jax import __version__

    parser = Parser(
        prog="dcma",
        description=(
            "Distributional causal mediation analysis: learn a conditional generator for every "
            "mediator and the outcome, simulate the interventional outcome distributions "
            "Y(a, M(a')), and report direct and indirect effects on means, quantiles, CDFs and "
            "distances."
        ),
        epilog="Run 'dcma COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"dcma_jax {__version__}")
    parser.set_defaults(no_compilation_cache=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, KeyError) and exc.args:  # KeyError quotes its message
        text = str(exc.args[0])
    return text.splitlines()[0] if text else type(exc).__name__


def _main(argv: list[str]) -> int:
    debug = "--debug" in argv
    user_errors = (
        UsageError,
        ArgumentError,
        DataError,
        PathSpecificError,
        ModelFileError,
        TrainingError,
        OSError,
    )
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit_:  # --help and --version
            return int(exit_.code or 0)
        if args.command is None:
            names = ", ".join(c.__name__.rpartition(".")[2] for c in COMMANDS)
            raise UsageError(f"choose a command: {names} (see 'dcma --help')")
        if cache.enabled(args.no_compilation_cache):
            cache.enable()
        args.execute(args, print)
        return 0
    except user_errors as exc:
        if debug:
            raise
        print(f"dcma: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug, not a user error: still one line, with a pointer
        if debug:
            raise
        print(
            f"dcma: internal error: {type(exc).__name__}: {_one_line(exc)} "
            "(rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``dcma`` command line; returns the exit status (0 ok, 2 user error).

    Ctrl-C (or SIGTERM) ends the process itself, with status 130 (143), from any stage.

    Args:
      argv: arguments without the program name (default: ``sys.argv[1:]``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_interruptible(lambda: _main(argv))
