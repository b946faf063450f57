"""The report's opening section: what was run and how far its numbers can carry, generated from the records.

``run_overview`` reads only the tidy records, optionally the stored cells' environment records (device, library
versions, parameter count) and the manifest of the shipped tiny models (what they were trained on). It returns
the section as Markdown plus the two tables behind it, so the notebook shows it and a test can check it.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from ..vocabulary import RANDOM_CATEGORY, VANILLA
from .naming import CATEGORY_LABELS
from .records import (
    ACCURACY_COLUMNS,
    excluded_note,
    relative_accuracy,
    usable_records,
)
from .schema import require_columns

# The shipped tiny models' manifest (``unipb train-tiny`` writes it beside the weights). Found by path rather than
# by importing ``unipb_core.models``, which would load torch and transformers just to read a JSON file.
MANIFEST = Path(__file__).resolve().parents[1] / "models" / "weights" / "MANIFEST.json"
Z95 = 1.959964  # two-sided 95 % normal quantile
_CELL = ["model", "method", "ratio", "seed", "dataset"]


class Overview(NamedTuple):
    """The report's opening section.

    Attributes
    ----------
    title : str
        One line naming what was run (methods, models, data).
    markdown : str
        The section "What was run, and how to read it", as Markdown (tables included).
    models : DataFrame
        One row per model: ``model``, ``family``, ``parameters`` (count, NaN if unknown), ``size``,
        ``trained_on``, ``real_data`` (True / False / None when unknown), ``vanilla_accuracy``.
    data : DataFrame
        One row per dataset: ``dataset``, ``dimension``, ``n_min`` / ``n_max`` (usable samples per cell),
        ``n_cells``, ``n_errors`` (rows with an error or no score).
    """

    title: str
    markdown: str
    models: pd.DataFrame
    data: pd.DataFrame


def shipped_manifest(path: str | Path = MANIFEST) -> dict[str, Any]:
    """The tiny models' manifest (family -> entry with ``parameters``, ``command``, ``config``...); {} if absent."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else {}


def run_overview(
    records: pd.DataFrame,
    cells: pd.DataFrame | None = None,
    manifest: Mapping[str, Any] | None = None,
    n_grid_cells: int | None = None,
) -> Overview:
    """Describe what the records come from: models, data, methods, ratios, seeds, device, and how to read them.

    Parameters
    ----------
    records : DataFrame
        Tidy per-sample records (``analysis.SCHEMA``); ``dimension``, ``n_visual``, ``dtype`` and
        ``config_hash`` are used when present.
    cells : DataFrame, optional
        Stored cells with ``config_hash`` and ``environment`` (a dict per cell), as ``ResultStore.cells()``
        returns them; only the cells of ``records`` are read. Without it, device and versions are "not recorded".
    manifest : mapping, optional
        The tiny models' manifest; defaults to the shipped one (``shipped_manifest()``).
    n_grid_cells : int, optional
        How many cells the params grid has, to say how many of them the records cover.
    """
    require_columns(records, ACCURACY_COLUMNS)
    manifest = shipped_manifest() if manifest is None else manifest
    recs, n_excluded = usable_records(records, [*ACCURACY_COLUMNS, *_present(records, ["dimension"])])
    envs = _environments(records, cells)
    models = _model_table(recs, envs, manifest)
    data = _data_table(records, recs)
    title = _title(recs, models, data)
    lines = [
        "## What was run, and how to read it",
        "",
        f"**{title}.** {_counts(records, n_grid_cells, n_excluded)}",
        "",
        _model_markdown(models),
        "",
        _data_markdown(data),
        "",
        *_bullets(recs, envs, records),
        "",
        "**How to read it.**",
        "",
        *_reading(recs, models, data),
    ]
    return Overview(title, "\n".join(lines).rstrip() + "\n", models, data)


# ---------------------------------------------------------------- tables
def _present(df: pd.DataFrame, columns: Iterable[str]) -> list[str]:
    return [c for c in columns if c in df.columns]


def _environments(records: pd.DataFrame, cells: pd.DataFrame | None) -> list[dict[str, Any]]:
    """The environment record of each cell behind ``records`` (one per cell), with the cell's ``model`` added."""
    if cells is None or "environment" not in cells or "config_hash" not in records:
        return []
    model_of = dict(zip(records["config_hash"], records["model"], strict=True))
    return [
        {**(e or {}), "model": model_of[h]}
        for h, e in zip(cells["config_hash"], cells["environment"], strict=True)
        if h in model_of
    ]


def _kind(model: str) -> str:
    if model.startswith("tiny:"):
        return "tiny"
    if model.startswith("tiny-random:"):
        return "random"
    # A hub id is owner/name; a local directory is a path.
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", model) and not model.startswith("."):
        return "hub"
    return "local"


def _model_table(recs: pd.DataFrame, envs: list[dict], manifest: Mapping[str, Any]) -> pd.DataFrame:
    vanilla = recs[recs["method"] == VANILLA].groupby("model")["correct"].mean()
    rows = []
    for model in sorted(recs["model"].unique()):
        kind = _kind(model)
        family = model.split(":", 1)[1] if kind in ("tiny", "random") else ""
        entry = manifest.get(family, {}) if kind == "tiny" else {}
        count = _parameter_count(model, envs, entry)
        if kind == "tiny":
            # A run stopped early ships a checkpoint: the steps it reached, not the ones it was set for.
            steps = entry.get("stopped_at_step") or entry.get("config", {}).get("steps")
            trained = "the synthetic suite only (train split" + (f", {steps} steps" if steps else "") + ")"
            real = False
        elif kind == "random":
            trained, real = "nothing: random initialisation", False
        elif kind == "hub":
            trained, real = "real images and text (pretrained checkpoint)", True
        else:
            trained, real = "unknown (a local checkpoint)", None
        rows.append({"model": model, "family": family, "parameters": count, "size": _size(count, model),
                     "trained_on": trained, "real_data": real,
                     "vanilla_accuracy": vanilla.get(model, math.nan)})  # fmt: skip
    columns = ["model", "family", "parameters", "size", "trained_on", "real_data", "vanilla_accuracy"]
    return pd.DataFrame(rows, columns=columns)


def _parameter_count(model: str, envs: list[dict], entry: Mapping) -> float:
    """The count recorded with the run (environment), else the manifest's, else NaN."""
    counts = {e.get("parameters") for e in envs if e.get("model") == model and isinstance(e.get("parameters"), int)}
    if len(counts) == 1:
        return float(counts.pop())
    if isinstance(entry.get("parameters"), int):
        return float(entry["parameters"])
    return math.nan


def _size(count: float, model: str) -> str:
    if not math.isnan(count):
        for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
            if count >= scale:
                return f"{count / scale:.3g} {unit}"
        return f"{count:.0f}"
    named = re.search(r"(\d+(?:\.\d+)?)\s*[bB](?![a-zA-Z])", model)  # "llava-1.5-7b-hf" -> 7 B
    return f"{named.group(1)} B (from the name)" if named else "unknown"


def _data_table(records: pd.DataFrame, recs: pd.DataFrame) -> pd.DataFrame:
    per_cell = recs.groupby(_CELL).size().rename("n").reset_index()
    table = per_cell.groupby("dataset").agg(n_min=("n", "min"), n_max=("n", "max"), n_cells=("n", "size"))
    if "dimension" in recs:
        table["dimension"] = recs.groupby("dataset")["dimension"].agg(lambda d: ", ".join(sorted(set(map(str, d)))))
    else:
        table["dimension"] = ""
    error = records["error"]
    bad = (error.notna() & (error.astype(str).str.strip() != "")) | records["correct"].isna()
    table["n_errors"] = bad.groupby(records["dataset"]).sum().reindex(table.index).fillna(0).astype(int)
    table = table.reset_index()
    return table[["dataset", "dimension", "n_min", "n_max", "n_cells", "n_errors"]]


# ---------------------------------------------------------------- text
def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _title(recs: pd.DataFrame, models: pd.DataFrame, data: pd.DataFrame) -> str:
    pruned = recs.loc[(recs["method"] != VANILLA) & (recs["category"] != RANDOM_CATEGORY), "method"].nunique()
    randoms = recs.loc[recs["category"] == RANDOM_CATEGORY, "method"].nunique()
    if len(models) == 1:
        who = models["model"].iloc[0]
    else:
        tiny = set(models["model"].map(_kind)) <= {"tiny", "random"}
        who = f"{len(models)} {'tiny ' if tiny else ''}models"
    datasets = list(data["dataset"])
    if datasets and all(d.startswith("synthetic") for d in datasets):
        where = f"the synthetic suite ({_plural(len(datasets), 'dimension')})"
    else:
        where = _plural(len(datasets), "dataset")
    return f"{_plural(pruned, 'pruning method')} and {_plural(randoms, 'random baseline')} on {who}, over {where}"


def _counts(records: pd.DataFrame, n_grid_cells: int | None, n_excluded: int) -> str:
    n_cells = records.groupby(_CELL).ngroups
    cover = f" of the grid's {n_grid_cells:,}" if n_grid_cells is not None else ""
    sentence = f"{len(records):,} sample records in {n_cells:,}{cover} cells (model x method x ratio x seed x dataset)"
    note = excluded_note(n_excluded)
    return f"{sentence}; {note}." if note else f"{sentence}, none with an error."


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|")


def _model_markdown(models: pd.DataFrame) -> str:
    lines = ["| model | parameters | trained on | unpruned accuracy |", "|---|---|---|---|"]
    for m in models.itertuples(index=False):
        accuracy = "n/a (no vanilla run)" if math.isnan(m.vanilla_accuracy) else f"{m.vanilla_accuracy:.2f}"
        lines.append(f"| `{_cell(m.model)}` | {m.size} | {_cell(m.trained_on)} | {accuracy} |")
    return "\n".join(lines)


def _data_markdown(data: pd.DataFrame) -> str:
    lines = ["| dataset | dimension | samples per cell | cells | rows excluded |", "|---|---|---|---|---|"]
    for d in data.itertuples(index=False):
        n = f"{d.n_min}" if d.n_min == d.n_max else f"{d.n_min}-{d.n_max}"
        lines.append(f"| `{_cell(d.dataset)}` | {_cell(d.dimension)} | {n} | {d.n_cells:,} | {d.n_errors:,} |")
    return "\n".join(lines)


def _listing(values: Counter, unit: str = "cells") -> str:
    """``a`` when one value, else ``a (12 cells), b (3 cells)``."""
    if len(values) == 1:
        return str(next(iter(values)))
    return ", ".join(f"{v} ({n:,} {unit})" for v, n in values.most_common())


def _bullets(recs: pd.DataFrame, envs: list[dict], records: pd.DataFrame) -> list[str]:
    methods = recs[["method", "category"]].drop_duplicates()
    groups = []
    for category, name in CATEGORY_LABELS.items():
        keys = sorted(methods.loc[(methods["category"] == category) & (methods["method"] != VANILLA), "method"])
        if keys:
            groups.append(f"{name}: {', '.join(keys)}")
    other = sorted(set(methods["category"]) - set(CATEGORY_LABELS) - {RANDOM_CATEGORY})
    groups += [f"{c}: {', '.join(sorted(methods.loc[methods['category'] == c, 'method']))}" for c in other]
    randoms = sorted(methods.loc[methods["category"] == RANDOM_CATEGORY, "method"])
    ratios = sorted(recs.loc[recs["method"] != VANILLA, "ratio"].unique())
    seeds_random = sorted(recs.loc[recs["category"] == RANDOM_CATEGORY, "seed"].unique())
    seeds_other = sorted(recs.loc[recs["category"] != RANDOM_CATEGORY, "seed"].unique())
    kept = ""
    if "n_visual" in records and records["n_visual"].notna().any():
        n_visual = int(records["n_visual"].dropna().median())
        kept = f" (of {n_visual} visual tokens: {' / '.join(str(round(n_visual * (1 - r))) for r in ratios)} kept)"
    lines = [
        f"- **Methods**: {'; '.join(groups) or 'none besides the baselines'}. "
        f"Random baselines: {', '.join(randoms) or 'none'}. Vanilla (unpruned) is the reference.",
        f"- **Ratios** (share of visual tokens removed): {', '.join(f'{100 * r:.1f} %' for r in ratios) or 'none'}"
        f"{kept}.",
        f"- **Seeds**: random baselines at {_seeds(seeds_random)}, every other method at {_seeds(seeds_other)}"
        " (deterministic methods do not depend on the seed).",
    ]
    if envs:
        device = Counter(_device(e) for e in envs)
        dtype = Counter(str(e.get("dtype", "unknown")) for e in envs)
        attn = Counter(str(e.get("attn_implementation", "unknown")) for e in envs)
        versions = Counter(f"torch {e.get('torch', '?')}, transformers {e.get('transformers', '?')}" for e in envs)
        commits = Counter(_commit(e) for e in envs)
        lines += [
            f"- **Device**: {_listing(device)}; **dtype** {_listing(dtype)}; **attention** {_listing(attn)}.",
            f"- **Software**: {_listing(versions)}; code {_listing(commits)}.",
        ]
    else:
        dtype = Counter(records["dtype"].astype(str)) if "dtype" in records else Counter()
        lines.append(f"- **Device**: not recorded with these records; **dtype** {_listing(dtype) if dtype else 'n/a'}.")
    return lines


def _seeds(seeds: list) -> str:
    return ", ".join(str(int(s)) for s in seeds) if seeds else "none"


def _device(env: Mapping[str, Any]) -> str:
    device = str(env.get("device", "unknown"))
    name = env.get("device_name")
    if device.startswith("cpu"):
        cores = env.get("cpu_cores")
        return f"CPU {name or ''}".strip() + (f", {cores} cores" if cores else "")
    return f"{device} ({name})" if name and name != "unknown" else device


def _commit(env: Mapping[str, Any]) -> str:
    commit = str(env.get("git_commit", "unknown"))
    short = commit[:10] if commit != "unknown" else commit
    return f"{short} (with uncommitted changes)" if env.get("git_dirty") else short


def _reading(recs: pd.DataFrame, models: pd.DataFrame, data: pd.DataFrame) -> list[str]:
    lines = []
    if len(data):
        n = int(data["n_min"].min())
        half = Z95 * math.sqrt(0.25 / n)
        lines.append(
            f"- A cell's accuracy rests on as few as **n = {n}** samples: its 95 % interval is up to "
            f"**±{half:.2f}** wide (at 50 % accuracy). Single-cell differences smaller than that are noise; the "
            "findings below pool cells and test paired differences over samples."
        )
    synthetic = [d for d in data["dataset"] if str(d).startswith("synthetic")]
    no_real = models["real_data"].eq(False)
    if no_real.any():
        names = list(models.loc[no_real, "model"])
        many = len(names) > 1
        lines.append(
            f"- {', '.join(f'`{m}`' for m in names)} {'were' if many else 'was'} never trained on real images or "
            f"text: {'they are small stand-ins' if many else 'it is a small stand-in'} for a real model so that "
            "the benchmark runs offline. Their numbers exercise the pipeline and the analysis; they say nothing "
            "about LLaVA-1.5, InternVL3 or Qwen2.5-VL."
        )
    if synthetic:
        lines.append(
            "- The synthetic suite draws simple images with known answers for each ability dimension (colours, "
            "shapes, 1-3 characters to read, bar charts, counts); it is not one of the study's ten datasets."
        )
    rel = relative_accuracy(recs)
    if len(rel.zero_vanilla):
        pairs = ", ".join(f"`{m}` on `{d}`" for m, d in rel.zero_vanilla.itertuples(index=False))
        lines.append(
            f"- The unpruned model scores 0 for {pairs}: pruning cannot lower that, so relative accuracy is "
            "undefined there and those pairs are left out of the relative-accuracy findings and figures."
        )
    if len(rel.missing_vanilla):
        pairs = ", ".join(f"`{m}` on `{d}`" for m, d in rel.missing_vanilla.itertuples(index=False))
        lines.append(f"- No unpruned (vanilla) run for {pairs}: no relative accuracy there.")
    lines.append(
        "- Relative accuracy is a pruned cell's accuracy divided by the unpruned accuracy of the same model and "
        "dataset; the random baselines are the yardstick a method must beat."
    )
    return lines
