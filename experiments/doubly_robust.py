"""Doubly robust study: bias, RMSE and coverage of the plug-in against the one-step estimator.

Each cell (study x family x n) fits ``--seeds`` independent data sets of one SCM with
``crossfit=5`` (and ``--bootstrap`` replicates for the plug-in's intervals), and asks the
effects query twice per data set: ``estimator="plugin"`` (bootstrap percentile intervals at
95 % and 90 %, none when B = 0) and ``estimator="onestep"`` (the cross-fitted one-step
estimator of :mod:`dcma_jax.robust`; influence-function intervals). The rows are the five
natural effects on the mean, the CDF at the outcome's population quartiles and the quantiles
0.25 / 0.5 / 0.75, compared with the truths of the structural equations. Studies with
``--classifier`` also ask the one-step query with ``density_ratio="classifier"`` (the
mediator density ratio by Bayes' rule from a classifier of A on (M, X)) beside the default,
the generators' log-densities.

The one-step query is asked once, at 95 %: its 90 % intervals are rebuilt from the standard
errors it reports (``meta["onestep"]["standard_errors"]``) as ``estimate +- 1.645 se`` --
the library's own rule for mean and CDF rows, a Wald approximation of its multiplier
percentile interval for quantile rows (saves a second one-step pass per data set).

Raw rows (one per data set, effect row and estimator) are appended to ``--raw`` as data sets
finish, so a run can be stopped and resumed; ``--report`` rebuilds the markdown from the raw
file alone. Helpers shared with ``recovery.py`` (population quartiles, truths, resumption,
argument lists) are imported from it.

    python experiments/doubly_robust.py [--studies S,..] [--families F,..] [--n N,..]
        [--seeds R] [--bootstrap B] [--classifier S,..] [--raw PATH] [--out PATH]
        [--report] [--quick]
"""

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from recovery import _done, _level_key, _parse_list, _values, functionals, study_data, truths
from scipy.stats import norm

import dcma_jax as dj
from dcma_jax.datasets.recovery import RECOVERY_STUDIES, ROBUSTNESS_STUDIES
from dcma_jax.results import markdown_table

#: The one-step test bed and two recovery SCMs whose mediator a flexible generator learns slowly.
STUDIES = {
    **ROBUSTNESS_STUDIES,
    "bimodal": RECOVERY_STUDIES["bimodal"],
    "skewed": RECOVERY_STUDIES["skewed"],
}
FAMILIES = ("linear", "mdn")
QUANTILES = (0.25, 0.5, 0.75)
FOLDS = 5
KEY = ["study", "family", "n", "seed"]
ROW = ["effect", "functional", "level"]
ESTIMATORS = ("plugin", "onestep", "onestep_classifier")
#: The raw file's columns, in order (appended data sets must match the header).
COLUMNS = [
    *KEY,
    "estimator",
    *ROW,
    "estimate",
    "low90",
    "high90",
    "low95",
    "high95",
    "se",
    "density_ratio",
    "max_weight",
    "bootstrap",
    "draws",
    "folds",
    "fit_seconds",
    "plugin_seconds",
    "onestep_seconds",
    "seconds",
]
Z90 = float(norm.ppf(0.95))
#: The hand-written reading of the committed raw file (the tables below it are regenerated).
READING = """\
## Reading (by hand, for the committed raw file; the tables below are regenerated)

Data sets are shared across SCMs: seed s draws the same X, A and noise in every study (common
random numbers), so the SCMs are not independent replications of one another.

* **Where the one-step helps: a wrong linear model.** `outcome_misspecified` x linear: the
  plug-in misses the mean rows by up to 4.1 sampling SDs (bias z up to 18), the quantile rows by
  up to 13 SDs and the CDF rows by 7, and its bootstrap intervals cover 0.21 / 0.16 / 0.35 of the
  time at 90 % (mean / quantile / CDF). The one-step shows no bias (largest |bias z| 1.66 over
  the 35 rows), RMSE 0.068 vs 0.214 (mean rows), 0.105 vs 0.445 (quantiles), 0.013 vs 0.027
  (CDF), and covers 1.00 / 0.95 / 0.93 at 90 % and 1.00 / 0.98 / 0.97 at 95 % (binomial SE of
  one row's coverage at R = 20: 0.067 at 90 %, 0.049 at 95 %). `mediator_misspecified` x linear:
  the plug-in mean rows are right (linear outcome: bias 0.004, coverage 0.95 / 0.98) but its
  quantile and CDF rows are off by up to 8.3 / 7.5 SDs (coverage 0.48 / 0.60 at 90 %); the
  one-step's are unbiased (largest |bias z| 1.4) and cover 0.93 / 0.93 at 90 %, 0.98 / 0.97 at
  95 %.
* **Well-specified linear SCM: unbiased, intervals near nominal, but not cheap in variance off
  the mean.** One-step coverage 0.94 / 0.91 / 0.93 (90 %) and 0.96 / 0.95 / 0.96 (95 %).
  Variance one-step / plug-in: 0.91-1.09 on the mean rows, 1.2-3.0 on CDF rows and 1.8-6.2 on
  quantile rows. The issue's "variance not much larger than plug-in's" holds for means only:
  the linear plug-in is the Gaussian MLE (its CDF rows are normal CDFs of fitted means, its
  quantile effects equal the mean effects), the one-step averages indicators 1{Y <= t}, and even
  for one normal sample the empirical CDF has ~1.5x the variance of the normal MLE's at the
  quartiles. Against mdn's plug-in on the same SCM (which does not assume normality) the
  one-step with the classifier's ratio has variance ratios 0.51-0.74 on mean rows, 0.66-1.8 on
  CDF rows and 1.0-2.0 on quantile rows (`var_ratio_classifier`; the densities' ratio is wrecked
  by one data set, below).
* **`bimodal` x linear (two-mode mediator fitted by one normal; linear outcome right; the
  propensity 0.5 + 0.2 tanh X only approximately logistic):** the plug-in's quantile and CDF
  rows are off by up to 12.3 / 9.3 SDs (coverage 0.42 / 0.16 at 90 %); the one-step's are within
  0.6 SDs (|bias z| up to 2.6), RMSE 0.105 vs 0.217 (quantiles) and 0.016 vs 0.040 (CDF), and
  cover 0.91 / 0.90 at 90 %, 0.96 / 0.95 at 95 %; mean rows are right either way (RMSE 0.047 vs
  0.044). The mediator's tails are normal here: no extreme data set. With mdn both are close
  (plug-in within 0.84 SDs, one-step 0.74; |bias z| up to 3.7 and 3.3 on single CDF rows), RMSE
  0.045 vs 0.054 (mean rows), 0.103 vs 0.089 (quantiles), 0.015 vs 0.014 (CDF); one-step
  coverage 0.95 / 0.90 / 0.89 at 90 %, 0.96 / 0.97 / 0.95 at 95 %.
* **Where it does not help: fitted mediator density ratios break in the tails.**
  `linear` x mdn, data set 4: row 1051 (A = 1, X = 2.49, M = -0.586) gets, from fold 4's mdn,
  log f(m | 1, x) = -11.99 against the true -5.22, so f(m | 0, x) / f(m | 1, x) = 3150 (true
  4.85); its influence value -4742 moves NDE_control to -2.12 (truth 0.50, SE 2.60) and
  NIE_treated to 3.01 (truth 0.42). Over the 20 data sets the one-step's mean rows have RMSE
  0.262 against the mdn plug-in's 0.051. The same fits with `density_ratio="classifier"` give
  RMSE 0.041, no bias (largest |bias z| 1.3 on mean rows) and coverage 0.92 / 0.95 (mean rows).
  `mediator_misspecified` x linear, data set 2: row 912 (A = 0, X = 2.69, M = 16.97, the
  log-normal's right tail) gets f(m | 1, x) / f(m | 0, x) = 7.8e3 from the normal mediator
  model (true 17.7): NDE_treated -1.59 (SE 2.04), NIE_control 2.72 (SE 2.01). The classifier
  is no cure there: with mdn, whose `auto` ratio is the logistic classifier of A on (M, X) (see
  "Code" below; its log-ratio is linear in M, the truth's in log M), the same data set gives
  NDE_treated 374 (SE 374), data set 5 4.08 (SE 2.97), data set 10 -2.36 (SE 2.82). The Wald
  intervals still cover (the SE grows with the outlier), but such an estimate is useless, and the
  positivity diagnostic does not warn (largest inverse-propensity weight 5-7): it looks at the
  propensity only. The CDF rows stay sane on these data sets (1{y <= t} - mu is ~0 at an extreme
  y). See "Extreme one-step data sets".
* **mdn plug-in: little bias to remove here.** At n = 2000 the mdn plug-in is already within
  0.65 sampling SDs on `outcome_misspecified` and 1.2 on `mediator_misspecified` (bias z up to
  3.0 and 5.3: small but detectable), so the one-step mostly trades bias for variance: on
  `outcome_misspecified` RMSE 0.061 vs 0.084 (mean rows), 0.103 vs 0.095 (quantiles), 0.014 vs
  0.013 (CDF), one-step coverage 0.97 / 0.94 / 0.91 (90 %) and 0.99 / 0.98 / 0.97 (95 %); on
  `mediator_misspecified` the tail data sets above make it worse than the plug-in on mean and
  quantile rows (quantile RMSE 0.293 vs 0.071) and equal on CDF rows (0.017). mdn plug-in
  coverage is not measured (B = 0: its bootstrap costs 29x a fit, see
  `benchmarks/results/onestep.txt`).
* **`skewed` (log-normal mediator, A x M outcome): both of the linear family's models are
  wrong, only the propensity is right**, so the one-step is not guaranteed consistent. Still it
  removes most of the plug-in's bias on quantile and CDF rows (mean |bias| 0.025 vs 0.200 and
  0.009 vs 0.040; the plug-in is up to 12.8 / 7.1 SDs off and covers 0.15 / 0.27 at 90 %), but
  not all: its CDF rows stay up to 3.0 SDs off (|bias z| up to 13.5) and cover 0.83 at 90 %,
  0.91 at 95 %. Its mean rows are dominated by data set 2 (NDE_treated 18.7, SE 17.6; below);
  without it NDE_treated / NIE_control have bias 0.015 / -0.010 against the plug-in's -0.193 /
  0.193 (coverage 0 at 95 %). With mdn the plug-in is slow on the
  cross-world arm Y(0, M(1)): NDE_treated -0.056 (z -5.6), NIE_control +0.033 (z 3.4); the
  one-step fixes TE, NDE_control and NIE_treated (RMSE 0.041 / 0.025 / 0.033 against 0.053 /
  0.029 / 0.042) but not the two rows of that arm, which weight A = 0 rows by the classifier's
  f(M | 1, x) / f(M | 0, x) in the log-normal's right tail: data set 2 (the same tail draw as
  `mediator_misspecified`'s) gives 180 (SE 179), and without it the 19 others still err upward
  (NDE_treated bias +0.127, z 3.8; NIE_control -0.123), the skew of heavy-tailed weights.
* **The `sd` column is itself noisy** (relative SE ~16 % at R = 20). Seeds 0-19 happen to give
  the NIE rows a small spread: the closed-form NIE (product of OLS coefficients) has SD 0.0238
  over seeds 0-19 of the linear SCM against 0.0353 over seeds 0-299 (blocks of 20: 0.024-0.043).
  So the one-step's `se_over_sd` of 1.2-1.9 on NIE rows (TE and NDE rows: ~1.0) is this block,
  not a mis-scaled SE: a numpy one-step with OLS / logistic nuisances on 300 data sets of the
  linear SCM gives NIE_control SD 0.0395 and mean SE 0.0391 (the efficient influence
  function's SD at n = 2000, from the true nuisances, is 0.0388; the plug-in's SD 0.0358).
* **Code.** The cells ran from the working tree as it was when each process started (15:06 to
  16:22 UTC), while the lead's commits to `dcma_jax/robust.py` landed: from 40004ea on,
  `density_ratio="auto"` takes the classifier for neural mediator generators, so the `onestep`
  rows of mdn use the classifier's ratio on every SCM but `linear` (started before it; there
  `onestep_classifier` is the classifier) -- the settings table's `onestep_ratio` column. 0af4261
  (weight 0 for the other arm's rows where their unused ratio overflowed; no estimate here was
  NaN) and c721272 (multiplier draws vectorised) change no estimator.
* **Density ratio on `outcome_misspecified` x linear:** densities and classifier agree to three
  decimals (the logistic classifier of A on (M, X) is exact for a normal mediator with equal
  variances).
"""


def spec_of(study) -> dj.FunctionalSpec:
    """Quartile quantiles and the CDF at the outcome's population quartiles; no distances."""
    return dj.FunctionalSpec(QUANTILES, functionals(study).cdf_points, ())


def _rows(result: dj.MediationResult) -> pd.DataFrame:
    table = result.summary()
    keep = ~table.effect.str.startswith("PM")
    return table[keep].rename(columns={"ci_low": "low95", "ci_high": "high95"})


def _onestep_rows(result: dj.MediationResult, estimator: str) -> pd.DataFrame:
    """The one-step rows, 90 % bounds from the reported SEs, and the embedded plug-in values."""
    table = result.summary()
    se = np.array([np.nan if s is None else s for s in result.meta["onestep"]["standard_errors"]])
    table["se"] = se
    table["low90"], table["high90"] = table.estimate - Z90 * se, table.estimate + Z90 * se
    table["plugin_estimate"] = [
        np.nan if v is None else v for v in result.meta["onestep"]["plugin_estimates"]
    ]
    table["max_weight"] = result.meta["diagnostics"]["positivity"]["max_weight"]
    table["density_ratio"] = result.meta["onestep"]["density_ratio"]
    table = table[~table.effect.str.startswith("PM")]
    table = table.rename(columns={"ci_low": "low95", "ci_high": "high95"})
    return table.assign(estimator=estimator)


def run_cell(name, family, n, seed, spec, bootstrap, draws, classifier) -> pd.DataFrame:
    """One data set: plug-in and one-step rows (and the classifier's, if asked)."""
    study = STUDIES[name]
    data = study_data(study, seed, n)
    started = time.perf_counter()
    fitted = dj.fit(data, generators=family, bootstrap=bootstrap, crossfit=FOLDS, seed=seed)
    fit_seconds = time.perf_counter() - started
    query = {
        "quantiles": spec.quantiles,
        "cdf_points": spec.cdf_points,
        "distances": (),
        "num_draws": draws,
        "bootstrap_draws": draws,
    }
    parts = []
    clock = time.perf_counter()
    onestep = _onestep_rows(fitted.effects(ci_level=0.95, estimator="onestep", **query), "onestep")
    onestep_seconds = time.perf_counter() - clock
    parts.append(onestep)
    if bootstrap:
        clock = time.perf_counter()
        plugin = _rows(fitted.effects(ci_level=0.95, **query))
        narrow = _rows(fitted.effects(ci_level=0.90, **query))
        plugin["low90"], plugin["high90"] = narrow.low95.to_numpy(), narrow.high95.to_numpy()
        plugin_seconds = time.perf_counter() - clock
        # The one-step query simulates the plug-in with the same seed: the same estimates.
        np.testing.assert_allclose(plugin.estimate, onestep.plugin_estimate, rtol=1e-5, atol=1e-6)
    else:
        plugin = onestep[ROW].assign(estimate=onestep.plugin_estimate.to_numpy())
        plugin["low95"] = plugin["high95"] = plugin["low90"] = plugin["high90"] = np.nan
        plugin_seconds = 0.0
    parts.append(plugin.assign(estimator="plugin"))
    if classifier:
        result = fitted.effects(
            ci_level=0.95, estimator="onestep", density_ratio="classifier", **query
        )
        parts.append(_onestep_rows(result, "onestep_classifier"))
    table = pd.concat(parts, ignore_index=True).drop(columns="plugin_estimate")
    for column, value in zip(KEY, (name, family, n, seed), strict=True):
        table[column] = value
    table["bootstrap"], table["draws"], table["folds"] = bootstrap, draws, FOLDS
    table["fit_seconds"] = round(fit_seconds, 2)
    table["plugin_seconds"] = round(plugin_seconds, 2)
    table["onestep_seconds"] = round(onestep_seconds, 2)
    table["seconds"] = round(time.perf_counter() - started, 2)
    return table[COLUMNS]


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _truth_table(names) -> pd.DataFrame:
    frames = []
    for name in names:
        study = STUDIES[name]
        frames.append(truths(study, spec_of(study)).assign(study=name))
    return pd.concat(frames, ignore_index=True)


def summarise(raw: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Per cell, estimator and effect row: truth, bias, SD, bias z, RMSE, SE/SD, coverage."""
    raw = raw.assign(level_key=_level_key(raw))
    truth = truth.assign(level_key=_level_key(truth)).drop(columns="level")
    merged = raw.merge(truth, on=["study", "effect", "functional", "level_key"], how="left")
    if merged.truth.isna().any():
        missing = merged[merged.truth.isna()][["study", *ROW]].drop_duplicates()
        raise SystemExit(f"doubly_robust: no truth for rows {missing.to_dict('records')[:3]}")
    merged["error"] = merged.estimate - merged.truth
    for level in ("90", "95"):
        low, high = merged[f"low{level}"], merged[f"high{level}"]
        inside = ((low <= merged.truth) & (merged.truth <= high)).astype(float)
        merged[f"in{level}"] = inside.where(low.notna() & high.notna())
    merged["width95"] = merged.high95 - merged.low95

    def cell(group: pd.DataFrame) -> pd.Series:
        r = len(group)
        sd = group.estimate.std(ddof=1) if r > 1 else math.nan
        bias = group.error.mean()
        return pd.Series(
            {
                "truth": group.truth.iloc[0],
                "R": r,
                "bias": bias,
                "sd": sd,
                "bias_z": bias / (sd / math.sqrt(r)) if sd > 0 else math.nan,
                "rmse": math.sqrt((group.error**2).mean()),
                "se_over_sd": group.se.mean() / sd if sd > 0 else math.nan,
                "width95": group.width95.mean(),
                "cover90": group.in90.mean(),
                "cover95": group.in95.mean(),
            }
        )

    keys = ["study", "family", "n", "estimator", "effect", "functional", "level_key"]
    rows = merged.groupby(keys, sort=False).apply(cell, include_groups=False).reset_index()
    rows["R"] = rows.R.astype(int)
    return rows.rename(columns={"level_key": "level"}).replace({"level": {-1.0: np.nan}})


def _wide(rows: pd.DataFrame, estimators=("plugin", "onestep")) -> pd.DataFrame:
    """Per cell and effect row, the two estimators' figures side by side."""
    index = ["study", "family", "n", "effect", "functional", "level"]
    keep = rows[rows.estimator.isin(estimators)].fillna({"level": -1.0})
    short = {"plugin": "pl", "onestep": "os", "onestep_classifier": "clf"}
    values = ["truth", "sd", "bias", "bias_z", "rmse", "cover90", "cover95"]
    wide = keep.set_index([*index, "estimator"])[values].unstack("estimator")
    wide.columns = [f"{value}_{short[est]}" for value, est in wide.columns]
    wide = wide.reset_index().replace({"level": {-1.0: np.nan}})
    first = estimators[0]
    wide["truth"] = wide.pop(f"truth_{short[first]}")
    wide = wide.drop(columns=[c for c in wide.columns if c.startswith("truth_")])
    order = ["sd", "bias", "bias_z", "rmse", "cover90", "cover95"]
    columns = [f"{v}_{short[e]}" for v in order for e in estimators]
    return wide[[*index, "truth", *columns]]


def headline(rows: pd.DataFrame) -> pd.DataFrame:
    """Per cell, functional group and estimator: the figures the issue asks for."""
    rows = rows.assign(abs_bias_over_sd=rows.bias.abs() / rows.sd)
    out = rows.groupby(["study", "family", "n", "functional", "estimator"], sort=False).agg(
        rows=("truth", "size"),
        R=("R", "min"),
        mean_abs_bias=("bias", lambda b: b.abs().mean()),
        max_abs_bias_over_sd=("abs_bias_over_sd", "max"),
        max_abs_bias_z=("bias_z", lambda z: z.abs().max()),
        rmse=("rmse", "mean"),
        sd=("sd", "mean"),
        cover90=("cover90", "mean"),
        min_cover90=("cover90", "min"),
        cover95=("cover95", "mean"),
        min_cover95=("cover95", "min"),
    )
    return out.reset_index()


def variance_ratio(rows: pd.DataFrame, study: str = "linear") -> pd.DataFrame:
    """On ``study``, per family and row: the one-step's sampling variance over the plug-in's."""
    cell = rows[rows.study == study]
    index = ["family", "n", "effect", "functional", "level"]
    sd = cell.fillna({"level": -1.0}).set_index([*index, "estimator"]).sd.unstack("estimator")
    if "plugin" not in sd or "onestep" not in sd:
        return pd.DataFrame()
    out = pd.DataFrame(
        {
            "sd_plugin": sd.plugin,
            "sd_onestep": sd.onestep,
            "var_ratio": (sd.onestep / sd.plugin) ** 2,
        }
    )
    if "onestep_classifier" in sd:
        out["sd_classifier"] = sd.onestep_classifier
        out["var_ratio_classifier"] = (sd.onestep_classifier / sd.plugin) ** 2
    out = out.reset_index()
    return out.replace({"level": {-1.0: np.nan}})


def extremes(raw: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """One-step data-set rows with a reported SE over 5x the row's median SE, or |z| > 4."""
    raw = raw[raw.estimator.str.startswith("onestep")].assign(level_key=_level_key(raw))
    truth = truth.assign(level_key=_level_key(truth)).drop(columns="level")
    merged = raw.merge(truth, on=["study", "effect", "functional", "level_key"], how="left")
    keys = ["study", "family", "n", "estimator", *ROW]
    median_se = merged.fillna({"level": -1.0}).groupby(keys).se.transform("median")
    merged["se_over_median"] = merged.se / median_se
    merged["z"] = (merged.estimate - merged.truth) / merged.se
    bad = merged[(merged.se_over_median > 5) | (merged.z.abs() > 4)]
    columns = [*keys[:4], "seed", *ROW, "truth", "estimate", "se", "se_over_median", "z"]
    return bad[columns].sort_values(["study", "family", "estimator", "seed"])


def _binomial_se(p: float, r: int) -> float:
    return math.sqrt(p * (1 - p) / r)


def report(raw: pd.DataFrame, truth: pd.DataFrame, raw_name: str) -> str:
    """The markdown report of the raw rows."""
    rows = summarise(raw, truth)
    head = headline(rows)
    ratio = variance_ratio(rows)
    seconds = raw.groupby(KEY)[["fit_seconds", "plugin_seconds", "onestep_seconds", "seconds"]]
    timing = seconds.first().groupby(["study", "family", "n"]).mean().round(1).reset_index()
    settings = raw.groupby(["study", "family", "n"]).agg(
        data_sets=("seed", "nunique"),
        seeds=("seed", lambda s: f"{s.min()}-{s.max()}"),
        bootstrap=("bootstrap", "first"),
        draws=("draws", "first"),
        folds=("folds", "first"),
        classifier=("estimator", lambda e: "onestep_classifier" in set(e)),
    )
    onestep = raw[raw.estimator == "onestep"].groupby(["study", "family", "n"])
    settings["onestep_ratio"] = onestep.density_ratio.agg(lambda r: ", ".join(sorted(set(r))))
    settings["max_ipw_weight"] = onestep.max_weight.max()
    r_values = sorted(raw.groupby(KEY[:3]).seed.nunique().unique())
    se_lines = [
        f"R = {r}: {_binomial_se(0.90, r):.3f} at 90 %, {_binomial_se(0.95, r):.3f} at 95 %"
        for r in r_values
    ]
    wild = extremes(raw, truth)
    clf_rows = rows[rows.estimator == "onestep_classifier"]
    clf = (
        _wide(rows[rows.study.isin(clf_rows.study.unique())], ("onestep", "onestep_classifier"))
        if len(clf_rows)
        else pd.DataFrame()
    )
    text = [
        "# Doubly robust study: plug-in against the cross-fitted one-step estimator",
        "",
        "Written by `python experiments/doubly_robust.py` (settings below); rebuilt from the raw "
        f"rows in `{raw_name}` by `--report`. Every data set is an independent draw of the SCM "
        "(seed = data-set index, also the fit's seed); truths come from the structural "
        "equations with 1e6 shared draws.",
        "",
        "## Studies",
        "",
        *[f"* `{name}`: {STUDIES[name].description}" for name in raw.study.unique()],
        "",
        "Every study's propensity is logistic in X except `bimodal`'s (0.5 + 0.2 tanh X), so the "
        "logistic GLM propensity of the one-step estimator is right there only approximately.",
        "",
        "## Settings",
        "",
        f"Every fit: `dj.fit(data, generators=family, bootstrap=B, crossfit={FOLDS}, seed=seed)` "
        "(default `TrainConfig`, logistic propensity and classifier); queries with "
        f"`num_draws = bootstrap_draws = {_values(raw.draws)}`, no distances, "
        "`draws_per_row = 500` (the default) for the one-step. Plug-in intervals: bootstrap "
        "percentile intervals of the B replicates (none when B = 0: coverage nan). One-step "
        "intervals: the query's own at 95 % (Wald from the influence values for mean and CDF "
        "rows, Gaussian-multiplier percentile for quantile rows); at 90 % `estimate +- 1.645 "
        "se` with the query's reported SEs (the same rule for mean and CDF rows; for quantiles "
        "the Wald form of the multiplier draws' SD).",
        "",
        markdown_table(settings.reset_index()),
        "",
        READING,
        "## How to read the tables",
        "",
        "* `sd`: the spread of the estimates across data sets (the estimator's sampling SD).",
        "* `bias_z` = bias / (sd / sqrt(R)): |z| > 3 is bias beyond the noise of R data sets.",
        "* `se_over_sd` (one-step): mean reported SE over the sampling SD (1 = calibrated).",
        "* `cover90`, `cover95`: share of intervals containing the truth; binomial SE of one "
        "row's coverage at the nominal level: " + "; ".join(se_lines) + ". Group means "
        "average correlated rows, so their SE is not much smaller.",
        "* `pl` = plug-in, `os` = one-step with `density_ratio='auto'` (the ratio each cell "
        "used: `onestep_ratio` in the settings table), `clf` = one-step with the classifier's "
        "ratio.",
        "",
        "## Headline (per functional group)",
        "",
        markdown_table(head),
        "",
        "## Plug-in and one-step, row by row",
        "",
        markdown_table(_wide(rows)),
        "",
        "## One-step variance over plug-in variance on the well-specified linear SCM",
        "",
        markdown_table(ratio) if len(ratio) else "Not run.",
        "",
        "## Extreme one-step data sets",
        "",
        "Per data set, one-step rows whose reported SE is over 5 times the row's median SE "
        "across data sets, or whose error is over 4 reported SEs (`z`).",
        "",
        markdown_table(wild) if len(wild) else "None.",
        "",
        "## Density ratio: generators' densities against the classifier (one-step)",
        "",
        markdown_table(clf) if len(clf) else "Not run.",
        "",
        "## Time per data set, seconds (fit with cross-fitting and bootstrap; queries)",
        "",
        "`plugin_seconds`: both plug-in queries (0 when B = 0); `onestep_seconds`: one one-step "
        "query (it simulates the plug-in too); `seconds`: everything, the classifier's query "
        "included.",
        "",
        markdown_table(timing),
        "",
        "## Every estimator and row",
        "",
        markdown_table(rows),
        "",
    ]
    return "\n".join(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", default=",".join(ROBUSTNESS_STUDIES))
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--n", default="2000", help="rows per data set, comma-separated")
    parser.add_argument("--seeds", type=int, default=20, help="data sets per cell (default 20)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=50, help="plug-in replicates (0: none)")
    parser.add_argument("--draws", type=int, default=20_000, help="draws per arm")
    parser.add_argument(
        "--classifier",
        default="outcome_misspecified",
        help="studies that also get the classifier's density ratio ('' for none)",
    )
    parser.add_argument("--raw", default="experiments/results/doubly_robust_raw.csv")
    parser.add_argument("--out", default="experiments/results/doubly_robust.md")
    parser.add_argument("--report", action="store_true", help="only rebuild --out from --raw")
    parser.add_argument("--quick", action="store_true", help="tiny settings (CI smoke run)")
    args = parser.parse_args()
    studies = _parse_list(args.studies, list(STUDIES), "study")
    families = _parse_list(args.families, FAMILIES, "family")
    classifier = set(args.classifier.split(",")) if args.classifier else set()
    try:
        sizes = [int(v) for v in args.n.split(",")]
    except ValueError:
        print(f"doubly_robust: --n must be integers, got {args.n!r}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.quick:
        studies, families, sizes, classifier = ["outcome_misspecified"], ["linear"], [300], set()
        args.seeds, args.bootstrap, args.draws = 2, 0, 2000
    raw_path = Path(args.raw)
    raw_path.parent.mkdir(parents=True, exist_ok=True)

    if not args.report:
        done = _done(raw_path)
        for name in studies:
            spec = spec_of(STUDIES[name])
            for family in families:
                for n in sizes:
                    for seed in range(args.first_seed, args.first_seed + args.seeds):
                        if (name, family, n, seed) in done:
                            continue
                        table = run_cell(
                            name,
                            family,
                            n,
                            seed,
                            spec,
                            args.bootstrap,
                            args.draws,
                            name in classifier,
                        )
                        table.to_csv(raw_path, mode="a", header=not raw_path.exists(), index=False)
                        print(f"{name} {family} n={n} seed={seed}: {table.seconds.iloc[0]} s")
    raw = pd.read_csv(raw_path)
    text = report(raw, _truth_table(list(raw.study.unique())), raw_path.name)
    out = Path(args.out)
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
