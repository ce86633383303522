r"""One-dimensional distributional functionals of empirical samples.

Every function takes 1-D sample arrays (one arm, one outcome) and returns the functional of the
*empirical* distribution :math:`\hat F_x(t) = n^{-1} \sum_i 1\{x_i \le t\}` (except
:func:`energy_unbiased`, an estimator of the distance between the laws). Batches of arms
are handled by the caller with ``jax.vmap``. All functions are pure ``jax.numpy``, have static
output shapes, contain no Python control flow on array values, and so run under ``jax.jit`` and
``jax.vmap``. Each costs :math:`O(N \log N)` (one sort, or one sort of the pooled sample).

Scalar functionals (a summary of one distribution):

* :func:`mean` -- :math:`E[X]`.
* :func:`quantile` -- :math:`F^{-1}(q)`, numpy's default ``method="linear"``.
* :func:`cdf` -- :math:`F(t) = P(X \le t)`.

Distances between two distributions (sample sizes may differ):

* :func:`wasserstein` -- :math:`W_1 = \int |F_x - F_y|\, dt`.
* :func:`energy` -- Székely--Rizzo energy distance :math:`2 \int (F_x - F_y)^2\, dt`
  (the *square* of ``scipy.stats.energy_distance``), a V-statistic: biased upward by
  :math:`O(1/n)`.
* :func:`energy_unbiased` -- its U-statistic (pairs :math:`i \ne j` only), unbiased for the
  energy distance of the two laws, also for paired samples (common random numbers); can be
  negative. This is what the effects layer reports as ``energy``.
* :func:`ks` -- Kolmogorov--Smirnov statistic :math:`\sup_t |F_x(t) - F_y(t)|`.

The integrals are computed exactly on the pooled sorted sample :math:`a_1 \le \dots \le a_N`
(:math:`N = n + m`): both empirical CDFs are constant on each :math:`[a_k, a_{k+1})`, so
:math:`\int g(F_x - F_y)\, dt = \sum_k g(\hat F_x(a_k) - \hat F_y(a_k)) (a_{k+1} - a_k)`, as in
``scipy.stats.wasserstein_distance``. :func:`wasserstein`, :func:`energy`,
:func:`energy_unbiased`, :func:`mean` and :func:`quantile` are differentiable in the sample
values (almost everywhere); :func:`cdf` and :func:`ks` are step functions of the sample, so
their gradients are zero.
"""

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dcma_jax.errors import ArgumentError

__all__ = [
    "DISTANCES",
    "DISTANCE_FUNCTIONALS",
    "SCALAR_FUNCTIONALS",
    "cdf",
    "energy",
    "energy_unbiased",
    "ks",
    "mean",
    "quantile",
    "sort",
    "wasserstein",
]


def _as_sample(x: jax.Array, name: str) -> jax.Array:
    """Check that ``x`` is a non-empty 1-D array and cast it to a floating dtype."""
    x = jnp.asarray(x)
    if x.ndim != 1 or x.shape[0] == 0:
        raise ArgumentError(f"{name} must be a non-empty 1-D sample, got shape {x.shape}.")
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _merge_sorted(xs: jax.Array, ys: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Merges two sorted samples by one binary search, ``O(N log N)`` without a pooled sort.

    ``x`` values go before equal ``y`` values. Only the ``x`` positions are searched for; a
    ``y`` fills every other position, in order: position ``p`` holds ``y`` number
    ``p - #(x before p)``.
    Returns the pooled sorted values and an int32 label that is 1 where a value came from ``x``.
    """
    n, m = xs.shape[0], ys.shape[0]
    pos_x = jnp.arange(n) + jnp.searchsorted(ys, xs, side="left")
    from_x = jnp.zeros(n + m, jnp.int32).at[pos_x].set(1, unique_indices=True)
    x_through = jnp.cumsum(from_x)  # x values at positions <= p
    y_index = jnp.arange(n + m) - x_through
    values = jnp.where(
        from_x == 1, xs[jnp.maximum(x_through - 1, 0)], ys[jnp.clip(y_index, 0, m - 1)]
    )
    return values, from_x


def _pooled_cdf_gap(
    x: jax.Array, y: jax.Array, presorted: bool = False
) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""Gap between the two empirical CDFs on the pooled sorted sample.

    Args:
      x: sample of shape ``(n,)``.
      y: sample of shape ``(m,)``.
      presorted: both samples are already sorted ascending (they are then merged, not sorted).

    Returns:
      ``(gap, width, is_last)``, each of shape ``(n + m - 1,)``, for the pooled sorted sample
      :math:`a_1 \le \dots \le a_N`: ``width[k] = a_{k+1} - a_k``; ``is_last[k]`` is true when
      :math:`a_k < a_{k+1}`, i.e. :math:`a_k` is the last of its tie group; and
      ``gap[k]`` equals :math:`\hat F_x(a_k) - \hat F_y(a_k)` wherever ``is_last[k]`` holds.
      Inside a tie group ``gap`` only counts part of the tie, but there ``width`` is zero, so
      integrals :math:`\sum_k g(\mathrm{gap}_k)\, \mathrm{width}_k` are exact.
    """
    n, m = x.shape[0], y.shape[0]
    dtype = jnp.promote_types(x.dtype, y.dtype)
    # Two sorts and a merge: faster than one co-sort of the pooled sample with its arm labels,
    # which XLA:CPU runs through a compiled comparator (see :func:`sort`).
    xs, ys = _sorted(x.astype(dtype), presorted), _sorted(y.astype(dtype), presorted)
    values, from_x = _merge_sorted(xs, ys)
    count_x = jnp.cumsum(from_x)[:-1]
    count_y = jnp.arange(1, n + m, dtype=jnp.int32) - count_x
    lcm = math.lcm(n, m)
    if lcm < 2**31:
        # Integer numerator over the common denominator: equal CDFs give a gap of exactly 0
        # (two float quotients, which XLA may contract or turn into reciprocals, need not).
        gap = (count_x * (lcm // n) - count_y * (lcm // m)).astype(dtype) / lcm
    else:
        gap = count_x.astype(dtype) / n - count_y.astype(dtype) / m
    width = jnp.diff(values)
    return gap, width, width > 0


def _order_keys(x: jax.Array) -> jax.Array:
    """Integers whose order is ``jnp.sort``'s order of the floats ``x`` (an involution).

    A float's bits read as a signed integer already order the non-negative floats; flipping all
    but the sign bit of the negative ones reverses theirs. ``-0.0`` and ``+0.0`` are made one
    zero and every NaN one positive NaN first, which ``jnp.sort`` also treats as equal and puts
    last. Applied to its own output it gives the (canonicalised) floats back.
    """
    if jnp.issubdtype(x.dtype, jnp.integer):
        return x
    x = jnp.where(x == 0, jnp.zeros_like(x), x)
    x = jnp.where(jnp.isnan(x), jnp.full_like(x, jnp.nan), x)
    int_dtype = jnp.dtype(f"int{8 * x.dtype.itemsize}")
    bits = jax.lax.bitcast_convert_type(x, int_dtype)
    return bits ^ ((bits >> (8 * x.dtype.itemsize - 1)) & jnp.iinfo(int_dtype).max)


def _from_keys(keys: jax.Array, dtype: jnp.dtype) -> jax.Array:
    if jnp.issubdtype(dtype, jnp.integer):
        return keys
    bits = keys ^ ((keys >> (8 * keys.dtype.itemsize - 1)) & jnp.iinfo(keys.dtype).max)
    return jax.lax.bitcast_convert_type(bits, dtype)


@jax.custom_jvp
def sort(x: jax.Array) -> jax.Array:
    r"""Sorts along the last axis, ascending: ``jnp.sort(x, axis=-1)``, faster on CPU.

    XLA:CPU sorts one integer operand with its built-in comparison but calls ``jnp.sort``'s
    compiled float comparator (which orders ``-0.0`` and NaN) once per comparison; sorting the
    order-preserving integer image of the floats instead is about 6x faster at 20,000 float32
    draws (``benchmarks/bench_functionals.py``). The values equal ``jnp.sort``'s, except that a
    ``-0.0`` comes back as ``0.0``, a NaN as the canonical NaN and, where XLA flushes
    subnormals to zero (CPU), a subnormal as ``0.0``. Differentiable: the tangent is permuted
    like the values (by a stable argsort, at ``jnp.sort``'s cost).
    """
    x = jnp.asarray(x)
    return _from_keys(jnp.sort(_order_keys(x), axis=-1), x.dtype)


@sort.defjvp
def _sort_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    order = jnp.argsort(_order_keys(x), axis=-1, stable=True)
    return sort(x), jnp.take_along_axis(t, order, axis=-1)


def _sorted(x: jax.Array, presorted: bool) -> jax.Array:
    return x if presorted else sort(x)


def _mean_pairwise_distance(xs: jax.Array) -> jax.Array:
    r""":math:`n^{-2} \sum_{i,j} |x_i - x_j| = 2 \int \hat F (1 - \hat F)\, dt` of a sorted sample.

    Summed over the gaps :math:`x_{(k)} - x_{(k-1)}` (each crossed by :math:`k (n - k)` pairs):
    non-negative terms, so no cancellation and no dependence on the sample's location.
    """
    n = xs.shape[0]
    frac = jnp.arange(1, n, dtype=xs.dtype) / n
    return 2.0 * jnp.sum(frac * (1.0 - frac) * jnp.diff(xs))


def mean(x: jax.Array) -> jax.Array:
    r"""Mean of the empirical distribution, :math:`n^{-1} \sum_i x_i`.

    Args:
      x: sample of shape ``(n,)``.

    Returns:
      The sample mean, a scalar.
    """
    return jnp.mean(_as_sample(x, "x"))


def quantile(
    x: jax.Array, levels: Sequence[float] | np.ndarray | float, presorted: bool = False
) -> jax.Array:
    r"""Empirical quantiles with linear interpolation between order statistics.

    With order statistics :math:`x_{(0)} \le \dots \le x_{(n-1)}` and :math:`h = (n - 1) q`,

    .. math:: Q(q) = x_{(\lfloor h \rfloor)}
        + (h - \lfloor h \rfloor)\,(x_{(\lfloor h \rfloor + 1)} - x_{(\lfloor h \rfloor)}),

    identical to ``numpy.quantile(x, q)`` (``method="linear"``, Hyndman--Fan type 7).
    Differentiable in ``x``.

    Args:
      x: sample of shape ``(n,)``.
      levels: quantile levels in ``[0, 1]``, a static float, tuple or array (checked when
        concrete; a traced array is accepted unchecked).
      presorted: ``x`` is already sorted ascending (skips the sort).

    Returns:
      Quantiles with the shape of ``levels``.

    Raises:
      ValueError: if a concrete level lies outside ``[0, 1]``.

    Example:
      >>> quantile(jnp.array([3.0, 1.0, 2.0, 4.0]), (0.0, 0.5, 1.0))
      Array([1. , 2.5, 4. ], dtype=float32)
    """
    xs = _sorted(_as_sample(x, "x"), presorted)
    n = xs.shape[0]
    try:
        concrete = np.asarray(levels, dtype=np.float64)
    except jax.errors.TracerArrayConversionError:
        concrete = None
    if concrete is not None and not np.all((concrete >= 0.0) & (concrete <= 1.0)):
        raise ArgumentError(f"quantile levels must lie in [0, 1], got {concrete}.")
    # Index arithmetic in float64 numpy when the levels are static, so that floor(h) matches
    # numpy's exactly; traced levels fall back to the sample's precision.
    xp, q = (jnp, jnp.asarray(levels, dtype=xs.dtype)) if concrete is None else (np, concrete)
    h = (n - 1) * q
    lo = xp.clip(xp.floor(h), 0, n - 1).astype(np.int32)
    hi = xp.minimum(lo + 1, n - 1)
    frac = jnp.asarray(h - lo, dtype=xs.dtype)
    lower, upper = xs[lo], xs[hi]
    step = upper - lower
    # numpy's lerp: interpolate from the nearer end, so frac == 1 returns `upper` exactly.
    return jnp.where(frac >= 0.5, upper - step * (1 - frac), lower + step * frac)


def cdf(x: jax.Array, points: jax.Array, presorted: bool = False) -> jax.Array:
    r"""Empirical CDF :math:`\hat F(t) = n^{-1} \#\{i : x_i \le t\}` at each ``points`` entry.

    Args:
      x: sample of shape ``(n,)``.
      points: evaluation points, any shape.
      presorted: ``x`` is already sorted ascending (skips the sort).

    Returns:
      :math:`\hat F(t)` with the shape of ``points``, in the sample's floating dtype.
    """
    xs = _sorted(_as_sample(x, "x"), presorted)
    counts = jnp.searchsorted(xs, jnp.asarray(points, dtype=xs.dtype), side="right")
    return counts.astype(xs.dtype) / xs.shape[0]


def wasserstein(x: jax.Array, y: jax.Array, presorted: bool = False) -> jax.Array:
    r"""1-Wasserstein distance between two empirical distributions.

    .. math:: W_1(\hat F_x, \hat F_y)
        = \int_{-\infty}^{\infty} |\hat F_x(t) - \hat F_y(t)|\, dt,

    computed exactly on the pooled sorted sample, equal to
    ``scipy.stats.wasserstein_distance(x, y)``. For equal sizes it reduces to
    :math:`n^{-1} \sum_i |x_{(i)} - y_{(i)}|`, which is used then. Differentiable in ``x`` and
    ``y``; for equal sizes :math:`\partial W_1 / \partial x_{(i)} =
    \mathrm{sign}(x_{(i)} - y_{(i)}) / n`.

    Args:
      x: sample of shape ``(n,)``.
      y: sample of shape ``(m,)``; ``m`` may differ from ``n``.
      presorted: both samples are already sorted ascending (merged, not re-sorted).

    Returns:
      :math:`W_1 \ge 0`, a scalar.
    """
    x, y = _as_sample(x, "x"), _as_sample(y, "y")
    if x.shape == y.shape:
        return jnp.mean(jnp.abs(_sorted(x, presorted) - _sorted(y, presorted)))
    gap, width, _ = _pooled_cdf_gap(x, y, presorted)
    return jnp.sum(jnp.abs(gap) * width)


def energy(x: jax.Array, y: jax.Array, presorted: bool = False) -> jax.Array:
    r"""Székely--Rizzo energy distance between two empirical distributions (not square-rooted).

    .. math:: \mathcal{E} = 2 E|X - Y| - E|X - X'| - E|Y - Y'|
        = 2 \int_{-\infty}^{\infty} (\hat F_x(t) - \hat F_y(t))^2\, dt,

    with all expectations over the empirical distributions (V-statistics: the pairs include
    :math:`i = j`, so the within-sample terms are too small and the statistic is biased upward
    by :math:`O(1/n)`: positive even for two samples of one law; :func:`energy_unbiased` is the
    U-statistic). The second form, valid in one dimension, is what is computed, in
    :math:`O(N \log N)`. Convention: ``scipy.stats.energy_distance`` returns
    :math:`\sqrt{\mathcal{E}}`, so ``energy(x, y) == scipy.stats.energy_distance(x, y) ** 2``.
    The unsquared form is kept because it is smooth at :math:`\hat F_x = \hat F_y` (the square
    root has an infinite gradient there). Differentiable in ``x`` and ``y``.

    Args:
      x: sample of shape ``(n,)``.
      y: sample of shape ``(m,)``; ``m`` may differ from ``n``.
      presorted: both samples are already sorted ascending (merged, not re-sorted).

    Returns:
      :math:`\mathcal{E} \ge 0`, a scalar.

    References:
      Székely & Rizzo (2013), Energy statistics: a class of statistics based on distances,
      J. Stat. Plan. Inference 143(8).
    """
    gap, width, _ = _pooled_cdf_gap(_as_sample(x, "x"), _as_sample(y, "y"), presorted)
    return 2.0 * jnp.sum(jnp.square(gap) * width)


def energy_unbiased(
    x: jax.Array,
    y: jax.Array,
    paired: bool = False,
    presorted: bool = False,
    pair_distance: jax.Array | None = None,
) -> jax.Array:
    r"""Unbiased (U-statistic) energy distance: every expectation over pairs :math:`i \ne j`.

    Independent samples (sizes :math:`n, m \ge 2`):

    .. math:: U = \frac{2}{nm} \sum_{i,j} |x_i - y_j|
        - \frac{1}{n(n-1)} \sum_{i \ne j} |x_i - x_j|
        - \frac{1}{m(m-1)} \sum_{i \ne j} |y_i - y_j|
        = \mathcal{E}_V - \frac{D_x}{n - 1} - \frac{D_y}{m - 1},

    with :math:`\mathcal{E}_V` the V-statistic :func:`energy` and
    :math:`D_x = n^{-2} \sum_{i,j} |x_i - x_j|`. Paired samples (``paired=True``, :math:`n = m`:
    :math:`(x_i, y_i)` are i.i.d. pairs whose two members may be dependent, as the arms of a
    contrast simulated with common random numbers are) exclude :math:`i = j` from the cross
    term too, since :math:`E|x_i - y_i| \ne E|X - Y|` for dependent members:

    .. math:: U = \frac{1}{n(n-1)} \sum_{i \ne j} (2 |x_i - y_j| - |x_i - x_j| - |y_i - y_j|)
        = \frac{n}{n - 1} \Big(\mathcal{E}_V - \frac{2}{n^2} \sum_i |x_i - y_i|\Big).

    Either form has expectation exactly :math:`2E|X - Y| - E|X - X'| - E|Y - Y'|`, the energy
    distance of the two laws (zero iff they are equal), so, unlike :math:`\mathcal{E}_V > 0`,
    it is negative about half the time when the laws are equal. The paired form is also
    unbiased for independent samples. :math:`O(N \log N)` (the sorts of :func:`energy`);
    differentiable in ``x`` and ``y``.

    Args:
      x: sample of shape ``(n,)``, ``n >= 2``.
      y: sample of shape ``(m,)``, ``m >= 2``.
      paired: ``x[i]`` and ``y[i]`` are one draw of a pair; needs ``n == m`` and the samples in
        their paired order (not ``presorted``, unless ``pair_distance`` is given).
      presorted: both samples are already sorted ascending.
      pair_distance: for paired samples passed sorted (the sort lost the pairing):
        :math:`n^{-1} \sum_i |x_i - y_i|`, computed before sorting; implies ``paired``.

    Returns:
      :math:`U`, a scalar (may be negative).

    Raises:
      ValueError: a sample with fewer than two draws, paired samples of different sizes, or
        ``paired`` and ``presorted`` without ``pair_distance``.

    Example:
      >>> x, y = jnp.array([0.0, 1.0, 2.0]), jnp.array([2.0, 3.0, 4.0])
      >>> round(float(energy(x, y)), 4), round(float(energy_unbiased(x, y, paired=True)), 4)
      (2.2222, 1.3333)

    References:
      Székely & Rizzo (2013), Energy statistics: a class of statistics based on distances,
      J. Stat. Plan. Inference 143(8), section 4 (the U-statistic form).
    """
    x, y = _as_sample(x, "x"), _as_sample(y, "y")
    n, m = x.shape[0], y.shape[0]
    if min(n, m) < 2:
        raise ArgumentError(
            f"the unbiased energy distance needs at least two draws per sample, got {n} and {m}"
        )
    paired = paired or pair_distance is not None
    if paired and n != m:
        raise ArgumentError(f"paired samples must have the same size, got {n} and {m}")
    if paired and pair_distance is None:
        if presorted:
            raise ArgumentError(
                "paired samples passed presorted have lost their pairing; pass pair_distance"
            )
        pair_distance = jnp.mean(jnp.abs(x - y))
    xs, ys = _sorted(x, presorted), _sorted(y, presorted)
    v = energy(xs, ys, presorted=True)
    if paired:
        return n / (n - 1) * (v - 2.0 * jnp.asarray(pair_distance, v.dtype) / n)
    return v - _mean_pairwise_distance(xs) / (n - 1) - _mean_pairwise_distance(ys) / (m - 1)


def ks(x: jax.Array, y: jax.Array, presorted: bool = False) -> jax.Array:
    r"""Two-sample Kolmogorov--Smirnov statistic :math:`\sup_t |\hat F_x(t) - \hat F_y(t)|`.

    Equal to ``scipy.stats.ks_2samp(x, y).statistic``. The supremum is attained at a sample
    point, so it is the maximum of the CDF gap over the pooled sample (the gap is zero beyond the
    largest point). Piecewise constant in the sample values, so its gradient is zero.

    Args:
      x: sample of shape ``(n,)``.
      y: sample of shape ``(m,)``; ``m`` may differ from ``n``.
      presorted: both samples are already sorted ascending (merged, not re-sorted).

    Returns:
      The statistic in ``[0, 1]``, a scalar.
    """
    gap, _, is_last = _pooled_cdf_gap(_as_sample(x, "x"), _as_sample(y, "y"), presorted)
    # Inside a tie group the running counts are partial, so only a group's last entry counts.
    return jnp.max(jnp.where(is_last, jnp.abs(gap), 0.0), initial=0.0)


# Registry read by the effects layer: scalar functionals summarise one arm (effect = difference
# of summaries); distances compare two arms directly. DISTANCES holds the plug-in functionals;
# the effects layer reports "energy" as energy_unbiased (paired), see estimands.effect_values.
SCALAR_FUNCTIONALS = ("mean", "quantile", "cdf")
DISTANCE_FUNCTIONALS = ("wasserstein", "energy", "ks")
DISTANCES = {"wasserstein": wasserstein, "energy": energy, "ks": ks}
