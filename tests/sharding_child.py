"""The numbers whose device invariance tests/test_sharding.py checks, on this process's devices.

``python tests/sharding_child.py PART OUT.npz`` writes :func:`numbers` of ``PART``; the device
count is fixed at jax's import (``XLA_FLAGS=--xla_force_host_platform_device_count=D``), so
each count needs a fresh interpreter. Shapes need padding on 4 devices: 5 Monte Carlo chunks,
B = 6 bootstrap replicates and 13 stratified rows. Every function runs on its default mesh, all
the devices.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np

import dcma_jax as dj
from dcma_jax import devices
from dcma_jax.generators.base import init_params
from dcma_jax.queries import arm_effects, build_estimands, replicate_effects
from dcma_jax.simulate import simulate_rows
from dcma_jax.training import replicate_keys

B = 6
DRAWS, CHUNK, REPLICATE_DRAWS = 4500, 1000, 800
SPEC = dj.FunctionalSpec(quantiles=(0.5,), cdf_points=(0.0,), distances=("energy",))
FAST = dj.TrainConfig(max_epochs=10, patience=5)


def _inputs(data, model):
    """Estimand layout, packed arms and the traced inputs of the query cores."""
    estimands = build_estimands(data, model)
    common = (
        jnp.asarray(data.covariates, jnp.float32),
        jnp.asarray(data.weights, jnp.float32),
        jnp.asarray(data.outcome_var.center, jnp.float32),
        jnp.asarray(data.outcome_var.scale, jnp.float32),
    )
    return estimands.layout, dj.Arms.pack(estimands.arms, jnp.float32), common


def _counts(n: int) -> np.ndarray:
    """``(B, n)`` bootstrap row counts (numpy: nothing to compile)."""
    return np.random.default_rng(1).multinomial(n, np.full(n, 1.0 / n), size=B).astype(np.float32)


def _random_params(data, model, seed: int) -> tuple:
    """Normal(0, 0.3) values in every variable of every node (numpy: nothing to compile)."""
    p, rng = data.covariates.shape[1], np.random.default_rng(seed)
    params = []
    for g, c in zip(model.generators, (p + 1, p + 2), strict=True):
        shapes = jax.eval_shape(lambda g=g, c=c: init_params(g, jax.random.key(0), c))
        params.append(jax.tree.map(lambda v: 0.3 * rng.standard_normal(v.shape, v.dtype), shapes))
    return tuple(params)


def _fits(data, generators, config=FAST) -> dict[str, np.ndarray]:
    """Every leaf of B replicate fits (params and FitInfo)."""
    model = dj.build_model(data, generators)
    keys = replicate_keys(jax.random.key(2), len(model.generators), B)
    fits = dj.fit_model_replicates(model, data, keys, _counts(data.n), config)
    return {str(j): np.asarray(leaf) for j, leaf in enumerate(jax.tree.leaves(fits))}


def _core(data) -> dict[str, np.ndarray]:
    """Linear point and replicate effects and mdn draws (random weights), linear fits."""
    linear = dj.build_model(data, "linear")
    point = _random_params(data, linear, 3)
    layout, arms, common = _inputs(data, linear)
    covariates, weights, center, scale = common
    key, boot_key = jax.random.split(jax.random.key(5))
    values, curves, _ = arm_effects(linear, layout, SPEC, point, arms, key, *common, DRAWS, CHUNK)
    out = {"linear/values": values, "linear/curves": curves}

    mdn = dj.build_model(data, "mdn")
    params = _random_params(data, mdn, 10)
    draws = dj.simulate_packed(mdn, params, key, covariates, weights, arms, DRAWS, CHUNK)
    out.update({f"mdn/{field}": value for field, value in draws._asdict().items()})
    # Stratified draws (influence functions, the one-step estimator): rows split across devices.
    rows = covariates[:13]  # 13 rows: 4 devices get 4, 4, 4 and 1 + 3 of padding
    outcome, mediators = simulate_rows(mdn, params, key, rows, arms, 7, with_mediators=True)
    out.update({"rows/outcome": outcome, "rows/mediators": mediators})

    # Replicates that differ from each other and not with the devices (fits differ by float
    # rounding; tested apart), each simulated with its resample's rows.
    replicates = jax.tree.map(lambda v: np.stack([v * (1.0 + 0.1 * b) for b in range(B)]), point)
    keys = jax.random.split(boot_key, B)
    values, curves = replicate_effects(
        linear,
        layout,
        SPEC,
        replicates,
        arms,
        keys,
        covariates,
        _counts(data.n) * weights,
        center,
        scale,
        REPLICATE_DRAWS,
        CHUNK,
    )
    out.update({"replicate/values": values, "replicate/curves": curves})
    out.update({f"linear_fit/{k}": v for k, v in _fits(data, "linear").items()})
    # Fewer units than devices: three of four devices compute padding.
    out["map/one_unit"] = devices.map_over_devices(
        lambda units, shared: jax.lax.map(lambda u: u * shared, units),
        devices.device_mesh(),
        jnp.arange(1.0, 2.0),
        jnp.float32(3.0),
    )
    return {k: np.asarray(v) for k, v in out.items()}


def numbers(part: str) -> dict[str, np.ndarray]:
    """``"core"``: :func:`_core`; ``"fits"``: replicate fits of an mdn mediator."""
    data = dj.load_default_study()
    out = _core(data) if part == "core" else _fits(data, {"M": "mdn", "Y": "linear"})
    return {"device_count": np.array(jax.device_count()), **out}


if __name__ == "__main__":
    np.savez(sys.argv[2], **numbers(sys.argv[1]))
