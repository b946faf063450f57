"""The roofline ideal: the shortest time the hardware allows for a prefill, and the speed-up that follows.

The FLOPs ideal (``unipb_core.flops.ideal_speedup``) assumes time proportional to arithmetic. At short
sequences a forward is not compute-bound: every weight has to be read from memory once, whatever the token
count, so cutting tokens below the point where compute and memory traffic balance buys nothing. The roofline
bound states both limits::

    time >= max(FLOPs / peak compute, bytes moved / memory bandwidth)

Bytes moved by one prefill forward (``prefill_bytes``), at ``elem`` bytes per element of the model's dtype:

- every decoder weight matrix read once: per layer ``h·(H·d) + 2·h·(Hkv·d) + (H·d)·h + 3·h·I`` (q, k, v,
  o; gate, up, down), plus the lm_head ``h·V`` (read whole although only the last position is projected);
- the KV cache written: ``2·n·Hkv·d`` per layer with ``n`` tokens (decode reads it back, so it must land in
  memory).

Left out, as in the FLOPs model: norms, biases, RoPE tables, the embedding lookup (``n`` rows of ``V``), and
the vision tower, which runs the same with and without pre-LLM pruning. Activations (the hidden states and
MLP intermediates between kernels) are left out too: a fused or tiled implementation can keep them on chip,
so counting them would make the bound depend on the kernels. Leaving traffic out only lowers the bound, so it
stays a lower bound on time and the roofline speed-up an upper bound on what pruning can buy.

Peak figures (``PEAKS``) are the vendors' dense (no structured sparsity) numbers: a GPU counts as
compute-bound at its tensor-core peak in 16-bit dtypes and at its non-tensor FP32 peak in float32 (torch does
not use TF32 for matmuls by default). The CPU entry is a nominal single core, not a measured one; pass a
measured figure with ``DevicePeak(...)`` or the benchmark's ``--peak-tflops`` / ``--peak-gbps``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from unipb_core.flops import LMDims, _check_counts, prefill_flops


@dataclass(frozen=True)
class DevicePeak:
    """Peak arithmetic rate (FLOP/s) per dtype class and memory bandwidth (bytes/s) of one device."""

    name: str
    flops_16bit: float  # bf16 / fp16 dense, tensor cores on a GPU
    flops_32bit: float  # fp32, no TF32
    bytes_per_s: float
    source: str

    def flops_for(self, dtype: torch.dtype) -> float:
        """Peak FLOP/s for matmuls in ``dtype`` (bf16 / fp16 or fp32)."""
        if dtype in (torch.bfloat16, torch.float16):
            return self.flops_16bit
        if dtype == torch.float32:
            return self.flops_32bit
        raise ValueError(f"no peak figure for dtype {dtype}; accepted: bfloat16, float16, float32")


# Vendor datasheets (SXM parts, dense). The CPU row is one AVX2 core at ~3 GHz: 2 FMA units x 8 fp32 lanes x
# 2 FLOPs x 3e9 = 96 GFLOP/s (16-bit has no faster path on such a core), and ~20 GB/s of DRAM bandwidth one
# core can draw; the benchmark multiplies it by its thread count.
PEAKS: dict[str, DevicePeak] = {
    p.name: p
    for p in (
        DevicePeak("a100", 312e12, 19.5e12, 2.039e12, "NVIDIA A100 SXM4 80GB datasheet"),
        DevicePeak("h100", 989e12, 67e12, 3.35e12, "NVIDIA H100 SXM5 datasheet"),
        DevicePeak("h200", 989e12, 67e12, 4.8e12, "NVIDIA H200 SXM datasheet"),
        DevicePeak("cpu", 96e9, 96e9, 20e9, "nominal: one AVX2 core at 3 GHz, ~20 GB/s"),
    )
}


def device_peak(device_name: str, threads: int = 1) -> DevicePeak:
    """The ``PEAKS`` row for a device name as torch reports it (``NVIDIA H200``, ``NVIDIA A100-SXM4-80GB``).

    ``cpu`` (or any name containing it) gives the CPU row scaled by ``threads`` (compute and bandwidth).
    An unknown device raises: pass its figures as a ``DevicePeak`` instead.
    """
    low = device_name.lower()
    for key in ("h200", "h100", "a100"):
        if key in low:
            return PEAKS[key]
    if "cpu" in low:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        c = PEAKS["cpu"]
        return DevicePeak(f"cpu x{threads}", c.flops_16bit * threads, c.flops_32bit * threads,
                          c.bytes_per_s * threads, c.source)  # fmt: skip
    raise ValueError(f"no peak figures for device {device_name!r}; known: {', '.join(PEAKS)} (or pass a DevicePeak)")


def weight_elements(dims: LMDims) -> int:
    """Elements of the decoder's weight matrices plus the lm_head (what one forward reads at least once)."""
    q_out, kv_out = dims.n_heads * dims.head_dim, dims.n_kv_heads * dims.head_dim
    per_layer = dims.hidden * (2 * q_out + 2 * kv_out) + 3 * dims.hidden * dims.intermediate
    return dims.n_layers * per_layer + dims.hidden * dims.vocab


def prefill_bytes(dims: LMDims, tokens_per_layer: Sequence[int], elem: int) -> float:
    """Bytes a prefill forward must move: weights read once plus the KV cache written (module docstring)."""
    _check_counts(dims, tokens_per_layer, "tokens_per_layer")
    if elem < 1:
        raise ValueError(f"elem (bytes per element) must be >= 1, got {elem}")
    kv = sum(2 * n * dims.n_kv_heads * dims.head_dim for n in tokens_per_layer)
    return float((weight_elements(dims) + kv) * elem)


def roofline_time(flops: float, nbytes: float, peak_flops: float, bytes_per_s: float) -> float:
    """``max(flops / peak_flops, nbytes / bytes_per_s)`` in seconds."""
    if peak_flops <= 0 or bytes_per_s <= 0:
        raise ValueError(f"peaks must be positive, got {peak_flops} FLOP/s and {bytes_per_s} B/s")
    return max(flops / peak_flops, nbytes / bytes_per_s)


def prefill_roofline_time(dims: LMDims, tokens_per_layer: Sequence[int], peak: DevicePeak, dtype: torch.dtype) -> float:
    """Roofline lower bound on the prefill forward's time on ``peak`` in ``dtype``."""
    elem = torch.empty((), dtype=dtype).element_size()
    return roofline_time(prefill_flops(dims, tokens_per_layer), prefill_bytes(dims, tokens_per_layer, elem),
                         peak.flops_for(dtype), peak.bytes_per_s)  # fmt: skip


def roofline_speedup(
    dims: LMDims,
    base_tokens_per_layer: Sequence[int],
    pruned_tokens_per_layer: Sequence[int],
    peak: DevicePeak,
    dtype: torch.dtype,
) -> float:
    """Prefill speed-up if both runs reached the roofline.

    It equals ``flops.ideal_speedup`` where both runs are compute-bound and falls towards 1 where reading the
    weights dominates (short sequences, high compute-to-bandwidth devices); it never exceeds the larger of the
    FLOPs ratio and the bytes ratio.
    """
    base = prefill_roofline_time(dims, base_tokens_per_layer, peak, dtype)
    return base / prefill_roofline_time(dims, pruned_tokens_per_layer, peak, dtype)
