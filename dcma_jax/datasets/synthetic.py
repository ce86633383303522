r"""Synthetic studies: structural causal models with known interventional truths.

A :class:`SyntheticStudy` is an SCM with one binary treatment and one mediator block:

    X ~ P(X),  A ~ Bernoulli(pi(X)),  M = f_M(A, X, eps_M),  Y = f_Y(A, M, X, eps_Y).

Its true effects come from the structural equations themselves: the arms Y(a, M(a')) are
simulated from the *population* covariate distribution with the same ``(X, eps_M, eps_Y)``
across arms, and every functional is evaluated on them with the same code that evaluates the
estimates, so estimate and truth are defined identically.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import jax.numpy as jnp
import numpy as np
import pandas as pd

from dcma_jax.errors import ArgumentError
from dcma_jax.estimands import Estimands, FunctionalSpec, effect_rows, effect_values
from dcma_jax.model import float_dtype

Covariates = Mapping[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class SyntheticStudy:
    """An SCM with one binary treatment ``A``, mediators ``M`` and an outcome ``Y``.

    Attributes:
      name: short identifier.
      description: one paragraph for reports.
      mediators: mediator column names (in causal order).
      covariates: covariate column names, as they appear in the data frame.
      sample_covariates: ``(rng, n) -> {name: (n,) array}``.
      propensity: ``covariates -> P(A = 1 | X)``, ``(n,)``.
      mediator_model: ``(a (n,), covariates, noise (n, k)) -> (n, k)`` mediator values.
      outcome_model: ``(a (n,), m (n, k), covariates, noise (n,)) -> (n,)``.
    """

    name: str
    description: str
    mediators: tuple[str, ...]
    covariates: tuple[str, ...]
    sample_covariates: Callable[[np.random.Generator, int], Covariates]
    propensity: Callable[[Covariates], np.ndarray]
    mediator_model: Callable[[np.ndarray, Covariates, np.ndarray], np.ndarray]
    outcome_model: Callable[[np.ndarray, np.ndarray, Covariates, np.ndarray], np.ndarray]
    treatment: str = "A"
    outcome: str = "Y"

    def observational(self, seed: int, n: int) -> pd.DataFrame:
        """``n`` observational rows drawn from the SCM."""
        rng = np.random.default_rng(seed)
        cov = self.sample_covariates(rng, n)
        a = (rng.uniform(size=n) < self.propensity(cov)).astype(np.int64)
        m = self.mediator_model(a, cov, rng.standard_normal((n, len(self.mediators))))
        y = self.outcome_model(a, m, cov, rng.standard_normal(n))
        frame = {name: cov[name] for name in self.covariates}
        frame[self.treatment] = a
        frame.update({name: m[:, j] for j, name in enumerate(self.mediators)})
        frame[self.outcome] = y
        return pd.DataFrame(frame)

    def arm_outcomes(self, seed: int, n: int, arms) -> np.ndarray:
        """Y under each arm with shared covariates and noise: ``(n_arms, n)``.

        ``arms`` is a sequence of :class:`~dcma_jax.arms.Arm`. The mediator block is drawn as a
        whole, so every chain of an arm must assign one value to all its mediators; chain ``c``
        has its own noise, shared by all arms.
        """
        for arm in arms:
            if any(len(set(chain)) != 1 for chain in arm.chains):
                raise ArgumentError(
                    "synthetic truths support one mediator block: equal a_j per chain"
                )
        rng = np.random.default_rng(seed)
        cov = self.sample_covariates(rng, n)
        k = len(self.mediators)
        eps_m = rng.standard_normal((n, k))
        eps_y = rng.standard_normal(n)
        num_chains = max(len(arm.chains) for arm in arms)
        extra = [rng.standard_normal((n, k)) for _ in range(num_chains - 1)]
        noises = [eps_m, *extra]
        out = []
        for arm in arms:
            chains = [
                self.mediator_model(np.full(n, chain[0]), cov, noises[c])
                for c, chain in enumerate(arm.chains)
            ]
            m = np.stack([chains[s][:, j] for j, s in enumerate(arm.sources)], axis=1)
            out.append(self.outcome_model(np.full(n, arm.outcome), m, cov, eps_y))
        return np.stack(out)

    def true_effects(
        self,
        estimands: Estimands,
        spec: FunctionalSpec,
        num_draws: int = 1_000_000,
        seed: int = 12345,
    ) -> dict[tuple[str, str, float | None], float]:
        """True effect values keyed by ``(effect, functional, level)``.

        Monte Carlo over the true SCM with ``num_draws`` shared draws; the Monte Carlo error is
        ~``sd / sqrt(num_draws)`` (1e-3 SD units at the default), far below any
        estimation error it is compared with.
        """
        outcome = self.arm_outcomes(seed, num_draws, estimands.arms)
        values = np.asarray(
            effect_values(estimands.layout, spec, jnp.asarray(outcome, float_dtype()))
        )
        return {
            tuple(row): float(v)
            for row, v in zip(effect_rows(estimands.layout, spec), values, strict=True)
        }
