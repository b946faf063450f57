"""The report's first table: one row per finding with its verdict and headline number."""

from __future__ import annotations

import pandas as pd

from .random_baseline import random_baseline_strength
from .sensitivity import task_sensitivity
from .variance import ratio_dominance
from .winners import no_single_winner


def findings_table(
    df: pd.DataFrame, alpha: float = 0.05, n_boot: int = 1000, seed: int = 0, max_win_share: float = 0.5
) -> pd.DataFrame:
    """Compute the study's four findings and tabulate them.

    Parameters
    ----------
    df : DataFrame
        Tidy per-sample records.
    alpha, n_boot, seed : see ``random_baseline_strength``.
    max_win_share : see ``no_single_winner``.

    Returns
    -------
    DataFrame
        Columns ``finding``, ``holds`` (True / False / None), ``verdict``, ``key``, ``value``.
    """
    findings = [
        random_baseline_strength(df, alpha=alpha, n_boot=n_boot, seed=seed),
        no_single_winner(df, max_win_share=max_win_share),
        task_sensitivity(df),
        ratio_dominance(df),
    ]
    rows = [(f.name, f.holds, f.verdict, f.key, f.value) for f in findings]
    table = pd.DataFrame(rows, columns=["finding", "holds", "verdict", "key", "value"])
    table["holds"] = table["holds"].astype(object)  # keep None distinct from False
    return table
