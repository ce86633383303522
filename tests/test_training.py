"""Training: determinism, vmapped bootstrap fits equal single fits, divergence is reported."""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FAST

import dcma_jax as dj
from dcma_jax.generators import LinearGaussian, MixtureDensityNetwork, SplineFlow
from dcma_jax.inference import bootstrap_counts
from dcma_jax.model import Model, build_model, node_data
from dcma_jax.training import fit_generator, fit_generator_replicates, fit_model


def _node(data, model, j):
    x, context = node_data(model, data)[j]
    return x, context, jnp.ones(data.n)


def test_same_seed_same_parameters(default_data):
    model = build_model(default_data, "mdn")
    x, c, w = _node(default_data, model, 0)
    a, _ = fit_generator(model.generators[0], FAST, jax.random.key(3), x, c, w)
    b, _ = fit_generator(model.generators[0], FAST, jax.random.key(3), x, c, w)
    other, _ = fit_generator(model.generators[0], FAST, jax.random.key(4), x, c, w)
    jax.tree.map(np.testing.assert_array_equal, a, b)
    leaves = zip(jax.tree.leaves(a), jax.tree.leaves(other), strict=True)
    assert any(not np.array_equal(u, v) for u, v in leaves)


@pytest.mark.parametrize("generator", [LinearGaussian(), MixtureDensityNetwork()])
def test_vmapped_replicates_equal_single_fits(default_data, generator):
    # Replicate b of the vmapped fit is the single fit on the original rows weighted by the
    # resample's counts, with key b: the batched while_loop freezes finished replicates, so
    # early stopping is per replicate, and the validation split is one of original rows.
    model = build_model(default_data, "mdn")
    x, c, w = _node(default_data, model, 0)
    counts = bootstrap_counts(jax.random.key(0), default_data.n, 3)
    keys = jax.random.split(jax.random.key(1), 3)
    batched, infos = fit_generator_replicates(generator, FAST, keys, counts, x, c, w)
    for b in range(3):
        single, info = fit_generator(generator, FAST, keys[b], x, c, w * counts[b])
        assert int(info.epochs) == int(infos.epochs[b])
        # Batched and unbatched matmuls may sum in different orders: float32 rounding only.
        jax.tree.map(
            lambda s, v, b=b: np.testing.assert_allclose(v[b], s, rtol=2e-3, atol=2e-4),
            single,
            batched,
        )


def test_closed_form_replicate_equals_the_fit_on_the_resampled_rows(default_data):
    # Counts as weights give the coefficients of the fit on the resample's rows (duplicates
    # included). Weights are importance weights, so sigma^2 = (sum w r^2 / sum w) n_e / (n_e - p)
    # with Kish's n_e = (sum w)^2 / sum w^2: n on the resample's n rows, about n / 2 for the
    # counts. The two dof factors differ by O(p / n) (here 0.3% of sigma^2, both consistent);
    # what is the same is the weighted mean squared residual sigma^2 (n_e - p) / n_e.
    model = build_model(default_data, "linear")
    x, c, w = _node(default_data, model, 1)
    rows = jax.random.randint(jax.random.key(2), (default_data.n,), 0, default_data.n)
    counts = jnp.bincount(rows, length=default_data.n).astype(w.dtype)
    on_rows, _ = fit_generator(LinearGaussian(), FAST, jax.random.key(0), x[rows], c[rows], w)
    weighted, _ = fit_generator(LinearGaussian(), FAST, jax.random.key(0), x, c, w * counts)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
        on_rows["params"]["linear"],
        weighted["params"]["linear"],
    )
    p = c.shape[1] + 1
    n_e = {"rows": float(default_data.n), "counts": float(counts.sum() ** 2 / (counts**2).sum())}

    def mean_square(variables, n_e):
        return np.exp(2.0 * float(variables["params"]["log_scale"])) * (n_e - p) / n_e

    np.testing.assert_allclose(
        mean_square(weighted, n_e["counts"]), mean_square(on_rows, n_e["rows"]), rtol=1e-4
    )


def test_fit_does_not_retrace(default_data):
    model = build_model(default_data, "linear")
    x, c, w = _node(default_data, model, 1)
    fit_generator(model.generators[1], FAST, jax.random.key(0), x, c, w)
    before = fit_generator._cache_size()
    fit_generator(model.generators[1], FAST, jax.random.key(1), x * 2.0, c + 1.0, w)
    assert fit_generator._cache_size() == before


class _ExplodingGaussian(LinearGaussian):
    """Not registered: a loss that is NaN, to exercise divergence reporting."""

    registry_name: ClassVar[str | None] = None

    def closed_form(self, x, context, weights):
        return None

    def loss(self, x, context):
        return jnp.log(-jnp.abs(self.log_prob(x, context)) - 1.0)


def test_divergence_names_the_node(default_data):
    base = build_model(default_data, "linear")
    model = Model(base.graph, (base.generators[0], _ExplodingGaussian()), base.num_covariates)
    with pytest.raises(dj.TrainingError, match="training of node 'Y' .*diverged"):
        fit_model(model, default_data, jax.random.key(0), FAST)


@pytest.mark.parametrize("bad", [-1, 2.5, True])
def test_bad_plateau_settings_are_refused(bad):
    with pytest.raises(dj.ArgumentError, match="plateau_epochs must be None or a non-negative"):
        dj.TrainConfig(plateau_epochs=bad)
    with pytest.raises(dj.ArgumentError, match=r"plateau_factor must be in \(0, 1\)"):
        dj.TrainConfig(plateau_factor=1.0)


def test_plateau_epochs_none_is_the_familys_default(default_data):
    # Reduce on plateau is flow's default (SplineFlow.plateau_epochs = 4) and off for the
    # others; an explicit setting overrides the family's.
    assert SplineFlow.plateau_epochs == 4 and MixtureDensityNetwork.plateau_epochs == 0
    model = build_model(default_data, "flow")
    x, c, w = _node(default_data, model, 0)
    longer = dataclasses.replace(FAST, max_epochs=60, patience=20)

    def fit(**changes):
        config = dataclasses.replace(longer, **changes)
        return fit_generator(SplineFlow(), config, jax.random.key(5), x, c, w)

    (default, info), (four, _), (off, _) = fit(), fit(plateau_epochs=4), fit(plateau_epochs=0)
    jax.tree.map(np.testing.assert_array_equal, default, four)
    assert int(info.epochs) > int(info.best_epoch) + 4  # a plateau was reached
    leaves = zip(jax.tree.leaves(default), jax.tree.leaves(off), strict=True)
    assert any(not np.array_equal(u, v) for u, v in leaves)


def _zero_output(variables) -> bool:
    return not np.any(np.asarray(variables["params"]["conditioner"]["output"]["kernel"]))


def test_flow_keeps_its_linear_baseline_where_training_cannot_beat_it():
    """With ``output_init=0.1`` the flow's output kernel starts N(0, 0.1^2), so its start is
    only near its linear baseline; ``SplineFlow.baseline_candidate`` (the zero output layer) is a
    candidate of its own.
    With a learning rate that moves nothing every trained epoch is the perturbed start, which
    the exact least-squares fit beats on held-out linear-Gaussian rows; with 0 fixed epochs the
    baseline is returned, and it is numpy's least-squares normal law."""
    rng = np.random.default_rng(0)
    c = rng.standard_normal((400, 2)).astype(np.float32)
    x = (0.3 + c @ np.array([0.5, -0.2], np.float32) + 0.8 * rng.standard_normal(400))[:, None]
    x, w = x.astype(np.float32), np.ones(400, np.float32)
    flow = SplineFlow(hidden=(16,), output_init=0.1)
    frozen = dataclasses.replace(FAST, learning_rate=1e-12)
    variables, info = fit_generator(flow, frozen, jax.random.key(1), x, c, w)
    assert int(info.best_epoch) == 0 and _zero_output(variables)

    variables, _ = fit_generator(flow, FAST, jax.random.key(1), x, c, w, 0)
    design = np.column_stack([np.ones(400), c]).astype(np.float64)
    beta = np.linalg.lstsq(design, x[:, 0].astype(np.float64))[0]
    sigma = np.sqrt(np.mean((x[:, 0] - design @ beta) ** 2))
    log_prob = jax.vmap(lambda xi, ci: flow.apply(variables, xi, ci, method=flow.log_prob))
    expected = -0.5 * ((x[:, 0] - design @ beta) / sigma) ** 2 - np.log(sigma * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(log_prob(x, c), expected, atol=2e-4)


def test_flow_trained_epochs_replace_the_baseline_where_they_fit_better():
    # A nonlinear mean: training beats the linear baseline, so the kept fit is a trained epoch.
    rng = np.random.default_rng(1)
    c = rng.standard_normal((400, 2)).astype(np.float32)
    x = (np.sin(2.0 * c[:, 0]) + 0.3 * rng.standard_normal(400))[:, None].astype(np.float32)
    config = dataclasses.replace(FAST, max_epochs=30, patience=10)
    variables, info = fit_generator(
        SplineFlow(hidden=(16,), output_init=0.1),
        config,
        jax.random.key(1),
        x,
        c,
        np.ones(400, np.float32),
    )
    assert int(info.best_epoch) > 0 and not _zero_output(variables)
