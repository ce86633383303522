"""Rewrites the embedded default study's CSV from its SCM (seed and size fixed in the module)."""

from importlib import resources

from dcma_jax.datasets.default_study import CSV_NAME, DEFAULT_STUDY, NUM_ROWS, SEED

path = resources.files("dcma_jax.datasets").joinpath(CSV_NAME)
DEFAULT_STUDY.observational(SEED, NUM_ROWS).to_csv(str(path), index=False, float_format="%.6f")
print(f"wrote {path}")
