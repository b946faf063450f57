"""The report's opening section, generated from records whose facts are known by construction."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from test_plots import default_like_records

from unipb_core.analysis import run_overview
from unipb_core.analysis.overview import shipped_manifest

MANIFEST = {"llava": {"parameters": 1_507_904, "config": {"steps": 4000}}, "internvl": {"parameters": 1_485_760},
            "qwen2_5_vl": {"parameters": 1_640_000}}  # fmt: skip


def _env(device: str = "cpu", **extra) -> dict:
    return {"device": device, "device_name": "AMD EPYC" if device == "cpu" else "NVIDIA H100", "cpu_cores": 2,
            "dtype": "float32", "attn_implementation": "sdpa", "torch": "2.13.0", "transformers": "5.24.0",
            "git_commit": "8c933e3c303c6e84e6dde0d29c29e2dd85de1b35", "git_dirty": False, **extra}  # fmt: skip


def _cells(records: pd.DataFrame, env=_env) -> pd.DataFrame:
    hashes = records["config_hash"].drop_duplicates()
    return pd.DataFrame({"config_hash": hashes, "environment": [env() for _ in hashes]})


@pytest.fixture(scope="module")
def records() -> pd.DataFrame:
    return default_like_records()


def test_default_run_says_models_data_ratios_seeds_and_device(records):
    ov = run_overview(records, _cells(records), manifest=MANIFEST, n_grid_cells=1152)
    assert ov.title == (
        "15 pruning methods and 2 random baselines on 3 tiny models, over the synthetic suite (6 dimensions)"
    )
    models = ov.models.set_index("model")
    assert models.loc["tiny:llava", "parameters"] == 1_507_904 and models.loc["tiny:llava", "size"] == "1.51 M"
    assert not models["real_data"].any()
    assert "synthetic suite only (train split, 4000 steps)" in models.loc["tiny:llava", "trained_on"]
    assert list(ov.data["n_min"]) == [10] * 6 and list(ov.data["n_cells"]) == [192] * 6
    text = ov.markdown
    assert text.startswith("## What was run, and how to read it")
    assert "11,520 sample records in 1,152 of the grid's 1,152 cells" in text
    assert "66.7 %, 77.8 %, 88.9 % (of 144 visual tokens: 48 / 32 / 16 kept)" in text
    assert "random baselines at 0, 1, 2, every other method at 0" in text
    assert "**Device**: CPU AMD EPYC, 2 cores; **dtype** float32; **attention** sdpa." in text
    assert "code 8c933e3c30." in text
    assert "**n = 10**" in text and "±0.31" in text  # 1.96 * sqrt(0.25 / 10)
    assert "never trained on real images" in text and "not one of the study's ten datasets" in text
    assert not re.search(r"\bnan\b|\bNone\b|[\[\]{}]", text), "a raw Python value leaked into the text"


def test_parameter_count_recorded_with_the_run_wins_over_the_manifest(records):
    ov = run_overview(records, _cells(records, lambda: _env(parameters=123_456_789)), manifest=MANIFEST)
    assert set(ov.models["size"]) == {"123 M"}


def test_real_checkpoints_local_directories_and_random_inits_are_told_apart():
    base = default_like_records().query("dimension == 'ocr' and model == 'tiny:llava'")
    renamed = {"tiny:llava": "llava-hf/llava-1.5-7b-hf"}
    frames = [base.replace({"model": renamed}), base.replace({"model": {"tiny:llava": "/data/ckpt"}}),
              base.replace({"model": {"tiny:llava": "tiny-random:qwen2_5_vl"}})]  # fmt: skip
    ov = run_overview(pd.concat(frames), manifest={})
    models = ov.models.set_index("model")
    assert models.loc["llava-hf/llava-1.5-7b-hf", "real_data"] is True
    assert models.loc["llava-hf/llava-1.5-7b-hf", "size"] == "7 B (from the name)"
    assert models.loc["/data/ckpt", "real_data"] is None and models.loc["/data/ckpt", "size"] == "unknown"
    assert models.loc["tiny-random:qwen2_5_vl", "trained_on"] == "nothing: random initialisation"
    assert "**Device**: not recorded" in ov.markdown


def test_short_cells_errors_mixed_devices_and_zero_vanilla_are_reported(records):
    recs = records.copy()
    ocr = recs["dataset"] == "synthetic/ocr"
    recs = recs.drop(recs.index[ocr & (recs["sample_id"] == "test-s0-ocr-00009") & (recs["method"] == "fastv")])
    recs.loc[recs.index[recs["dataset"] == "synthetic/math"][0], "error"] = "CUDA out of memory"
    zero = (recs["model"] == "tiny:internvl") & ocr & (recs["method"] == "vanilla")
    recs.loc[zero, "correct"] = 0.0
    hashes = list(recs["config_hash"].drop_duplicates())
    cells = pd.DataFrame({"config_hash": hashes, "environment": [_env("cuda:0" if i < 5 else "cpu")
                                                                 for i in range(len(hashes))]})  # fmt: skip
    ov = run_overview(recs, cells, manifest=MANIFEST)
    data = ov.data.set_index("dataset")
    assert data.loc["synthetic/ocr", "n_min"] == 9 and data.loc["synthetic/ocr", "n_max"] == 10
    assert data.loc["synthetic/math", "n_errors"] == 1 and data.loc["synthetic/math", "n_min"] == 9
    text = ov.markdown
    assert "| `synthetic/ocr` | ocr | 9-10 |" in text
    assert "1 row(s) with an error or no score excluded" in text
    assert f"**Device**: CPU AMD EPYC, 2 cores ({len(hashes) - 5:,} cells), cuda:0 (NVIDIA H100) (5 cells);" in text
    assert "The unpruned model scores 0 for `tiny:internvl` on `synthetic/ocr`" in text
    assert "**n = 9**" in text


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="missing column"):
        run_overview(pd.DataFrame({"model": ["tiny:llava"]}))


def test_the_shipped_manifest_knows_each_tiny_family():
    manifest = shipped_manifest()
    assert {"llava", "internvl", "qwen2_5_vl"} <= set(manifest)
    assert all(isinstance(entry["parameters"], int) for entry in manifest.values())


def test_a_checkpoint_shows_the_steps_it_reached(records):
    manifest = {"llava": {"config": {"steps": 4000}, "stopped_at_step": 3000}}
    models = run_overview(records, _cells(records), manifest=manifest).models.set_index("model")
    assert "train split, 3000 steps" in models.loc["tiny:llava", "trained_on"]
