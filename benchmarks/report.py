"""Derived columns, the targets check, the printed table and the plot of a benchmark run.

Every ratio is taken within one model of one run: the measured LLM-prefill speed-up of a cell is the unpruned
(vanilla) cell's ``t_llm_prefill`` over the cell's, measured side by side in the same process; the ideal is
the FLOPs model's ``prefill_flops(vanilla) / prefill_flops(cell)`` for the same inputs. The roofline ideal
(``unipb_core.roofline``) bounds each cell's prefill by ``max(flops / peak_flops, bytes_moved /
peak_bytes_per_s)`` with the device's peak figures recorded in the row; its speed-up is what pruning can buy
on that hardware, far below the FLOPs ideal where the forward is bound by reading the weights. The host-bound
share (``host_bound_share``, CUDA only: ``benchmarks/host_bound.py``) is the part of the prefill during which the
GPU runs nothing; NaN on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

STUDY_RATIOS = (0.0, 2 / 3, 7 / 9, 8 / 9)  # 66.7 / 77.8 / 88.9 %: 576 -> 192 / 128 / 64 tokens
TOP_RATIO = 8 / 9


@dataclass(frozen=True)
class Targets:
    """The issue's targets (measured / target is printed for each)."""

    speedup_vs_ideal_gpu: float = 0.8  # pre-LLM methods at 88.9 %, full-size architecture on a GPU
    speedup_vs_ideal_cpu: float = 0.6  # ... reduced architecture on a CPU
    roofline_long: float = 0.8  # measured / roofline-ideal speed-up, pre-LLM at 88.9 %, GPU, >= 1024 visual tokens
    roofline_576: float = 0.6  # ... 576 to 1023 visual tokens
    method_share_pre: float = 0.01  # method time / prefill time, pre-LLM methods
    method_share_intra: float = 0.03  # ... methods with an intra-LLM stage
    harness_share: float = 0.05  # (total - preprocess - prefill - decode) / total, per run


def derive(df: pd.DataFrame) -> pd.DataFrame:
    """Add speed-ups against the same model's vanilla cell, their ratio to the FLOPs ideal, and shares."""
    df = df.copy()
    for col in ("t_total", "t_harness", "t_prefill", "t_decode", "t_llm_prefill", "t_method", "flops", "error",
                "bytes_moved", "peak_flops", "peak_bytes_per_s", "host_bound_share", "tokens_generated"):  # fmt: skip
        if col not in df:
            df[col] = np.nan
    if "decode" not in df:
        df["decode"] = "eager"  # runs before decode modes existed
    # Roofline: the larger of compute time and memory time at the device's peaks (NaN without peak figures).
    compute = df["flops"].astype(float) / df["peak_flops"].astype(float)
    memory = df["bytes_moved"].astype(float) / df["peak_bytes_per_s"].astype(float)
    df["roofline_s"] = np.fmax(compute, memory).where(compute.notna() & memory.notna())
    df["memory_bound"] = (memory > compute).where(compute.notna() & memory.notna())
    base = df[df["method"] == "vanilla"].set_index("model")
    ref = df["model"].map(lambda m: base.loc[m] if m in base.index else None)

    def of(col: str) -> pd.Series:
        return pd.Series([r[col] if r is not None else np.nan for r in ref], index=df.index, dtype=float)

    df["ideal_speedup"] = of("flops") / df["flops"]
    df["llm_prefill_speedup"] = of("t_llm_prefill") / df["t_llm_prefill"]
    df["speedup_vs_ideal"] = df["llm_prefill_speedup"] / df["ideal_speedup"]
    df["roofline_speedup"] = of("roofline_s") / df["roofline_s"]
    df["speedup_vs_roofline"] = df["llm_prefill_speedup"] / df["roofline_speedup"]
    df["roofline_fraction"] = df["roofline_s"] / df["t_llm_prefill"]  # 1.0: the decoder runs at the hardware limit
    df["prefill_speedup"] = of("t_prefill") / df["t_prefill"]
    df["total_speedup"] = of("t_total") / df["t_total"]
    df["method_share"] = df["t_method"].fillna(0.0) / df["t_prefill"]
    df["harness_share"] = df["t_harness"] / df["t_total"]  # per-run differences, then medians
    # The first new token comes from the prefill; the decode interval holds the other steps.
    steps = (df["tokens_generated"].astype(float) - 1).where(lambda n: n > 0)
    df["decode_per_token"] = df["t_decode"] / steps
    return df


def _is_arch(model: str) -> bool:
    return not model.startswith("tiny")


def check_targets(df: pd.DataFrame, targets: Targets = Targets()) -> pd.DataFrame:
    """One row per target and model: the measured worst case, the target, and whether it is met.

    Speed-up vs ideal: the slowest pre-LLM method at 88.9 %, real-architecture models only (the target is
    stated for them; tiny models are reported alongside as context). Method share: the largest share over
    the pruned ratios, per stage kind. Harness share: the largest over every cell.
    """
    ok = df[df["error"].isna()]
    out = []
    for model, g in ok.groupby("model", sort=False):
        gpu = str(g["device"].iloc[0]).startswith("cuda")
        full = int(g["reduce"].iloc[0]) == 1
        top = g[np.isclose(g["ratio"], TOP_RATIO)]
        pre = top[top["stage"] == "pre"]
        if len(pre):
            worst = pre.loc[pre["speedup_vs_ideal"].idxmin()]
            need = targets.speedup_vs_ideal_gpu if gpu and full else targets.speedup_vs_ideal_cpu
            applies = _is_arch(model) and (full or not gpu)
            out.append(("speedup_vs_ideal (pre, 88.9 %)", model, worst["speedup_vs_ideal"], need, ">=",
                        worst["method"], applies))  # fmt: skip
            if pre["speedup_vs_roofline"].notna().any():
                worst = pre.loc[pre["speedup_vs_roofline"].idxmin()]
                n_visual = float(g["n_visual"].iloc[0])
                need = targets.roofline_long if n_visual >= 1024 else targets.roofline_576
                applies = _is_arch(model) and gpu and full and n_visual >= 576
                out.append(("speedup_vs_roofline (pre, 88.9 %)", model, worst["speedup_vs_roofline"], need, ">=",
                            worst["method"], applies))  # fmt: skip
        pruned = g[g["ratio"] > 0]
        for kind, need in (("pre", targets.method_share_pre), ("intra", targets.method_share_intra)):
            sel = pruned[pruned["stage"] == "pre"] if kind == "pre" else pruned[pruned["stage"].str.contains("intra")]
            if len(sel):
                worst = sel.loc[sel["method_share"].idxmax()]
                out.append((f"method_share ({kind})", model, worst["method_share"], need, "<=",
                            f"{worst['method']}@{worst['ratio'] * 100:.1f}", True))  # fmt: skip
        worst = g.loc[g["harness_share"].idxmax()]
        out.append(("harness_share", model, worst["harness_share"], targets.harness_share, "<=",
                    f"{worst['method']}@{worst['ratio'] * 100:.1f}", True))  # fmt: skip
    res = pd.DataFrame(out, columns=["target", "model", "measured", "target_value", "op", "worst_cell", "applies"])
    res["met"] = np.where(res["op"] == ">=", res["measured"] >= res["target_value"],
                          res["measured"] <= res["target_value"])  # fmt: skip
    return res


def _peaks(g: pd.DataFrame) -> str:
    """The peak figures the roofline columns of one model used, for the table heads."""
    if "peak_flops" not in g or not np.isfinite(float(g["peak_flops"].iloc[0])):
        return "no peak figures"
    r = g.iloc[0]
    return f"{r['peak_device']}: {r['peak_flops'] / 1e12:.3g} TFLOP/s, {r['peak_bytes_per_s'] / 1e9:.4g} GB/s"


def table(df: pd.DataFrame, ratio: float = TOP_RATIO) -> str:
    """Fixed-width text table of one ratio (plus each model's vanilla row), times in milliseconds."""
    sel = df[(df["method"] == "vanilla") | np.isclose(df["ratio"], ratio)]
    lines = []
    head = (f"{'method':<14}{'stage':<10}{'llm_pf':>9}{'prefill':>9}{'decode':>9}{'total':>9}{'method':>8}"
            f"{'peakMB':>8}{'GFLOP':>9}{'speedup':>8}{'ideal':>7}{'ratio':>7}{'roof':>7}{'r/roof':>7}{'m/pf%':>7}"
            f"{'harn%':>7}{'host%':>7}{'ms/tok':>8}")  # fmt: skip
    for model, g in sel.groupby("model", sort=False):
        lines += ["", f"== {model}  ({g['device_name'].iloc[0]}, {g['dtype'].iloc[0]}, "
                  f"{g['attn_implementation'].iloc[0]}, decode {g['decode'].iloc[0]}, {int(g['n_visual'].iloc[0])} "
                  f"visual tokens, "
                  f"ratio {ratio * 100:.1f} %; times in ms; roofline {_peaks(g)})", head]  # fmt: skip
        for _, r in g.iterrows():
            if isinstance(r.get("error"), str):
                lines.append(f"{r['method']:<14}{r['stage']:<10}  error: {r['error'][:80]}")
                continue
            lines.append(
                f"{r['method']:<14}{r['stage']:<10}{r['t_llm_prefill'] * 1e3:>9.1f}{r['t_prefill'] * 1e3:>9.1f}"
                f"{r['t_decode'] * 1e3:>9.1f}{r['t_total'] * 1e3:>9.1f}{np.nan_to_num(r['t_method']) * 1e3:>8.2f}"
                f"{r['peak_mem_bytes'] / 2**20:>8.0f}{r['flops'] / 1e9:>9.2f}{r['llm_prefill_speedup']:>8.2f}"
                f"{r['ideal_speedup']:>7.2f}{r['speedup_vs_ideal']:>7.2f}{r['roofline_speedup']:>7.2f}"
                f"{r['speedup_vs_roofline']:>7.2f}{r['method_share'] * 100:>7.2f}"
                f"{r['harness_share'] * 100:>7.2f}{r['host_bound_share'] * 100:>7.1f}"
                f"{r['decode_per_token'] * 1e3:>8.2f}"
            )
    return "\n".join(lines)


def markdown(df: pd.DataFrame, targets: pd.DataFrame, ratio: float = TOP_RATIO) -> str:
    """The 88.9 % table and the targets as Markdown (``pruning_speed.md``, pasted into docs/benchmarks.md)."""
    sel = df[df["error"].isna() & ((df["method"] == "vanilla") | np.isclose(df["ratio"], ratio))]
    lines = []
    for model, g in sel.groupby("model", sort=False):
        lines += [f"**{model}** ({int(g['n_visual'].iloc[0])} visual tokens; decode {g['decode'].iloc[0]}; ms; "
                  f"roofline {_peaks(g)})", "",
                  "| method | stage | llm_prefill | prefill | decode | total | method | GFLOPs | speed-up "
                  "| FLOPs ideal | ratio | roofline ideal | ratio | method % prefill | host-bound % prefill "
                  "| decode ms/token |", "|" + "---|" * 16]  # fmt: skip
        for _, r in g.iterrows():
            lines.append(
                f"| {r['method']} | {r['stage']} | {r['t_llm_prefill'] * 1e3:.1f} | {r['t_prefill'] * 1e3:.1f} "
                f"| {r['t_decode'] * 1e3:.1f} | {r['t_total'] * 1e3:.1f} | {np.nan_to_num(r['t_method']) * 1e3:.2f} "
                f"| {r['flops'] / 1e9:.2f} | {r['llm_prefill_speedup']:.2f} | {r['ideal_speedup']:.2f} "
                f"| {r['speedup_vs_ideal']:.2f} | {r['roofline_speedup']:.2f} | {r['speedup_vs_roofline']:.2f} "
                f"| {r['method_share'] * 100:.2f} | {r['host_bound_share'] * 100:.1f} "
                f"| {r['decode_per_token'] * 1e3:.2f} |"
            )
        lines.append("")
    lines += ["| target | model | measured | target | met | worst cell |", "|---|---|---|---|---|---|"]
    for _, r in targets.iterrows():
        met = ("yes" if r["met"] else "**no**") if r["applies"] else "n/a"
        lines.append(f"| {r['target']} | {r['model']} | {r['measured']:.3f} | {r['op']} {r['target_value']:.2f} "
                     f"| {met} | {r['worst_cell']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def targets_table(res: pd.DataFrame) -> str:
    lines = [f"{'target':<32}{'model':<26}{'measured':>10} {'':<2}{'target':>7}  {'met':<5}worst cell"]
    for _, r in res.iterrows():
        met = ("yes" if r["met"] else "NO") if r["applies"] else "n/a"
        lines.append(f"{r['target']:<32}{r['model']:<26}{r['measured']:>10.3f} {r['op']:<2}{r['target_value']:>7.3f}  "
                     f"{met:<5}{r['worst_cell']}")  # fmt: skip
    return "\n".join(lines)


def plot(df: pd.DataFrame, path: Path) -> Path:
    """Measured (and roofline-ideal, grey x) vs FLOPs-ideal LLM-prefill speed-up per model (top) and the 88.9 %
    prefill breakdown (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = df[df["error"].isna() & (df["method"] != "vanilla") & (df["ratio"] > 0)]
    models = list(dict.fromkeys(df["model"]))
    fig, axes = plt.subplots(2, len(models), figsize=(4.2 * len(models), 8.5), squeeze=False)
    for j, model in enumerate(models):
        ax = axes[0, j]
        g = ok[ok["model"] == model]
        for kind, marker in (("pre", "o"), ("intra", "^"), ("pre+intra", "s")):
            k = g[g["stage"] == kind]
            ax.scatter(k["ideal_speedup"], k["llm_prefill_speedup"], marker=marker, s=18, label=kind, alpha=0.8)
        if "roofline_speedup" in g and g["roofline_speedup"].notna().any():  # what the hardware allows, per cell
            ax.scatter(g["ideal_speedup"], g["roofline_speedup"], marker="x", c="grey", s=14, label="roofline ideal")
        hi = float(np.nanmax([g["ideal_speedup"].max(), g["llm_prefill_speedup"].max(), 1.5])) * 1.05
        xs = np.linspace(1, hi, 10)
        ax.plot(xs, xs, "k-", lw=0.8, label="ideal")
        ax.plot(xs, 0.6 * xs, "k:", lw=0.8, label="0.6 x ideal")
        ax.set(title=model, xlabel="FLOPs-ideal speed-up", ylabel="measured LLM-prefill speed-up", xlim=(1, hi),
               ylim=(0, hi))  # fmt: skip
        ax.legend(fontsize=7)
        ax = axes[1, j]
        top = df[(df["model"] == model) & df["error"].isna()
                 & ((df["method"] == "vanilla") | np.isclose(df["ratio"], TOP_RATIO))]  # fmt: skip
        vision, method = top["t_vision"].fillna(0) * 1e3, top["t_method"].fillna(0) * 1e3
        llm = top["t_llm_prefill"] * 1e3
        other = (top["t_prefill"] * 1e3 - vision - method - llm).clip(lower=0)
        x = np.arange(len(top))
        bottom = np.zeros(len(top))
        for label, part in (("vision", vision), ("method", method), ("llm_prefill", llm), ("other", other)):
            ax.bar(x, part.to_numpy(), bottom=bottom, label=label)
            bottom += part.to_numpy()
        ax.set_xticks(x, top["method"], rotation=90, fontsize=7)
        ax.set(ylabel="prefill at 88.9 % (ms)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
