"""Conditional generators, one module a family; importing this package registers them all."""

from dcma_jax.generators.base import (
    Generator,
    apply_batched,
    generator_class,
    init_params,
    registered_names,
)
from dcma_jax.generators.count import NegativeBinomialGLM, NegativeBinomialMLP
from dcma_jax.generators.diffusion import Diffusion
from dcma_jax.generators.discrete import BernoulliMLP
from dcma_jax.generators.flow import SplineFlow
from dcma_jax.generators.linear import BinaryGLM, LinearGaussian
from dcma_jax.generators.mixture import MixtureDensityNetwork

__all__ = [
    "BernoulliMLP",
    "BinaryGLM",
    "Diffusion",
    "Generator",
    "LinearGaussian",
    "MixtureDensityNetwork",
    "NegativeBinomialGLM",
    "NegativeBinomialMLP",
    "SplineFlow",
    "apply_batched",
    "generator_class",
    "init_params",
    "registered_names",
]
