r"""Choosing each node's generator family by cross-validated CRPS (``generators="auto"``).

For every node, the rows are dealt into ``K`` folds (:data:`FOLDS`, 5); each candidate family is
fitted ``K`` times to the observed rows *less* one fold and scored on that fold by the
continuous ranked probability score

.. math::

    \mathrm{CRPS}(F, y) = E|X - y| - \tfrac12 E|X - X'|, \qquad X, X' \sim F \text{ independent},

estimated without bias from ``num_samples`` draws per row
(:func:`dcma_jax.diagnostics.node_scores`), so every row is scored once, by fits that did not
see it; the per-row scores are averaged with the observation weights, in the node's original
units. Scoring all ``n`` rows rather than one hold-out of ``n / K`` shrinks the paired standard
error by about ``sqrt(K)``: with a single 20 % hold-out, ``auto`` kept a linear outcome that
misses an ``A x M`` interaction in 9 of 20 data sets of the recovery study's binary_mediator
SCM; with 5 folds, in none (``experiments/results/recovery.md``). Lower is better. Candidates
come simplest first, and the first one whose score exceeds the lowest by at most ``tolerance``
(1) standard errors of the paired difference is chosen (the one-standard-error rule,
:func:`choose`): a more flexible family has to beat a simpler one by more than the noise of the
comparison, so a linear node keeps its closed form when a network merely ties with it. CRPS
needs draws only, so every family is scored the same way, diffusion (no density) included; on a
binary node it is the Brier score ``(p - y)^2``, where the families' binary models compete
(``linear``: ``BinaryGLM``; the others: ``BernoulliMLP``, fitted once when several families
share it). A count node compares its discrete laws the same way (the kernel form holds for any
law): ``linear``'s ``NegativeBinomialGLM`` against ``NegativeBinomialMLP``, which ``mdn`` and,
as their stand-in, ``flow`` and ``diffusion`` use.

**Held-out rows.** Node ``j``'s folds are a random partition of its rows by a key of the
selection's own. Every candidate is fitted by :func:`dcma_jax.training.fit_generator` with the
observation weights set to 0 on a fold's rows, and a weight of 0 contributes nothing: not to
the closed forms (weighted least squares with Kish's effective sample size, Fisher scoring
over the rows of positive weight), not to the Adam loop's minibatch or validation losses. So
no candidate is scored on a row it was fitted to; without this a closed form would be scored
in-sample and win unfairly.

The Adam loop still splits off its own early-stopping rows, from the candidate's *fitting* key,
which is not the fold key: its validation rows are a random ``val_fraction`` of all rows, and
the held-out ones among them (weight 0) drop out of its validation loss. They must not be the
held-out rows themselves: a validation split of weight 0 has loss 0 in every epoch, so
training would stop ``patience`` epochs after the first. With ``val_fraction = v`` and ``K``
folds a neural candidate thus trains on about ``(1 - v)(1 - 1/K)`` of the rows (64% at the
defaults) and early-stops on about ``v (1 - 1/K)`` (16%) while a closed form fits ``1 - 1/K``
(80%): the asymmetry of the final fit (80% against 100%) at ``1 - 1/K`` times the data. All
candidates of a node share the fitting key and the scoring noise (common random numbers), so
their score differences carry no extra Monte Carlo noise from different draws.

**Then.** :func:`dcma_jax.fitted.fit` refits the chosen family of every node on all rows by the
usual path (point fit and bootstrap replicates), so persistence and queries are unchanged. The
choice is made once, on the observed rows, and not repeated per bootstrap replicate: the
intervals do not include the uncertainty of the choice.

**Cost.** Auto fits each candidate ``K`` more times per node (neural families dominate); the
folds are zero weights on the same rows, so all ``K`` fits and the refit of the chosen family
share one compiled training loop (same shapes).

**Candidates.** ``generators="auto"`` uses :data:`DEFAULT_CANDIDATES`, read at each call:
assign ``dcma_jax.selection.DEFAULT_CANDIDATES = ("linear", "flow")`` to change the set for
``fit`` / ``analyze`` / the CLI, or call :func:`select_generators` with ``candidates`` and pass
its choices to ``fit(generators=choices)`` (that fit's report then records no selection).
``diffusion`` is not a default candidate: it fits and samples the slowest.

Example:
  >>> choices, scores = select_generators(data, key=jax.random.key(0))  # doctest: +SKIP
  >>> choices  # M bimodal, Y linear-Gaussian given (A, M, X)          # doctest: +SKIP
  {'M': 'mdn', 'Y': 'linear'}
  >>> scores["M"]["linear"]  # 0.11 above mdn's 1.113: 5.6 standard errors  # doctest: +SKIP
  Score(crps=1.2256, se=0.0201)
  >>> fitted = dj.fit(data, generators="auto")  # the same choice, then the fit  # doctest: +SKIP

Reference: T. Gneiting and A. E. Raftery (2007), Strictly proper scoring rules, prediction, and
estimation, JASA 102(477), 359-378 (CRPS, its kernel form and propriety).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dcma_jax.data import MediationData
from dcma_jax.diagnostics import NUM_SAMPLES, node_scores
from dcma_jax.errors import ArgumentError
from dcma_jax.generators.base import Generator
from dcma_jax.graph import resolve_parents
from dcma_jax.model import build_model, float_dtype, node_data
from dcma_jax.training import TrainConfig, fit_generator, node_keys

#: The families ``generators="auto"`` chooses among, in tie-breaking order.
DEFAULT_CANDIDATES: tuple[str, ...] = ("linear", "mdn", "flow")

#: Folds of the cross-validated CRPS (:func:`node_crps`).
FOLDS = 5

#: Standard errors by which a later (more flexible) candidate must beat the lowest score's
#: rival to be chosen over an earlier one (the one-standard-error rule, :func:`choose`).
TOLERANCE = 1.0

# Folded into the fit's key: the selection's keys are independent of the point fit's, which
# splits the same key (the diagnostics fold in 7).
_SALT = 0x5E1EC7


class Score(NamedTuple):
    """A candidate's cross-validated score at one node, in the node's original units.

    Attributes:
      crps: mean cross-validated CRPS (observation-weighted); ``inf`` if its fit diverged.
      se: standard error of ``crps`` minus the lowest candidate's, from the paired per-row
        differences (0 for the lowest; ``inf`` if the fit diverged).
    """

    crps: float
    se: float


def node_crps(
    generators: Sequence[Generator],
    kind: str,
    config: TrainConfig,
    key: jax.Array,
    x: jax.Array,
    context: jax.Array,
    weights: jax.Array,
    num_samples: int = NUM_SAMPLES,
    folds: int = FOLDS,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row cross-validated CRPS of each candidate generator of one node (module docstring).

    Args:
      generators: the candidates (equal ones are fitted once a fold).
      kind: the node's kind (``"continuous"``, ``"binary"`` or ``"count"``).
      config: optimisation settings of neural candidates.
      key: the node's selection key (folds, fits, scoring noise).
      x: ``(n, 1)`` node values (internal units).
      context: ``(n, c)`` contexts.
      weights: ``(n,)`` observation weights.
      num_samples: draws per row of the CRPS estimate.
      folds: ``K``: the rows are dealt into ``K`` folds and every candidate is fitted ``K``
        times, each time with one fold's weights set to 0 and scored on that fold.

    Returns:
      ``(rows, crps)``: the scored row indices ``(n,)``, fold by fold, and the per-row CRPS in
      internal units, ``(len(generators), n)``; a candidate whose fit on a fold diverged has
      ``inf`` rows there.
    """
    n = x.shape[0]
    if not 2 <= folds <= n:
        raise ArgumentError(f"folds must be in [2, n={n}], got {folds}")
    fold_key, fit_key, score_key = jax.random.split(key, 3)
    order = np.asarray(jax.random.permutation(fold_key, n))
    held_rows = np.array_split(order, folds)
    scored = []
    for held in held_rows:
        train_weights = weights.at[held].set(0.0)
        x_held, c_held = x[held], context[held]
        done: dict[Generator, np.ndarray] = {}
        for generator in generators:
            if generator in done:
                continue
            params, info = fit_generator(generator, config, fit_key, x, context, train_weights)
            if bool(np.asarray(info.diverged)):
                done[generator] = np.full(held.shape[0], np.inf)
                continue
            crps, _, _ = node_scores(
                generator, kind, params, score_key, x_held, c_held, num_samples
            )
            done[generator] = np.asarray(crps, np.float64)
        scored.append(np.stack([done[g] for g in generators]))
    return np.concatenate(held_rows), np.concatenate(scored, axis=1)


def choose(scores: Mapping[str, Score], tolerance: float = TOLERANCE) -> str:
    """The first family whose CRPS exceeds the lowest by at most ``tolerance`` standard errors.

    Candidates come simplest first, so this is the one-standard-error rule (Hastie, Tibshirani
    and Friedman, *The Elements of Statistical Learning*, 2nd ed., sec. 7.10): a more flexible
    family must beat the simpler ones by more than the noise of the comparison.
    ``tolerance=0`` picks the lowest score (the earliest on a tie).
    """
    finite = {f: s for f, s in scores.items() if np.isfinite(s.crps)}
    if not finite:  # every fit diverged: the fit that follows raises the reason
        return next(iter(scores))
    lowest = min(s.crps for s in finite.values())
    return next(f for f, s in finite.items() if s.crps - lowest <= tolerance * s.se)


def select_generators(
    data: MediationData,
    *,
    key: jax.Array,
    parents: str | Mapping[str, Sequence[str]] | Sequence[Sequence[int]] | None = None,
    config: TrainConfig = TrainConfig(),
    link: str = "logit",
    candidates: Sequence[str] | None = None,
    num_samples: int = NUM_SAMPLES,
    tolerance: float = TOLERANCE,
    folds: int = FOLDS,
) -> tuple[dict[str, str], dict[str, dict[str, Score]]]:
    """Chooses every node's generator family by cross-validated CRPS (see the module docstring).

    Fits each candidate ``folds`` times per node, on top of the fit that follows: a cost the
    caller chooses by asking for ``"auto"``.

    Args:
      data: validated :class:`MediationData`.
      key: the fit's key; the selection folds a constant into it, so its folds, fits
        and scoring noise are independent of the point fit's.
      parents: the mediators' causal structure, as :func:`dcma_jax.fitted.fit` takes it.
      config: optimisation settings of neural candidates (those of the fit that follows).
      link: link of binary GLM nodes.
      candidates: registered family names, simplest first (default:
        :data:`DEFAULT_CANDIDATES`, read at the call).
      num_samples: draws per scored row of the CRPS estimate.
      tolerance: standard errors a later candidate must win by (:func:`choose`).
      folds: folds of the cross-validated CRPS (:func:`node_crps`).

    Returns:
      ``(choices, scores)``: node name -> chosen family (a mapping that ``fit`` and
      :func:`dcma_jax.model.build_model` take), and node name -> {family: :class:`Score`}, in
      node order and candidate order. A candidate whose fit diverged scores ``inf``.

    Raises:
      ArgumentError: no candidates, repeated ones, ``"auto"`` among them, or ``folds`` not in
        ``[2, n]``.
      ValueError: an unknown family name.
    """
    families = tuple(DEFAULT_CANDIDATES if candidates is None else candidates)
    if not families or len(set(families)) != len(families) or "auto" in families:
        raise ArgumentError(
            f"candidates must be distinct registered generator names, got {list(families)}"
        )
    structure = resolve_parents(data.mediator_names, parents)
    models = {f: build_model(data, f, link=link, parents=structure) for f in families}
    graph = models[families[0]].graph
    weights = jnp.asarray(data.weights, float_dtype())
    keys = node_keys(jax.random.fold_in(key, _SALT), len(graph.nodes))
    variables = (*data.mediator_vars, data.outcome_var)
    rows = node_data(models[families[0]], data)
    choices, scores = {}, {}
    for j, (node, var, (x, context)) in enumerate(zip(graph.nodes, variables, rows, strict=True)):
        held, crps = node_crps(
            [models[f].generators[j] for f in families],
            node.kind,
            config,
            keys[j],
            x,
            context,
            weights,
            num_samples,
            folds,
        )
        scale = var.scale if var.kind == "continuous" else 1.0
        node_scores_j = _scores(families, crps * scale, np.asarray(data.weights, np.float64)[held])
        scores[node.name] = node_scores_j
        choices[node.name] = choose(node_scores_j, tolerance)
    return choices, scores


def _scores(families: Sequence[str], crps: np.ndarray, weights: np.ndarray) -> dict[str, Score]:
    """Weighted mean CRPS of each candidate and the paired standard error against the lowest.

    With ``p_i = w_i / sum w`` and ``d_i`` a candidate's per-row CRPS minus the lowest one's,
    ``se = sqrt(n / (n - 1) * sum_i p_i^2 (d_i - sum_k p_k d_k)^2)`` (``s / sqrt(n)`` for equal
    weights).
    """
    p = weights / weights.sum()
    n = p.size
    finite = np.all(np.isfinite(crps), axis=1)
    if not finite.any():
        return {f: Score(np.inf, np.inf) for f in families}
    # Row by row, so that candidates sharing a generator get bit-identical scores.
    means = [row @ p if ok else np.inf for row, ok in zip(crps, finite, strict=True)]
    lowest = crps[int(np.argmin(means))]
    out = {}
    for f, row, mean, ok in zip(families, crps, means, finite, strict=True):
        se = np.inf
        if ok:
            d = row - lowest
            se = np.sqrt(n / (n - 1) * np.sum(p**2 * (d - d @ p) ** 2))
        out[f] = Score(float(mean), float(se))
    return out


def report_entries(choices: Mapping[str, str], scores: Mapping[str, Mapping[str, Score]]) -> tuple:
    """:func:`select_generators`' result as :attr:`dcma_jax.fitted.FitReport.selection`.

    Returns:
      ``((node, chosen family, ((family, crps, se), ...)), ...)`` in node order: hashable, as
      the static metadata of a fitted model must be.
    """
    return tuple(
        (node, choices[node], tuple((f, s.crps, s.se) for f, s in scores[node].items()))
        for node in scores
    )
