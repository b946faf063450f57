"""Schema checks, the two input levels, and the shared aggregates every finding starts from.

A finding accepts either per-sample records (the store's rows, ``SCHEMA``) or cell-level results (one row per
model, method, ratio, seed, dataset with a score, ``CELL_SCHEMA``). ``prepare`` turns both into the same cell
table; per-sample records also keep their rows for the statistics that need samples (paired tests, CIs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

import numpy as np
import pandas as pd

from . import naming
from .naming import VANILLA
from .official import headline_scores
from .schema import CELL_SCHEMA, SCHEMA, require_columns

VANILLA_EPS = 1e-9  # a vanilla accuracy at or below this makes relative accuracy undefined (NaN)

SAMPLES = "per-sample records"
CELLS = "cell-level results"
# How a cell's score is made from its per-sample rows (see ``cell_scores``); verdicts quote it.
CELL_SCORE = "official headline metric, 0-1 (row mean where the records allow no official metric)"

CELL_KEYS = ["model", "method", "category", "ratio", "seed", "dataset"]
ACCURACY_COLUMNS = [*CELL_KEYS, "sample_id", "correct", "error"]


def usable_records(df: pd.DataFrame, columns: Iterable[str], *, scored: bool = True) -> tuple[pd.DataFrame, int]:
    """Rows that ran without error (and, if ``scored``, have a score), plus how many were excluded.

    Ratios are rounded to 4 decimals so that float noise (0.6667 vs 0.66670001) does not split a cell.
    """
    if "sample_id" not in df.columns and "score" in df.columns:
        df = as_sample_rows(df)  # cell-level results: one pseudo-sample per cell, so the figures can draw them
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


def as_sample_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Cell-level results as per-sample-shaped rows, one per cell (``sample_id`` "cell", ``correct`` = score).

    Only for the figures, which draw means: the findings never treat these rows as samples (``prepare`` keeps
    the level), so no per-sample statistic is computed from them.
    """
    cells = prepare(df).cells
    return cells.rename(columns={"score": "correct"}).assign(sample_id="cell", error=None)


def relative_accuracy(recs: pd.DataFrame) -> RelativeScores:
    """``relative_scores`` of per-sample records (or cell-level results), with the figures' column names:
    ``accuracy`` (cell score), ``vanilla_accuracy`` and ``relative_accuracy``."""
    rel = relative_scores(prepare(recs).cells)
    names = {"score": "accuracy", "vanilla_score": "vanilla_accuracy", "relative_score": "relative_accuracy"}
    return rel._replace(table=rel.table.rename(columns=names))


def _pairs(pairs: pd.DataFrame) -> str:
    names = ", ".join(f"{m}/{d}" for m, d in pairs[["model", "dataset"]].itertuples(index=False))
    return f"{len(pairs)} (model, dataset) pair(s) ({names})"


def excluded_note(n_excluded: int) -> str:
    """How many rows were left out for errors or missing scores."""
    return f"{n_excluded} row(s) with an error or no score excluded" if n_excluded else ""


def with_note(sentence: str, *notes: str) -> str:
    """Append non-empty notes to a verdict sentence in parentheses."""
    kept = [n for n in notes if n]
    return f"{sentence} ({'; '.join(kept)})." if kept else f"{sentence}."


# ---------------------------------------------------------------- two input levels


def input_level(df: pd.DataFrame) -> str:
    """``SAMPLES`` when ``df`` has per-sample rows (``sample_id`` and ``correct``), ``CELLS`` when it has a
    ``score`` per cell; otherwise a ValueError naming both accepted schemas."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"records must be a pandas DataFrame, got {type(df).__name__}")
    if {"sample_id", "correct"} <= set(df.columns):
        return SAMPLES
    if "score" in df.columns:
        return CELLS
    samples = ", ".join(SCHEMA)
    cells = ", ".join(CELL_SCHEMA)
    raise ValueError(
        f"cannot tell the input level: columns {sorted(map(str, df.columns))}. Accepted: per-sample records "
        f"(sample_id and correct; schema {samples}) or cell-level results (score; schema {cells})"
    )


def cell_scores(records: pd.DataFrame) -> pd.DataFrame:
    """Per-sample records -> one score per (model, method, ratio, seed, dataset) cell.

    The one place where per-sample rows become cell scores (``CELL_SCORE``): the dataset's official headline
    metric mapped to 0..1 (``official.headline_scores``: MME's total / 2800, MMBench's CircularEval, POPE's F1,
    ...), so that a relative score is the one a published table gives, not the row mean. Datasets outside the
    registry (records from another harness), and records without the sample fields an official aggregate needs
    (a hand-made frame), keep the mean per-sample score. Two stored configs with the same
    cell key are pooled (mean weighted by samples). Columns ``model, method, ratio, seed, dataset, dimension,
    score, n`` (``n`` = scored samples).
    """
    recs = records.assign(dimension=_dimensions(records))
    keys = ["model", "method", "ratio", "seed", "dataset", "dimension"]
    known = recs.groupby("dataset", sort=False)["dataset"].transform(lambda d: _has_official_inputs(recs.loc[d.index]))
    known = known.astype(bool)
    parts = []
    if known.any():
        official = headline_scores(recs[known].drop(columns=["category"], errors="ignore"))
        dims = recs[known].drop_duplicates(keys[:-1]).set_index(keys[:-1])["dimension"]
        official["dimension"] = official.set_index(keys[:-1]).index.map(dims)
        parts.append(official[[*keys, "score", "n"]])
    if not known.all():
        mean = recs[~known].groupby(keys, sort=True, dropna=False).agg(score=("correct", "mean"), n=("correct", "size"))
        parts.append(mean.reset_index())
    cells = pd.concat(parts, ignore_index=True)
    cells["weighted"] = cells["score"] * cells["n"]
    pooled = cells.groupby(keys, sort=True, dropna=False).agg(weighted=("weighted", "sum"), n=("n", "sum"))
    pooled["score"] = pooled["weighted"] / pooled["n"]
    return pooled.reset_index()[[*keys, "score", "n"]]


def _has_official_inputs(rows: pd.DataFrame) -> bool:
    """Whether one dataset's records can give its official metric: a registered dataset whose records carry
    the sample fields its aggregate needs (the store writes them; a hand-made frame may not)."""
    from unipb_core import data

    name = str(rows["dataset"].iloc[0]).split("/")[0]
    if name not in data.available():
        return False
    needs = data.get(name).aggregate_needs
    if not needs:
        return True
    if "score" not in rows:
        return False
    metas = [fields.get("meta") if isinstance(fields, dict) else None for fields in rows["score"]]
    return all(isinstance(meta, dict) and all(k in meta for k in needs) for meta in metas)


class Inputs(NamedTuple):
    """Records brought to one shape: the level, the cell table, the usable per-sample rows (None for cells).

    ``cells`` has ``model, method, category, ratio, seed, dataset, dimension, score, n, chance`` with canonical
    method keys and ``category == "random"`` for every random baseline, at either level.
    """

    level: str
    cells: pd.DataFrame
    samples: pd.DataFrame | None
    n_excluded: int

    @property
    def described(self) -> str:
        """The input level and cell score, e.g. "per-sample records; cell score: mean per-sample score"."""
        score = CELL_SCORE if self.level == SAMPLES else "the table's score"
        return f"{self.level}; cell score: {score}"


def prepare(df: pd.DataFrame | Inputs, aliases: Mapping[str, str] | None = None) -> Inputs:
    """Validate ``df`` at either level and return its ``Inputs`` (errors and unscored rows excluded and counted).

    Method names are mapped through ``naming.METHOD_ALIASES`` (plus ``aliases``); a missing ``category`` comes
    from the method registry and random baselines are recognised by name, whatever their stated category.
    Already prepared ``Inputs`` are returned as they are, so ``compute_findings`` computes the official cell
    scores once for all four findings.
    """
    if isinstance(df, Inputs):
        return df
    level = input_level(df)
    if level == SAMPLES:
        require_columns(df, [c for c in ACCURACY_COLUMNS if c not in ("category", "error")])
        frame = df.copy()
        score_col = "correct"
    else:
        _require_cell_columns(df)
        frame = df.copy()
        score_col = "score"
    if "error" in frame:
        error = frame["error"]
        failed = error.notna() & (error.astype(str).str.strip() != "")
    else:
        failed = pd.Series(False, index=frame.index)
    keep = ~failed & pd.to_numeric(frame[score_col], errors="coerce").notna()
    frame = frame.loc[keep].copy()
    n_excluded = int((~keep).sum())
    names = {m: naming.canonical_method(m, aliases) for m in frame["method"].unique()}
    frame["method"] = frame["method"].map(names)
    frame["category"] = _categories(frame)
    frame["ratio"] = pd.to_numeric(frame["ratio"], errors="coerce")
    frame.loc[frame["method"] == VANILLA, "ratio"] = frame.loc[frame["method"] == VANILLA, "ratio"].fillna(0.0)
    if frame["ratio"].isna().any():
        bad = sorted(frame.loc[frame["ratio"].isna(), "method"].unique())
        raise ValueError(f"ratio is missing or not a number for method(s) {bad}; a pruned cell needs its ratio")
    frame["ratio"] = frame["ratio"].astype(float).round(4)
    frame["seed"] = pd.to_numeric(frame["seed"], errors="coerce").fillna(0).astype(int) if "seed" in frame else 0
    frame[score_col] = frame[score_col].astype(float)
    scores = frame[score_col]
    if len(scores) and (scores.min() < 0 or scores.max() > 1):
        raise ValueError(
            f"{score_col} must lie in [0, 1]; found {scores.min():g} .. {scores.max():g} "
            "(percentages: divide by 100, e.g. read_results(..., score_scale=100))"
        )
    categories = frame.groupby("method")["category"].first()
    if level == SAMPLES:
        cells = cell_scores(frame)
        samples = frame
    else:
        frame["dimension"] = _dimensions(frame)
        frame["n"] = pd.to_numeric(frame["n"], errors="coerce") if "n" in frame else np.nan
        keys = ["model", "method", "ratio", "seed", "dataset", "dimension"]
        duplicated = frame.duplicated(keys, keep=False)
        if duplicated.any():
            example = frame.loc[duplicated, keys].head(3).to_dict("records")
            raise ValueError(
                f"{int(duplicated.sum())} cell-level rows share (model, method, ratio, seed, dataset, dimension), "
                f"e.g. {example}; give each cell one row (a 'seed' column tells repeated runs apart)"
            )
        cells = frame[[*keys, "score", "n"]].sort_values(keys)
        samples = None
    cells["category"] = cells["method"].map(categories)
    chance = frame.groupby("dataset")["chance"].first() if "chance" in frame else pd.Series(dtype=float)
    cells["chance"] = [float(chance.get(d, naming.chance_level(d))) for d in cells["dataset"]]
    columns = ["model", "method", "category", "ratio", "seed", "dataset", "dimension", "score", "n", "chance"]
    return Inputs(level, cells[columns].reset_index(drop=True), samples, n_excluded)


def _require_cell_columns(df: pd.DataFrame) -> None:
    missing = [c for c in ("model", "method", "ratio", "dataset", "score") if c not in df.columns]
    if missing:
        schema = "; ".join(f"{name}: {desc}" for name, desc in CELL_SCHEMA.items())
        raise ValueError(f"cell-level results are missing column(s) {missing}. Accepted schema, one row per "
                         f"(model, method, ratio, seed, dataset): {schema}")  # fmt: skip


def _dimensions(frame: pd.DataFrame) -> pd.Series:
    """The dimension column, lower-cased; where absent or empty, the dataset's dimension (or "")."""
    from unipb_core.data import DATASET_DIMENSION

    keys = frame["dataset"].map(naming.dataset_key)
    default = keys.map(lambda d: DATASET_DIMENSION.get(d, d.partition("/")[2]))
    if "dimension" not in frame:
        return default.astype(str)
    given = frame["dimension"].where(frame["dimension"].notna(), "").astype(str).str.strip().str.lower()
    return given.where(given != "", default).astype(str)


def _categories(frame: pd.DataFrame) -> pd.Series:
    """Category per row: random baselines and vanilla by name; else the given category; else the registry's."""
    given = frame["category"] if "category" in frame else pd.Series(None, index=frame.index, dtype=object)
    stated = given.where(given.notna(), "").astype(str).str.strip().str.lower()
    pairs = pd.DataFrame({"method": frame["method"], "stated": stated})
    known: dict[tuple[str, str], str | None] = {}
    for method, text in pairs.drop_duplicates().itertuples(index=False):
        by_name = naming.method_category(method) if naming.is_random(method) or method == VANILLA else None
        known[(method, text)] = by_name or text or naming.method_category(method)
    invalid = sorted({t for t in pairs["stated"].unique() if t and t not in naming.CATEGORIES})
    if invalid:
        raise ValueError(f"unknown category value(s) {invalid}; accepted: {' | '.join(naming.CATEGORIES)}")
    unknown = sorted({m for (m, _), c in known.items() if c is None})
    if unknown:
        raise ValueError(
            f"unknown method(s) {unknown} and no category for them: add a 'category' column "
            f"({' | '.join(naming.CATEGORIES)}) or map the names in analysis.naming.METHOD_ALIASES"
        )
    return pd.Series([known[p] for p in zip(pairs["method"], pairs["stated"], strict=True)], index=frame.index)


class RelativeScores(NamedTuple):
    """Pruned cells with their vanilla reference; pairs without a usable vanilla; pairs at or below chance."""

    table: pd.DataFrame
    missing_vanilla: pd.DataFrame
    zero_vanilla: pd.DataFrame
    at_chance: pd.DataFrame


def relative_scores(cells: pd.DataFrame) -> RelativeScores:
    """Pruned cell score / vanilla score of the same (model, dataset), from a ``prepare``d cell table.

    Vanilla seeds are averaged. NaN where vanilla is missing or at most ``VANILLA_EPS``. ``at_chance`` lists the
    (model, dataset) pairs whose unpruned score is at or below the chance level: a relative score there measures
    noise, and verdicts resting on them say so.
    """
    is_vanilla = cells["method"] == VANILLA
    vanilla = (
        cells[is_vanilla]
        .groupby(["model", "dataset"])
        .agg(vanilla_score=("score", "mean"), chance=("chance", "first"))
        .reset_index()
    )
    pruned = cells[~is_vanilla].merge(vanilla.drop(columns="chance"), on=["model", "dataset"], how="left")
    defined = pruned["vanilla_score"] > VANILLA_EPS
    pruned["relative_score"] = np.where(defined, pruned["score"] / pruned["vanilla_score"], np.nan)
    pairs = pruned[["model", "dataset"]].drop_duplicates()
    missing = pairs.merge(vanilla, on=["model", "dataset"], how="left")
    missing_vanilla = missing[missing["vanilla_score"].isna()][["model", "dataset"]].reset_index(drop=True)
    zero_vanilla = vanilla[vanilla["vanilla_score"] <= VANILLA_EPS][["model", "dataset"]].reset_index(drop=True)
    at_chance = vanilla[vanilla["vanilla_score"] <= vanilla["chance"] + VANILLA_EPS].reset_index(drop=True)
    return RelativeScores(pruned, missing_vanilla, zero_vanilla, at_chance)


def relative_note(rel: RelativeScores, models: Iterable[str] | None = None) -> str:
    """Notes on pairs without a usable vanilla, and on pairs at or below chance unpruned (restricted to models)."""

    def only(t: pd.DataFrame) -> pd.DataFrame:
        return t if models is None else t[t["model"].isin(list(models))]

    parts = []
    if len(only(rel.missing_vanilla)):
        parts.append(f"vanilla missing for {_pairs(only(rel.missing_vanilla))}, excluded")
    if len(only(rel.zero_vanilla)):
        parts.append(f"vanilla score 0 for {_pairs(only(rel.zero_vanilla))}, relative score undefined")
    chance = only(rel.at_chance)
    chance = chance[chance["vanilla_score"] > VANILLA_EPS]
    if len(chance):
        parts.append(f"rests partly on {_pairs(chance)} at or below chance unpruned")
    return "; ".join(parts)


def chance_note(rel: RelativeScores, models: Iterable[str] | None = None) -> str:
    """A note naming the (model, dataset) pairs whose unpruned score is at or below chance, or ""."""
    chance = rel.at_chance if models is None else rel.at_chance[rel.at_chance["model"].isin(list(models))]
    return f"rests partly on {_pairs(chance)} at or below chance unpruned" if len(chance) else ""
