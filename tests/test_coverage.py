"""Bootstrap percentile intervals cover the true effects at close to the nominal rate (slow).

Linear-Gaussian SCM with known NDE = t, NIE = g b (see test_effects.py). Over R independent data
sets, the number of 95% intervals that cover the truth is Binomial(R, ~0.95): SD ~0.028 at
R = 60. We require coverage >= 0.85 for each effect (3.5 SD below nominal; the percentile
bootstrap is mildly liberal at small n, which this allows) and <= 1.
"""

import numpy as np
import pandas as pd
import pytest

import dcma_jax as dj

B_M, C_M = 0.6, 0.5
T, G, H = 0.4, 0.7, 0.3
TRUE = {"TE": T + G * B_M, "NDE_control": T, "NIE_treated": G * B_M}
REPLICATES, N, BOOT = 60, 300, 200


def _data(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=N)
    a = (rng.uniform(size=N) < 1 / (1 + np.exp(-0.5 * x))).astype(int)
    m = B_M * a + C_M * x + rng.normal(size=N)
    y = T * a + G * m + H * x + rng.normal(size=N)
    frame = pd.DataFrame({"X": x, "A": a, "M": m, "Y": y})
    return dj.MediationData.from_dataframe(
        frame, treatment="A", mediators="M", outcome="Y", covariates=["X"]
    )


@pytest.mark.slow
def test_bootstrap_coverage_is_near_nominal():
    hits = {name: 0 for name in TRUE}
    for r in range(REPLICATES):
        result = dj.analyze(
            _data(1000 + r),
            generators="linear",
            num_draws=4000,
            bootstrap=BOOT,
            bootstrap_draws=2000,
            quantiles=(0.5,),
            distances=(),
            seed=r,
        )
        for name, truth in TRUE.items():
            row = result.summary().query("effect == @name and functional == 'mean'").iloc[0]
            hits[name] += int(row.ci_low <= truth <= row.ci_high)
    coverage = {name: h / REPLICATES for name, h in hits.items()}
    print("coverage", coverage)
    assert all(0.85 <= c <= 1.0 for c in coverage.values()), coverage
