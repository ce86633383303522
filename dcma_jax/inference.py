"""The nonparametric bootstrap: resamples, replicate fits in blocks, bootstrap intervals.

Each replicate resamples the ``n`` rows with replacement, refits every generator on its
resample (a block of replicates under one ``vmap`` per node) and is later re-simulated with its
resample's empirical covariate distribution (row counts as weights). A resample enters the
fit as row counts too (weights ``w * counts``), so the training/validation split of a neural
fit is a split of original rows, as in the point fit: no replicate validates on copies of its
training rows. A replicate whose fit diverges is dropped from the intervals and counted; the
fit fails only when more than :data:`MAX_DIVERGED_SHARE` of the replicates diverge.

Replicates are fitted in blocks of a fixed size, so a long bootstrap can be checkpointed
after each block and resumed; keys are defined per replicate
(:func:`dcma_jax.training.replicate_keys`), so the blocks give the same fits whether run in
one go or resumed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dcma_jax.data import MediationData
from dcma_jax.errors import ArgumentError
from dcma_jax.model import Model, float_dtype
from dcma_jax.training import FitInfo, TrainConfig, TrainingError, fit_model_replicates

DEFAULT_BLOCK_SIZE = 25
#: Largest share of diverged bootstrap replicates a fit tolerates (they are dropped).
MAX_DIVERGED_SHARE = 0.1


def bootstrap_counts(key: jax.Array, n: int, num_replicates: int) -> jax.Array:
    """``(B, n)`` float counts: how often each row appears in each resample (with replacement)."""
    rows = jax.random.randint(key, (num_replicates, n), 0, n)
    return jax.vmap(lambda r: jnp.bincount(r, length=n))(rows).astype(float_dtype())


def block_ranges(num_replicates: int, block_size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of the replicate blocks."""
    if block_size < 1:
        raise ArgumentError(f"block_size must be positive, got {block_size}")
    return [
        (start, min(start + block_size, num_replicates))
        for start in range(0, num_replicates, block_size)
    ]


def fit_block(
    model: Model,
    data: MediationData,
    keys: jax.Array,
    counts: jax.Array,
    config: TrainConfig,
    block: tuple[int, int],
    block_size: int,
) -> tuple[tuple[Any, ...], tuple[FitInfo, ...]]:
    """Fits the replicates ``block = (start, stop)``: one vmapped fit per node.

    A short last block is padded to ``block_size`` (repeating its last replicate, whose extra
    copies are dropped), so every block reuses one compilation.
    """
    start, stop = block
    index = np.minimum(np.arange(start, start + block_size), stop - 1)
    params, infos = fit_model_replicates(model, data, keys[:, index], counts[index], config)
    keep = stop - start
    return jax.tree.map(lambda v: v[:keep], (params, infos))


def stack_blocks(blocks: Sequence[Any]) -> Any:
    """Concatenates per-block pytrees along the replicate axis."""
    return jax.tree.map(lambda *parts: jnp.concatenate(parts, axis=0), *blocks)


def fit_bootstrap(
    model: Model,
    data: MediationData,
    keys: jax.Array,
    counts: jax.Array,
    config: TrainConfig,
    block_size: int = DEFAULT_BLOCK_SIZE,
    finished: Sequence[Any] = (),
    on_block: Callable[[int, Any], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[tuple[Any, ...], tuple[FitInfo, ...]]:
    """Fits all replicates block by block, skipping the ``finished`` ones.

    Args:
      model: the model whose nodes to fit.
      data: the observed rows the resamples index.
      config: optimisation settings.
      keys: ``(num_nodes, B)`` replicate keys.
      counts: ``(B, n)`` row counts of the resamples.
      block_size: replicates per block.
      finished: ``(params, infos)`` of the first blocks, already fitted (a resumed run).
      on_block: called with ``(block index, (params, infos))`` after each new block (to
        checkpoint it).
      progress: called with a description before each new block.

    Returns:
      ``(params, infos)`` of all ``B`` replicates, stacked.
    """
    blocks = list(finished)
    ranges = block_ranges(counts.shape[0], block_size)
    for i, block in enumerate(ranges):
        if i < len(blocks):
            continue
        if progress is not None:
            progress(
                f"bootstrap block {i + 1}/{len(ranges)} (replicates {block[0] + 1}-{block[1]})"
            )
        fitted = fit_block(model, data, keys, counts, config, block, block_size)
        if on_block is not None:
            on_block(i, fitted)
        blocks.append(fitted)
    return stack_blocks(blocks)


def diverged_replicates(model: Model, infos: Sequence[FitInfo]) -> np.ndarray:
    """``(B,)`` bools: replicates whose fit diverged at any node.

    Raises:
      TrainingError: more than :data:`MAX_DIVERGED_SHARE` of the replicates diverged; the
        message names the node that diverged most often.
    """
    per_node = np.stack([np.asarray(i.diverged, bool) for i in infos])  # (nodes, B)
    diverged = per_node.any(axis=0)
    if diverged.mean() > MAX_DIVERGED_SHARE:
        worst = int(per_node.sum(axis=1).argmax())
        node, generator = model.graph.nodes[worst], model.generators[worst]
        raise TrainingError(
            f"training of node {node.name!r} ({type(generator).__name__}) diverged in "
            f"{int(per_node[worst].sum())} of {diverged.size} bootstrap replicates (more than "
            f"{MAX_DIVERGED_SHARE:.0%} diverged in all); lower the learning rate or check the data"
        )
    return diverged


def percentile_interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap bounds over the leading (replicate) axis."""
    tail = 100.0 * (1.0 - level) / 2.0
    return np.percentile(samples, tail, axis=0), np.percentile(samples, 100.0 - tail, axis=0)


def basic_interval(
    samples: np.ndarray,
    estimate: np.ndarray,
    level: float,
    lower: float = -np.inf,
    upper: float = np.inf,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Basic (reverse-percentile) bootstrap bounds, clipped to the parameter's range.

    .. math:: [\,2\hat\theta - q_{1 - \alpha/2},\; 2\hat\theta - q_{\alpha/2}\,]
        \cap [\mathrm{lower}, \mathrm{upper}],

    with :math:`q` the percentiles of the replicates: the replicates' spread about
    :math:`\hat\theta` is reflected about :math:`\hat\theta` (Davison & Hinkley 1997, eq. 5.6),
    so a bias of the replicates away from the estimate moves the interval the other way.

    Args:
      samples: replicate values, replicates on the leading axis.
      estimate: the point estimate (broadcast against ``samples[0]``).
      level: coverage, in (0, 1).
      lower: smallest value the parameter can take.
      upper: largest value the parameter can take.

    Returns:
      ``(low, high)`` with the shape of ``samples[0]``.
    """
    q_low, q_high = percentile_interval(samples, level)
    estimate = np.asarray(estimate, np.float64)
    low = np.clip(2.0 * estimate - q_high, lower, upper)
    high = np.clip(2.0 * estimate - q_low, lower, upper)
    return low, high


def distance_interval(
    samples: np.ndarray, estimate: np.ndarray, level: float, upper: float = np.inf
) -> tuple[np.ndarray, np.ndarray]:
    r"""Bootstrap bounds for a distance :math:`\theta \ge 0`, reaching 0 when 0 is plausible.

    The percentile interval of a distance cannot contain 0 (every replicate of a distance
    between two fitted arms is positive), and the basic interval (:func:`basic_interval`),
    which can, under-covers a small non-zero distance (measured:
    ``experiments/results/distance_intervals.md``). This rule takes the percentile bounds
    :math:`[q_{\alpha/2}, q_{1-\alpha/2}]` and moves the lower one to 0 whenever the basic
    lower bound :math:`2\hat\theta - q_{1-\alpha/2}` is :math:`\le 0`, i.e. whenever the basic
    bootstrap test does not reject :math:`\theta = 0`:

    .. math:: \Big[\,\mathbb{1}\{2\hat\theta > q_{1-\alpha/2}\}\, q_{\alpha/2},\;
        q_{1-\alpha/2}\,\Big] \cap [0, \mathrm{upper}].

    It contains the percentile interval, so it covers a non-zero distance at least as often;
    at :math:`\theta = 0` it covers as often as the basic interval.

    Monte Carlo bias: if the estimate carries a bias :math:`b_0` and each replicate
    :math:`b_1`, the test statistic :math:`2\hat\theta - q_{1-\alpha/2}` carries
    :math:`2 b_0 - b_1`; it must not be positive, or a null distance is rejected too often.
    An unbiased estimator (the energy U-statistic) has none. For Wasserstein-1 and KS the bias
    falls as draws^(-1/2) near :math:`\theta = 0`, so an estimate from at least 4 times the
    replicates' draws has :math:`b_0 \le b_1 / 2`; :func:`dcma_jax.queries.effects`
    evaluates the replicates that way.

    Args:
      samples: replicate values, replicates on the leading axis.
      estimate: the point estimate (broadcast against ``samples[0]``).
      level: coverage, in (0, 1).
      upper: largest value the distance can take (1 for Kolmogorov--Smirnov).

    Returns:
      ``(low, high)`` with the shape of ``samples[0]``.
    """
    q_low, q_high = percentile_interval(samples, level)
    estimate = np.asarray(estimate, np.float64)
    low = np.where(2.0 * estimate - q_high > 0.0, q_low, 0.0)
    return np.clip(low, 0.0, upper), np.clip(q_high, 0.0, upper)
