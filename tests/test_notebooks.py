"""The three notebooks and ``unipb report``, run on the tiny grid of ``tests/fixtures/params_tiny.yaml``.

How the notebooks are tested, and why this way:

* ``unipb report`` runs first (once per module): papermill executes evaluate.ipynb per (model x dimension) into
  a fresh store in a tmp directory, then analysis.ipynb, then nbconvert renders the HTML. Its outputs are
  checked: the findings table in the HTML, every figure as PNG and SVG, the CSV tables.
* Then nbval: papermill writes *parameterised copies* of the three notebooks (``prepare_only``: parameters
  injected, nothing executed) pointing at that tmp store, and ``pytest --nbval-lax`` runs them in a
  subprocess. The copies keep the committed notebooks' defaults (the shared ``reports/`` store, the smoke
  grid) out of the tests, and the subprocess keeps nbval's kernels and its pytest plugin out of this session.
  nbval-lax fails on any cell error; outputs are not compared (timings and widget ids differ per run).
  evaluate.ipynb re-runs a slice the report already finished, so it also checks that finished samples are
  skipped.
* explore.ipynb must draw its plot without interaction: papermill runs it headless and the figure must be
  in the Output widget that the startup call of the callback fills.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from unipb_core import cli, grid, report
from unipb_core.analysis.summary import CLAIMS
from unipb_core.store import ResultStore

FIXTURE = Path(__file__).parent / "fixtures" / "params_tiny.yaml"
NOTEBOOKS = ("evaluate", "analysis", "explore")
FIGURES = ("accuracy_vs_ratio", "relative_heatmap", "dimension_sensitivity", "pareto", "variance_decomposition")


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    """``unipb report`` on the tiny grid, into a tmp folder and a tmp store."""
    out = tmp_path_factory.mktemp("report")
    store = out / "results.sqlite"
    assert cli.main(["report", str(FIXTURE), "--out", str(out), "--store", str(store), "--quiet"]) == 0
    return out, store


def test_committed_notebooks_are_stripped():
    check = subprocess.run(
        [sys.executable, str(report.ROOT / "tools" / "strip_notebooks.py"), "--check"], capture_output=True, text=True
    )
    assert check.returncode == 0, f"run tools/strip_notebooks.py before committing:\n{check.stdout}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_parameters_cell_comes_first_and_documents_every_parameter(name):
    import papermill as pm

    path = report.NOTEBOOKS / f"{name}.ipynb"
    first = nbformat.read(path, as_version=4).cells[0]
    assert "parameters" in first.metadata.get("tags", []), f"{name}: the first cell must be the parameters cell"
    inferred = pm.inspect_notebook(str(path))
    assert inferred, f"{name}: papermill infers no parameters"
    for param in inferred.values():
        assert param["help"] and param["inferred_type_name"] != "None", f"{name}: {param['name']} lacks type or help"


def test_report_renders_findings_figures_and_tables(tiny_report):
    out, store = tiny_report
    html = (out / "analysis.html").read_text(encoding="utf-8")
    for claim in CLAIMS:
        assert claim in html, f"findings table lacks {claim!r}"
    for name in FIGURES:
        for ext in ("png", "svg"):
            assert (out / "figures" / f"{name}.{ext}").stat().st_size > 0
    assert "<title>UniPruneBench report: params_tiny.yaml</title>" in html
    assert "What was run, and how to read it" in html and "1.51 M" in html  # the overview, with the model's size
    assert "report.save_figure" not in html and "params_file" not in html, "code or parameters shown in the page"
    assert "<script src=" not in html and "Warning" not in html
    findings = pd.read_csv(out / "tables" / "findings.csv")
    assert list(findings["finding"]) == list(CLAIMS)
    assert not {"key", "function"} & set(findings.columns)
    cells = pd.read_csv(out / "tables" / "cells.csv")
    assert set(cells["config_hash"]) == set(ResultStore(store).cells()["config_hash"])
    # evaluate.ipynb ran the params file itself: every cell of its grid, and nothing else, is in the store
    assert len(cells) == len(grid.expand(report.load_grid(FIXTURE))) == len(ResultStore(store).cells())
    runs = list((out / "runs").glob("evaluate_*.ipynb"))
    assert len(runs) == len(report.plan(report.load_grid(FIXTURE))) == 2  # one per (model x dimension)


def test_notebooks_under_nbval(tiny_report, tmp_path):
    import papermill as pm

    _, store = tiny_report
    n_records = len(ResultStore(store).frame())
    params = report.load_grid(FIXTURE, store)
    model, dimension = report.plan(params)[0]
    parameters = {
        "evaluate": {"params_file": str(FIXTURE), "model": model, "dimension": dimension, "store": str(store)},
        "analysis": {"params_file": str(FIXTURE), "store": str(store), "out_dir": str(tmp_path / "out"), "n_boot": 200},
        "explore": {"model": model, "dimension": dimension, "n_samples": 2},
    }
    copies = []
    for name in NOTEBOOKS:
        copies.append(tmp_path / f"{name}.ipynb")
        pm.execute_notebook(
            report.NOTEBOOKS / f"{name}.ipynb", copies[-1], parameters=parameters[name], prepare_only=True
        )
    command = [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-cell-timeout=600", "-p", "no:cacheprovider",
               "-q", *map(str, copies)]  # fmt: skip
    with report.kernel_env() as env:
        run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert len(ResultStore(store).frame()) == n_records, "re-running evaluate.ipynb recomputed finished samples"


def test_explore_draws_the_default_sample_headless(tmp_path):
    import papermill as pm

    model = report.load_grid(FIXTURE).models[0]
    target = tmp_path / "explore.ipynb"
    with report.kernel_env():
        pm.execute_notebook(
            report.NOTEBOOKS / "explore.ipynb",
            target,
            parameters={"model": model, "n_samples": 2},
            kernel_name="python3",
            progress_bar=False,
            execution_timeout=600,  # a lost kernel message fails the test instead of hanging CI
        )
    state = nbformat.read(target, as_version=4).metadata["widgets"]["application/vnd.jupyter.widget-state+json"]
    outputs = [o for w in state["state"].values() if w["model_name"] == "OutputModel" for o in w["state"]["outputs"]]
    images = [o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {})]
    assert images and base64.b64decode(images[0]).startswith(b"\x89PNG"), "the startup callback drew no image"
    texts = " ".join(o["data"].get("text/plain", "") for o in outputs if "data" in o)
    assert "prediction" in texts and "n_out" in texts


# ---------------------------------------------------------------- the report helpers (fast, no kernel)
def _config(method: str, ratio: float, weights: str, dataset: str = "synthetic/ocr") -> dict:
    return {"model": "tiny:llava", "method": method, "ratio": ratio, "seed": 0, "dataset": dataset, "split": "test",
            "positions": "original", "attn_implementation": "sdpa", "weights": weights}  # fmt: skip


def test_plan_has_one_entry_per_model_and_dimension_with_data():
    from unipb_core import grid

    synthetic = grid.validate({"models": ["tiny:llava", "tiny:internvl"], "datasets": ["synthetic"]})
    assert len(report.plan(synthetic)) == 2 * 6
    real = grid.validate({"models": ["tiny:llava"], "datasets": ["pope", "ocrbench"], "dimensions": []})
    assert report.plan(real) == [("tiny:llava", "ocr"), ("tiny:llava", "hallucination")]


def test_load_grid_precedence_defaults_then_file_then_notebook_values(tmp_path):
    """The evaluate notebook's one route: grid defaults < params file < overrides; None keeps the file's."""
    from dataclasses import replace

    path = tmp_path / "p.yaml"
    path.write_text(FIXTURE.read_text() + "max_new_tokens: 4\nmethod_params: {divprune: {}}\n")
    params = report.load_grid(path, tmp_path / "s.sqlite", models=["tiny:llava"], dimensions=["ocr"], limit=None)
    assert params.store == str(tmp_path / "s.sqlite")  # notebook value
    assert params.limit == 2 and params.max_new_tokens == 4 and params.split == "test"  # the file
    assert params.positions == grid.Params().positions  # a key the file leaves out: the default
    whole = report.load_grid(path, tmp_path / "s.sqlite")
    assert grid.expand(params) == grid.expand(replace(whole, dimensions=("ocr",)))
    with pytest.raises(grid.ParamsError, match="dimensions"):
        report.load_grid(path, dimensions=["ocrr"])  # notebook values go through the same validator


def test_evaluate_notebook_runs_the_params_file_it_is_given(tmp_path):
    """``papermill evaluate.ipynb -p params_file X`` runs X's grid, not a built-in default."""
    import papermill as pm

    path = tmp_path / "p.yaml"
    store = tmp_path / "s.sqlite"
    path.write_text(FIXTURE.read_text().replace("methods: [vanilla, divprune]", "methods: [vanilla]")
                    .replace("limit: 2 ", "limit: 1 ").replace("ratios: [0.889]", "ratios: [0.778]"))  # fmt: skip
    with report.kernel_env():
        pm.execute_notebook(report.NOTEBOOKS / "evaluate.ipynb", tmp_path / "run.ipynb",
                            parameters={"params_file": str(path), "dimension": "math", "store": str(store)},
                            kernel_name="python3", progress_bar=False, execution_timeout=600)  # fmt: skip
    expected = grid.expand(report.load_grid(path, store, dimensions=["math"]))
    stored = ResultStore(store).cells()
    assert len(stored) == len(expected) == 1 + 2  # vanilla + the two random baselines at the file's one ratio
    assert set(stored["ratio"].astype(float).round(3)) == {0.0, 0.778}
    assert set(stored["dataset"]) == {"synthetic/math"} and len(ResultStore(store).frame()) == 3


def test_grid_cells_selects_the_grid_and_the_newest_run_of_a_configuration(tmp_path):
    from unipb_core import grid
    from unipb_core.confighash import config_hash

    store = ResultStore(tmp_path / "s.sqlite")
    configs = [
        _config("vanilla", 0.0, "old"),
        _config("vanilla", 0.0, "new"),  # the same configuration re-run with other weights: this one counts
        _config("random_pre", 0.889, "new"),
        _config("random_pre", 0.5, "new"),  # a ratio outside the grid
        _config("vanilla", 0.0, "new", dataset="synthetic/math"),  # a dimension outside the grid
    ]
    for config in configs:
        store.register_cell(config_hash(config), config, {})
    params = grid.validate({"models": ["tiny:llava"], "dimensions": ["ocr"], "methods": ["vanilla"],
                            "ratios": [0.889], "split": "test", "store": str(store.path)})  # fmt: skip
    cells = report.grid_cells(params)
    assert set(cells["config_hash"]) == {config_hash(configs[1]), config_hash(configs[2])}
    with pytest.raises(ValueError, match="holds none of this grid"):
        report.grid_cells(grid.validate({"models": ["tiny:qwen2_5_vl"], "store": str(store.path)}))


def test_render_html_hides_code_parameters_and_stderr_and_loads_nothing(tmp_path, capsys):
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    cells = [
        new_code_cell('store: str = "secret.sqlite"  # parameters', metadata={"tags": ["parameters"]}),
        new_code_cell('store = "injected.sqlite"', metadata={"tags": ["injected-parameters"]}),
        new_markdown_cell("Intro.\n\n# The report"),
        new_code_cell("print_the_numbers()", outputs=[
            new_output("stream", name="stdout", text="the numbers 42\n"),
            new_output("stream", name="stderr", text="UserWarning: constrained_layout not applied\n"),
        ]),
    ]  # fmt: skip
    notebook = tmp_path / "analysis.ipynb"
    nbformat.write(new_notebook(cells=cells), notebook)
    html = report.render_html(notebook, tmp_path / "analysis.html", subtitle="smoke.yaml").read_text()
    assert "<title>The report: smoke.yaml</title>" in html
    assert "the numbers 42" in html and "The report" in html
    for hidden in ("secret.sqlite", "injected.sqlite", "print_the_numbers", "constrained_layout"):
        assert hidden not in html
    assert "<script src=" not in html and "mathjax" not in html.lower() and "require.js" not in html
    assert "constrained_layout not applied" in capsys.readouterr().out  # the warning goes to the console


def test_plot_kept_tokens_darkens_exactly_the_pruned_patches():
    from PIL import Image

    from unipb_core.analysis import plot_kept_tokens

    fig = plot_kept_tokens(Image.new("RGB", (60, 40), "white"), [0, 5], (2, 3))
    shade = fig.axes[0].images[1].get_array()
    assert shade.shape == (2, 3, 4)
    assert [i for i, alpha in enumerate(shade[..., 3].ravel()) if alpha == 0] == [0, 5]


def test_kept_caption_says_where_the_count_applies():
    from unipb_core.explore import kept_caption

    intra = {"kept_indices": [], "n_visual": 144, "stages": [{"kind": "intra", "layer": 3, "n_in": 144}]}
    assert kept_caption(intra) == "0 of 144 visual tokens kept from decoder layer 3 on (layers 0-2: 144)"
    pre = {"kept_indices": list(range(16)), "n_visual": 144, "stages": [{"kind": "pre", "layer": None, "n_in": 144}]}
    assert kept_caption(pre) == "16 of 144 visual tokens kept (pruned before the LLM)"
    assert kept_caption({"kept_indices": list(range(144)), "n_visual": 144, "stages": []}).endswith("(unpruned)")
