"""What pruning buys on this machine: every method x ratio on tiny and real-shaped models, in one process.

Run: ``python benchmarks/run.py`` (what ``make bench`` runs; ``--help`` lists the flags). For each model it
times the unpruned baseline and every registered method at 0 / 66.7 / 77.8 / 88.9 % on a fixed set of
samples (warm-up, interleaved repeats, medians; see ``benchmarks/harness.py``) and writes

- ``reports/benchmarks/pruning_speed.csv``: one row per model x method x ratio (times in seconds);
- ``reports/benchmarks/targets.csv``: each target of docs/benchmarks.md, measured / target;
- ``reports/benchmarks/pruning_speed.png``: measured vs FLOPs-ideal speed-up, and the prefill breakdown;

each row also carries the device's peak figures (``unipb_core.roofline.PEAKS``, or ``--peak-tflops`` /
``--peak-gbps``), from which ``report.derive`` computes the roofline-ideal speed-up beside the FLOPs one;

and prints the 88.9 % table and the targets. On a CPU the real architectures are width- and depth-reduced
(``--reduce``) but keep their real visual-token counts; on a GPU they run full size in bf16.

``--decode`` picks the decode mode (``eager``, ``static``, ``graphs``: ``unipb_core.models.decoding``), recorded in
every row; on CUDA each row also carries the prefill's host-bound share from an untimed profiled round.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable for `benchmarks.*`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd
import torch

from benchmarks import architectures, harness, report
from unipb_core.environment import environment_record
from unipb_core.models.decoding import DECODE_MODES
from unipb_core.pruning import available
from unipb_core.roofline import device_peak

CPU_REDUCE = 8  # width and depth divisor of the real architectures on a CPU (1 = full size, the GPU default)


def attention_backend(requested: str, device: torch.device, dtype: torch.dtype, decode: str = "eager") -> str:
    """``auto``: FlashAttention 2 on CUDA in half precision when installed, else SDPA; SDPA with a static cache
    (the pruning engine refuses FlashAttention there: it keeps generate's 2-D mask, which a pruned cache does not
    match)."""
    if requested != "auto":
        return requested
    from transformers.utils import is_flash_attn_2_available

    half = dtype in (torch.float16, torch.bfloat16)
    flash = device.type == "cuda" and half and decode == "eager" and is_flash_attn_2_available()
    return "flash_attention_2" if flash else "sdpa"


def sdpa_backends(device: torch.device) -> str:
    """Which SDPA kernels torch may pick (CUDA), recorded because it decides how attention scales."""
    if device.type != "cuda":
        return "cpu"
    cuda = torch.backends.cuda
    flags = {
        "flash": cuda.flash_sdp_enabled(),
        "mem_efficient": cuda.mem_efficient_sdp_enabled(),
        "cudnn": cuda.cudnn_sdp_enabled(),
        "math": cuda.math_sdp_enabled(),
    }
    return "+".join(k for k, v in flags.items() if v)


def peak_figures(
    device: torch.device, device_name: str, threads: int, dtype: torch.dtype, tflops: float | None, gbps: float | None
) -> dict[str, object]:
    """The roofline's peaks for this run: the ``PEAKS`` row of the device, each figure overridable.

    A device without a row and without both overrides gets NaN peaks (the roofline columns are then NaN).
    """
    try:
        peak = device_peak("cpu" if device.type == "cpu" else device_name, threads=max(threads, 1))
        flops, bw, name = peak.flops_for(dtype), peak.bytes_per_s, peak.name
    except ValueError:
        flops, bw, name = float("nan"), float("nan"), "unknown"
    if tflops is not None:
        flops, name = tflops * 1e12, f"{name} (override)"
    if gbps is not None:
        bw, name = gbps * 1e9, name if name.endswith("(override)") else f"{name} (override)"
    return {"peak_device": name, "peak_flops": flops, "peak_bytes_per_s": bw}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--models",
        default=",".join(architectures.model_names()),
        help="comma-separated: tiny-random:<family> and/or " + ", ".join(architectures.ARCHITECTURES),
    )
    p.add_argument("--methods", default="all", help="comma-separated registry keys, or 'all' (default)")
    p.add_argument(
        "--internvl-tiles",
        type=int,
        default=1,
        help="InternVL3 dynamic tiling, max tiles of a 4:3 image (+ a thumbnail): 1 (default) = one "
        "448-px tile, 256 tokens; 6 (VLMEvalKit, MME) = 1792; 12 = 3328",
    )
    p.add_argument(
        "--qwen-image",
        type=int,
        default=None,
        help="Qwen2.5-VL square image side in px under the study's 1280-4096-token bounds "
        "(448 -> 1296 tokens, 1344 -> 2304, 1792 -> 4096); default: 896 px fixed, 1024 tokens",
    )
    p.add_argument(
        "--preset",
        choices=["study-timing"],
        default=None,
        help="study-timing: the study's timing run, InternVL3-8B with 6-tile tiling (MME in "
        "VLMEvalKit), random_pre/random_intra/fitprune/fastv/divprune/gprune at 0 and 88.9 %%; "
        "overrides --models, --methods, --ratios, --internvl-tiles",
    )
    p.add_argument(
        "--ratios",
        default="0,66.7,77.8,88.9",
        help="percent of visual tokens removed; 66.7/77.8/88.9 mean 2/3, 7/9, 8/9 exactly",
    )
    p.add_argument(
        "--zero-per-method",
        action="store_true",
        help="also run every method at ratio 0 with its engine attached (the hooks' own cost)",
    )
    p.add_argument("--samples", type=int, default=2, help="samples of the offline synthetic suite (default 2)")
    p.add_argument("--warmup", type=int, default=1, help="discarded rounds, every cell on the first sample (default 1)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds; medians over them (default 3)")
    p.add_argument("--new-tokens", type=int, default=4, help="fixed decode length (min = max new tokens)")
    p.add_argument(
        "--decode",
        choices=DECODE_MODES,
        default="eager",
        help="eager (default: a growing cache), static (a fixed-size cache, eager steps), graphs (the static "
        "cache and generate's compiled decode step: CUDA graphs on a GPU)",
    )
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    p.add_argument("--dtype", default="auto", help="auto (bfloat16 on cuda, float32 on cpu) or a torch dtype")
    p.add_argument(
        "--attn",
        default="auto",
        help="auto (flash_attention_2 if installed on cuda with --decode eager, else sdpa), sdpa, eager, "
        "flash_attention_2",
    )
    p.add_argument(
        "--reduce",
        type=int,
        default=None,
        help=f"width/depth divisor of the real architectures (default 1 on cuda, {CPU_REDUCE} on cpu)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default 1 on cpu: no OpenMP oversubscription on a shared "
        "machine; torch's default on cuda; 0: torch's default)",
    )
    p.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="peak compute (TFLOP/s, in the run's dtype) for the roofline; default: the device's row "
        "of unipb_core.roofline.PEAKS",
    )
    p.add_argument(
        "--peak-gbps",
        type=float,
        default=None,
        help="peak memory bandwidth (GB/s) for the roofline; default: the device's PEAKS row",
    )
    p.add_argument("--seed", type=int, default=0, help="weights and random methods")
    p.add_argument("--out", default="reports/benchmarks", help="output folder")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    args = p.parse_args(argv)
    if args.preset == "study-timing":
        for key, value in architectures.STUDY_TIMING.items():
            setattr(args, key, value)
    return args  # fmt: skip


def _ratios(text: str) -> list[float]:
    exact = {"66.7": 2 / 3, "77.8": 7 / 9, "88.9": 8 / 9}
    return [exact.get(t.strip(), float(t) / 100.0) for t in text.split(",") if t.strip()]


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = parse_args(argv)
    visual = architectures.Visual(args.internvl_tiles, args.qwen_image)
    started = time.perf_counter()
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype) if args.dtype != "auto" else (
        torch.bfloat16 if device.type == "cuda" else torch.float32)  # fmt: skip
    attn = attention_backend(args.attn, device, dtype, args.decode)
    reduce = args.reduce if args.reduce is not None else (1 if device.type == "cuda" else CPU_REDUCE)
    threads = harness.set_threads(args.threads if args.threads is not None else (1 if device.type == "cpu" else 0))
    methods = available() if args.methods == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
    cells = harness.cells_for(methods, _ratios(args.ratios), args.zero_per_method)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def say(msg: str) -> None:
        print(f"[bench {time.perf_counter() - started:6.0f} s] {msg}", file=sys.stderr, flush=True)

    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        model = architectures.build(name, reduce, device, dtype, attn, args.seed, visual)
        env = environment_record(model.model)
        say(f"{model.spec}: built ({sum(p.numel() for p in model.model.parameters()) / 1e6:.0f} M parameters, "
            f"{attn}); {len(cells)} cells x {args.samples} samples x {args.warmup}+{args.repeats} rounds")  # fmt: skip
        samples = harness.load_samples(args.samples, architectures.image_size(name, visual))
        load_before = os.getloadavg()[0]  # the machine's 1-minute load average: is it shared right now?
        meta = {
            "model": model.spec, "family": model.family, "reduce": reduce if name in architectures.ARCHITECTURES else 1,
            "device": str(device), "device_name": env["device_name"], "cpu_name": env["cpu_name"],
            "dtype": env["dtype"], "attn_implementation": env["attn_implementation"], "sdpa": sdpa_backends(device),
            "threads": threads, "samples": args.samples, "warmup": args.warmup, "repeats": args.repeats,
            "new_tokens": args.new_tokens, "decode": args.decode, "torch": env["torch"],
            "transformers": env["transformers"],
            "git_commit": env["git_commit"], "git_dirty": env["git_dirty"],
            **peak_figures(device, env["device_name"], threads, dtype, args.peak_tflops, args.peak_gbps),
        }  # fmt: skip
        for row in harness.time_model(model, cells, samples, warmup=args.warmup, repeats=args.repeats,
                                      new_tokens=args.new_tokens, seed=args.seed, decode=args.decode,
                                      progress=say):  # fmt: skip
            rows.append({**meta, "load_avg_before": load_before, "load_avg_after": os.getloadavg()[0], **row})
        del model
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()

    df = report.derive(pd.DataFrame(rows))
    targets = report.check_targets(df)
    df.to_csv(out / "pruning_speed.csv", index=False)
    targets.to_csv(out / "targets.csv", index=False)
    (out / "pruning_speed.md").write_text(report.markdown(df, targets))
    (out / "environment.json").write_text(json.dumps(environment_record(device=device, dtype=dtype), indent=1))
    if not args.no_plot:
        report.plot(df, out / "pruning_speed.png")
    print(report.table(df))
    print("\nTargets (measured / target; 'n/a': stated for another setting, shown for context)")
    print(report.targets_table(targets))
    say(f"done; wrote {out}/pruning_speed.csv, targets.csv" + ("" if args.no_plot else ", pruning_speed.png"))
    return df


if __name__ == "__main__":
    main()
