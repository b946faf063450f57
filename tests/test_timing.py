"""SampleTimer, peak memory, repeat_timed, and the environment record (no assertions on absolute speed)."""

from __future__ import annotations

import itertools
import json
import mmap
import time
from types import SimpleNamespace

import pytest
import torch

from unipb_core.environment import environment_record, git_state
from unipb_core.timing import SampleTimer, flat_timings, repeat_timed


def _work(seconds: float = 0.002) -> None:
    time.sleep(seconds)


def _toy_sample(timer: SampleTimer) -> None:
    """The runner's shape: preprocess, then prefill (vision, method, decoder layers), then decode steps."""
    with timer.interval("total"):
        with timer.interval("preprocess"):
            _work()
        with timer.interval("prefill"):
            with timer.interval("vision"):
                _work()
            with timer.interval("method"):
                _work()
            timer.start("llm_prefill")  # as a forward hook would
            _work()
            timer.stop("llm_prefill")
        for _ in range(3):
            with timer.interval("decode"):
                _work(0.001)
        timer.tokens_generated = 3


def test_intervals_nest_on_a_cpu_workload():
    timer = SampleTimer()
    _toy_sample(timer)
    t = timer.result()
    assert set(t) == {"total", "preprocess", "prefill", "vision", "method", "llm_prefill", "decode"}
    assert t["method"] + t["vision"] + t["llm_prefill"] <= t["prefill"]
    assert t["preprocess"] + t["prefill"] + t["decode"] <= t["total"]
    assert timer.counts == {"preprocess": 1, "vision": 1, "method": 1, "llm_prefill": 1, "prefill": 1,
                            "decode": 3, "total": 1}  # fmt: skip
    assert timer.tokens_generated == 3


def test_repeated_intervals_accumulate_exactly():
    ticks = itertools.count()
    timer = SampleTimer(clock=lambda: float(next(ticks)))  # every clock read advances 1 s
    for _ in range(3):
        timer.start("decode")
        timer.stop("decode")
    with timer.interval("method"):
        pass
    assert timer.result() == {"decode": 3.0, "method": 1.0}
    assert timer.counts == {"decode": 3, "method": 1}


def test_interval_misuse_is_an_error():
    timer = SampleTimer()
    timer.start("method")
    with pytest.raises(RuntimeError, match="already open"):
        timer.start("method")
    with pytest.raises(RuntimeError, match="still open"):
        timer.result()
    with pytest.raises(RuntimeError, match="not open"):
        timer.stop("decode")
    with pytest.raises(ZeroDivisionError), timer.interval("vision"):
        _ = 1 / 0
    timer.stop("method")
    assert set(timer.result()) == {"method", "vision"}  # a raising block still closes its interval


def test_cpu_peak_memory_sees_a_large_allocation():
    timer = SampleTimer()
    baseline, source = timer.peak_memory()
    assert source in ("proc_vmhwm", "getrusage_maxrss") and baseline > 0
    # A fresh anonymous mapping, every page written: new resident memory whatever the allocator already holds
    # (np.ones may be served from freed but still resident heap pages, and then the mark does not move).
    block = mmap.mmap(-1, 64 * 2**20)
    for offset in range(0, len(block), mmap.PAGESIZE):
        block[offset] = 1
    block.close()
    peak, _ = timer.peak_memory()
    assert peak >= baseline + 32 * 2**20 or source == "getrusage_maxrss"  # lifetime peak may already be high
    if source == "proc_vmhwm":  # a new timer resets the high-water mark below that peak
        assert SampleTimer().peak_memory()[0] < peak


def test_repeat_timed_excludes_warmups_and_summarises():
    calls = []

    def run():
        calls.append(1)
        if len(calls) <= 2:
            return {"total": 100.0, "warmup_only": 1.0}  # warm-ups: slow, and must not show up
        return {"total": float(len(calls) - 2)}  # 1, 2, 3, 4, 5

    stats = repeat_timed(run, warmup=2, repeats=5)
    assert len(calls) == 7
    assert stats == {"total": {"median": 3.0, "p10": pytest.approx(1.4), "p90": pytest.approx(4.6), "n": 5}}
    assert flat_timings(stats) == {"total": 3.0, "total_p10": pytest.approx(1.4), "total_p90": pytest.approx(4.6)}
    with pytest.raises(ValueError, match="repeats"):
        repeat_timed(run, warmup=0, repeats=0)


def test_repeat_timed_with_a_real_timer():
    def run():
        timer = SampleTimer()
        _toy_sample(timer)
        return timer.result()

    stats = repeat_timed(run, warmup=1, repeats=3)
    assert stats["decode"]["n"] == 3
    assert stats["total"]["p10"] <= stats["total"]["median"] <= stats["total"]["p90"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_events_nest_and_accumulate():
    x = torch.randn(2048, 2048, device="cuda")
    timer = SampleTimer(device="cuda")
    with timer.interval("total"):
        with timer.interval("prefill"):
            for _ in range(2):
                timer.start("method")
                y = x @ x
                timer.stop("method")
        for _ in range(4):
            with timer.interval("decode"):
                y = y @ x
    t = timer.result()
    assert 0 < t["method"] <= t["prefill"] <= t["total"]
    assert timer.counts == {"method": 2, "prefill": 1, "decode": 4, "total": 1}
    peak, source = timer.peak_memory()
    assert source == "cuda_max_memory_allocated" and peak >= 3 * x.numel() * 4


def test_environment_record_is_json_and_reads_the_model():
    model = torch.nn.Linear(4, 4).to(torch.bfloat16)
    model.config = SimpleNamespace(
        _attn_implementation="sdpa", text_config=SimpleNamespace(_attn_implementation="eager")
    )
    env = environment_record(model)
    json.dumps(env)
    assert env["device"] == "cpu" and env["dtype"] == "bfloat16" and env["cpu_cores"] >= 1
    assert env["attn_implementation"] == "sdpa"
    assert env["attn_implementation_by_config"] == {"text_config": "eager"}
    assert env["parameters"] == 4 * 4 + 4  # weight and bias
    assert env["torch"] == torch.__version__ and env["python"].count(".") == 2
    assert env["git_commit"] and env["hostname"] and env["device_name"]
    assert environment_record()["attn_implementation"] == environment_record()["parameters"] == "unknown"


def test_git_state_outside_a_checkout_is_unknown(tmp_path):
    assert git_state(tmp_path) == {"git_commit": "unknown", "git_dirty": None}
