"""The value every finding function returns: the claim, a verdict sentence, per-view verdicts and key numbers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

VIEW_COLUMNS = ["view", "scope", "holds", "value", "margin", "note"]
POOLED = "pooled"


@dataclass(frozen=True, eq=False)
class Finding:
    """One finding computed from the records.

    ``eq=False`` because comparing DataFrames field by field has no single truth value; two findings are
    equal only if they are the same object.

    Attributes
    ----------
    name : str
        Name of the function that computed it (``"random_baseline_strength"``, ...).
    holds : bool or None
        Whether the study's claim holds on these records; None when the records cannot say
        (too few methods, cells or dimensions) or when the function is descriptive (no claim to test).
    verdict : str
        One or two sentences with the key numbers, for the report.
    key : str
        Name of the headline entry of ``numbers``.
    numbers : dict of str to float
        Key numbers, machine-readable (NaN where undefined).
    table : pandas.DataFrame
        The main tidy table behind the verdict.
    details : mapping of str to pandas.DataFrame
        Supporting tidy tables (per-cell winners, per-dataset values, ...).
    claim : str
        The study's claim the finding tests, as the report titles it ("" for descriptive views).
    level : str
        The input it was computed from and the cell score used ("per-sample records; cell score: ...").
    evidence : str
        How far to trust the verdict: sample counts, the minimum detectable difference, cells left out and why.
    views : pandas.DataFrame
        One row per (view, scope) verdict: columns ``view``, ``scope`` (a model, or "pooled"), ``holds``,
        ``value``, ``margin`` (distance to the decision threshold, positive on the "holds" side), ``note``.
    """

    name: str
    holds: bool | None
    verdict: str
    key: str
    numbers: dict[str, float]
    table: pd.DataFrame = field(repr=False)
    details: Mapping[str, pd.DataFrame] = field(default_factory=dict, repr=False)
    claim: str = ""
    level: str = ""
    evidence: str = ""
    views: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=VIEW_COLUMNS), repr=False)

    @property
    def value(self) -> float:
        """The headline number, ``numbers[key]``."""
        return self.numbers.get(self.key, float("nan"))

    def holds_for(self, scope: str = POOLED, view: str | None = None) -> bool | None:
        """The verdict of one scope (a model, or "pooled") in one view (default: the first view listed)."""
        rows = self.views[self.views["scope"] == scope]
        if view is not None:
            rows = rows[rows["view"] == view]
        if rows.empty:
            raise KeyError(f"no verdict for scope {scope!r} view {view!r}; have {sorted(set(self.views['scope']))}")
        value = rows["holds"].iloc[0]
        return None if value is None or (isinstance(value, float) and pd.isna(value)) else bool(value)


def views_frame(rows: list[dict]) -> pd.DataFrame:
    """Per-view verdict rows as a frame with ``holds`` kept as object (None stays distinct from False)."""
    frame = pd.DataFrame(rows, columns=VIEW_COLUMNS)
    frame["holds"] = frame["holds"].astype(object)
    return frame
