"""The notebook report: evaluate.ipynb once per (model x dimension), then analysis.ipynb, then HTML.

``run_report`` is what ``unipb report`` and ``make report`` call. The rest are the small helpers the three
notebooks share, kept here so the notebooks stay thin and the logic is tested once: path resolution, the
selection of the stored cells a params file covers, the per-cell and findings summaries, figure and table
saving, and the explorer's live single-sample run and overlay plot.

Papermill runs every notebook with a ``python3`` kernel of *this* interpreter (see ``kernel_env``), so the
virtual environment that runs ``unipb report`` is the one that evaluates; nothing is registered globally.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure

from . import data, grid
from .runner import VANILLA, CellResult, evaluate_sample
from .store import ResultStore

ROOT = Path(__file__).resolve().parents[1]  # the checkout: notebooks/ and params/ live beside the package
NOTEBOOKS = ROOT / "notebooks"
# The evaluate notebook's own parameters; every other key of a params file travels in its ``options``.
EVALUATE_KEYS = ("models", "datasets", "dimensions", "methods", "ratios", "seeds", "limit", "store", "executor")
# Config fields that tell apart the stored cells of one grid key (see ``grid_cells``).
CELL_KEY = ["model", "method", "ratio", "seed", "dataset", "split", "positions", "attn_implementation"]


def from_root(path: str | os.PathLike) -> Path:
    """An absolute path; relative ones are taken from the checkout root (a notebook's cwd is notebooks/)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else ROOT / path


def load_grid(params_file: str | os.PathLike, store: str | os.PathLike | None = None) -> grid.Params:
    """Validated params of ``params_file`` (from the checkout root) with an absolute store path.

    ``store`` overrides the params' store; empty or None keeps it.
    """
    params = grid.load_params(from_root(params_file))
    return replace(params, store=str(from_root(store or params.store)))


def plan(params: grid.Params) -> list[tuple[str, str]]:
    """The (model, dimension) pairs of a grid that have at least one cell, in params order."""
    pairs = []
    for model in params.models:
        for dimension in params.dimensions or data.DIMENSIONS:
            if grid.expand(replace(params, models=(model,), dimensions=(dimension,))):
                pairs.append((model, dimension))
    return pairs


def evaluate_parameters(params_file: Path, params: grid.Params, model: str, dimension: str) -> dict[str, Any]:
    """Papermill parameters that make evaluate.ipynb run one (model, dimension) slice of ``params``."""
    raw = yaml.safe_load(params_file.read_text()) or {}
    return {
        "params_file": str(params_file),
        "model": model,
        "dimension": dimension,
        "datasets": list(params.datasets),
        "methods": list(params.methods),
        "ratios": [float(r) for r in params.ratios],
        "seeds": list(params.seeds),
        "limit": params.limit or 0,
        "store": params.store,
        "executor": params.executor,
        "options": {k: v for k, v in raw.items() if k not in EVALUATE_KEYS},
        "progress": False,  # per-cell bars would be widgets inside the executed notebook; papermill shows its own
    }


@contextlib.contextmanager
def kernel_env() -> Iterator[dict[str, str]]:
    """Make kernel ``python3`` mean this interpreter, for papermill (and nbval) started in this context.

    A ``python3`` kernelspec in the user's Jupyter directory (``ipykernel install --user``) outranks the one in
    the virtual environment and may point at another Python without ``unipb_core``. A temporary spec first on
    ``JUPYTER_PATH`` wins over both and disappears afterwards, so nothing is registered globally. Yields the
    environment to hand to subprocesses.
    """
    from ipykernel.kernelspec import write_kernel_spec

    old = os.environ.get("JUPYTER_PATH")
    with tempfile.TemporaryDirectory(prefix="unipb-kernel-") as tmp:
        write_kernel_spec(os.path.join(tmp, "kernels", "python3"))
        os.environ["JUPYTER_PATH"] = os.pathsep.join([tmp, *([old] if old else [])])
        try:
            yield dict(os.environ)
        finally:
            if old is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = old


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-")


def run_report(
    params_file: str | os.PathLike = "params/smoke.yaml",
    out_dir: str | os.PathLike = "reports",
    store: str | os.PathLike | None = None,
    progress: bool = True,
) -> Path:
    """Evaluate a grid notebook by notebook, analyse it, and render ``<out_dir>/analysis.html``.

    Relative paths are taken from the current directory (as ``unipb run`` does). Executed notebooks go to
    ``<out_dir>/runs/`` (one per model x dimension) and ``<out_dir>/analysis.ipynb``; figures to
    ``<out_dir>/figures/``, tables to ``<out_dir>/tables/``. Finished samples are skipped on a re-run.
    A failing notebook raises ``papermill.PapermillExecutionError``; its partial output is kept.
    """
    import papermill as pm
    from nbconvert import HTMLExporter

    params_path = Path(params_file).resolve()
    params = grid.load_params(params_path, store=str(Path(store).resolve()) if store else None)
    params = replace(params, store=str(Path(params.store).resolve()))
    out = Path(out_dir).resolve()
    (out / "runs").mkdir(parents=True, exist_ok=True)
    with kernel_env():
        for model, dimension in plan(params):
            target = out / "runs" / f"evaluate_{_slug(model)}_{dimension}.ipynb"
            print(f"evaluate {model} x {dimension} -> {target}", flush=True)
            pm.execute_notebook(
                NOTEBOOKS / "evaluate.ipynb",
                target,
                parameters=evaluate_parameters(params_path, params, model, dimension),
                kernel_name="python3",
                progress_bar=progress,
                cwd=str(ROOT),
            )
        print(f"analysis -> {out / 'analysis.ipynb'}", flush=True)
        pm.execute_notebook(
            NOTEBOOKS / "analysis.ipynb",
            out / "analysis.ipynb",
            parameters={"params_file": str(params_path), "store": params.store, "out_dir": str(out)},
            kernel_name="python3",
            progress_bar=progress,
            cwd=str(ROOT),
        )
    html, _ = HTMLExporter().from_filename(str(out / "analysis.ipynb"))
    target = out / "analysis.html"
    target.write_text(html, encoding="utf-8")
    return target


# ---------------------------------------------------------------- summaries for the notebooks
def grid_cells(params: grid.Params) -> pd.DataFrame:
    """The stored cells a params grid covers: one row per cell of ``grid.expand(params)`` found in the store.

    A stored cell matches a grid cell on ``CELL_KEY``; where several match (the same configuration run with
    other weights or code versions) the newest one counts. Columns: ``config_hash``, the key fields, ``n_records``,
    ``n_errors``, ``created``. Raises ValueError when the store holds none of the grid's cells.
    """
    wanted = pd.DataFrame(
        [
            {
                "model": c.model,
                "method": c.method,
                "ratio": round(c.ratio, 4),
                "seed": c.seed,
                "dataset": c.dataset_label,
                "split": c.split or data.get(c.dataset).split,
                "positions": c.positions,
                "attn_implementation": c.attn_implementation,
            }
            for c in grid.expand(params)
        ]
    ).drop_duplicates()
    stored = ResultStore(params.store).cells()
    if stored.empty or not set(CELL_KEY) <= set(stored.columns):
        raise ValueError(f"the store {params.store} holds no cells; run the grid first (unipb run / unipb report)")
    stored = stored.assign(ratio=stored["ratio"].astype(float).round(4))
    found = stored.merge(wanted, on=CELL_KEY).sort_values("created").groupby(CELL_KEY).tail(1)
    if found.empty:
        raise ValueError(f"the store {params.store} holds none of this grid's {len(wanted)} cells; run the grid first")
    found = found.assign(created=pd.to_datetime(found["created"], unit="s", utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    columns = ["config_hash", *CELL_KEY, "n_records", "n_errors", "created"]
    return found[columns].sort_values(["model", "dataset", "method", "ratio", "seed"]).reset_index(drop=True)


def cell_summary(results: Sequence[CellResult], store: ResultStore) -> pd.DataFrame:
    """One row per evaluated cell: what the run did (new / skipped samples) and the cell's numbers so far."""
    rows = pd.DataFrame(
        [
            {
                "model": r.cell.model,
                "method": r.cell.method,
                "ratio": r.cell.ratio,
                "seed": r.cell.seed,
                "dataset": r.cell.dataset_label,
                "config_hash": r.config_hash,
                "samples": r.n_samples,
                "new": r.n_new,
                "errors": r.n_errors,
            }
            for r in results
        ]
    )
    if rows.empty:
        return rows
    frame = store.frame(config_hash=list(rows["config_hash"]))
    ok = frame[frame["error"].isna()]
    kept = ok["kept"].map(lambda k: (k or {}).get("visual_kept_mean", np.nan))
    numbers = (
        ok.assign(kept_mean=kept)
        .groupby("config_hash")
        .agg(accuracy=("correct", "mean"), kept_visual=("kept_mean", "mean"), prefill_ms=("t_prefill", "median"))
    )
    numbers["prefill_ms"] *= 1000
    return rows.merge(numbers, left_on="config_hash", right_index=True, how="left")


def save_figure(fig: Figure, name: str, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``fig`` as ``<out_dir>/figures/<name>.png`` and ``.svg``; returns the paths."""
    folder = Path(out_dir) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png", folder / f"{name}.svg"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    return paths


def save_tables(tables: dict[str, pd.DataFrame], out_dir: str | os.PathLike) -> list[Path]:
    """Write each table as ``<out_dir>/tables/<name>.csv``; returns the paths."""
    folder = Path(out_dir) / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, table in tables.items():
        paths.append(folder / f"{name}.csv")
        table.to_csv(paths[-1], index=False)
    return paths


# ---------------------------------------------------------------- the explorer
def explore_sample(
    model: Any, sample: data.Sample, method: str, ratio: float, seed: int = 0, positions: str = "original"
) -> dict[str, Any]:
    """Run one sample live with ``method`` at ``ratio`` and return its record plus the explorer's extras.

    The record is exactly what the runner stores (``evaluate_sample``); ``kept_indices`` are the visual tokens
    reaching the last stage (indices into the original visual tokens, raster order of ``grids``); ``stages``
    is the per-stage accounting of ``engine.summary()``.
    """
    from .pruning import PruningEngine, get

    spec = data.get(sample.dataset)
    grids = model.visual_grids(model.build_inputs(sample.images, spec.to_prompt(sample)))
    max_new = int(spec.max_new_tokens)
    if method == VANILLA:
        record = evaluate_sample(model, spec, sample, None, max_new)
        return {**record, "grids": grids, "stages": [], "kept_indices": list(range(record["n_visual"]))}
    with PruningEngine(model, get(method), ratio, seed, positions) as engine:
        record = evaluate_sample(model, spec, sample, engine, max_new)
        summary = engine.summary()
    stages = summary["stages"]
    kept = stages[-1]["kept"] if stages else list(range(summary["n_visual"]))
    return {**record, "grids": grids, "stages": stages, "kept_indices": kept}


def plot_kept_tokens(image: Any, kept: Sequence[int], grid_shape: tuple[int, int], title: str = "") -> Figure:
    """The image with pruned visual tokens darkened on its patch grid (``kept`` in raster order)."""
    rows, cols = grid_shape
    mask = np.zeros(rows * cols, dtype=bool)
    mask[[k for k in kept if k < rows * cols]] = True
    shade = np.zeros((rows, cols, 4))
    shade[..., 3] = np.where(mask.reshape(rows, cols), 0.0, 0.65)  # pruned patches: 65 % black
    width, height = image.size
    fig = Figure(figsize=(5, 5 * height / width), layout="constrained")
    ax = fig.subplots()
    ax.imshow(image)
    ax.imshow(shade, extent=(0, width, height, 0), interpolation="nearest")
    ax.set_xticks(np.linspace(0, width, cols + 1), labels=[])
    ax.set_yticks(np.linspace(0, height, rows + 1), labels=[])
    ax.grid(color="white", linewidth=0.3, alpha=0.5)
    ax.tick_params(length=0)
    ax.set_title(title or f"{int(mask.sum())} of {rows * cols} visual tokens kept", fontsize="small")
    return fig
