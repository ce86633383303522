"""Pieces the real-data experiments share: statsmodels references and dcma's mean-effect column.

Used by ``framing.py``, ``jobs.py`` and ``nhefs.py`` (imported as ``_common``: a script's own
folder is first on ``sys.path``; the smoke tests put ``experiments/`` there too).

* :data:`ROWS`: R mediation's row names beside dcma's effect names;
* :func:`mediation_table`: point estimates and Monte Carlo SEs of a statsmodels ``Mediation``;
* :func:`statsmodels_mediation`, :func:`closed_form`, :func:`breakpoint_formulas`: the linear
  (or probit-mediator) model with a linear outcome, by statsmodels and in closed form;
* :func:`dcma_column`, :func:`compare`, :func:`side_by_side`: dcma's mean rows and the tables
  that set them beside the references.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import statsmodels.api as sm
from statsmodels.stats.mediation import Mediation

import dcma_jax as dj

# R mediation names -> dcma effect names (README, "Effects and their R mediation names").
ROWS = [
    ("ACME (control)", "NIE_control"),
    ("ACME (treated)", "NIE_treated"),
    ("ADE (control)", "NDE_control"),
    ("ADE (treated)", "NDE_treated"),
    ("Total effect", "TE"),
    ("Prop. mediated (control)", "PM_control"),
    ("Prop. mediated (treated)", "PM_treated"),
]


def formula(lhs: str, rhs: list[str]) -> str:
    return f"{lhs} ~ " + " + ".join(rhs)


def mediation_table(med: Mediation, n_rep: int, seed: int) -> pd.DataFrame:
    """Point estimates and Monte Carlo SEs (SD over reps / sqrt(n_rep)) of ``med``."""
    res = med.fit(method="parametric", n_rep=n_rep, rng=np.random.RandomState(seed))
    per_rep = {
        "ACME (control)": res.indirect_effects[0].mean(0),
        "ACME (treated)": res.indirect_effects[1].mean(0),
        "ADE (control)": res.direct_effects[0].mean(0),
        "ADE (treated)": res.direct_effects[1].mean(0),
    }
    per_rep["Total effect"] = sum(per_rep.values()) / 2
    summary = res.summary()
    rows = []
    for name, _ in ROWS:
        se = np.nan
        if name in per_rep:
            se = float(np.std(per_rep[name], ddof=1) / np.sqrt(n_rep))
        rows.append((name, float(summary.loc[name, "Estimate"]), se))
    return pd.DataFrame(rows, columns=["row", "estimate", "mc_se"]).set_index("row")


def _mediator_model(df, treatment, mediator, covariates):
    """OLS, or a probit GLM for a 0/1 mediator, of the mediator on treatment and covariates."""
    m_formula = formula(mediator, [treatment, *covariates])
    if df[mediator].nunique() == 2:
        family = sm.families.Binomial(link=sm.families.links.Probit())
        return sm.GLM.from_formula(m_formula, df, family=family)
    return sm.OLS.from_formula(m_formula, df)


def statsmodels_mediation(
    df, treatment, mediator, outcome, covariates, n_rep, seed
) -> pd.DataFrame:
    """statsmodels' parametric ``Mediation`` with a linear outcome (see :func:`mediation_table`)."""
    y_model = sm.OLS.from_formula(formula(outcome, [treatment, mediator, *covariates]), df)
    m_model = _mediator_model(df, treatment, mediator, covariates)
    return mediation_table(Mediation(y_model, m_model, treatment, mediator), n_rep, seed)


def closed_form(df, treatment, mediator, outcome, covariates) -> dict[str, float]:
    """Plug-in mean effects at the ML fit, exactly (linear outcome, no interaction)."""
    y = sm.OLS.from_formula(formula(outcome, [treatment, mediator, *covariates]), df).fit()
    b, c = y.params[mediator], y.params[treatment]
    m = _mediator_model(df, treatment, mediator, covariates).fit()
    if df[mediator].nunique() == 2:
        shift = np.mean(
            m.predict(df.assign(**{treatment: 1})) - m.predict(df.assign(**{treatment: 0}))
        )
    else:
        shift = m.params[treatment]
    acme = b * float(shift)
    te = acme + c
    return {
        "ACME (control)": acme,
        "ACME (treated)": acme,
        "ADE (control)": c,
        "ADE (treated)": c,
        "Total effect": te,
        "Prop. mediated (control)": acme / te,
        "Prop. mediated (treated)": acme / te,
    }


def breakpoint_formulas(df, treatment, mediator, outcome, covariates) -> tuple[float, float]:
    """ACME = 0 at rho* for the linear-linear model, two ways.

    Imai, Keele & Yamamoto (2010, Stat. Sci. 25(1), sec. 5): rho* = corr(e1, e3), the sample
    correlation of the residuals of mediator ~ treatment + X and of outcome ~ treatment + X
    (the outcome regression without the mediator). The same quantity in the fitted
    parameters: with e3 = b e1 + e2, rho* = b sigma_M / sqrt(b^2 sigma_M^2 + sigma_Y^2),
    evaluated with the unbiased scales RSS / (n - p) that dcma's linear generators use.
    """
    rhs = [treatment, *covariates]
    e1 = sm.OLS.from_formula(formula(mediator, rhs), df).fit()
    e3 = sm.OLS.from_formula(formula(outcome, rhs), df).fit()
    y = sm.OLS.from_formula(formula(outcome, [treatment, mediator, *covariates]), df).fit()
    corr = float(np.corrcoef(e1.resid, e3.resid)[0, 1])
    bs = y.params[mediator] * np.sqrt(e1.scale)
    return corr, float(bs / np.sqrt(bs**2 + y.scale))


def dcma_column(result: dj.MediationResult) -> dict[str, tuple[float, float, float]]:
    """``{R row name: (estimate, ci_low, ci_high)}`` of dcma's mean rows."""
    out = {}
    for name, effect in ROWS:
        row = result.table[(result.table.effect == effect) & (result.table.functional == "mean")]
        out[name] = tuple(float(v) for v in row[["estimate", "ci_low", "ci_high"]].iloc[0])
    return out


def compare(lin, exact, smr, tol_exact) -> pd.DataFrame:
    """dcma's linear mean effects against the closed form and statsmodels, with tolerances."""
    rows = []
    for name, _ in ROWS[:5]:
        d_est = lin[name][0]
        s_est, s_se = smr.loc[name, "estimate"], smr.loc[name, "mc_se"]
        # statsmodels averages over n_rep parameter draws (MC SE from their spread); dcma is
        # the plug-in at the ML fit. Both target the closed form: 4 statsmodels SEs + dcma's.
        tol_sm = 4 * s_se + tol_exact
        rows.append(
            (
                name,
                d_est,
                exact[name],
                tol_exact,
                abs(d_est - exact[name]) <= tol_exact,
                s_est,
                tol_sm,
                abs(d_est - s_est) <= tol_sm,
            )
        )
    return pd.DataFrame(
        rows,
        columns=[
            "row",
            "dcma_linear",
            "closed_form",
            "tol_exact",
            "ok_exact",
            "statsmodels",
            "tol_sm",
            "ok_sm",
        ],
    )


def side_by_side(lin, exact, smr, n_rep) -> pd.DataFrame:
    """statsmodels, the closed form and dcma's linear estimate with its interval, per row."""
    rows = []
    for name, _ in ROWS:
        est, lo, hi = lin[name]
        rows.append(
            {
                "row": name,
                f"statsmodels (n_rep {n_rep})": smr.loc[name, "estimate"],
                "closed form (ML plug-in)": exact[name],
                "dcma linear": est,
                "dcma linear 95% CI": f"[{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else "undefined",
            }
        )
    return pd.DataFrame(rows)
