"""Finding 4: the pruning ratio matters more than the method (eta-squared from main-effects ANOVAs, two views).

View (a), the study's framing: one relative score per (model, method, ratio), averaged over datasets and seeds,
with factors ratio and method. View (b): one relative score per (model, method, ratio, seed, dataset), with
dataset and model as further factors. The claim is tested as eta-squared of ratio against method in each view.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from statsmodels.stats.anova import anova_lm

from .finding import POOLED, Finding, views_frame
from .records import excluded_note, prepare, relative_note, relative_scores, with_note

CLAIM = "4. The pruning ratio matters more than the method"
FACTORS = ("ratio", "method", "model", "dataset")
VIEW_A = "(a) dataset-averaged (ratio, method)"
VIEW_B = "(b) per dataset (ratio, method, model, dataset)"
OUTLIER_MADS = 3.0  # a method whose mean relative score is farther than this many MADs from the median is an outlier
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


def eta_squared(data: pd.DataFrame, factors: list[str]) -> tuple[pd.DataFrame, str]:
    """eta-squared per factor (type-II SS / total SS) plus the residual, and why it cannot be read ("" if it can).

    A factor with a single level cannot explain anything: it is dropped and listed with a note.
    """
    levels = {f: int(data[f].nunique()) for f in factors}
    used = [f for f in factors if levels[f] > 1]
    ss_total = float(((data[_Y] - data[_Y].mean()) ** 2).sum()) if len(data) else 0.0
    rows = []
    if used and ss_total > 0:
        ss, ss_resid, df_resid = type2_sum_squares(data, used)
        rows = sorted(((f, levels[f], levels[f] - 1, ss[f], ss[f] / ss_total, "") for f in used), key=lambda r: -r[4])
        rows.append(("Residual", np.nan, df_resid, ss_resid, ss_resid / ss_total, ""))
    rows += [(f, levels[f], np.nan, np.nan, np.nan, "dropped: single level") for f in factors if f not in used]
    table = pd.DataFrame(rows, columns=["factor", "n_levels", "df", "sum_sq", "eta_sq", "note"])
    if len(data) == 0:
        why = "no pruned cell has a relative score"
    elif "ratio" not in used or "method" not in used:
        why = "the " + " and the ".join(f for f in ("ratio", "method") if f not in used) + " has a single level"
    else:
        why = "relative score does not vary" if ss_total <= 0 else ""
    return table, why


def _test(data: pd.DataFrame, factors: list[str], view: str, scope: str) -> tuple[dict, pd.DataFrame]:
    """One view's verdict: holds when eta-squared of the ratio exceeds that of the method."""
    table, why = eta_squared(data, factors)
    table = table.assign(view=view, scope=scope)
    if why:
        return {"view": view, "scope": scope, "holds": None, "value": np.nan, "margin": np.nan, "note": why}, table
    eta = dict(zip(table["factor"], table["eta_sq"], strict=True))
    shares = ", ".join(f"{f} {100 * e:.0f} %" for f, e in zip(table["factor"], table["eta_sq"], strict=True))
    margin = float(eta["ratio"] - eta["method"])
    row = {"view": view, "scope": scope, "holds": margin > 0, "value": float(eta["ratio"]), "margin": margin}
    return row | {"note": f"{len(data)} observations; eta-squared {shares}"}, table


def _averaged(cells: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """View (a) data: per (model, method, ratio), the mean over the model's shared datasets of seed-mean scores.

    Only datasets every (method, ratio) of the model has are averaged, so no method is averaged over an easier
    set; the others are returned as "model/dataset" labels. A model with no dataset shared by all its
    configurations is averaged over what each has (and listed with "*").
    """
    seeds = cells.groupby(["model", "method", "ratio", "dataset"])[_Y].mean().reset_index()
    parts, left_out = [], []
    for model, sub in seeds.groupby("model", sort=True):
        configs = sub.groupby(["method", "ratio"]).ngroups
        counts = sub.groupby("dataset")[["method", "ratio"]].apply(lambda t: len(t.drop_duplicates()))
        shared = counts[counts == configs].index
        if len(shared) == 0:
            shared, left_out = counts.index, [*left_out, f"{model}/* (no dataset shared by all its methods)"]
        left_out += [f"{model}/{d}" for d in counts.index if d not in shared]
        parts.append(sub[sub["dataset"].isin(shared)].groupby(["model", "method", "ratio"])[_Y].mean().reset_index())
    empty = pd.DataFrame(columns=["model", "method", "ratio", _Y])
    return (pd.concat(parts, ignore_index=True) if parts else empty), left_out


def outlier_methods(averaged: pd.DataFrame) -> tuple[list[str], pd.DataFrame]:
    """Methods whose mean relative score lies more than ``OUTLIER_MADS`` MADs from the median method.

    MAD is the median absolute deviation from the median method (unscaled). When more than half the methods tie
    at the median the MAD is 0 and would flag any difference; the mean absolute deviation stands in then.
    """
    means = averaged.groupby("method")[_Y].mean()
    if len(means) < 3:
        return [], pd.DataFrame({"method": means.index, "mean_relative": means.values, "outlier": False})
    deviation = (means - means.median()).abs()
    spread = float(deviation.median()) or float(deviation.mean())
    flagged = deviation > OUTLIER_MADS * spread if spread > 0 else deviation > np.inf
    in_mads = deviation / spread if spread > 0 else deviation * 0.0
    table = pd.DataFrame({"method": means.index, "mean_relative": means.values, "deviation_in_mads": in_mads.values,
                          "outlier": flagged.values})  # fmt: skip
    return sorted(means.index[flagged]), table


def ratio_dominance(df: pd.DataFrame) -> Finding:
    """Share of the variance in relative score explained by ratio and by method, in two views.

    (a) dataset-averaged relative scores per (model, method, ratio), factors ratio and method (the study's
    framing); (b) per-dataset relative scores per (model, method, ratio, seed, dataset), factors ratio, method,
    model and dataset. Each is computed per model and pooled; random baselines are included as methods.
    eta^2 = SS_factor / SS_total with type-II SS, so on an unbalanced grid the shares need not sum to 1.
    A robustness line refits both pooled views without outlier methods (``outlier_methods``).

    Parameters
    ----------
    df : DataFrame
        Per-sample records or cell-level results.

    Returns
    -------
    Finding
        Table: the eta-squared table of view (a), pooled. ``holds``: view (a) pooled, True when eta^2(ratio) >
        eta^2(method); None when the ratio or the method has a single level or relative scores do not vary.
        Views: both views, per model and pooled, plus the two robustness rows. Details: ``per_dataset`` (the
        eta table of view (b), pooled), ``eta`` (every eta table, with view and scope), ``outliers``.
    """
    inputs = prepare(df)
    rel = relative_scores(inputs.cells)
    cells = rel.table.rename(columns={"relative_score": _Y}).dropna(subset=[_Y]).reset_index(drop=True)
    averaged, left_out = _averaged(cells)
    models = sorted(cells["model"].unique())
    rows, tables = [], []
    for view, data, factors in ((VIEW_A, averaged, ["ratio", "method"]), (VIEW_B, cells, list(FACTORS))):
        for scope in [*models, POOLED] if len(models) > 1 else [POOLED]:
            sub = data if scope == POOLED else data[data["model"] == scope]
            row, table = _test(sub, [f for f in factors if scope == POOLED or f != "model"], view, scope)
            rows.append(row)
            tables.append(table)
    outliers, outlier_table = outlier_methods(averaged)
    if outliers:
        for view, data, factors in ((VIEW_A, averaged, ["ratio", "method"]), (VIEW_B, cells, list(FACTORS))):
            row, table = _test(data[~data["method"].isin(outliers)], factors, f"{view}, without outliers", POOLED)
            rows.append(row)
            tables.append(table)
    views = views_frame(rows)
    eta = pd.concat(tables, ignore_index=True)
    pooled = eta[eta["scope"] == POOLED]
    table = pooled[pooled["view"] == VIEW_A].drop(columns=["view", "scope"]).reset_index(drop=True)
    per_dataset = pooled[pooled["view"] == VIEW_B].drop(columns=["view", "scope"]).reset_index(drop=True)
    details = {"per_dataset": per_dataset, "eta": eta, "outliers": outlier_table}
    return _finding(table, per_dataset, views, details, outliers, len(averaged), len(cells), inputs, rel, left_out)


def _finding(table, per_dataset, views, details, outliers, n_a, n_b, inputs, rel, left_out) -> Finding:
    def eta_of(t: pd.DataFrame, factor: str) -> float:
        hit = t.loc[t["factor"] == factor, "eta_sq"]
        return float(hit.iloc[0]) if len(hit) else float("nan")

    numbers = {f"eta_sq_{f}": eta_of(table, f) for f in ("ratio", "method")}
    numbers |= {f"eta_sq_{f}_per_dataset": eta_of(per_dataset, f) for f in FACTORS}
    numbers |= {"eta_sq_residual": eta_of(table, "Residual"), "n_cells": float(n_b), "n_averaged": float(n_a)}
    numbers |= {"n_outlier_methods": float(len(outliers)), "n_excluded_rows": float(inputs.n_excluded)}
    pooled = views[views["scope"] == POOLED].set_index("view")
    a, b = pooled.loc[VIEW_A], pooled.loc[VIEW_B]
    n_cell = inputs.cells["n"]
    size = f"median n = {n_cell.median():.0f} samples per cell" if n_cell.notna().any() else "sample counts unknown"
    evidence = (
        f"view (a) {n_a} dataset-averaged observations, view (b) {n_b} per-dataset cells; {size}; eta-squared "
        "describes these cells, with no test of whether the gap between ratio and method is beyond chance"
    )
    if left_out:
        evidence += f"; left out of view (a) as not every method of the model has them: {', '.join(left_out)}"
    notes = (relative_note(rel), excluded_note(inputs.n_excluded))
    common = dict(name="ratio_dominance", key="eta_sq_ratio", numbers=numbers, table=table, details=details,
                  claim=CLAIM, level=inputs.described, evidence=evidence, views=views)  # fmt: skip
    if a["holds"] is None:
        sentence = f"Cannot say in view {VIEW_A}: {a['note']}"
        if b["holds"] is not None:
            sentence += f"; view {VIEW_B}: {'ratio' if b['holds'] else 'method'} explains more ({b['note']})"
        return Finding(holds=None, verdict=with_note(sentence, *notes), **common)

    def said(row: pd.Series) -> str:
        if row["holds"] is None:
            return f"cannot say ({row['note']})"
        return f"{'ratio' if row['holds'] else 'method'} explains more ({row['note']})"

    head = (
        "The ratio matters more than the method"
        if a["holds"]
        else "The method matters as much as or more than the ratio"
    )
    sentence = f"{head} in view {VIEW_A}: {a['note']}; view {VIEW_B}: {said(b)}"
    if b["holds"] is not None and b["holds"] != a["holds"]:
        sentence += "; the two views disagree"
    per = views[(views["scope"] != POOLED) & (views["view"] == VIEW_A)]
    if len(per):
        sentence += "; per model (a): " + ", ".join(
            f"{r.scope} {'holds' if r.holds else 'does not hold' if r.holds is False else 'undecided'}"
            for r in per.itertuples()
        )
    if outliers:
        robust = pooled.loc[f"{VIEW_A}, without outliers"]
        sentence += f"; without outlier method(s) {', '.join(outliers)}: view (a) {said(robust)}"
    else:
        sentence += f"; no outlier methods (> {OUTLIER_MADS:g} MAD from the median method)"
    return Finding(holds=bool(a["holds"]), verdict=with_note(sentence, *notes), **common)
