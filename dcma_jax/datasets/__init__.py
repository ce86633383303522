"""Synthetic studies with known truths, and the embedded default study."""

from dcma_jax.datasets.default_study import (
    DEFAULT_STUDY,
    load_default_frame,
    load_default_study,
)
from dcma_jax.datasets.synthetic import SyntheticStudy

__all__ = ["DEFAULT_STUDY", "SyntheticStudy", "load_default_frame", "load_default_study"]
