"""Finding 3: which ability suffers most from pruning (relative accuracy per dimension and dataset)."""

from __future__ import annotations

import pandas as pd

from .finding import Finding
from .records import (
    ACCURACY_COLUMNS,
    RelativeAccuracy,
    excluded_note,
    relative_accuracy,
    usable_records,
    vanilla_note,
    with_note,
)

OCR = "ocr"  # the key used in unipb_core.data.dimensions.DIMENSIONS


def task_sensitivity(df: pd.DataFrame) -> Finding:
    """Relative accuracy (pruned / unpruned) per ability dimension, ranked from most fragile.

    Pruned cells include the random baselines: they are pruned configurations too. Seeds are averaged per
    (model, method, ratio, dataset) first; a dataset's value is the mean over those configurations; a
    dimension's value is the unweighted mean of its datasets, so a big dataset does not outweigh its sibling.

    Parameters
    ----------
    df : DataFrame
        Tidy per-sample records with a ``dimension`` column.

    Returns
    -------
    Finding
        Table: one row per dimension (rank 1 = most fragile). Details: ``datasets`` (per dataset) and
        ``by_ratio`` (per dimension and ratio). ``holds`` is True when OCR ranks first; None without OCR or
        with fewer than two dimensions.
    """
    recs, n_excluded = usable_records(df, [*ACCURACY_COLUMNS, "dimension"])
    recs["dimension"] = recs["dimension"].astype(str).str.strip().str.lower()
    rel = relative_accuracy(recs, extra=["dimension"])
    cells = rel.table.dropna(subset=["relative_accuracy"])
    configs = (
        cells.groupby(["dimension", "dataset", "model", "method", "ratio"])["relative_accuracy"].mean().reset_index()
    )
    datasets = (
        configs.groupby(["dimension", "dataset"])
        .agg(relative_accuracy=("relative_accuracy", "mean"), n_configs=("relative_accuracy", "size"))
        .reset_index()
    )
    datasets["rank"] = datasets["relative_accuracy"].rank(method="min").astype(int)
    by_ratio = (
        configs.groupby(["dimension", "dataset", "ratio"])["relative_accuracy"]
        .mean()
        .groupby(["dimension", "ratio"])
        .mean()
        .reset_index()
    )
    table = (
        datasets.groupby("dimension")
        .agg(relative_accuracy=("relative_accuracy", "mean"), n_datasets=("dataset", "size"))
        .reset_index()
    )
    table["drop"] = 1 - table["relative_accuracy"]
    table["rank"] = table["relative_accuracy"].rank(method="min").astype(int)
    table = table.sort_values(["rank", "dimension"], ignore_index=True)
    datasets = datasets.sort_values(["rank", "dataset"], ignore_index=True)
    return _finding(table, {"datasets": datasets, "by_ratio": by_ratio}, rel, n_excluded)


def _finding(table: pd.DataFrame, details: dict[str, pd.DataFrame], rel: RelativeAccuracy, n_excluded: int) -> Finding:
    ocr = table[table["dimension"] == OCR]
    ocr_rank = float(ocr["rank"].iloc[0]) if len(ocr) else float("nan")
    numbers = {
        "ocr_rank": ocr_rank,
        "ocr_relative_accuracy": float(ocr["relative_accuracy"].iloc[0]) if len(ocr) else float("nan"),
        "n_dimensions": float(len(table)),
        "most_fragile_relative_accuracy": float(table["relative_accuracy"].iloc[0]) if len(table) else float("nan"),
        "n_missing_vanilla": float(len(rel.missing_vanilla)),
        "n_zero_vanilla": float(len(rel.zero_vanilla)),
        "n_excluded_rows": float(n_excluded),
    }
    notes = (vanilla_note(rel), excluded_note(n_excluded))
    if len(table) < 2 or not len(ocr):
        why = "OCR is absent" if len(table) >= 2 else "fewer than two dimensions have relative accuracy"
        return Finding(
            "task_sensitivity", None, with_note(f"Cannot say: {why}", *notes), "ocr_rank", numbers, table, details
        )
    first = table.iloc[0]
    holds = ocr_rank == 1
    ocr_text = f"relative accuracy {numbers['ocr_relative_accuracy']:.2f}, rank {ocr_rank:.0f} of {len(table)}"
    if holds:
        runner = table[table["dimension"] != OCR].iloc[0]
        sentence = (
            f"OCR is the most fragile ability: {ocr_text} dimensions "
            f"(next: {runner['dimension']} {runner['relative_accuracy']:.2f})"
        )
    else:
        sentence = (
            f"OCR is not the most fragile ability here: {ocr_text} dimensions; "
            f"{first['dimension']} drops most ({first['relative_accuracy']:.2f})"
        )
    return Finding("task_sensitivity", holds, with_note(sentence, *notes), "ocr_rank", numbers, table, details)
