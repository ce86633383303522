"""The bootstrap: diverged replicates dropped and counted, undefined proportions mediated."""

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import dcma_jax as dj
from dcma_jax.fitted import fit_keys
from dcma_jax.generators import LinearGaussian
from dcma_jax.inference import MAX_DIVERGED_SHARE, bootstrap_counts

B = 20


class _FailsAboveThreshold(LinearGaussian):
    """Not registered: the closed form 'diverges' (NaN) when the weighted mean of x exceeds t."""

    registry_name: ClassVar[str | None] = None
    threshold: float = 0.0

    def closed_form(self, x, context, weights):
        variables = super().closed_form(x, context, weights)
        mean = jnp.sum(weights * x[:, 0]) / jnp.sum(weights)
        factor = jnp.where(mean > self.threshold, jnp.nan, 1.0)
        return jax.tree.map(lambda v: factor * v, variables)


def _replicate_means(data, seed):
    counts = np.asarray(bootstrap_counts(fit_keys(seed)[1], data.n, B))
    return counts @ data.mediators[:, 0] / counts.sum(axis=1)


def test_a_diverged_replicate_is_dropped_and_counted(default_data):
    means = np.sort(_replicate_means(default_data, seed=0))
    failing = _FailsAboveThreshold(threshold=float(means[-2]))  # exactly one replicate above
    fitted = dj.fit(default_data, generators={"M": failing, "Y": "linear"}, bootstrap=B)
    assert sum(fitted.report.replicate_diverged) == 1
    result = fitted.effects(num_draws=1000)
    assert result.meta["bootstrap_dropped"] == 1
    assert result.table[["ci_low", "ci_high"]].notna().all().all()


def test_too_many_diverged_replicates_fail_the_fit(default_data):
    # Replicates whose resample mean of M exceeds the full-sample mean (about half) diverge;
    # the point fit does not.
    point = float(np.mean(default_data.mediators[:, 0])) + 1e-4  # above float32 rounding
    above = int(np.sum(_replicate_means(default_data, seed=0) > point))
    assert above / B > MAX_DIVERGED_SHARE
    failing = _FailsAboveThreshold(threshold=point)
    with pytest.raises(dj.TrainingError, match=rf"node 'M' .* diverged in {above} of 20 boot"):
        dj.fit(default_data, generators={"M": failing, "Y": "linear"}, bootstrap=B)


def test_proportion_mediated_interval_is_undefined_when_te_straddles_zero():
    # Both arms hold the same (M, Y) rows: the sample effects are exactly 0.
    rng = np.random.default_rng(0)
    m, y = rng.normal(size=200), rng.normal(size=200)
    frame = pd.DataFrame({"A": [0] * 200 + [1] * 200, "M": np.r_[m, m], "Y": np.r_[y, y]})
    data = dj.MediationData.from_dataframe(frame, treatment="A", mediators=["M"], outcome="Y")
    result = dj.analyze(data, generators="linear", bootstrap=B, num_draws=2000)
    te = result.table[(result.table.effect == "TE") & (result.table.functional == "mean")]
    assert float(te.ci_low.iloc[0]) < 0 < float(te.ci_high.iloc[0])  # no effect at all
    pm = result.table[result.table.effect.str.startswith("PM_")]
    assert pm.ci_low.isna().all() and pm.ci_high.isna().all() and pm.estimate.notna().all()
    undefined = result.meta["undefined"]
    assert {u["effect"] for u in undefined} == {"PM_control", "PM_treated"}
    assert all("the interval of TE contains 0" in u["reason"] for u in undefined)
    doc = result.to_dict()
    assert all(r["ci_low"] is None for r in doc["effects"] if r["effect"].startswith("PM_"))
