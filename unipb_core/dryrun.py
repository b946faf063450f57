"""``unipb run --dry-run``: what a grid would do, before anything loads.

Per model: cells, samples, finished and remaining records, and an estimate of the remaining time. Nothing is
written and no model loads. Where the numbers come from:

- **samples** of a cell: the synthetic suite and datasets with a local ``data_paths`` entry are loaded (with the
  cell's limit); a hub dataset is counted from its documented size (``DATASET_SIZES``, docs/datasets.md), capped
  by ``limit``, without downloading anything;
- **finished** records: a cell marked complete counts all its samples; otherwise the records (without error) of
  the store's cells whose config matches the cell's settings (model, method and its parameters, ratio, seed,
  dataset, positions, attention; the config hash itself needs the loaded weights);
- **time**: the median per-sample ``total`` of the store's records of the same model and method (timings of
  batched runs are per-sample shares, so the estimate is for the batch size the store ran at), else of the same
  model; else the benchmark's throughput at the grid's batch size (``reports/benchmarks/batch_speed.csv``, from
  ``benchmarks/batch.py``; the real architecture of the model's family, a rough guide when it ran reduced on a
  CPU); else unknown.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from .grid import Params, _load_data, data_key, expand
from .runner import Cell, cell_key
from .store import ResultStore
from .vocabulary import VANILLA

# Samples of each hub dataset's default split (docs/datasets.md), for grids whose data is not local.
DATASET_SIZES = {
    "mme": 2374, "mmbench": 4329, "seedbench2plus": 2277, "ocrbench": 1000, "scienceqa": 2017, "pope": 9000,
    "hallusionbench": 951, "mathvista": 1000, "mathvision": 3040, "miabench": 400,
}  # fmt: skip
BENCHMARK_CSV = Path("reports/benchmarks/batch_speed.csv")
_ARCHITECTURES = {"llava": "llava-1.5-7b", "internvl": "internvl3-8b", "qwen": "qwen2.5-vl-7b"}


def _n_samples(cell: Cell, loaded: dict) -> tuple[int, bool]:
    """(samples, exact): loaded when local, else the documented size capped by the limit."""
    key = data_key(cell)
    if key not in loaded:
        if cell.dataset == "synthetic" or cell.data_path:
            loaded[key] = (len(_load_data(cell)), True)
        else:
            size = DATASET_SIZES.get(cell.dataset)
            if size is None:
                loaded[key] = (0, False)
            else:
                loaded[key] = (min(size, cell.limit) if cell.limit else size, False)
    return loaded[key]


def _matches(cell: Cell, config: dict[str, Any]) -> bool:
    ratio = 0.0 if cell.method == VANILLA else float(cell.ratio)
    overrides = config.get("method_params") or {}
    return (
        config.get("model") == cell.model
        and config.get("method") == cell.method
        and math.isclose(float(config.get("ratio", -1)), ratio, abs_tol=1e-9)
        and int(config.get("seed", -1)) == int(cell.seed)
        and config.get("dataset") == cell.dataset_label
        and config.get("positions", "original") == cell.positions
        and config.get("attn_implementation", "sdpa") == cell.attn_implementation
        and all(overrides.get(k) == v for k, v in cell.method_params.items())
    )


def _benchmark_seconds(cell: Cell, batch_size: int, csv: Path) -> float | None:
    if not csv.exists():
        return None
    frame = pd.read_csv(csv)
    name = cell.model.lower()
    family = next((f for f in _ARCHITECTURES if f in name), None)
    arch = f"tiny-random:{name.split(':', 1)[1]}" if name.startswith("tiny") else _ARCHITECTURES.get(family or "")
    rows = frame[frame["model"].astype(str).str.split("/").str[0] == arch]
    if rows.empty:
        return None
    same = rows[rows["method"] == cell.method]
    rows = same if not same.empty else rows[rows["method"] == VANILLA]
    if rows.empty:
        return None
    nearest = rows.iloc[(rows["batch_size"] - batch_size).abs().argsort()[:1]]
    return float(1.0 / nearest["throughput"].iloc[0])


def dry_run(params: Params, benchmark_csv: Path = BENCHMARK_CSV) -> pd.DataFrame:
    """One row per model (and a total): cells, samples, finished, remaining, estimated remaining seconds."""
    cells = expand(params)
    store = ResultStore(params.store)
    keys = []
    for cell in cells:
        try:
            keys.append(cell_key(cell))
        except (OSError, ValueError):
            keys.append(None)
    exists = store.exists() and store.path.stat().st_size > 0
    marked = store.completed(k for k in keys if k) if exists else {}
    registered = store.cells() if exists else pd.DataFrame()
    timings = store.frame()[["config_hash", "t_total", "error"]] if exists and len(registered) else pd.DataFrame()
    ok = timings[timings["error"].isna()] if len(timings) else timings
    loaded: dict = {}
    rows = []
    for cell, key in zip(cells, keys, strict=True):
        n, exact = _n_samples(cell, loaded)
        hashes = []
        if key in marked:
            finished = marked[key][1]
        else:
            hashes = [h for h, c in zip(registered.get("config_hash", []), registered.get("config", []), strict=True)
                      if _matches(cell, c)]  # fmt: skip
            finished = int(ok["config_hash"].isin(hashes).sum()) if len(ok) and hashes else 0
        remaining = max(n - finished, 0)
        seconds, source = None, "unknown"
        if remaining and len(ok):
            same = [h for h, c in zip(registered["config_hash"], registered["config"], strict=True)
                    if c.get("model") == cell.model and c.get("method") == cell.method]  # fmt: skip
            model_hashes = [h for h, c in zip(registered["config_hash"], registered["config"], strict=True)
                            if c.get("model") == cell.model]  # fmt: skip
            for pool, label in ((same, "store: model + method"), (model_hashes, "store: model")):
                t = ok[ok["config_hash"].isin(pool)]["t_total"].dropna()
                if len(t):
                    seconds, source = float(t.median()), label
                    break
        if remaining and seconds is None:
            seconds = _benchmark_seconds(cell, params.batch_size, benchmark_csv)
            source = "benchmark" if seconds is not None else "unknown"
        rows.append({"model": cell.model, "samples": n, "exact": exact, "finished": finished, "remaining": remaining,
                     "seconds": None if seconds is None else seconds * remaining, "source": source})  # fmt: skip
    frame = pd.DataFrame(rows)
    out = []
    for model, part in frame.groupby("model", sort=False):
        known = part[part["remaining"] > 0]
        est = None if known["seconds"].isna().any() else float(known["seconds"].sum())
        sources = sorted(set(known["source"])) if len(known) else []
        out.append({"model": model, "cells": len(part), "samples": int(part["samples"].sum()),
                    "samples_exact": bool(part["exact"].all()), "finished": int(part["finished"].sum()),
                    "remaining": int(part["remaining"].sum()), "est_remaining_h": None if est is None else est / 3600,
                    "estimate_from": ", ".join(sources) or "-"})  # fmt: skip
    table = pd.DataFrame(out)
    hours = None if table["est_remaining_h"].isna().any() else float(table["est_remaining_h"].sum())
    total = {"model": "total", "cells": int(table["cells"].sum()), "samples": int(table["samples"].sum()),
             "samples_exact": bool(table["samples_exact"].all()), "finished": int(table["finished"].sum()),
             "remaining": int(table["remaining"].sum()),
             "est_remaining_h": hours,
             "estimate_from": ""}  # fmt: skip
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)


def dry_run_text(params: Params, table: pd.DataFrame) -> str:
    """The table as ``unipb run --dry-run`` prints it."""
    shown = table.copy()
    shown["samples"] = [f"{n}" if exact else f"~{n}" for n, exact in zip(shown["samples"], shown["samples_exact"],
                                                                         strict=True)]  # fmt: skip
    shown["est_remaining_h"] = [
        ("unknown" if v is None or pd.isna(v) else f"{v:.2f}") for v in shown["est_remaining_h"]
    ]
    shown = shown.drop(columns="samples_exact")
    head = (f"dry run of {len(expand(params))} cells at batch_size {params.batch_size} against {params.store} "
            "(nothing loaded or written; ~ = documented dataset size)")  # fmt: skip
    return head + "\n" + shown.to_string(index=False)


__all__ = ["DATASET_SIZES", "dry_run", "dry_run_text"]
