"""Schema check and the shared aggregates every finding starts from: usable rows, cell and relative accuracy."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..vocabulary import BASELINE_CATEGORY, RANDOM_CATEGORY, VANILLA  # noqa: F401  (re-exported to the findings)

VANILLA_EPS = 1e-9  # a vanilla accuracy at or below this makes relative accuracy undefined (NaN)

SCHEMA: dict[str, str] = {
    "model": "str, model spec such as 'tiny:llava'",
    "method": "str, pruning method key; 'vanilla' is the unpruned baseline",
    "category": "str, 'baseline' | 'random' | 'vit' | 'llm' | 'hybrid'",
    "ratio": "float, share of visual tokens removed (0.0 for vanilla)",
    "seed": "int, selection seed",
    "dataset": "str, dataset key",
    "dimension": "str, ability dimension (comprehensive, ocr, multidisciplinary, hallucination, math, instruction)",
    "sample_id": "str, sample id within its dataset",
    "correct": "float in [0, 1], per-sample score",
    "parsed": "bool, whether an answer could be extracted",
    "prediction": "str, the model's answer text",
    "t_prefill": "float seconds, first forward pass",
    "t_llm_prefill": "float seconds, decoder layers of the first forward pass",
    "t_total": "float seconds, whole sample",
    "t_method": "float seconds, the pruning routine",
    "flops": "float, analytic FLOPs",
    "error": "None when the sample ran; otherwise the error text (such rows are excluded and counted)",
}

CELL_KEYS = ["model", "method", "category", "ratio", "seed", "dataset"]
ACCURACY_COLUMNS = [*CELL_KEYS, "sample_id", "correct", "error"]


def require_columns(df: pd.DataFrame, columns: Iterable[str]) -> None:
    """Fail early, naming the missing columns and the accepted schema.

    Raises
    ------
    TypeError
        If ``df`` is not a DataFrame.
    ValueError
        If any of ``columns`` is absent.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"records must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        schema = "; ".join(f"{name}: {desc}" for name, desc in SCHEMA.items())
        raise ValueError(
            f"records are missing column(s) {missing}. Accepted schema, one row per "
            f"(model, method, ratio, seed, dataset, sample_id): {schema}"
        )


def usable_records(df: pd.DataFrame, columns: Iterable[str], *, scored: bool = True) -> tuple[pd.DataFrame, int]:
    """Rows that ran without error (and, if ``scored``, have a score), plus how many were excluded.

    Ratios are rounded to 4 decimals so that float noise (0.6667 vs 0.66670001) does not split a cell.
    """
    columns = list(dict.fromkeys([*columns, "error"]))
    require_columns(df, columns)
    error = df["error"]
    failed = error.notna() & (error.astype(str).str.strip() != "")
    keep = ~failed
    if scored:
        keep &= df["correct"].notna()
    out = df.loc[keep, columns].copy()
    if "ratio" in out:
        out["ratio"] = out["ratio"].astype(float).round(4)
    if "correct" in out:
        out["correct"] = out["correct"].astype(float)
    return out, int((~keep).sum())


def sample_scores(recs: pd.DataFrame) -> pd.DataFrame:
    """Per-sample correctness averaged over seeds, one row per (model, method, category, ratio, dataset, sample).

    Averaging seeds per sample estimates the expected score under the method's random choices while keeping
    the pairing with other methods on the same sample.
    """
    keys = ["model", "method", "category", "ratio", "dataset", "sample_id"]
    return recs.groupby(keys, sort=True).agg(correct=("correct", "mean"), n_seeds=("seed", "nunique")).reset_index()


def cell_accuracy(recs: pd.DataFrame, extra: Iterable[str] = ()) -> pd.DataFrame:
    """Accuracy (mean of ``correct``) per (model, method, category, ratio, seed, dataset) cell."""
    keys = [*CELL_KEYS, *extra]
    return recs.groupby(keys, sort=True).agg(accuracy=("correct", "mean"), n=("correct", "size")).reset_index()


def seed_mean_accuracy(cells: pd.DataFrame, extra: Iterable[str] = ()) -> pd.DataFrame:
    """Cell accuracy averaged over seeds, so a method with three seeds weighs as much as one with one."""
    keys = [k for k in [*CELL_KEYS, *extra] if k != "seed"]
    out = cells.groupby(keys, sort=True).agg(accuracy=("accuracy", "mean"), n_seeds=("seed", "nunique"))
    return out.reset_index()


class RelativeAccuracy(NamedTuple):
    """Pruned cells with their vanilla reference, and the (model, dataset) pairs where it is missing or ~0."""

    table: pd.DataFrame
    missing_vanilla: pd.DataFrame
    zero_vanilla: pd.DataFrame


def relative_accuracy(recs: pd.DataFrame, extra: Iterable[str] = ()) -> RelativeAccuracy:
    """Pruned cell accuracy divided by the unpruned accuracy of the same (model, dataset).

    Vanilla seeds are averaged. Where vanilla is absent or its accuracy is at most ``VANILLA_EPS`` the ratio is
    undefined: ``relative_accuracy`` is NaN and the pair is listed, so callers report rather than crash.
    """
    cells = cell_accuracy(recs, extra)
    is_vanilla = cells["method"] == VANILLA
    vanilla = cells[is_vanilla].groupby(["model", "dataset"]).agg(vanilla_accuracy=("accuracy", "mean")).reset_index()
    pruned = cells[~is_vanilla].merge(vanilla, on=["model", "dataset"], how="left")
    defined = pruned["vanilla_accuracy"] > VANILLA_EPS
    pruned["relative_accuracy"] = np.where(defined, pruned["accuracy"] / pruned["vanilla_accuracy"], np.nan)
    pairs = pruned[["model", "dataset"]].drop_duplicates()
    missing = pairs.merge(vanilla, on=["model", "dataset"], how="left")
    missing_vanilla = missing[missing["vanilla_accuracy"].isna()][["model", "dataset"]].reset_index(drop=True)
    zero_vanilla = vanilla[vanilla["vanilla_accuracy"] <= VANILLA_EPS][["model", "dataset"]].reset_index(drop=True)
    return RelativeAccuracy(pruned, missing_vanilla, zero_vanilla)


def vanilla_note(rel: RelativeAccuracy) -> str:
    """A short note on (model, dataset) pairs without a usable vanilla reference, or an empty string."""
    parts = []
    if len(rel.missing_vanilla):
        parts.append(f"vanilla missing for {_pairs(rel.missing_vanilla)}, excluded")
    if len(rel.zero_vanilla):
        parts.append(f"vanilla accuracy 0 for {_pairs(rel.zero_vanilla)}, relative accuracy undefined")
    return "; ".join(parts)


def _pairs(pairs: pd.DataFrame) -> str:
    names = ", ".join(f"{m}/{d}" for m, d in pairs.itertuples(index=False))
    return f"{len(pairs)} (model, dataset) pair(s) ({names})"


def excluded_note(n_excluded: int) -> str:
    """How many rows were left out for errors or missing scores."""
    return f"{n_excluded} row(s) with an error or no score excluded" if n_excluded else ""


def with_note(sentence: str, *notes: str) -> str:
    """Append non-empty notes to a verdict sentence in parentheses."""
    kept = [n for n in notes if n]
    return f"{sentence} ({'; '.join(kept)})." if kept else f"{sentence}."
