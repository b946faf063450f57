"""The value every finding function returns: a tidy table, a verdict sentence and its key numbers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd


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
    """

    name: str
    holds: bool | None
    verdict: str
    key: str
    numbers: dict[str, float]
    table: pd.DataFrame = field(repr=False)
    details: Mapping[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    @property
    def value(self) -> float:
        """The headline number, ``numbers[key]``."""
        return self.numbers.get(self.key, float("nan"))
