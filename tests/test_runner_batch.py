"""Batched evaluation in the runner: ``batch_size`` changes speed, never results.

A tiny grid (three families, vanilla + a pre-LLM, an intra-LLM and an encoder-attention method) run at batch
size 4 stores the same predictions, scores and kept tokens, under the same config hashes, as at batch size 1;
its timings carry the per-sample share and the batch label; resume stays per sample.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from unipb_core import grid
from unipb_core.grid import ParamsError, load_params, validate
from unipb_core.runner import length_order
from unipb_core.store import ResultStore

GRID = {
    "models": ["tiny:llava", "tiny:internvl", "tiny:qwen2_5_vl"],
    "datasets": ["synthetic"],
    "dimensions": ["ocr", "hallucination"],
    "methods": ["vanilla", "random_pre", "fastv", "visionzip"],
    "ratios": [0.778],
    "seeds": [0],
    "limit": 5,
}
KEY = ["config_hash", "sample_id"]


def _run(tmp_path: Path, name: str, **extra):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**GRID, "store": str(tmp_path / f"{name}.sqlite"), **extra}))
    results = grid.run(load_params(path), progress=False)
    assert all(r.n_errors == 0 for r in results)
    frame = ResultStore(tmp_path / f"{name}.sqlite").frame()
    return results, frame.sort_values(KEY).reset_index(drop=True)


def test_a_grid_at_batch_4_stores_what_batch_1_stores(tmp_path):
    _, one = _run(tmp_path, "one")
    results, four = _run(tmp_path, "four", batch_size=4)
    cells = grid.expand(load_params(tmp_path / "one.yaml"))
    assert len(one) == len(four) == len(cells) * 5
    for column in ("sample_id", "config_hash", "prediction", "correct", "parsed", "extracted", "n_visual", "n_text",
                   "tokens_generated", "flops"):  # fmt: skip
        assert one[column].tolist() == four[column].tolist(), column
    assert one["kept"].tolist() == four["kept"].tolist()
    assert one["score"].tolist() == four["score"].tolist()
    # Timings: the per-sample share, labelled; each batch's own intervals once, in its first sample's record.
    # (5 samples a cell: a batch of 4, then one sample alone, whose record is a plain batch-1 record.)
    batched = four[[("batch" in t) for t in four["timings"]]]
    assert len(batched) == len(cells) * 4
    labels = [t["batch"] for t in batched["timings"]]
    assert all(b["size"] == 4 for b in labels)
    firsts = [(b, t) for b, t in zip(labels, batched["timings"], strict=True) if "intervals" in b]
    assert len(firsts) == len(cells)
    for label, timings in firsts:
        assert timings["total"] == pytest.approx(label["intervals"]["total"] / label["size"])
    assert all("batch" not in t for t in one["timings"])
    # The grid at batch 4 finds the batch-1 store complete: batch_size is not part of what identifies a cell.
    path = tmp_path / "again.yaml"
    path.write_text(yaml.safe_dump({**GRID, "store": str(tmp_path / "one.sqlite"), "batch_size": 4}))
    again = grid.run(load_params(path), progress=False)
    assert sum(r.n_new for r in again) == 0 and sum(r.n_skipped for r in again) == len(one)


def test_resume_at_batch_size_4_is_per_sample(tmp_path):
    """A store holding some samples of a cell (at another batch size) gets only the missing ones computed."""
    _run(tmp_path, "part", limit=2, methods=["vanilla"], models=["tiny:llava"])
    results, frame = _run(tmp_path, "part", limit=5, methods=["vanilla"], models=["tiny:llava"], batch_size=4)
    n = len(results)
    assert sum(r.n_new for r in results) == n * 3 and sum(r.n_skipped for r in results) == n * 2
    assert not frame.duplicated(KEY).any() and len(frame) == n * 5


@pytest.mark.parametrize("bad", [0, -2, 1.5, "4", True])
def test_batch_size_must_be_a_positive_integer(bad):
    with pytest.raises(ParamsError, match="batch_size.*positive integer"):
        validate({**GRID, "batch_size": bad})


def test_flash_attention_needs_batch_size_1():
    with pytest.raises(ParamsError, match="batch_size.*flash_attention_2"):
        validate({**GRID, "attn_implementation": "flash_attention_2", "batch_size": 2})


def test_contiguous_positions_need_batch_size_1():
    with pytest.raises(ParamsError, match="batch_size.*contiguous.*batch size 1"):
        validate({**GRID, "models": ["tiny:internvl"], "positions": "contiguous", "batch_size": 2})


def test_length_order_groups_similar_lengths_and_is_stable():
    class Spec:
        @staticmethod
        def to_prompt(sample):
            return sample.text

    class S:
        def __init__(self, text, images=1):
            self.text, self.images = text, [None] * images

    samples = [S("aaaa"), S("a"), S("aa", images=2), S("b"), S("aaa")]
    ordered = length_order(samples, Spec())
    assert [s.text for s in ordered] == ["a", "b", "aaa", "aaaa", "aa"]


def test_a_failing_batch_falls_back_to_one_sample_at_a_time(tmp_path, monkeypatch):
    """A batch that raises is retried sample by sample: a bad sample's error is its own, the others are stored;
    when every sample then succeeds, the batch path itself failed, and the run warns."""
    from unipb_core import runner
    from unipb_core.runner import Cell, evaluate_cell

    store = ResultStore(tmp_path / "s.sqlite")
    real = runner.evaluate_sample
    bad = {"id": None}

    def broken_batch(model, spec, samples, engine, max_new):
        raise RuntimeError("simulated batch failure")

    def flaky(model, spec, sample, engine, max_new):
        if sample.id == bad["id"]:
            raise RuntimeError("simulated sample failure")
        return real(model, spec, sample, engine, max_new)

    monkeypatch.setattr(runner, "evaluate_batch", broken_batch)
    monkeypatch.setattr(runner, "evaluate_sample", flaky)
    cell = Cell(model="tiny:llava", method="random_pre", ratio=0.667, seed=0, dataset="synthetic", dimension="ocr",
                limit=3, batch_size=3)  # fmt: skip
    with pytest.warns(RuntimeWarning, match="batch of 3 failed.*simulated batch failure"):
        result = evaluate_cell(cell, store, progress=False)
    assert (result.n_new, result.n_errors) == (3, 0)
    assert len(store.cell_frame(result.config_hash)) == 3
    other = Cell(model="tiny:llava", method="random_pre", ratio=0.778, seed=0, dataset="synthetic", dimension="ocr",
                 limit=3, batch_size=3)  # fmt: skip
    bad["id"] = runner.load_cell_samples(other)[1].id
    result = evaluate_cell(other, store, progress=False)
    frame = store.cell_frame(result.config_hash)
    assert (result.n_new, result.n_errors) == (3, 1)
    errors = frame.set_index("sample_id")["error"]
    assert errors.notna().sum() == 1 and "simulated sample failure" in errors[bad["id"]]
