"""One-call analysis: :func:`fit` then :meth:`~dcma_jax.fitted.FittedMediation.effects`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dcma_jax.data import MediationData
from dcma_jax.fitted import fit
from dcma_jax.model import GeneratorChoice
from dcma_jax.results import MediationResult
from dcma_jax.training import TrainConfig


def analyze(
    data: MediationData,
    *,
    generators: GeneratorChoice | Mapping[str, GeneratorChoice] = "mdn",
    link: str = "logit",
    parents: str | Mapping[str, Sequence[str]] | Sequence[Sequence[int]] | None = None,
    config: TrainConfig = TrainConfig(),
    bootstrap: int = 0,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    **query: Any,
) -> MediationResult:
    """Distributional mediation analysis in one call: ``fit(data, ...).effects(...)``.

    The fitting arguments are those of :func:`dcma_jax.fitted.fit`; every other keyword
    (``effects``, ``quantiles``, ``num_draws``, ``path_specific``, ``dose_grid``, ...) goes to
    :meth:`~dcma_jax.fitted.FittedMediation.effects`, with the same ``seed``. The result equals
    that of the two calls made separately; fit once and query many times when asking several
    questions of one model.
    """
    fitted = fit(
        data,
        generators=generators,
        link=link,
        parents=parents,
        config=config,
        bootstrap=bootstrap,
        seed=seed,
        progress=progress,
    )
    return fitted.effects(seed=seed, progress=progress, **query)
