"""Recovery study: bias, RMSE and interval coverage of every generator family against SCM truths.

Each cell (study x family x n) fits ``--seeds`` independent data sets drawn from one of the SCMs
of :mod:`dcma_jax.datasets.recovery`, with ``--bootstrap`` replicates, and compares the five
natural effects on the mean, quantiles, CDF points, Wasserstein-1 and energy with the truths
of the structural equations. Per effect row it reports the truth, the bias of the estimates,
their spread across data sets (the estimator's sampling SD), ``bias / (SD / sqrt(R))`` (a
z-statistic for "no bias"), RMSE, the share of data sets within 3 SDs of the truth, and the
coverage of the 90 % and 95 % percentile intervals. Effects whose arms the overlap diagnostic
flags (mediator draws the outcome model rarely saw) are reported apart as poorly supported.

Raw rows (one per data set and effect row) are appended to ``--raw`` as they finish, so a long
run can be stopped and resumed, and cells run in several processes; ``--report`` rebuilds the
markdown from the raw file alone.

    python experiments/recovery.py [--studies S,..] [--families F,..] [--n N,..] [--seeds R]
        [--bootstrap B] [--draws D] [--raw PATH] [--out PATH] [--report] [--quick]
"""

import argparse
import math
import sys
import time
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd

import dcma_jax as dj
from dcma_jax.datasets.recovery import RECOVERY_STUDIES
from dcma_jax.results import markdown_table
from dcma_jax.selection import DEFAULT_CANDIDATES

FAMILIES = ("linear", "mdn", "flow", "diffusion", "auto")
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
DISTANCES = ("wasserstein", "energy")
KEY = ["study", "family", "n", "seed"]
ROW = ["effect", "functional", "level"]
TRUTH_DRAWS = 1_000_000
Z90 = NormalDist().inv_cdf(0.95)


def functionals(study) -> dj.FunctionalSpec:
    """Quantiles, CDF at the outcome's quartiles and distances; the mean only for binary Y."""
    if _binary_outcome(study):
        return dj.FunctionalSpec((), (), ())
    y = study.observational(987_654, 200_000)[study.outcome].to_numpy()
    points = tuple(float(round(t, 4)) for t in np.quantile(y, [0.25, 0.5, 0.75]))
    return dj.FunctionalSpec(QUANTILES, points, DISTANCES)


def _binary_outcome(study) -> bool:
    return set(np.unique(study.observational(0, 200)[study.outcome])) <= {0.0, 1.0}


def truths(study, spec: dj.FunctionalSpec) -> pd.DataFrame:
    """The study's true effect rows (``effect, functional, level, truth``)."""
    truth = study.true_effects(dj.natural_effects(list(study.mediators)), spec, TRUTH_DRAWS)
    return pd.DataFrame(
        [{"effect": e, "functional": f, "level": lv, "truth": v} for (e, f, lv), v in truth.items()]
    )


def study_data(study, seed: int, n: int) -> dj.MediationData:
    """Data set ``seed`` of ``n`` rows drawn from ``study``, with its roles."""
    return dj.MediationData.from_dataframe(
        study.observational(seed, n),
        treatment=study.treatment,
        mediators=list(study.mediators),
        outcome=study.outcome,
        covariates=list(study.covariates),
    )


def run_cell(name, family, n, seed, spec, bootstrap, draws) -> pd.DataFrame:
    """One data set of study ``name``: effect rows with 90/95 % intervals and overlap flags."""
    data = study_data(RECOVERY_STUDIES[name], seed, n)
    started = time.perf_counter()
    fitted = dj.fit(data, generators=family, bootstrap=bootstrap, seed=seed)
    fit_seconds = time.perf_counter() - started
    query = {
        "quantiles": spec.quantiles,
        "cdf_points": spec.cdf_points,
        "distances": spec.distances,
        "num_draws": draws,
        "bootstrap_draws": draws,
    }
    wide = fitted.effects(ci_level=0.95, **query)
    table = wide.summary().rename(columns={"ci_low": "low95", "ci_high": "high95"})
    if bootstrap:
        narrow = fitted.effects(ci_level=0.90, **query).summary()
        table["low90"], table["high90"] = narrow.ci_low.to_numpy(), narrow.ci_high.to_numpy()
    else:
        table["low90"] = table["high90"] = np.nan
    flagged = {
        effect
        for arm in wide.meta["diagnostics"]["overlap"]
        if arm["warning"]
        for effect in arm["effects"]
    }
    table["flagged"] = table.effect.isin(flagged)
    table = table[~table.effect.str.startswith("PM")]
    for column, value in zip(KEY, (name, family, n, seed), strict=True):
        table[column] = value
    table["bootstrap"], table["draws"] = bootstrap, draws
    table["choice"] = ";".join(f"{node}:{family}" for node, family, _ in fitted.report.selection)
    table["fit_seconds"] = round(fit_seconds, 2)
    table["seconds"] = round(time.perf_counter() - started, 2)
    return table


def _level_key(frame: pd.DataFrame) -> pd.Series:
    return frame.level.fillna(-1.0).round(6)


def summarise(raw: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Per cell and effect row: truth, bias, SD, bias z, RMSE, within-3-SD share, coverage."""
    raw = raw.assign(level_key=_level_key(raw))
    truth = truth.assign(level_key=_level_key(truth)).drop(columns="level")
    merged = raw.merge(truth, on=["study", "effect", "functional", "level_key"], how="left")
    if merged.truth.isna().any():
        missing = merged[merged.truth.isna()][["study", *ROW]].drop_duplicates()
        raise SystemExit(f"recovery: no truth for rows {missing.to_dict('records')[:3]}")
    merged["error"] = merged.estimate - merged.truth
    for level in ("90", "95"):
        low, high = merged[f"low{level}"], merged[f"high{level}"]
        inside = ((low <= merged.truth) & (merged.truth <= high)).astype(float)
        merged[f"in{level}"] = inside.where(low.notna() & high.notna())  # NaN: no interval

    def cell(group: pd.DataFrame) -> pd.Series:
        r = len(group)
        sd = group.estimate.std(ddof=1) if r > 1 else math.nan
        bias = group.error.mean()
        return pd.Series(
            {
                "truth": group.truth.iloc[0],
                "data_sets": r,
                "bias": bias,
                "sd": sd,
                "bias_z": bias / (sd / math.sqrt(r)) if sd > 0 else math.nan,
                "rmse": math.sqrt((group.error**2).mean()),
                "within_3sd": (group.error.abs() <= 3 * sd).mean() if sd > 0 else math.nan,
                "cover90": group.in90.mean(),
                "cover95": group.in95.mean(),
                "width_ratio": (group.high90 - group.low90).mean() / (2 * Z90 * sd)
                if sd > 0
                else math.nan,
                "flagged": group.flagged.mean() > 0.5,
            }
        )

    keys = ["study", "family", "n", "effect", "functional", "level_key"]
    rows = merged.groupby(keys, sort=False).apply(cell, include_groups=False).reset_index()
    return rows.rename(columns={"level_key": "level"}).replace({"level": {-1.0: np.nan}})


def _group(frame: pd.DataFrame) -> pd.Series:
    return frame.functional.replace({"wasserstein": "W1", "quantile": "quantiles"})


def headline(rows: pd.DataFrame) -> pd.DataFrame:
    """Per cell and functional group, over well-supported rows: the figures the issue asks."""
    supported = rows[~rows.flagged]
    supported = supported.assign(
        group=_group(supported), bias_over_sd=supported.bias.abs() / supported.sd
    )
    out = supported.groupby(["study", "family", "n", "group"], sort=False).agg(
        rows=("truth", "size"),
        data_sets=("data_sets", "min"),
        mean_abs_bias_z=("bias_z", lambda z: z.abs().mean()),
        max_abs_bias_over_sd=("bias_over_sd", "max"),
        rmse=("rmse", "mean"),
        within_3sd=("within_3sd", "mean"),
        cover90=("cover90", "mean"),
        cover95=("cover95", "mean"),
        width_ratio=("width_ratio", "median"),
    )
    return out.reset_index()


def perfect_bootstrap(replicates: int, level: float, trials: int = 200_000) -> tuple[float, float]:
    """Coverage and width of the percentile interval of ``replicates`` perfect replicates.

    The replicates are drawn from the estimator's own sampling distribution (normal, SD 1)
    about the estimate; the bounds are ``numpy.percentile`` of them, as
    :func:`dcma_jax.inference.percentile_interval` takes them. With few replicates the bounds
    sit inside the true quantiles, so even this ideal covers less than ``level``: the
    figures a study's coverage and ``width_ratio`` at that B are to be compared with.
    Returns ``(coverage, mean width / (2 z_level))``; Monte Carlo with a fixed seed (SE about
    0.001 at 200,000 trials).
    """
    rng = np.random.default_rng(0)
    tail = 100.0 * (1.0 - level) / 2.0
    inside, width = 0, 0.0
    for start in range(0, trials, 20_000):
        size = min(20_000, trials - start)
        error = rng.normal(size=size)  # estimate - truth
        spread = rng.normal(size=(size, replicates))  # replicate - estimate
        low, high = np.percentile(spread, (tail, 100.0 - tail), axis=1)
        inside += int(np.sum((low <= -error) & (-error <= high)))
        width += float(np.sum(high - low))
    return inside / trials, width / trials / (2.0 * NormalDist().inv_cdf(0.5 + level / 2.0))


def _interval_reference(raw: pd.DataFrame) -> str:
    sizes = sorted(int(b) for b in raw.bootstrap.unique() if b > 0)
    if not sizes:
        return "* No intervals (B = 0)."
    ideal = []
    for b in sizes:
        (c90, w90), (c95, _) = perfect_bootstrap(b, 0.90), perfect_bootstrap(b, 0.95)
        ideal.append(f"B = {b}: cover90 {c90:.3f}, cover95 {c95:.3f}, width_ratio {w90:.3f}")
    return (
        "* What they are to be compared with: a perfect bootstrap (replicates drawn from the "
        f"estimator's own sampling distribution) gives {'; '.join(ideal)} "
        "(`perfect_bootstrap`): the percentiles of few replicates sit inside the true "
        "quantiles. The gap closes as B grows (cover90 0.898, cover95 0.949 at B = 1000)."
    )


def report(raw: pd.DataFrame, truth: pd.DataFrame, raw_name: str) -> str:
    """The markdown report of the raw rows."""
    rows = summarise(raw, truth)
    head = headline(rows)
    poor = rows[rows.flagged][["study", "family", "n", "effect"]].drop_duplicates()
    choices = auto_choices(raw)
    versus = auto_versus_best(head)
    seconds = raw.groupby(["study", "family", "n", "seed"]).seconds.first()
    timing = seconds.groupby(["study", "family", "n"]).mean().round(1).reset_index()
    studies = {name: RECOVERY_STUDIES[name] for name in raw.study.unique()}
    text = [
        "# Recovery study: generator families against structural truths",
        "",
        "Written by `python experiments/recovery.py` (settings below); rebuilt from the raw "
        f"rows in `{raw_name}` by `--report`. Every data set is an independent draw "
        "of the SCM; truths come from the structural equations with 1e6 shared draws.",
        "",
        f"Settings: bootstrap B = {_values(raw.bootstrap)} (0: no intervals, coverage nan; "
        "else the effects query's intervals), "
        f"{_values(raw.draws)} draws per arm for the point estimate and for each replicate, "
        "default `TrainConfig`, fit and simulation seed = data-set index.",
        "",
        "## Studies",
        "",
        *[f"* `{name}`: {study.description}" for name, study in studies.items()],
        "",
        "## How to read the tables",
        "",
        "* `sd`: the spread of the estimates across data sets (the estimator's sampling SD).",
        "* `bias_z` = bias / (sd / sqrt(R)): |z| > 3 is bias beyond the noise of R data sets.",
        "* `max_abs_bias_over_sd`: the largest |bias| / sd in the group (the issue's '3 "
        "sampling SDs' check asks for <= 3; well-behaved cells are far below 1).",
        "* `within_3sd`: share of data sets whose estimate is within 3 sd of the truth.",
        "* `cover90`, `cover95`: share of intervals containing the truth (binomial SE "
        "sqrt(p(1-p)/R), about 0.07 at R = 20 for p = 0.9).",
        "* `width_ratio`: the mean 90 % interval width over 2 x 1.645 sd, the width a "
        "normal interval with the sampling SD has; sharper than coverage at R = 20, whose "
        "rows share each data set's luck.",
        _interval_reference(raw),
        "* Well-supported rows only in the headline; rows whose arms the overlap diagnostic "
        "flags in most data sets are listed apart.",
        "",
        "## Headline (well-supported rows)",
        "",
        markdown_table(head),
        "",
        "## Poorly supported effects (overlap warning in most data sets)",
        "",
        markdown_table(poor) if len(poor) else "None.",
        "",
        "## What `auto` chose (data sets per choice)",
        "",
        markdown_table(choices) if len(choices) else "`auto` was not run.",
        "",
        "## `auto` against the best single family (mean RMSE over well-supported rows)",
        "",
        "The best single family is the one with the lowest RMSE in that cell, chosen after the "
        "fact with the truths; `ratio` = auto's RMSE / that RMSE (the issue asks <= 1 up to "
        "noise). `best_candidate` is the best of the families auto chooses among "
        f"({', '.join(DEFAULT_CANDIDATES)}; diffusion is not one: its fit takes several times "
        "flow's, see the time table), "
        "`ratio_candidates` auto's RMSE over its. Flagged rows are excluded per family, so rows "
        "can differ by a few.",
        "",
        markdown_table(versus) if len(versus) else "`auto` was not run.",
        "",
        "## Time per data set (fit, bootstrap and both queries), seconds",
        "",
        markdown_table(timing),
        "",
        "## Every effect row",
        "",
        markdown_table(rows),
        "",
    ]
    return "\n".join(text)


def auto_choices(raw: pd.DataFrame) -> pd.DataFrame:
    """Per study and n, how many of auto's data sets chose each per-node family combination."""
    if "choice" not in raw:
        return pd.DataFrame()
    auto = raw[raw.family == "auto"].groupby(["study", "n", "seed"]).choice.first()
    counts = auto.reset_index().groupby(["study", "n", "choice"]).size()
    return counts.rename("data_sets").reset_index()


def auto_versus_best(head: pd.DataFrame) -> pd.DataFrame:
    """Per study, n and group: auto's RMSE beside the best single family's (from ``headline``)."""
    if "auto" not in set(head.family):
        return pd.DataFrame()
    keys = ["study", "n", "group"]
    auto = head[head.family == "auto"].set_index(keys).rmse.rename("auto_rmse")
    single = head[head.family != "auto"]
    candidates = single[single.family.isin(DEFAULT_CANDIDATES)]
    columns = [auto]
    for name, rows in (("best", single), ("best_candidate", candidates)):
        best = rows.loc[rows.groupby(keys).rmse.idxmin()].set_index(keys)
        columns += [best.family.rename(name), best.rmse.rename(f"{name}_rmse")]
    out = pd.concat(columns, axis=1).dropna(subset=["auto_rmse", "best_rmse"])
    return out.assign(
        ratio=out.auto_rmse / out.best_rmse,
        ratio_candidates=out.auto_rmse / out.best_candidate_rmse,
    ).reset_index()


def _values(column: pd.Series) -> str:
    return ", ".join(str(v) for v in sorted(column.unique()))


def append_rows(raw_path: Path, table: pd.DataFrame) -> None:
    """Appends ``table`` to the raw CSV; a file written before a column existed is rewritten
    once with the union of columns (old rows get NaN there), so rows never shift columns."""
    if not raw_path.exists():
        table.to_csv(raw_path, index=False)
        return
    header = pd.read_csv(raw_path, nrows=0).columns
    if set(table.columns) <= set(header):
        table.reindex(columns=header).to_csv(raw_path, mode="a", header=False, index=False)
    else:
        pd.concat([pd.read_csv(raw_path), table], ignore_index=True).to_csv(raw_path, index=False)


def _done(raw_path: Path) -> set[tuple]:
    if not raw_path.exists():
        return set()
    raw = pd.read_csv(raw_path, low_memory=False)  # low_memory: "choice" is NaN but for auto
    return set(map(tuple, raw[KEY].drop_duplicates().itertuples(index=False)))


def _truth_table(names: list[str]) -> pd.DataFrame:
    frames = []
    for name in names:
        study = RECOVERY_STUDIES[name]
        frames.append(truths(study, functionals(study)).assign(study=name))
    return pd.concat(frames, ignore_index=True)


def _parse_list(text: str, allowed, what: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        print(
            f"recovery: unknown {what} {bad or text!r}; choose from {', '.join(allowed)}",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", default=",".join(RECOVERY_STUDIES))
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--n", default="2000,8000", help="rows per data set, comma-separated")
    parser.add_argument("--seeds", type=int, default=20, help="data sets per cell (default 20)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=50)
    parser.add_argument("--draws", type=int, default=20_000, help="draws per arm")
    parser.add_argument("--raw", default="experiments/results/recovery_raw.csv")
    parser.add_argument("--out", default="experiments/results/recovery.md")
    parser.add_argument("--report", action="store_true", help="only rebuild --out from --raw")
    parser.add_argument("--quick", action="store_true", help="tiny settings (CI smoke run)")
    args = parser.parse_args()
    studies = _parse_list(args.studies, list(RECOVERY_STUDIES), "study")
    families = _parse_list(args.families, FAMILIES, "family")
    try:
        sizes = [int(v) for v in args.n.split(",")]
    except ValueError:
        print(f"recovery: --n must be integers, got {args.n!r}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.quick:
        studies, families, sizes = ["linear"], ["linear"], [300]
        args.seeds, args.bootstrap, args.draws = 2, 5, 2000
    raw_path = Path(args.raw)
    raw_path.parent.mkdir(parents=True, exist_ok=True)

    if not args.report:
        done = _done(raw_path)
        for name in studies:
            spec = functionals(RECOVERY_STUDIES[name])
            for family in families:
                for n in sizes:
                    for seed in range(args.first_seed, args.first_seed + args.seeds):
                        if (name, family, n, seed) in done:
                            continue
                        table = run_cell(name, family, n, seed, spec, args.bootstrap, args.draws)
                        append_rows(raw_path, table)
                        print(f"{name} {family} n={n} seed={seed}: {table.seconds.iloc[0]} s")
    raw = pd.read_csv(raw_path, low_memory=False)  # low_memory: "choice" is NaN but for auto
    text = report(raw, _truth_table(list(raw.study.unique())), raw_path.name)
    out = Path(args.out)
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
