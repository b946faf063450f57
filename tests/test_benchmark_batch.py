"""``benchmarks/batch.py``: throughput and latency vs batch size, and the pruning speed-up at each batch size."""

from __future__ import annotations

import pandas as pd

from benchmarks import batch


def test_batch_benchmark_writes_throughput_latency_and_speedups(tmp_path):
    out = tmp_path / "batch_speed.csv"
    args = ["--models", "tiny-random:llava", "--methods", "random_pre", "--batch-sizes", "1,2", "--samples", "2",
            "--repeats", "1", "--new-tokens", "2", "--out", str(out)]  # fmt: skip
    assert batch.main(args) == 0
    frame = pd.read_csv(out)
    assert sorted(zip(frame["method"], frame["batch_size"], strict=True)) == [
        ("random_pre", 1), ("random_pre", 2), ("vanilla", 1), ("vanilla", 2)
    ]  # fmt: skip
    assert (frame["samples"] == 2).all() and (frame["throughput"] > 0).all()
    assert (frame[frame["method"] == "vanilla"]["speedup"] == 1).all()
    assert (frame[frame["batch_size"] == 1]["batch_gain"] == 1).all()
    # throughput = samples / summed batch time; at batch size 2 the one batch's latency is that whole time
    two = frame[frame["batch_size"] == 2]
    assert ((two["samples"] / two["throughput"]) - two["latency_s"]).abs().max() < 1e-9
