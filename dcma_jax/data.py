"""The data layer: columns with causal roles, their encodings, and validation of user input.

A mediation analysis needs a treatment ``A``, mediators ``M1..Mk`` in the user's causal order, an
outcome ``Y`` and optional pre-treatment covariates ``X``. :class:`MediationData` holds them as
float64 arrays in an *internal* coding that the generators are trained on:

* continuous variables are standardised, ``z = (v - mean) / sd`` with the mean and the SD
  (``ddof=0``) computed on all rows; an integer-valued mediator or outcome with a few distinct
  values (a count or a rating scale) is continuous only when declared so (see
  :meth:`MediationData.from_dataframe`);
* count mediators and outcomes (declared ``"count"``: non-negative integers) keep their raw
  integers, not standardised, so their effects are in counts;
* binary variables are coded 0/1 (the "treated" or larger level is 1);
* text/categorical covariates are one-hot encoded with the first (sorted) level dropped;
* the treatment is binary (0/1, inferred), or, when declared in ``types``, continuous
  (standardised) or categorical (the level index ``0..L-1``, levels sorted; contexts see it
  one-hot, see :mod:`dcma_jax.graph`).

:class:`Variable` records how one column was encoded so results can be reported in the user's
original units: ``decode`` maps internal values back, ``decode_difference`` maps a contrast of
internal values back (a difference of standardised means is a difference in SD units, so only
the scale applies).

Everything is validated before anything is encoded, and every problem raises :class:`DataError`
with a one-line message naming the column and what is wrong. No row is ever dropped or imputed:
missing or infinite values are an error, not something to filter silently; nor is the data
silently reinterpreted: duplicate column names are an error (pandas would rename a CSV's second
``m`` to ``m.1``), and so is a discrete-looking node that would be modelled as continuous.

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"A": [0, 1] * 10, "M": range(20), "Y": [v * 0.5 for v in range(20)]})
    >>> data = MediationData.from_dataframe(df, treatment="A", mediators="M", outcome="Y")
    >>> data.mediators.shape, data.outcome_var.kind
    ((20, 1), 'continuous')
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["DataError", "MediationData", "Variable"]

#: Kinds a :class:`Variable` may have; ``"categorical"`` is for a multi-valued treatment,
#: ``"count"`` for a mediator or outcome of non-negative integers.
VARIABLE_KINDS = ("binary", "continuous", "categorical", "count")
#: Type names accepted in the ``types`` override mapping.
TYPE_NAMES = ("binary", "continuous", "categorical", "count")

_MAX_SHOWN = 5  # levels or values quoted in a message
_MAX_COLUMNS_SHOWN = 10  # available columns listed when a name is unknown
#: An undeclared integer-valued mediator or outcome with 3 to this many distinct values (and at
#: least two rows per value on average) looks like a count or a rating scale, e.g. a 1-5 Likert
#: item or a 0-10 pain score, and is refused until its type is declared.
MAX_DISCRETE_LEVELS = 20
#: Largest value of a count column: every integer up to ``2^24`` is exact in float32.
MAX_COUNT = 2**24


class DataError(ValueError):
    """A user-input problem; the message is one line that names the column and the problem."""


# --------------------------------------------------------------------------------------------
# Variable: the encoding of one column
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Variable:
    """How one column is encoded between the user's units and the internal coding.

    Continuous: ``internal = (original - center) / scale``, with ``center`` the mean and
    ``scale`` the SD (``ddof=0``) of the column. Count: ``internal = original`` (the raw
    integers; ``center`` 0, ``scale`` 1, so every decode is the identity). Binary:
    ``internal = 1`` where the original value equals ``levels[1]`` and ``0`` where it equals
    ``levels[0]``; ``center`` and ``scale`` stay 0 and 1. Categorical (a multi-valued
    treatment): ``internal = i`` where the original value equals ``levels[i]``, the level
    index; contexts see it one-hot (see :mod:`dcma_jax.graph`), ``levels[0]`` being the
    reference level.

    Attributes:
        name: Column name as the user gave it.
        kind: ``"binary"``, ``"continuous"``, ``"categorical"`` or ``"count"``.
        center: Continuous: the mean used for standardising. Binary and count: 0.0.
        scale: Continuous: the SD used for standardising (positive). Binary and count: 1.0.
        levels: Binary: ``(original value coded 0, original value coded 1)``. Categorical: the
            levels in code order. Continuous and count: ``()``.
    """

    name: str
    kind: str
    center: float = 0.0
    scale: float = 1.0
    levels: tuple = ()

    def __post_init__(self):
        if self.kind not in VARIABLE_KINDS:
            raise ValueError(
                f"Variable {self.name!r}: kind must be one of {VARIABLE_KINDS}, got {self.kind!r}"
            )
        if self.kind == "binary" and len(self.levels) != 2:
            raise ValueError(
                f"Variable {self.name!r}: a binary variable needs exactly 2 levels, "
                f"got {self.levels!r}"
            )
        if self.kind == "count" and (self.center, self.scale, self.levels) != (0.0, 1.0, ()):
            raise ValueError(
                f"Variable {self.name!r}: a count variable is not rescaled (center 0, scale 1, "
                f"no levels), got center={self.center!r}, scale={self.scale!r}, "
                f"levels={self.levels!r}"
            )
        if self.kind == "categorical" and len(self.levels) < 3:
            raise ValueError(
                f"Variable {self.name!r}: a categorical variable needs at least 3 levels, "
                f"got {self.levels!r}"
            )
        if not (np.isfinite(self.center) and np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(
                f"Variable {self.name!r}: center must be finite and scale finite and positive, "
                f"got center={self.center!r}, scale={self.scale!r}"
            )

    def encode(self, values: Any) -> np.ndarray:
        """Map values in original units to the internal coding.

        Args:
            values: Scalar or array-like of original values.

        Returns:
            A float64 array of the same shape: standardised values (continuous), the values
            themselves (count) or 0/1 codes (binary).

        Raises:
            DataError: A binary variable is given a value that is not one of its two levels.
        """
        if self.kind in ("continuous", "count"):
            return (np.asarray(values, dtype=np.float64) - self.center) / self.scale
        if self.kind == "categorical":
            return self._encode_categorical(values)
        arr = np.asarray(values)
        if arr.dtype.kind in "biuf" and all(_is_number(lv) for lv in self.levels):
            is0, is1 = arr == self.levels[0], arr == self.levels[1]
        else:
            obj = arr.astype(object)
            is0 = np.asarray(obj == self.levels[0], dtype=bool)
            is1 = np.asarray(obj == self.levels[1], dtype=bool)
        unknown = ~(is0 | is1)
        if np.any(unknown):
            bad = arr.reshape(-1)[int(np.argmax(unknown.reshape(-1)))]
            raise DataError(
                f"column {self.name!r}: value {_fmt(bad)} is not one of its levels "
                f"({_fmt_list(self.levels)})"
            )
        return is1.astype(np.float64)

    @property
    def num_levels(self) -> int:
        """Number of levels of a categorical variable; 0 for the other kinds."""
        return len(self.levels) if self.kind == "categorical" else 0

    def _encode_categorical(self, values: Any) -> np.ndarray:
        arr = np.asarray(values)
        flat = arr.reshape(-1).astype(object)
        codes = np.full(flat.shape, -1.0)
        for i, level in enumerate(self.levels):
            codes[np.asarray(flat == level, dtype=bool) & (codes < 0)] = i
        if np.any(codes < 0):
            bad = flat[int(np.argmax(codes < 0))]
            raise DataError(
                f"column {self.name!r}: value {_fmt(bad)} is not one of its levels "
                f"({_fmt_list(self.levels)})"
            )
        return codes.reshape(arr.shape)

    def decode(self, values: Any) -> np.ndarray:
        """Map internal values back to original units.

        Continuous: ``values * scale + center``; count: unchanged (``scale`` 1, ``center`` 0).
        Binary: returned unchanged as float64, since
        an internal binary value (a 0/1 code, or a probability of the level coded 1) has no
        numeric meaning in the original labels; ``levels`` names what 0 and 1 stand for.
        """
        arr = np.asarray(values, dtype=np.float64)
        if self.kind == "continuous":
            return arr * self.scale + self.center
        return arr

    def decode_difference(self, d: Any) -> np.ndarray:
        """Map a difference of internal values back to original units.

        A contrast of standardised values is in SD units, so the centre cancels:
        ``d * scale`` (continuous); a difference of 0/1 codes or probabilities is unchanged
        (binary).
        """
        arr = np.asarray(d, dtype=np.float64)
        if self.kind == "continuous":
            return arr * self.scale
        return arr

    def describe(self) -> str:
        """One short phrase: the kind and its encoding, for summaries."""
        if self.kind == "continuous":
            return f"continuous (mean {self.center:.4g}, SD {self.scale:.4g})"
        if self.kind == "count":
            return "count (non-negative integers, in counts)"
        if self.kind == "categorical":
            return (
                f"categorical ({len(self.levels)} levels: {_fmt_list(self.levels)}; "
                f"reference {_fmt(self.levels[0])})"
            )
        return f"binary (0 = {_fmt(self.levels[0])}, 1 = {_fmt(self.levels[1])})"


# --------------------------------------------------------------------------------------------
# MediationData
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class MediationData:
    """Validated mediation data in the internal coding, with the encodings that produced it.

    Build it with :meth:`from_dataframe`, :meth:`from_csv` or :meth:`from_arrays`; they check
    every input first and raise :class:`DataError` with a one-line message on any problem.

    Attributes:
        treatment: ``(n,)`` float64 treatment codes: 0.0 (control) / 1.0 (treated) for a binary
            treatment, standardised values for a continuous one, level indices for a
            categorical one.
        mediators: ``(n, k)`` float64, standardised continuous, raw count or 0/1 binary
            mediators, columns in the user's causal order.
        outcome: ``(n,)`` float64, standardised continuous, raw count or 0/1 binary outcome.
        covariates: ``(n, p)`` float64: continuous standardised, binary 0/1, text/categorical
            one-hot with the first (sorted) level dropped; ``p`` may be 0.
        weights: ``(n,)`` float64 observation weights, positive and finite; all 1.0 unless a
            weights column was given.
        treatment_var: Encoding of the treatment.
        mediator_vars: Encodings of the mediators, in causal order.
        outcome_var: Encoding of the outcome.
        covariate_names: Names of the encoded covariate columns, e.g.
            ``("age", "site=B", "site=C")``.
    """

    treatment: np.ndarray
    mediators: np.ndarray
    outcome: np.ndarray
    covariates: np.ndarray
    weights: np.ndarray
    treatment_var: Variable
    mediator_vars: tuple[Variable, ...]
    outcome_var: Variable
    covariate_names: tuple[str, ...]

    def __post_init__(self):
        n = np.shape(self.treatment)[0] if np.ndim(self.treatment) == 1 else -1
        expected = {
            "treatment": (n,),
            "mediators": (n, len(self.mediator_vars)),
            "outcome": (n,),
            "covariates": (n, len(self.covariate_names)),
            "weights": (n,),
        }
        for field, shape in expected.items():
            actual = np.shape(getattr(self, field))
            if n < 0 or actual != shape:
                raise ValueError(
                    f"MediationData.{field}: expected shape {shape} (from treatment, "
                    f"mediator_vars and covariate_names), got {actual}"
                )

    # ---- properties -------------------------------------------------------------------------

    @property
    def n(self) -> int:
        """Number of rows (observations)."""
        return int(self.treatment.shape[0])

    @property
    def num_mediators(self) -> int:
        """Number of mediators ``k``."""
        return len(self.mediator_vars)

    @property
    def mediator_names(self) -> tuple[str, ...]:
        """Mediator column names, in causal order."""
        return tuple(v.name for v in self.mediator_vars)

    @property
    def treatment_name(self) -> str:
        """Treatment column name."""
        return self.treatment_var.name

    @property
    def outcome_name(self) -> str:
        """Outcome column name."""
        return self.outcome_var.name

    # ---- constructors -----------------------------------------------------------------------

    @classmethod
    def from_dataframe(
        cls,
        df: pd.DataFrame,
        *,
        treatment: str,
        mediators: str | Sequence[str],
        outcome: str,
        covariates: Sequence[str] = (),
        weights: str | None = None,
        types: Mapping[str, str] | None = None,
        treated_level: Any = None,
        min_rows: int = 20,
    ) -> MediationData:
        """Validate and encode columns of a DataFrame.

        Type inference: a column with exactly two distinct values is binary, otherwise
        continuous. A text (``object``/``str``/``category``) or ``bool`` column is binary in the
        treatment, mediator or outcome role when it has exactly two levels, and one-hot encoded
        in the covariate role. ``types`` overrides the inference per column.

        Discrete-looking nodes are never made continuous silently. A treatment with more than
        two values needs a declared type. A mediator or outcome whose values are all integers
        (``3`` or ``3.0``) with 3 to :data:`MAX_DISCRETE_LEVELS` (20) distinct values, and at
        most half as many distinct values as rows, looks like a count or a rating scale and is
        refused unless declared, ``types={"M": "count"}`` (non-negative integers modelled as
        counts, see :mod:`dcma_jax.generators.count`) or ``types={"M": "continuous"}``: a 1-5
        rating treated as continuous, or a count as continuous, is a modelling choice the user
        should make knowingly. Non-integer values, and integers with more distinct values (age
        in years) or hardly any repeats, are continuous as before; a count is never inferred.

        Binary coding: levels are sorted and the second is coded 1 (so 1 for {0, 1} and True for
        {False, True}); for the treatment, ``treated_level`` picks the level coded 1 instead.

        Args:
            df: The data. It is not modified, and no row is dropped.
            treatment: Treatment column: binary (inferred), or continuous or categorical when
                declared so in ``types``.
            mediators: One mediator column, or several in causal order.
            outcome: Outcome column.
            covariates: Pre-treatment covariate columns.
            weights: Optional column of positive, finite observation weights.
            types: Optional ``{column: "binary" | "continuous" | "categorical" | "count"}``
                overrides; ``"categorical"`` is accepted for covariates and the treatment only,
                ``"count"`` for mediators and the outcome only.
            treated_level: The treatment's level that means "treated" (coded 1).
            min_rows: Fewest rows accepted.

        Returns:
            The validated, encoded data.

        Raises:
            DataError: Any problem with the input, including duplicate column names; the
                message is one line naming the column.
        """
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"expected a pandas DataFrame, got {type(df).__name__}")
        duplicated = _duplicates(list(df.columns))
        if duplicated:
            raise DataError(
                f"the data has duplicate column names: {duplicated}; each column needs a "
                f"unique name"
            )
        mediator_list, covariate_list = _check_roles(
            df, treatment, mediators, outcome, covariates, weights
        )
        type_map = _check_types(types, [treatment, *mediator_list, outcome, *covariate_list])
        _check_row_count(len(df), min_rows)

        t_var, t_codes = _encode_treatment(
            df[treatment], treatment, type_map.get(treatment), treated_level
        )
        m_vars, m_cols = [], []
        for name in mediator_list:
            var, col = _encode_numeric_role(df[name], name, "mediator", type_map.get(name))
            m_vars.append(var)
            m_cols.append(col)
        y_var, y_codes = _encode_numeric_role(
            df[outcome], outcome, "outcome", type_map.get(outcome)
        )
        x_names, x_cols = [], []
        for name in covariate_list:
            names, cols = _encode_covariate(df[name], name, type_map.get(name))
            x_names.extend(names)
            x_cols.extend(cols)
        w = _weights(df[weights], weights) if weights is not None else np.ones(len(df))

        n = len(df)
        arrays = {
            "treatment": t_codes,
            "mediators": np.stack(m_cols, axis=1),
            "outcome": y_codes,
            "covariates": np.stack(x_cols, axis=1) if x_cols else np.zeros((n, 0)),
            "weights": w,
        }
        for key, arr in arrays.items():
            arr = np.ascontiguousarray(arr, dtype=np.float64)
            arr.flags.writeable = False
            arrays[key] = arr
        return cls(
            **arrays,
            treatment_var=t_var,
            mediator_vars=tuple(m_vars),
            outcome_var=y_var,
            covariate_names=tuple(x_names),
        )

    @classmethod
    def from_csv(cls, path: str | os.PathLike, **kwargs: Any) -> MediationData:
        """Read a CSV file and delegate to :meth:`from_dataframe` with the same keyword args.

        The header is checked as written: a name given to two columns is an error (pandas
        alone would rename the second ``m`` to ``m.1`` and the analysis would use the first).

        Raises:
            DataError: The file is missing, a directory, empty, unreadable or not parsable as
                CSV, has duplicate column names, or any problem :meth:`from_dataframe` reports.
        """
        p = os.fspath(path)
        if not os.path.exists(p):
            raise DataError(f"file {p!r} does not exist")
        if os.path.isdir(p):
            raise DataError(f"file {p!r} is a directory, not a CSV file")
        try:
            df = pd.read_csv(p, low_memory=False)
            # The header as written: read_csv has already renamed duplicates ("m", "m.1").
            header = pd.read_csv(p, header=None, nrows=1, dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError:
            raise DataError(f"file {p!r} is empty") from None
        except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"file {p!r} could not be read as CSV: {first}") from None
        # Blank names are left out: pandas names them "Unnamed: <i>", which cannot clash.
        duplicated = _duplicates([name for name in header.iloc[0] if name != ""])
        if duplicated:
            raise DataError(
                f"file {p!r} has duplicate column names in its header: {duplicated}; each "
                f"column needs a unique name"
            )
        if len(df) == 0:
            raise DataError(f"file {p!r} has a header but no data rows")
        return cls.from_dataframe(df, **kwargs)

    @classmethod
    def from_arrays(
        cls,
        *,
        treatment: Any,
        mediators: Any,
        outcome: Any,
        covariates: Any = None,
        weights: Any = None,
        mediator_names: Sequence[str] | None = None,
        covariate_names: Sequence[str] | None = None,
        treatment_name: str = "A",
        outcome_name: str = "Y",
        types: Mapping[str, str] | None = None,
        treated_level: Any = None,
        min_rows: int = 20,
    ) -> MediationData:
        """Build from arrays: assemble a DataFrame and delegate to :meth:`from_dataframe`.

        Args:
            treatment: ``(n,)`` treatment values.
            mediators: ``(n,)`` or ``(n, k)`` mediator values, columns in causal order.
            outcome: ``(n,)`` outcome values.
            covariates: Optional ``(n,)`` or ``(n, p)`` array, or a DataFrame (its column names
                are used unless ``covariate_names`` is given).
            weights: Optional ``(n,)`` positive observation weights.
            mediator_names: Names for the mediator columns; default ``M1..Mk``.
            covariate_names: Names for the covariate columns; default ``X1..Xp``.
            treatment_name: Name of the treatment column.
            outcome_name: Name of the outcome column.
            types: As in :meth:`from_dataframe`, keyed by the names above.
            treated_level: As in :meth:`from_dataframe`.
            min_rows: As in :meth:`from_dataframe`.

        Returns:
            The validated, encoded data.

        Raises:
            DataError: Arrays of the wrong shape or length, names that clash or do not match the
                number of columns, or any problem :meth:`from_dataframe` reports.
        """
        t = _as_vector(treatment, "treatment")
        y = _as_vector(outcome, "outcome")
        m = _as_matrix(mediators, "mediators")
        m_names = _names(mediator_names, m.shape[1], "M", "mediator_names", "mediators")

        x_frame = None
        if covariates is None:
            x_names: list[str] = []
        elif isinstance(covariates, pd.DataFrame):
            x_frame = covariates.reset_index(drop=True)
            default = [str(c) for c in x_frame.columns]
            x_names = list(covariate_names) if covariate_names is not None else default
            if len(x_names) != x_frame.shape[1]:
                raise DataError(
                    f"covariate_names has {len(x_names)} names but covariates has "
                    f"{x_frame.shape[1]} columns"
                )
        else:
            x = _as_matrix(covariates, "covariates")
            x_names = _names(covariate_names, x.shape[1], "X", "covariate_names", "covariates")

        lengths = {"treatment": len(t), "mediators": len(m), "outcome": len(y)}
        if covariates is not None:
            lengths["covariates"] = len(x_frame) if x_frame is not None else len(x)
        if weights is not None:
            w = _as_vector(weights, "weights")
            lengths["weights"] = len(w)
        for key, length in lengths.items():
            if length != len(t):
                raise DataError(f"{key} has {length} rows but treatment has {len(t)}")

        roles = [
            (treatment_name, "treatment"),
            *[(nm, "mediator") for nm in m_names],
            (outcome_name, "outcome"),
            *[(nm, "covariate") for nm in x_names],
        ]
        seen: dict[str, str] = {}
        for nm, role in roles:
            if nm in seen:
                raise DataError(f"name {nm!r} is given to two arrays ({seen[nm]} and {role})")
            seen[nm] = role

        columns: dict[str, Any] = {treatment_name: t}
        for j, nm in enumerate(m_names):
            columns[nm] = m[:, j]
        columns[outcome_name] = y
        for j, nm in enumerate(x_names):
            columns[nm] = x_frame.iloc[:, j].to_numpy() if x_frame is not None else x[:, j]
        weights_name = None
        if weights is not None:
            weights_name = "weights"
            while weights_name in columns:
                weights_name += "_"
            columns[weights_name] = w
        df = pd.DataFrame(columns)
        return cls.from_dataframe(
            df,
            treatment=treatment_name,
            mediators=m_names,
            outcome=outcome_name,
            covariates=x_names,
            weights=weights_name,
            types=types,
            treated_level=treated_level,
            min_rows=min_rows,
        )

    # ---- reporting --------------------------------------------------------------------------

    def summary(self) -> str:
        """A few lines: rows, roles, kinds and levels or standardisation constants."""
        lines = [
            f"MediationData: n={self.n}, {self.num_mediators} mediator(s), "
            f"{len(self.covariate_names)} encoded covariate column(s)",
            f"  treatment  {self.treatment_name!r}: {self.treatment_var.describe()}",
        ]
        for i, var in enumerate(self.mediator_vars, start=1):
            lines.append(f"  mediator {i} {var.name!r}: {var.describe()}")
        lines.append(f"  outcome    {self.outcome_name!r}: {self.outcome_var.describe()}")
        covs = ", ".join(self.covariate_names) if self.covariate_names else "none"
        lines.append(f"  covariates {covs}")
        if np.all(self.weights == 1.0):
            lines.append("  weights    none (all 1)")
        else:
            lines.append(
                f"  weights    min {self.weights.min():.4g}, max {self.weights.max():.4g}, "
                f"sum {self.weights.sum():.4g}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"MediationData(n={self.n}, treatment={self.treatment_name!r}, "
            f"mediators={self.mediator_names!r}, outcome={self.outcome_name!r}, "
            f"covariates={self.covariate_names!r})"
        )


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    """Quote a value for a message: strings with quotes, numbers compactly."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value)


def _fmt_list(values: Sequence[Any], limit: int = _MAX_SHOWN) -> str:
    shown = ", ".join(_fmt(v) for v in list(values)[:limit])
    return shown + (", ..." if len(values) > limit else "")


def _count(mask: np.ndarray, noun: str) -> str:
    k = int(mask.sum())
    return f"{k} {noun}" + ("" if k == 1 else "s")


def _is_number(value: Any) -> bool:
    return isinstance(value, (bool, int, float, np.number, np.bool_))


def _sorted_levels(values: Sequence[Any]) -> list[Any]:
    """Sort distinct values; mixed types fall back to sorting by (type name, text)."""
    plain = [v.item() if isinstance(v, np.generic) else v for v in values]
    try:
        return sorted(plain)
    except TypeError:
        return sorted(plain, key=lambda v: (type(v).__name__, str(v)))


def _check_roles(
    df: pd.DataFrame, treatment, mediators, outcome, covariates, weights
) -> tuple[list[Any], list[Any]]:
    """Check that every named column exists, is unique in the data and has one role."""
    if mediators is None:
        mediator_list = []
    elif isinstance(mediators, str) or not isinstance(mediators, Iterable):
        mediator_list = [mediators]
    else:
        mediator_list = list(mediators)
    if not mediator_list:
        raise DataError("no mediators given: pass at least one mediator column")
    if isinstance(covariates, str):
        raise DataError(
            f"covariates must be a list of column names, got the string {covariates!r}; "
            f"write covariates=[{covariates!r}]"
        )
    covariates = [] if covariates is None else list(covariates)
    roles = [(treatment, "treatment"), *[(m, "mediator") for m in mediator_list]]
    roles += [(outcome, "outcome"), *[(c, "covariate") for c in covariates]]
    if weights is not None:
        roles.append((weights, "weights"))

    available = list(df.columns)
    for name, role in roles:
        if not isinstance(name, Hashable):
            raise DataError(f"{role} must be a column name, got {type(name).__name__} {name!r}")
        if name not in df.columns:
            shown = ", ".join(repr(c) for c in available[:_MAX_COLUMNS_SHOWN])
            more = (
                f" and {len(available) - _MAX_COLUMNS_SHOWN} more"
                if (len(available) > _MAX_COLUMNS_SHOWN)
                else ""
            )
            raise DataError(
                f"{role} column {name!r} is not in the data; available columns: "
                f"{shown or '(none)'}{more}"
            )
    seen: dict[Any, str] = {}
    for name, role in roles:
        if name in seen:
            if seen[name] == role:
                raise DataError(f"column {name!r} is listed twice as a {role}")
            raise DataError(f"column {name!r} is used in two roles ({seen[name]} and {role})")
        seen[name] = role
    return mediator_list, covariates


def _duplicates(names: list[Any]) -> str:
    """The names that occur more than once, quoted with their counts ("'m' (2 times)"); ""."""
    counts: dict[Any, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    repeated = [(name, k) for name, k in counts.items() if k > 1]
    shown = ", ".join(f"{name!r} ({k} times)" for name, k in repeated[:_MAX_COLUMNS_SHOWN])
    more = len(repeated) - _MAX_COLUMNS_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def _check_types(types: Mapping[str, str] | None, used: list[str]) -> dict[str, str]:
    if types is None:
        return {}
    if not isinstance(types, Mapping):
        raise DataError(f"types must be a mapping of column name to type, got {types!r}")
    for name, type_name in types.items():
        if type_name not in TYPE_NAMES:
            raise DataError(
                f"types: column {name!r} has unknown type {type_name!r}; "
                f"use one of {', '.join(repr(t) for t in TYPE_NAMES)}"
            )
        if name not in used:
            raise DataError(
                f"types: column {name!r} is not the treatment, a mediator, the outcome or a "
                f"covariate"
            )
    return dict(types)


def _check_row_count(n: int, min_rows: int) -> None:
    if n == 0:
        raise DataError("the data has no rows")
    if n < min_rows:
        raise DataError(
            f"the data has {n} rows; at least {min_rows} are needed (min_rows={min_rows})"
        )


@dataclasses.dataclass
class _Column:
    """A column after the missing-value and text checks, ready to be typed."""

    name: str
    role: str
    nature: str  # "numeric" | "bool" | "text"
    values: np.ndarray  # float64 for numeric, object otherwise
    integer: bool  # numeric values are integers in the source
    categorical: bool = False  # the source had a pandas category dtype

    def levels(self) -> list[Any]:
        if self.nature == "numeric":
            uniq = np.unique(self.values)
            return [int(v) for v in uniq] if self.integer else [float(v) for v in uniq]
        return _sorted_levels(pd.unique(self.values))

    def label(self) -> str:
        return f"{self.role} column {self.name!r}"


def _inspect(series: pd.Series, name: str, role: str) -> _Column:
    """Reject missing/infinite values and classify a column as numeric, bool or text."""
    categorical = isinstance(series.dtype, pd.CategoricalDtype)
    if categorical:
        series = series.astype(object)
    missing = series.isna().to_numpy()
    if pd.api.types.is_bool_dtype(series.dtype):
        numeric = None
    elif pd.api.types.is_numeric_dtype(series.dtype):
        numeric = series.to_numpy(dtype=np.float64, na_value=np.nan)
        missing = missing | ~np.isfinite(numeric)
    else:
        numeric = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        missing = missing | np.isinf(numeric)
    if missing.any():
        raise DataError(
            f"{role} column {name!r} has {_count(missing, 'missing or infinite value')} "
            f"(first at row {int(np.argmax(missing))})"
        )
    if numeric is None:
        return _Column(name, role, "bool", series.to_numpy(dtype=object), False, categorical)
    if pd.api.types.is_numeric_dtype(series.dtype) or not np.isnan(numeric).any():
        integer = bool(pd.api.types.is_integer_dtype(series.dtype))
        if categorical and np.all(numeric == np.round(numeric)):
            integer = all(_is_number(v) and not isinstance(v, float) for v in series)
        return _Column(name, role, "numeric", numeric, integer, categorical)
    return _Column(name, role, "text", series.to_numpy(dtype=object), False, categorical)


def _text_error(col: _Column, note: str = "") -> DataError:
    """'text in a numeric role', quoting the first value that is not a number."""
    numeric = pd.to_numeric(pd.Series(col.values), errors="coerce").to_numpy()
    row = int(np.argmax(pd.isna(numeric)))
    return DataError(
        f"{col.label()} has text in a numeric role (e.g. {_fmt(col.values[row])} at row {row})"
        + (f"; {note}" if note else "")
    )


def _binary(col: _Column, levels: list[Any]) -> tuple[Variable, np.ndarray]:
    var = Variable(col.name, "binary", levels=(levels[0], levels[1]))
    return var, var.encode(col.values)


def _continuous(col: _Column) -> tuple[Variable, np.ndarray]:
    center = float(np.mean(col.values))
    scale = float(np.std(col.values))  # ddof=0
    if not scale > 0:  # distinct but numerically identical after rounding
        raise DataError(f"{col.label()} has zero standard deviation and cannot be standardised")
    var = Variable(col.name, "continuous", center=center, scale=scale)
    return var, var.encode(col.values)


def _constant_error(col: _Column, value: Any) -> DataError:
    return DataError(f"{col.label()} is constant (every row is {_fmt(value)})")


def _encode_treatment(
    series: pd.Series, name: str, declared: str | None, treated_level: Any
) -> tuple[Variable, np.ndarray]:
    if declared == "count":
        raise DataError(
            f"treatment column {name!r} is declared count; counts are modelled for mediators "
            "and the outcome only (declare the treatment binary, continuous or categorical)"
        )
    col = _inspect(series, name, "treatment")
    levels = col.levels()
    if declared in ("continuous", "categorical") and treated_level is not None:
        raise DataError(
            f"treated_level applies to a binary treatment; treatment column {name!r} is "
            f"declared {declared}"
        )
    if declared == "continuous":
        if col.nature == "text":
            raise _text_error(col, "a continuous treatment must be numeric")
        if len(levels) == 1:
            raise _constant_error(col, levels[0])
        if col.nature == "bool":
            col = _Column(name, "treatment", "numeric", col.values.astype(np.float64), False)
        return _continuous(col)
    if declared == "categorical":
        if len(levels) < 3:
            raise DataError(
                f"treatment column {name!r} is declared categorical but has {len(levels)} "
                f"distinct value{'s' if len(levels) != 1 else ''} ({_fmt_list(levels)}); a "
                f"categorical treatment needs at least 3 levels (use binary for 2)"
            )
        var = Variable(name, "categorical", levels=tuple(levels))
        return var, var.encode(col.values)
    if col.nature == "text" and len(levels) > 2:
        numeric = pd.to_numeric(pd.Series(col.values), errors="coerce")
        if numeric.notna().any():  # numbers mixed with stray text
            raise _text_error(col)
        raise DataError(
            f"treatment column {name!r} has text in a numeric role: {len(levels)} text levels "
            f"({_fmt_list(levels)}); declare a multi-valued treatment with "
            f"types={{{name!r}: 'categorical'}}"
        )
    if len(levels) == 1:
        value = levels[0]
        if treated_level is not None:
            if value == treated_level:
                problem = "it has no control rows"
            else:
                problem = f"it has no treated rows (treated_level {_fmt(treated_level)} is absent)"
        elif _is_number(value) and value == 1:
            problem = "it has no control rows"
        elif _is_number(value) and value == 0:
            problem = "it has no treated rows"
        else:
            problem = "it has only one arm (no treated rows or no control rows)"
        raise DataError(
            f"treatment column {name!r} is constant (every row is {_fmt(value)}): {problem}"
        )
    if len(levels) > 2:
        if declared == "binary":
            raise DataError(
                f"treatment column {name!r} is declared binary but has {len(levels)} distinct "
                f"values ({_fmt_list(levels)})"
            )
        raise DataError(
            f"treatment column {name!r} has {len(levels)} distinct values "
            f"({_fmt_list(levels)}); a treatment with more than two values is not supported "
            f"without a declared type: types={{{name!r}: 'categorical'}} or 'continuous'"
        )
    if treated_level is not None:
        if not any(lv == treated_level for lv in levels):
            raise DataError(
                f"treated_level {_fmt(treated_level)} is not a level of treatment column "
                f"{name!r} (levels: {_fmt_list(levels)})"
            )
        if levels[0] == treated_level:
            levels = [levels[1], levels[0]]
    return _binary(col, levels)


def _encode_numeric_role(
    series: pd.Series, name: str, role: str, declared: str | None
) -> tuple[Variable, np.ndarray]:
    """Encode a mediator or the outcome: binary, continuous or (declared) count."""
    if declared == "categorical":
        raise DataError(
            f"{role} column {name!r} is declared categorical; a {role} must be binary, "
            "continuous or count"
        )
    col = _inspect(series, name, role)
    levels = col.levels()
    if declared == "count":
        return _encode_count(col, levels)
    if col.nature == "text" and (len(levels) > 2 or declared == "continuous"):
        raise _text_error(col, f"a text {role} must have exactly two levels (binary)")
    if len(levels) == 1:
        raise _constant_error(col, levels[0])
    if declared == "binary" and len(levels) != 2:
        raise DataError(
            f"{col.label()} is declared binary but has {len(levels)} distinct values "
            f"({_fmt_list(levels)})"
        )
    if col.nature == "bool" and declared == "continuous":
        return _continuous(_Column(name, role, "numeric", col.values.astype(np.float64), False))
    if declared is None and _looks_discrete(col, len(levels)):
        raise DataError(
            f"{col.label()} has {len(levels)} distinct integer values ({_fmt_list(levels)}), "
            f"like a count or a rating scale; declare its type: types={{{name!r}: 'count'}} "
            f"for a count of events, or types={{{name!r}: 'continuous'}} to model it as "
            f"continuous (CLI: --types {name}=count or --types {name}=continuous)"
        )
    if declared == "continuous" or (declared is None and len(levels) > 2):
        return _continuous(col)
    return _binary(col, levels)


def _encode_count(col: _Column, levels: list[Any]) -> tuple[Variable, np.ndarray]:
    """A declared count: non-negative integers (at most ``2^24``, exact in float32), as is."""
    if col.nature == "text":
        raise _text_error(col, "a count must be non-negative integers")
    if len(levels) == 1:
        raise _constant_error(col, levels[0])
    values = col.values.astype(np.float64)
    problems = (
        (values < 0, "a negative value"),
        (values != np.round(values), "a non-integer value"),
        (values > MAX_COUNT, f"a value above {MAX_COUNT} (counts are exact in float32 up to it)"),
    )
    for bad, what in problems:
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(
                f"{col.label()} is declared count but has {what} ({_fmt(col.values[row])} at "
                f"row {row}); a count must be a non-negative integer"
            )
    var = Variable(col.name, "count")
    return var, var.encode(values)


def _looks_discrete(col: _Column, num_levels: int) -> bool:
    """Integer values, 3..MAX_DISCRETE_LEVELS distinct ones, each on two rows or more on average.

    The repeat condition keeps a short column of nearly all-distinct integers (``range(20)``)
    continuous: with hardly any ties nothing marks it as a scale.
    """
    if col.nature != "numeric" or not 3 <= num_levels <= MAX_DISCRETE_LEVELS:
        return False
    if 2 * num_levels > len(col.values):
        return False
    return bool(np.all(col.values == np.round(col.values)))


def _encode_covariate(
    series: pd.Series, name: str, declared: str | None
) -> tuple[list[str], list[np.ndarray]]:
    """Encode one covariate into one or more columns (one-hot for text/categorical)."""
    if declared == "count":
        raise DataError(
            f"covariate column {name!r} is declared count; counts are modelled for mediators and "
            "the outcome only (a covariate enters contexts as a number: declare it continuous)"
        )
    col = _inspect(series, name, "covariate")
    levels = col.levels()
    if len(levels) == 1:
        raise _constant_error(col, levels[0])
    one_hot = declared == "categorical" or (
        declared is None and (col.categorical or col.nature in ("text", "bool"))
    )
    if one_hot:
        if col.nature == "text" and len(levels) > 20 and len(levels) > len(col.values) // 2:
            raise DataError(
                f"covariate column {name!r} has {len(levels)} distinct text values in "
                f"{len(col.values)} rows; it looks like an identifier, not a category"
            )
        names = [f"{name}={lv}" for lv in levels[1:]]
        obj = col.values.astype(object)
        cols = [np.asarray(obj == lv, dtype=np.float64) for lv in levels[1:]]
        return names, cols
    if col.nature == "text" and declared == "continuous":
        raise _text_error(col)
    if declared == "binary" and len(levels) != 2:
        raise DataError(
            f"{col.label()} is declared binary but has {len(levels)} distinct values "
            f"({_fmt_list(levels)})"
        )
    if col.nature == "bool" and declared == "continuous":
        col = _Column(name, "covariate", "numeric", col.values.astype(np.float64), False)
    if declared == "continuous" or (declared is None and len(levels) > 2):
        _, values = _continuous(col)
    else:
        _, values = _binary(col, levels)
    return [str(name)], [values]


def _weights(series: pd.Series, name: str) -> np.ndarray:
    col = _inspect(series, name, "weights")
    if col.nature == "text":
        raise _text_error(col)
    if col.nature == "bool":
        raise DataError(f"weights column {name!r} is boolean; weights must be positive numbers")
    bad = ~(col.values > 0)
    if bad.any():
        raise DataError(
            f"weights column {name!r} has {_count(bad, 'non-positive value')} "
            f"(first at row {int(np.argmax(bad))}); weights must be positive and finite"
        )
    return col.values


# --------------------------------------------------------------------------------------------
# from_arrays helpers
# --------------------------------------------------------------------------------------------


def _as_vector(values: Any, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(f"{what} must be a 1-D array of length n, got shape {arr.shape}")
    return arr


def _as_matrix(values: Any, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(f"{what} must be an (n,) or (n, k) array, got shape {arr.shape}")
    return arr


def _names(names: Sequence[str] | None, k: int, prefix: str, arg: str, what: str) -> list[str]:
    if names is None:
        return [f"{prefix}{j + 1}" for j in range(k)]
    if isinstance(names, str):
        names = [names]
    names = list(names)
    if len(names) != k:
        raise DataError(f"{arg} has {len(names)} names but {what} has {k} columns")
    return names
