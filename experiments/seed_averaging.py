"""Training noise: how much of a neural estimate's error is its seed, and what averaging buys.

A neural point fit depends on its seed as well as on the data: the seed picks the 20 % of rows
early stopping validates on, the initialisation and the minibatch order. Each data set of a
recovery-study SCM (:mod:`dcma_jax.datasets.recovery`) is fitted ``--members`` times with
seeds ``d + 1000 k`` (data set ``d``, member ``k``), each fit queried with its own seed; member
0 is also queried a second time with another seed, which isolates the Monte Carlo noise of one
query. Per effect row, over the data sets:

* ``total_var``: the variance of member 0's estimates across data sets (data, training and
  Monte Carlo noise together: the estimator's sampling variance);
* ``train_var``: the mean within-data-set variance across members (training plus Monte Carlo
  noise of one query), and ``mc_var``: half the mean squared difference of member 0's two
  queries (Monte Carlo alone);
* the RMSE against the truth of member 0 alone, of the mean of the first 2 members' estimates
  and of the mean of all of them. The mean of ``K`` fits is an estimator a user could run (K
  times the fit and query time); it removes ``(1 - 1/K)`` of ``train_var``.

Per functional group the paired difference of squared errors (mean of K minus one fit) is
averaged over the group's rows within a data set, so its SE across data sets accounts for rows
of one data set being correlated (as ``holdout_refit.py`` does).

Raw rows (one per data set, member, query and effect row) are appended to ``--raw`` as cells
finish; a rerun skips finished cells and ``--report`` rebuilds the markdown from the raw file.

    python experiments/seed_averaging.py [--studies S,..] [--families F,..] [--n N]
        [--seeds R] [--members K] [--draws D] [--raw PATH] [--out PATH] [--report] [--quick]
"""

import argparse
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
from recovery import (
    _done,
    _group,
    _level_key,
    _parse_list,
    _truth_table,
    _values,
    functionals,
    study_data,
)

import dcma_jax as dj
from dcma_jax.datasets.recovery import RECOVERY_STUDIES
from dcma_jax.results import markdown_table

STUDIES = ("linear", "heteroscedastic", "bimodal", "skewed", "interaction")
FAMILIES = ("mdn", "flow")
KEY = ["study", "family", "n", "seed"]
ROW = ["effect", "functional", "level_key"]
MEMBER_SEED_STRIDE = 1000
SECOND_QUERY_OFFSET = 500_000


def run_cell(name, family, n, seed, spec, members, draws) -> pd.DataFrame:
    """Data set ``seed`` of study ``name`` fitted ``members`` times: every fit's effect rows."""
    data = study_data(RECOVERY_STUDIES[name], seed, n)
    query = {
        "quantiles": spec.quantiles,
        "cdf_points": spec.cdf_points,
        "distances": spec.distances,
        "num_draws": draws,
    }
    tables = []
    for member in range(members):
        fit_seed = seed + MEMBER_SEED_STRIDE * member
        started = time.perf_counter()
        fitted = dj.fit(data, generators=family, seed=fit_seed)
        queries = [fit_seed] if member else [fit_seed, fit_seed + SECOND_QUERY_OFFSET]
        for number, query_seed in enumerate(queries):
            table = fitted.effects(seed=query_seed, **query).summary()
            table = table[~table.effect.str.startswith("PM")][
                ["effect", "functional", "level", "estimate"]
            ].copy()
            for column, value in zip(KEY, (name, family, n, seed), strict=True):
                table[column] = value
            table["member"], table["query"], table["draws"] = member, number, draws
            table["seconds"] = round(time.perf_counter() - started, 3)
            tables.append(table)
    return pd.concat(tables, ignore_index=True)


def _per_row(raw: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """One row per data set and effect row: truth, member estimates wide, Monte Carlo pair."""
    raw = raw.assign(level_key=_level_key(raw))
    truth = truth.assign(level_key=_level_key(truth)).drop(columns="level")
    first = raw[raw["query"] == 0]
    wide = first.pivot_table(index=[*KEY, *ROW], columns="member", values="estimate")
    again = raw[raw["query"] == 1].set_index([*KEY, *ROW]).estimate.rename("again")
    wide = wide.join(again).reset_index()
    merged = wide.merge(truth, on=["study", "effect", "functional", "level_key"], how="left")
    if merged.truth.isna().any():
        raise SystemExit("seed_averaging: an effect row has no truth")
    return merged.assign(group=_group(merged))


def _members(per_row: pd.DataFrame) -> list:
    return sorted(c for c in per_row.columns if isinstance(c, int | np.integer))


def rows_table(per_row: pd.DataFrame) -> pd.DataFrame:
    """Per cell and effect row: the variance decomposition and each estimator's RMSE."""
    members = _members(per_row)

    def one(group: pd.DataFrame) -> pd.Series:
        est = group[members].to_numpy()
        truth = group.truth.iloc[0]
        total = est[:, 0].var(ddof=1)
        train = est.var(axis=1, ddof=1).mean()
        mc = 0.5 * np.mean((group.again.to_numpy() - est[:, 0]) ** 2)
        rmse = {
            f"rmse_mean_of_{k}": math.sqrt(np.mean((est[:, :k].mean(axis=1) - truth) ** 2))
            for k in sorted({1, 2, len(members)})
        }
        return pd.Series(
            {
                "truth": truth,
                "data_sets": len(group),
                "total_var": total,
                "train_share": train / total,
                "mc_share": mc / total,
                **rmse,
            }
        )

    keys = ["study", "family", "n", "effect", "functional", "level_key"]
    out = per_row.groupby(keys, sort=False).apply(one, include_groups=False).reset_index()
    return out.rename(columns={"level_key": "level"}).replace({"level": {-1.0: np.nan}})


def headline(per_row: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Per cell and functional group: median shares (of ``rows``, from :func:`rows_table`),
    RMSEs and the paired MSE change."""
    members = _members(per_row)
    k = len(members)
    est = per_row[members].to_numpy()
    per_row = per_row.assign(
        se_one=(est[:, 0] - per_row.truth) ** 2,
        se_two=(est[:, :2].mean(axis=1) - per_row.truth) ** 2,
        se_all=(est.mean(axis=1) - per_row.truth) ** 2,
    )
    per_set = per_row.groupby([*KEY, "group"], sort=False)[["se_one", "se_two", "se_all"]].mean()
    per_set["diff"] = per_set.se_all - per_set.se_one
    rows = rows.assign(group=_group(rows))

    def one(group: pd.DataFrame) -> pd.Series:
        r = len(group)
        se = group["diff"].std(ddof=1) / math.sqrt(r) if r > 1 else math.nan
        return pd.Series(
            {
                "data_sets": r,
                "rmse_one": math.sqrt(group.se_one.mean()),
                "rmse_mean_of_2": math.sqrt(group.se_two.mean()),
                f"rmse_mean_of_{k}": math.sqrt(group.se_all.mean()),
                f"ratio_{k}": math.sqrt(group.se_all.mean() / group.se_one.mean()),
                "z": group["diff"].mean() / se if se > 0 else math.nan,
            }
        )

    cell = ["study", "family", "n", "group"]
    out = per_set.reset_index().groupby(cell, sort=False).apply(one, include_groups=False)
    shares = rows.groupby(cell, sort=False)[["train_share", "mc_share"]].median()
    out = out.join(shares.rename(columns=lambda c: f"median_{c}")).reset_index()
    out["data_sets"] = out.data_sets.astype(int)
    return out


def timing_table(raw: pd.DataFrame) -> pd.DataFrame:
    """Median seconds per fit and its queries, per cell (the median leaves out compiling)."""
    fits = raw[raw["query"] == 0].drop_duplicates([*KEY, "member"])
    return fits.groupby(["study", "family", "n"]).seconds.median().round(2).reset_index()


def report(raw: pd.DataFrame, truth: pd.DataFrame, raw_name: str) -> str:
    """The markdown report of the raw rows."""
    per_row = _per_row(raw, truth)
    rows = rows_table(per_row)
    k = len(_members(per_row))
    studies = {name: RECOVERY_STUDIES[name] for name in raw.study.unique()}
    text = [
        "# Training noise of neural fits, and the mean of several fits",
        "",
        "Written by `python experiments/seed_averaging.py`; rebuilt from the raw rows in "
        f"`{raw_name}` by `--report`. Every data set is an independent draw of the SCM; truths "
        "come from the structural equations with 1e6 shared draws (`recovery.truths`).",
        "",
        f"* Settings: n = {_values(raw.n)}, {k} fits a data set (seeds d + "
        f"{MEMBER_SEED_STRIDE} k), default `TrainConfig`, {_values(raw.draws)} draws per arm, "
        "each fit queried with its own seed, no bootstrap.",
        "",
        "## Studies",
        "",
        *[f"* `{name}`: {study.description}" for name, study in studies.items()],
        "",
        "## How to read the tables",
        "",
        "* `median_train_share`: the variance of one data set's estimates across seeds (fit and "
        "query) over the variance across data sets (the estimator's sampling variance), median "
        "over the group's rows: the part of the sampling variance a seed adds.",
        "* `median_mc_share`: the same for the Monte Carlo noise of one query alone (one fit "
        "queried twice with two seeds); it is part of `train_share`.",
        f"* `rmse_one`, `rmse_mean_of_2`, `rmse_mean_of_{k}`: RMSE over the group's rows and the "
        f"data sets of one fit's estimate and of the mean of 2 and of {k} fits' estimates; "
        f"`ratio_{k}` = rmse_mean_of_{k} / rmse_one. `z`: the paired difference of squared "
        f"errors (mean of {k} minus one fit) over its SE across data sets (negative: the mean "
        "is closer to the truth).",
        "",
        "## Headline",
        "",
        markdown_table(headline(per_row, rows)),
        "",
        "## Seconds per fit and its queries (median)",
        "",
        markdown_table(timing_table(raw)),
        "",
        "## Every effect row",
        "",
        markdown_table(rows),
        "",
    ]
    return "\n".join(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", default=",".join(STUDIES))
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--n", type=int, default=2000, help="rows per data set")
    parser.add_argument("--seeds", type=int, default=20, help="data sets per cell (default 20)")
    parser.add_argument("--members", type=int, default=5, help="fits per data set (default 5)")
    parser.add_argument("--draws", type=int, default=20_000, help="draws per arm")
    parser.add_argument("--raw", default="experiments/results/seed_averaging_raw.csv")
    parser.add_argument("--out", default="experiments/results/seed_averaging.md")
    parser.add_argument("--report", action="store_true", help="only rebuild --out from --raw")
    parser.add_argument("--quick", action="store_true", help="tiny settings (smoke run)")
    args = parser.parse_args()
    studies = _parse_list(args.studies, list(RECOVERY_STUDIES), "study")
    families = _parse_list(args.families, ("linear", "mdn", "flow", "diffusion"), "family")
    if args.members < 2:
        parser.error(f"--members must be at least 2, got {args.members}")
    if args.quick:
        studies, families, args.n, args.seeds, args.draws = ["linear"], ["mdn"], 300, 3, 2000
        args.members = 2
    raw_path = Path(args.raw)
    raw_path.parent.mkdir(parents=True, exist_ok=True)

    if not args.report:
        done = _done(raw_path)
        for name in studies:
            spec = functionals(RECOVERY_STUDIES[name])
            for family in families:
                for seed in range(args.seeds):
                    if (name, family, args.n, seed) in done:
                        continue
                    table = run_cell(name, family, args.n, seed, spec, args.members, args.draws)
                    table.to_csv(raw_path, mode="a", header=not raw_path.exists(), index=False)
                    print(f"{name} {family} seed={seed}: {table.seconds.max()} s", flush=True)
    raw = pd.read_csv(raw_path)
    out = Path(args.out)
    out.write_text(report(raw, _truth_table(list(raw.study.unique())), raw_path.name))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
