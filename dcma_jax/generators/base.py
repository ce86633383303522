"""The generator contract: a conditional, noise-outsourced sampler for one node.

A generator models the conditional distribution of one node (a mediator or the outcome) given
its context ``c = (a, parent mediators, covariates)``. It is a flax.linen module whose methods
are written for ONE example; batching is done outside with ``jax.vmap`` (see :func:`apply_batched`).

Subclass :class:`Generator` to add a generator. Nothing else in the package has to change: the
subclass registers itself under ``registry_name`` for the node kinds it lists in ``kinds``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import FrozenDict
from jax.scipy.special import log_ndtr, ndtr, ndtri

if TYPE_CHECKING:
    import distrax

NODE_KINDS = ("continuous", "binary", "count")

_REGISTRY: dict[tuple[str, str], type[Generator]] = {}

# Contract methods batched by apply_batched: the first argument's trailing size, by method
# (``None``: ``noise_dim``); the second argument is always the context.
_FIRST_ARG_SIZE: dict[str, int | None] = {
    "sample": None,
    "loss": 1,
    "log_prob": 1,
    "inverse": 1,
    "cdf": 1,
}


def _hashable(value: Any) -> Any:
    """``value`` with lists turned into tuples and dicts into ``FrozenDict``s, recursively."""
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        frozen = tuple(_hashable(v) for v in value)
        return value if all(a is b for a, b in zip(frozen, value, strict=True)) else frozen
    if isinstance(value, dict):
        return FrozenDict({k: _hashable(v) for k, v in value.items()})
    return value


def _overrides(cls: type, method: str) -> bool:
    return getattr(cls, method, None) is not getattr(Generator, method, None)


class Generator(nn.Module):
    """Base class for conditional generators ``x = G(noise; context)``.

    Contract for subclass authors (all methods act on a single example):

    * ``sample(noise, context) -> x``: ``noise`` has shape ``(noise_dim,)`` and is standard
      normal; ``context`` has shape ``(context_dim,)``; ``x`` has shape ``(1,)``. Must be a
      deterministic function of ``(params, noise, context)``, so that common random numbers
      and ``jax.grad`` work. A generator needing uniforms uses ``jax.scipy.special.ndtr(noise)``.
      A binary node thresholds one noise, ``x = 1{Phi(noise[0]) < P(x = 1 | c)}`` with ``P``
      from ``log_prob``, as the built-in ones do: the sensitivity analysis reads ``-noise[0]``
      as the node's latent normal score (:func:`latent_moments`). A count node inverts its
      CDF at one noise, ``x = min{k : F(k | c) >= Phi(noise[0])}`` (a non-negative integer as a
      float), as :mod:`dcma_jax.generators.count` does.
    * ``loss(x, context) -> scalar``: the per-example training loss. Defaults to
      ``-log_prob(x, context)``; generators without a density (diffusion) override it.
    * ``log_prob(x, context) -> scalar`` (optional): log-density (or log-mass for binary and
      count nodes).
    * ``inverse(x, context) -> noise`` (optional): the map back to noise, where it exists; for a
      continuous one-dimensional node this is the conditional normal score
      ``Phi^-1(F(x | context))``.
    * ``cdf(x, context) -> scalar`` (optional): the conditional CDF ``F(x | context)`` of a
      continuous node. Derived by default from ``inverse`` where that is the normal score —
      ``cdf = Phi(inverse(x))`` (``jax.scipy.special.ndtr``) for a continuous generator of one
      noise that overrides ``inverse``; any other generator without its own ``cdf`` raises
      ``NotImplementedError``. Must satisfy ``d cdf / dx = exp(log_prob)`` where both exist.
      A count node's is the right-continuous ``P(X <= floor(x) | c)``, whose jumps are
      ``exp(log_prob)``.
    * ``law(context) -> distrax.Distribution | None`` (optional): the conditional law at one
      context, built from distrax's parts (``distrax.Normal``, ``MixtureSameFamily``, a
      ``Transformed`` with a bijector, ``Bernoulli``), with scalar events. The default, ``None``,
      makes :meth:`distribution` wrap ``sample`` / ``log_prob`` / ``cdf`` instead.
    * ``closed_form(x, context, weights) -> variables`` (optional, plain method, not traced by
      linen): the exact weighted maximum-likelihood fit. When it returns variables, training
      uses it instead of stochastic optimisation. Inputs are batched: ``x`` ``(n, 1)``,
      ``context`` ``(n, c)``, ``weights`` ``(n,)``; it must be jit/vmap-compatible.
    * ``fit_problem(x, context, weights, columns) -> str | None`` (optional, plain method, run
      on the host with concrete arrays): why this generator cannot fit these rows, as one line
      naming the offending context columns (``columns`` holds their ``(role, name)``), or
      ``None``. Training calls it before the point fit with ``x=None`` (design checks, e.g. a
      rank-deficient design of a closed form) and again with ``x`` after a point fit diverged
      (e.g. separation in a GLM), and reports the line as a ``TrainingError``.
    * ``warm_start(variables, x, context, weights) -> variables`` (optional, plain method,
      traced): the variables optimisation starts from, given the training rows (validation
      rows have weight 0). The built-in neural generators start from the weighted
      least-squares linear-Gaussian fit (:class:`~dcma_jax.generators.networks.LinearBaseline`),
      so that early stopping shrinks them towards that fit rather than towards no dependence
      on the context.
    * ``for_treatment_width(width) -> Generator`` (optional, plain method): the generator for
      a node whose context starts with a treatment block of ``width`` columns; a
      :class:`~dcma_jax.model.Model` applies it to every generator it is built with. Default:
      unchanged.
    * ``baseline_candidate(variables) -> variables | None`` (optional, plain method, traced):
      given the warm-started variables, those of the family's linear baseline where the start
      is only close to it (a randomly initialised output layer). Early stopping keeps the
      baseline when no trained epoch beats it on the validation rows, and a fixed-epoch fit of
      0 epochs returns it. ``None`` (the default): the start itself is the candidate.

    Class attributes a subclass sets:

    * ``registry_name``: the name users pick it by (``None``: not registered).
    * ``kinds``: the node kinds it models, a subset of :data:`NODE_KINDS`
      (``("continuous", "binary", "count")``).
    * ``noise_dim``: the size of the standard normal noise one sample consumes.
    * ``rng_stream`` (optional): the name of a linen rng stream that ``loss`` draws from
      (``self.make_rng``); training then passes a fresh key a step and a fixed key for the
      validation loss, so that epochs are compared on the same noise.
    * ``plateau_epochs`` (optional, default 0: off): the family's default for
      ``TrainConfig.plateau_epochs`` (the learning rate lowered after that many epochs without
      validation improvement), used when the fit's config leaves it ``None``.

    Derived for every subclass: batching (:func:`apply_batched`, with shape checks),
    :meth:`distribution`, :meth:`implements`, registration, and hashability. Generators are jit
    static arguments (``fit_generator``, ``simulate``), so their fields must hash: list- and
    dict-valued fields are frozen to tuples and ``FrozenDict``s on construction
    (``hidden=[64, 64]`` is stored, compared and hashed as ``(64, 64)``). A subclass that defines
    ``__post_init__`` must call ``super().__post_init__()``, as flax requires anyway.

    ``__call__`` evaluates the loss; it is what ``init`` traces to create the parameters.
    """

    registry_name: ClassVar[str | None] = None
    kinds: ClassVar[tuple[str, ...]] = ("continuous",)
    noise_dim: ClassVar[int] = 1
    rng_stream: ClassVar[str | None] = None
    plateau_epochs: ClassVar[int] = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("registry_name")
        if name is None:
            return
        for kind in cls.kinds:
            if kind not in NODE_KINDS:
                raise ValueError(f"{cls.__name__}.kinds has unknown node kind {kind!r}")
            _REGISTRY[(name, kind)] = cls

    def __post_init__(self) -> None:
        # Before flax binds the module: fields are still plain attributes here, and the
        # dataclass hash (jit's static-argument cache key) is computed from them later.
        for field in dataclasses.fields(self):
            if field.name in ("parent", "name") or not field.init:
                continue
            value = getattr(self, field.name)
            frozen = _hashable(value)
            if frozen is not value:
                object.__setattr__(self, field.name, frozen)
        super().__post_init__()

    @classmethod
    def implements(cls, method: str) -> bool:
        """Whether this generator provides the optional contract method ``method``.

        ``log_prob``, ``inverse``, ``law`` and ``closed_form`` when overridden; ``cdf`` when
        overridden or derived from ``inverse`` (a continuous generator of one noise).
        """
        if method == "cdf" and not _overrides(cls, "cdf"):
            return cls._cdf_from_inverse()
        return _overrides(cls, method)

    @classmethod
    def _cdf_from_inverse(cls) -> bool:
        return _overrides(cls, "inverse") and cls.noise_dim == 1 and "binary" not in cls.kinds

    def sample(self, noise: jax.Array, context: jax.Array) -> jax.Array:
        """Maps standard normal noise and a context to one sample of shape ``(1,)``."""
        raise NotImplementedError

    def log_prob(self, x: jax.Array, context: jax.Array) -> jax.Array:
        """Log-density of ``x`` (shape ``(1,)``) given ``context``."""
        raise NotImplementedError(f"{type(self).__name__} has no density")

    def inverse(self, x: jax.Array, context: jax.Array) -> jax.Array:
        """Noise that maps to ``x`` given ``context`` (shape ``(noise_dim,)``)."""
        raise NotImplementedError(f"{type(self).__name__} has no inverse map")

    def cdf(self, x: jax.Array, context: jax.Array) -> jax.Array:
        r"""Conditional CDF ``F(x | c)`` of ``x`` (shape ``(1,)``); a scalar.

        Default: ``Phi(inverse(x, c))``. For a continuous node whose ``sample`` is a strictly
        increasing map of one normal noise ``z``, ``F(x | c) = P(z <= inverse(x, c))``.

        Raises:
          NotImplementedError: the generator has no ``inverse``, consumes more than one noise,
            or models binary nodes, and defines no ``cdf`` of its own.
        """
        if not type(self)._cdf_from_inverse():
            raise NotImplementedError(
                f"{type(self).__name__} has no cdf: Phi(inverse(x)) is the CDF only for a "
                "continuous generator whose sample is an increasing map of one noise; "
                "define cdf(x, context)"
            )
        return ndtr(self.inverse(x, context)[0])

    def loss(self, x: jax.Array, context: jax.Array) -> jax.Array:
        """Per-example training loss; negative log-likelihood by default."""
        return -self.log_prob(x, context)

    def law(self, context: jax.Array) -> distrax.Distribution | None:
        """The conditional law at one context from distrax's parts; ``None``: the generic one."""
        return None

    def fit_problem(self, x: Any | None, context: Any, weights: Any, columns: Any) -> str | None:
        """Why this generator cannot fit these rows (one line), or ``None``; see the contract."""
        return None

    def closed_form(self, x: jax.Array, context: jax.Array, weights: jax.Array) -> Any | None:
        """Exact weighted fit returning linen variables, or ``None`` to train by optimisation."""
        return None

    @nn.nowrap
    def warm_start(
        self, variables: Any, x: jax.Array, context: jax.Array, weights: jax.Array
    ) -> Any:
        """Variables to start optimising from, given the training rows; default: unchanged.

        Called by the training loop after ``init`` with ``(n, 1)`` values, ``(n, c)`` contexts
        and ``(n,)`` weights that are 0 on validation rows (so the start never sees them).
        Pure and traceable: it runs under ``jit`` and under the bootstrap's ``vmap``.
        """
        return variables

    @nn.nowrap
    def for_treatment_width(self, width: int) -> Generator:
        """The generator for contexts whose first ``width`` columns are the treatment: itself."""
        return self

    @nn.nowrap
    def baseline_candidate(self, variables: Any) -> Any | None:
        """The linear baseline's variables given the warm-started ones; default ``None``."""
        return None

    @nn.nowrap
    def distribution(self, variables: Any, context: jax.Array) -> distrax.Distribution:
        r"""The conditional law of the node at ONE context, as a ``distrax.Distribution``.

        Events are scalars (``event_shape == ()``): ``sample(seed, (n,))`` has shape ``(n,)``,
        and ``log_prob`` / ``cdf`` take values of any shape. It is the subclass's ``law`` where
        defined (e.g. ``distrax.Normal`` for ``LinearGaussian``), else a wrapper whose
        ``sample`` pushes normal noise through the generator's ``sample`` and whose
        ``log_prob`` / ``cdf`` call the generator's (raising ``NotImplementedError`` where the
        generator has none). Build it inside jitted code; it is a pytree, so it can also be
        returned from ``jit``.

        To batch over contexts, vmap a function that builds and queries it::

            log_p = jax.vmap(lambda c, x: gen.distribution(variables, c).log_prob(x))(
                contexts, values)  # contexts (n, c), values (n,) -> (n,)

        Args:
          variables: the generator's variables (``init_params`` or a fit).
          context: ``(context_dim,)`` context of one example.

        Returns:
          A ``distrax.Distribution`` over the scalar node value.

        Raises:
          AssertionError: ``context`` is not one floating-point vector.
        """
        where = f"{type(self).__name__}.distribution takes ONE context, shape (context_dim,)"
        chex.assert_rank(context, 1, custom_message=f"{where}; vmap it for a batch")
        chex.assert_type(context, float, custom_message=where)
        law = self.apply(variables, context, method=type(self).law)
        if law is None:
            from dcma_jax.generators.distributions import GeneratorDistribution

            law = GeneratorDistribution(self, variables, context)
        return law

    def __call__(self, x: jax.Array, context: jax.Array) -> jax.Array:
        return self.loss(x, context)


def registered_names() -> list[str]:
    """Names of all registered generator families, sorted."""
    return sorted({name for name, _ in _REGISTRY})


def generator_class(name: str, kind: str) -> type[Generator]:
    """Looks up the generator class registered as ``name`` for nodes of ``kind``.

    A family without a model for binary (count) nodes falls back to the ``mdn`` family's
    Bernoulli (negative-binomial) network, so that every name can be used for every node.

    Raises:
      ValueError: if ``name`` is not registered.
    """
    if (name, kind) in _REGISTRY:
        return _REGISTRY[(name, kind)]
    if name not in registered_names():
        raise ValueError(f"unknown generator {name!r}; available: {', '.join(registered_names())}")
    if kind in ("binary", "count") and ("mdn", kind) in _REGISTRY:
        return _REGISTRY[("mdn", kind)]
    raise ValueError(f"generator {name!r} cannot model a {kind} node")


def _check_batch(module: Generator, method: str | Callable, args: tuple[jax.Array, ...]) -> None:
    """Trace-time shape and dtype checks of a batched call; messages name both shapes."""
    if not args:
        return
    name = method if isinstance(method, str) else getattr(method, "__name__", "method")
    where = f"apply_batched({type(module).__name__}.{name})"
    chex.assert_equal_shape_prefix(
        args, 1, custom_message=f"{where}: every argument needs the same leading batch size"
    )
    if name not in _FIRST_ARG_SIZE or not isinstance(method, str):
        return
    size = _FIRST_ARG_SIZE[name]
    size = module.noise_dim if size is None else size
    first = "noise" if name == "sample" else "x"
    expected = f"{first} (n, {size}) and context (n, context_dim)"
    chex.assert_rank(args, 2, custom_message=f"{where} takes {expected}")
    chex.assert_shape(args[0], (args[0].shape[0], size), custom_message=f"{where} takes {expected}")
    chex.assert_type(args, float, custom_message=f"{where} takes floating-point arrays")


def apply_batched(
    module: Generator,
    method: str | Callable,
    variables: Any,
    *args: jax.Array,
    rng: jax.Array | None = None,
) -> jax.Array:
    """Applies a single-example ``method`` over a leading batch axis of every argument.

    Contract methods take ``(n, k)`` arrays: ``sample`` noise ``(n, noise_dim)``; ``loss``,
    ``log_prob``, ``inverse`` and ``cdf`` values ``(n, 1)``; then the context
    ``(n, context_dim)``. Shapes are checked when traced (``chex`` assertions, free at run
    time); any other method is only checked for a shared leading axis. With ``rng`` and a
    generator that declares an ``rng_stream``, example ``i`` gets its own key of that stream
    (the training loop passes one for the loss of a stochastic objective such as diffusion's).

    Raises:
      AssertionError: an argument has the wrong rank, trailing size, batch size or dtype; the
        message names the expected and the actual shape.
    """
    _check_batch(module, method, args)
    fn = getattr(type(module), method) if isinstance(method, str) else method
    stream = type(module).rng_stream
    if rng is None or stream is None:
        return jax.vmap(lambda *a: module.apply(variables, *a, method=fn))(*args)
    keys = jax.random.split(rng, args[0].shape[0])
    return jax.vmap(lambda k, *a: module.apply(variables, *a, method=fn, rngs={stream: k}))(
        keys, *args
    )


def normal_score(module: Generator, variables: Any, x: jax.Array, context: jax.Array) -> jax.Array:
    """The conditional normal score ``Phi^-1(F(x | c))`` of a continuous node: ``(n,)``.

    ``inverse`` where it is the normal score (a generator of one noise), else
    ``Phi^-1(cdf)`` (the CDF clipped to ``[1e-7, 1 - 1e-7]``, scores within about ±5.2).

    Raises:
      NotImplementedError: the generator has neither.
    """
    cls = type(module)
    if module.noise_dim == 1 and cls.implements("inverse"):
        return apply_batched(module, "inverse", variables, x, context)[:, 0]
    if cls.implements("cdf"):
        u = apply_batched(module, "cdf", variables, x, context).reshape(-1)
        return ndtri(jnp.clip(u, 1e-7, 1.0 - 1e-7))
    raise NotImplementedError(f"{cls.__name__} has no normal score (no inverse and no cdf)")


def binary_log_probs(
    module: Generator, variables: Any, context: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``(log P(x = 1 | c), log P(x = 0 | c))`` of a binary node from its ``log_prob``: ``(n,)``."""
    ones = jnp.ones((context.shape[0], 1), context.dtype)
    log_p1 = apply_batched(module, "log_prob", variables, ones, context)
    log_p0 = apply_batched(module, "log_prob", variables, 1.0 - ones, context)
    return log_p1, log_p0


def _ndtri_of_log(log_p: jax.Array) -> jax.Array:
    tiny = jnp.finfo(log_p.dtype).tiny
    return ndtri(jnp.clip(jnp.exp(log_p), tiny, 1.0))


def latent_index(module: Generator, variables: Any, context: jax.Array) -> jax.Array:
    r"""The probit index ``mu(c) = Phi^-1(P(x = 1 | c))`` of a binary node: ``(n,)``.

    A binary generator draws ``x = 1{Phi(z) < P(x = 1 | c)}``; with the latent normal score
    ``e = -z`` that is the threshold model ``x = 1{mu(c) + e > 0}``, ``e ~ N(0, 1)`` (for a
    probit GLM ``mu`` is its linear predictor; for a logit link or a network it is the probit
    index of the same probabilities). ``Phi^-1`` is taken of the smaller of ``P(x = 1)`` and
    ``P(x = 0)``, which float32 holds to full relative precision.
    """
    log_p1, log_p0 = binary_log_probs(module, variables, context)
    return jnp.where(log_p1 < log_p0, _ndtri_of_log(log_p1), -_ndtri_of_log(log_p0))


def latent_moments(
    module: Generator, variables: Any, x: jax.Array, context: jax.Array
) -> tuple[jax.Array, jax.Array]:
    r"""Mean and variance of a binary node's latent normal score given its value: ``(n,)`` each.

    With ``x = 1{mu(c) + e > 0}`` (:func:`latent_index`), given ``x`` the score ``e`` is
    ``N(0, 1)`` truncated to ``(-mu, inf)`` (``x = 1``) or ``(-inf, -mu)`` (``x = 0``):

    .. math::

        \lambda = E[e \mid x, c] = x \frac{\phi(\mu)}{\Phi(\mu)}
                 - (1 - x) \frac{\phi(\mu)}{\Phi(-\mu)},
        \qquad \mathrm{Var}(e \mid x, c) = 1 - \lambda (\lambda + \mu),

    the generalised residual of the probit model (the inverse Mills ratio medsens corrects the
    outcome model with) and the truncated normal's variance, computed in log space.

    Args:
      module: a binary generator (with ``log_prob``).
      variables: its variables.
      x: ``(n, 1)`` 0/1 values.
      context: ``(n, context_dim)``.
    """
    mu = latent_index(module, variables, context)
    log_phi = -0.5 * mu**2 - 0.5 * jnp.log(2.0 * jnp.pi)
    upper = jnp.exp(log_phi - log_ndtr(mu))
    lower = -jnp.exp(log_phi - log_ndtr(-mu))
    lam = jnp.where(x[:, 0] > 0.5, upper, lower)
    return lam, jnp.clip(1.0 - lam * (lam + mu), 0.0, 1.0)


def latent_transport(
    module: Generator,
    variables: Any,
    noise: jax.Array,
    x: jax.Array,
    drawn: jax.Array,
    seen: jax.Array,
) -> jax.Array:
    r"""The latent score at the same rank within ``x``'s interval under another context: ``(n,)``.

    ``x = 1{Phi(z) < p}`` was drawn from noise ``z`` under context ``drawn`` (``p = P(x = 1 |
    drawn)``), so ``U = Phi(z)`` is uniform on ``(0, p)`` given ``x = 1`` and on ``(p, 1)``
    given ``x = 0``. The uniform at the same relative position under ``seen`` (``p'``) is
    ``U p' / p`` (``x = 1``) or ``1 - (1 - U) (1 - p') / (1 - p)`` (``x = 0``); the result is
    its latent score ``-Phi^-1(U')``: a draw of ``e`` truncated to ``x``'s interval under
    ``seen``, equal to ``-z`` when the two contexts agree. Computed in log space.

    Args:
      module: a binary generator (with ``log_prob``).
      variables: its variables.
      noise: ``(n, 1)`` the noise ``x`` was drawn from.
      x: ``(n, 1)`` the drawn 0/1 values.
      drawn: ``(n, context_dim)`` the context ``x`` was drawn in.
      seen: ``(n, context_dim)`` the context to carry the score to.
    """
    z = noise[:, 0]
    d1, d0 = binary_log_probs(module, variables, drawn)
    s1, s0 = binary_log_probs(module, variables, seen)
    up = _ndtri_of_log(log_ndtr(z) + s1 - d1)
    down = -_ndtri_of_log(log_ndtr(-z) + s0 - d0)
    return -jnp.where(x[:, 0] > 0.5, up, down)


def init_params(module: Generator, key: jax.Array, context_dim: int) -> Any:
    """Creates a generator's variables for a context of size ``context_dim``.

    Raises:
      AssertionError: ``context_dim`` is not a positive integer.
    """
    chex.assert_scalar_positive(context_dim, custom_message="init_params: context_dim")
    return module.init(key, jnp.zeros((1,)), jnp.zeros((context_dim,)))
