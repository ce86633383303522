"""The linear generators' closed-form fits equal statsmodels' OLS / WLS / GLM estimates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import statsmodels.api as sm

from dcma_jax.generators import BinaryGLM, LinearGaussian
from dcma_jax.training import TrainConfig, fit_generator

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


def test_weighted_fit_equals_frequency_weighted_ols():
    # Bootstrap counts act as frequency weights: the same as duplicating rows.
    rng, context = _design(2)
    x = context @ np.array([1.0, 0.2, 0.0]) + rng.normal(size=len(context))
    counts = rng.integers(0, 4, len(x)).astype(float)
    rows = np.repeat(np.arange(len(x)), counts.astype(int))
    ols = sm.OLS(x[rows], sm.add_constant(context[rows])).fit()
    with jax.enable_x64(True):
        coef, p = _fit(LinearGaussian(), x, context, counts)
        scale = float(np.exp(p["log_scale"]))
    np.testing.assert_allclose(coef, ols.params, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(scale**2, ols.scale, rtol=1e-10)


@pytest.mark.parametrize(
    "link, sm_link",
    [("logit", sm.families.links.Logit()), ("probit", sm.families.links.Probit())],
)
def test_binary_glm_equals_statsmodels_mle(link, sm_link):
    rng, context = _design(3, n=600)
    eta = -0.2 + context @ np.array([0.8, -0.6, 0.4])
    prob = 1 / (1 + np.exp(-eta)) if link == "logit" else 0.5 * (1 + np.tanh(eta * 0.8))
    x = (rng.uniform(size=len(eta)) < prob).astype(float)
    glm = sm.GLM(x, sm.add_constant(context), family=sm.families.Binomial(link=sm_link)).fit(
        tol=1e-14, maxiter=200
    )
    with jax.enable_x64(True):
        coef, _ = _fit(BinaryGLM(link=link), x, context, np.ones(len(x)))
    np.testing.assert_allclose(coef, glm.params, rtol=1e-8, atol=1e-10)


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
