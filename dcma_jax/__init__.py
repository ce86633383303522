"""dcma_jax: distributional causal mediation analysis in JAX.

Learn a conditional generator for every mediator and the outcome, rebuild interventional
outcome distributions Y(a, M(a')) by a compiled Monte Carlo core, and report direct and
indirect effects on means, quantiles, CDFs and distances, with bootstrap intervals.

Fit once (:func:`fit` returns a :class:`FittedMediation`), then query: effects, draws of
arms, dose-response; save and load the fitted model (:func:`load`).
"""

from dcma_jax.analysis import analyze
from dcma_jax.arms import Arm, Arms, parse_arms
from dcma_jax.data import DataError, MediationData, Variable
from dcma_jax.datasets import DEFAULT_STUDY, SequentialStudy, SyntheticStudy, load_default_study
from dcma_jax.devices import device_mesh, map_over_devices
from dcma_jax.errors import ArgumentError
from dcma_jax.estimands import (
    EffectLayout,
    Estimands,
    FunctionalSpec,
    interventional_effects,
    natural_effects,
    path_specific_effects,
)
from dcma_jax.fitted import FitReport, FitSettings, FittedMediation, fit
from dcma_jax.functionals import cdf, energy, ks, mean, quantile, wasserstein
from dcma_jax.generators import (
    BernoulliMLP,
    BinaryGLM,
    Generator,
    LinearGaussian,
    MixtureDensityNetwork,
    NegativeBinomialGLM,
    NegativeBinomialMLP,
    generator_class,
    registered_names,
)
from dcma_jax.graph import CausalGraph
from dcma_jax.model import Model, build_model
from dcma_jax.paths import PathSpecificError
from dcma_jax.persistence import ModelFileError, load
from dcma_jax.results import MediationResult
from dcma_jax.simulate import Draws, simulate, simulate_packed
from dcma_jax.training import TrainConfig, TrainingError, fit_model, fit_model_replicates

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_STUDY",
    "ArgumentError",
    "Arm",
    "Arms",
    "BernoulliMLP",
    "BinaryGLM",
    "CausalGraph",
    "DataError",
    "Draws",
    "EffectLayout",
    "Estimands",
    "FitReport",
    "FitSettings",
    "FittedMediation",
    "FunctionalSpec",
    "Generator",
    "LinearGaussian",
    "MediationData",
    "MediationResult",
    "MixtureDensityNetwork",
    "Model",
    "ModelFileError",
    "NegativeBinomialGLM",
    "NegativeBinomialMLP",
    "PathSpecificError",
    "SequentialStudy",
    "SyntheticStudy",
    "TrainConfig",
    "TrainingError",
    "Variable",
    "analyze",
    "build_model",
    "cdf",
    "device_mesh",
    "energy",
    "fit",
    "fit_model",
    "fit_model_replicates",
    "generator_class",
    "interventional_effects",
    "ks",
    "load",
    "load_default_study",
    "map_over_devices",
    "mean",
    "natural_effects",
    "parse_arms",
    "path_specific_effects",
    "quantile",
    "registered_names",
    "simulate",
    "simulate_packed",
    "wasserstein",
]
