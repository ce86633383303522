r"""Diagnostics of a fitted model: how well each node fits, and where arms extrapolate.

Fit quality, per node, on held-out rows (the validation rows a neural fit never trained on; a
closed-form fit, or a neural one with ``TrainConfig.fixed_epochs``, uses every row, so its
figures are in-sample and say so):

* ``heldout_log_lik``: mean log-density (log-mass for a binary or count node) in original
  units, where the generator has a density;
* ``crps``: the continuous ranked probability score ``E|X - y| - E|X - X'| / 2``, estimated
  without bias from ``num_samples`` draws of the generator per row, in the node's original
  units (lower is better);
* ``pit_ks``: the Kolmogorov–Smirnov distance of the probability integral transforms
  ``u_i = F(y_i | c_i)`` from the uniform law (randomised within the mass of a binary or count
  value, ``u_i = F(y_i - 1) + V_i P(y_i)``, so that it is uniform under the fitted law);
  a calibrated model gives about ``0.87 / sqrt(rows)`` and rarely more than ``pit_ks_95``
  (``1.36 / sqrt(rows)``), so a linear-Gaussian mediator fitted to a bimodal one stands out.

Mediator overlap, per joint arm ``Y(a, M(a'))`` whose mediators are drawn under other treatment
values than the outcome sees: the outcome model learned ``Y | a, m, x`` from mediators drawn
under ``a``, and the arm asks it about mediators drawn under ``a'``. With the density ratio
``r(m, x) = f(m | a', x) / f(m | a, x)`` (a product over the mediator chain), the
effective-sample-size fraction of the importance weights that turn the training mediators into
the arm's is ``1 / E_{a'}[r]`` (``= 1 / (1 + chi^2)``), estimated from the arm's own draws. A
fraction below ``ess_warning`` gets a warning naming the arm and the effects that read it.
Marginal (interventional) arms have no closed-form mediator density and generators without a
density (diffusion) no ratio; both report ``null`` with the reason.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from dcma_jax.arms import Arm, Arms
from dcma_jax.estimands import Estimands
from dcma_jax.generators.base import Generator, apply_batched
from dcma_jax.model import Model, float_dtype, node_data
from dcma_jax.simulate import simulate_packed
from dcma_jax.training import node_keys, split_rows

if TYPE_CHECKING:
    from dcma_jax.fitted import FittedMediation

#: ESS fraction below which an arm's overlap is flagged.
ESS_WARNING = 0.1
NUM_SAMPLES = 64
OVERLAP_DRAWS = 20_000


def _ks_uniform(u: np.ndarray) -> float:
    """Kolmogorov–Smirnov distance of a sample from the uniform law on (0, 1)."""
    u = np.sort(u)
    n = u.size
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - u), np.max(u - (i - 1) / n)))


@functools.partial(jax.jit, static_argnames=("generator", "kind", "num_samples"))
def node_scores(
    generator: Generator,
    kind: str,
    params: dict,
    key: jax.Array,
    x: jax.Array,
    context: jax.Array,
    num_samples: int,
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Per-row ``(crps, pit, log_prob or None)`` of a fitted node generator, in internal units.

    CRPS from ``num_samples`` draws per row (unbiased; a discrete law's CRPS too); PIT
    randomised within the mass of the value for a binary or count node.
    Used by :func:`node_diagnostics` and by :mod:`dcma_jax.selection`.
    """
    n = x.shape[0]
    sample_key, pit_key = jax.random.split(key)
    noise = jax.random.normal(sample_key, (num_samples, n, generator.noise_dim), x.dtype)
    draws = jax.vmap(lambda z: apply_batched(generator, "sample", params, z, context)[:, 0])(
        noise
    )  # (S, n)
    y = x[:, 0]
    # E|X - X'| over distinct pairs (the diagonal is 0): unbiased for a finite num_samples.
    pairs = jnp.sum(jnp.abs(draws[:, None, :] - draws[None, :, :]), axis=(0, 1))
    spread = pairs / (num_samples * (num_samples - 1))
    crps = jnp.mean(jnp.abs(draws - y), axis=0) - 0.5 * spread
    log_prob = None
    if type(generator).implements("log_prob"):
        log_prob = apply_batched(generator, "log_prob", params, x, context)
    if kind == "binary":
        # Randomised PIT: u = F(y-) + V P(y), with P(1) from the log-mass.
        p1 = jnp.exp(apply_batched(generator, "log_prob", params, jnp.ones_like(x), context))
        below = jnp.where(y > 0.5, 1.0 - p1, 0.0)
        mass = jnp.where(y > 0.5, p1, 1.0 - p1)
        pit = below + jax.random.uniform(pit_key, (n,), x.dtype) * mass
    elif kind == "count":
        # Randomised PIT of a discrete law: u = F(y - 1) + V P(y).
        below = apply_batched(generator, "cdf", params, x - 1.0, context)
        mass = jnp.exp(log_prob)
        pit = below + jax.random.uniform(pit_key, (n,), x.dtype) * mass
    elif type(generator).implements("cdf"):
        pit = apply_batched(generator, "cdf", params, x, context)
    else:  # from the draws: the share of draws at or below y
        pit = jnp.mean(draws <= y, axis=0)
    return crps, pit, log_prob


def node_diagnostics(fitted: FittedMediation, num_samples: int = NUM_SAMPLES) -> dict:
    """Held-out fit quality of every node (see the module docstring).

    Returns:
      ``{node name: {"rows", "heldout_log_lik", "crps", "pit_ks", "pit_ks_95"}}``; ``rows``
      says which rows were scored (``"held-out: N validation rows"``, ``"in-sample: N rows
      (closed form)"`` or ``"in-sample: N rows (fixed_epochs, no validation split)"``).
    """
    model, data = fitted.model, fitted.data
    config = fitted.settings.config
    from dcma_jax.fitted import fit_keys  # here: fitted imports this module

    fit_key = fit_keys(fitted.seed)[0]
    keys = node_keys(fit_key, len(model.generators))
    score_key = jax.random.fold_in(fit_key, 7)
    out = {}
    nodes = zip(model.graph.nodes, model.generators, node_data(model, data), strict=True)
    for j, (node, generator, (x, context)) in enumerate(nodes):
        closed = generator.implements("closed_form")
        if closed or config.fixed_epochs is not None:
            rows = np.arange(data.n)
            why = "closed form" if closed else "fixed_epochs, no validation split"
            where = f"in-sample: {data.n} rows ({why})"
        else:
            rows = np.asarray(split_rows(keys[j], data.n, config)[1])
            where = f"held-out: {rows.size} validation rows"
        crps, pit, log_prob = node_scores(
            generator,
            node.kind,
            fitted.params[j],
            jax.random.fold_in(score_key, j),
            x[rows],
            context[rows],
            num_samples,
        )
        var = (*data.mediator_vars, data.outcome_var)[j]
        weights = data.weights[rows] / data.weights[rows].sum()
        scale = var.scale if var.kind == "continuous" else 1.0
        log_lik = None
        if log_prob is not None:
            log_lik = float(np.sum(weights * np.asarray(log_prob)) - np.log(scale))
        out[node.name] = {
            "rows": where,
            "heldout_log_lik": log_lik,
            "crps": float(np.sum(weights * np.asarray(crps)) * scale),
            "pit_ks": _ks_uniform(np.asarray(pit)),
            "pit_ks_95": float(1.358 / np.sqrt(rows.size)),
        }
    return out


def chain_log_density(
    model: Model, params: tuple, codes: jax.Array, mediators: jax.Array, x: jax.Array
) -> jax.Array:
    """``sum_j log f_j(m_j | a_j, m_parents, x)`` per draw: ``(N,)``."""
    graph, total = model.graph, 0.0
    for j in range(graph.num_mediators):
        treatment = jnp.broadcast_to(codes[j], (x.shape[0],))
        context = graph.context(j, treatment, mediators, x)
        value = mediators[:, j : j + 1]
        total = total + apply_batched(model.generators[j], "log_prob", params[j], value, context)
    return total


@functools.partial(jax.jit, static_argnames=("model", "num_draws"))
def _ess_fractions(
    model: Model,
    params: tuple,
    arms: Arms,
    key: jax.Array,
    covariates: jax.Array,
    weights: jax.Array,
    num_draws: int,
) -> jax.Array:
    """``1 / E_{a'}[f(m | a', x) / f(m | a, x)]`` per joint arm: ``(n_arms,)``."""
    draws = simulate_packed(model, params, key, covariates, weights, arms, num_draws)
    x = covariates[draws.rows]

    def one(outcome_code, chain_codes, mediators):
        own = chain_log_density(model, params, chain_codes, mediators, x)
        under_a = chain_log_density(
            model, params, jnp.full_like(chain_codes, outcome_code), mediators, x
        )
        log_mean_ratio = logsumexp(own - under_a) - jnp.log(num_draws)
        return jnp.minimum(jnp.exp(-log_mean_ratio), 1.0)

    return jax.vmap(one)(arms.outcome, arms.mediators[:, 0], draws.mediators)


def overlap(
    fitted: FittedMediation,
    estimands: Estimands,
    *,
    key: jax.Array,
    num_draws: int = OVERLAP_DRAWS,
    ess_warning: float = ESS_WARNING,
) -> list[dict]:
    """Mediator overlap of every arm that mixes treatment values (see the module docstring).

    Returns:
      ``[{"arm", "effects", "ess_fraction", "note", "warning"}]``, one entry per such arm;
      ``ess_fraction`` is ``None`` when it cannot be computed (``note`` says why);
      ``warning`` is a sentence when the fraction is below ``ess_warning``, else ``None``.
    """
    model = fitted.model
    mixing = [
        (i, arm)
        for i, arm in enumerate(estimands.arms)
        if any(v != arm.outcome for chain in arm.chains for v in chain)
    ]
    if not mixing:
        return []
    users = _arm_users(estimands)
    entries = []
    joint = [(i, arm) for i, arm in mixing if arm.is_joint]
    no_density = [
        type(g).__name__ for g in model.generators[:-1] if not type(g).implements("log_prob")
    ]
    fractions = {}
    if joint and not no_density:
        dtype = float_dtype()
        values = _ess_fractions(
            model,
            fitted.params,
            Arms.pack([arm for _, arm in joint], dtype),
            key,
            jnp.asarray(fitted.data.covariates, dtype),
            jnp.asarray(fitted.data.weights, dtype),
            num_draws,
        )
        fractions = {i: float(v) for (i, _), v in zip(joint, np.asarray(values), strict=True)}
    for i, arm in mixing:
        entry = {"arm": arm.expression, "effects": users[i], "ess_fraction": fractions.get(i)}
        entry["note"] = _note(arm, no_density)
        entry["warning"] = None
        value = entry["ess_fraction"]
        if value is not None and value < ess_warning:
            entry["warning"] = (
                f"{arm.expression}: the outcome model is asked about mediator values it rarely "
                f"saw under its own treatment value (effective sample fraction {value:.3f} < "
                f"{ess_warning:g}); {', '.join(users[i]) or 'its effects'} extrapolate"
            )
        entries.append(entry)
    return entries


def _note(arm: Arm, no_density: Sequence[str]) -> str | None:
    if not arm.is_joint:
        return "marginal arm: its mediator density has no closed form"
    if no_density:
        return f"no density ratio: {', '.join(sorted(set(no_density)))} has no log_prob"
    return None


def _arm_users(estimands: Estimands) -> dict[int, list[str]]:
    """Arm index -> names of the effects that read it."""
    users: dict[int, list[str]] = {i: [] for i in range(len(estimands.arms))}
    layout = estimands.layout
    for c in layout.contrasts:
        users[c.arm].append(c.name)
        users[c.reference].append(c.name)
    for m in layout.combinations:
        for _, i in m.terms:
            users[i].append(m.name)
    return {i: sorted(set(names), key=names.index) for i, names in users.items()}
