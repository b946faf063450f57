"""Host-bound share of the prefill (``benchmarks/host_bound.py``): the interval arithmetic, and the prefill range
that ``instrument`` records for it (on CPU the share itself is not defined; a GPU session runs the last test)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is a folder of scripts

from benchmarks import harness, host_bound  # noqa: E402
from unipb_core.instrument import PREFILL_RANGE  # noqa: E402
from unipb_core.pruning import PruningEngine, get  # noqa: E402


def test_busy_length_unions_overlaps_and_clips_to_the_window():
    intervals = [(1.0, 3.0), (2.0, 4.0), (6.0, 7.0), (6.5, 6.8), (-5.0, 0.5), (9.0, 20.0)]
    assert host_bound.busy_length(intervals, (0.0, 10.0)) == pytest.approx(0.5 + 3.0 + 1.0 + 1.0)
    assert host_bound.busy_length(intervals, (2.5, 6.6)) == pytest.approx(1.5 + 0.6)
    assert host_bound.busy_length([], (0.0, 1.0)) == 0.0
    assert host_bound.busy_length([(3.0, 5.0)], (0.0, 2.0)) == 0.0  # entirely outside


def test_idle_share_over_several_windows():
    kernels = [(0.0, 2.0), (1.0, 3.0), (10.0, 11.0)]
    # windows 0..4 (busy 3) and 10..14 (busy 1): 4 of 8 idle
    assert host_bound.idle_share([(0.0, 4.0), (10.0, 14.0)], kernels) == pytest.approx(0.5)
    assert host_bound.idle_share([(0.0, 1.0)], [(0.0, 5.0)]) == 0.0  # the GPU never idles
    assert host_bound.idle_share([(0.0, 1.0)], []) == 1.0
    assert math.isnan(host_bound.idle_share([], kernels))


def test_prefill_share_reads_the_prefill_range_and_gpu_events_only():
    events = [
        ("generate", False, 0.0, 100.0),
        (PREFILL_RANGE, False, 10.0, 30.0),
        ("aten::mm", False, 12.0, 13.0),  # a host op: not device activity
        ("gemm_kernel", True, 11.0, 16.0),
        ("Memcpy HtoD", True, 15.0, 20.0),
        ("decode_kernel", True, 40.0, 50.0),  # after the prefill
    ]
    assert host_bound.prefill_idle_share(events) == pytest.approx(1 - 9.0 / 20.0)


def test_off_cuda_the_share_is_not_measured():
    assert math.isnan(host_bound.measure(lambda: pytest.fail("must not run"), torch.device("cpu")))


def test_instrument_marks_the_prefill_for_the_profiler(tiny_cache):
    model = tiny_model("llava")
    sample = harness.load_samples(1, 336)[0]
    with PruningEngine(model, get("fastv"), 0.778, seed=0) as engine, torch.inference_mode():
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
            harness.run_once(model, engine, sample, new_tokens=3)
    events = host_bound.events_of(profile)
    (window,) = [(a, b) for name, _, a, b in events if name == PREFILL_RANGE]
    attention = [a for name, _, a, _ in events if name == "aten::scaled_dot_product_attention"]
    after = [a for a in attention if a > window[1]]
    # Two decode steps (3 new tokens, the first from the prefill) run after the range, one attention per layer;
    # the prefill's own (vision tower and decoder) run inside it.
    assert len(after) == 2 * model.num_layers
    assert all(window[0] <= a for a in attention) and len(attention) - len(after) >= model.num_layers


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_host_bound_share_of_a_real_prefill(tiny_cache):
    model = tiny_model("llava")
    sample = harness.load_samples(1, 336)[0]
    with torch.inference_mode():
        harness.run_once(model, None, sample, new_tokens=2)  # warm-up
        share = host_bound.measure(lambda: harness.run_once(model, None, sample, new_tokens=2), model.device)
    assert 0.0 <= share <= 1.0
