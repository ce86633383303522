"""The fitted mediation model as a value: fit once, then query it.

:func:`fit` fits one generator per node on the observed rows and, for ``bootstrap=B``, on
``B`` row resamples (vmapped, in checkpointable blocks). It returns a
:class:`FittedMediation`: a frozen pytree whose leaves are the point-fit parameters, the
stacked replicate parameters and the replicates' row counts, and whose static part is the
model structure, the data (roles, encodings, covariate rows, weights), the fit settings and a
report of the fit. Effects, draws of arms and dose-response are queries on it
(:mod:`dcma_jax.queries`) and never refit; ``jax.jit``, ``jax.vmap`` and ``jax.grad`` apply to
it as to any pytree. :meth:`FittedMediation.save` and :func:`dcma_jax.persistence.load`
store and restore it without pickle.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from dcma_jax import diagnostics, influence, queries, robust, sensitivity
from dcma_jax.data import MediationData
from dcma_jax.errors import ArgumentError
from dcma_jax.graph import resolve_parents
from dcma_jax.inference import (
    DEFAULT_BLOCK_SIZE,
    block_ranges,
    bootstrap_counts,
    diverged_replicates,
    fit_bootstrap,
)
from dcma_jax.model import GeneratorChoice, Model, build_model
from dcma_jax.robust import CrossFit, fit_crossfit
from dcma_jax.selection import report_entries, select_generators
from dcma_jax.training import FitInfo, TrainConfig, fit_model, replicate_keys


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """How a model was fitted (everything that, with the data, determines the fit).

    Attributes:
      link: link of binary GLM nodes.
      config: optimisation settings of neural generators.
      seed: the seed fitting used; queries use it unless given another.
      bootstrap: number of bootstrap replicates ``B``.
      block_size: replicates fitted (and checkpointed) together.
      crossfit: folds of the one-step estimator's cross-fitted nuisances (0: none).
      crossfit_bootstrap: whether every bootstrap replicate was cross-fitted too.
    """

    link: str = "logit"
    config: TrainConfig = TrainConfig()
    seed: int = 0
    bootstrap: int = 0
    block_size: int = DEFAULT_BLOCK_SIZE
    crossfit: int = 0
    crossfit_bootstrap: bool = False


@dataclasses.dataclass(frozen=True)
class FitReport:
    """Diagnostics of a fit, per node in node order (mediators, then the outcome).

    Attributes:
      epochs: epochs of the point fit (0 for closed forms).
      best_val_loss: best validation loss of the point fit (``-inf`` for closed forms, NaN
        without a validation split: ``TrainConfig.fixed_epochs``).
      replicate_epochs: per node, the epochs of each replicate (``()`` without bootstrap).
      replicate_diverged: per replicate, whether its fit diverged at some node; such
        replicates are left out of the intervals.
      seconds: wall time of the fitting done by the process that finished the fit.
      best_epochs: the epoch whose parameters the point fit kept (:class:`FitInfo`
        ``best_epoch``; 0 for closed forms); ``()`` in models saved before it was recorded.
      selection: with ``generators="auto"``, per node ``(node, chosen family, ((family,
        cross-validated CRPS, its standard error against the lowest), ...))``
        (:mod:`dcma_jax.selection`); ``()`` otherwise.
    """

    epochs: tuple[int, ...]
    best_val_loss: tuple[float, ...]
    replicate_epochs: tuple[tuple[int, ...], ...] = ()
    replicate_diverged: tuple[bool, ...] = ()
    seconds: float = 0.0
    selection: tuple = ()
    best_epochs: tuple[int, ...] = ()

    @classmethod
    def from_infos(
        cls,
        infos: Sequence[FitInfo],
        replicate_infos: Sequence[FitInfo] | None,
        seconds: float,
        diverged: np.ndarray | None = None,
    ) -> FitReport:
        return cls(
            epochs=tuple(int(i.epochs) for i in infos),
            best_val_loss=tuple(float(i.best_val_loss) for i in infos),
            replicate_epochs=tuple(
                tuple(int(e) for e in np.asarray(i.epochs)) for i in replicate_infos or ()
            ),
            replicate_diverged=tuple(bool(d) for d in (() if diverged is None else diverged)),
            seconds=round(float(seconds), 2),
            best_epochs=tuple(int(i.best_epoch) for i in infos),
        )


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=[
        "params",
        "replicate_params",
        "replicate_counts",
        "crossfit",
        "crossfit_replicates",
    ],
    meta_fields=["model", "data", "settings", "report"],
)
@dataclasses.dataclass(frozen=True)
class FittedMediation:
    """A fitted mediation model: parameters (leaves) plus structure, data and settings (static).

    Attributes:
      params: per-node generator variables of the point fit, in node order.
      replicate_params: the same with a leading replicate axis ``B``, or ``None``.
      replicate_counts: ``(B, n)`` float row counts of the resamples, or ``None``.
      model: the graph and one generator per node.
      data: the observed data the model was fitted to.
      settings: how it was fitted (:class:`FitSettings`).
      report: diagnostics of the fit (:class:`FitReport`).
      crossfit: the one-step estimator's cross-fitted nuisances
        (:class:`~dcma_jax.robust.CrossFit`), or ``None``.
      crossfit_replicates: the same for every bootstrap resample (a leading axis ``B``), or
        ``None``.

    Example:
      >>> fitted = dj.fit(data, generators="linear", bootstrap=50, seed=0)  # doctest: +SKIP
      >>> fitted.effects(quantiles=(0.1, 0.9)).summary()                    # doctest: +SKIP
      >>> fitted.simulate(["Y(1,M(0))"], num_draws=1000)                     # doctest: +SKIP
    """

    params: tuple
    replicate_params: tuple | None
    replicate_counts: jax.Array | None
    model: Model
    data: MediationData
    settings: FitSettings
    report: FitReport
    crossfit: CrossFit | None = None
    crossfit_replicates: CrossFit | None = None

    @property
    def seed(self) -> int:
        return self.settings.seed

    @property
    def bootstrap(self) -> int:
        return self.settings.bootstrap

    @property
    def kept_replicates(self) -> np.ndarray:
        """``(B,)`` bools: the replicates the intervals use (those whose fit did not diverge)."""
        diverged = self.report.replicate_diverged or (False,) * self.bootstrap
        return ~np.asarray(diverged, bool)

    # ---- queries ------------------------------------------------------------------------------

    # Queries are the functions of :mod:`dcma_jax.queries`, bound as methods.
    effects = queries.effects
    simulate = queries.simulate_arms
    dose_response = queries.dose_response
    diagnostics = diagnostics.node_diagnostics
    sensitivity = sensitivity.sensitivity
    influence = influence.influence
    onestep = robust.onestep_query

    # ---- description and persistence ------------------------------------------------------

    def describe(self) -> dict:
        """How the model was fitted, as the JSON-ready ``meta`` of every result."""
        model, data, report = self.model, self.data, self.report
        nodes = model.graph.nodes
        return {
            "n": data.n,
            "treatment": data.treatment_name,
            "mediators": list(data.mediator_names),
            "outcome": data.outcome_name,
            "covariates": list(data.covariate_names),
            "graph": model.describe().splitlines(),
            "generators": {
                node.name: type(g).__name__ for node, g in zip(nodes, model.generators, strict=True)
            },
            "treatment_kind": data.treatment_var.kind,
            "parents": {
                node.name: [model.graph.mediators[p].name for p in node.parents]
                for node in model.graph.mediators
            },
            "bootstrap": self.bootstrap,
            "crossfit_folds": self.settings.crossfit or None,
            "propensity": (
                None if self.crossfit is None else type(self.crossfit.propensity_generator).__name__
            ),
            "fit_seed": self.seed,
            "epochs": {node.name: e for node, e in zip(nodes, report.epochs, strict=True)},
            "best_epochs": dict(zip([n.name for n in nodes], report.best_epochs, strict=False))
            or None,
            "bootstrap_epochs": [list(e) for e in report.replicate_epochs] or None,
            "bootstrap_dropped": sum(report.replicate_diverged),
            "fit_seconds": report.seconds,
            "generator_selection": {
                node: {
                    "chosen": family,
                    "crps": {f: v if np.isfinite(v) else None for f, v, _ in s},
                    "se": {f: e if np.isfinite(e) else None for f, _, e in s},
                }
                for node, family, s in report.selection
            }
            or None,
        }

    def save(self, directory: str | Path) -> Path:
        """Writes the model to ``directory`` (see :mod:`dcma_jax.persistence`); returns it."""
        from dcma_jax.persistence import save

        return save(self, directory)


def fit_keys(seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(point fit, resample rows, replicate fits)`` keys of a seed (see ``query_keys``)."""
    fit_key, _, row_key, boot_fit_key, _ = jax.random.split(jax.random.key(seed), 5)
    return fit_key, row_key, boot_fit_key


def crossfit_key(seed: int) -> jax.Array:
    """The key of the fold deal and fold fits of a seed (apart from :func:`fit_keys`')."""
    return jax.random.fold_in(fit_keys(seed)[0], 11)


def fit(
    data: MediationData,
    *,
    generators: GeneratorChoice | Mapping[str, GeneratorChoice] = "mdn",
    link: str = "logit",
    parents: str | Mapping[str, Sequence[str]] | Sequence[Sequence[int]] | None = None,
    config: TrainConfig = TrainConfig(),
    bootstrap: int = 0,
    seed: int = 0,
    block_size: int = DEFAULT_BLOCK_SIZE,
    checkpoint: str | Path | None = None,
    crossfit: int = 0,
    propensity: GeneratorChoice = "linear",
    crossfit_bootstrap: bool = False,
    progress: Callable[[str], None] | None = None,
) -> FittedMediation:
    """Fits the mediation model once: every node's generator, and ``B`` bootstrap replicates.

    Args:
      data: validated :class:`MediationData`.
      generators: generator family name or instance for all nodes, or a mapping from node
        name to one (see :func:`dcma_jax.model.build_model`); ``"auto"``: per node, the first
        family of :data:`dcma_jax.selection.DEFAULT_CANDIDATES` whose 5-fold cross-validated
        CRPS is within one standard error of the lowest, which fits each candidate 5 more
        times per node (:mod:`dcma_jax.selection`).
      link: link of binary GLM nodes (``"logit"`` or ``"probit"``).
      parents: the mediators' causal structure: ``None``/``"chain"`` (every earlier mediator
        is a parent), ``"parallel"`` (none), or ``{"M2": ["M1"], ...}``.
      config: optimisation settings of neural generators.
      bootstrap: number of bootstrap replicates ``B`` (0: no intervals).
      seed: the one seed the fit derives from; queries default to it.
      block_size: replicates fitted together; a checkpoint is written after each block.
      checkpoint: a folder: the point fit and each finished block are saved there as they
        finish, and the finished model at the end. If it holds an unfinished fit of the same
        data and settings, the fit resumes after its last finished block and ends with exactly
        the numbers of an uninterrupted fit.
      crossfit: ``K >= 2`` folds: also fit the one-step estimator's nuisances on each fold's
        complement (:func:`dcma_jax.robust.fit_crossfit`; binary treatment), so that
        ``effects(estimator="onestep")`` can be asked; 0 (default): none.
      propensity: family of the propensity model ``P(A = 1 | X)`` and of the classifier
        ``P(A = 1 | M, X)`` used with ``crossfit`` (``"linear"``: logistic GLM; ``"mdn"``:
        Bernoulli MLP; or a binary generator instance).
      crossfit_bootstrap: with ``crossfit`` and ``bootstrap``, cross-fit every resample too
        (``B * K`` more fits of every node), so that the one-step estimator's intervals are
        the bootstrap of the whole estimator; default: its influence-function intervals.
      progress: called with a stage description before each stage (the CLI's progress bar).

    Returns:
      A :class:`FittedMediation`.

    Raises:
      ValueError: bad arguments, or a checkpoint folder holding a different model.
      TrainingError: a generator diverged.
    """
    if bootstrap < 0:
        raise ArgumentError(f"bootstrap must be >= 0, got {bootstrap}")
    if block_size < 1:
        raise ArgumentError(f"block_size must be positive, got {block_size}")
    if crossfit < 0 or crossfit == 1:
        raise ArgumentError(f"crossfit must be 0 (none) or at least 2 folds, got {crossfit}")
    if crossfit:
        robust.check_crossfit(data, crossfit)
    if crossfit_bootstrap and not (crossfit and bootstrap):
        raise ArgumentError("crossfit_bootstrap needs crossfit=K and bootstrap=B")
    notify = progress or (lambda _: None)
    started = time.perf_counter()
    fit_key, row_key, boot_fit_key = fit_keys(seed)
    selection = ()
    if isinstance(generators, str) and generators == "auto":
        notify("selecting generators")
        generators, scores = select_generators(
            data, key=fit_key, parents=parents, config=config, link=link
        )
        selection = report_entries(generators, scores)
    model = build_model(
        data, generators, link=link, parents=resolve_parents(data.mediator_names, parents)
    )
    # A block never holds more than B replicates (a short last block is padded).
    block_size = min(int(block_size), int(bootstrap)) if bootstrap else int(block_size)
    settings = FitSettings(
        link, config, int(seed), int(bootstrap), block_size, int(crossfit), bool(crossfit_bootstrap)
    )
    store = None
    if checkpoint is not None:
        from dcma_jax.persistence import Checkpoint

        store = Checkpoint.open(checkpoint, model, data, settings)

    resumed = store.point() if store is not None else None
    if resumed is None:
        notify("fitting generators")
        params, infos = fit_model(model, data, fit_key, config)
        if store is not None:
            store.write_point(params, infos)
    else:
        params, infos = resumed
    boot_params = counts = boot_infos = diverged = None
    if bootstrap:
        counts = bootstrap_counts(row_key, data.n, bootstrap)
        keys = replicate_keys(boot_fit_key, len(model.generators), bootstrap)
        blocks = block_ranges(bootstrap, block_size)
        finished = store.blocks(len(blocks)) if store is not None else []

        def on_block(i: int, block: Any) -> None:
            if store is not None:
                store.write_block(i, block, counts[slice(*blocks[i])])

        boot_params, boot_infos = fit_bootstrap(
            model, data, keys, counts, config, block_size, finished, on_block, notify
        )
        diverged = diverged_replicates(model, boot_infos)
    nuisances = None
    if crossfit:
        notify(f"cross-fitting {crossfit} folds")
        nuisances = fit_crossfit(
            model,
            data,
            crossfit_key(seed),
            config,
            folds=crossfit,
            propensity=propensity,
            link=link,
        )
    replicate_nuisances = None
    if crossfit_bootstrap:
        notify(f"cross-fitting {bootstrap} bootstrap replicates")
        replicate_nuisances = robust.fit_crossfit_replicates(
            model, data, jax.random.fold_in(crossfit_key(seed), 1), config, nuisances, counts
        )
    report = FitReport.from_infos(infos, boot_infos, time.perf_counter() - started, diverged)
    report = dataclasses.replace(report, selection=selection)
    fitted = FittedMediation(
        params, boot_params, counts, model, data, settings, report, nuisances, replicate_nuisances
    )
    if store is not None:
        store.finish(fitted)
    return fitted
