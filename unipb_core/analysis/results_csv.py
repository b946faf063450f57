"""Results from elsewhere (a paper's table, another harness's output) read into the analysis' schema.

The column names and method names are mapped through ``analysis.naming`` (``COLUMN_ALIASES``,
``METHOD_ALIASES``), extended per call; nothing else renames anything.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import pandas as pd

from . import naming
from .records import input_level
from .schema import CELL_SCHEMA, SCHEMA


def read_results(
    path: str | os.PathLike,
    columns: Mapping[str, str] | None = None,
    aliases: Mapping[str, str] | None = None,
    score_scale: float = 1.0,
) -> pd.DataFrame:
    """Read a results CSV as cell-level results (``CELL_SCHEMA``) or per-sample records (``SCHEMA``).

    Parameters
    ----------
    path : path-like
        CSV with a header row.
    columns : mapping of str to str, optional
        Extra column mappings, the CSV's name -> the analysis' name (added to ``naming.COLUMN_ALIASES``).
    aliases : mapping of str to str, optional
        Extra method-name mappings, the CSV's name -> method key (added to ``naming.METHOD_ALIASES``).
    score_scale : float
        What a perfect score is in the CSV (100 for percentages); scores are divided by it.

    Returns
    -------
    DataFrame
        The analysis' columns only, methods under their keys; any analysis function accepts it.

    Raises
    ------
    ValueError
        When two CSV columns map to one analysis column, a mapping targets an unknown column, or the table
        has neither a ``score`` nor per-sample ``sample_id`` + ``correct`` columns.
    """
    if score_scale <= 0:
        raise ValueError(f"score_scale must be positive, got {score_scale}")
    known = {*SCHEMA, *CELL_SCHEMA}
    bad = {k: v for k, v in (columns or {}).items() if v not in known}
    if bad:
        raise ValueError(f"column mapping targets unknown column(s) {bad}; accepted targets: {sorted(known)}")
    raw = pd.read_csv(path)
    mapped: dict[str, str] = {}
    for name in raw.columns:
        target = naming.canonical_column(name, columns)
        if target is None:
            continue
        if target in mapped.values():
            first = next(k for k, v in mapped.items() if v == target)
            raise ValueError(f"columns {first!r} and {name!r} of {path} both map to {target!r}; map only one")
        mapped[name] = target
    frame = raw[list(mapped)].rename(columns=mapped)
    if "method" in frame:
        frame["method"] = [naming.canonical_method(m, aliases) for m in frame["method"]]
    for score in ("score", "correct"):
        if score in frame:
            frame[score] = pd.to_numeric(frame[score], errors="coerce") / score_scale
    try:
        input_level(frame)
    except ValueError as exc:
        unread = [c for c in raw.columns if c not in mapped]
        raise ValueError(f"{path}: {exc}. Columns not understood: {unread} (map them with columns=...)") from exc
    return frame
