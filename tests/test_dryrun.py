"""``unipb run --dry-run``: cells, samples, finished and remaining records and the time left, per model."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from unipb_core import grid
from unipb_core.cli import main
from unipb_core.dryrun import dry_run
from unipb_core.grid import load_params

GRID = {"models": ["tiny:llava"], "datasets": ["synthetic"], "dimensions": ["ocr"], "methods": ["vanilla"],
        "ratios": [0.889], "seeds": [0]}  # fmt: skip


def _params(tmp_path, **extra):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({**GRID, "store": str(tmp_path / "store.sqlite"), **extra}))
    return path


def test_dry_run_counts_finished_and_remaining_and_estimates_from_the_store(tmp_path, capsys):
    csv = tmp_path / "none.csv"
    empty = dry_run(load_params(_params(tmp_path, limit=3)), benchmark_csv=csv)
    n_cells = len(grid.expand(load_params(_params(tmp_path, limit=3))))
    row = empty.iloc[0]
    assert (row["cells"], row["samples"], row["finished"], row["remaining"]) == (n_cells, 3 * n_cells, 0, 3 * n_cells)
    assert pd.isna(row["est_remaining_h"]), "an empty store and no benchmark: the time is unknown"
    assert not (tmp_path / "store.sqlite").exists(), "a dry run writes nothing"
    grid.run(load_params(_params(tmp_path, limit=2)), progress=False)  # two of the three samples of every cell
    table = dry_run(load_params(_params(tmp_path, limit=3)), benchmark_csv=csv)
    row = table.iloc[0]
    assert (row["finished"], row["remaining"]) == (2 * n_cells, n_cells)
    assert row["est_remaining_h"] > 0 and row["estimate_from"].startswith("store")
    assert table.iloc[-1]["model"] == "total" and table.iloc[-1]["remaining"] == n_cells
    assert main(["run", "--dry-run", str(_params(tmp_path, limit=3))]) == 0
    out = capsys.readouterr().out
    assert "tiny:llava" in out and "remaining" in out and "dry run" in out


def test_dry_run_falls_back_to_the_benchmark_and_to_documented_sizes(tmp_path):
    csv = tmp_path / "batch_speed.csv"
    pd.DataFrame([{"model": "llava-1.5-7b/reduce8", "method": "vanilla", "batch_size": 4, "throughput": 2.0},
                  {"model": "llava-1.5-7b/reduce8", "method": "vanilla", "batch_size": 1, "throughput": 1.0}]).to_csv(
        csv, index=False)  # fmt: skip
    params = grid.Params(models=("llava-hf/llava-1.5-7b-hf",), datasets=("ocrbench",), methods=("vanilla",),
                         ratios=(0.889,), store=str(tmp_path / "s.sqlite"), batch_size=4)  # fmt: skip
    table = dry_run(params, benchmark_csv=csv)
    row = table.iloc[0]
    n_cells = len(grid.expand(params))
    assert row["samples"] == 1000 * n_cells and not row["samples_exact"]
    assert row["est_remaining_h"] == pytest.approx(1000 * n_cells * 0.5 / 3600)
    assert row["estimate_from"] == "benchmark"
