"""Flags shared by the ``dcma`` sub-commands: parsing helpers and argument groups."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from dcma_jax.estimands import DEFAULT_QUANTILES
from dcma_jax.inference import DEFAULT_BLOCK_SIZE
from dcma_jax.queries import DEFAULT_BOOTSTRAP_DRAWS, DEFAULT_DRAWS
from dcma_jax.training import TrainConfig

#: Bootstrap replicates for the default study when ``--bootstrap`` is not given.
DEFAULT_STUDY_BOOTSTRAP = 50
DEFAULT_OUT = "dcma_output"
ROLE_FLAGS = ("treatment", "mediators", "outcome", "covariates", "types")
TREATMENT_TYPES = ("binary", "continuous", "categorical")


class UsageError(Exception):
    """A bad command line; reported as one ``dcma: error:`` line with exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` instead of printing usage and exiting."""

    def error(self, message: str) -> None:
        raise UsageError(message)


# --------------------------------------------------------------------------------------------
# Parsing of list-valued flags
# --------------------------------------------------------------------------------------------


def split(text: str, flag: str) -> list[str]:
    """``"a, b"`` -> ``["a", "b"]``; empty items are an error naming ``flag``."""
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise UsageError(
            f"{flag}: expected a comma-separated list without empty items, got {text!r}"
        )
    return items


def floats(text: str, flag: str) -> tuple[float, ...]:
    """A comma-separated list of finite numbers."""
    values = []
    for item in split(text, flag):
        try:
            value = float(item)
        except ValueError:
            raise UsageError(f"{flag}: {item!r} is not a number") from None
        if not np.isfinite(value):
            raise UsageError(f"{flag}: {item!r} is not a finite number")
        values.append(value)
    return tuple(values)


def column_types(text: str) -> dict[str, str]:
    """``"A=binary,M=count"`` -> ``{"A": "binary", "M": "count"}``."""
    kinds = ("binary", "continuous", "categorical", "count")
    mapping = {}
    for item in split(text, "--types"):
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


def parents(text: str, mediators: Sequence[str]) -> dict[str, list[str]]:
    """``"M2:M1;M3:M1,M2"`` -> ``{"M2": ["M1"], "M3": ["M1", "M2"]}`` (``M3:`` for none)."""
    mapping: dict[str, list[str]] = {}
    for item in text.split(";"):
        child, sep, names = item.partition(":")
        child = child.strip()
        if not sep or not child:
            raise UsageError(f"--parents: expected CHILD:PARENT[,PARENT...] items, got {item!r}")
        if child not in mediators:
            raise UsageError(
                f"--parents: {child!r} is not one of the mediators ({', '.join(mediators)})"
            )
        mapping[child] = [p.strip() for p in names.split(",") if p.strip()]
    return mapping


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def positive_int(text: str) -> int:
    """Integer >= 1 (an argparse type)."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    """Integer >= 0 (an argparse type)."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def probability(text: str) -> float:
    """Number strictly between 0 and 1 (an argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {value:g}")
    return value


# --------------------------------------------------------------------------------------------
# Argument groups
# --------------------------------------------------------------------------------------------


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    """``--data`` and the roles (``dcma run`` and ``dcma fit``)."""
    data = parser.add_argument_group("data and roles")
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
        choices=list(TREATMENT_TYPES),
        default="binary",
        help="type of the treatment: binary (two levels), continuous (arms at "
        "--treatment-values) or categorical (each level against --reference) "
        "(default: %(default)s)",
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
        help="override inferred column types; KIND is binary, continuous, categorical "
        "(covariates only) or count (mediators and the outcome: non-negative integers, "
        "modelled as negative-binomial counts). Default: inferred (two distinct values: "
        "binary; text covariates: one-hot; never count)",
    )


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """Generators, training and the bootstrap (``dcma run`` and ``dcma fit``)."""
    from dcma_jax.generators import registered_names

    model = parser.add_argument_group("model and bootstrap")
    model.add_argument(
        "--generator",
        choices=[*registered_names(), "auto"],
        default="mdn",
        help="generator family for every mediator and the outcome; auto: per node, the one of "
        "linear, mdn, flow with the lowest 5-fold cross-validated CRPS (a later one must win by "
        "more than a standard error), which fits each of them 5 more times (default: "
        "%(default)s)",
    )
    model.add_argument(
        "--link",
        choices=["logit", "probit"],
        default="logit",
        help="link of binary nodes fitted by a GLM (default: %(default)s)",
    )
    model.add_argument(
        "--max-epochs",
        type=positive_int,
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
    model.add_argument(
        "--bootstrap",
        type=nonnegative_int,
        default=None,
        metavar="B",
        help="bootstrap replicates (each refits every generator) for percentile intervals; "
        f"0 turns intervals off (default: 0 with --data, {DEFAULT_STUDY_BOOTSTRAP} for the "
        "default study)",
    )
    model.add_argument(
        "--block-size",
        type=positive_int,
        default=DEFAULT_BLOCK_SIZE,
        metavar="K",
        help="bootstrap replicates fitted together under one vmap, and checkpointed together "
        "by dcma fit --save (default: %(default)s)",
    )


def add_crossfit_flags(parser: argparse.ArgumentParser) -> None:
    """Cross-fitting of the one-step estimator's nuisances (``dcma run`` and ``dcma fit``)."""
    from dcma_jax.generators import registered_names

    group = parser.add_argument_group("one-step estimator: cross-fitting")
    group.add_argument(
        "--folds",
        type=nonnegative_int,
        default=None,
        metavar="K",
        help="also fit the one-step estimator's nuisances (every generator, a propensity "
        "model of the treatment and a classifier of it on the mediators) on each of K "
        "folds' complements, binary treatment only; 0: none (default: 5 with --estimator "
        "onestep, else 0)",
    )
    group.add_argument(
        "--propensity",
        choices=registered_names(),
        default="linear",
        help="family of the propensity model P(A=1|X) and of the classifier P(A=1|M,X): "
        "linear is a logistic GLM, mdn a Bernoulli MLP (default: %(default)s)",
    )
    group.add_argument(
        "--onestep-bootstrap",
        action="store_true",
        help="with --folds and --bootstrap: cross-fit every bootstrap resample too (B x K "
        "more fits of every node), so the one-step estimator's intervals are the bootstrap of "
        "the whole estimator (default: off, influence-function intervals)",
    )


def add_estimator_flags(parser: argparse.ArgumentParser) -> None:
    """Plug-in or one-step estimation (``dcma run`` and ``dcma effects``)."""
    from dcma_jax.robust import DEFAULT_DRAWS_PER_ROW, DENSITY_RATIOS

    group = parser.add_argument_group("one-step estimator")
    group.add_argument(
        "--estimator",
        choices=["plugin", "onestep"],
        default="plugin",
        help="plugin: effects of the simulated arms; onestep: mean, CDF and quantile rows by "
        "the cross-fitted one-step (multiply robust) estimator with influence-function "
        "intervals, distances plug-in; needs a binary treatment, natural effects and a model "
        "fitted with --folds (default: %(default)s)",
    )
    group.add_argument(
        "--density-ratio",
        choices=list(DENSITY_RATIOS),
        default="auto",
        help="one-step: the mediator density ratio from the generators' densities, from the "
        "classifier of A on (M, X), or auto (densities of closed-form mediator models, the "
        "classifier for neural ones) (default: %(default)s)",
    )
    group.add_argument(
        "--draws-per-row",
        type=positive_int,
        default=DEFAULT_DRAWS_PER_ROW,
        metavar="R",
        help="one-step: Monte Carlo draws per observed row for the outcome regressions "
        "(default: %(default)s)",
    )


def add_effect_flags(parser: argparse.ArgumentParser, *, seed: bool) -> None:
    """Effects, functionals, draws and intervals (``dcma run`` and ``dcma effects``)."""
    estimation = parser.add_argument_group("effects and uncertainty")
    estimation.add_argument(
        "--draws",
        type=positive_int,
        default=DEFAULT_DRAWS,
        metavar="N",
        help="Monte Carlo draws per arm for the estimates (default: %(default)s)",
    )
    estimation.add_argument(
        "--bootstrap-draws",
        type=positive_int,
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
        "--treatment-values",
        metavar="T,C",
        default=None,
        help="continuous treatment: the treated and control values contrasted, original units "
        "(default: the observed upper and lower quartiles)",
    )
    estimation.add_argument(
        "--reference",
        metavar="LEVEL",
        default=None,
        help="categorical treatment: the reference level (default: the first sorted level)",
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
        type=probability,
        default=0.95,
        metavar="L",
        help="coverage of the bootstrap intervals (default: %(default)s)",
    )
    if seed:
        estimation.add_argument(
            "--seed",
            type=int,
            default=None,
            metavar="S",
            help="simulation seed (default: the seed stored in the model, so the numbers "
            "equal those of dcma run with the fit's flags)",
        )


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """Where the JSON and figures go (``dcma run`` and ``dcma effects``)."""
    output = parser.add_argument_group("output")
    output.add_argument(
        "--out",
        metavar="DIR",
        default=DEFAULT_OUT,
        help="folder for effects.json and the figures (default: %(default)s)",
    )
    output.add_argument(
        "--json",
        metavar="PATH",
        default=None,
        help="where to write the effects as JSON (default: OUT/effects.json)",
    )
    output.add_argument("--no-plots", action="store_true", help="do not write the figures")


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """``--debug`` and ``--no-compilation-cache`` (every sub-command)."""
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show tracebacks of errors instead of one-line messages",
    )
    parser.add_argument(
        "--no-compilation-cache",
        action="store_true",
        help="do not use JAX's persistent compilation cache (default: on, in "
        "$DCMA_CACHE_DIR or ~/.cache/dcma_jax/jax; DCMA_COMPILATION_CACHE=0 also turns it off)",
    )
