"""The notebook report: evaluate.ipynb once per (model x dimension), then analysis.ipynb, then HTML.

``run_report`` is what ``unipb report`` and ``make report`` call. The rest are the small helpers the
papermill runs share, kept here so the notebooks stay thin and the logic is tested once: path resolution
(``load_grid``), the (model x dimension) plan, the selection of the stored cells a params file covers, the
findings summary, figure and table saving. The explorer's live run is ``unipb_core.explore``, its plot
``analysis.plot_kept_tokens``; the per-cell summary is ``runner.cell_summary``.

Papermill runs every notebook with a ``python3`` kernel of *this* interpreter (see ``kernel_env``), so the
virtual environment that runs ``unipb report`` is the one that evaluates; nothing is registered globally.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from . import data, grid
from .store import ResultStore

ROOT = Path(__file__).resolve().parents[1]  # the checkout: notebooks/ and params/ live beside the package
NOTEBOOKS = ROOT / "notebooks"
# Config fields that tell apart the stored cells of one grid key (see ``grid_cells``).
CELL_KEY = ["model", "method", "ratio", "seed", "dataset", "split", "positions", "attn_implementation"]


def from_root(path: str | os.PathLike) -> Path:
    """An absolute path; relative ones are taken from the checkout root (a notebook's cwd is notebooks/)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else ROOT / path


def load_grid(params_file: str | os.PathLike, store: str | os.PathLike | None = None, **overrides: Any) -> grid.Params:
    """Validated params of ``params_file`` (from the checkout root) with an absolute store path.

    The one route from a params file to a grid for the notebooks: ``grid.load_params`` reads, overrides and
    validates (precedence: ``grid.Params`` defaults < the file < ``overrides``, a None override keeps the
    file's value). ``store`` overrides the params' store; empty or None keeps it.
    """
    params = grid.load_params(from_root(params_file), **overrides)
    return replace(params, store=str(from_root(store or params.store)))


def plan(params: grid.Params) -> list[tuple[str, str]]:
    """The (model, dimension) pairs of a grid that have at least one cell, in params order."""
    pairs = []
    for model in params.models:
        for dimension in params.dimensions or data.DIMENSIONS:
            if grid.expand(replace(params, models=(model,), dimensions=(dimension,))):
                pairs.append((model, dimension))
    return pairs


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

    params_path = Path(params_file).resolve()
    params = grid.load_params(params_path, store=str(Path(store).resolve()) if store else None)
    params = replace(params, store=str(Path(params.store).resolve()))
    out = Path(out_dir).resolve()
    (out / "runs").mkdir(parents=True, exist_ok=True)
    with kernel_env():
        for model, dimension in plan(params):
            target = out / "runs" / f"evaluate_{_slug(model)}_{dimension}.ipynb"
            print(f"evaluate {model} x {dimension} -> {target}", flush=True)
            # The notebook loads the params file itself; these values narrow it to one slice. No per-cell bars:
            # they would be widgets inside the executed notebook, and papermill shows its own.
            overrides = {"model": model, "dimension": dimension, "store": params.store, "progress": False}
            pm.execute_notebook(
                NOTEBOOKS / "evaluate.ipynb",
                target,
                parameters={"params_file": str(params_path), **overrides},
                kernel_name="python3",
                progress_bar=progress,
                cwd=str(ROOT),
            )
    analysis = {"params_file": str(params_path), "store": params.store}
    return analyse(out, analysis, subtitle=params_path.name, progress=progress)


def run_results_report(results: str | Path, out_dir: str | Path, progress: bool = True, **parameters: Any) -> Path:
    """Analyse an external results CSV (``analysis.read_results``) and render ``<out_dir>/analysis.html``.

    ``columns``, ``aliases`` and ``score_scale`` map the table onto the record schema; other keyword
    arguments are analysis-notebook parameters (``n_boot``, ``seed``).
    """
    results = Path(results).resolve()
    values = {
        "results_csv": str(results),
        "results_columns": parameters.pop("columns", None) or {},
        "results_aliases": parameters.pop("aliases", None) or {},
        "results_score_scale": float(parameters.pop("score_scale", 1.0)),
    }
    return analyse(Path(out_dir).resolve(), {**values, **parameters}, subtitle=results.name, progress=progress)


def analyse(out: Path, parameters: dict[str, Any], subtitle: str, progress: bool = True) -> Path:
    """Execute notebooks/analysis.ipynb into ``out`` with ``parameters`` and render the offline HTML page."""
    import papermill as pm

    out.mkdir(parents=True, exist_ok=True)
    print(f"analysis -> {out / 'analysis.ipynb'}", flush=True)
    with kernel_env():
        pm.execute_notebook(
            NOTEBOOKS / "analysis.ipynb",
            out / "analysis.ipynb",
            parameters={**parameters, "out_dir": str(out)},
            kernel_name="python3",
            progress_bar=progress,
            cwd=str(ROOT),
        )
    return render_html(out / "analysis.ipynb", out / "analysis.html", subtitle=subtitle)


# The page template: JupyterLab's, minus every script it would fetch from a CDN (require.js, MathJax, Mermaid,
# the widget manager), so the report opens offline without console errors. The report needs none of them: its
# outputs are Markdown, HTML tables and PNG figures. A figure wider than the page is scaled to fit, not cut.
_OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{% block html_head_js %}{% endblock html_head_js %}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{% block html_head_js_mathjax %}{% endblock html_head_js_mathjax %}
{% block html_head_js_mermaidjs %}{% endblock html_head_js_mermaidjs %}
{% block extra_css %}<style type="text/css">.jp-RenderedImage img { max-width: 100%; height: auto; }</style>
{% endblock extra_css %}
"""
# Cells papermill needs but a reader does not: the defaults and the values it injected.
HIDDEN_CELL_TAGS = ("parameters", "injected-parameters")


def render_html(notebook: str | os.PathLike, target: str | os.PathLike, subtitle: str = "") -> Path:
    """Render an executed notebook as the page a researcher reads: outputs and text only, self-contained.

    Code is hidden (the ``.ipynb`` keeps it), as are the parameters cells (``HIDDEN_CELL_TAGS``) and anything a
    cell wrote to stderr (warnings): those are printed here instead and stay in the ``.ipynb``. No script is
    loaded from the network. The page title is the notebook's first ``#`` heading, then ``subtitle``.
    """
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    nb = nbformat.read(notebook, as_version=4)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or set(cell.metadata.get("tags", [])) & set(HIDDEN_CELL_TAGS):
            continue
        for output in cell.outputs:
            if output.output_type == "stream" and output.name == "stderr":
                print(f"{Path(notebook).name}, cell {index} wrote to stderr (left out of the HTML):\n{output.text}")
        cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
    headings = [m.group(1) for c in nb.cells if c.cell_type == "markdown"
                for m in [re.search(r"^# +(.+?)\s*$", c.source, re.MULTILINE)] if m]  # fmt: skip
    title = headings[0] if headings else Path(notebook).stem
    nb.metadata["title"] = f"{title}: {subtitle}" if subtitle else title
    exporter = HTMLExporter(
        extra_loaders=[jinja2.DictLoader({"unipb_offline.html.j2": _OFFLINE_TEMPLATE})],
        template_file="unipb_offline.html.j2",
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    exporter.register_preprocessor(TagRemovePreprocessor(remove_cell_tags=set(HIDDEN_CELL_TAGS)), enabled=True)
    html, _ = exporter.from_notebook_node(nb)
    target = Path(target)
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
