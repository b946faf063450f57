"""Descriptive companions: accuracy vs latency Pareto fronts, and agreement with the unpruned answers."""

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
from .stats import pareto_mask

_CONFIG = ["model", "method", "category", "ratio"]


def pareto_front(df: pd.DataFrame, latency: str = "t_prefill") -> Finding:
    """Accuracy vs median measured latency per (model, method, ratio), with each model's Pareto front.

    Accuracy is the unweighted mean over datasets of seed-averaged cell accuracy (a big dataset does not
    dominate); latency is the median over all its samples (robust to stragglers and warm-up spikes). Vanilla is
    included as the reference point. ``holds`` is None: this is descriptive, not one of the four claims.

    Parameters
    ----------
    df : DataFrame
        Tidy per-sample records.
    latency : str
        Timing column to minimise (``t_prefill``, ``t_llm_prefill``, ``t_total``, ...).
    """
    if isinstance(df, pd.DataFrame) and latency not in df.columns:
        table = pd.DataFrame(columns=[*_CONFIG, "accuracy", "n_datasets", "latency", "speedup", "on_front"])
        verdict = f"Cannot say: the results have no {latency!r} column (cell-level tables usually carry no timings)."
        return Finding("pareto_front", None, verdict, "n_on_front", {"n_on_front": float("nan")}, table)
    recs, n_excluded = usable_records(df, [*ACCURACY_COLUMNS, latency])
    acc = seed_mean_accuracy(cell_accuracy(recs))
    points = acc.groupby(_CONFIG).agg(accuracy=("accuracy", "mean"), n_datasets=("dataset", "nunique"))
    points["latency"] = recs.groupby(_CONFIG)[latency].median()
    points = points.reset_index()
    vanilla = points[points["method"] == VANILLA].groupby("model")[["accuracy", "latency"]].mean()
    # astype(float): mapping an empty str column keeps the str dtype, which cannot be divided
    points["speedup"] = points["model"].map(vanilla["latency"]).astype(float) / points["latency"]
    points["accuracy_vs_vanilla"] = points["accuracy"] / points["model"].map(vanilla["accuracy"]).astype(float)
    points["on_front"] = False
    for _, idx in points.groupby("model").groups.items():
        points.loc[idx, "on_front"] = pareto_mask(points.loc[idx, "accuracy"], points.loc[idx, "latency"])
    front = points[points["on_front"] & (points["method"] != VANILLA)]
    fastest = front.sort_values("speedup", ascending=False).head(1)
    numbers = {
        "n_on_front": float(points["on_front"].sum()),
        "n_points": float(len(points)),
        "max_speedup_on_front": float(fastest["speedup"].iloc[0]) if len(fastest) else np.nan,
        "n_models": float(points["model"].nunique()),
        "n_excluded_rows": float(n_excluded),
    }
    if points.empty:
        verdict = with_note("Cannot say: no (model, method, ratio) has a scored sample", excluded_note(n_excluded))
        return Finding("pareto_front", None, verdict, "n_on_front", numbers, points)
    sentence = (
        f"{numbers['n_on_front']:.0f} of {len(points)} (model, method, ratio) points lie on their model's "
        f"accuracy vs median {latency} Pareto front"
    )
    if len(fastest) and np.isfinite(numbers["max_speedup_on_front"]):
        f = fastest.iloc[0]
        sentence += (
            f"; the fastest pruned front point ({f['method']} at ratio {f['ratio']:g} on {f['model']}) runs "
            f"{f['speedup']:.2f}x faster than vanilla at {100 * f['accuracy_vs_vanilla']:.0f} % of its "
            "accuracy"
        )
    verdict = with_note(sentence, excluded_note(n_excluded))
    return Finding("pareto_front", None, verdict, "n_on_front", numbers, points)


def normalise_prediction(predictions: pd.Series) -> pd.Series:
    """Stripped, lower-cased text; a missing prediction becomes the empty string."""
    return predictions.where(predictions.notna(), "").astype(str).str.strip().str.lower()


def agreement_with_unpruned(df: pd.DataFrame) -> Finding:
    """Share of samples where the pruned model answers exactly as the unpruned one, per (model, method, ratio).

    Answers are compared after ``normalise_prediction``; the share is pooled over datasets per seed, then averaged
    over seeds. Vanilla is deterministic; if it has several seeds the lowest seed's answer is the reference.
    Samples without a vanilla answer are left out and counted. ``holds`` is None (descriptive).
    """
    columns = ["model", "method", "category", "ratio", "seed", "dataset", "sample_id", "prediction"]
    if isinstance(df, pd.DataFrame) and not {"sample_id", "prediction"} <= set(df.columns):
        table = pd.DataFrame(columns=[*_CONFIG, "agreement", "n_seeds", "n_samples"])
        verdict = "Cannot say: agreement needs per-sample predictions (sample_id and prediction columns)."
        return Finding(
            "agreement_with_unpruned", None, verdict, "mean_agreement", {"mean_agreement": float("nan")}, table
        )
    recs, n_excluded = usable_records(df, columns, scored=False)
    recs["answer"] = normalise_prediction(recs["prediction"])
    sample = ["model", "dataset", "sample_id"]
    is_vanilla = recs["method"] == VANILLA
    reference = (
        recs[is_vanilla]
        .sort_values("seed")
        .drop_duplicates(sample)[[*sample, "answer"]]
        .rename(columns={"answer": "reference"})
    )
    pruned = recs[~is_vanilla].merge(reference, on=sample, how="left")
    has_reference = pruned["reference"].notna()
    pruned = pruned[has_reference].assign(agree=lambda t: t["answer"] == t["reference"])
    per_seed = pruned.groupby([*_CONFIG, "seed"]).agg(agree=("agree", "mean"), n=("agree", "size")).reset_index()
    table = (
        per_seed.groupby(_CONFIG)
        .agg(agreement=("agree", "mean"), n_seeds=("seed", "nunique"), n_samples=("n", "max"))
        .reset_index()
    )
    n_missing = int((~has_reference).sum())
    numbers = {
        "mean_agreement": float(table["agreement"].mean()) if len(table) else np.nan,
        "min_agreement": float(table["agreement"].min()) if len(table) else np.nan,
        "n_configs": float(len(table)),
        "n_rows_without_vanilla": float(n_missing),
        "n_excluded_rows": float(n_excluded),
    }
    missing_note = f"{n_missing} pruned row(s) without a vanilla answer left out" if n_missing else ""
    if not len(table):
        verdict = with_note(
            "Cannot say: no pruned sample has a vanilla answer to compare", missing_note, excluded_note(n_excluded)
        )
        return Finding("agreement_with_unpruned", None, verdict, "mean_agreement", numbers, table)
    low = table.loc[table["agreement"].idxmin()]
    sentence = (
        f"Pruned models repeat the unpruned answer on {100 * numbers['mean_agreement']:.0f} % of samples on "
        f"average over {len(table)} (model, method, ratio) configurations; lowest {low['method']} at ratio "
        f"{low['ratio']:g} on {low['model']} ({100 * low['agreement']:.0f} %)"
    )
    verdict = with_note(sentence, missing_note, excluded_note(n_excluded))
    return Finding("agreement_with_unpruned", None, verdict, "mean_agreement", numbers, table)
