"""The speed benchmark's machinery runs and writes well-formed rows (no assertions on speed)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

# benchmarks/ is a folder of scripts at the repository root, not part of the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import architectures, harness, report, run  # noqa: E402
from unipb_core.flops import LMDims  # noqa: E402
from unipb_core.models import FAMILIES, internvl, qwen2_5_vl  # noqa: E402


def test_run_writes_rows_targets_and_table(tmp_path, capsys):
    df = run.main(["--models", "tiny-random:llava", "--methods", "random_pre,fastv", "--ratios", "0,88.9",
                   "--samples", "1", "--warmup", "0", "--repeats", "1", "--new-tokens", "2", "--device", "cpu",
                   "--out", str(tmp_path), "--no-plot"])  # fmt: skip
    assert list(df["method"]) == ["vanilla", "random_pre", "fastv"]
    assert df["error"].isna().all()
    assert list(df["stage"]) == ["none", "pre", "intra"]
    for _, row in df.iterrows():
        assert row["t_prefill"] <= row["t_total"] and row["t_prefill"] + row["t_decode"] <= row["t_total"]
        assert row["t_llm_prefill"] + (0.0 if math.isnan(row["t_method"]) else row["t_method"]) <= row["t_prefill"]
        assert row["tokens_generated"] == 2 and row["n_visual"] == 144 and row["peak_mem_bytes"] > 0
    vanilla, pre = df.iloc[0], df.iloc[1]
    assert vanilla["ideal_speedup"] == 1.0 and pre["ideal_speedup"] > 1.0
    assert pre["visual_kept_mean"] == 16  # 144 * (1 - 8/9)
    assert pre["speedup_vs_ideal"] == pytest.approx(pre["llm_prefill_speedup"] / pre["ideal_speedup"])
    # The CPU row of the peak table at one thread; a roofline ideal beside the FLOPs one in every cell.
    assert vanilla["peak_device"] == "cpu x1" and vanilla["bytes_moved"] > 0
    assert vanilla["roofline_speedup"] == 1.0 and 1.0 <= pre["roofline_speedup"] <= pre["ideal_speedup"]
    assert pre["speedup_vs_roofline"] == pytest.approx(pre["llm_prefill_speedup"] / pre["roofline_speedup"])
    written = pd.read_csv(tmp_path / "pruning_speed.csv")
    assert len(written) == 3 and {"t_llm_prefill", "flops", "cpu_name", "attn_implementation"} <= set(written)
    targets = pd.read_csv(tmp_path / "targets.csv")
    assert set(targets["target"]) >= {"harness_share", "method_share (pre)", "method_share (intra)"}
    out = capsys.readouterr().out
    assert "random_pre" in out and "Targets" in out
    assert (df["decode"] == "eager").all() and df["host_bound_share"].isna().all()  # not defined on a CPU


def test_static_decode_mode_is_run_and_recorded(tmp_path, capsys):
    df = run.main(["--models", "tiny-random:llava", "--methods", "random_pre,fastv", "--ratios", "88.9",
                   "--samples", "1", "--warmup", "0", "--repeats", "1", "--new-tokens", "3", "--device", "cpu",
                   "--decode", "static", "--out", str(tmp_path), "--no-plot"])  # fmt: skip
    assert df["error"].isna().all() and (df["decode"] == "static").all()
    assert (df["tokens_generated"] == 3).all() and (df["decode_per_token"] > 0).all()
    assert "decode static" in capsys.readouterr().out
    assert (pd.read_csv(tmp_path / "pruning_speed.csv")["decode"] == "static").all()


def test_plot_is_written(tmp_path):
    rows = []
    for method, stage, t, flops in (("vanilla", "none", 1.0, 8.0), ("a", "pre", 0.4, 2.0), ("b", "intra", 0.5, 3.0)):
        rows.append({"model": "m", "method": method, "ratio": 0.0 if method == "vanilla" else 8 / 9,
                     "stage": stage, "t_llm_prefill": t, "t_prefill": t + 0.2, "t_total": t + 0.5, "t_decode": 0.2,
                     "t_vision": 0.1, "t_method": 0.01, "t_harness": 0.001, "flops": flops})  # fmt: skip
    df = report.derive(pd.DataFrame(rows))
    assert df.loc[1, "llm_prefill_speedup"] == pytest.approx(2.5) and df.loc[1, "ideal_speedup"] == 4.0
    assert report.plot(df, tmp_path / "p.png").stat().st_size > 0


def test_roofline_columns_and_target_by_hand(tmp_path):
    # Peaks 10 FLOP/s and 1 B/s. vanilla: compute 100/10 = 10 s, memory 8/1 = 8 s -> 10 s (compute-bound);
    # pruned: compute 20/10 = 2 s, memory 6 s -> 6 s (memory-bound). Roofline speed-up 10/6, FLOPs ideal 5.
    rows = [{"model": "qwen2.5-vl-7b", "method": m, "ratio": r, "stage": st, "t_llm_prefill": t, "t_prefill": t,
             "t_total": t, "t_decode": 0.0, "t_harness": 0.0, "t_vision": 0.0, "flops": f, "bytes_moved": b,
             "peak_flops": 10.0, "peak_bytes_per_s": 1.0, "device": "cuda:0", "reduce": 1, "n_visual": 1024.0}
            for m, r, st, t, f, b in (("vanilla", 0.0, "none", 12.0, 100.0, 8.0),
                                      ("random_pre", 8 / 9, "pre", 8.0, 20.0, 6.0))]  # fmt: skip
    df = report.derive(pd.DataFrame(rows))
    pre = df.iloc[1]
    assert df.iloc[0]["roofline_s"] == 10.0 and not df.iloc[0]["memory_bound"]
    assert pre["roofline_s"] == 6.0 and pre["memory_bound"]
    assert pre["ideal_speedup"] == 5.0 and pre["roofline_speedup"] == pytest.approx(10 / 6)
    assert pre["speedup_vs_roofline"] == pytest.approx(1.5 / (10 / 6))  # measured 12/8 = 1.5 -> 0.9
    assert pre["roofline_fraction"] == pytest.approx(6 / 8)
    t = report.check_targets(df).set_index("target").loc["speedup_vs_roofline (pre, 88.9 %)"]
    assert t["target_value"] == 0.8 and t["applies"] and t["met"]  # 1024 visual tokens on a GPU, full size
    # Without peak figures the roofline columns are NaN and no roofline target is reported.
    bare = report.derive(pd.DataFrame(rows).drop(columns=["peak_flops", "peak_bytes_per_s"]))
    assert bare["roofline_speedup"].isna().all()
    assert "speedup_vs_roofline (pre, 88.9 %)" not in set(report.check_targets(bare)["target"])
    assert report.plot(df, tmp_path / "roofline.png").stat().st_size > 0
    assert "h200: 989 TFLOP/s, 4800 GB/s" in report.table(df.assign(peak_device="h200", peak_flops=989e12,
                                                                     peak_bytes_per_s=4.8e12, device_name="x",
                                                                     dtype="bf16", attn_implementation="sdpa",
                                                                     t_method=0.0, peak_mem_bytes=1))  # fmt: skip


def test_peak_figures_lookup_and_overrides():
    import torch

    h200 = run.peak_figures(torch.device("cuda"), "NVIDIA H200", 0, torch.bfloat16, None, None)
    assert h200 == {"peak_device": "h200", "peak_flops": 989e12, "peak_bytes_per_s": 4.8e12}
    cpu = run.peak_figures(torch.device("cpu"), "AMD EPYC", 2, torch.float32, None, 50.0)
    assert cpu["peak_flops"] == 2 * 96e9 and cpu["peak_bytes_per_s"] == 50e9 and "override" in cpu["peak_device"]
    unknown = run.peak_figures(torch.device("cuda"), "NVIDIA T4", 0, torch.float16, None, None)
    assert unknown["peak_device"] == "unknown" and math.isnan(unknown["peak_flops"])


@pytest.mark.parametrize("name", list(architectures.ARCHITECTURES))
def test_architectures_keep_real_shapes_and_token_counts(name):
    arch = architectures.ARCHITECTURES[name]
    _, tiny = FAMILIES[arch.family].build_tiny(0)
    full = LMDims.from_config(arch.config(tiny.tokenizer, 1))
    expected = {"llava-1.5-7b": (4096, 11008, 32, 32, 32), "internvl3-8b": (3584, 18944, 28, 28, 4),
                "qwen2.5-vl-7b": (3584, 18944, 28, 28, 4)}[name]  # fmt: skip
    assert (full.hidden, full.intermediate, full.n_layers, full.n_heads, full.n_kv_heads) == expected
    assert full.head_dim == 128
    reduced = LMDims.from_config(arch.config(tiny.tokenizer, 8))
    assert reduced.head_dim == 128 and reduced.n_heads % reduced.n_kv_heads == 0 and reduced.n_layers < full.n_layers
    processor = arch.processor(tiny)
    image = Image.new("RGB", (arch.image_size, arch.image_size), "white")
    content = [{"type": "image"}, {"type": "text", "text": "What is shown?"}]
    prompt = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                           tokenize=False)  # fmt: skip
    ids = processor(images=[image], text=prompt, return_tensors="pt")["input_ids"][0]
    assert int((ids == processor.image_token_id).sum()) == arch.n_visual


def test_realistic_visual_token_counts():
    _, tiny_internvl = FAMILIES["internvl"].build_tiny(0)
    wide = Image.new("RGB", architectures.TILED_IMAGE)  # 4:3
    for tiles, n_tiles in ((1, 1), (6, 7), (12, 13)):  # 1 tile; 3 x 2 + thumbnail; 4 x 3 + thumbnail
        processor = internvl.real_processor(tiny_internvl, max_tiles=tiles)
        assert processor.image_processor(wide, return_tensors="pt")["pixel_values"].shape[0] == n_tiles
    _, tiny_qwen = FAMILIES["qwen2_5_vl"].build_tiny(0)
    study = qwen2_5_vl.real_processor(tiny_qwen, study_pixels=True)
    for side, tokens in ((448, 1296), (1344, 2304), (1792, 4096)):  # upscaled to >= 1280 tokens, capped at 4096
        grid = study.image_processor(Image.new("RGB", (side, side)), return_tensors="pt")["image_grid_thw"][0]
        assert int(grid.prod()) // 4 == tokens
    with pytest.raises(ValueError, match="max_tiles"):
        internvl.real_processor(tiny_internvl, max_tiles=0)
    with pytest.raises(ValueError, match="internvl_tiles"):
        architectures.Visual(internvl_tiles=0)


def test_visual_flags_and_study_preset():
    args = run.parse_args(["--preset", "study-timing"])
    assert (args.models, args.internvl_tiles, args.ratios) == ("internvl3-8b", 6, "0,88.9")
    assert args.methods.split(",") == ["random_pre", "random_intra", "fitprune", "fastv", "divprune", "gprune"]
    visual = architectures.Visual(6, 1344)
    assert architectures.image_size("internvl3-8b", visual) == architectures.TILED_IMAGE
    assert architectures.image_size("qwen2.5-vl-7b", visual) == 1344
    assert architectures.image_size("llava-1.5-7b", visual) == 336
    assert architectures.image_size("internvl3-8b") == 448  # defaults unchanged: one tile
    samples = harness.load_samples(1, (160, 120))
    assert samples[0].image.size == (160, 120)


def test_tiled_internvl_runs_through_the_engine(tmp_path):
    df = run.main(["--models", "internvl3-8b", "--internvl-tiles", "6", "--reduce", "16", "--methods", "random_pre",
                   "--ratios", "0,88.9", "--samples", "1", "--warmup", "0", "--repeats", "1", "--new-tokens", "1",
                   "--device", "cpu", "--out", str(tmp_path), "--no-plot"])  # fmt: skip
    assert df["error"].isna().all() and set(df["model"]) == {"internvl3-8b/reduce16/tiles6"}
    assert (df["n_visual"] == 7 * 256).all()
    assert df.iloc[1]["visual_kept_mean"] == pytest.approx(7 * 256 / 9, abs=1)
