"""Shared fixtures. Compilation dominates test time on CPU, so tests share shapes and configs."""

import atexit
import os
import shutil
import tempfile

import jax
import jax.numpy as jnp
import pytest

# In-process CLI tests must not switch this process's JAX config to a persistent cache;
# tests/test_persistence.py checks the cache in a subprocess of its own.
os.environ["DCMA_COMPILATION_CACHE"] = "0"

import dcma_jax as dj


def _use_a_compilation_cache_for_this_run() -> None:
    """Points JAX's persistent compilation cache at a fresh folder, removed at exit.

    The suite recompiles the same programs many times: a program compiled in one test file is
    compiled again in the next after ``_release_compiled_programs`` drops it, and tests of one
    file rebuild identical fits. With the cache a recompilation is a load from disk. Measured
    on test_fitted, test_effects, test_generators and test_simulate in one process, from an
    empty folder: 254 s of CPU against 329 s without (-23 %). The folder starts empty every
    run, so no run reuses another's programs. ``DCMA_TEST_COMPILATION_CACHE=0`` turns it off.
    """
    if os.environ.get("DCMA_TEST_COMPILATION_CACHE", "1") == "0":
        return
    folder = tempfile.mkdtemp(prefix="dcma-test-xla-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.05)


_use_a_compilation_cache_for_this_run()

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


# Fits shared by several test files. A session fixture keeps its arrays when the compiled
# programs are dropped after a file, so a fit that several files query is made once.

# A neural mediator and a closed-form outcome (both fitting paths at half the compile cost of
# two neural nodes), with 4 bootstrap replicates: test_analyze, test_fitted, test_effects,
# test_influence.
MIXED = {"M": "mdn", "Y": "linear"}
MIXED_FIT = dict(generators=MIXED, bootstrap=4, config=FAST, seed=11)
MIXED_QUERY = dict(num_draws=2000, bootstrap_draws=500)


@pytest.fixture(scope="session")
def mixed_fitted(default_data):
    """``dj.fit`` of the default study with ``MIXED_FIT``."""
    return dj.fit(default_data, **MIXED_FIT)


@pytest.fixture(scope="session")
def mixed_analysis(default_data):
    """``dj.analyze`` with ``MIXED_FIT`` and ``MIXED_QUERY``: a fit of its own, so that
    comparing it with ``mixed_fitted.effects(**MIXED_QUERY)`` compares two runs."""
    return dj.analyze(default_data, **MIXED_FIT, **MIXED_QUERY)


@pytest.fixture(scope="session")
def mdn_fitted(default_data):
    """``dj.fit`` of the default study with mdn generators for both nodes and ``FAST``."""
    return dj.fit(default_data, generators="mdn", config=FAST)


@pytest.fixture(scope="session")
def mdn_fit(mdn_fitted, default_data):
    """The mdn model of ``mdn_fitted`` as (model, params, covariates, weights)."""
    covariates = jnp.asarray(default_data.covariates, jnp.float32)
    return mdn_fitted.model, mdn_fitted.params, covariates, jnp.ones(default_data.n)
