"""The result of an analysis: an effects table, its JSON form, and what the figures need.

JSON shape (read by other tools; keep the keys)::

    {"effects": [{"effect": "NIE_treated", "functional": "quantile", "level": 0.5,
                  "estimate": 0.12, "ci_low": 0.05, "ci_high": 0.2}, ...],
     "meta": {...}}

``level`` is the quantile level or CDF point, null where it does not apply; ``ci_low`` and
``ci_high`` are null without bootstrap. A ``truth`` key is added when true values are known.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

COLUMNS = ("effect", "functional", "level", "estimate", "ci_low", "ci_high")


def markdown_table(frame: pd.DataFrame, digits: int = 3) -> str:
    """A DataFrame as a GitHub markdown table (floats to ``digits`` decimals), for reports."""

    def cell(v: Any) -> str:
        return f"{v:.{digits}f}" if isinstance(v, (float, np.floating)) else str(v)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * frame.shape[1]]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines)


def _json_number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


@dataclasses.dataclass(frozen=True)
class MediationResult:
    """Effects with intervals, plus the arm samples and quantile curves behind the figures.

    Attributes:
      table: one row per effect x functional x level: ``effect, functional, level, estimate,
        ci_low, ci_high`` (and ``truth`` once :meth:`with_truth` added it).
      meta: settings and diagnostics of the run (JSON-serialisable).
      arm_names: names of the simulated arms.
      arm_samples: ``(n_arms, m)`` outcome draws in original units (a subsample, for plots).
      contrast_names: the effects whose quantile curves are stored.
      curve_levels: quantile levels of the curves.
      curves: ``(n_contrasts, n_levels)`` quantile-effect estimates.
      curves_low, curves_high: bootstrap bands of the curves, or ``None``.
    """

    table: pd.DataFrame
    meta: dict
    arm_names: tuple[str, ...]
    arm_samples: np.ndarray
    contrast_names: tuple[str, ...]
    curve_levels: np.ndarray
    curves: np.ndarray
    curves_low: np.ndarray | None = None
    curves_high: np.ndarray | None = None

    @classmethod
    def from_arrays(
        cls,
        *,
        rows: Sequence[tuple[str, str, float | None]],
        estimates: np.ndarray,
        ci_low: np.ndarray | None,
        ci_high: np.ndarray | None,
        **fields: Any,
    ) -> MediationResult:
        """Builds the table from row labels and aligned value arrays."""
        missing = np.full(len(rows), np.nan)
        table = pd.DataFrame(
            {
                "effect": [r[0] for r in rows],
                "functional": [r[1] for r in rows],
                "level": [np.nan if r[2] is None else float(r[2]) for r in rows],
                "estimate": np.asarray(estimates, np.float64),
                "ci_low": missing if ci_low is None else np.asarray(ci_low, np.float64),
                "ci_high": missing if ci_high is None else np.asarray(ci_high, np.float64),
            }
        )
        return cls(table=table, **fields)

    def summary(self) -> pd.DataFrame:
        """The effects table as a DataFrame (a copy)."""
        return self.table.copy()

    def estimate(self, effect: str, functional: str, level: float | None = None) -> float:
        """One estimate by its labels, e.g. ``estimate("NIE_treated", "quantile", 0.9)``."""
        return float(self._row(effect, functional, level)["estimate"])

    def _row(self, effect: str, functional: str, level: float | None) -> pd.Series:
        t = self.table
        mask = (t.effect == effect) & (t.functional == functional)
        mask &= t.level.isna() if level is None else np.isclose(t.level, level)
        if mask.sum() != 1:
            raise KeyError(f"no single row for ({effect}, {functional}, {level})")
        return t[mask].iloc[0]

    def with_truth(self, truth: Mapping[tuple[str, str, float | None], float]) -> MediationResult:
        """A copy with a ``truth`` column from ``{(effect, functional, level): value}``."""

        def lookup(row: pd.Series) -> float:
            level = None if pd.isna(row.level) else round(float(row.level), 10)
            for (e, f, lv), value in truth.items():
                if e == row.effect and f == row.functional:
                    if (lv is None and level is None) or (
                        lv is not None and level is not None and math.isclose(lv, level)
                    ):
                        return float(value)
            return np.nan

        table = self.table.copy()
        table["truth"] = table.apply(lookup, axis=1)
        return dataclasses.replace(self, table=table)

    def to_dict(self) -> dict:
        """The JSON document as a dict (NaN and missing values become ``None``)."""
        effects = []
        for row in self.table.itertuples(index=False):
            entry = {
                "effect": row.effect,
                "functional": row.functional,
                "level": _json_number(row.level),
                "estimate": _json_number(row.estimate),
                "ci_low": _json_number(row.ci_low),
                "ci_high": _json_number(row.ci_high),
            }
            if "truth" in self.table.columns:
                entry["truth"] = _json_number(row.truth)
            effects.append(entry)
        return {"effects": effects, "meta": self.meta}

    def to_json(self, path: str | Path) -> Path:
        """Writes :meth:`to_dict` to ``path`` and returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    def format_table(self, digits: int = 3) -> str:
        """The table as aligned text, for terminals."""
        table = self.table.copy()
        table["level"] = table["level"].map(lambda v: "" if pd.isna(v) else f"{v:g}")
        return table.to_string(index=False, float_format=lambda v: f"{v:.{digits}f}", na_rep="")
