"""The steps the ``dcma`` sub-commands share: load data, fit, query effects, report.

``dcma run`` is :func:`fit_from_args` then :func:`effects_from_args` then :func:`report`;
``dcma fit`` is the first (with a checkpoint folder), ``dcma effects`` the other two on a
loaded model, so ``run`` prints exactly what ``fit`` + ``effects`` print.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dcma_jax.cli.args import (
    DEFAULT_STUDY_BOOTSTRAP,
    ROLE_FLAGS,
    UsageError,
    column_types,
    floats,
    parents,
    split,
)
from dcma_jax.data import MediationData
from dcma_jax.fitted import FittedMediation, fit
from dcma_jax.inference import block_ranges
from dcma_jax.results import MediationResult
from dcma_jax.robust import DEFAULT_FOLDS
from dcma_jax.training import TrainConfig

#: Monte Carlo draws behind the default study's true effects (None: the study's default).
TRUTH_DRAWS: int | None = None

Out = Callable[[str], None]


# --------------------------------------------------------------------------------------------
# Progress bar (CLI only; the library reports stages through a callback and prints nothing)
# --------------------------------------------------------------------------------------------


class StageBar:
    """A tqdm bar over stages on stderr; its clock ticks while a stage runs."""

    def __init__(self, total: int):
        from tqdm import tqdm

        # disable=None: off when stderr is not a terminal (logs, CI, captured output).
        self._bar = tqdm(
            total=total,
            file=sys.stderr,
            disable=None,
            unit="stage",
            leave=True,
            bar_format="{desc:<48} {bar} {n_fmt}/{total_fmt} [{elapsed}]",
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


def fit_stages(bootstrap: int, block_size: int, auto: bool = False, folds: int = 0) -> int:
    """Progress stages of a fit: selection (auto), point fit, bootstrap blocks, cross-fitting."""
    blocks = len(block_ranges(bootstrap, block_size)) if bootstrap else 0
    return int(auto) + 1 + blocks + bool(folds)


def effect_stages(
    bootstrap: int, default_study: bool, plots: bool, dose: bool, onestep: bool = False
) -> int:
    """Progress stages of an effects query (arms, replicates, one-step, diagnostics), report."""
    return 2 + bool(bootstrap) + default_study + plots + dose + onestep


# --------------------------------------------------------------------------------------------
# Data and fitting
# --------------------------------------------------------------------------------------------


def load_data(args: argparse.Namespace) -> MediationData:
    """The ``--data`` CSV with its roles, or the embedded default study."""
    from dcma_jax.datasets import DEFAULT_STUDY, load_default_study

    if args.data is None:
        given = [f"--{flag}" for flag in ROLE_FLAGS if getattr(args, flag) is not None]
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
    mediators = split(args.mediators, "--mediators")
    covariates = split(args.covariates, "--covariates") if args.covariates else []
    types = column_types(args.types) if args.types else {}
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


def is_default_study(data: MediationData) -> bool:
    """Whether ``data`` is the embedded default study (whose true effects are known)."""
    from dcma_jax.datasets import load_default_study

    study = load_default_study()
    same_roles = (
        data.treatment_var == study.treatment_var
        and data.mediator_vars == study.mediator_vars
        and data.outcome_var == study.outcome_var
        and data.covariate_names == study.covariate_names
    )
    fields = ("treatment", "mediators", "outcome", "covariates", "weights")
    return same_roles and all(np.array_equal(getattr(data, f), getattr(study, f)) for f in fields)


def describe_data(args: argparse.Namespace, data: MediationData, out: Out) -> None:
    """Prints where the data come from and their summary."""
    from dcma_jax.datasets import DEFAULT_STUDY

    if args.data is None:
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


def bootstrap_count(args: argparse.Namespace) -> int:
    """``--bootstrap``, or its default: 0 for user data, 50 for the default study."""
    if args.bootstrap is not None:
        return args.bootstrap
    return DEFAULT_STUDY_BOOTSTRAP if args.data is None else 0


def fit_from_args(
    args: argparse.Namespace,
    data: MediationData,
    progress: Callable[[str], None],
    checkpoint: str | None = None,
) -> FittedMediation:
    """:func:`dcma_jax.fit` with the fit flags of ``dcma run`` / ``dcma fit``."""
    structure = None
    if args.parallel:
        structure = "parallel"
    elif args.parents is not None:
        structure = parents(args.parents, data.mediator_names)
    config = TrainConfig() if args.max_epochs is None else TrainConfig(max_epochs=args.max_epochs)
    return fit(
        data,
        generators=args.generator,
        link=args.link,
        parents=structure,
        config=config,
        bootstrap=bootstrap_count(args),
        seed=0 if args.seed is None else args.seed,  # dcma sensitivity defaults it to None
        block_size=args.block_size,
        checkpoint=checkpoint,
        crossfit=crossfit_folds(args),
        propensity=getattr(args, "propensity", "linear"),
        crossfit_bootstrap=getattr(args, "onestep_bootstrap", False),
        progress=progress,
    )


def crossfit_folds(args: argparse.Namespace) -> int:
    """``--folds``, or its default: 5 when ``--estimator onestep`` asks for them, else 0."""
    folds = getattr(args, "folds", None)
    if folds is not None:
        if folds == 1:
            raise UsageError("--folds: cross-fitting needs at least 2 folds (0: none)")
        return folds
    return DEFAULT_FOLDS if getattr(args, "estimator", "plugin") == "onestep" else 0


# --------------------------------------------------------------------------------------------
# Effects and the report
# --------------------------------------------------------------------------------------------


def effect_kwargs(args: argparse.Namespace, data: MediationData) -> dict:
    """Keyword arguments of :meth:`FittedMediation.effects` from the effect flags."""
    from dcma_jax.queries import default_cdf_points

    quantiles = floats(args.quantiles, "--quantiles")
    bad = [q for q in quantiles if not 0.0 < q < 1.0]
    if bad:
        raise UsageError(f"--quantiles: levels must lie strictly between 0 and 1, got {bad[0]:g}")
    kind = data.treatment_var.kind
    treatment_values = None
    if args.treatment_values:
        treatment_values = floats(args.treatment_values, "--treatment-values")
        if len(treatment_values) != 2:
            raise UsageError(f"--treatment-values: expected T,C, got {args.treatment_values!r}")
        if kind != "continuous":
            raise UsageError("--treatment-values needs a continuous treatment (--treatment-type)")
    if args.reference is not None and kind != "categorical":
        raise UsageError("--reference needs a categorical treatment (--treatment-type)")
    dose_grid = floats(args.dose_grid, "--dose-grid") if args.dose_grid else None
    if dose_grid is not None and kind != "continuous":
        raise UsageError("--dose-grid needs a continuous treatment (--treatment-type)")
    cdf_points = floats(args.cdf_points, "--cdf-points") if args.cdf_points else None
    return dict(
        effects=args.effects,
        treatment_values=treatment_values,
        reference=args.reference,
        path_specific=args.path_specific,
        path_reference=args.path_reference,
        quantiles=quantiles,
        cdf_points=cdf_points if cdf_points is not None else default_cdf_points(data),
        num_draws=args.draws,
        bootstrap_draws=args.bootstrap_draws,
        ci_level=args.ci_level,
        dose_grid=dose_grid,
        **estimator_kwargs(args),
    )


def estimator_kwargs(args: argparse.Namespace) -> dict:
    """The one-step flags of ``dcma run`` / ``dcma effects`` (none for ``dcma sensitivity``)."""
    if not hasattr(args, "estimator"):
        return {}
    return {
        "estimator": args.estimator,
        "density_ratio": args.density_ratio,
        "draws_per_row": args.draws_per_row,
    }


def truth_of(data: MediationData, kwargs: dict):
    """True effects of the default study: the table's rows and the quantile curves."""
    from dcma_jax.datasets import DEFAULT_STUDY
    from dcma_jax.estimands import FunctionalSpec
    from dcma_jax.functionals import DISTANCE_FUNCTIONALS
    from dcma_jax.model import build_model
    from dcma_jax.queries import CURVE_LEVELS, build_estimands

    levels = sorted({round(float(q), 10) for q in (*kwargs["quantiles"], *CURVE_LEVELS)})
    spec = FunctionalSpec(tuple(levels), tuple(kwargs["cdf_points"]), DISTANCE_FUNCTIONALS)
    estimands = build_estimands(
        data,
        build_model(data, "linear"),
        kwargs["effects"],
        kwargs["treatment_values"],
        kwargs["reference"],
        kwargs["path_specific"],
        kwargs["path_reference"],
    )
    draws = {} if TRUTH_DRAWS is None else {"num_draws": TRUTH_DRAWS}
    truth = DEFAULT_STUDY.true_effects(estimands, spec, **draws)
    curves = {
        c.name: np.array([truth[(c.name, "quantile", round(float(q), 10))] for q in CURVE_LEVELS])
        for c in estimands.contrasts
    }
    return truth, curves


def effects_and_figures(
    args: argparse.Namespace,
    fitted: FittedMediation,
    kwargs: dict,
    default_study: bool,
    progress: Callable[[str], None],
) -> tuple[MediationResult, list[Path]]:
    """The effects query, the truth column (default study) and the figures."""
    result = fitted.effects(progress=progress, **kwargs)
    truth_curves = None
    if default_study:
        progress("computing true effects")
        truth, truth_curves = truth_of(fitted.data, kwargs)
        result = result.with_truth(truth)
    figures = []
    if not args.no_plots:
        from dcma_jax.plotting import save_figures  # matplotlib: ~1 s of start-up, on demand

        progress("drawing figures")
        figures = save_figures(result, Path(args.out), truth_curves=truth_curves)
    return result, figures


def _num(value: float) -> str:
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def _fmt_ci(result: MediationResult, effect: str, functional: str, level: float | None) -> str:
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


def mean_only_note(result: MediationResult, effect: str = "NIE_treated") -> str | None:
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


def node_lines(nodes: dict) -> list[str]:
    """One line per node of ``meta["diagnostics"]["nodes"]``."""
    lines = []
    for name, d in nodes.items():
        log_lik = "n/a" if d["heldout_log_lik"] is None else f"{d['heldout_log_lik']:.3f}"
        flag = "  (miscalibrated)" if d["pit_ks"] > d["pit_ks_95"] else ""
        lines.append(
            f"  {name}: log-lik {log_lik}, CRPS {d['crps']:.3f}, PIT KS {d['pit_ks']:.3f} "
            f"(95% bound {d['pit_ks_95']:.3f}){flag} [{d['rows']}]"
        )
    return lines


def selection_lines(selection: dict | None) -> list[str]:
    """``meta["generator_selection"]`` (``--generator auto``): one line per node, or none."""
    if not selection:
        return []
    lines = [
        "Generator selection per node (cross-validated CRPS, +- standard error of its difference "
        "to the lowest; chosen: the first within one standard error):"
    ]
    for name, s in selection.items():
        scores = ", ".join(
            f"{f} failed" if v is None else f"{f} {v:.4f}" + (f" +- {e:.4f}" if e else "")
            for (f, v), e in zip(s["crps"].items(), s["se"].values(), strict=True)
        )
        lines.append(f"  {name}: {scores} -> {s['chosen']}")
    return lines


def diagnostics_lines(diagnostics: dict) -> list[str]:
    """The diagnostics block of the report: node fit quality and mediator overlap."""
    lines = ["Fit diagnostics per node (PIT KS above its 95% bound: miscalibrated):"]
    lines += node_lines(diagnostics["nodes"])
    if diagnostics["overlap"]:
        lines.append("Mediator overlap per cross-world arm (effective sample fraction, 1 = full):")
        for e in diagnostics["overlap"]:
            value = "n/a" if e["ess_fraction"] is None else f"{e['ess_fraction']:.3f}"
            why = f" ({e['note']})" if e["note"] else ""
            lines.append(f"  {e['arm']} [{', '.join(e['effects'])}]: {value}{why}")
        lines += [f"  warning: {e['warning']}" for e in diagnostics["overlap"] if e["warning"]]
    positivity = diagnostics.get("positivity")
    if positivity:
        lines.append(
            f"Propensity P(A=1|X), out of fold: {positivity['propensity_min']:.3f} to "
            f"{positivity['propensity_max']:.3f}; largest inverse-probability weight "
            f"{positivity['max_weight']:.3g}"
        )
        if positivity["warning"]:
            lines.append(f"  warning: {positivity['warning']}")
        for arm in positivity["arms"]:
            lines.append(
                f"  {arm['arm']}: largest mediator-ratio weight {arm['max_weight']:.3g} "
                f"({arm['max_row_share']:.1%} of the arm's), ESS fraction {arm['ess_fraction']:.2f}"
            )
            if arm["warning"]:
                lines.append(f"  warning: {arm['warning']}")
    return lines


def report(
    args: argparse.Namespace,
    result: MediationResult,
    figures: list[Path],
    default_study: bool,
    out: Out,
) -> None:
    """Prints the graph, the effects table and notes; writes the JSON."""
    meta = result.meta
    out("Model graph:")
    out("\n".join(f"  {line}" for line in meta["graph"]))
    out("")
    if meta.get("generator_selection"):
        out("\n".join([*selection_lines(meta["generator_selection"]), ""]))
    bootstrap = meta["bootstrap"]
    interval = (
        f"{bootstrap} bootstrap replicates, {meta['ci_level']:.0%} percentile intervals "
        "(distances: lower bound 0 where a zero distance is plausible)"
        if bootstrap
        else "no intervals (--bootstrap 0)"
    )
    if meta.get("estimator") == "onestep":
        bootstrapped = meta["onestep"]["intervals"]["mean"].startswith("bootstrap")
        kind = "bootstrap (resamples cross-fitted again)" if bootstrapped else "influence-function"
        interval = (
            f"one-step estimator, {meta['onestep']['folds']}-fold cross-fitted, for means, CDFs "
            f"and quantiles with {meta['ci_level']:.0%} {kind} intervals; "
            f"distances plug-in with {interval}"
        )
    families = sorted(set(meta["generators"].values()))
    out(
        f"Effects ({', '.join(families)}; {meta['num_draws']:,} draws per arm, {interval}"
        + ("; truth = true value under the study's structural model" if default_study else "")
        + "):"
    )
    out(result.format_table())
    out("")
    if "diagnostics" in meta:
        out("\n".join(diagnostics_lines(meta["diagnostics"])))
        out("")
    dose = meta.get("dose_response")
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
    json_path = Path(args.json) if args.json else Path(args.out) / "effects.json"
    result.to_json(json_path)
    out(f"Wrote effects JSON: {json_path}")
    for path in figures:
        out(f"Wrote figure: {path}")
