"""Synthetic studies with known truths, and the embedded default study."""

from dcma_jax.datasets.default_study import (
    DEFAULT_STUDY,
    load_default_frame,
    load_default_study,
)
from dcma_jax.datasets.sequential import (
    CONTINUOUS_TREATMENT,
    INTERACTION,
    TWO_MEDIATORS,
    SequentialStudy,
    linear_truths,
)
from dcma_jax.datasets.synthetic import SyntheticStudy

__all__ = [
    "CONTINUOUS_TREATMENT",
    "DEFAULT_STUDY",
    "INTERACTION",
    "TWO_MEDIATORS",
    "SequentialStudy",
    "SyntheticStudy",
    "linear_truths",
    "load_default_frame",
    "load_default_study",
]
