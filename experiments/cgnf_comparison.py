"""cGNF against dcma's flow: time to the natural effects and their accuracy on recovery SCMs.

cGNF (PyPI ``cgnf``, causal graphical normalizing flows in PyTorch: UMNN monotonic flows over a
given DAG) is the closest peer of dcma's flow generators. For each SCM of
:mod:`dcma_jax.datasets.recovery` in ``--studies`` and data sets ``0..K-1`` (``--seeds K``,
default 5) of ``--n`` rows (default 2000), both tools get the same DataFrame:

* dcma: ``dj.fit(data, generators="flow", seed=seed)`` then ``.effects()`` on the natural
  effects with ``--draws`` draws per arm, no bootstrap (``recovery.run_cell`` with B = 0);
* cGNF: ``process`` (80/20 split), ``train`` and ``sim(mediator=["M"])`` with the settings of
  its README (:data:`CGNF_TRAIN`; ``--mc-samples`` Monte Carlo draws, see below), in a
  temporary folder (cGNF reads and writes CSV and pickle files).

cGNF's ``sim`` reports four means, E[Y(0)], E[Y(1)], E[Y(0, M(1))] and E[Y(1, M(0))], from
common noise draws; the five natural effects on the mean follow as differences (TE, NDE_control
= E[Y(1,M(0))] - E[Y(0)], NIE_treated = E[Y(1)] - E[Y(1,M(0))], and the other two). It reports no
quantiles; its saved potential-outcome draws give the quantile effects (differences of marginal
quantiles, dcma's definition), computed here.

Each tool is timed from the DataFrame to the effect numbers in this process (dcma: fit and
effects, JAX compilation included in the first call of a study; cGNF: files, process, train
and sim). The first data set of each study is queried from dcma twice, to show the warm time.
Every effect row is compared with the study's exact nested-counterfactual truth
(``recovery.truths``, 1e6 draws): bias, SD across data sets and RMSE per tool.

Raw rows go to ``--raw``, the markdown report to ``--out``. Run from the repository root, with
one thread for each library (the script sets torch's; set XLA's and OpenMP's):

    OMP_NUM_THREADS=1 XLA_FLAGS=--xla_cpu_multi_thread_eigen=false \\
        python experiments/cgnf_comparison.py [--studies S,..] [--seeds K] [--n N]
        [--draws D] [--mc-samples S] [--raw PATH] [--out PATH] [--report] [--quick]

``--quick`` is a smoke run (one small data set, a few cGNF epochs; output to a temp folder).
Needs the ``bench`` extra (``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import math
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from recovery import QUANTILES, run_cell, truths

import dcma_jax as dj
from dcma_jax.datasets.recovery import RECOVERY_STUDIES
from dcma_jax.results import markdown_table

STUDIES = ("linear", "heteroscedastic")
EFFECTS = ("TE", "NDE_control", "NDE_treated", "NIE_control", "NIE_treated")
# cGNF README's training example (github.com/cGNF-Dev/cGNF, "Training"); nb_epoch is a cap
# that early stopping (nb_estop epochs without a better validation loss) ends long before.
CGNF_TRAIN = {
    "trn_batch_size": 128,
    "val_batch_size": 2048,
    "learning_rate": 1e-4,
    "nb_epoch": 50000,
    "emb_net": [90, 80, 60, 50],
    "int_net": [50, 40, 30, 20],
    "nb_estop": 50,
    "val_freq": 1,
}
RAW_FIRST = ["study", "tool", "seed", "call", "effect", "functional", "level", "estimate"]
CGNF_TEST_SIZE = 0.2  # process(): the validation share for early stopping (README default)


def cgnf_frame(study, frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Numeric columns in causal order (covariates, A, M, Y), text categories coded 0, 1, ..
    (sorted labels), and the columns cGNF should dequantize (those and the treatment)."""
    columns = [*study.covariates, study.treatment, *study.mediators, study.outcome]
    out, categorical = frame[columns].copy(), [study.treatment]
    for col in columns:
        if not pd.api.types.is_numeric_dtype(out[col]):
            out[col] = pd.Categorical(out[col], categories=sorted(out[col].unique())).codes
            categorical.append(col)
    return out.astype(float), categorical


def cgnf_dag(study, columns: list[str]) -> pd.DataFrame:
    """Adjacency (row = parent, column = child): X -> A, M, Y; A -> M, Y; M -> Y."""
    adj = pd.DataFrame(0, index=columns, columns=columns)
    a, ms, y = study.treatment, list(study.mediators), study.outcome
    for x in study.covariates:
        adj.loc[x, [a, *ms, y]] = 1
    adj.loc[a, [*ms, y]] = 1
    adj.loc[ms, y] = 1
    return adj


def effect_rows(y00, y11, y01, y10, quantiles) -> pd.DataFrame:
    """The five natural effects on the mean and quantiles from the draws of the four arms
    (``y01`` = Y(0, M(1)), ``y10`` = Y(1, M(0)))."""
    arms = {"y00": y00, "y11": y11, "y01": y01, "y10": y10}
    pairs = {
        "TE": ("y11", "y00"),
        "NDE_control": ("y10", "y00"),
        "NDE_treated": ("y11", "y01"),
        "NIE_control": ("y01", "y00"),
        "NIE_treated": ("y11", "y10"),
    }
    means = {k: float(np.mean(v)) for k, v in arms.items()}
    quants = {k: np.quantile(v, quantiles) for k, v in arms.items()}
    rows = []
    for effect, (arm, ref) in pairs.items():
        rows.append((effect, "mean", np.nan, means[arm] - means[ref]))
        diff = quants[arm] - quants[ref]
        rows += [(effect, "quantile", q, float(d)) for q, d in zip(quantiles, diff, strict=True)]
    return pd.DataFrame(rows, columns=["effect", "functional", "level", "estimate"])


def run_cgnf(study, frame: pd.DataFrame, seed: int, train_args: dict, mc_samples: int):
    """cGNF from the DataFrame to the natural effects: (rows, timings dict)."""
    import cGNF  # noqa: PLC0415 (heavy; only when run)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cgnf_") as tmp:
        path = tmp + "/"
        data, categorical = cgnf_frame(study, frame)
        data.to_csv(path + "data.csv", index=False)
        cgnf_dag(study, list(data.columns)).to_csv(path + "dag.csv")
        y, a, m = study.outcome, study.treatment, list(study.mediators)
        with open(path + "log.txt", "w") as log, contextlib.redirect_stdout(log):
            cGNF.process(
                path=path,
                dataset_name="data",
                dag_name="dag",
                test_size=CGNF_TEST_SIZE,
                cat_var=categorical,
                seed=seed,
            )
            cGNF.train(path=path, dataset_name="data", model_name="models", seed=seed, **train_args)
            trained = time.perf_counter()
            means = cGNF.sim(
                path=path,
                dataset_name="data",
                model_name="models",
                n_mce_samples=mc_samples,
                seed=seed,
                treatment=a,
                cat_list=[0, 1],
                mediator=m,
                outcome=y,
                inv_datafile_name="po",
            )
        # po.csv: A = 0 rows then A = 1 rows; po_m1_0: Y(0, M(1)); po_m1_1: Y(1, M(0)).
        total = pd.read_csv(path + "po.csv")[y].to_numpy()
        y01 = pd.read_csv(path + "po_m1_0.csv")[y].to_numpy()
        y10 = pd.read_csv(path + "po_m1_1.csv")[y].to_numpy()
        rows = effect_rows(total[:mc_samples], total[mc_samples:], y01, y10, QUANTILES)
        finished = time.perf_counter()
        val = pd.read_csv(path + "models/val_log_likelihoods.csv").val_log_likelihood
    # Check the draws against the means cGNF reported (same numbers, float32 CSV round trip).
    reported = dict(zip(means["Potential Outcome"], means["Value"].astype(float), strict=True))
    mine = {
        f"E[{y}({a}=0)]": total[:mc_samples].mean(),
        f"E[{y}({a}=1)]": total[mc_samples:].mean(),
        f"E[{y}({a}=0, {m[0]}({a}=1))]": y01.mean(),
        f"E[{y}({a}=1, {m[0]}({a}=0))]": y10.mean(),
    }
    for label, value in mine.items():
        if not math.isclose(reported[label], value, rel_tol=1e-4, abs_tol=1e-4):
            raise SystemExit(f"cgnf: draws disagree with sim's {label}: {value} vs {reported}")
    timing = {
        "seconds": finished - started,
        "train_seconds": trained - started,
        "sim_seconds": finished - trained,
        "epochs": len(val),
        "best_epoch": int(np.argmax(val.to_numpy())) + 1,
    }
    return rows, timing


def run_dcma(name: str, n: int, seed: int, draws: int):
    """dcma's flow: ``recovery.run_cell`` (fit + effects, B = 0) on quantiles only."""
    spec = dj.FunctionalSpec(QUANTILES, (), ())
    table = run_cell(name, "flow", n, seed, spec, 0, draws)
    rows = table[["effect", "functional", "level", "estimate"]].reset_index(drop=True)
    timing = {
        "seconds": float(table.seconds.iloc[0]),
        "train_seconds": float(table.fit_seconds.iloc[0]),
        "sim_seconds": float(table.seconds.iloc[0] - table.fit_seconds.iloc[0]),
    }
    return rows, timing


def _truth_table(names) -> pd.DataFrame:
    spec = dj.FunctionalSpec(QUANTILES, (), ())
    frames = [truths(RECOVERY_STUDIES[s], spec).assign(study=s) for s in names]
    out = pd.concat(frames, ignore_index=True)
    return out[out.functional.isin(["mean", "quantile"]) & out.effect.isin(EFFECTS)]


def _with_truth(raw: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    key = ["study", "effect", "functional", "level_key"]
    raw = raw.assign(level_key=raw.level.fillna(-1).round(6))
    truth = truth.assign(level_key=truth.level.fillna(-1).round(6)).drop(columns="level")
    merged = raw.merge(truth, on=key, how="left").drop(columns="level_key")
    if merged.truth.isna().any():
        raise SystemExit("cgnf_comparison: rows without a truth")
    return merged.assign(error=merged.estimate - merged.truth)


def accuracy(merged: pd.DataFrame) -> pd.DataFrame:
    """Per study, tool and effect row over the data sets: truth, bias, SD, RMSE."""
    first = merged[merged.call != "repeat"]
    keys = ["study", "effect", "functional", "level", "tool"]
    rows = first.groupby(keys, dropna=False, sort=False).agg(
        truth=("truth", "first"),
        data_sets=("error", "size"),
        bias=("error", "mean"),
        sd=("estimate", "std"),
        rmse=("error", lambda e: math.sqrt((e**2).mean())),
    )
    return rows.reset_index()


def reference_sd(path: Path) -> pd.DataFrame:
    """dcma flow's SD over the recovery study's 20 data sets at n = 2000 (mean rows)."""
    if not path.exists():
        return pd.DataFrame(columns=["study", "effect", "recovery_flow_sd_R20"])
    raw = pd.read_csv(path, low_memory=False)
    flow = raw[(raw.family == "flow") & (raw.n == 2000) & (raw.functional == "mean")]
    sd = flow.groupby(["study", "effect"]).estimate.std().rename("recovery_flow_sd_R20")
    return sd.reset_index()


def timing_table(raw: pd.DataFrame) -> pd.DataFrame:
    per_run = raw.groupby(["study", "tool", "seed", "call"], sort=False).first().reset_index()
    rows = []
    for (study, tool, call), g in per_run.groupby(["study", "tool", "call"], sort=False):
        rows.append(
            {
                "study": study,
                "tool": tool,
                "call": call,
                "runs": len(g),
                "mean_seconds": g.seconds.mean(),
                "min_seconds": g.seconds.min(),
                "max_seconds": g.seconds.max(),
                "train_seconds": g.train_seconds.mean(),
                "sim_seconds": g.sim_seconds.mean(),
                "epochs": g.epochs.mean(),
                "load1": g.load1.mean(),
                "load1_end": g.load1_end.mean(),
            }
        )
    return pd.DataFrame(rows)


def headline(raw: pd.DataFrame, acc: pd.DataFrame) -> pd.DataFrame:
    """Per SCM and tool: seconds to effects (first data set; the other runs, for dcma its
    repeat included) and RMSE averaged over the effect rows."""
    runs = raw.groupby(["study", "tool", "seed", "call"], sort=False).seconds.first()
    runs = runs.reset_index()
    rows = []
    for (study, tool), g in runs.groupby(["study", "tool"], sort=False):
        cold = (g.seed == g.seed.min()) & (g.call == "first")
        a = acc[(acc.study == study) & (acc.tool == tool)]
        means, quants = a[a.functional == "mean"], a[a.functional == "quantile"]
        rows.append(
            {
                "study": study,
                "tool": tool,
                "seconds_data_set_0": g[cold].seconds.mean(),
                "seconds_other_runs": g[~cold].seconds.mean(),
                "mean_effects_mean_rmse": means.rmse.mean(),
                "mean_effects_max_rmse": means.rmse.max(),
                "quantile_effects_mean_rmse": quants.rmse.mean(),
            }
        )
    return pd.DataFrame(rows)


def _run_seconds(raw: pd.DataFrame) -> float:
    return raw.groupby(["study", "tool", "seed", "call"]).seconds.first().sum()


def _worst_bias(acc: pd.DataFrame, ref_sd: pd.DataFrame, tool: str) -> str:
    rows = acc[(acc.tool == tool) & (acc.functional == "mean")].merge(ref_sd, how="left")
    rows = rows.assign(ratio=rows.bias.abs() / rows.recovery_flow_sd_R20)
    if rows.ratio.isna().all():
        return "n/a"
    w = rows.loc[rows.ratio.idxmax()]
    return (
        f"{w.ratio:.1f} ({w.study} {w.effect}, bias {w.bias:+.3f}, SD {w.recovery_flow_sd_R20:.3f})"
    )


def discussion(
    raw: pd.DataFrame, acc: pd.DataFrame, head: pd.DataFrame, ref_sd: pd.DataFrame
) -> list[str]:
    """The closing paragraphs; the numbers in them are computed from the rows."""
    k = raw.seed.nunique()
    cgnf = raw[raw.tool == "cgnf"].groupby(["study", "seed"]).first()
    dcma = head[head.tool == "dcma"]
    pair = acc.set_index(["study", "effect", "functional", "level", "tool"]).rmse
    pair = pair.unstack("tool").dropna().reset_index()
    mean_pair = pair[pair.functional == "mean"]
    wins = int((mean_pair.dcma < mean_pair.cgnf).sum())
    qwins = int((pair.dcma < pair.cgnf).sum()) - wins
    ratio = cgnf.seconds.mean() / dcma.seconds_other_runs.mean()
    return [
        "## What this comparison shows and what it does not",
        "",
        f"* K = {k} data sets per SCM"
        + (
            " (the default is 5: at about "
            f"{cgnf.seconds.mean() / 60:.0f} min per cGNF data set on this loaded machine, "
            f"5 data sets of {raw.study.nunique()} SCMs would have taken about "
            f"{5 * raw.study.nunique() * cgnf.seconds.mean() / 3600:.1f} h for cGNF alone "
            "against a budget of about an hour, so K was reduced; the runs here took "
            f"{_run_seconds(raw) / 60:.0f} min in all). "
            if k < 5
            else ". "
        )
        + "With so few data sets the SDs and RMSEs are rough (an SD from K data sets has "
        "K - 1 degrees of freedom); `recovery_flow_sd_R20` is the steadier scale of dcma "
        "flow's sampling SD at this n, and differences between the tools well inside it are "
        "not evidence either way.",
        f"* Time: cGNF took {cgnf.seconds.mean():.0f} s per data set on average "
        f"({cgnf.train_seconds.mean():.0f} s training, {cgnf.epochs.mean():.0f} epochs until "
        f"its early stopping; {cgnf.sim_seconds.mean():.0f} s simulation), dcma "
        f"{dcma.seconds_data_set_0.mean():.0f} s on an SCM's first data set (JAX "
        f"compilation included) and {dcma.seconds_other_runs.mean():.1f} s on the others: "
        f"cGNF / dcma = {ratio:.0f}x compiled, "
        f"{cgnf.seconds.mean() / dcma.seconds_data_set_0.mean():.0f}x with compilation. "
        "cGNF trains in eager PyTorch, 13 minibatches "
        "of 128 per epoch at lr 1e-4, and its `sim` inverts the UMNN flow by 30 bisection "
        "steps per variable over (DAG depth + 1) passes, with a quadrature of about 70 "
        "points inside every evaluation; its simulation time grows linearly with "
        "`n_mce_samples`, which is why this run uses 2000 draws rather than the 10 000 of "
        "its signature or the 50 000 of its README (dcma used 100 000 per arm). All times "
        "are on 2 shared, loaded cores (load averages in the timing table), one thread per "
        "library, niced: absolute seconds are inflated for both tools and noisy; no GPU.",
        f"* Accuracy: dcma's RMSE is lower on {wins} of {len(mean_pair)} mean-effect rows and "
        f"{qwins} of {len(pair) - len(mean_pair)} quantile-effect rows. cGNF's numbers "
        "include Monte Carlo error from 2000 draws (common noise across arms makes mean "
        "contrasts precise, but e.g. NDE_control and NDE_treated, equal in the linear SCM, "
        "come from different arms and differ by it); dcma's Monte Carlo error at 100 000 "
        "draws is negligible. Largest |bias| of a mean effect in units of "
        f"`recovery_flow_sd_R20`: dcma {_worst_bias(acc, ref_sd, 'dcma')}, cGNF "
        f"{_worst_bias(acc, ref_sd, 'cgnf')}; with K = {k} a bias is only estimated to "
        f"about SD / sqrt({k}).",
        "* Not shown: either tool tuned (both ran their documented defaults), other SCMs "
        "(one mediator, n = 2000 only), intervals or coverage (no bootstrap for either), "
        "behaviour on a GPU, or path-specific effects with several mediators. cGNF was "
        "given the DAG with every covariate pointing at A, M and Y, as dcma's roles imply; "
        "a sparser true DAG might help it.",
        "",
    ]


def _versions() -> str:
    names = ("cGNF", "torch", "UMNN", "jax", "jaxlib", "dcma_jax", "numpy")
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    root = Path(dj.__file__).resolve().parents[1]
    try:
        git = ["git", "-C", str(root)]
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True)
        dirty = subprocess.run([*git, "status", "--porcelain", "dcma_jax"], capture_output=True)
        state = " with uncommitted dcma_jax/ edits" if dirty.stdout.strip() else ""
        found.append(f"dcma_jax source at commit {commit.stdout.decode().strip()}{state}")
    except OSError:
        pass
    return ", ".join(found)


def report(raw: pd.DataFrame, truth: pd.DataFrame, meta: dict, ref_sd: pd.DataFrame) -> str:
    merged = _with_truth(raw, truth)
    acc = accuracy(merged)
    mean = acc[acc.functional == "mean"].drop(columns=["functional", "level"])
    wide = mean.set_index(["study", "effect", "truth", "tool"])[["bias", "sd", "rmse"]]
    wide = wide.unstack("tool")
    wide.columns = [f"{tool}_{stat}" for stat, tool in wide.columns]
    wide = wide.reset_index().merge(ref_sd, on=["study", "effect"], how="left")
    order = ["study", "effect", "truth"] + [
        f"{t}_{s}" for s in ("bias", "sd", "rmse") for t in ("dcma", "cgnf")
    ]
    wide = wide[[c for c in order if c in wide] + ["recovery_flow_sd_R20"]]
    quant = acc[acc.functional == "quantile"]
    quant_summary = (
        quant.assign(abs_bias=quant.bias.abs())
        .groupby(["study", "tool"], sort=False)
        .agg(rows=("rmse", "size"), mean_abs_bias=("abs_bias", "mean"), mean_rmse=("rmse", "mean"))
        .reset_index()
    )
    repeat = merged[merged.call == "repeat"]
    same = "not run"
    if len(repeat):
        first = merged[(merged.call == "first") & (merged.tool == "dcma")]
        on = ["study", "seed", "effect", "functional", "level"]
        pair = first.merge(repeat, on=on, suffixes=("", "_r"), how="inner")
        same = f"max |first - repeat| = {np.abs(pair.estimate - pair.estimate_r).max():.2e}"
    seeds = [int(s) for s in sorted(raw.seed.unique())]
    head = headline(raw, acc)
    text = [
        "# cGNF against dcma's flow: time to mediation effects and accuracy",
        "",
        f"Written by `python experiments/cgnf_comparison.py {meta['argv']}` "
        f"(raw rows: `{meta['raw_name']}`; `--report` rebuilds this file from them).",
        "",
        "## Headline",
        "",
        "Seconds from the DataFrame to the effect numbers: `seconds_data_set_0` is the "
        "first data set of the SCM (for dcma, with JAX compilation), `seconds_other_runs` "
        "the mean of the other runs (dcma: its repeat on data set 0 and data sets 1.., "
        "compiled; cGNF: data sets 1..). RMSE against the truth over the K data sets, "
        "averaged (and maximised) over the five mean effects, averaged over the 25 "
        "quantile-effect rows.",
        "",
        markdown_table(head),
        "",
        "## Settings",
        "",
        f"* SCMs: {', '.join(f'`{s}`' for s in raw.study.unique())} of "
        "`dcma_jax.datasets.recovery`; "
        f"n = {meta['n']} rows per data set; data sets (seeds) {seeds} (K = {len(seeds)}). "
        "Both tools get the same DataFrame per data set; fit and simulation seeds = data seed.",
        "* Truths: the SCMs' exact nested counterfactuals (`recovery.truths`, 1e6 draws).",
        f"* dcma: `dj.fit(data, generators='flow', seed=seed)` (default `TrainConfig`: 80/20 "
        f"split, early stopping) then `.effects()` natural effects, {meta['draws']} draws per "
        "arm, no bootstrap, via `recovery.run_cell` (B = 0).",
        "* cGNF: `process(test_size=0.2, cat_var=[A and integer-coded covariates])`, "
        f"`train(**{meta['train']})` (its README's example settings), then "
        f"`sim(n_mce_samples={meta['mc_samples']}, mediator=['M'], cat_list=[0, 1])`. DAG "
        "given to cGNF: every covariate -> A, M, Y; A -> M, Y; M -> Y (the same roles dcma "
        "gets; no edges among covariates). `heteroscedastic`'s text covariate `site` is coded "
        "0, 1, 2 (sorted labels) and dequantized by cGNF as categorical.",
        "* Effect names: cGNF's `sim` reports E[Y(A=0)], E[Y(A=1)], E[Y(A=0, M(A=1))], "
        "E[Y(A=1, M(A=0))]; TE = E[Y(1)] - E[Y(0)], NDE_control = E[Y(1,M(0))] - E[Y(0)], "
        "NDE_treated = E[Y(1)] - E[Y(0,M(1))], NIE_control = E[Y(0,M(1))] - E[Y(0)], "
        "NIE_treated = E[Y(1)] - E[Y(1,M(0))] (dcma's definitions, `dcma_jax.estimands`). "
        "cGNF reports means only; its quantile effects here are differences of marginal "
        "quantiles of its saved potential-outcome draws (numpy `quantile`, as dcma).",
        "* Time: wall seconds in one process from the DataFrame to the effect numbers. dcma: "
        "fit + effects (the first call of each SCM includes JAX compilation; `repeat` is the "
        "same call again on data set 0). cGNF: writing its CSV files, process, train, sim and "
        "reading its draws back.",
        f"* Machine: {meta['machine']}; torch threads {meta['torch_threads']}; "
        f"OMP_NUM_THREADS={meta['omp']}; XLA_FLAGS={meta['xla']}; process niced; shared "
        "with other benchmarks. Load average (1, 5, 15 min) at the run's start "
        f"{meta['load_start']}, when this report was written {meta['load_end']}.",
        f"* Versions: {meta['versions']}.",
        "",
        "## Time to mediation effects (seconds per data set)",
        "",
        "`call`: `first` = each data set's run (for dcma the first data set of an SCM "
        "includes compilation, later ones reuse it); `repeat` = dcma's identical second "
        f"call on data set 0 ({same}). `epochs`: cGNF's epochs until early stopping. `load1`: "
        "1-minute load averages when the run started and ended (mean over runs). "
        "`train_seconds`: dcma's fit; cGNF's files, `process` and `train`. `sim_seconds`: the "
        "rest (dcma's effects query; cGNF's `sim` and reading its draws back).",
        "",
        markdown_table(timing_table(raw)),
        "",
        "## Accuracy of the mean effects against the truth",
        "",
        "Over the K data sets: bias = mean(estimate - truth), sd = SD of the estimates "
        "(ddof 1), rmse = sqrt(mean((estimate - truth)^2)). `recovery_flow_sd_R20`: the SD "
        "of dcma flow's estimates over the recovery study's 20 data sets at n = 2000 "
        "(`recovery_raw.csv`), a steadier reference for the estimator's sampling SD.",
        "",
        markdown_table(wide),
        "",
        "## Quantile effects (levels 0.1, 0.25, 0.5, 0.75, 0.9 of the five effects)",
        "",
        markdown_table(quant_summary),
        "",
        "## Every effect row",
        "",
        markdown_table(acc),
        "",
    ]
    text[text.index("## Settings") : text.index("## Settings")] = discussion(raw, acc, head, ref_sd)
    return "\n".join(text)


def run(studies: list[str], args, train_args: dict, raw_path: Path) -> None:
    """Data set by data set (every SCM at seed 0 first, so a stopped run has equal K per
    SCM): dcma (twice at seed 0) then cGNF; the raw CSV is rewritten after each data set."""
    frames, run_load = [], " ".join(f"{v:.2f}" for v in os.getloadavg())
    for seed in range(args.seeds):
        for name in studies:
            study = RECOVERY_STUDIES[name]
            for call in ["first", "repeat"] if seed == 0 else ["first"]:
                load = os.getloadavg()[0]
                rows, timing = run_dcma(name, args.n, seed, args.draws)
                tags = {"study": name, "tool": "dcma", "seed": seed, "call": call}
                end = os.getloadavg()[0]
                frames.append(rows.assign(**tags, load1=load, load1_end=end, **timing))
                print(f"{name} seed {seed} dcma ({call}): {timing['seconds']:.1f} s", flush=True)
            load = os.getloadavg()[0]
            frame = study.observational(seed, args.n)
            rows, timing = run_cgnf(study, frame, seed, train_args, args.mc_samples)
            tags = {"study": name, "tool": "cgnf", "seed": seed, "call": "first"}
            end = os.getloadavg()[0]
            frames.append(rows.assign(**tags, load1=load, load1_end=end, **timing))
            print(
                f"{name} seed {seed} cgnf: {timing['seconds']:.1f} s, {timing['epochs']} epochs",
                flush=True,
            )
            raw = pd.concat(frames, ignore_index=True)
            raw = raw.assign(
                n=args.n,
                draws=args.draws,
                mc_samples=args.mc_samples,
                nb_epoch=train_args["nb_epoch"],
                run_load_start=run_load,
                torch_threads=torch.get_num_threads(),
                omp_num_threads=os.environ.get("OMP_NUM_THREADS", "unset"),
                xla_flags=os.environ.get("XLA_FLAGS", "unset"),
            )
            raw_path.parent.mkdir(parents=True, exist_ok=True)
            raw[[*RAW_FIRST, *(c for c in raw if c not in RAW_FIRST)]].to_csv(raw_path, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", default=",".join(STUDIES))
    parser.add_argument("--seeds", type=int, default=5, help="data sets per SCM (default 5)")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--draws", type=int, default=100_000, help="dcma draws per arm")
    parser.add_argument("--mc-samples", type=int, default=2000, help="cGNF n_mce_samples")
    parser.add_argument("--raw", default="experiments/results/cgnf_raw.csv")
    parser.add_argument("--out", default="experiments/results/cgnf.md")
    parser.add_argument("--report", action="store_true", help="only rebuild --out from --raw")
    parser.add_argument("--quick", action="store_true", help="smoke run into a temp folder")
    args = parser.parse_args()
    studies = [s.strip() for s in args.studies.split(",") if s.strip()]
    bad = [
        s for s in studies if s not in RECOVERY_STUDIES or RECOVERY_STUDIES[s].mediators != ("M",)
    ]
    if bad:
        raise SystemExit(f"cgnf_comparison: unknown or multi-mediator studies {bad}")
    train_args = dict(CGNF_TRAIN)
    if args.quick:
        studies, args.seeds, args.n, args.draws, args.mc_samples = ["linear"], 1, 400, 2000, 200
        train_args["nb_epoch"] = 2
        folder = Path(tempfile.mkdtemp(prefix="cgnf_quick_"))
        args.raw, args.out = str(folder / "cgnf_raw.csv"), str(folder / "cgnf.md")
    raw_path, out = Path(args.raw), Path(args.out)
    torch.set_num_threads(1)
    meta = {
        "raw_name": raw_path.name,
        "n": args.n,
        "draws": args.draws,
        "mc_samples": args.mc_samples,
        "train": train_args,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "torch_threads": torch.get_num_threads(),
        "versions": _versions(),
    }
    if not args.report:
        run(studies, args, train_args, raw_path)
    raw = pd.read_csv(raw_path)
    meta["load_end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    for key in ("n", "draws", "mc_samples", "torch_threads"):
        meta[key] = int(raw[key].iloc[0])
    meta["train"]["nb_epoch"] = int(raw.nb_epoch.iloc[0])
    meta["load_start"] = raw.run_load_start.iloc[0]
    for key, column, var in (
        ("omp", "omp_num_threads", "OMP_NUM_THREADS"),
        ("xla", "xla_flags", "XLA_FLAGS"),
    ):
        meta[key] = raw[column].iloc[0] if column in raw else os.environ.get(var, "unset")
    meta["argv"] = (
        f"--studies {','.join(raw.study.unique())} --seeds {raw.seed.nunique()} "
        f"--n {meta['n']} --draws {meta['draws']} --mc-samples {meta['mc_samples']}"
    ) + (" (as set by --quick)" if args.quick else "")
    truth = _truth_table(list(raw.study.unique()))
    out.write_text(
        report(raw, truth, meta, reference_sd(Path("experiments/results/recovery_raw.csv")))
    )
    print(f"wrote {out} and {raw_path}")


if __name__ == "__main__":
    main()
