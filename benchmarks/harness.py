"""Timed runs of one model under every (method, ratio) cell: warm-up, interleaved repeats, per-cell medians.

One run is one sample through the runner's interval structure (``docs/timing.md``): ``total`` spans
preprocessing and ``generate``; inside it ``preprocess``, then ``prefill`` (time to first token, with
``vision``, ``method`` and ``llm_prefill`` nested in it) and ``decode``. The decode length is fixed
(``min_new_tokens == max_new_tokens``), so random weights time like trained ones.

Runs are interleaved: each round runs every cell on every sample once. On a shared machine a load change
then hits the baseline and the pruned cells alike, instead of whichever cell happened to be running. The
``warmup`` rounds before them run every cell on the first sample only and are discarded: they absorb one-off
costs (allocator growth, kernel selection for each new sequence length, lazy imports). A cell's number is the
per-sample median over its repeats, averaged over the samples (so ``t_total`` times the sample count is the
sample set's total time). ``harness`` is computed per run, ``total - preprocess - prefill - decode``: the
time the benchmark's own glue (engine set-up, hook installation) adds outside the model's intervals; so is
``prefill_other``, ``prefill - vision - method - llm_prefill``.

``decode`` picks how ``generate`` decodes (``unipb_core.models.decoding``: ``eager``, ``static``, ``graphs``); with
``graphs`` the warm-up round also compiles each cell's decode step. On CUDA, after the timed rounds, one untimed
run of each cell on each sample under the profiler gives ``host_bound_share`` (``benchmarks/host_bound.py``).
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from benchmarks import host_bound
from unipb_core import data
from unipb_core.flops import LMDims, prefill_flops
from unipb_core.instrument import instrument
from unipb_core.models import FamilyAdapter
from unipb_core.models.decoding import decoding
from unipb_core.pruning import PruningEngine, get, method_class
from unipb_core.roofline import prefill_bytes
from unipb_core.timing import SampleTimer

VANILLA = "vanilla"
TIMED = ("total", "preprocess", "prefill", "vision", "method", "llm_prefill", "decode", "harness", "prefill_other")


@dataclass(frozen=True)
class Sample:
    """One benchmark input: an image and its prompt, with a key that seeds random methods."""

    key: str
    image: Any
    prompt: str


def load_samples(n: int, image_size: int | tuple[int, int]) -> list[Sample]:
    """The first ``n`` samples of the offline synthetic suite, drawn at ``image_size`` pixels a side.

    A ``(width, height)`` pair draws them square at the larger side and resizes them to that shape (for
    InternVL's tiling, which follows the aspect ratio).
    """
    spec = data.get("synthetic")
    shape = image_size if isinstance(image_size, tuple) else None
    samples = data.load("synthetic", image_size=max(shape) if shape else image_size)[:n]
    if len(samples) < n:
        raise ValueError(f"the synthetic suite has {len(samples)} samples; {n} requested")
    return [Sample(s.id, s.images[0].resize(shape) if shape else s.images[0], spec.to_prompt(s)) for s in samples]


@dataclass(frozen=True)
class Cell:
    """One (method, ratio) configuration; ``vanilla`` is the unpruned model with no engine attached."""

    method: str
    ratio: float

    @property
    def label(self) -> str:
        return VANILLA if self.method == VANILLA else f"{self.method}@{self.ratio:.3f}"


def cells_for(methods: list[str], ratios: list[float], zero_per_method: bool = False) -> list[Cell]:
    """The vanilla baseline (ratio 0), then every method at every ratio above 0.

    With ``zero_per_method`` each method also runs at ratio 0 with its engine attached: nothing is pruned
    (merging methods still merge), so the cell measures what the hooks alone cost.
    """
    return [Cell(VANILLA, 0.0)] + [Cell(m, r) for m in methods for r in ratios if r > 0 or zero_per_method]


def stage_kinds(method: str, n_visual: int, num_layers: int) -> str:
    """``pre``, ``intra`` or ``pre+intra``: where the method's plan acts at the largest ratio (8/9)."""
    if method == VANILLA:
        return "none"
    kinds = {s.kind for s in get(method).plan(n_visual, 8 / 9, num_layers)}
    return "+".join(k for k in ("pre", "intra") if k in kinds) or "none"


def category(method: str) -> str:
    return "baseline" if method == VANILLA else method_class(method).category


def current_memory(device: torch.device) -> int:
    """Bytes in use now: CUDA tensor allocations, or this process's resident set (Linux) on the host."""
    if device.type == "cuda":
        return int(torch.cuda.memory_allocated(device))
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_once(
    model: FamilyAdapter, engine: PruningEngine | None, sample: Sample, new_tokens: int, decode: str = "eager"
) -> dict[str, Any]:
    """Time one sample (the runner's intervals) and return its timings, memory and token accounting.

    The garbage collector is off during the run (as ``timeit`` does): a collection pause would land in
    whichever interval happens to be open; ``time_model`` collects between rounds instead.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _run_once(model, engine, sample, new_tokens, decode)
    finally:
        if enabled:
            gc.enable()


def _run_once(
    model: FamilyAdapter, engine: PruningEngine | None, sample: Sample, new_tokens: int, decode: str
) -> dict[str, Any]:
    device = model.device
    base_memory = current_memory(device)  # read before the timer exists: no file I/O inside a timed window
    timer = SampleTimer(device)
    if engine is not None:
        engine.begin_sample(sample.key, timer=timer)
    with timer.interval("total"):
        with timer.interval("preprocess"):
            inputs = model.build_inputs([sample.image], sample.prompt)
        if engine is not None:
            engine.begin_sample(sample.key, timer=timer, grids=model.visual_grids(inputs))
        with decoding(decode, inputs["input_ids"].shape[1], new_tokens, device) as extra, instrument(model, timer):
            out = model.model.generate(
                **inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, num_beams=1,
                pad_token_id=model.tokenizer.pad_token_id, **extra,
            )  # fmt: skip
    timings = timer.result()
    timings["harness"] = timings["total"] - timings["preprocess"] - timings["prefill"] - timings["decode"]
    # Prefill outside the vision tower, the method and the decoder layers: generate's set-up, embeddings, the
    # placeholder scatter, the engine's pre-LLM gathers and the lm_head on the last position.
    inside = sum(timings.get(k, 0.0) for k in ("vision", "method", "llm_prefill"))
    timings["prefill_other"] = timings["prefill"] - inside
    peak, _ = timer.peak_memory()
    input_ids = inputs["input_ids"]
    n_visual = int(model.visual_mask(input_ids).sum())
    n_text = int(input_ids.shape[1]) - n_visual
    summary = engine.summary() if engine is not None else None
    per_layer = (summary or {}).get("visual_per_layer") or [n_visual] * model.num_layers
    dims = LMDims.from_config(model.text_config)
    counts = [n_text + v for v in per_layer]
    return {
        "timings": timings,
        "peak_mem_bytes": int(peak),
        "act_mem_bytes": max(int(peak) - base_memory, 0),
        "n_visual": n_visual,
        "n_text": n_text,
        "visual_kept_mean": float(np.mean(per_layer)),
        "tokens_generated": int(out.shape[1] - input_ids.shape[1]),
        "flops": prefill_flops(dims, counts),
        # Bytes the prefill must move (weights once + KV written; unipb_core.roofline), for the roofline ideal.
        "bytes_moved": prefill_bytes(dims, counts, model.model.dtype.itemsize),
    }


@contextlib.contextmanager
def attached(engine: PruningEngine | None) -> Iterator[PruningEngine | None]:
    """``with engine:`` for a pruning cell, nothing for the vanilla one (``engine`` is None)."""
    if engine is None:
        yield None
    else:
        with engine:
            yield engine


def _summarise(runs_by_sample: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per-sample median (and 10th / 90th percentiles) over the repeats, then the mean over samples."""
    row: dict[str, Any] = {}
    for name in TIMED:
        per_sample = [[r["timings"][name] for r in runs if name in r["timings"]] for runs in runs_by_sample.values()]
        if not all(per_sample):
            continue  # interval never entered (e.g. no method time for vanilla): absent, not 0
        for stat, fn in (("", np.median), ("_p10", lambda v: np.percentile(v, 10)),
                         ("_p90", lambda v: np.percentile(v, 90))):  # fmt: skip
            row[f"t_{name}{stat}"] = float(np.mean([fn(v) for v in per_sample]))
    runs = [r for rs in runs_by_sample.values() for r in rs]
    row["peak_mem_bytes"] = max(r["peak_mem_bytes"] for r in runs)
    row["act_mem_bytes"] = float(np.median([r["act_mem_bytes"] for r in runs]))
    for key in ("n_visual", "n_text", "visual_kept_mean", "flops", "bytes_moved", "tokens_generated"):
        row[key] = float(np.mean([r[key] for r in runs]))
    row["n_runs"] = len(runs)
    return row


def time_model(
    model: FamilyAdapter,
    cells: list[Cell],
    samples: list[Sample],
    *,
    warmup: int,
    repeats: int,
    new_tokens: int,
    seed: int = 0,
    decode: str = "eager",
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Time every cell on every sample: ``warmup`` discarded rounds, then ``repeats`` interleaved rounds, then (on
    CUDA) one profiled round for the host-bound share.

    Returns one row per cell (see ``_summarise``); a cell whose method raises keeps its error text and is
    left out of later rounds.
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}")
    engines = {
        cell: None if cell.method == VANILLA else PruningEngine(model, get(cell.method), cell.ratio, seed)
        for cell in cells
    }
    runs: dict[Cell, dict[str, list]] = {cell: {s.key: [] for s in samples} for cell in cells}
    errors: dict[Cell, str] = {}
    started = time.perf_counter()
    with torch.inference_mode():
        for round_ in range(warmup + repeats):
            for cell in cells:
                if cell in errors:
                    continue
                try:
                    with attached(engines[cell]) as engine:
                        for sample in samples if round_ >= warmup else samples[:1]:
                            result = run_once(model, engine, sample, new_tokens, decode)
                            if round_ >= warmup:
                                runs[cell][sample.key].append(result)
                except Exception as exc:  # a failing method is reported in its row, never fatal for the table
                    errors[cell] = f"{type(exc).__name__}: {exc} | {traceback.format_exc(limit=3)!r}"
            gc.collect()
            if progress is not None:
                kind = "warm-up" if round_ < warmup else "repeat"
                progress(f"{model.spec}: {kind} round {round_ + 1}/{warmup + repeats} done "
                         f"({time.perf_counter() - started:.0f} s)")  # fmt: skip
        idle = _host_bound(model, cells, engines, samples, new_tokens, decode, errors)
    n_visual = next(iter(runs[cells[0]].values()))[0]["n_visual"] if cells[0] not in errors else 0
    rows = []
    for cell in cells:
        row: dict[str, Any] = {
            "method": cell.method,
            "ratio": cell.ratio,
            "category": category(cell.method),
            "stage": stage_kinds(cell.method, int(n_visual), model.num_layers) if n_visual else "",
        }
        if cell in errors:
            row["error"] = errors[cell]
        else:
            row.update(_summarise(runs[cell]), host_bound_share=idle.get(cell, np.nan))
        rows.append(row)
    return rows


def _host_bound(model, cells, engines, samples, new_tokens, decode, errors) -> dict[Cell, float]:
    """Each cell's host-bound share of the prefill, averaged over the samples: one profiled run each (CUDA only)."""
    if model.device.type != "cuda":
        return {}
    shares: dict[Cell, float] = {}
    for cell in cells:
        if cell in errors:
            continue
        with attached(engines[cell]) as engine:
            per_sample = [host_bound.measure(lambda s=sample: run_once(model, engine, s, new_tokens, decode),
                                             model.device) for sample in samples]  # fmt: skip
        shares[cell] = float(np.mean(per_sample))
    return shares


def set_threads(threads: int) -> int:
    """Set torch's intra-op threads (``0``: leave torch's default); return the count in use."""
    if threads > 0:
        torch.set_num_threads(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return torch.get_num_threads()
