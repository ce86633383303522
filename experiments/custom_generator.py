"""A new generator in one subclass: a conditional Student-t, used in a whole analysis.

The outcome of this study has heavy-tailed noise (Student-t, 3 degrees of freedom). We add a
``student_t`` generator by subclassing :class:`dcma_jax.Generator` — nothing else in the package
changes — and run the analysis with it for the outcome and ``mdn`` for the mediator.

    python experiments/custom_generator.py [--quick]
"""

import argparse
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import dcma_jax as dj
from dcma_jax.generators.networks import MLP


class StudentT(dj.Generator):
    """``x = mu(c) + sigma(c) * z / sqrt(chi2_df / df)`` with ``df`` fixed.

    Noise-outsourced exactly: one normal for ``z`` and ``df`` normals whose squares sum to the
    chi-square variate, so ``noise_dim = df + 1``.
    """

    registry_name: ClassVar[str] = "student_t"
    kinds: ClassVar[tuple[str, ...]] = ("continuous",)

    df: int = 3
    hidden: tuple[int, ...] = (32, 32)

    @property
    def noise_dim(self) -> int:
        return self.df + 1

    def setup(self) -> None:
        self.net = MLP(self.hidden, 2)

    def _loc_scale(self, context):
        loc, raw = self.net(context)
        return loc, nn.softplus(raw) + 1e-3

    def sample(self, noise, context):
        loc, scale = self._loc_scale(context)
        t = noise[0] / jnp.sqrt(jnp.mean(noise[1:] ** 2))
        return (loc + scale * t)[None]

    def log_prob(self, x, context):
        loc, scale = self._loc_scale(context)
        return jax.scipy.stats.t.logpdf(x[0], self.df, loc, scale)


def study(seed: int, n: int) -> pd.DataFrame:
    """M = 0.6 A + 0.5 X + e_M;  Y = 0.4 A + 0.8 M + 0.3 X + 0.5 t_3."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    a = rng.integers(0, 2, n)
    m = 0.6 * a + 0.5 * x + rng.normal(size=n)
    y = 0.4 * a + 0.8 * m + 0.3 * x + 0.5 * rng.standard_t(3, size=n)
    return pd.DataFrame({"X": x, "A": a, "M": m, "Y": y})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings (CI smoke run)")
    args = parser.parse_args()
    n, draws, epochs = (400, 5_000, 5) if args.quick else (3000, 100_000, 200)
    data = dj.MediationData.from_dataframe(
        study(0, n), treatment="A", mediators="M", outcome="Y", covariates=["X"]
    )
    print("registered generators:", ", ".join(dj.registered_names()))
    result = dj.analyze(
        data,
        generators={"M": "mdn", "Y": "student_t"},
        num_draws=draws,
        config=dj.TrainConfig(max_epochs=epochs),
        quantiles=(0.1, 0.5, 0.9),
        distances=("wasserstein",),
    )
    table = result.summary()
    print(table[table.functional.isin(["mean", "quantile"])].to_string(index=False))
    # Linear SCM: NDE = 0.4 and NIE = 0.8 * 0.6 = 0.48 at every quantile.
    print("truth: NDE = 0.40, NIE = 0.48 (mean and every quantile)")


if __name__ == "__main__":
    main()
