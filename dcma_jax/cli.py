"""The ``dcma`` command: distributional mediation analysis of a CSV file from the shell.

``dcma run`` reads a CSV, fits a conditional generator for every mediator and the outcome,
simulates the interventional arms and prints the effects table; it writes the table as JSON and
two figures. Without ``--data`` it analyses the embedded default study and prints the true
effects beside the estimates. See ``docs/cli.md`` for the full reference.

Every user error (bad data, bad flags, a missing file, a diverged fit) ends the command with
one line ``dcma: error: ...`` on stderr and exit status 2; ``--debug`` shows the traceback.

Example:
    $ dcma run --data study.csv --treatment A --mediators M --outcome Y --covariates X1,X2
"""

from __future__ import annotations

import argparse
import inspect
import sys
import textwrap
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from dcma_jax.data import DataError
from dcma_jax.estimands import DEFAULT_QUANTILES
from dcma_jax.inference import DEFAULT_BOOTSTRAP_DRAWS, analyze
from dcma_jax.training import TrainConfig, TrainingError

__all__ = ["DEFAULT_STUDY_BOOTSTRAP", "main"]

#: Bootstrap replicates for the default study when ``--bootstrap`` is not given.
DEFAULT_STUDY_BOOTSTRAP = 50
#: Monte Carlo draws behind the default study's true effects (None: the study's default).
TRUTH_DRAWS: int | None = None

_DEFAULT_OUT = "dcma_output"
_DEFAULT_DRAWS = inspect.signature(analyze).parameters["num_draws"].default
_ROLE_FLAGS = ("treatment", "mediators", "outcome", "covariates", "types")
_TREATMENT_TYPES = ("binary", "continuous", "categorical")


class UsageError(Exception):
    """A bad command line; reported as one ``dcma: error:`` line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` instead of printing usage and exiting."""

    def error(self, message: str) -> None:
        raise UsageError(message)


# --------------------------------------------------------------------------------------------
# Parsing of list-valued flags
# --------------------------------------------------------------------------------------------


def _split(text: str, flag: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise UsageError(
            f"{flag}: expected a comma-separated list without empty items, got {text!r}"
        )
    return items


def _floats(text: str, flag: str) -> tuple[float, ...]:
    values = []
    for item in _split(text, flag):
        try:
            value = float(item)
        except ValueError:
            raise UsageError(f"{flag}: {item!r} is not a number") from None
        if not np.isfinite(value):
            raise UsageError(f"{flag}: {item!r} is not a finite number")
        values.append(value)
    return tuple(values)


def _types(text: str) -> dict[str, str]:
    kinds = ("binary", "continuous", "categorical")
    mapping = {}
    for item in _split(text, "--types"):
        column, sep, kind = item.partition("=")
        column, kind = column.strip(), kind.strip()
        if not sep or not column or not kind:
            raise UsageError(f"--types: expected COL=KIND, got {item!r}")
        if kind not in kinds:
            raise UsageError(
                f"--types: unknown kind {kind!r} for column {column!r}; "
                f"use one of {', '.join(kinds)}"
            )
        mapping[column] = kind
    return mapping


def _parents(text: str, mediators: Sequence[str]) -> dict[str, list[str]]:
    """``"M2:M1;M3:M1,M2"`` -> ``{"M2": ["M1"], "M3": ["M1", "M2"]}`` (``M3:`` for none)."""
    mapping: dict[str, list[str]] = {}
    for item in text.split(";"):
        child, sep, parents = item.partition(":")
        child = child.strip()
        if not sep or not child:
            raise UsageError(f"--parents: expected CHILD:PARENT[,PARENT...] items, got {item!r}")
        if child not in mediators:
            raise UsageError(
                f"--parents: {child!r} is not one of the mediators ({', '.join(mediators)})"
            )
        mapping[child] = [p.strip() for p in parents.split(",") if p.strip()]
    return mapping


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {value:g}")
    return value


# --------------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``dcma`` argument parser (generator choices are read from the registry now)."""
    from dcma_jax import __version__
    from dcma_jax.generators import registered_names

    parser = _Parser(
        prog="dcma",
        description=(
            "Distributional causal mediation analysis: learn a conditional generator for every "
            "mediator and the outcome, simulate the interventional outcome distributions "
            "Y(a, M(a')), and report direct and indirect effects on means, quantiles, CDFs and "
            "distances."
        ),
        epilog="Run 'dcma run --help' for the analysis options.",
    )
    parser.add_argument("--version", action="version", version=f"dcma_jax {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    run = commands.add_parser(
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
            f"(roles fixed: treatment A, mediator M, outcome Y, covariates X1, X2, site; "
            f"bootstrap {DEFAULT_STUDY_BOOTSTRAP} by default) and the true effects are printed "
            "beside the estimates."
        ),
    )
    data = run.add_argument_group("data and roles")
    data.add_argument(
        "--data",
        metavar="CSV",
        help="CSV file with one row per unit (default: the embedded default study)",
    )
    data.add_argument(
        "--treatment",
        metavar="COL",
        help="treatment column: binary, or as --treatment-type says (required with --data)",
    )
    data.add_argument(
        "--mediators",
        metavar="COL[,COL...]",
        help="mediator column(s) in causal order, comma-separated (required with --data)",
    )
    data.add_argument("--outcome", metavar="COL", help="outcome column (required with --data)")
    data.add_argument(
        "--covariates",
        metavar="COL[,COL...]",
        help="pre-treatment covariate columns, comma-separated (default: none)",
    )
    data.add_argument(
        "--treatment-type",
        choices=list(_TREATMENT_TYPES),
        default="binary",
        help="type of the treatment: binary (two levels), continuous (arms at "
        "--treatment-values) or categorical (each level against --reference) "
        "(default: %(default)s)",
    )
    data.add_argument(
        "--treatment-values",
        metavar="T,C",
        default=None,
        help="continuous treatment: the treated and control values contrasted, original units "
        "(default: the observed upper and lower quartiles)",
    )
    data.add_argument(
        "--reference",
        metavar="LEVEL",
        default=None,
        help="categorical treatment: the reference level (default: the first sorted level)",
    )
    structure = data.add_mutually_exclusive_group()
    structure.add_argument(
        "--parents",
        metavar="M:P[,P];...",
        default=None,
        help="mediator parents among earlier mediators, e.g. 'M2:M1' or 'M3:M1;M2:' "
        "(default: every earlier mediator is a parent; unnamed mediators keep that)",
    )
    structure.add_argument(
        "--parallel",
        action="store_true",
        help="parallel mediators: no mediator is a parent of another (default: off)",
    )
    data.add_argument(
        "--types",
        metavar="COL=KIND[,...]",
        help="override inferred column types; KIND is binary, continuous or categorical "
        "(categorical for covariates only). Default: inferred (two distinct values: binary; "
        "text covariates: one-hot)",
    )

    model = run.add_argument_group("model")
    model.add_argument(
        "--generator",
        choices=registered_names(),
        default="mdn",
        help="generator family for every mediator and the outcome (default: %(default)s)",
    )
    model.add_argument(
        "--link",
        choices=["logit", "probit"],
        default="logit",
        help="link of binary nodes fitted by a GLM (default: %(default)s)",
    )
    model.add_argument(
        "--max-epochs",
        type=_positive_int,
        default=None,
        metavar="E",
        help="most training epochs of neural generators; early stopping usually ends sooner "
        f"(default: {TrainConfig().max_epochs})",
    )
    model.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="S",
        help="the one seed all randomness derives from (default: %(default)s)",
    )

    estimation = run.add_argument_group("effects and uncertainty")
    estimation.add_argument(
        "--draws",
        type=_positive_int,
        default=_DEFAULT_DRAWS,
        metavar="N",
        help="Monte Carlo draws per arm for the estimates (default: %(default)s)",
    )
    estimation.add_argument(
        "--bootstrap",
        type=_nonnegative_int,
        default=None,
        metavar="B",
        help="bootstrap replicates for percentile intervals; 0 turns intervals off "
        f"(default: 0 with --data, {DEFAULT_STUDY_BOOTSTRAP} for the default study)",
    )
    estimation.add_argument(
        "--bootstrap-draws",
        type=_positive_int,
        default=None,
        metavar="N",
        help="Monte Carlo draws per arm in each bootstrap replicate "
        f"(default: min(--draws, {DEFAULT_BOOTSTRAP_DRAWS}))",
    )
    estimation.add_argument(
        "--effects",
        choices=["natural", "interventional"],
        default="natural",
        help="natural: TE, NDE, NIE with the mediators as one block; interventional: TE, IDE, "
        "IIE per mediator and IIE_dependence (default: %(default)s)",
    )
    estimation.add_argument(
        "--path-specific",
        metavar="EXPR",
        action="append",
        default=None,
        help="a nested counterfactual such as 'Y(1,M1(0),M2(1,M1(0)))', reported as PSE[...] "
        "against --path-reference; repeat for several; refused when not identified "
        "(default: none)",
    )
    estimation.add_argument(
        "--path-reference",
        metavar="EXPR",
        default=None,
        help="reference of the path-specific contrasts (default: Y(control), everything "
        "under the control value)",
    )
    estimation.add_argument(
        "--dose-grid",
        metavar="a[,a...]",
        default=None,
        help="continuous treatment: values at which to report the mean dose-response "
        "E[Y(a, M(a'))] and local direct/indirect effects (autodiff) in the JSON "
        "(default: none)",
    )
    estimation.add_argument(
        "--quantiles",
        metavar="q[,q...]",
        default=",".join(f"{q:g}" for q in DEFAULT_QUANTILES),
        help="quantile levels in (0, 1) for quantile effects (default: %(default)s)",
    )
    estimation.add_argument(
        "--cdf-points",
        metavar="t[,t...]",
        default=None,
        help="outcome values t (original units) for CDF effects P(Y <= t) "
        "(default: the observed outcome quartiles; 0 for a binary outcome)",
    )
    estimation.add_argument(
        "--ci-level",
        type=_probability,
        default=0.95,
        metavar="L",
        help="coverage of the bootstrap intervals (default: %(default)s)",
    )

    output = run.add_argument_group("output")
    output.add_argument(
        "--out",
        metavar="DIR",
        default=_DEFAULT_OUT,
        help="folder for effects.json and the figures (default: %(default)s)",
    )
    output.add_argument(
        "--json",
        metavar="PATH",
        default=None,
        help="where to write the effects as JSON (default: OUT/effects.json)",
    )
    output.add_argument("--no-plots", action="store_true", help="do not write the figures")
    output.add_argument(
        "--debug",
        action="store_true",
        help="show tracebacks of errors instead of one-line messages",
    )
    return parser


# --------------------------------------------------------------------------------------------
# Progress bar (CLI only; the library reports stages through a callback and prints nothing)
# --------------------------------------------------------------------------------------------


class _StageBar:
    """A tqdm bar over analysis stages on stderr; its clock ticks while a stage runs."""

    def __init__(self, total: int):
        from tqdm import tqdm

        # disable=None: off when stderr is not a terminal (logs, CI, captured output).
        self._bar = tqdm(
            total=total,
            file=sys.stderr,
            disable=None,
            unit="stage",
            leave=True,
            bar_format="{desc:<44} {bar} {n_fmt}/{total_fmt} [{elapsed}]",
        )
        self._started = False
        self._stop = threading.Event()
        self._ticker = None
        if not self._bar.disable:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self._bar.refresh()

    def stage(self, description: str) -> None:
        if self._started:
            self._bar.update(1)
        self._started = True
        self._bar.set_description_str(description)

    def close(self, done: bool) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if done:
            self._bar.update(self._bar.total - self._bar.n)
            self._bar.set_description_str("done")
        self._bar.close()


# --------------------------------------------------------------------------------------------
# The run command
# --------------------------------------------------------------------------------------------


def _load(args: argparse.Namespace, types: dict[str, str] | None):
    from dcma_jax.data import MediationData
    from dcma_jax.datasets import DEFAULT_STUDY, load_default_study

    if args.data is None:
        given = [f"--{flag}" for flag in _ROLE_FLAGS if getattr(args, flag) is not None]
        if given:
            raise UsageError(
                f"{', '.join(given)} {'requires' if len(given) == 1 else 'require'} --data; "
                f"without --data the embedded default study "
                f"runs with fixed roles (treatment {DEFAULT_STUDY.treatment}, mediator "
                f"{', '.join(DEFAULT_STUDY.mediators)}, outcome {DEFAULT_STUDY.outcome}, "
                f"covariates {', '.join(DEFAULT_STUDY.covariates)})"
            )
        return load_default_study()
    missing = [f"--{f}" for f in ("treatment", "mediators", "outcome") if getattr(args, f) is None]
    if missing:
        raise UsageError(f"--data needs {', '.join(missing)}")
    mediators = _split(args.mediators, "--mediators")
    covariates = _split(args.covariates, "--covariates") if args.covariates else []
    types = dict(types or {})
    declared = types.setdefault(args.treatment, args.treatment_type)
    if declared != args.treatment_type:
        raise UsageError(
            f"--types gives treatment column {args.treatment!r} the kind {declared!r} but "
            f"--treatment-type is {args.treatment_type!r}"
        )
    return MediationData.from_csv(
        args.data,
        treatment=args.treatment,
        mediators=mediators,
        outcome=args.outcome,
        covariates=covariates,
        types=types,
    )


def _truth(data, quantiles, cdf_points, distances, curve_levels, **effect_args):
    """True effects of the default study: the table's rows and the quantile curves."""
    from dcma_jax.datasets import DEFAULT_STUDY
    from dcma_jax.estimands import FunctionalSpec
    from dcma_jax.inference import build_estimands
    from dcma_jax.model import build_model

    levels = sorted({round(float(q), 10) for q in (*quantiles, *curve_levels)})
    spec = FunctionalSpec(tuple(levels), tuple(cdf_points), tuple(distances))
    estimands = build_estimands(data, build_model(data, "linear"), **effect_args)
    draws = {} if TRUTH_DRAWS is None else {"num_draws": TRUTH_DRAWS}
    truth = DEFAULT_STUDY.true_effects(estimands, spec, **draws)
    curves = {
        c.name: np.array([truth[(c.name, "quantile", round(float(q), 10))] for q in curve_levels])
        for c in estimands.contrasts
    }
    return truth, curves


def _num(value: float) -> str:
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def _fmt_ci(result, effect: str, functional: str, level: float | None) -> str:
    table = result.table
    mask = (table.effect == effect) & (table.functional == functional)
    mask &= table.level.isna() if level is None else np.isclose(table.level, level)
    row = table[mask].iloc[0]
    parts = []
    if np.isfinite(row["ci_low"]) and np.isfinite(row["ci_high"]):
        ci = f"{result.meta['ci_level']:.0%} CI {_num(row['ci_low'])} to {_num(row['ci_high'])}"
        parts.append(ci)
    if "truth" in row and np.isfinite(row["truth"]):
        parts.append(f"true {_num(row['truth'])}")
    return _num(row["estimate"]) + (f" ({'; '.join(parts)})" if parts else "")


def mean_only_note(result, effect: str = "NIE_treated") -> str | None:
    """One line contrasting ``effect``'s mean with its tail-quantile and W1 values (or None)."""
    table = result.table
    rows = table[table.effect == effect]
    quantiles = rows[rows.functional == "quantile"].level.to_numpy()
    if rows.empty or quantiles.size < 2 or "wasserstein" not in set(rows.functional):
        return None
    low, high = float(quantiles.min()), float(quantiles.max())
    mean = _fmt_ci(result, effect, "mean", None)
    q_low = _fmt_ci(result, effect, "quantile", low)
    q_high = _fmt_ci(result, effect, "quantile", high)
    w1 = _fmt_ci(result, effect, "wasserstein", None)
    mean_value = abs(result.estimate(effect, "mean"))
    if mean_value < 0.25 * result.estimate(effect, "wasserstein"):
        verdict = "the mediated effect moves the outcome's spread, not its mean"
    else:
        verdict = "the mean shows only part of how the mediated effect moves the outcome"
    return (
        f"What a mean-only analysis misses: the mean indirect effect {effect} is {mean}, "
        f"yet at the {low:g} quantile it is {q_low} and at the {high:g} quantile {q_high}, "
        f"and the Wasserstein-1 distance between its arms is {w1}: {verdict}."
    )


def _run(args: argparse.Namespace, out: Callable[[str], None]) -> None:
    quantiles = _floats(args.quantiles, "--quantiles")
    bad = [q for q in quantiles if not 0.0 < q < 1.0]
    if bad:
        raise UsageError(f"--quantiles: levels must lie strictly between 0 and 1, got {bad[0]:g}")
    cdf_points = _floats(args.cdf_points, "--cdf-points") if args.cdf_points else None
    types = _types(args.types) if args.types else None
    treatment_values = (
        _floats(args.treatment_values, "--treatment-values") if args.treatment_values else None
    )
    if treatment_values is not None and len(treatment_values) != 2:
        raise UsageError(f"--treatment-values: expected T,C, got {args.treatment_values!r}")
    if treatment_values is not None and args.treatment_type != "continuous":
        raise UsageError("--treatment-values needs --treatment-type continuous")
    if args.reference is not None and args.treatment_type != "categorical":
        raise UsageError("--reference needs --treatment-type categorical")
    dose_grid = _floats(args.dose_grid, "--dose-grid") if args.dose_grid else None
    if dose_grid is not None and args.treatment_type != "continuous":
        raise UsageError("--dose-grid needs --treatment-type continuous")

    from dcma_jax.datasets import DEFAULT_STUDY
    from dcma_jax.functionals import DISTANCE_FUNCTIONALS
    from dcma_jax.inference import CURVE_LEVELS, default_cdf_points
    from dcma_jax.plotting import save_figures

    default_study = args.data is None
    data = _load(args, types)
    parents = None
    if args.parallel:
        parents = "parallel"
    elif args.parents is not None:
        parents = _parents(args.parents, data.mediator_names)
    effect_args = dict(
        effects=args.effects,
        treatment_values=treatment_values,
        reference=args.reference,
        path_specific=args.path_specific,
        path_reference=args.path_reference,
    )
    bootstrap = args.bootstrap
    if bootstrap is None:
        bootstrap = DEFAULT_STUDY_BOOTSTRAP if default_study else 0
    if cdf_points is None:
        cdf_points = default_cdf_points(data)
    config = TrainConfig() if args.max_epochs is None else TrainConfig(max_epochs=args.max_epochs)
    out_dir = Path(args.out)
    json_path = Path(args.json) if args.json else out_dir / "effects.json"

    if default_study:
        out("Default study (embedded, 2,000 rows; see dcma_jax/datasets/default_study.py):")
        out(
            textwrap.fill(
                DEFAULT_STUDY.description, 96, initial_indent="  ", subsequent_indent="  "
            )
        )
    else:
        out(f"Data: {args.data}")
    out(data.summary())
    out("")

    stages = 2 + (2 if bootstrap else 0) + (1 if default_study else 0) + (0 if args.no_plots else 1)
    stages += 1 if dose_grid is not None else 0
    bar = _StageBar(stages)
    done = False
    try:
        result = analyze(
            data,
            generators=args.generator,
            link=args.link,
            num_draws=args.draws,
            bootstrap=bootstrap,
            bootstrap_draws=args.bootstrap_draws,
            quantiles=quantiles,
            cdf_points=cdf_points,
            ci_level=args.ci_level,
            config=config,
            seed=args.seed,
            progress=bar.stage,
            parents=parents,
            dose_grid=dose_grid,
            **effect_args,
        )
        truth_curves = None
        if default_study:
            bar.stage("computing true effects")
            truth, truth_curves = _truth(
                data, quantiles, cdf_points, DISTANCE_FUNCTIONALS, CURVE_LEVELS, **effect_args
            )
            result = result.with_truth(truth)
        figures = []
        if not args.no_plots:
            bar.stage("drawing figures")
            figures = save_figures(result, out_dir, truth_curves=truth_curves)
        done = True
    finally:
        bar.close(done)

    out("Model graph:")
    out("\n".join(f"  {line}" for line in result.meta["graph"]))
    out("")
    interval = (
        f"{bootstrap} bootstrap replicates, {args.ci_level:.0%} percentile intervals"
        if bootstrap
        else "no intervals (--bootstrap 0)"
    )
    out(
        f"Effects ({args.generator} generators, {args.draws:,} draws per arm, {interval}"
        + ("; truth = true value under the study's structural model" if default_study else "")
        + "):"
    )
    out(result.format_table())
    out("")
    dose = result.meta.get("dose_response")
    if dose:
        how = "autodiff" if dose["method"] == "autodiff" else "finite differences"
        out(f"Local effects per unit of treatment (derivatives by {how}, at a = a'):")
        for i, a in enumerate(dose["grid"]):
            direct, indirect = dose["local_direct"][i], dose["local_indirect"][i]
            out(f"  a = {a:g}: direct {direct:.3f}, indirect {indirect:.3f}")
        out("")
    if default_study:
        note = mean_only_note(result)
        if note:
            out(note)
            out("")
    result.to_json(json_path)
    out(f"Wrote effects JSON: {json_path}")
    for path in figures:
        out(f"Wrote figure: {path}")
    out(f"Analysis time: {result.meta['seconds']:.1f} s")


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, KeyError) and exc.args:  # KeyError quotes its message
        text = str(exc.args[0])
    first = text.splitlines()[0] if text else type(exc).__name__
    return first


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``dcma`` command line; returns the exit status (0 ok, 2 user error).

    Args:
      argv: arguments without the program name (default: ``sys.argv[1:]``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    user_errors = (UsageError, DataError, ValueError, TrainingError, OSError)
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit_:  # --help and --version
            return int(exit_.code or 0)
        if args.command is None:
            raise UsageError("choose a command: run (see 'dcma --help')")
        _run(args, print)
        return 0
    except KeyboardInterrupt:
        print("dcma: interrupted", file=sys.stderr)
        return 130
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
