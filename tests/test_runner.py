"""Runner, grid and CLI: records, resume after SIGKILL, leases and concurrent runs, exit status on failed
samples, Ray == local (and a finished grid is skipped before anything loads), timing nesting."""

from __future__ import annotations

import dataclasses
import os
import random
import re
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


# The table of bad params (each one error line, exit 2, nothing written) is tests/test_bad_inputs.py.


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


def test_ray_executor_gives_the_same_records_and_skips_finished_cells_before_loading(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    local_dir, ray_dir = tmp_path / "local", tmp_path / "ray"
    local_dir.mkdir(), ray_dir.mkdir()
    small = {**SMALL, "dimensions": ["ocr"], "limit": 2}
    grid.run(validate({**small, "store": str(local_dir / "store.sqlite")}), progress=False)
    ray_params = validate({**small, "store": str(ray_dir / "store.sqlite"), "executor": "ray"})
    first = grid.run(ray_params, progress=False)
    assert _records(ray_dir / "store.sqlite").equals(_records(local_dir / "store.sqlite"))
    assert grid.summarize(first)["computed"] == 3 * 2

    # A rerun of the finished grid loads no model, reads no data and does not start Ray.
    import ray

    monkeypatch.setattr("unipb_core.models.load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    monkeypatch.setattr("unipb_core.runner.load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    monkeypatch.setattr("unipb_core.runner.load_cell_samples", lambda *a, **k: pytest.fail("data was loaded"))
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray was started"))
    again = grid.run(ray_params, progress=False)
    assert [r.config_hash for r in again] == [r.config_hash for r in first]
    assert grid.summarize(again) | {"errors": []} == grid.summarize(first) | {"computed": 0, "skipped": 6}
    # The task itself checks before loading too (for cells another run finished after the driver looked).
    skipped = grid._ray_cell(expand(ray_params)[0], ResultStore(ray_dir / "store.sqlite"), False)
    assert (skipped.n_skipped, skipped.n_new) == (2, 0)


def test_failed_samples_give_exit_1_with_a_summary_and_keep_going_runs_every_cell(tmp_path, monkeypatch, capsys):
    from unipb_core import cli, runner

    def broken(*args, **kwargs):
        raise RuntimeError("simulated CUDA OOM\nsecond line")

    monkeypatch.setattr(runner, "evaluate_sample", broken)
    params = _write_params(tmp_path, dimensions=["ocr"], limit=2)  # 3 cells x 2 samples
    assert cli.main(["run", "--quiet", str(params)]) == 1
    out, err = capsys.readouterr()
    assert "samples: 0 computed, 0 skipped (already stored), 1 failed" in out
    assert "error: 1 sample(s) failed in 1 cell(s) (stopped at the first failure" in err
    assert "RuntimeError: simulated CUDA OOM" in err and "second line" not in err
    assert cli.main(["run", "--quiet", "--keep-going", str(params)]) == 1
    out, err = capsys.readouterr()
    assert "0 computed, 0 skipped (already stored), 6 failed; 3 cells" in out
    assert "6 sample(s) failed in 3 cell(s)\n" in err and err.count("simulated CUDA OOM") == 1  # distinct only
    frame = ResultStore(tmp_path / "store.sqlite").frame()
    assert len(frame) == 6 and frame["error"].notna().all()
    monkeypatch.undo()
    assert cli.main(["run", "--quiet", str(params)]) == 0  # the rerun retries the failed samples
    assert "6 computed, 0 skipped" in capsys.readouterr().out


def test_a_sample_another_run_holds_is_left_to_it_until_its_lease_ends(tmp_path):
    store = ResultStore(tmp_path / "s.sqlite")
    cell = Cell(model="tiny:llava", method="vanilla", ratio=0.0, seed=0, dataset="synthetic", dimension="ocr", limit=1)
    key = evaluate_cell(cell, store, progress=False).config_hash  # the hash does not depend on the limit
    bigger = dataclasses.replace(cell, limit=3)
    second = "test-s0-ocr-00001"
    assert store.claim(key, second, owner="other-host:1:t", ttl_s=600) == "claimed"
    held = evaluate_cell(bigger, store, progress=False)
    assert (held.n_skipped, held.n_new, held.n_busy) == (1, 1, 1)
    assert second not in store.done_ids(key)
    assert store.claim(key, second, owner="other-host:1:t", ttl_s=-1) == "claimed"  # its lease has run out
    freed = evaluate_cell(bigger, store, progress=False)
    assert (freed.n_skipped, freed.n_new, freed.n_busy) == (2, 1, 0)
    assert store.done_ids(key) == {"test-s0-ocr-00000", second, "test-s0-ocr-00002"}


def test_two_concurrent_runs_compute_each_sample_once(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    params = _write_params(tmp_path, dimensions=["ocr"], limit=4)  # 3 cells x 4 samples
    cmd = [sys.executable, "-m", "unipb_core.cli", "run", "--quiet", str(params)]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab"]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    computed = [int(re.search(r"samples: (\d+) computed", out).group(1)) for out, _ in outs]
    assert sum(computed) == 12, outs
    frame = ResultStore(tmp_path / "store.sqlite").frame()
    assert len(frame) == 12 and frame["error"].isna().all()


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


def test_the_grid_bar_counts_computed_skipped_failed_and_estimates_from_computed_samples(capsys):
    bar = grid._Progress(10, "grid", enabled=True)
    bar("skipped", 6)
    assert "left" not in bar.bar.postfix  # nothing computed yet: no rate to estimate from
    bar("computed")
    bar("failed")
    bar.close()
    final = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert "8/10" in final and "computed=1" in final and "skipped=6" in final and "failed=1" in final
    assert "left=" in final and "busy" not in final


def test_unipb_run_prints_one_summary_row_per_cell_with_new_and_skipped(tmp_path, capsys):
    """The one cell summary (runner.cell_summary) behind `unipb run`: a re-run evaluates nothing new."""
    from unipb_core import cli

    params = _write_params(tmp_path, dimensions=["ocr"], limit=2)
    n_cells = len(expand(load_params(params)))
    assert cli.main(["run", str(params), "--quiet"]) == 0
    first = capsys.readouterr().out.splitlines()
    assert cli.main(["run", str(params), "--quiet"]) == 0
    second = capsys.readouterr().out.splitlines()
    assert second[0] == f"{n_cells} cells, {n_cells} already complete -> {tmp_path / 'store.sqlite'} (executor: local)"
    header = first[1].split()
    assert header[:8] == ["model", "method", "ratio", "seed", "dataset", "samples", "new", "errors"]
    assert {"accuracy", "parsed", "kept_visual", "prefill_ms"} <= set(header)
    rows = [line.split() for line in first[2 : 2 + n_cells]]
    assert len(rows) == n_cells and all(row[5:7] == ["2", "2"] for row in rows)  # every sample new
    assert all(line.split()[5:7] == ["2", "0"] for line in second[2 : 2 + n_cells])  # all skipped on the re-run
    assert first[2 + n_cells :] == [
        f"samples: {2 * n_cells} computed, 0 skipped (already stored), 0 failed; {n_cells} cells"
    ]
    assert second[2 + n_cells :] == [
        f"samples: 0 computed, {2 * n_cells} skipped (already stored), 0 failed; {n_cells} cells"
    ]
