"""NHEFS (Hernán & Robins, What If): quitting smoking, smoking intensity and weight change.

Data: the NHEFS extract of *Causal Inference: What If* (1,629 cigarette smokers aged 25-74
examined in 1971-75 and followed up in 1982), read through the optional ``causaldata`` package
(``pip install -e .[experiments]``); no copy of the data is kept in this repository. The 63 rows
without a 1982 weight are dropped, as in the book (1,566 remain).

Model: treatment ``qsmk`` (quit smoking between baseline and 1982), mediator
``smkintensity82_71`` (change in cigarettes per day, 1982 minus baseline), outcome ``wt82_71``
(weight change in kg), covariates as in What If's IP-weighting and standardisation chapters
(12-13): sex, race, age and age^2, education (5 levels), smokeintensity and its square,
smokeyrs and its square, exercise (3 levels), active (3 levels), wt71 and its square. The
categorical covariates (pandas ``category`` columns) are one-hot encoded by MediationData; the
squares are extra columns.

Reported:

* mean effects: dcma ``linear`` beside statsmodels' ``Mediation.fit(method="parametric")`` and
  the exact product-of-coefficients plug-in; the total effect beside What If's IP-weighted
  estimate (Program 12.2), recomputed here;
* the distributional view from dcma ``mdn`` (and ``generators="auto"``): quantile, CDF and
  Wasserstein-1 effects of TE, NDE and NIE with bootstrap bands, beside IP-weighted quantile
  and CDF contrasts of the total effect; the spread of the mdn point fit over seeds;
* per-node diagnostics (held-out log-likelihood, CRPS, PIT KS) and the mediator-overlap
  effective sample sizes of the cross-world arms;
* sensitivity to mediator-outcome confounding: the linear model (breakpoint beside the
  residual-correlation formula) and an mdn mediator with a flow outcome.

    python experiments/nhefs.py            # B = 100 (linear and mdn), 100,000 draws, n_rep 1000
    python experiments/nhefs.py --quick    # B = 5, 2,000 draws, mdn of 3 epochs without
                                           # bootstrap, no auto, flow or seeds: a smoke test
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.api as sm
from _common import (
    breakpoint_formulas,
    closed_form,
    compare,
    dcma_column,
    formula,
    side_by_side,
    statsmodels_mediation,
)
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

import dcma_jax as dj
from dcma_jax import plotting
from dcma_jax.results import markdown_table
from dcma_jax.sensitivity import SensitivityError

OUT = Path(__file__).parent / "results" / "nhefs.md"
TREATMENT, MEDIATOR, OUTCOME = "qsmk", "smkintensity82_71", "wt82_71"
SQUARED = ("age", "smokeintensity", "smokeyrs", "wt71")
COVARIATES = [
    "sex",
    "race",
    "age",
    "age_sq",
    "education",
    "smokeintensity",
    "smokeintensity_sq",
    "smokeyrs",
    "smokeyrs_sq",
    "exercise",
    "active",
    "wt71",
    "wt71_sq",
]
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
CDF_POINTS = (0.0, 5.0, 10.0, 15.0)  # kg: P(no gain), P(gain <= 5), ...
SHOWN = ("TE", "NDE_control", "NIE_treated")
# What If, Program 12.2 (nonstabilised IP weights; the stabilised ones of 12.3 give the same
# coefficient): 3.440535, robust 95% CI [2.409131, 4.47194], n = 1,566. Output of the book's
# Stata code (E. Murray, github.com/eleanormurray/causalinferencebook_stata) as rendered in a
# public bookdown of that code; the book's text rounds it to 3.4 kg (2.4, 4.5).
WHAT_IF_IPW = (3.440535, 2.409131, 4.47194)


def load() -> pd.DataFrame:
    try:
        from causaldata import nhefs  # optional: the `experiments` extra
    except ImportError:
        raise SystemExit(
            "experiments/nhefs.py needs the optional causaldata package: "
            "pip install -e .[experiments]"
        ) from None
    return nhefs.load_pandas().data


def prepare(raw: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Rows with a 1982 weight and the squared covariates; also the number of rows dropped."""
    needed = [TREATMENT, MEDIATOR, OUTCOME, *(c for c in COVARIATES if not c.endswith("_sq"))]
    missing = [c for c in needed if c not in raw.columns]
    if missing:
        raise SystemExit(f"the NHEFS data lacks the columns {missing}")
    df = raw.dropna(subset=[OUTCOME]).reset_index(drop=True)
    for name in SQUARED:
        df[f"{name}_sq"] = df[name] ** 2
    return df, len(raw) - len(df)


def mediation_data(df: pd.DataFrame) -> dj.MediationData:
    # smkintensity82_71 takes integer values: declared continuous, as OLS models it.
    return dj.MediationData.from_dataframe(
        df,
        treatment=TREATMENT,
        mediators=MEDIATOR,
        outcome=OUTCOME,
        covariates=COVARIATES,
        types={MEDIATOR: "continuous"},
    )


def weighted_quantiles(y: np.ndarray, w: np.ndarray, levels) -> np.ndarray:
    """The smallest y with weighted ECDF >= q, per level q."""
    order = np.argsort(y)
    y, cum = y[order], np.cumsum(w[order]) / w.sum()
    return np.array([y[min(np.searchsorted(cum, q), y.size - 1)] for q in levels])


def ipw_contrasts(df: pd.DataFrame) -> np.ndarray:
    """IP-weighted total-effect contrasts: mean, quantiles, CDF points (What If's weights).

    Weights 1 / P(A = a | X) from the logistic model of What If's Program 12.2 (the same
    covariates and squares). The quantile and CDF rows contrast the weighted distributions of
    wt82_71 among quitters and non-quitters (Firpo 2007, Econometrica 75(1)); the last row is
    the quantile effect at 0.9 minus the one at the median (does the upper tail move more?).
    """
    p = sm.Logit.from_formula(formula(TREATMENT, COVARIATES), df).fit(disp=0).predict(df)
    a, y = df[TREATMENT].to_numpy(), df[OUTCOME].to_numpy()
    w = np.where(a == 1, 1.0 / p, 1.0 / (1.0 - p))
    treated, control = a == 1, a == 0
    mean = np.average(y[treated], weights=w[treated]) - np.average(y[control], weights=w[control])
    quant = weighted_quantiles(y[treated], w[treated], QUANTILES) - weighted_quantiles(
        y[control], w[control], QUANTILES
    )
    cdf = [
        np.average(y[treated] <= t, weights=w[treated])
        - np.average(y[control] <= t, weights=w[control])
        for t in CDF_POINTS
    ]
    return np.concatenate([[mean], quant, cdf, [quant[-1] - quant[len(QUANTILES) // 2]]])


def ipw_table(df: pd.DataFrame, boot: int, seed: int) -> pd.DataFrame:
    """:func:`ipw_contrasts` with nonparametric-bootstrap percentile intervals."""
    estimate = ipw_contrasts(df)
    rng = np.random.default_rng(seed)
    reps = np.array(
        [ipw_contrasts(df.iloc[rng.integers(0, len(df), len(df))]) for _ in range(boot)]
    )
    low = high = np.full_like(estimate, np.nan)
    if boot > 1:
        low, high = np.percentile(reps, [2.5, 97.5], axis=0)
    labels = [("mean", np.nan)] + [("quantile", q) for q in QUANTILES]
    labels += [("cdf", t) for t in CDF_POINTS]
    labels += [("quantile 0.9 - quantile 0.5", np.nan)]
    return pd.DataFrame(
        {
            "functional": [f for f, _ in labels],
            "level": [lv for _, lv in labels],
            "ipw": estimate,
            "ipw_low": low,
            "ipw_high": high,
        }
    )


def effect_rows(result: dj.MediationResult, effects=SHOWN) -> pd.DataFrame:
    t = result.table
    keep = t.effect.isin(effects) & t.functional.isin(["mean", "quantile", "cdf", "wasserstein"])
    return t[keep][["effect", "functional", "level", "estimate", "ci_low", "ci_high"]].reset_index(
        drop=True
    )


def te_beside_ipw(result: dj.MediationResult, ipw: pd.DataFrame) -> pd.DataFrame:
    rows = effect_rows(result, ("TE",))
    rows = rows[rows.functional != "wasserstein"].reset_index(drop=True)
    merged = rows.merge(ipw, on=["functional", "level"], how="left")
    merged["band"] = [
        f"[{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else "-"
        for lo, hi in zip(merged.ci_low, merged.ci_high, strict=True)
    ]
    merged["ipw band"] = [
        f"[{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else "-"
        for lo, hi in zip(merged.ipw_low, merged.ipw_high, strict=True)
    ]
    return merged[["functional", "level", "estimate", "band", "ipw", "ipw band"]].rename(
        columns={
            "estimate": "dcma mdn",
            "band": "mdn 95% band",
            "ipw": "IPW",
            "ipw band": "IPW 95% band",
        }
    )


def diagnostics_table(named: dict[str, dj.MediationResult]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-node fit quality and per-arm overlap of several results, one row each."""
    nodes, arms = [], []
    for label, result in named.items():
        diag = result.meta["diagnostics"]
        for node, d in diag["nodes"].items():
            nodes.append(
                {
                    "model": label,
                    "node": node,
                    "rows scored": d["rows"],
                    "log-lik": d["heldout_log_lik"],
                    "CRPS": d["crps"],
                    "PIT KS": d["pit_ks"],
                    "KS 95%": d["pit_ks_95"],
                }
            )
        for entry in diag["overlap"]:
            value = entry["ess_fraction"]
            arms.append(
                {
                    "model": label,
                    "arm": entry["arm"],
                    "effects": ", ".join(entry["effects"]),
                    "ESS fraction": "n/a" if value is None else f"{value:.2e}",
                    "warned": entry["warning"] is not None,
                }
            )
    return pd.DataFrame(nodes), pd.DataFrame(arms)


def mediator_figure(df: pd.DataFrame, mdn: dj.FittedMediation, path: Path) -> Path:
    """Observed change in cigarettes/day by arm (left) and the mdn's draws of M(0), M(1)."""
    figure = Figure(figsize=(8.0, 3.0), layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2, sharex=True)
    bins = np.arange(-80.5, 51.5, 2.0)
    for a, label in ((0, "non-quitters"), (1, "quitters")):
        m = df.loc[df[TREATMENT] == a, MEDIATOR]
        left.hist(m, bins=bins, density=True, alpha=0.55, color=f"C{a}", label=f"{label} (A={a})")
    left.set_title("observed", fontsize=10)
    left.set_xlabel("smkintensity82_71 (cig/day)")
    left.legend(fontsize=8)
    for a in (0, 1):
        m = mdn.simulate([f"Y({a},{MEDIATOR}({a}))"], num_draws=20_000)[MEDIATOR]
        right.hist(m, bins=bins, density=True, alpha=0.55, color=f"C{a}", label=f"M({a})")
    right.set_title("mdn draws (all 1,566 covariate rows)", fontsize=10)
    right.set_xlabel("smkintensity82_71 (cig/day)")
    right.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=plotting.DPI, format="png")
    return path


def shrink_png(path: Path) -> Path:
    """Rewrites a PNG with a 128-colour palette (about a third of the size; lines stay sharp)."""
    Image.open(path).convert("RGB").quantize(colors=128).save(path, optimize=True)
    return path


def seed_spread(data, seeds, config) -> pd.DataFrame:
    """The mdn point fit (no bootstrap) refitted with other seeds: a few headline numbers."""
    rows = []
    for s in seeds:
        fitted = dj.fit(data, generators="mdn", bootstrap=0, seed=s, config=config)
        res = fitted.effects(num_draws=50_000, quantiles=(0.5, 0.9), cdf_points=(), distances=())
        row = {"seed": s}
        for effect in SHOWN:
            row[f"{effect} mean"] = res.estimate(effect, "mean")
            row[f"{effect} q0.9"] = res.estimate(effect, "quantile", 0.9)
        rows.append(row)
    return pd.DataFrame(rows)


def flow_model(data, seed, draws, grid, sens_kw):
    """mdn mediator + flow outcome (one normal score, so sensitivity applies): point fit."""
    gens = {MEDIATOR: "mdn", OUTCOME: "flow"}
    fitted = dj.fit(data, generators=gens, bootstrap=0, seed=seed)
    result = fitted.effects(
        num_draws=draws, quantiles=QUANTILES, cdf_points=CDF_POINTS, distances=("wasserstein",)
    )
    return result, fitted.sensitivity(rho_grid=grid, num_draws=20_000, **sens_kw)


def auto_model(data, seed, draws, mdn_res) -> dict:
    """``generators="auto"`` (point fit): its choice, the CRPS table, its gap to the mdn fit."""
    fitted = dj.fit(data, generators="auto", bootstrap=0, seed=seed)
    result = fitted.effects(
        num_draws=draws, quantiles=QUANTILES, cdf_points=CDF_POINTS, distances=("wasserstein",)
    )
    selection = fitted.describe()["generator_selection"]
    rows = [
        {"node": node, "family": fam, "held-out CRPS": crps, "SE vs lowest": s["se"][fam]}
        for node, s in selection.items()
        for fam, crps in s["crps"].items()
    ]
    return {
        "chosen": {node: s["chosen"] for node, s in selection.items()},
        "table": pd.DataFrame(rows),
        "gap": float(np.max(np.abs(result.table.estimate - mdn_res.table.estimate))),
        "result": result,
    }


def provenance() -> str:
    """The commit the numbers came from, and whether dcma_jax/ differed from it."""
    root = Path(__file__).parent.parent

    def git(*cmd: str) -> str:
        done = subprocess.run(["git", *cmd], cwd=root, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return "dcma_jax version unknown (no git)"
    changed = [line for line in git("status", "--porcelain", "dcma_jax").splitlines() if line]
    dirty = f", with {len(changed)} files of dcma_jax/ changed since" if changed else ""
    return f"dcma_jax at commit {head}{dirty}"


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for name in ("bootstrap", "mdn_bootstrap", "seeds"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.draws < 1:
        parser.error(f"--draws must be positive, got {args.draws}")
    if args.n_rep < 2:
        parser.error(f"--n-rep must be at least 2, got {args.n_rep}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: B = 5, 2000 draws, short mdn"
    )
    parser.add_argument("--bootstrap", type=int, default=100, help="linear B (and IPW)")
    parser.add_argument("--mdn-bootstrap", type=int, default=100)
    parser.add_argument("--draws", type=int, default=100_000)
    parser.add_argument("--n-rep", type=int, default=1000, help="statsmodels simulations")
    parser.add_argument("--seeds", type=int, default=4, help="extra mdn point fits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    check_args(parser, args)
    boot = 5 if args.quick else args.bootstrap
    mdn_boot = 0 if args.quick else args.mdn_bootstrap
    draws = 2000 if args.quick else args.draws
    n_rep = 20 if args.quick else args.n_rep
    n_seeds = 0 if args.quick else args.seeds
    config = dj.TrainConfig(max_epochs=3) if args.quick else dj.TrainConfig()
    fig_dir = args.out.parent / args.out.stem
    started = time.perf_counter()
    source = provenance()  # before anything runs: the code the numbers come from
    raw = load()
    df, dropped = prepare(raw)
    data = mediation_data(df)
    sd_y = float(df[OUTCOME].std())
    quitters = df[df[TREATMENT] == 1]
    stayers = df[df[TREATMENT] == 0]
    on_line = int((quitters[MEDIATOR] == -quitters.smokeintensity).sum())
    stayers_zero = int((stayers[MEDIATOR] == -stayers.smokeintensity).sum())

    # --- linear generators beside statsmodels ----------------------------------------------
    names = (df, TREATMENT, MEDIATOR, OUTCOME, COVARIATES)
    exact = closed_form(*names)
    smr = statsmodels_mediation(*names, n_rep, 4231)
    linear = dj.fit(data, generators="linear", bootstrap=boot, seed=args.seed)
    lin_res = linear.effects(
        num_draws=draws, quantiles=QUANTILES, cdf_points=CDF_POINTS, distances=("wasserstein",)
    )
    lin = dcma_column(lin_res)
    print(lin_res.summary().to_string(), flush=True)
    # Gaussian location model + common random numbers: every draw's contrast is the same, so
    # only float32 round-off separates dcma from the closed form (as in jobs.py).
    tol_exact = 1e-4 * sd_y
    check = compare(lin, exact, smr, tol_exact)
    print(check.to_string(), flush=True)
    ipw = ipw_table(df, boot, args.seed)
    print(ipw.to_string(), flush=True)
    t_linear = time.perf_counter() - started

    # --- sensitivity: linear model, then mdn mediator + flow outcome -----------------------
    t0 = time.perf_counter()
    grid = (-0.5, 0.0, 0.5) if args.quick else tuple(np.round(np.linspace(-0.9, 0.9, 19), 2))
    sens_kw = dict(quantiles=(), cdf_points=(), distances=(), breakpoints=not args.quick)
    sens = linear.sensitivity(
        rho_grid=grid,
        num_draws=draws if args.quick else 20_000,
        bootstrap_draws=draws if args.quick else 2_000,
        **sens_kw,
    )
    bp = sens.breakpoints
    bp = bp[bp.functional == "mean"].reset_index(drop=True) if len(bp) else bp
    rho_corr, rho_param = breakpoint_formulas(*names)
    nie_bp = bp[(bp.effect == "NIE_treated") & (bp.bound == "estimate")].rho if len(bp) else []
    nie_rho = float(nie_bp.iloc[0]) if len(nie_bp) else float("nan")
    print(bp.to_string(), flush=True)
    print(f"NIE breakpoint: dcma {nie_rho:.4f}, formulas {rho_corr:.4f} / {rho_param:.4f}")
    flow_res = flow_sens = None
    if not args.quick:  # the flow's compile alone outlasts the smoke test's budget
        flow_res, flow_sens = flow_model(data, args.seed, draws, grid, sens_kw)
    t_sens = time.perf_counter() - t0

    # --- distributional view: mdn, auto, seeds ---------------------------------------------
    t0 = time.perf_counter()
    mdn = dj.fit(data, generators="mdn", bootstrap=mdn_boot, seed=args.seed, config=config)
    mdn_res = mdn.effects(
        num_draws=draws,
        bootstrap_draws=min(draws, 20_000),
        quantiles=QUANTILES,
        cdf_points=CDF_POINTS,
        distances=("wasserstein",),
    )
    mdn_rows = effect_rows(mdn_res)
    print(mdn_rows.to_string(), flush=True)
    try:  # an mdn outcome has no single normal score: refused, and the reason reported
        mdn.sensitivity(rho_grid=(0.0,), quantiles=(), cdf_points=(), distances=())
        mdn_refusal = "ran (unexpected)"
    except SensitivityError as err:
        mdn_refusal = f"`SensitivityError: {err}`"
    t_mdn = time.perf_counter() - t0
    t0 = time.perf_counter()
    auto = None if args.quick else auto_model(data, args.seed, draws, mdn_res)
    t_auto = time.perf_counter() - t0
    t0 = time.perf_counter()
    spread = seed_spread(data, range(args.seed + 1, args.seed + 1 + n_seeds), config)
    t_seeds = time.perf_counter() - t0

    # --- figures -------------------------------------------------------------------------
    figures = [
        mediator_figure(df, mdn, fig_dir / "mediator_by_arm.png"),
        plotting.plot_quantile_effects(mdn_res, fig_dir / "quantile_effects_mdn.png"),
        plotting.plot_arm_distributions(mdn_res, fig_dir / "arm_distributions_mdn.png"),
        plotting.plot_sensitivity(
            sens, fig_dir / "sensitivity_linear.png", effects=("TE", "NDE_control", "NIE_treated")
        ),
    ]
    figures = [shrink_png(path) for path in figures]
    elapsed = time.perf_counter() - started

    # --- report ----------------------------------------------------------------------------
    def est(result, effect, functional="mean", level=None):
        return result.estimate(effect, functional, level)

    def band(result, effect, functional="mean", level=None):
        t = result.table
        mask = (t.effect == effect) & (t.functional == functional)
        mask &= t.level.isna() if level is None else np.isclose(t.level, level)
        row = t[mask].iloc[0]
        if not np.isfinite(row.ci_low):
            return f"{row.estimate:.2f}"
        return f"{row.estimate:.2f} [{row.ci_low:.2f}, {row.ci_high:.2f}]"

    ipw_q = ipw[ipw.functional == "quantile"].set_index("level")
    named = {"linear": lin_res, "mdn": mdn_res}
    if flow_res is not None:
        named["mdn M + flow Y"] = flow_res
    nodes, overlap = diagnostics_table(named)
    lin_ess = [e["ess_fraction"] for e in lin_res.meta["diagnostics"]["overlap"]]
    mdn_ess = [e["ess_fraction"] for e in mdn_res.meta["diagnostics"]["overlap"]]
    lin_m = lin_res.meta["diagnostics"]["nodes"][MEDIATOR]
    y_fit = sm.OLS.from_formula(formula(OUTCOME, [TREATMENT, MEDIATOR, *COVARIATES]), df).fit()
    m_fit = sm.OLS.from_formula(formula(MEDIATOR, [TREATMENT, *COVARIATES]), df).fit()
    b_m, a_m = float(y_fit.params[MEDIATOR]), float(m_fit.params[TREATMENT])
    nde_bp = bp[(bp.effect == "NDE_control") & (bp.bound == "estimate")].rho if len(bp) else []
    nde_rho = float(nde_bp.iloc[0]) if len(nde_bp) else float("nan")
    l_curve = sens.curve
    l_curve = l_curve[l_curve.effect.isin(SHOWN) & (l_curve.functional == "mean")]
    l_curve = l_curve.pivot(index="rho", columns="effect", values="estimate").reset_index()
    l_curve = l_curve[["rho", *SHOWN]]
    if flow_res is None:
        flow_text = ["(skipped with --quick)"]
        flow_te = ""
    else:
        fbp = flow_sens.breakpoints
        fbp = fbp[(fbp.effect == "NIE_treated") & (fbp.functional == "mean")] if len(fbp) else fbp
        f_nie = ", ".join(f"{r:.3f}" for r in fbp.rho) if len(fbp) else "none on the grid"
        f_curve = flow_sens.curve
        f_curve = f_curve[f_curve.effect.isin(SHOWN) & (f_curve.functional == "mean")]
        f_curve = f_curve.pivot(index="rho", columns="effect", values="estimate").reset_index()
        flow_text = [
            "mdn mediator with a flow outcome, point curve without bootstrap; zero crossings "
            f"of the NIE_treated estimate: {f_nie}.",
            "",
            markdown_table(f_curve[["rho", *SHOWN]], digits=3),
        ]
        flow_te = (
            "The mdn-mediator + flow-outcome point fit gives TE "
            f"{est(flow_res, 'TE'):.2f}, quantiles 0.1 / 0.5 / 0.9 "
            + " / ".join(f"{est(flow_res, 'TE', 'quantile', q):.2f}" for q in (0.1, 0.5, 0.9))
            + f", NDE_control {est(flow_res, 'NDE_control'):.2f}, NIE_treated "
            f"{est(flow_res, 'NIE_treated'):.2f}."
        )
    if auto is None:
        auto_text = ["(skipped with --quick)"]
    else:
        same = " (identical)" if auto["gap"] < 1e-6 else ""
        auto_text = [
            f"Held-out CRPS per family (one-standard-error rule); chosen: {auto['chosen']}.",
            "",
            markdown_table(auto["table"], digits=3),
            "",
            "auto then refits the chosen families on all rows with the fit's seed; the "
            "largest difference between its point estimates and those of the mdn fit above "
            f"is {auto['gap']:.2g}{same}. The choice is made once, on the observed rows, and "
            "not repeated per bootstrap replicate.",
        ]
    setting = (
        f"dcma linear B = {boot}, mdn B = {mdn_boot}, {draws:,} draws per arm "
        f"(replicates {min(draws, 20_000):,}); statsmodels `Mediation.fit(method='parametric', "
        f"n_rep={n_rep})`, RandomState(4231); IPW bootstrap B = {boot}; seed {args.seed}; "
        f"{source}."
        + (" QUICK settings (smoke test): the numbers mean nothing." if args.quick else "")
    )
    spread_row = ipw[ipw.functional == "quantile 0.9 - quantile 0.5"].iloc[0]
    tail_verdict = ""
    if spread_row.ipw_low > 0:
        tail_verdict = (
            "Its band excludes zero: quitting moves the upper tail of weight change (the "
            "heavy gainers) more than the middle, a spreading of the distribution that no "
            "mean effect shows. "
        )
    te_fits = [est(mdn_res, "TE"), *(spread["TE mean"] if len(spread) else [])]
    te_range = (
        f"Over the {len(te_fits)} mdn point fits (seed {args.seed} and the seeds below) the "
        f"mean TE runs from {min(te_fits):.2f} to {max(te_fits):.2f} kg, against "
        f"{ipw.ipw.iloc[0]:.2f} (IPW) and {exact['Total effect']:.2f} (OLS)."
    )
    tail = (
        f"{spread_row.ipw:.2f} kg [{spread_row.ipw_low:.2f}, {spread_row.ipw_high:.2f}]"
        if np.isfinite(spread_row.ipw_low)
        else f"{spread_row.ipw:.2f} kg"
    )
    lines = [
        "# NHEFS: does quitting smoking act on weight change through smoking intensity?",
        "",
        "An illustration on real data without ground truth: what dcma's distributional view "
        "and its diagnostics say about a mediation question whose mediator is almost fixed "
        "in one arm. No number below is known to be right; the references are other "
        "estimators under the same assumptions.",
        "",
        "## Data",
        "",
        "The NHEFS extract of Hernán & Robins, *Causal Inference: What If* (cigarette smokers "
        "aged 25-74 examined in 1971-75 and weighed again in 1982), read through the optional "
        "`causaldata` package (`pip install -e .[experiments]`; not copied into this "
        f"repository). Of {len(raw):,} rows, {dropped} have no 1982 weight and are dropped, "
        f"as in the book: n = {len(df):,}, {len(quitters)} quitters (`qsmk` = 1). Outcome "
        f"`wt82_71`, weight change 1971-1982 in kg (mean {df[OUTCOME].mean():.2f}, SD "
        f"{sd_y:.2f}, range {df[OUTCOME].min():.1f} to {df[OUTCOME].max():.1f}). Mediator "
        "`smkintensity82_71`, the change in cigarettes per day from baseline to 1982. "
        "Covariates as in What If's chapters 12-13: sex, race, age, education (5 levels), "
        "smokeintensity, smokeyrs, exercise (3 levels), active (3 levels) and wt71, with the "
        "squares of age, smokeintensity, smokeyrs and wt71 as extra columns; MediationData "
        "one-hot encodes the pandas `category` columns (first level dropped): "
        f"{len(data.covariate_names)} covariate columns.",
        "",
        f"Settings: {setting} Total {elapsed:.0f} s on this machine (2 cores shared with "
        f"other jobs): linear, statsmodels and IPW {t_linear:.0f} s, sensitivity "
        f"{t_sens:.0f} s, mdn {t_mdn:.0f} s, auto {t_auto:.0f} s, {n_seeds} extra mdn "
        f"seeds {t_seeds:.0f} s.",
        "",
        "## Is the change in smoking intensity a sensible mediator?",
        "",
        f"Only in part. A quitter smokes nothing in 1982, so for {on_line} of the "
        f"{len(quitters)} quitters the mediator is exactly minus the baseline intensity, "
        "which is a covariate: given X, M(1) is a point mass. Among non-quitters it scatters "
        f"around zero (mean {stayers[MEDIATOR].mean():.2f}, SD {stayers[MEDIATOR].std():.2f}"
        f"); {stayers_zero} of {len(stayers):,} non-quitters also report 0 cigarettes/day in "
        "1982. The cross-world arm Y(1, M(0)), behind NIE_treated and NDE_control, asks "
        "about quitters whose intensity changed as a non-quitter's would, i.e. quitters who "
        "still smoke: nobody in the data, and hardly a well-defined intervention (treatment "
        "and mediator are not variation-independent). Y(0, M(1)), behind NIE_control and "
        "NDE_treated, is a non-quitter who cuts down to nothing, which is close to quitting. "
        "So the NDE/NIE split is set by how each outcome model extrapolates, not by the "
        "data, and the overlap diagnostic should flag it. The total effect compares two "
        "observed worlds and has no such problem.",
        "",
        f"![mediator by arm]({fig_dir.name}/mediator_by_arm.png)",
        "",
        "## Mean effects: dcma linear beside statsmodels",
        "",
        markdown_table(side_by_side(lin, exact, smr, n_rep), digits=4),
        "",
        "The linear total effect is the OLS coefficient of qsmk in wt82_71 ~ qsmk + X "
        f"({exact['Total effect']:.4f}; the product-of-coefficients identity). What If's "
        f"IP-weighted estimate (Program 12.2) is {WHAT_IF_IPW[0]:.2f} kg "
        f"[{WHAT_IF_IPW[1]:.2f}, {WHAT_IF_IPW[2]:.2f}]; recomputed here from the same "
        f"logistic model it is {ipw.ipw.iloc[0]:.6f} (so causaldata's extract is the book's "
        f"data), bootstrap band [{ipw.ipw_low.iloc[0]:.2f}, {ipw.ipw_high.iloc[0]:.2f}]. In "
        f"the linear model the mediator hardly matters: b = {b_m:.4f} kg per cigarette/day "
        f"(outcome regression), a = {a_m:.2f} cigarettes/day (mediator regression), so "
        f"ACME = a b = {a_m * b_m:.4f} kg and the direct effect is nearly the whole effect.",
        "",
        "Checks, as in `jobs.py`: `tol_exact` = 1e-4 SD(wt82_71) (dcma's linear generators "
        "are the OLS fits and, with common random numbers, every draw's contrast is the "
        "same, so only round-off separates dcma from the closed form); `tol_sm` = 4 "
        "statsmodels Monte Carlo SEs + tol_exact.",
        "",
        markdown_table(check, digits=5),
        "",
        "## What the distribution adds",
        "",
        "The linear model is a Gaussian location model: each of its quantile effects equals "
        "its mean effect by construction. mdn (a mixture density network per node) lets both "
        f"conditional distributions take any shape. mdn, B = {mdn_boot}; CDF points at 0, 5, "
        "10 and 15 kg (a CDF effect is the change in P(wt82_71 <= t), negative when weight "
        "gain becomes more likely); W1 is the Wasserstein-1 distance between the two arms.",
        "",
        markdown_table(mdn_rows, digits=3),
        "",
        "The total effect needs no mediator, and it has a check that leans on no outcome "
        "model: IP-weighted quantile and CDF contrasts (What If's weights from the same "
        f"logistic model, bootstrap B = {boot}).",
        "",
        markdown_table(te_beside_ipw(mdn_res, ipw), digits=3),
        "",
        f"![quantile effects, mdn]({fig_dir.name}/quantile_effects_mdn.png)",
        "",
        f"![arm distributions, mdn]({fig_dir.name}/arm_distributions_mdn.png)",
        "",
        f"IPW: the TE at the median is {ipw_q.ipw[0.5]:.2f} kg "
        f"[{ipw_q.ipw_low[0.5]:.2f}, {ipw_q.ipw_high[0.5]:.2f}], at the 90th percentile "
        f"{ipw_q.ipw[0.9]:.2f} kg [{ipw_q.ipw_low[0.9]:.2f}, {ipw_q.ipw_high[0.9]:.2f}]; the "
        f"difference of the two (does the upper tail move more than the middle?) is {tail}. "
        f"{tail_verdict}mdn: {band(mdn_res, 'TE', 'quantile', 0.5)} at the median and "
        f"{band(mdn_res, 'TE', 'quantile', 0.9)} at the 90th percentile, mean "
        f"{band(mdn_res, 'TE')}. {te_range} {flow_te}",
        "",
        f"NIE_treated, mean: linear {est(lin_res, 'NIE_treated'):.3f}, mdn "
        f"{band(mdn_res, 'NIE_treated')}"
        + (f", mdn + flow {est(flow_res, 'NIE_treated'):.2f}" if flow_res is not None else "")
        + ". Whether these agree or not is no evidence: no effective rows stand behind the "
        "cross-world arms (overlap below), so each number is its model's extrapolation.",
        "",
        '### `generators="auto"`',
        "",
        *auto_text,
        "",
        "### Seeds",
        "",
        f"The mdn point fit refitted with {n_seeds} other seeds (no bootstrap, 50,000 draws "
        "per arm): the initialisation and the early-stopping split of a neural fit move its "
        "estimates, so one fit's point estimate is one draw of them.",
        "",
        markdown_table(spread, digits=3) if len(spread) else "(skipped with --quick)",
        "",
        "## Diagnostics",
        "",
        "Fit quality per node, in original units. The linear generators are closed forms, "
        "scored in-sample on all rows; the neural ones on their held-out validation rows. A "
        "calibrated model has PIT KS below `KS 95%` (1.36 / sqrt(rows)) about 95% of the "
        "time.",
        "",
        markdown_table(nodes, digits=3),
        "",
        (
            "The mdn and mdn M + flow Y fits share the mediator's fit (same family and seed). "
            if flow_res is not None
            else ""
        )
        + f"The linear mediator model's PIT KS is {lin_m['pit_ks']:.3f} against "
        f"{lin_m['pit_ks_95']:.3f}"
        + (
            ": it fails, as a homoscedastic Gaussian must when the truth is a point mass "
            "for quitters and a spread for non-quitters."
            if lin_m["pit_ks"] > lin_m["pit_ks_95"]
            else "."
        )
        + " Mediator overlap of the cross-world arms "
        "(effective-sample-size fraction of the importance weights that turn the mediators "
        "seen under the outcome's treatment value into the arm's; below 0.1 is warned):",
        "",
        markdown_table(overlap, digits=3),
        "",
        f"Linear model: {lin_ess[0]:.4f} and {lin_ess[1]:.4f} (about "
        f"{lin_ess[0] * len(df):.0f} and {lin_ess[1] * len(df):.0f} effective rows of "
        f"{len(df):,}); mdn: {mdn_ess[0]:.1e} and {mdn_ess[1]:.1e} (about "
        f"{mdn_ess[0] * len(df):.0f} and {mdn_ess[1] * len(df):.0f}). "
        + (
            "Every cross-world arm is warned: every NDE and NIE here is an extrapolation, "
            "and dcma says so in `result.meta['diagnostics']['overlap']`."
            if overlap.warned.all()
            else f"{int(overlap.warned.sum())} of {len(overlap)} cross-world arms are warned."
        ),
        "",
        "## Sensitivity to mediator-outcome confounding",
        "",
        "`fitted.sensitivity(...)` correlates the mediator's and the outcome's noise by rho "
        "(R mediation's `medsens`). Linear model, zero crossings of the mean effects and of "
        "their bands:",
        "",
        markdown_table(bp, digits=4) if len(bp) else "(breakpoints skipped with --quick)",
        "",
        f"NIE breakpoint: dcma rho = {nie_rho:.4f}; residual-correlation formula (Imai, "
        f"Keele & Yamamoto 2010) {rho_corr:.4f}; in the fitted parameters {rho_param:.4f}. "
        "The linear NIE is about zero at rho = 0, so its breakpoint is near 0 and says "
        f"little. The NDE's estimate crosses zero at rho = {nde_rho:.3f}: unmeasured common "
        "causes of intensity change and weight change of that strength would move the whole "
        "effect from the direct to the indirect path, because the treatment moves the "
        f"mediator by {abs(a_m):.0f} cigarettes/day and a small change in b is a large "
        "change in a b. The total effect does not move with rho.",
        "",
        markdown_table(l_curve, digits=3),
        "",
        f"![sensitivity, linear]({fig_dir.name}/sensitivity_linear.png)",
        "",
        f"With the mdn outcome dcma refuses: {mdn_refusal}. Hence the flow outcome (one "
        "noise) with the mdn mediator:",
        "",
        *flow_text,
        "",
        "## Caveats",
        "",
        "* No ground truth. The references assume no unmeasured confounding of quitting "
        "given X (and, for NDE/NIE, of the mediator and the outcome); they are other "
        "estimators, not the truth.",
        "* The natural effects are not identified by these data without extrapolation "
        "(overlap above); they are reported to show what the diagnostics catch, not as "
        "findings. The total effect and its quantiles are the substantive part.",
        "* Bootstrap bands of neural fits include refitting noise (each replicate has its "
        "own initialisation) but not the choice of architecture or of auto's family; "
        f"percentile bands from B = {mdn_boot} are rough in the tails.",
        f"* Selection: the {dropped} rows without a 1982 weight are dropped, not reweighted "
        "(What If's section 12.6 adds inverse-probability-of-censoring weights; not done "
        "here).",
        "* Quantile effects contrast marginal distributions; they are not effects on the "
        "person at that quantile (no rank invariance is assumed).",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out} and {len(figures)} figures in {fig_dir} ({elapsed:.0f} s)")


if __name__ == "__main__":
    main()
