"""Runner, grid and CLI: records, resume after SIGKILL, params validation, Ray == local, timing nesting."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from unipb_core import grid
from unipb_core.grid import ParamsError, expand, load_params, validate
from unipb_core.runner import Cell, evaluate_cell
from unipb_core.store import ResultStore

SMALL = {
    "models": ["tiny:llava"],
    "datasets": ["synthetic"],
    "dimensions": ["ocr", "hallucination"],
    "methods": ["vanilla"],
    "ratios": [0.889],
    "seeds": [0],
    "limit": 3,
}


def _write_params(tmp_path: Path, **extra) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({**SMALL, "store": str(tmp_path / "store.sqlite"), **extra}))
    return path


def _records(store_path: Path):
    frame = ResultStore(store_path).frame()
    cols = ["model", "method", "ratio", "seed", "dataset", "sample_id", "prediction", "correct", "parsed", "n_visual"]
    return frame[cols].sort_values(cols[:6]).reset_index(drop=True)


def test_grid_always_adds_vanilla_and_seeded_random():
    cells = expand(validate({**SMALL, "methods": ["vanilla"], "seeds": [0, 1, 2]}))
    methods = {(c.method, c.seed) for c in cells}
    assert ("vanilla", 0) in methods
    assert {("random_pre", s) for s in (0, 1, 2)} <= methods and {("random_intra", s) for s in (0, 1, 2)} <= methods
    assert {c.dataset_label for c in cells} == {"synthetic/ocr", "synthetic/hallucination"}
    # 2 dimensions x (1 vanilla + 2 randoms x 1 ratio x 3 seeds)
    assert len(cells) == 2 * (1 + 2 * 3)


@pytest.mark.parametrize(
    "bad,message",
    [
        ({"model": ["tiny:llava"]}, r"'model' is not accepted.*Did you mean: models"),
        ({"models": ["tiny:lava"]}, r"'tiny:lava' is not accepted.*Did you mean: tiny:llava"),
        ({"methods": ["fastvv"]}, r"'methods': 'fastvv' is not accepted"),
        ({"datasets": ["popee"]}, r"'datasets': 'popee'.*Did you mean: pope"),
        ({"dimensions": ["ocrr"]}, r"'dimensions': 'ocrr'.*Did you mean: ocr"),
        ({"ratios": [1.2]}, r"'ratios': 1.2 is outside \[0, 1\)"),
        ({"seeds": []}, r"'seeds'"),
        ({"limit": 0}, r"'limit'"),
        ({"executor": "slurm"}, r"'executor': 'slurm'.*Accepted: local, ray"),
        (
            {"method_params": {"random_intra": {"lyer": 3}}},
            r"'method_params'.*unknown parameter.*lyer; accepted: layer",
        ),
        (
            {"methods": ["fastv"], "method_params": {"fastvv": {}}},
            r"'method_params': 'fastvv' is not accepted.*Did you mean: fastv",
        ),
    ],
)
def test_bad_params_are_rejected_before_any_model_loads(tmp_path, monkeypatch, bad, message):
    monkeypatch.setattr("unipb_core.models.load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    with pytest.raises(ParamsError, match=message):
        load_params(_write_params(tmp_path, **bad))


def test_trained_and_random_tiny_specs_are_both_accepted(tmp_path):
    params = load_params(_write_params(tmp_path, models=["tiny:qwen2_5_vl", "tiny-random:qwen2_5_vl"]))
    assert params.models == ("tiny:qwen2_5_vl", "tiny-random:qwen2_5_vl")


def test_missing_params_file_is_named(tmp_path):
    with pytest.raises(ParamsError, match="does not exist"):
        load_params(tmp_path / "nope.yaml")


def test_cell_records_resume_and_failures(tmp_path, monkeypatch):
    store = ResultStore(tmp_path / "s.sqlite")
    cell = Cell(model="tiny:internvl", method="random_pre", ratio=0.667, seed=0, dataset="synthetic",
                dimension="math", limit=3)  # fmt: skip
    first = evaluate_cell(cell, store, progress=False)
    assert (first.n_samples, first.n_new, first.n_errors) == (3, 3, 0)
    again = evaluate_cell(cell, store, progress=False)
    assert again.n_new == 0 and again.config_hash == first.config_hash  # finished samples are skipped
    frame = store.cell_frame(first.config_hash)
    assert len(frame) == 3 and frame["error"].isna().all()
    row = frame.iloc[0]
    assert row["n_visual"] == 144 and row["kept"]["stages"][0]["n_out"] == 48
    t = row["timings"]
    # Intervals nest: method and decoder time fit in prefill (time to first token), which fits in total.
    assert t["method"] + t["llm_prefill"] <= t["prefill"] <= t["total"]
    assert t["vision"] <= t["prefill"] and row["flops"] > 0

    # A sample that raises is recorded with its error and the cell goes on.
    from unipb_core import runner

    real = runner.evaluate_sample
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "evaluate_sample", flaky)
    other = Cell(model="tiny:internvl", method="random_pre", ratio=0.778, seed=0, dataset="synthetic",
                 dimension="math", limit=3)  # fmt: skip
    result = evaluate_cell(other, store, progress=False)
    assert result.n_errors == 1
    errors = store.cell_frame(result.config_hash)["error"].dropna()
    assert len(errors) == 1 and "simulated failure" in errors.iloc[0]


def test_kill_and_resume_loses_and_duplicates_nothing(tmp_path):
    """SIGKILL `unipb run` at random points, restart, and end with the same records as a clean run."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    (tmp_path / "clean").mkdir()
    clean = _write_params(tmp_path / "clean")
    cmd = [sys.executable, "-m", "unipb_core.cli", "run", "--quiet"]
    subprocess.run([*cmd, str(clean)], check=True, env=env, capture_output=True)
    expected = _records(tmp_path / "clean" / "store.sqlite")
    rng = random.Random(0)
    for trial in range(1):
        folder = tmp_path / f"killed{trial}"
        folder.mkdir()
        params = _write_params(folder)
        for _ in range(2):
            proc = subprocess.Popen([*cmd, str(params)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(2.0, 6.0))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        subprocess.run([*cmd, str(params)], check=True, env=env, capture_output=True)
        got = _records(folder / "store.sqlite")
        assert not got.duplicated(["model", "method", "ratio", "seed", "dataset", "sample_id"]).any()
        assert got.equals(expected)


def test_ray_executor_gives_the_same_records(tmp_path):
    pytest.importorskip("ray")
    local_dir, ray_dir = tmp_path / "local", tmp_path / "ray"
    local_dir.mkdir(), ray_dir.mkdir()
    small = {**SMALL, "dimensions": ["ocr"], "limit": 2}
    grid.run(validate({**small, "store": str(local_dir / "store.sqlite")}), progress=False)
    grid.run(validate({**small, "store": str(ray_dir / "store.sqlite"), "executor": "ray"}), progress=False)
    assert _records(ray_dir / "store.sqlite").equals(_records(local_dir / "store.sqlite"))


@pytest.mark.parametrize("method", ["random_pre", "fastv", "pdrop"])
def test_timing_intervals_nest_for_every_stage(tmp_path, method):
    """method + vision + llm_prefill <= prefill <= total, for pre-LLM, intra-LLM and multi-stage methods."""
    store = ResultStore(tmp_path / "s.sqlite")
    cell = Cell(model="tiny:qwen2_5_vl", method=method, ratio=0.778, seed=0, dataset="synthetic",
                dimension="ocr", limit=2)  # fmt: skip
    result = evaluate_cell(cell, store, progress=False)
    for t in store.cell_frame(result.config_hash)["timings"]:
        assert t["method"] > 0
        assert t["method"] + t["vision"] + t["llm_prefill"] <= t["prefill"] <= t["total"]
        assert t["prefill"] + t["decode"] <= t["total"]


def test_unipb_run_prints_one_summary_row_per_cell_with_new_and_skipped(tmp_path, capsys):
    """The one cell summary (runner.cell_summary) behind `unipb run`: a re-run evaluates nothing new."""
    from unipb_core import cli

    params = _write_params(tmp_path, dimensions=["ocr"], limit=2)
    n_cells = len(expand(load_params(params)))
    assert cli.main(["run", str(params), "--quiet"]) == 0
    first = capsys.readouterr().out.splitlines()
    assert cli.main(["run", str(params), "--quiet"]) == 0
    second = capsys.readouterr().out.splitlines()
    header = first[1].split()
    assert header[:8] == ["model", "method", "ratio", "seed", "dataset", "samples", "new", "errors"]
    assert {"accuracy", "parsed", "kept_visual", "prefill_ms"} <= set(header)
    rows = [line.split() for line in first[2:]]
    assert len(rows) == n_cells and all(row[5:7] == ["2", "2"] for row in rows)  # every sample new
    assert all(line.split()[5:7] == ["2", "0"] for line in second[2:])  # all skipped on the re-run
