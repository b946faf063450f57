"""Per-sample named intervals, peak memory, and repeat statistics for the efficiency runs.

The caller decides where intervals start and stop; this module only measures. The intervals the runner uses
(see ``docs/timing.md``) are ``preprocess``, ``vision``, ``method``, ``prefill`` (time to first token),
``llm_prefill`` (decoder layers only), ``decode`` and ``total``, but any name works.

On CUDA every boundary records a ``torch.cuda.Event`` and nothing synchronises inside a timed window, so
measuring does not change what is measured (a sync in a forward hook would serialise the host and device).
The events are read once, in ``result()``, after one synchronisation. Only the boundaries of the intervals in
``sync_intervals`` (default ``total`` and ``prefill``) synchronise, which gives those windows clean edges: no
earlier queued work overlaps them and the host cannot run ahead of them, so they read as the wall-clock time
a user waiting for the answer (or the first token) sees. On CPU, ``time.perf_counter`` is used.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

INTERVALS = ("preprocess", "vision", "method", "prefill", "llm_prefill", "decode", "total")
SYNC_INTERVALS = ("total", "prefill")

_CLEAR_REFS = "/proc/self/clear_refs"
_STATUS = "/proc/self/status"


def _is_cuda(device: Any) -> bool:
    return device is not None and str(device).startswith("cuda")


def _sync(device: Any) -> None:
    import torch

    torch.cuda.synchronize(device)


class SampleTimer:
    """Accumulating named intervals for one sample, plus its generated-token count and peak memory.

    Creating the timer resets the device's peak-memory counter, so make one per sample, right before it.

    Parameters
    ----------
    device : str or torch.device, optional
        ``"cuda"`` / ``"cuda:1"`` / a CUDA ``torch.device`` selects CUDA events; anything else (default
        ``None``) uses ``clock`` on the host.
    sync_intervals : tuple of str
        Intervals whose start and stop synchronise the device (CUDA only).
    clock : callable
        Host clock in seconds for CPU timing; injectable so tests can be exact.

    Attributes
    ----------
    tokens_generated : int
        Set by the caller after generation (the timer cannot see tokens).
    counts : dict of str to int
        How many times each interval was entered.
    memory_source : str
        Which peak-memory counter this timer reset and reads (see ``memory_source``).

    Notes
    -----
    An interval may be entered many times (``method`` once per pruning stage, ``decode`` once per step);
    its durations add up and ``counts[name]`` says how often it ran. Intervals never entered are absent
    from ``result()``, so "not measured" is never confused with 0 s. Entering an interval that is already
    open is an error: re-entrant use would double count.

    Examples
    --------
    >>> timer = SampleTimer()
    >>> with timer.interval("total"):
    ...     with timer.interval("method"):
    ...         pass
    >>> sorted(timer.result())
    ['method', 'total']
    """

    def __init__(
        self,
        device: Any = None,
        sync_intervals: tuple[str, ...] = SYNC_INTERVALS,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.device = device
        self.cuda = _is_cuda(device)
        self.sync_intervals = tuple(sync_intervals)
        self.clock = clock
        self.tokens_generated = 0
        self.counts: dict[str, int] = {}
        self._open: dict[str, Any] = {}
        self._spans: dict[str, list[tuple[Any, Any]]] = {}
        self.memory_source = reset_peak_memory(device)

    def _mark(self) -> Any:
        if not self.cuda:
            return self.clock()
        import torch

        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.device))
        return event

    def start(self, name: str) -> None:
        """Open interval ``name`` (for forward hooks, where a ``with`` block cannot span the work)."""
        if name in self._open:
            raise RuntimeError(f"interval {name!r} is already open; stop it before starting it again")
        if self.cuda and name in self.sync_intervals:
            _sync(self.device)
        self._open[name] = self._mark()

    def stop(self, name: str) -> None:
        """Close interval ``name`` and add its duration to the total for that name."""
        if name not in self._open:
            raise RuntimeError(f"interval {name!r} was stopped but is not open (open: {sorted(self._open)})")
        end = self._mark()
        if self.cuda and name in self.sync_intervals:
            _sync(self.device)
        self._spans.setdefault(name, []).append((self._open.pop(name), end))
        self.counts[name] = self.counts.get(name, 0) + 1

    def is_open(self, name: str) -> bool:
        """Whether interval ``name`` is running now (e.g. to pause it around nested work)."""
        return name in self._open

    @contextlib.contextmanager
    def interval(self, name: str) -> Iterator[None]:
        """Time the ``with`` block as one entry of interval ``name`` (stopped even if the block raises)."""
        self.start(name)
        try:
            yield
        finally:
            self.stop(name)

    def result(self) -> dict[str, float]:
        """Return seconds per interval, summed over its entries; synchronises the device once on CUDA."""
        if self._open:
            raise RuntimeError(f"intervals still open: {sorted(self._open)}; stop them before reading results")
        if self.cuda and self._spans:
            _sync(self.device)
            return {name: sum(a.elapsed_time(b) for a, b in spans) / 1000.0 for name, spans in self._spans.items()}
        return {name: sum(b - a for a, b in spans) for name, spans in self._spans.items()}

    def peak_memory(self) -> tuple[int, str]:
        """Return ``(bytes, source)``: the peak since this timer was created (see ``memory_source``)."""
        return read_peak_memory(self.device, self.memory_source), self.memory_source


def _proc_hwm_bytes() -> int | None:
    try:
        with open(_STATUS) as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def memory_source(device: Any = None) -> str:
    """Name the peak-memory source used for ``device``, without resetting anything.

    ``"cuda_max_memory_allocated"``: tensor allocations on the GPU (caching-allocator slack excluded).
    ``"proc_vmhwm"``: Linux, the process RSS high-water mark, reset by writing 5 to ``/proc/self/clear_refs``.
    ``"getrusage_maxrss"``: elsewhere, the process-lifetime RSS peak; it cannot be reset, so it only grows
    across samples. Both CPU sources measure the whole process, model weights included.
    """
    if _is_cuda(device):
        return "cuda_max_memory_allocated"
    if os.access(_CLEAR_REFS, os.W_OK) and _proc_hwm_bytes() is not None:
        return "proc_vmhwm"
    return "getrusage_maxrss"


def reset_peak_memory(device: Any = None) -> str:
    """Reset the peak-memory counter for ``device``; return the source that was reset (see ``memory_source``)."""
    source = memory_source(device)
    if source == "cuda_max_memory_allocated":
        import torch

        torch.cuda.reset_peak_memory_stats(device)
    elif source == "proc_vmhwm":
        try:
            with open(_CLEAR_REFS, "w") as fh:
                fh.write("5")
        except OSError:  # e.g. a seccomp or read-only /proc that os.access did not reveal
            return "getrusage_maxrss"
    return source


def read_peak_memory(device: Any, source: str) -> int:
    """Return the peak in bytes since the last reset, read from ``source`` (a ``memory_source`` name)."""
    if source == "cuda_max_memory_allocated":
        import torch

        return int(torch.cuda.max_memory_allocated(device))
    if source == "proc_vmhwm":
        hwm = _proc_hwm_bytes()
        if hwm is not None:
            return hwm
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in kilobytes on Linux and in bytes on macOS.
    return int(maxrss if sys.platform == "darwin" else maxrss * 1024)


def repeat_timed(fn: Callable[[], Mapping[str, float]], warmup: int, repeats: int) -> dict[str, dict[str, float]]:
    """Run ``fn`` ``warmup`` times (discarded), then ``repeats`` times, and summarise each interval.

    Warm-ups absorb one-off costs (CUDA context and kernel selection, allocator growth, lazy imports) that
    would otherwise inflate the first measurement; the median and the 10th / 90th percentiles are robust to
    the occasional slow outlier that a mean would smear over every method.

    Parameters
    ----------
    fn : callable
        One timed run; returns seconds per interval, typically ``SampleTimer.result()``.
    warmup, repeats : int
        Number of discarded and of measured runs (``repeats >= 1``).

    Returns
    -------
    dict
        ``{interval: {"median", "p10", "p90", "n"}}``; ``n`` is the number of measured runs that reported
        the interval. Percentiles interpolate linearly (``numpy.percentile`` default).
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}")
    for _ in range(warmup):
        fn()
    values: dict[str, list[float]] = {}
    for _ in range(repeats):
        for name, seconds in fn().items():
            values.setdefault(name, []).append(float(seconds))
    return {
        name: {
            "median": float(np.median(vals)),
            "p10": float(np.percentile(vals, 10)),
            "p90": float(np.percentile(vals, 90)),
            "n": len(vals),
        }
        for name, vals in values.items()
    }


def flat_timings(stats: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Flatten ``repeat_timed`` output into one ``{name: seconds}`` dict for a store record.

    The median keeps the plain interval name (so the store's ``t_total`` etc. columns hold medians) and the
    spread goes under ``<name>_p10`` / ``<name>_p90``.
    """
    flat: dict[str, float] = {}
    for name, s in stats.items():
        flat[name] = s["median"]
        flat[f"{name}_p10"] = s["p10"]
        flat[f"{name}_p90"] = s["p90"]
    return flat
