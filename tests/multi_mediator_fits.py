"""Shared, cached fits for the multi-mediator tests (one compile per configuration per process).

Every fit uses the linear generators (closed form) on the two_mediators SCM, 20,000 draws.
"""

import functools

import numpy as np
import statsmodels.api as sm

import dcma_jax as dj
from dcma_jax.datasets import CONTINUOUS_TREATMENT, TWO_MEDIATORS

N, DRAWS = 3000, 20_000
# Same functionals in every fit (explicit CDF points: the default depends on the data), so the
# binary and continuous analyses share one compiled arm_effects (arms are traced).
SETTINGS = dict(generators="linear", num_draws=DRAWS, cdf_points=(2.0,), seed=1)
PSE = "Y(1,M1(0),M2(1,M1(0)))"


@functools.cache
def frame(study=TWO_MEDIATORS, seed=0, n=N):
    return study.observational(seed, n)


def data_of(frame, treatment_type="binary"):
    return dj.MediationData.from_dataframe(
        frame,
        treatment="A",
        mediators=["M1", "M2"],
        outcome="Y",
        covariates=["X"],
        types={"A": treatment_type},
    )


@functools.cache
def interventional_result():
    """Interventional effects plus one path-specific effect, one analyze call."""
    return dj.analyze(
        data_of(frame()),
        effects="interventional",
        path_specific=[PSE],
        **SETTINGS,
    )


@functools.cache
def continuous_result():
    return dj.analyze(
        data_of(frame(CONTINUOUS_TREATMENT), "continuous"),
        effects="interventional",
        path_specific=[PSE],
        treatment_values=(1.0, 0.0),
        dose_grid=(-1.0, 0.0, 1.0),
        **SETTINGS,
    )


def ols_standard_errors(frame, effects):
    """Delta-method SEs of closed-form effects of the fitted linear-Gaussian equations.

    ``effects`` maps a name to ``f(coef) -> value`` with ``coef`` holding the OLS coefficients
    ``b1`` (A in M1), ``b2``, ``d`` (A, M1 in M2), ``t``, ``g1``, ``g2`` (A, M1, M2 in Y).
    The three equations' estimates are asymptotically independent (recursive system with
    independent errors), so the covariance is block diagonal; gradients by central differences.
    """
    a, x = frame["A"].to_numpy(float), frame["X"].to_numpy()
    m1, m2, y = frame["M1"].to_numpy(), frame["M2"].to_numpy(), frame["Y"].to_numpy()
    fits = [
        (sm.OLS(m1, sm.add_constant(np.c_[a, x])).fit(), {"b1": 1}),
        (sm.OLS(m2, sm.add_constant(np.c_[a, m1, x])).fit(), {"b2": 1, "d": 2}),
        (sm.OLS(y, sm.add_constant(np.c_[a, m1, m2, x])).fit(), {"t": 1, "g1": 2, "g2": 3}),
    ]
    names = [n for _, idx in fits for n in idx]
    coef = {n: fit.params[i] for fit, idx in fits for n, i in idx.items()}
    cov = np.zeros((len(names), len(names)))
    pos = 0
    for fit, idx in fits:
        sel = list(idx.values())
        cov[pos : pos + len(sel), pos : pos + len(sel)] = fit.cov_params()[np.ix_(sel, sel)]
        pos += len(sel)
    out = {}
    for name, f in effects.items():
        grad = []
        for n in names:
            up, down = dict(coef), dict(coef)
            up[n] += 1e-6
            down[n] -= 1e-6
            grad.append((f(up) - f(down)) / 2e-6)
        grad = np.asarray(grad)
        out[name] = float(np.sqrt(grad @ cov @ grad))
    return out


CLOSED_FORMS = {
    "IDE": lambda c: c["t"],
    "IIE_M1": lambda c: c["g1"] * c["b1"],
    "IIE_M2": lambda c: c["g2"] * (c["b2"] + c["d"] * c["b1"]),
    "TE": lambda c: c["t"] + c["g1"] * c["b1"] + c["g2"] * (c["b2"] + c["d"] * c["b1"]),
    f"PSE[{PSE}]": lambda c: c["t"] + c["g2"] * c["b2"],
}
