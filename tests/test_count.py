"""Count nodes: the data type, the negative-binomial generators, and mediation through them.

References: statsmodels' NB2 and Poisson maximum-likelihood fits, scipy's pmfs and quantiles,
and a Poisson / NB mediator SCM whose natural indirect effect has a closed form.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.stats
import statsmodels.api as sm
from conftest import FAST
from jax.scipy.special import ndtr
from scipy.special import gammaln
from statsmodels.discrete.discrete_model import NegativeBinomial

import dcma_jax as dj
from dcma_jax.cli.args import column_types
from dcma_jax.errors import ArgumentError
from dcma_jax.generators import (
    NegativeBinomialGLM,
    NegativeBinomialMLP,
    generator_class,
)
from dcma_jax.generators import count as nb
from dcma_jax.model import build_model, node_data
from dcma_jax.queries import default_cdf_points
from dcma_jax.robust import invert_cdf, outcome_grid
from dcma_jax.selection import _scores, choose, node_crps
from dcma_jax.sensitivity import SensitivityError
from dcma_jax.training import fit_generator

# ---- the NB2 law ------------------------------------------------------------------------------


def _reference_log_pmf(k: int, mu: float, alpha: float) -> float:
    """``log P(X = k)`` in float64 from the definition, ``sum_{j<k} log(1 + alpha j)`` summed."""
    rising = np.sum(np.log1p(alpha * np.arange(k)))
    tail = np.log1p(alpha * mu) / alpha if alpha > 0 else mu
    return rising - gammaln(k + 1) + k * np.log(mu) - k * np.log1p(alpha * mu) - tail


_log_pmf = jax.jit(nb.log_pmf)
_score = jax.jit(jax.grad(nb.log_pmf, argnums=2))
_quantiles = jax.jit(jax.vmap(nb.quantile, (0, 0, 0, None)), static_argnums=3)


@pytest.mark.parametrize("alpha", [0.0, 1e-12, 1e-6, 0.05, 0.1, 0.2, 3.0])
def test_log_pmf_is_exact_down_to_the_poisson_limit(alpha):
    # float64: the series branches keep ~1e-13 absolute where lgamma(k + 1/alpha) - lgamma(1/alpha)
    # would cancel to nothing (alpha = 1e-12: lgamma(1e12) = 2.6e13).
    ks = [0, 1, 2, 5, 30, 200]
    with jax.enable_x64(True):
        for mu in (0.1, 3.0, 40.0):
            got = np.asarray(_log_pmf(jnp.asarray(ks, jnp.float64), np.log(mu), alpha))
            want = [_reference_log_pmf(k, mu, alpha) for k in ks]
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-10)
        # The score in alpha at 0 is sum_{j<k} j - k mu + mu^2 / 2 (finite, no NaN).
        score = _score(5.0, np.log(3.0), 0.0)
        np.testing.assert_allclose(float(score), 10.0 - 15.0 + 4.5, rtol=1e-12)


def test_quantile_is_the_smallest_count_whose_cdf_reaches_u():
    # float64 against scipy's ppf, away from the jumps of F (where rounding may decide).
    us = np.linspace(0.001, 0.999, 499)
    with jax.enable_x64(True):
        for mu, alpha in ((4.0, 0.0), (4.0, 0.5), (0.3, 4.0), (60.0, 0.02)):
            law = (
                scipy.stats.poisson(mu)
                if alpha == 0
                else scipy.stats.nbinom(1 / alpha, 1 / (1 + alpha * mu))
            )
            want = law.ppf(us)
            clear = np.abs(law.cdf(want) - us) > 1e-9
            law_at = jnp.full(us.shape, np.log(mu)), jnp.full(us.shape, alpha)
            got = _quantiles(jnp.asarray(us), *law_at, 10_000)
            np.testing.assert_array_equal(np.asarray(got)[clear], want[clear])


def test_search_stops_in_the_tail_and_refuses_to_truncate_at_max_count():
    # float32, max_count = 512 (one compiled search for this test and the next).
    z = jnp.asarray([0.0, 8.0, 40.0, -5.0, 0.0], jnp.float32)
    mu = jnp.asarray([3.0, 3.0, 3.0, 600.0, 600.0], jnp.float32)
    got = np.asarray(_quantiles(ndtr(z), jnp.log(mu), jnp.zeros(5), 512))
    # Phi(8) is 1 in float32: the search stops where the mass above is provably < 1e-7
    # (Poisson(3): P(X > 15) = 1.2e-8), not at max_count.
    assert got[0] == 3.0 and 10.0 <= got[1] == got[2] <= 17.0
    assert scipy.stats.poisson(3.0).sf(got[1]) < nb.TAIL_MASS
    # Poisson(600) has more than 1e-7 of its mass above 512: a draw that gets there is NaN.
    assert got[3] == scipy.stats.poisson(600.0).ppf(ndtr(-5.0)) and np.isnan(got[4])
    assert nb.count_cap([0, 3, 7]) == 128 and nb.count_cap([2, 40]) == 512


def test_samples_reproduce_the_pmf():
    # 40,000 float32 draws by inversion against the exact pmf (Pearson's chi-square, cells of
    # expected size >= 5, the rest pooled) at test level 1e-3, fixed key.
    u = ndtr(jax.random.normal(jax.random.key(3), (40_000,)))
    for alpha in (0.0, 0.7):
        x = np.asarray(_quantiles(u, jnp.full(u.shape, np.log(4.0)), jnp.full(u.shape, alpha), 512))
        assert np.all(x == np.round(x)) and x.min() >= 0
        x = x.astype(int)
        ks = np.arange(x.max() + 1)
        pmf = np.exp([_reference_log_pmf(k, 4.0, alpha) for k in ks])
        observed, expected = np.bincount(x, minlength=ks.size), 40_000 * pmf
        expected[-1] += 40_000 * (1.0 - pmf.sum())
        keep = expected >= 5
        cells = (np.append(observed[keep], observed[~keep].sum()),)
        cells += (np.append(expected[keep], expected[~keep].sum()),)
        assert scipy.stats.chisquare(*cells).pvalue > 1e-3


#: One generator instance for every fit in this file: ``max_count`` is a static field, so a
#: shared value shares the compiled fit and queries (``build_model`` would set 256 or 512).
MODEL = {"M1": NegativeBinomialGLM(max_count=512), "Y": "linear"}


# ---- the GLM's fit ------------------------------------------------------------------------------


def _nb_rows(seed: int, n: int = 600, alpha: float = 0.6):
    rng = np.random.default_rng(seed)
    context = rng.normal(size=(n, 2))
    context[:, 0] = rng.integers(0, 2, n)
    mu = np.exp(0.5 + 0.4 * context[:, 0] - 0.3 * context[:, 1])
    if alpha == 0:
        return context, rng.poisson(mu).astype(float)
    return context, rng.negative_binomial(1 / alpha, 1 / (1 + alpha * mu)).astype(float)


def _glm_fit(context, y, weights):
    """``(coef in statsmodels' order [intercept, slopes], alpha)`` of the closed form."""
    variables, info = fit_generator(
        MODEL["M1"],
        FAST,
        jax.random.key(0),
        jnp.asarray(y[:, None]),
        jnp.asarray(context),
        jnp.asarray(weights),
    )
    assert not bool(info.diverged)
    p = variables["params"]
    coef = np.concatenate(
        [np.asarray(p["linear"]["bias"]), np.asarray(p["linear"]["kernel"])[:, 0]]
    )
    return coef, float(p["dispersion"])


def test_glm_equals_statsmodels_nb2_and_is_invariant_to_weight_scale():
    context, y = _nb_rows(0)
    design = sm.add_constant(context)
    reference = NegativeBinomial(y, design, loglike_method="nb2").fit(
        method="newton", tol=1e-14, maxiter=200, disp=0
    )
    # Integer weights are importance weights whose estimate equals the fit to repeated rows.
    weights = np.random.default_rng(1).integers(1, 4, y.size).astype(float)
    repeated = NegativeBinomial(
        np.repeat(y, weights.astype(int)),
        np.repeat(design, weights.astype(int), axis=0),
        loglike_method="nb2",
    ).fit(method="newton", tol=1e-14, maxiter=200, disp=0)
    with jax.enable_x64(True):
        coef, alpha = _glm_fit(context, y, np.ones(y.size))
        np.testing.assert_allclose(coef, reference.params[:-1], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(alpha, reference.params[-1], rtol=1e-8)
        coef_w, alpha_w = _glm_fit(context, y, weights)
        coef_s, alpha_s = _glm_fit(context, y, weights / 37.0)
    np.testing.assert_allclose(coef_w, repeated.params[:-1], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(alpha_w, repeated.params[-1], rtol=1e-8)
    np.testing.assert_allclose([*coef_s, alpha_s], [*coef_w, alpha_w], rtol=1e-12, atol=1e-14)
    # float32: the same estimate to float32 rounding of a 600-row likelihood.
    coef32, alpha32 = _glm_fit(context, y, np.ones(y.size))
    np.testing.assert_allclose(coef32, reference.params[:-1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(alpha32, reference.params[-1], rtol=1e-4)


def test_poisson_samples_fit_at_or_near_zero_dispersion():
    # Where the score in alpha is negative at the Poisson MLE (sum (y - mu)^2 - y < 0), the
    # constrained MLE is alpha = 0 exactly and the coefficients are the Poisson GLM's.
    context, y = _nb_rows(6, alpha=0.0)
    poisson = sm.GLM(y, sm.add_constant(context), family=sm.families.Poisson()).fit(tol=1e-14)
    assert np.sum((y - poisson.mu) ** 2 - y) < 0
    with jax.enable_x64(True):
        coef, alpha = _glm_fit(context, y, np.ones(y.size))
    assert alpha == 0.0
    np.testing.assert_allclose(coef, poisson.params, rtol=1e-8, atol=1e-10)
    coef32, alpha32 = _glm_fit(context, y, np.ones(y.size))  # float32: no NaN either
    assert alpha32 == 0.0
    np.testing.assert_allclose(coef32, poisson.params, rtol=1e-4, atol=1e-5)
    # A Poisson sample that happens to be overdispersed: a small alpha, statsmodels' NB2 MLE.
    context, y = _nb_rows(5, alpha=0.0)
    reference = NegativeBinomial(y, sm.add_constant(context), loglike_method="nb2").fit(
        method="newton", tol=1e-14, maxiter=200, disp=0
    )
    assert 0.0 < reference.params[-1] < 0.05
    with jax.enable_x64(True):
        coef, alpha = _glm_fit(context, y, np.ones(y.size))
    np.testing.assert_allclose([*coef, alpha], reference.params, rtol=1e-7, atol=1e-10)


def test_counts_that_are_zero_on_a_column_name_it():
    x, a, m, y = _scm(9, 0.0)  # the shapes of the mediation tests below: compiled once
    m[a == 1] = 0.0  # the treatment's rows: the log-mean runs off to -inf there
    data = dj.MediationData.from_arrays(
        treatment=a, mediators=m, outcome=y, covariates=x, types={"M1": "count"}
    )
    with pytest.raises(dj.TrainingError, match=r"every count is 0 on the rows picked out by "):
        dj.fit(data, generators=MODEL)


# ---- the data type ----------------------------------------------------------------------------


def _frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"A": rng.integers(0, 2, n), "M": rng.poisson(3.0, n), "Y": rng.normal(size=n)}
        | {"X": rng.normal(size=n)}
    )


def _build(df, types):
    return dj.MediationData.from_dataframe(
        df, treatment="A", mediators="M", outcome="Y", covariates=["X"], types=types
    )


def test_a_declared_count_keeps_its_integers():
    df = _frame()
    with pytest.raises(dj.DataError, match=r"declare its type: types=\{'M': 'count'\}"):
        _build(df, None)  # undeclared: refused as before, now offering count
    data = _build(df, {"M": "count"})
    var = data.mediator_vars[0]
    assert var.kind == "count" and (var.center, var.scale) == (0.0, 1.0)
    np.testing.assert_array_equal(data.mediators[:, 0], df["M"])
    np.testing.assert_array_equal(var.decode(data.mediators[:, 0]), df["M"])
    assert "'M': count (non-negative integers, in counts)" in data.summary()
    assert column_types("M=count,A=binary") == {"M": "count", "A": "binary"}


@pytest.mark.parametrize(
    ("column", "value", "types", "message"),
    [
        ("M", -1, {"M": "count"}, r"^mediator column 'M' is declared count but has a negative "),
        ("Y", 2.5, {"M": "count", "Y": "count"}, r"^outcome column 'Y' is declared count but "),
        ("M", 2**25, {"M": "count"}, r"^mediator column 'M' is declared count but has a value "),
        ("A", None, {"A": "count"}, r"^treatment column 'A' is declared count; counts are "),
        ("X", None, {"M": "count", "X": "count"}, r"^covariate column 'X' is declared count"),
    ],
    ids=["negative", "non-integer", "too-large", "treatment", "covariate"],
)
def test_count_declarations_that_cannot_hold(column, value, types, message):
    df = _frame()
    if column == "Y":
        df["Y"] = df["M"]  # a count but for the value set below
    if value is not None:
        df[column] = df[column].astype(float)
        df.loc[7, column] = value
    with pytest.raises(dj.DataError, match=message) as info:
        _build(df, types)
    assert "\n" not in str(info.value)
    if value is not None:
        assert f"({value:g} at row 7)" in str(info.value)


# ---- mediation through a count mediator ----------------------------------------------------------

B0, B1, B2 = 0.5, 0.6, 0.3  # log E[M | a, x] = B0 + B1 a + B2 x
C1, GAMMA = 0.5, 0.8  # Y = 0.2 + C1 a + GAMMA m + 0.4 x + N(0, 1)
N_ROWS, DRAWS = 600, 20_000
#: E[M(a)] = exp(B0 + B1 a + B2^2 / 2) for x ~ N(0, 1), so NIE = GAMMA (E[M(1)] - E[M(0)]).
TRUE_NIE = GAMMA * np.exp(B0 + B2**2 / 2) * (np.exp(B1) - 1.0)


def _scm(seed: int, alpha: float):
    rng = np.random.default_rng(seed)
    x, a = rng.normal(size=N_ROWS), rng.integers(0, 2, N_ROWS)
    mu = np.exp(B0 + B1 * a + B2 * x)
    m = rng.poisson(mu) if alpha == 0 else rng.negative_binomial(1 / alpha, 1 / (1 + alpha * mu))
    y = 0.2 + C1 * a + GAMMA * m + 0.4 * x + rng.normal(size=N_ROWS)
    return x, a, m.astype(float), y


def _reference_nie(x, a, m, y, alpha):
    """The plug-in NIE of the MLE fits, its delta-method SE, and the SE of dcma's Monte Carlo.

    ``NIE = g mean_i (exp(b0 + b1 + b2 x_i) - exp(b0 + b2 x_i))``: the gradient in the
    mediator coefficients (their covariance from statsmodels) and in ``g`` (OLS), plus the
    covariate average's own variance. Both fits' scores have mean 0 given ``x``, so the three
    parts are uncorrelated. The Monte Carlo SE is that of the mean of ``g (M(1) - M(0))`` over
    ``DRAWS`` draws with common noise (the outcome's cancels in a linear outcome).
    """
    design = np.column_stack([np.ones_like(x), a, x])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if alpha == 0:
            fit = sm.GLM(m, design, family=sm.families.Poisson()).fit(tol=1e-12)
            b, cov, dispersion = fit.params, fit.cov_params(), 0.0
        else:
            fit = NegativeBinomial(m, design, loglike_method="nb2").fit(
                method="newton", maxiter=200, disp=0
            )
            b, cov, dispersion = fit.params[:3], fit.cov_params()[:3, :3], fit.params[3]
    ols = sm.OLS(y, np.column_stack([np.ones_like(x), a, m, x])).fit()
    g, var_g = ols.params[2], ols.cov_params()[2, 2]
    mu1, mu0 = np.exp(b[0] + b[1] + b[2] * x), np.exp(b[0] + b[2] * x)
    h = mu1 - mu0
    grad_b = g * np.array([h.mean(), mu1.mean(), (x * h).mean()])
    variance = grad_b @ cov @ grad_b + h.mean() ** 2 * var_g + g**2 * h.var() / x.size
    rng = np.random.default_rng(0)
    rows, u = rng.integers(0, x.size, 200_000), rng.uniform(size=200_000)

    def draws(mu):
        if dispersion == 0:
            return scipy.stats.poisson.ppf(u, mu)
        return scipy.stats.nbinom.ppf(u, 1 / dispersion, 1 / (1 + dispersion * mu))

    mc_sd = np.std(g * (draws(mu1[rows]) - draws(mu0[rows])))
    return g * h.mean(), np.sqrt(variance), mc_sd / np.sqrt(DRAWS), ols


@pytest.fixture(scope="module")
def runs():
    """Four data sets (two Poisson, two NB with alpha = 0.5), each fitted and queried."""
    out = []
    for seed, alpha in ((0, 0.0), (1, 0.0), (2, 0.5), (3, 0.5)):
        x, a, m, y = _scm(seed, alpha)
        data = dj.MediationData.from_arrays(
            treatment=a, mediators=m, outcome=y, covariates=x, types={"M1": "count"}
        )
        fitted = dj.fit(data, generators=MODEL, seed=seed)
        result = fitted.effects(num_draws=DRAWS, quantiles=(0.5,), distances=(), cdf_points=(3,))
        out.append((data, fitted, result, _reference_nie(x, a, m, y, alpha)))
    return out


def _mean(result, effect):
    table = result.table
    return float(table[(table.effect == effect) & (table.functional == "mean")].estimate.iloc[0])


def test_count_mediator_recovers_the_closed_form_nie(runs):
    estimates, ses = [], []
    for _, fitted, result, (plugin, se, mc_se, ols) in runs:
        assert isinstance(fitted.model.generators[0], NegativeBinomialGLM)
        for effect in ("NIE_control", "NIE_treated"):
            nie = _mean(result, effect)
            # The simulation is the plug-in of the fitted model, up to its Monte Carlo error.
            assert abs(nie - plugin) < 4.0 * mc_se, (effect, nie, plugin, mc_se)
        nie = _mean(result, "NIE_treated")
        estimates.append(nie)
        ses.append(np.hypot(se, mc_se))
        # NDE: the outcome's treatment coefficient (common outcome noise: no Monte Carlo error).
        nde = _mean(result, "NDE_control")
        np.testing.assert_allclose(nde, ols.params[1], atol=1e-3)
        assert abs(nde - C1) < 4.0 * ols.bse[1]
    # Each data set within 4 of its SEs, the average of four within 3 SEs of the average.
    z = (np.asarray(estimates) - TRUE_NIE) / np.asarray(ses)
    assert np.all(np.abs(z) < 4.0), z
    assert abs(np.mean(estimates) - TRUE_NIE) < 3.0 * np.sqrt(np.sum(np.square(ses))) / len(ses)


def test_count_node_diagnostics(runs):
    data, fitted, result, _ = runs[0]
    nodes = result.meta["diagnostics"]["nodes"]
    # Randomised PIT of a well-specified count model is uniform (KS below its 95% bound).
    assert nodes["M1"]["pit_ks"] < nodes["M1"]["pit_ks_95"]
    assert np.isfinite(nodes["M1"]["heldout_log_lik"]) and nodes["M1"]["crps"] > 0
    assert build_model(data, "linear").generators[0].max_count == nb.count_cap(data.mediators)


def test_count_mediators_are_refused_where_the_maths_does_not_apply(runs):
    _, fitted, _, _ = runs[0]
    with pytest.raises(ArgumentError, match=r"^count mediator 'M1': its draws are integer steps"):
        fitted.influence()
    with pytest.raises(SensitivityError, match=r"^mediator 'M1' is a count"):
        fitted.sensitivity()


# ---- the network and generators="auto" --------------------------------------------------------


def test_every_family_models_a_count_node_and_auto_compares_them():
    assert generator_class("linear", "count") is NegativeBinomialGLM
    for name in ("mdn", "flow", "diffusion"):  # the others' stand-in is the NB network
        assert generator_class(name, "count") is NegativeBinomialMLP
    x, a, m, y = _scm(7, 0.0)
    data = dj.MediationData.from_arrays(
        treatment=a, mediators=m, outcome=y, covariates=x, types={"M1": "count"}
    )
    model = build_model(data, {"M1": NegativeBinomialMLP(hidden=(16,)), "Y": "linear"})
    rows, weights = node_data(model, data), jnp.ones(data.n)
    network = model.generators[0]
    # The warm start: the Poisson regression of the mean (the slopes' ridge, 1e-3 n against a
    # Fisher information of about 3 n, shrinks them by ~3e-4) and the moment dispersion.
    started = jax.jit(network.warm_start)({"params": {}}, *rows[0], weights)["params"]
    design = sm.add_constant(np.asarray(rows[0][1], np.float64))  # (A, X standardised)
    poisson = sm.GLM(m, design, family=sm.families.Poisson()).fit(tol=1e-12)
    np.testing.assert_allclose(started["baseline"]["kernel"][:, 0], poisson.params[1:], atol=1e-3)
    np.testing.assert_allclose(started["baseline"]["bias"], poisson.params[:1], atol=1e-3)
    moment = np.sum((m - poisson.mu) ** 2 - m) / np.sum(poisson.mu**2)
    np.testing.assert_allclose(started["log_dispersion"], np.log(max(moment, 1e-4)), atol=1e-2)
    # Selection on the count node: both candidates fit and are scored by cross-validated CRPS; on
    # Poisson-linear data the one-SE rule keeps the GLM.
    candidates = [MODEL["M1"], network]
    held, crps = node_crps(candidates, "count", FAST, jax.random.key(2), *rows[0], weights)
    assert crps.shape == (2, held.size) and np.all(np.isfinite(crps))
    assert choose(_scores(("linear", "mdn"), crps, np.ones(held.size))) == "linear"


def test_a_count_outcome_reads_its_cdf_and_quantiles_at_counts():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, 200)
    data = dj.MediationData.from_arrays(
        treatment=a,
        mediators=rng.normal(size=200),
        outcome=rng.poisson(1.0 + a),
        types={"Y": "count"},
    )
    points = default_cdf_points(data)
    assert len(set(points)) == len(points) and all(p == round(p) for p in points)
    grid = outcome_grid(data, np.array([3.0, 17.0]))
    np.testing.assert_array_equal(grid, np.arange(18.0))
    # The one-step quantile of a step CDF is the first count where it reaches the level.
    cdf = np.minimum(np.arange(18.0) / 4.0, 1.0)  # F(0) = 0, F(1) = 0.25, ..., F(4) = 1
    np.testing.assert_array_equal(
        invert_cdf(grid, cdf, np.array([0.2, 0.25, 0.6]), True), [1, 1, 3]
    )
