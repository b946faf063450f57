"""Host-bound share of the prefill: the fraction of it during which the GPU runs nothing (issue #22, item 5).

Measured in its own untimed pass (``harness.time_model`` runs it after the timed rounds, so the profiler's cost
never reaches a median): one more run of each cell on each sample under ``torch.profiler`` with CUDA activity.
The window is the prefill range that ``instrument`` records (``PREFILL_RANGE``: from just after the prefill's start
sync, when the GPU is idle, to just after its end sync, when the GPU has finished the prefill); the busy time is
the union of every GPU activity (kernels, copies, memsets) clipped to the window; the share is
``1 - busy / window``. Near 0 the GPU is the bottleneck; near 1 it waits on the host (Python between launches,
host syncs, launch-bound loops of tiny kernels).

The profiler's CUPTI callbacks add a few microseconds to each launch, so the profiled prefill is a little more
host-bound than the timed one: read the share as an upper bound. On a CPU the host is the device and the share is
not defined (NaN).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from unipb_core.instrument import PREFILL_RANGE

Interval = tuple[float, float]


def busy_length(intervals: Iterable[Interval], window: Interval) -> float:
    """Length of the union of ``intervals`` inside ``window`` (overlaps counted once)."""
    lo, hi = window
    clipped = sorted((max(a, lo), min(b, hi)) for a, b in intervals if b > lo and a < hi)
    total, end = 0.0, lo
    for a, b in clipped:
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def idle_share(windows: list[Interval], intervals: list[Interval]) -> float:
    """Share of the ``windows``' total length not covered by ``intervals``; NaN when there is no window."""
    length = sum(b - a for a, b in windows)
    if length <= 0:
        return math.nan
    return 1.0 - sum(busy_length(intervals, w) for w in windows) / length


def events_of(profile: torch.profiler.profile) -> list[tuple[str, bool, float, float]]:
    """``(name, on_gpu, start, end)`` of every event of a finished profile (microseconds, one clock for all)."""
    return [(e.name, e.device_type == torch.autograd.DeviceType.CUDA, e.time_range.start, e.time_range.end)
            for e in profile.events()]  # fmt: skip


def prefill_idle_share(events: list[tuple[str, bool, float, float]]) -> float:
    """Host-bound share of the prefill ranges among ``events`` (``events_of``)."""
    windows = [(a, b) for name, on_gpu, a, b in events if name == PREFILL_RANGE and not on_gpu]
    return idle_share(windows, [(a, b) for _, on_gpu, a, b in events if on_gpu])


def measure(run: Callable[[], Any], device: torch.device) -> float:
    """Run ``run`` once under the profiler and return its prefill's host-bound share (NaN off CUDA)."""
    if device.type != "cuda":
        return math.nan
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as profile:
        run()
    return prefill_idle_share(events_of(profile))
