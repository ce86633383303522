r"""SCMs with several sequential mediators and a binary or continuous treatment, with truths.

A :class:`SequentialStudy` writes one structural equation per mediator, in causal order:

    X ~ P(X),  A ~ P(A | X),  M_j = f_j(A, M_1..M_{j-1}, X, eps_j),  Y = f_Y(A, M, X, eps_Y),

with independent standard normal noises. Truths come from the equations themselves with shared
noise, never from the identification formulas the estimator uses:

* arms (joint and marginal, :class:`~dcma_jax.arms.Arm`) are evaluated chain by chain
  exactly as :mod:`dcma_jax.simulate` defines them, chain ``c`` with its own noise draw;
* nested counterfactuals (:class:`~dcma_jax.paths.Counterfactual`) are evaluated by recursion
  through the equations on *one* set of unit-level noises (a cross-world quantity, defined even
  when it is not identified);
* dose-response means and their derivatives in ``a`` and ``a'`` (central differences on shared
  noise, exact for the linear studies here).

Studies: :data:`TWO_MEDIATORS` (binary treatment), :data:`CONTINUOUS_TREATMENT`, and
:data:`INTERACTION` (``A x M1`` in M2, ``M1 x M2`` in Y; truths by Monte Carlo only). The
first two are linear-Gaussian so their mean effects have closed forms (:func:`linear_truths`).
M1 -> M2 makes the mediators dependent given X, so joint and marginal arms differ in distribution:
``IIE_dependence`` is 0 on the mean but not on CDFs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import jax.numpy as jnp
import numpy as np
import pandas as pd

from dcma_jax.arms import Arm
from dcma_jax.estimands import Estimands, FunctionalSpec, effect_rows, effect_values
from dcma_jax.graph import CausalGraph
from dcma_jax.model import float_dtype
from dcma_jax.paths import Counterfactual, parse

Covariates = Mapping[str, np.ndarray]
MediatorEquation = Callable[[np.ndarray, np.ndarray, Covariates, np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True, eq=False)
class SequentialStudy:
    """An SCM with sequential mediators (see the module docstring).

    Attributes:
      name: short identifier.
      description: one paragraph for reports.
      mediators: mediator names in causal order.
      covariates: covariate column names.
      sample_covariates: ``(rng, n) -> {name: (n,)}``.
      sample_treatment: ``(rng, covariates) -> (n,)`` observed treatment values.
      mediator_equations: ``f_j(a (n,), m_earlier (n, j), covariates, eps (n,)) -> (n,)``.
      outcome_equation: ``(a (n,), m (n, k), covariates, eps (n,)) -> (n,)``.
      treatment_type: ``"binary"`` or ``"continuous"`` (the ``types`` entry for the data).
      params: the structural coefficients, for closed forms and reports.
    """

    name: str
    description: str
    mediators: tuple[str, ...]
    covariates: tuple[str, ...]
    sample_covariates: Callable[[np.random.Generator, int], Covariates]
    sample_treatment: Callable[[np.random.Generator, Covariates], np.ndarray]
    mediator_equations: tuple[MediatorEquation, ...]
    outcome_equation: Callable[[np.ndarray, np.ndarray, Covariates, np.ndarray], np.ndarray]
    treatment_type: str = "binary"
    params: Mapping[str, float] = dataclasses.field(default_factory=dict)
    treatment: str = "A"
    outcome: str = "Y"

    @property
    def graph(self) -> CausalGraph:
        """The true structure: every earlier mediator is a parent."""
        k = len(self.mediators)
        return CausalGraph.chain(self.mediators, ["continuous"] * k, self.outcome, "continuous")

    def _chain(self, codes: Sequence[float], cov: Covariates, eps: np.ndarray) -> np.ndarray:
        n = eps.shape[0]
        m = np.zeros((n, 0))
        for j, f in enumerate(self.mediator_equations):
            value = f(np.full(n, float(codes[j])), m, cov, eps[:, j])
            m = np.concatenate([m, value[:, None]], axis=1)
        return m

    def observational(self, seed: int, n: int) -> pd.DataFrame:
        """``n`` observational rows drawn from the SCM."""
        rng = np.random.default_rng(seed)
        cov = self.sample_covariates(rng, n)
        a = self.sample_treatment(rng, cov)
        eps = rng.standard_normal((n, len(self.mediators)))
        m = np.zeros((n, 0))
        for j, f in enumerate(self.mediator_equations):
            m = np.concatenate([m, f(a, m, cov, eps[:, j])[:, None]], axis=1)
        y = self.outcome_equation(a, m, cov, rng.standard_normal(n))
        frame = {name: cov[name] for name in self.covariates}
        frame[self.treatment] = a
        frame.update({name: m[:, j] for j, name in enumerate(self.mediators)})
        frame[self.outcome] = y
        return pd.DataFrame(frame)

    def _draw(self, seed: int, n: int, num_chains: int):
        rng = np.random.default_rng(seed)
        cov = self.sample_covariates(rng, n)
        k = len(self.mediators)
        eps = [rng.standard_normal((n, k)) for _ in range(num_chains)]
        return cov, eps, rng.standard_normal(n)

    def arm_outcomes(self, seed: int, n: int, arms: Sequence[Arm]) -> np.ndarray:
        """Y under each arm (treatment values in original units): ``(n_arms, n)``."""
        cov, eps, eps_y = self._draw(seed, n, max(len(a.chains) for a in arms))
        out = []
        for arm in arms:
            chains = [self._chain(codes, cov, eps[c]) for c, codes in enumerate(arm.chains)]
            m = np.stack([chains[s][:, j] for j, s in enumerate(arm.sources)], axis=1)
            out.append(self.outcome_equation(np.full(n, arm.outcome), m, cov, eps_y))
        return np.stack(out)

    def counterfactual_outcomes(
        self, seed: int, n: int, expressions: Sequence[str | Counterfactual]
    ) -> np.ndarray:
        """Nested counterfactuals evaluated through the equations on shared unit noise."""
        graph = self.graph
        cov, (eps,), eps_y = self._draw(seed, n, 1)
        k = len(self.mediators)

        def value(cf: Counterfactual, index: int) -> np.ndarray:
            node = graph.nodes[index]
            m = np.zeros((n, k))
            for p, parent in zip(node.parents, cf.parents, strict=True):
                m[:, p] = value(parent, p)
            a = np.full(n, float(cf.value))
            if index == k:
                return self.outcome_equation(a, m, cov, eps_y)
            return self.mediator_equations[index](a, m[:, :index], cov, eps[:, index])

        out = []
        for expr in expressions:
            cf = parse(expr, graph) if isinstance(expr, str) else expr
            out.append(value(cf, k))
        return np.stack(out)

    def true_effects(
        self,
        estimands: Estimands,
        spec: FunctionalSpec,
        num_draws: int = 1_000_000,
        seed: int = 12345,
    ) -> dict[tuple[str, str, float | None], float]:
        """True values of ``estimands`` (arms in original treatment units), by row label."""
        outcome = self.arm_outcomes(seed, num_draws, estimands.arms)
        values = np.asarray(
            effect_values(estimands.layout, spec, jnp.asarray(outcome, float_dtype()))
        )
        return {
            tuple(row): float(v)
            for row, v in zip(effect_rows(estimands.layout, spec), values, strict=True)
        }

    def true_dose_response(
        self, grid: Sequence[float], num_draws: int = 400_000, seed: int = 12345, h: float = 1e-3
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``mu[i, j] = E Y(grid[i], M(grid[j]))``, local direct and indirect effects."""
        k = len(self.mediators)
        grid = [float(g) for g in grid]
        arms = [Arm.joint(f"Y({a:g};G({b:g}))", a, (b,) * k) for a in grid for b in grid]
        mu = self.arm_outcomes(seed, num_draws, arms).mean(axis=1).reshape(len(grid), len(grid))
        bumps = []
        for g in grid:
            bumps += [Arm.joint("a+h", g + h, (g,) * k), Arm.joint("a-h", g - h, (g,) * k)]
            bumps += [Arm.joint("m+h", g, (g + h,) * k), Arm.joint("m-h", g, (g - h,) * k)]
        y = self.arm_outcomes(seed, num_draws, bumps).mean(axis=1).reshape(len(grid), 4)
        return mu, (y[:, 0] - y[:, 1]) / (2 * h), (y[:, 2] - y[:, 3]) / (2 * h)


# --------------------------------------------------------------------------------------------
# Two linear-Gaussian studies with closed-form mean effects
# --------------------------------------------------------------------------------------------

#: Structural coefficients shared by both studies.
LINEAR = {
    "b1": 0.8,  # A -> M1
    "c1": 0.4,  # X -> M1
    "s1": 1.0,
    "b2": 0.5,  # A -> M2
    "d": 0.6,  # M1 -> M2
    "c2": 0.3,
    "s2": 1.0,
    "t": 0.5,  # A -> Y
    "g1": 0.7,  # M1 -> Y
    "g2": 0.6,  # M2 -> Y
    "h": 0.2,
    "s3": 1.0,
}


def _covariates(rng: np.random.Generator, n: int) -> Covariates:
    return {"X": rng.standard_normal(n)}


def _m1(a, m, cov, eps):
    p = LINEAR
    return 0.5 + p["b1"] * a + p["c1"] * cov["X"] + p["s1"] * eps


def _m2(a, m, cov, eps):
    p = LINEAR
    return 0.2 + p["b2"] * a + p["d"] * m[:, 0] + p["c2"] * cov["X"] + p["s2"] * eps


def _y(a, m, cov, eps):
    p = LINEAR
    return (
        0.3 + p["t"] * a + p["g1"] * m[:, 0] + p["g2"] * m[:, 1] + p["h"] * cov["X"] + p["s3"] * eps
    )


def _binary_treatment(rng, cov):
    return (rng.uniform(size=cov["X"].shape[0]) < 1 / (1 + np.exp(-0.5 * cov["X"]))).astype(int)


def _continuous_treatment(rng, cov):
    return 0.5 * cov["X"] + rng.standard_normal(cov["X"].shape[0])


TWO_MEDIATORS = SequentialStudy(
    name="two_mediators",
    description=(
        "Binary A (logistic in X), M1 = 0.5 + 0.8 A + 0.4 X + e1, "
        "M2 = 0.2 + 0.5 A + 0.6 M1 + 0.3 X + e2, Y = 0.3 + 0.5 A + 0.7 M1 + 0.6 M2 + 0.2 X + e3."
    ),
    mediators=("M1", "M2"),
    covariates=("X",),
    sample_covariates=_covariates,
    sample_treatment=_binary_treatment,
    mediator_equations=(_m1, _m2),
    outcome_equation=_y,
    treatment_type="binary",
    params=LINEAR,
)

CONTINUOUS_TREATMENT = dataclasses.replace(
    TWO_MEDIATORS,
    name="continuous_treatment",
    description=(
        "Continuous A = 0.5 X + e_A and the equations of two_mediators: "
        "linear dose-response, constant local effects."
    ),
    sample_treatment=_continuous_treatment,
    treatment_type="continuous",
)


def _m2_interaction(a, m, cov, eps):
    return _m2(a, m, cov, eps) + 0.4 * a * m[:, 0]


def _y_interaction(a, m, cov, eps):
    return _y(a, m, cov, eps) + 0.3 * m[:, 0] * m[:, 1]


INTERACTION = dataclasses.replace(
    TWO_MEDIATORS,
    name="interaction",
    description=(
        "two_mediators plus an A x M1 term in M2 (+0.4 A M1) and an M1 x M2 term in Y "
        "(+0.3 M1 M2): the M1-M2 covariance given X changes with A, so the mean "
        "IIE_dependence is no longer 0 (it is 0.3 * 0.4 * Var(M1 | X) = 0.12); truths by "
        "Monte Carlo over the structural equations."
    ),
    mediator_equations=(_m1, _m2_interaction),
    outcome_equation=_y_interaction,
)


def linear_truths(params: Mapping[str, float] = LINEAR, delta: float = 1.0) -> dict[str, float]:
    """Closed-form mean effects of the linear studies for a treatment change ``delta``.

    ``E Y(a; G1(a1), G2(a2)) = const + t a + g1 b1 a1 + g2 (b2 + d b1) a2`` (marginal and joint
    arms agree on means here: Y is linear in the mediators), so per unit of treatment
    IDE = t, IIE_M1 = g1 b1, IIE_M2 = g2 (b2 + d b1), IIE_dependence = 0 on the mean, and the
    path-specific effect of A -> M2 -> Y alone, Y(1, M1(0), M2(1, M1(0))) - Y(0, ...(0)),
    is t + g2 b2. The local indirect effect of a continuous treatment is
    g1 b1 + g2 (b2 + d b1), the local direct effect t.
    """
    p = params
    iie1 = p["g1"] * p["b1"]
    iie2 = p["g2"] * (p["b2"] + p["d"] * p["b1"])
    return {
        "IDE": p["t"] * delta,
        "IIE_M1": iie1 * delta,
        "IIE_M2": iie2 * delta,
        "IIE_dependence": 0.0,
        "TE": (p["t"] + iie1 + iie2) * delta,
        "NIE": (iie1 + iie2) * delta,
        "PSE_A_M2_Y": (p["t"] + p["g2"] * p["b2"]) * delta,
    }
