"""Shared fixtures. Compilation dominates test time on CPU, so tests share shapes and configs."""

import os

import jax
import jax.numpy as jnp
import pytest

# In-process CLI tests must not switch this process's JAX config to a persistent cache;
# tests/test_persistence.py checks the cache in a subprocess of its own.
os.environ["DCMA_COMPILATION_CACHE"] = "0"

import dcma_jax as dj
from dcma_jax.model import build_model
from dcma_jax.training import fit_model

# One short training configuration for every neural fit in the default suite: identical static
# configs share one compiled training loop across test files.
FAST = dj.TrainConfig(max_epochs=10, patience=5)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drops JAX's compiled programs after each test file.

    Late in the whole suite, after thousands of programs in one process, XLA's CPU compiler
    crashed (a segfault twice, then an abort) in whichever test compiled next; each test
    passed alone. The suspected cause, not measured, is the memory mappings the executables
    hold (Linux allows a process 65,530). Session fixtures keep their arrays; only programs
    are recompiled where a later file needs them.
    """
    yield
    jax.clear_caches()


@pytest.fixture(scope="session")
def default_data():
    return dj.load_default_study()


@pytest.fixture(scope="session")
def mdn_fit(default_data):
    """An mdn model of the default study: (model, params, covariates, weights)."""
    model = build_model(default_data, "mdn")
    params, _ = fit_model(model, default_data, jax.random.key(0), FAST)
    covariates = jnp.asarray(default_data.covariates, jnp.float32)
    return model, params, covariates, jnp.ones(default_data.n)
