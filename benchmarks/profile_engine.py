"""Where the pruning engine's hooks spend time, and how many host-sync operations they issue per sample.

Run: ``python benchmarks/profile_engine.py [--model llava-1.5-7b --methods fastv,fitprune ...]``.
Two passes per method, on the same model and sample:

1. *Timing*: the engine's hook entry points (``_on_model``, ``_on_lm``, ``_layer_prefill``,
   ``_layer_decode``, ``_after_lm``) and the helpers they call (``_apply``, ``_select``,
   ``_gather_layer_kwargs``) and the method's ``select`` are wrapped with ``perf_counter``; times are
   inclusive, per sample, medians over the repeats. ``engine_self`` is the hooks' time minus ``select``:
   what the engine itself adds to prefill and decode.
2. *Host syncs*: a ``TorchFunctionMode`` counts the tensor operations that force a device-to-host copy on
   CUDA (``item``, ``tolist``, ``int()``/``bool()``/``float()`` of a tensor, ``nonzero``, ``.cpu()``,
   boolean-mask indexing, ``unique``, ``masked_select``, ``repeat_interleave`` with tensor repeats) and
   attributes each to the innermost wrapped function. On a CPU they cost nothing special, but on a GPU each
   one stalls the host until the queue drains, leaving the device idle while the next kernels launch.
   The mode slows every op down, so it runs in a separate pass from the timing.

Also times ``vanilla`` (no engine) and each method at ratio 0 (hooks installed, nothing pruned) to show the
hooks' cost on the whole ``generate``. Writes ``reports/benchmarks/engine_profile.csv``.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections import defaultdict
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable for `benchmarks.*`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pandas as pd
import torch
from torch.overrides import TorchFunctionMode

from benchmarks import architectures, harness
from unipb_core.pruning import PruningEngine, get

HOOKS = ("_on_model", "_on_lm", "_layer_prefill", "_layer_decode", "_after_lm")
HELPERS = ("_apply", "_select", "_gather_layer_kwargs")
SYNC_OPS = {"item", "tolist", "__int__", "__bool__", "__float__", "__index__", "nonzero", "cpu", "numpy", "unique",
            "masked_select", "argwhere"}  # fmt: skip


def _forces_sync(func, args, kwargs) -> bool:
    name = getattr(func, "__name__", "")
    if name in SYNC_OPS:
        return True
    if name == "to":  # a copy to the host from a device (a CPU run cannot see these: all tensors are on the host)
        target = args[1] if len(args) > 1 else kwargs.get("device")
        return str(target).startswith("cpu") and isinstance(args[0], torch.Tensor) and args[0].device.type != "cpu"
    if name in ("__getitem__", "__setitem__") and len(args) > 1:
        index = args[1] if isinstance(args[1], tuple) else (args[1],)
        return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index)
    if name == "repeat_interleave" and len(args) > 1:
        return isinstance(args[1], torch.Tensor) and kwargs.get("output_size") is None
    return False


class _SyncCounter(TorchFunctionMode):
    def __init__(self, stack: list[str]):
        super().__init__()
        self.stack = stack
        self.counts: dict[str, int] = defaultdict(int)
        self.ops: dict[str, int] = defaultdict(int)  # "function:op" -> count, to see which lines sync

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.stack and _forces_sync(func, args, kwargs):
            self.counts[self.stack[-1]] += 1
            self.ops[f"{self.stack[-1]}:{getattr(func, '__name__', func)}"] += 1
        return func(*args, **kwargs)


class _Probe:
    """Wraps an engine's hooks and helpers (and its method's ``select``) with timers and a call stack."""

    def __init__(self, engine: PruningEngine):
        self.stack: list[str] = []
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        for name in (*HOOKS, *HELPERS):
            setattr(engine, name, self._wrap(name, getattr(engine, name)))
        engine.method.select = self._wrap("select", engine.method.select)

    def _wrap(self, name: str, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            self.stack.append(name)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start
                self.calls[name] += 1
                self.stack.pop()

        return wrapper

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()


def profile_method(model, method: str, ratio: float, sample, new_tokens: int, repeats: int) -> dict:
    """One row: per-sample hook times (medians), sync-op counts, and the run's own intervals."""
    engine = PruningEngine(model, get(method), ratio, 0)
    probe = _Probe(engine)  # wrap before entering: __enter__ registers the (wrapped) bound hooks
    per_run: list[dict[str, float]] = []
    with engine, torch.inference_mode():
        harness.run_once(model, engine, sample, new_tokens)  # warm-up
        for _ in range(repeats):
            probe.reset()
            result = harness.run_once(model, engine, sample, new_tokens)
            per_run.append({**{f"{k}_s": v for k, v in probe.seconds.items()},
                            **{f"t_{k}": v for k, v in result["timings"].items()}})  # fmt: skip
        calls = dict(probe.calls)
        counter = _SyncCounter(probe.stack)
        with counter:
            harness.run_once(model, engine, sample, new_tokens)
    row = {k: float(np.median([r.get(k, 0.0) for r in per_run])) for k in per_run[0]}
    hooks = sum(row.get(f"{h}_s", 0.0) for h in HOOKS)
    row["engine_self_s"] = hooks - row.get("select_s", 0.0)
    row["engine_self_share_of_prefill"] = row["engine_self_s"] / row["t_prefill"]
    row.update({f"{k}_calls": v for k, v in calls.items()})
    row.update({f"{k}_syncs": v for k, v in counter.counts.items()})
    row["engine_syncs"] = sum(v for k, v in counter.counts.items() if k != "select")
    row["method_syncs"] = counter.counts.get("select", 0)
    row["sync_ops"] = " ".join(f"{k}x{v}" for k, v in sorted(counter.ops.items()))
    return {"method": method, "ratio": ratio, **row}


def totals(model, engines: dict[str, PruningEngine | None], sample, new_tokens: int, repeats: int) -> dict:
    """Median ``total`` per configuration; runs interleaved (one warm-up round) so load changes hit all alike."""
    runs: dict[str, list[float]] = {label: [] for label in engines}
    with torch.inference_mode():
        for round_ in range(1 + repeats):
            for label, engine in engines.items():
                with harness.attached(engine):
                    total = harness.run_once(model, engine, sample, new_tokens)["timings"]["total"]
                if round_:
                    runs[label].append(total)
    return {label: float(np.median(v)) for label, v in runs.items()}


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="llava-1.5-7b", help="a benchmarks.architectures name")
    p.add_argument("--reduce", type=int, default=8)
    p.add_argument("--methods", default="random_pre,divprune,fastv,pdrop,fitprune,dart,sparsevlm")
    p.add_argument("--ratio", type=float, default=88.9, help="percent removed (88.9 means 8/9)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--new-tokens", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="reports/benchmarks/engine_profile.csv")
    args = p.parse_args(argv)
    harness.set_threads(args.threads)
    ratio = 8 / 9 if args.ratio == 88.9 else args.ratio / 100
    model = architectures.build(args.model, args.reduce)
    sample = harness.load_samples(1, architectures.image_size(args.model))[0]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    rows = [profile_method(model, m, ratio, sample, args.new_tokens, args.repeats) for m in methods]
    engines = {"vanilla": None, **{m: PruningEngine(model, get(m), 0.0, 0) for m in methods}}
    at_zero = totals(model, engines, sample, args.new_tokens, args.repeats)
    for row in rows:
        row.update(vanilla_total_s=at_zero["vanilla"], ratio0_total_s=at_zero[row["method"]],
                   hooks_overhead_at_ratio0=at_zero[row["method"]] / at_zero["vanilla"] - 1)  # fmt: skip
    df = pd.DataFrame(rows)
    df.insert(0, "model", model.spec)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    cols = ["method", "t_prefill", "t_llm_prefill", "t_method", "engine_self_s", "engine_self_share_of_prefill",
            "_layer_prefill_s", "_layer_decode_s", "_gather_layer_kwargs_s", "engine_syncs", "method_syncs",
            "hooks_overhead_at_ratio0"]  # fmt: skip
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.4g}".format):
        print(df[[c for c in cols if c in df]].to_string(index=False))
    print(f"wrote {out}")
    return df


if __name__ == "__main__":
    main()
