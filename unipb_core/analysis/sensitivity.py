"""Finding 3: which ability suffers most from pruning (relative score per dimension, per model and pooled)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..vocabulary import VANILLA
from .finding import POOLED, Finding, views_frame
from .records import excluded_note, prepare, relative_note, relative_scores, with_note

CLAIM = "3. OCR is the most fragile ability"
OCR = "ocr"  # the key used in unipb_core.data.dimensions.DIMENSIONS
_CONFIG = ["model", "dimension", "dataset", "method", "ratio"]
_TIE = 1e-9  # relative scores this close are a tie


def _dimension_table(datasets: pd.DataFrame) -> pd.DataFrame:
    """Dimension = unweighted mean of its datasets; rank 1 = lowest relative score = most fragile."""
    table = (
        datasets.groupby("dimension")
        .agg(relative_accuracy=("relative_accuracy", "mean"), n_datasets=("dataset", "nunique"))
        .reset_index()
    )
    table["drop"] = 1 - table["relative_accuracy"]
    table["rank"] = table["relative_accuracy"].rank(method="min").astype(int)
    return table.sort_values(["rank", "dimension"], ignore_index=True)


def _verdict(table: pd.DataFrame) -> dict:
    """holds = OCR ranks first; margin = next dimension's relative score minus OCR's (positive when OCR is lowest)."""
    if len(table) < 2:
        return {"holds": None, "value": np.nan, "margin": np.nan, "note": "fewer than two dimensions"}
    first = table.iloc[0]
    ocr = table[table["dimension"] == OCR]
    if ocr.empty:
        return {
            "holds": None,
            "value": np.nan,
            "margin": np.nan,
            "note": f"OCR absent; most fragile: {first['dimension']}",
        }
    others = table[table["dimension"] != OCR]
    margin = float(others["relative_accuracy"].min() - ocr["relative_accuracy"].iloc[0])
    rank = int(ocr["rank"].iloc[0])
    note = f"most fragile {first['dimension']} ({first['relative_accuracy']:.2f}), OCR rank {rank} of {len(table)}"
    if abs(margin) <= _TIE:
        note += f", tied with {others.iloc[0]['dimension']}"
    # a tie is not "the most fragile": the claim needs OCR strictly below every other dimension
    return {"holds": margin > _TIE, "value": float(rank), "margin": margin, "note": note}


def task_sensitivity(df: pd.DataFrame) -> Finding:
    """Relative score (pruned / unpruned) per ability dimension at the highest ratio, per model and pooled.

    Pruned cells include the random baselines: they are pruned configurations too. Seeds are averaged per
    (model, method, ratio, dataset); a dataset's value is the mean over methods; a dimension's value is the
    unweighted mean of its datasets, so a big dataset does not outweigh its sibling. The headline is at the
    highest ratio every model has (where pruning bites hardest); ``details["curve"]`` has every ratio.
    The pooled view averages models with equal weight and uses only datasets every model has, so a model that
    skipped a dataset cannot move a dimension.

    Parameters
    ----------
    df : DataFrame
        Per-sample records or cell-level results with a dimension (given, or known from the dataset key).

    Returns
    -------
    Finding
        Table: pooled dimensions at the headline ratio (rank 1 = most fragile). Views: per model and pooled.
        Details: ``per_model`` (dimension table per model), ``datasets`` (pooled, per dataset), ``curve``
        (per scope, dimension and ratio). ``holds`` is True when OCR is the pooled most fragile dimension; None
        without OCR or with fewer than two dimensions in the pooled view.
    """
    inputs = prepare(df)
    rel = relative_scores(inputs.cells)
    cells = rel.table.dropna(subset=["relative_score"]).rename(columns={"relative_score": "relative_accuracy"})
    no_dimension = sorted(cells.loc[cells["dimension"] == "", "dataset"].unique())
    cells = cells[cells["dimension"] != ""]
    configs = cells.groupby(_CONFIG)["relative_accuracy"].mean().reset_index()
    per_dataset = (
        configs.groupby(["model", "dimension", "dataset", "ratio"])
        .agg(relative_accuracy=("relative_accuracy", "mean"), n_methods=("method", "nunique"))
        .reset_index()
    )
    models = sorted(per_dataset["model"].unique())
    ratios = [set(per_dataset.loc[per_dataset["model"] == m, "ratio"]) for m in models]
    common_ratios = sorted(set.intersection(*ratios)) if ratios else []
    ratio = common_ratios[-1] if common_ratios else (max(per_dataset["ratio"]) if len(per_dataset) else np.nan)
    at_ratio = per_dataset[per_dataset["ratio"] == ratio]
    view = f"relative score at ratio {ratio:g}" if np.isfinite(ratio) else "relative score"
    rows, per_model = [], []
    for model in models:
        table = _dimension_table(at_ratio[at_ratio["model"] == model])
        per_model.append(table.assign(model=model))
        rows.append({"view": view, "scope": model, **_verdict(table)})
    dataset_sets = [set(at_ratio.loc[at_ratio["model"] == m, "dataset"]) for m in models]
    common = set.intersection(*dataset_sets) if dataset_sets else set()
    left_out = sorted(set.union(*dataset_sets) - common) if dataset_sets else []
    shared = at_ratio[at_ratio["dataset"].isin(common)]
    datasets = (
        shared.groupby(["dimension", "dataset"])
        .agg(relative_accuracy=("relative_accuracy", "mean"), n_models=("model", "nunique"))
        .reset_index()
    )
    datasets["rank"] = datasets["relative_accuracy"].rank(method="min").astype(int)
    datasets = datasets.sort_values(["rank", "dataset"], ignore_index=True)
    table = _dimension_table(datasets)
    rows.append({"view": view, "scope": POOLED, **_verdict(table)})
    views = views_frame(rows)
    curve = _curve(per_dataset, common)
    details = {
        "per_model": pd.concat(per_model, ignore_index=True) if per_model else table.assign(model=None)[:0],
        "datasets": datasets,
        "curve": curve,
        "by_ratio": curve[curve["scope"] == POOLED].drop(columns="scope").reset_index(drop=True),
    }
    ocr = table[table["dimension"] == OCR]
    numbers = {
        "ocr_rank": float(ocr["rank"].iloc[0]) if len(ocr) else float("nan"),
        "ocr_relative_accuracy": float(ocr["relative_accuracy"].iloc[0]) if len(ocr) else float("nan"),
        "headline_ratio": float(ratio),
        "n_dimensions": float(len(table)),
        "n_models": float(len(models)),
        "n_datasets_left_out": float(len(left_out)),
        "most_fragile_relative_accuracy": float(table["relative_accuracy"].iloc[0]) if len(table) else float("nan"),
        "n_missing_vanilla": float(len(rel.missing_vanilla)),
        "n_zero_vanilla": float(len(rel.zero_vanilla)),
        "n_excluded_rows": float(inputs.n_excluded),
    }
    pooled = rows[-1]
    n_cell = inputs.cells.loc[inputs.cells["method"] != VANILLA, "n"]
    size = f"median n = {n_cell.median():.0f} samples per cell" if n_cell.notna().any() else "sample counts unknown"
    evidence = f"{len(models)} model(s), {len(common)} dataset(s) in the pooled view, {size}"
    if left_out:
        evidence += f"; left out of the pooled view because not every model has them: {', '.join(left_out)}"
    if np.isfinite(pooled["margin"]):
        evidence += f"; OCR's gap to the nearest other dimension {pooled['margin']:+.2f} (no significance test)"
    undimensioned = f"no dimension known for dataset(s) {', '.join(no_dimension)}, excluded" if no_dimension else ""
    notes = (undimensioned, relative_note(rel), excluded_note(inputs.n_excluded))
    common_args = dict(name="task_sensitivity", key="ocr_rank", numbers=numbers, table=table, details=details,
                       claim=CLAIM, level=inputs.described, evidence=evidence, views=views)  # fmt: skip
    per = "; ".join(f"{r['scope']}: {r['note']}" for r in rows[:-1]) if len(models) > 1 else ""
    scope = (
        f"pooled over {len(models)} models and {len(common)} shared datasets"
        if len(models) > 1
        else models[0]
        if models
        else ""
    )
    if pooled["holds"] is None:
        why = "fewer than two dimensions have a relative score" if len(table) < 2 else "OCR is absent"
        ocr_sets = set(per_dataset.loc[per_dataset["dimension"] == OCR, "dataset"])
        if ocr_sets and len(table) >= 2:
            why = (
                f"OCR is not in every model's datasets ({', '.join(sorted(ocr_sets))} left out of the pooled view; "
                "a model whose unpruned score is 0 has no relative score there)"
            )
        where = ", ".join(w for w in (view if np.isfinite(ratio) else "", scope) if w)
        sentence = f"Cannot say: {why}" + (f" ({where})" if where else "")
        if per:
            sentence += f"; per model: {per}"
        return Finding(holds=None, verdict=with_note(sentence, *notes), **common_args)
    first = table.iloc[0]
    head = "OCR is the most fragile ability" if pooled["holds"] else "OCR is not the most fragile ability here"
    sentence = (
        f"{head}: at ratio {ratio:g} ({scope}) {first['dimension']} drops most "
        f"(relative score {first['relative_accuracy']:.2f}); OCR {numbers['ocr_relative_accuracy']:.2f}, "
        f"rank {numbers['ocr_rank']:.0f} of {len(table)}"
    )
    if abs(pooled["margin"]) <= _TIE:
        sentence += f", tied with {table[table['dimension'] != OCR].iloc[0]['dimension']}"
    if per:
        sentence += f"; per model: {per}"
    return Finding(holds=bool(pooled["holds"]), verdict=with_note(sentence, *notes), **common_args)


def _curve(per_dataset: pd.DataFrame, common: set) -> pd.DataFrame:
    """Relative score per (scope, dimension, ratio): per model over its datasets, pooled over the shared ones."""
    per_model = per_dataset.groupby(["model", "dimension", "ratio"])["relative_accuracy"].mean().reset_index()
    pooled = (
        per_dataset[per_dataset["dataset"].isin(common)]
        .groupby(["dimension", "dataset", "ratio"])["relative_accuracy"]
        .mean()
        .groupby(["dimension", "ratio"])
        .mean()
        .reset_index()
        .assign(model=POOLED)
    )
    return pd.concat([per_model, pooled], ignore_index=True).rename(columns={"model": "scope"})
