"""Finding 4: the pruning ratio matters more than the method (eta-squared from a main-effects ANOVA)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from statsmodels.stats.anova import anova_lm

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

FACTORS = ("ratio", "method", "model", "dataset")
_Y = "relative_accuracy"
_EXACT = 1e-12  # residual SS below this share of the total SS counts as an exact fit


def _formula(factors: list[str]) -> str:
    return f"{_Y} ~ " + (" + ".join(f"C({f})" for f in factors) if factors else "1")


def type2_sum_squares(data: pd.DataFrame, factors: list[str]) -> tuple[dict[str, float], float, float]:
    """Type-II sum of squares per factor of the main-effects model, plus residual SS and residual df.

    ``anova_lm(typ=2)`` backs each SS out of its F statistic times the residual variance: that is 0/0 when the
    model fits exactly (e.g. accuracy that depends on the ratio alone) and an error when no residual df is left.
    For a main-effects model the type-II SS of a factor equals the rise in residual SS when that factor is
    dropped, so in those two cases that identical quantity is computed from the reduced fits instead.
    """
    fit = smf.ols(_formula(factors), data=data).fit()
    if fit.df_resid >= 1 and fit.ssr > _EXACT * fit.centered_tss:
        table = anova_lm(fit, typ=2)
        ss = {f: float(table.loc[f"C({f})", "sum_sq"]) for f in factors}
    else:
        reduced = {f: smf.ols(_formula([g for g in factors if g != f]), data=data).fit().ssr for f in factors}
        ss = {f: max(float(reduced[f] - fit.ssr), 0.0) for f in factors}
    return ss, float(fit.ssr), float(fit.df_resid)


def ratio_dominance(df: pd.DataFrame) -> Finding:
    """Share of the variance in relative accuracy explained by ratio, method, model and dataset.

    One observation per pruned (model, method, ratio, seed, dataset) cell (random baselines included).
    Factors are categorical main effects; a factor with a single level cannot explain anything and is dropped
    (and named). eta^2 = SS_factor / SS_total with type-II SS, so on an unbalanced grid the shares need not sum
    to 1.

    Parameters
    ----------
    df : DataFrame
        Tidy per-sample records.

    Returns
    -------
    Finding
        Table: one row per factor plus ``Residual``. ``holds`` is True when ratio has the largest eta^2; None
        when ratio has a single level, fewer than two factors vary, or relative accuracy does not vary.
    """
    recs, n_excluded = usable_records(df, ACCURACY_COLUMNS)
    rel = relative_accuracy(recs)
    data = rel.table.dropna(subset=[_Y])[[*FACTORS, _Y]].reset_index(drop=True)
    levels = {f: int(data[f].nunique()) for f in FACTORS}
    used = [f for f in FACTORS if levels[f] > 1]
    dropped = [f for f in FACTORS if f not in used]
    ss_total = float(((data[_Y] - data[_Y].mean()) ** 2).sum()) if len(data) else 0.0
    rows = []
    if used and ss_total > 0:
        ss, ss_resid, df_resid = type2_sum_squares(data, used)
        rows = sorted(((f, levels[f], levels[f] - 1, ss[f], ss[f] / ss_total, "") for f in used), key=lambda r: -r[4])
        rows.append(("Residual", np.nan, df_resid, ss_resid, ss_resid / ss_total, ""))
    rows += [(f, levels[f], np.nan, np.nan, np.nan, "dropped: single level") for f in dropped]
    table = pd.DataFrame(rows, columns=["factor", "n_levels", "df", "sum_sq", "eta_sq", "note"])
    return _finding(table, used, dropped, len(data), ss_total, rel, n_excluded)


def _why_undecided(n: int, used: list[str], ss_total: float) -> str:
    """Why the records cannot say whether the ratio dominates, or "" when they can."""
    if n == 0:
        return "no pruned cell has a relative accuracy"
    if "ratio" not in used:
        return "the ratio has a single level"
    if len(used) < 2:
        return "only the ratio varies"
    return "relative accuracy does not vary" if ss_total <= 0 else ""


def _finding(
    table: pd.DataFrame,
    used: list[str],
    dropped: list[str],
    n: int,
    ss_total: float,
    rel: RelativeAccuracy,
    n_excluded: int,
) -> Finding:
    eta = dict(zip(table["factor"], table["eta_sq"], strict=True))
    numbers = {f"eta_sq_{f}": float(eta.get(f, np.nan)) for f in FACTORS}
    numbers |= {"eta_sq_residual": float(eta.get("Residual", np.nan)), "n_cells": float(n)}
    numbers["n_excluded_rows"] = float(n_excluded)
    notes = [vanilla_note(rel), excluded_note(n_excluded)]
    if dropped and n:
        notes.insert(0, f"dropped, single level: {', '.join(dropped)}")
    why = _why_undecided(n, used, ss_total)
    if why:
        return Finding("ratio_dominance", None, with_note(f"Cannot say: {why}", *notes), "eta_sq_ratio", numbers, table)
    ranked = table[table["factor"].isin(used)]
    holds = bool(numbers["eta_sq_ratio"] >= ranked["eta_sq"].max())
    shares = ", ".join(f"{f} {100 * e:.0f} %" for f, e in zip(ranked["factor"], ranked["eta_sq"], strict=True))
    head = "The ratio dominates" if holds else f"The ratio does not dominate; {ranked['factor'].iloc[0]} does"
    sentence = f"{head}: eta-squared of relative accuracy over {n} cells (type-II ANOVA): {shares}"
    return Finding("ratio_dominance", holds, with_note(sentence, *notes), "eta_sq_ratio", numbers, table)
