"""Finding 2: no single method wins everywhere (per-cell winners per model and pooled, rank concordance)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

from .finding import POOLED, Finding, views_frame
from .naming import VANILLA
from .records import Inputs, chance_note, excluded_note, prepare, relative_scores, with_note
from .stats import kendall_w

CLAIM = "2. No method wins everywhere"
_CELL = ["model", "dataset", "ratio"]
_TIE = 1e-12  # scores this close share the win
VIEW = "winners per (dataset, ratio) cell"


def _winners(acc: pd.DataFrame) -> pd.DataFrame:
    """Win credit per (cell, method); tied best methods split the cell's single win equally."""
    acc = acc.copy()
    best = acc.groupby(_CELL)["score"].transform("max")
    acc["is_best"] = (best - acc["score"]) <= _TIE
    acc["win"] = acc["is_best"] / acc.groupby(_CELL)["is_best"].transform("sum")
    return acc


def _concordance(acc: pd.DataFrame) -> pd.DataFrame:
    """Kendall's W per (model, ratio): datasets rate methods; methods missing from any dataset are left out."""
    rows = []
    for (model, ratio), group in acc.groupby(["model", "ratio"], sort=True):
        wide = group.pivot_table(index="dataset", columns="method", values="score").dropna(axis=1)
        rows.append((model, ratio, wide.shape[0], wide.shape[1], kendall_w(wide.to_numpy())))
    return pd.DataFrame(rows, columns=["model", "ratio", "n_datasets", "n_methods", "kendall_w"])


def _leads(scored: pd.DataFrame) -> pd.DataFrame:
    """Per cell: the winner's lead over the runner-up and whether it exceeds sampling noise (needs n)."""
    rows = []
    for key, cell in scored.groupby(_CELL, sort=True):
        ordered = cell.sort_values("score", ascending=False)
        top, second = ordered.iloc[0], ordered.iloc[1]
        lead = float(top["score"] - second["score"])
        n = float(np.nanmin([top["n"], second["n"]])) if np.isfinite([top["n"], second["n"]]).any() else np.nan
        # two-sided 95 % noise band of a difference of two scores in [0, 1] at this n (variance bound p (1 - p))
        p = (top["score"] + second["score"]) / 2
        noise = norm.ppf(0.975) * np.sqrt(2 * p * (1 - p) / n) if np.isfinite(n) and n > 0 else np.nan
        rows.append((*key, top["method"], second["method"], lead, noise))
    columns = [*_CELL, "winner", "runner_up", "lead", "noise_band"]
    return pd.DataFrame(rows, columns=columns)


def _tally(scored: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    n_cells = int(scored.groupby(_CELL).ngroups)
    table = (
        scored.groupby(["method", "category"])
        .agg(wins=("win", "sum"), cells_entered=("win", "size"))
        .reset_index()
        .assign(win_share=lambda t: t["wins"] / n_cells if n_cells else np.nan)
        .sort_values(["wins", "method"], ascending=[False, True], ignore_index=True)
    )
    return table, n_cells


def _scope(scored: pd.DataFrame, max_win_share: float) -> dict:
    """Verdict of one scope: holds when the most frequent winner's share is at most ``max_win_share``.

    The margin is in cells: how many cells the top method could win (positive) or lose (negative) before the
    verdict flips; within one cell of the limit the verdict is borderline.
    """
    table, n_cells = _tally(scored)
    if n_cells < 2:
        return {"holds": None, "value": np.nan, "margin": np.nan, "note": f"{n_cells} contested cell(s): too few"}
    top = table.iloc[0]
    share = float(top["win_share"])
    margin_cells = max_win_share * n_cells - float(top["wins"])
    border = ", borderline: within one cell of the limit" if abs(margin_cells) <= 1 else ""
    wins = f"{top['wins']:.1f}".removesuffix(".0")  # ties share a cell's win, so credit can be fractional
    limit = f"limit {100 * max_win_share:.0f} %"
    note = (
        f"{top['method']} tops {wins} of {n_cells} cells ({100 * share:.0f} %, {limit}; "
        f"margin {margin_cells:+.1f} cells{border})"
    )
    return {"holds": share <= max_win_share, "value": share, "margin": max_win_share - share, "note": note}


def no_single_winner(df: pd.DataFrame, max_win_share: float = 0.5) -> Finding:
    """Which method is best in each (model, dataset, ratio) cell, per model and pooled over models.

    Vanilla is excluded, the random baselines compete. Seeds are averaged per cell; cells with fewer than two
    methods are no contest and are skipped. The rule is on winners, not on W: the study's claim is that no method
    is best everywhere, and W can stay high when the top two swap places.

    Parameters
    ----------
    df : DataFrame
        Per-sample records or cell-level results (the same computation: it needs only cell scores).
    max_win_share : float
        The finding holds when no method wins more than this share of cells.

    Returns
    -------
    Finding
        Table: pooled win credit per method. Views: the verdict per model and pooled, with the margin to the
        limit. Details: ``winners`` (per cell), ``leads`` (winner's lead over the runner-up and the 95 % noise
        band where n is known), ``concordance`` (Kendall's W per (model, ratio)), ``per_model`` (win credit).
    """
    if not 0 < max_win_share < 1:
        raise ValueError(f"max_win_share must be in (0, 1), got {max_win_share}")
    inputs = prepare(df)
    keys = ["model", "method", "category", "ratio", "dataset"]
    acc = inputs.cells.groupby(keys, sort=True).agg(score=("score", "mean"), n=("n", "mean")).reset_index()
    acc = acc[acc["method"] != VANILLA]
    acc = acc[acc.groupby(_CELL)["method"].transform("nunique") >= 2]
    scored = _winners(acc)
    models = sorted(scored["model"].unique())
    view_rows = [{"view": VIEW, "scope": m, **_scope(scored[scored["model"] == m], max_win_share)} for m in models]
    view_rows.append({"view": VIEW, "scope": POOLED, **_scope(scored, max_win_share)})
    views = views_frame(view_rows)
    table, n_cells = _tally(scored)
    per_model = pd.concat([_tally(scored[scored["model"] == m])[0].assign(model=m) for m in models] or [table[:0]])
    leads = _leads(scored) if n_cells else pd.DataFrame(columns=[*_CELL, "winner", "runner_up", "lead", "noise_band"])
    winners = scored[scored["is_best"]][[*_CELL, "method", "score", "win"]].reset_index(drop=True)
    concordance = _concordance(acc)
    return _finding(table, views, inputs, n_cells, max_win_share, leads, winners, concordance, per_model)


def _finding(table, views, inputs: Inputs, n_cells, max_win_share, leads, winners, concordance, per_model) -> Finding:
    mean_w = float(concordance["kendall_w"].mean()) if concordance["kendall_w"].notna().any() else float("nan")
    pooled = views[views["scope"] == POOLED].iloc[0]
    n_noisy = int((leads["lead"] <= leads["noise_band"]).sum())
    n_known = int(leads["noise_band"].notna().sum())
    numbers = {
        "top_win_share": float(pooled["value"]),
        "margin": float(pooled["margin"]),
        "n_cells": float(n_cells),
        "n_methods": float(len(table)),
        "n_winning_methods": float((table["wins"] > 0).sum()),
        "mean_kendall_w": mean_w,
        "n_leads_within_noise": float(n_noisy) if n_known else float("nan"),
        "n_excluded_rows": float(inputs.n_excluded),
    }
    details = {"winners": winners, "leads": leads, "concordance": concordance, "per_model": per_model}
    if n_known:
        evidence = (
            f"{n_cells} contested cells; in {n_noisy} of {n_known} the winner leads the runner-up by no more than "
            "the 95 % noise band of two scores at that n, so which method wins there is chance"
        )
    else:
        evidence = f"{n_cells} contested cells; no sample counts, so whether leads exceed noise is unknown"
    rel = relative_scores(inputs.cells)
    notes = (chance_note(rel), excluded_note(inputs.n_excluded))
    common = dict(name="no_single_winner", key="top_win_share", numbers=numbers, table=table, details=details,
                  claim=CLAIM, level=inputs.described, evidence=evidence, views=views)  # fmt: skip
    holds = pooled["holds"]
    if holds is None:
        sentence = "Cannot say: fewer than two (model, dataset, ratio) cells with at least two methods"
        return Finding(holds=None, verdict=with_note(sentence, *notes), **common)
    w_text = f"mean Kendall's W across datasets {mean_w:.2f}" if np.isfinite(mean_w) else "W not computable"
    per = "; ".join(
        f"{r.scope}: {'holds' if r.holds else 'does not hold'}" for r in views[views["scope"] != POOLED].itertuples()
    )
    head = "No single winner" if holds else "A single method dominates"
    head = f"{head} (pooled): {pooled['note']}"
    sentence = f"{head}; per model: {per}; {w_text}"
    return Finding(holds=bool(holds), verdict=with_note(sentence, *notes), **common)
