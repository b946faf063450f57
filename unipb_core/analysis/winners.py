"""Finding 2: no single method wins everywhere (per-cell winners and rank concordance across datasets)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .finding import Finding
from .records import (
    ACCURACY_COLUMNS,
    VANILLA,
    cell_accuracy,
    excluded_note,
    seed_mean_accuracy,
    usable_records,
    with_note,
)
from .stats import kendall_w

_CELL = ["model", "dataset", "ratio"]
_TIE = 1e-12  # accuracies this close share the win


def _winners(acc: pd.DataFrame) -> pd.DataFrame:
    """Win credit per (cell, method); tied best methods split the cell's single win equally."""
    acc = acc.copy()
    best = acc.groupby(_CELL)["accuracy"].transform("max")
    acc["is_best"] = (best - acc["accuracy"]) <= _TIE
    acc["win"] = acc["is_best"] / acc.groupby(_CELL)["is_best"].transform("sum")
    return acc


def _concordance(acc: pd.DataFrame) -> pd.DataFrame:
    """Kendall's W per (model, ratio): datasets rate methods; methods missing from any dataset are left out."""
    rows = []
    for (model, ratio), group in acc.groupby(["model", "ratio"], sort=True):
        wide = group.pivot_table(index="dataset", columns="method", values="accuracy").dropna(axis=1)
        rows.append((model, ratio, wide.shape[0], wide.shape[1], kendall_w(wide.to_numpy())))
    return pd.DataFrame(rows, columns=["model", "ratio", "n_datasets", "n_methods", "kendall_w"])


def no_single_winner(df: pd.DataFrame, max_win_share: float = 0.5) -> Finding:
    """Which method is best in each (model, dataset, ratio) cell, and how consistently datasets rank methods.

    Vanilla is excluded, the random baselines compete. Seeds are averaged per cell; cells with fewer than two
    methods are no contest and are skipped. The rule is on winners, not on W: the study's claim is that no method
    is best everywhere, and W can stay high when the top two swap places.

    Parameters
    ----------
    df : DataFrame
        Tidy per-sample records.
    max_win_share : float
        The finding holds when no method wins more than this share of cells.

    Returns
    -------
    Finding
        Table: win credit per method. Details: ``winners`` (per cell), ``concordance`` (Kendall's W per
        (model, ratio), tie-corrected, datasets as raters).
    """
    recs, n_excluded = usable_records(df, ACCURACY_COLUMNS)
    acc = seed_mean_accuracy(cell_accuracy(recs))
    acc = acc[acc["method"] != VANILLA]
    acc = acc[acc.groupby(_CELL)["method"].transform("nunique") >= 2]
    scored = _winners(acc)
    n_cells = int(scored.groupby(_CELL).ngroups)
    table = (
        scored.groupby(["method", "category"])
        .agg(wins=("win", "sum"), cells_entered=("win", "size"))
        .reset_index()
        .assign(win_share=lambda t: t["wins"] / n_cells if n_cells else np.nan)
        .sort_values(["wins", "method"], ascending=[False, True], ignore_index=True)
    )
    winners = scored[scored["is_best"]][[*_CELL, "method", "accuracy", "win"]].reset_index(drop=True)
    concordance = _concordance(acc)
    mean_w = float(concordance["kendall_w"].mean()) if concordance["kendall_w"].notna().any() else float("nan")
    top_share = float(table["win_share"].iloc[0]) if n_cells else float("nan")
    numbers = {
        "top_win_share": top_share,
        "n_cells": float(n_cells),
        "n_methods": float(len(table)),
        "n_winning_methods": float((table["wins"] > 0).sum()),
        "mean_kendall_w": mean_w,
        "n_concordance_groups": float(concordance["kendall_w"].notna().sum()),
        "n_excluded_rows": float(n_excluded),
    }
    details = {"winners": winners, "concordance": concordance}
    if n_cells < 2:
        verdict = with_note(
            "Cannot say: fewer than two (model, dataset, ratio) cells with at least two methods",
            excluded_note(n_excluded),
        )
        return Finding("no_single_winner", None, verdict, "top_win_share", numbers, table, details)
    holds = top_share <= max_win_share
    top = table.iloc[0]
    w_text = (
        f"mean Kendall's W of method ranks across datasets {mean_w:.2f}" if np.isfinite(mean_w) else "W not computable"
    )
    wins = f"{top['wins']:.1f}".removesuffix(".0")  # ties share a cell's win, so credit can be fractional
    tops = f"{top['method']} tops {wins} of {n_cells} (model, dataset, ratio) cells ({100 * top_share:.0f} %"
    if holds:
        sentence = (
            f"No single winner: the most frequent winner, {tops}, limit {100 * max_win_share:.0f} %); "
            f"{numbers['n_winning_methods']:.0f} methods win at least one cell; {w_text}"
        )
    else:
        sentence = f"A single method dominates: {tops} > {100 * max_win_share:.0f} %); {w_text}"
    verdict = with_note(sentence, excluded_note(n_excluded))
    return Finding("no_single_winner", holds, verdict, "top_win_share", numbers, table, details)
