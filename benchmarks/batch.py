"""Throughput and latency vs batch size, for the unpruned model and each method, and what pruning buys at each.

Run: ``python benchmarks/batch.py`` (``make bench-batch``; ``--help`` lists the flags). For each model, each
method (``vanilla`` = no engine) and each batch size, the same samples run in batches through the runner's path
(``build_batch`` -> ``PruningEngine.begin_batch`` -> ``generate``, a fixed number of new tokens), after one
warm-up batch; ``--repeats`` rounds, interleaved over the configurations, median per batch. Writes
``reports/benchmarks/batch_speed.csv``, one row per model x method x batch size:

- ``throughput`` (samples/s) = samples / the summed wall time of their batches (``total``: preprocessing
  included, as the runner times it);
- ``latency_s`` = median wall time of one batch (what each of its samples waits), ``prefill_s`` its median
  time to first token;
- ``speedup`` = the method's throughput / vanilla's at the same batch size; ``batch_gain`` = the throughput /
  the same method's at batch size 1.

On a CPU the real architectures are width- and depth-reduced (``--reduce``; their visual-token counts stay
real); on a GPU they run full size in bf16 (``--reduce 1``).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable for `benchmarks.*`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd
import torch

from benchmarks import architectures, harness
from unipb_core.instrument import instrument
from unipb_core.pruning import PruningEngine, available, get
from unipb_core.timing import SampleTimer

VANILLA = "vanilla"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--models", default="llava-1.5-7b", help="comma-separated: " + ", ".join(architectures.model_names())
    )
    p.add_argument("--methods", default="all", help="comma-separated registry keys, or 'all' (vanilla always runs)")
    p.add_argument("--ratio", type=float, default=88.9, help="percent of visual tokens removed (default 88.9)")
    p.add_argument("--batch-sizes", default="1,2,4,8", help="comma-separated batch sizes (default 1,2,4,8)")
    p.add_argument("--samples", type=int, default=8, help="samples per configuration (default 8; >= the largest B)")
    p.add_argument("--new-tokens", type=int, default=4, help="tokens generated per sample (default 4)")
    p.add_argument("--repeats", type=int, default=2, help="timed rounds (default 2)")
    p.add_argument("--reduce", type=int, default=None, help="width/depth divisor (default 8 on CPU, 1 on GPU)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = leave as is)")
    p.add_argument("--out", default="reports/benchmarks/batch_speed.csv")
    return p.parse_args(argv)


def ratio_of(percent: float) -> float:
    """66.7/77.8/88.9 mean 2/3, 7/9, 8/9 exactly (as in benchmarks/run.py)."""
    exact = {66.7: 2 / 3, 77.8: 7 / 9, 88.9: 8 / 9}
    return exact.get(round(percent, 1), percent / 100)


def time_batch(model, engine: PruningEngine | None, samples: list, new_tokens: int) -> dict[str, float]:
    """Wall time of one batch through the runner's path (``total``, ``prefill``), garbage collector paused."""
    timer = SampleTimer(model.device)
    keys = [s.key for s in samples]
    enabled = gc.isenabled()
    gc.disable()
    try:
        if engine is not None:
            engine.begin_batch(keys, timer=timer)
        with timer.interval("total"):
            inputs = model.build_batch([([s.image], s.prompt) for s in samples])
            if engine is not None:
                engine.begin_batch(keys, timer=timer, grids=model.batch_grids(inputs))
            with instrument(model, timer), torch.inference_mode():
                model.model.generate(
                    **inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, num_beams=1,
                    pad_token_id=model.tokenizer.pad_token_id,
                )  # fmt: skip
    finally:
        if enabled:
            gc.enable()
    return timer.result()


def measure(model, methods: list[str], ratio: float, sizes: list[int], samples: list, args) -> list[dict]:
    engines = {m: None if m == VANILLA else PruningEngine(model, get(m), ratio, seed=0) for m in methods}
    configs = [(m, b) for m in methods for b in sizes]
    times: dict[tuple[str, int], list[dict[str, float]]] = {c: [] for c in configs}
    for round_ in range(args.repeats + 1):  # round 0 warms up (one batch per configuration)
        for method, size in configs:
            engine = engines[method]
            with engine if engine is not None else _null():
                batches = [samples[i : i + size] for i in range(0, len(samples), size)]
                for batch in batches[:1] if round_ == 0 else batches:
                    result = time_batch(model, engine, batch, args.new_tokens)
                    if round_:
                        times[(method, size)].append({**result, "n": len(batch)})
            gc.collect()
    rows = []
    for method, size in configs:
        runs = times[(method, size)]
        total = sum(r["total"] for r in runs)
        rows.append({
            "model": model.spec, "method": method, "ratio": 0.0 if method == VANILLA else ratio, "batch_size": size,
            "samples": sum(r["n"] for r in runs), "throughput": sum(r["n"] for r in runs) / total,
            "latency_s": statistics.median(r["total"] for r in runs),
            "prefill_s": statistics.median(r["prefill"] for r in runs),
        })  # fmt: skip
    return rows


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return None


def derive(frame: pd.DataFrame) -> pd.DataFrame:
    """``speedup`` vs vanilla at the same batch size; ``batch_gain`` vs the same method at batch size 1."""
    keys = ["model", "batch_size"]
    vanilla = frame[frame["method"] == VANILLA].set_index(keys)["throughput"]
    frame["speedup"] = frame["throughput"] / frame.set_index(keys).index.map(vanilla).to_numpy()
    first = frame.sort_values("batch_size").groupby(["model", "method"])["throughput"].transform("first")
    frame["batch_gain"] = frame["throughput"] / first
    return frame


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        harness.set_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    reduce = args.reduce or (1 if device.type == "cuda" else 8)
    methods = [VANILLA] + (available() if args.methods == "all" else [m for m in args.methods.split(",") if m])
    sizes = sorted({int(b) for b in args.batch_sizes.split(",")})
    if args.samples < max(sizes):
        raise SystemExit(f"--samples {args.samples} is below the largest batch size {max(sizes)}")
    rows = []
    for name in args.models.split(","):
        model = architectures.build(name, reduce=reduce, device=device, dtype=dtype)
        samples = harness.load_samples(args.samples, architectures.image_size(name))
        rows += measure(model, methods, ratio_of(args.ratio), sizes, samples, args)
        del model
        gc.collect()
    frame = derive(pd.DataFrame(rows))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    print(f"device: {device} ({dtype}), reduce {reduce}, {args.new_tokens} new tokens, {args.samples} samples")
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
