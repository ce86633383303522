"""The linear generators' closed-form fits equal statsmodels' OLS / WLS / GLM estimates.

Weights are importance weights (estimates invariant to their scale); rank-deficient designs,
separated binary outcomes and non-converging Fisher scoring are reported with the columns named.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import statsmodels.api as sm

import dcma_jax as dj
from dcma_jax.generators import BinaryGLM, LinearGaussian, linear
from dcma_jax.model import build_model
from dcma_jax.training import TrainConfig, fit_generator, fit_generator_replicates, fit_model

CONFIG = TrainConfig()


def _design(seed, n=400, p=3):
    rng = np.random.default_rng(seed)
    context = rng.normal(size=(n, p))
    context[:, 0] = rng.integers(0, 2, n)  # a treatment column, as in real contexts
    return rng, context


def _fit(module, x, context, weights):
    variables, info = fit_generator(
        module,
        CONFIG,
        jax.random.key(0),
        jnp.asarray(x[:, None]),
        jnp.asarray(context),
        jnp.asarray(weights),
    )
    assert not bool(info.diverged)
    p = variables["params"]
    coef = np.concatenate(
        [np.asarray(p["linear"]["bias"]), np.asarray(p["linear"]["kernel"])[:, 0]]
    )
    return coef, p


def test_linear_gaussian_equals_ols_in_float64():
    rng, context = _design(0)
    x = 0.3 + context @ np.array([1.0, -0.5, 2.0]) + rng.normal(scale=0.7, size=len(context))
    ols = sm.OLS(x, sm.add_constant(context)).fit()
    with jax.enable_x64(True):
        coef, p = _fit(LinearGaussian(), x, context, np.ones(len(x)))
        scale = float(np.exp(p["log_scale"]))
    np.testing.assert_allclose(coef, ols.params, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(scale**2, ols.scale, rtol=1e-10)


def test_linear_gaussian_equals_ols_in_float32():
    # float32 solve of a well-conditioned 4-column problem: relative error ~1e-6.
    rng, context = _design(1)
    x = -1.0 + context @ np.array([0.5, 0.5, -1.0]) + rng.normal(size=len(context))
    ols = sm.OLS(x, sm.add_constant(context)).fit()
    coef, _ = _fit(
        LinearGaussian(),
        x.astype(np.float32),
        context.astype(np.float32),
        np.ones(len(x), np.float32),
    )
    np.testing.assert_allclose(coef, ols.params, rtol=1e-4, atol=1e-5)


def _mean_square_dof(weights, p):
    """``n_e / (n_e - p)``, Kish's effective sample size ``n_e = (sum w)^2 / sum w^2``."""
    n_e = weights.sum() ** 2 / np.sum(weights**2)
    return n_e / (n_e - p)


def test_weighted_fit_equals_wls_and_frequency_weighted_ols():
    # Coefficients: the WLS estimate, which for integer weights is also the OLS fit on rows
    # duplicated that many times. sigma^2: the weighted mean square residual times the
    # effective-sample-size dof factor (not statsmodels' WLS scale, which is not invariant to
    # the scale of the weights).
    rng, context = _design(2)
    x = context @ np.array([1.0, 0.2, 0.0]) + rng.normal(size=len(context))
    counts = rng.integers(1, 4, len(x)).astype(float)
    rows = np.repeat(np.arange(len(x)), counts.astype(int))
    design = sm.add_constant(context)
    wls = sm.WLS(x, design, weights=counts).fit()
    duplicated = sm.OLS(x[rows], design[rows]).fit()
    with jax.enable_x64(True):
        coef, p = _fit(LinearGaussian(), x, context, counts)
        scale = float(np.exp(p["log_scale"]))
    np.testing.assert_allclose(coef, wls.params, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(coef, duplicated.params, rtol=1e-10, atol=1e-12)
    mean_square = np.sum(counts * wls.resid**2) / counts.sum()
    expected = mean_square * _mean_square_dof(counts, design.shape[1])
    np.testing.assert_allclose(scale**2, expected, rtol=1e-10)


def _binary_outcome(rng, context, link="logit"):
    eta = -0.2 + context @ np.array([0.8, -0.6, 0.4])
    prob = 1 / (1 + np.exp(-eta)) if link == "logit" else 0.5 * (1 + np.tanh(eta * 0.8))
    return (rng.uniform(size=len(eta)) < prob).astype(float)


@pytest.mark.parametrize("module", [LinearGaussian(), BinaryGLM("logit"), BinaryGLM("probit")])
def test_estimates_are_invariant_to_rescaling_the_weights(module):
    # Importance weights: w, 1000 w and w / n give one estimate (w / n made the old
    # sigma^2 = sum w r^2 / (sum w - p) negative). The fits see the same equilibrated normal
    # equations up to rounding, so they agree to float64 rounding.
    rng, context = _design(5)
    if isinstance(module, BinaryGLM):
        x = _binary_outcome(rng, context, module.link)
    else:
        x = 0.5 + context @ np.array([1.0, -1.0, 0.5]) + rng.normal(size=len(context))
    weights = rng.uniform(0.2, 3.0, len(x))
    with jax.enable_x64(True):
        fits = [_fit(module, x, context, weights * c) for c in (1.0, 1000.0, 1.0 / len(x))]
    for coef, p in fits[1:]:
        np.testing.assert_allclose(coef, fits[0][0], rtol=1e-10, atol=1e-12)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10), p, fits[0][1])


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(
    "link, sm_link",
    [("logit", sm.families.links.Logit()), ("probit", sm.families.links.Probit())],
)
def test_binary_glm_equals_statsmodels_mle(link, sm_link, weighted):
    # Unit weights, and importance weights (statsmodels' var_weights: the weighted likelihood).
    rng, context = _design(3, n=600)
    x = _binary_outcome(rng, context, link)
    weights = rng.uniform(0.2, 3.0, len(x)) if weighted else np.ones(len(x))
    family = sm.families.Binomial(link=sm_link)
    glm = sm.GLM(x, sm.add_constant(context), family=family, var_weights=weights)
    glm = glm.fit(tol=1e-14, maxiter=200)
    with jax.enable_x64(True):
        coef, _ = _fit(BinaryGLM(link=link), x, context, weights)
    np.testing.assert_allclose(coef, glm.params, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("link", ["logit", "probit"])
def test_fisher_scoring_reports_convergence(link):
    # Scoring from b = 0 converges in a few steps (quadratically for the canonical logit link).
    rng, context = _design(3, n=600)
    x = _binary_outcome(rng, context, link)
    with jax.enable_x64(True):
        result = BinaryGLM(link=link).fisher_scoring(
            jnp.asarray(x[:, None]), jnp.asarray(context), jnp.ones(len(x))
        )
    assert bool(result.ok) and bool(result.converged) and bool(result.full_rank)
    assert not bool(result.complete) and not bool(result.quasi) and not bool(result.stalled)
    assert 3 <= int(result.iterations) <= 10
    assert float(result.change) <= np.sqrt(np.finfo(np.float64).eps)


def test_non_convergence_is_reported(monkeypatch):
    # A budget of 2 steps is too short; the fit is NaN (a diverged fit) and the reason is named.
    rng, context = _design(3, n=600)
    x, c = jnp.asarray(_binary_outcome(rng, context)[:, None]), jnp.asarray(context)
    w = jnp.ones(len(x))
    monkeypatch.setattr(linear, "IRLS_MAX_ITERATIONS", 2)
    result = BinaryGLM().fisher_scoring(x, c, w)
    assert int(result.iterations) == 2 and not bool(result.converged) and not bool(result.ok)
    assert not bool(result.quasi) and not bool(result.complete)
    assert np.isnan(BinaryGLM().closed_form(x, c, w)["params"]["linear"]["bias"]).all()
    columns = [("treatment", "A"), ("covariate", "X1"), ("covariate", "X2")]
    problem = linear.fit_problem(BinaryGLM(), x, c, w, columns)
    assert problem.startswith("BinaryGLM's Fisher scoring did not converge in 2 iterations")


# ---- rank deficiency and separation, as fit_model reports them --------------------------------


def _study(rng, n=300, mediator="continuous", outcome="continuous", covariates=None):
    a = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 2)) if covariates is None else covariates
    m = 0.5 * a + x[:, 0] + rng.normal(size=n)
    if mediator == "binary":
        m = (m > 0).astype(int)
    y = m + a - x[:, 1] + rng.normal(size=n)
    if outcome == "binary":
        y = (y > 0.5).astype(int)
    return dj.MediationData.from_arrays(
        treatment=a, mediators=m, outcome=y, covariates=x, mediator_names=["M"]
    )


@pytest.mark.parametrize(
    "mediator, generator", [("continuous", "LinearGaussian"), ("binary", "BinaryGLM")]
)
def test_a_constant_covariate_is_named(mediator, generator):
    # Validated data has no constant column; one set afterwards reaches the fit's rank check.
    data = _study(np.random.default_rng(0), mediator=mediator)
    covariates = np.column_stack([data.covariates[:, 0], np.full(data.n, 0.7)])
    data = dataclasses.replace(data, covariates=covariates)
    message = (
        f"node 'M': covariate 'X2' is constant (the design of {generator} is rank deficient); "
        "drop it"
    )
    with pytest.raises(dj.TrainingError) as caught:
        fit_model(build_model(data, "linear"), data, jax.random.key(0))
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "mediator, generator", [("continuous", "LinearGaussian"), ("binary", "BinaryGLM")]
)
def test_collinear_covariates_are_named(mediator, generator):
    rng = np.random.default_rng(1)
    x1 = rng.normal(size=300)
    data = _study(rng, mediator=mediator, covariates=np.column_stack([x1, 3.0 - 2.0 * x1]))
    message = (
        f"node 'M': covariates 'X1' and 'X2' are collinear (the design of {generator} is rank "
        "deficient); drop one"
    )
    with pytest.raises(dj.TrainingError) as caught:
        fit_model(build_model(data, "linear"), data, jax.random.key(0))
    assert str(caught.value) == message


@pytest.mark.parametrize("module", [LinearGaussian(), BinaryGLM()])
def test_a_rank_deficient_replicate_diverges(module):
    # Traced, the closed forms cannot raise: a bootstrap resample whose design is rank
    # deficient (here: every row with X2 = 1 left out) returns NaN variables, a diverged fit.
    rng, context = _design(6, n=300)
    context[:, 2] = rng.uniform(size=300) < 0.05
    x = (context[:, 1] + rng.normal(size=300) > 0).astype(float)
    counts = np.ones((2, 300))
    counts[1, context[:, 2] == 1] = 0.0
    _, infos = fit_generator_replicates(
        module,
        CONFIG,
        jax.random.split(jax.random.key(0), 2),
        jnp.asarray(counts, jnp.float32),
        jnp.asarray(x[:, None], jnp.float32),
        jnp.asarray(context, jnp.float32),
        jnp.ones(300, jnp.float32),
    )
    np.testing.assert_array_equal(infos.diverged, [False, True])


def _separated_study(kind):
    """A binary outcome that covariate X2 (rare, binary) or X1 separates."""
    rng = np.random.default_rng(2)
    n = 300
    x = rng.normal(size=(n, 2))
    if kind == "quasi":
        x[:, 1] = rng.uniform(size=n) < 0.08
    data = _study(rng, outcome="binary", covariates=x)
    y = data.outcome.copy()
    if kind == "quasi":  # every row with X2 = 1 is of class 1; the others overlap
        y[x[:, 1] == 1] = 1.0
    else:
        y = (x[:, 0] > 0.3).astype(float)
    return dataclasses.replace(data, outcome=y)


@pytest.mark.parametrize(
    "kind, column, adverb", [("complete", "X1", "completely"), ("quasi", "X2", "quasi-completely")]
)
def test_a_separated_binary_outcome_is_named(kind, column, adverb):
    data = _separated_study(kind)
    with pytest.raises(dj.TrainingError) as caught:
        fit_model(build_model(data, "linear"), data, jax.random.key(0))
    message = str(caught.value)
    assert message.startswith(
        f"node 'Y': its classes are {adverb} separated by covariate '{column}' (rows fitted "
        "with probability 0 or 1: BinaryGLM's maximum-likelihood coefficients do not exist)"
    ), message
    assert "\n" not in message


def test_a_separated_replicate_diverges():
    # Two rows with X2 = 1 are of class 0, so the data are not separated; a resample without
    # them is (quasi-completely), and counts as a diverged replicate rather than failing the fit.
    rng, context = _design(7, n=300)
    context[:, 2] = rng.uniform(size=300) < 0.08
    x = (context[:, 1] + rng.normal(size=300) > 0).astype(float)
    ones = np.flatnonzero(context[:, 2] == 1)
    x[ones] = 1.0
    x[ones[:2]] = 0.0
    counts = np.ones((2, 300))
    counts[1, ones[:2]] = 0.0
    args = [jnp.asarray(v, jnp.float32) for v in (counts, x[:, None], context, np.ones(300))]
    _, infos = fit_generator_replicates(
        BinaryGLM(), CONFIG, jax.random.split(jax.random.key(0), 2), *args
    )
    np.testing.assert_array_equal(infos.diverged, [False, True])


def test_binary_glm_log_prob_is_the_bernoulli_log_likelihood():
    rng, context = _design(4, n=50)
    x = rng.integers(0, 2, 50).astype(np.float32)
    module = BinaryGLM(link="logit")
    coef, p = _fit(module, x, context.astype(np.float32), np.ones(50, np.float32))
    logits = coef[0] + context @ coef[1:]
    expected = x * -np.log1p(np.exp(-logits)) + (1 - x) * -np.log1p(np.exp(logits))
    got = jax.vmap(lambda xi, ci: module.apply({"params": p}, xi, ci, method=BinaryGLM.log_prob))(
        jnp.asarray(x[:, None]), jnp.asarray(context, jnp.float32)
    )
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_unknown_link_is_refused():
    with pytest.raises(ValueError, match="unknown link 'cloglog'"):
        BinaryGLM(link="cloglog").init(jax.random.key(0), jnp.zeros(1), jnp.zeros(2))
