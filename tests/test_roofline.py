"""The roofline ideal: hand-computed bytes and times, device lookup, and the memory-bound speed-up gap."""

from __future__ import annotations

import pytest
import torch

from unipb_core.flops import LMDims, ideal_speedup, prefill_flops
from unipb_core.roofline import (
    PEAKS,
    DevicePeak,
    device_peak,
    prefill_bytes,
    prefill_roofline_time,
    roofline_speedup,
    roofline_time,
    weight_elements,
)

TINY = LMDims(hidden=8, intermediate=16, n_layers=2, n_heads=2, n_kv_heads=1, head_dim=4, vocab=10)
LLAMA7B = LMDims(hidden=4096, intermediate=11008, n_layers=32, n_heads=32, n_kv_heads=32, head_dim=128, vocab=32000)


def test_tiny_bytes_by_hand():
    # Per layer: q 8*8, k 8*4, v 8*4, o 8*8 -> 192; MLP 3*8*16 = 384 -> 576; x2 layers + lm_head 8*10 = 1232.
    assert weight_elements(TINY) == 1232
    # KV written: 2 * n * 1 * 4 per layer, n = 5 and 3 -> 40 + 24 = 64 elements; bf16: 2 bytes each.
    assert prefill_bytes(TINY, [5, 3], elem=2) == (1232 + 64) * 2


def test_llama7b_weights_read_floor_on_h200():
    # 32 * (4*4096^2 + 3*4096*11008) + 4096*32000 = 6,607,077,376 weights -> 13.21 GB in bf16 -> 2.75 ms at 4.8 TB/s,
    # the "weights-read floor ~2.8 ms" measured per decode step on an H200.
    assert weight_elements(LLAMA7B) == 6_607_077_376
    t = prefill_roofline_time(LLAMA7B, [1] * 32, PEAKS["h200"], torch.bfloat16)
    assert t == pytest.approx(6_607_077_376 * 2 / 4.8e12, rel=1e-4)


def test_llama7b_64_vs_640_tokens_on_h200_is_memory_bound_when_short():
    h200 = PEAKS["h200"]
    # 640 tokens: per layer 2*640*202,375,168 + 4*32*640^2*128 = 265.75 GFLOP; x32 + lm_head -> 8.504 TFLOP
    # -> 8.60 ms at 989 TFLOP/s, above the 2.76 ms memory time: compute-bound.
    flops_640 = 32 * (2 * 640 * 202_375_168 + 4 * 32 * 640**2 * 128) + 2 * 4096 * 32000
    assert prefill_flops(LLAMA7B, [640] * 32) == flops_640
    t640 = prefill_roofline_time(LLAMA7B, [640] * 32, h200, torch.bfloat16)
    assert t640 == pytest.approx(flops_640 / 989e12)
    # 64 tokens: 0.84 ms of compute but 13.21 GB of weights + 33.6 MB of KV -> 2.76 ms: memory-bound.
    t64 = prefill_roofline_time(LLAMA7B, [64] * 32, h200, torch.bfloat16)
    bytes_64 = (6_607_077_376 + 32 * 2 * 64 * 32 * 128) * 2
    assert t64 == pytest.approx(bytes_64 / 4.8e12)
    assert prefill_flops(LLAMA7B, [64] * 32) / 989e12 < t64
    flops_ideal = ideal_speedup(LLAMA7B, [640] * 32, [64] * 32)
    roof = roofline_speedup(LLAMA7B, [640] * 32, [64] * 32, h200, torch.bfloat16)
    assert flops_ideal == pytest.approx(10.2, abs=0.1)
    assert roof == pytest.approx(t640 / t64) and roof == pytest.approx(3.12, abs=0.02)


def test_compute_bound_roofline_equals_flops_ideal():
    # On a device with a huge bandwidth both runs are compute-bound: the two ideals agree.
    fast_memory = DevicePeak("x", 1e12, 1e12, 1e30, "test")
    assert roofline_speedup(LLAMA7B, [600] * 32, [200] * 32, fast_memory, torch.float32) == pytest.approx(
        ideal_speedup(LLAMA7B, [600] * 32, [200] * 32)
    )


def test_float32_uses_the_fp32_peak():
    h100 = PEAKS["h100"]
    t32 = prefill_roofline_time(LLAMA7B, [4096] * 32, h100, torch.float32)
    assert t32 == pytest.approx(prefill_flops(LLAMA7B, [4096] * 32) / 67e12)
    with pytest.raises(ValueError, match="no peak figure for dtype"):
        h100.flops_for(torch.int8)


def test_device_names_as_torch_reports_them():
    assert device_peak("NVIDIA H200").name == "h200"
    assert device_peak("NVIDIA H100 80GB HBM3").name == "h100"
    assert device_peak("NVIDIA A100-SXM4-80GB").name == "a100"
    two = device_peak("cpu", threads=2)
    assert two.flops_32bit == 2 * PEAKS["cpu"].flops_32bit and two.bytes_per_s == 2 * PEAKS["cpu"].bytes_per_s
    with pytest.raises(ValueError, match="no peak figures for device 'NVIDIA T4'"):
        device_peak("NVIDIA T4")


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="one per decoder layer"):
        prefill_bytes(TINY, [5], elem=2)
    with pytest.raises(ValueError, match="elem"):
        prefill_bytes(TINY, [5, 3], elem=0)
    with pytest.raises(ValueError, match="peaks must be positive"):
        roofline_time(1.0, 1.0, 0.0, 1.0)
    assert roofline_time(10.0, 4.0, 5.0, 1.0) == 4.0 and roofline_time(10.0, 1.0, 5.0, 1.0) == 2.0
