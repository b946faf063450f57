"""Seaborn figures for the findings; each returns a matplotlib Figure and never shows it.

Figures are built with ``matplotlib.figure.Figure`` rather than ``pyplot`` so that nothing is registered with a
global figure manager: a notebook displays the returned figure once, and scripts need no ``plt.close``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .efficiency import pareto_front
from .finding import Finding
from .records import ACCURACY_COLUMNS, VANILLA, relative_accuracy, sample_scores, usable_records
from .sensitivity import OCR, task_sensitivity
from .variance import ratio_dominance


def _facets(n: int, width: float = 4.5, height: float = 3.5) -> tuple[Figure, list]:
    fig = Figure(figsize=(width * max(n, 1), height), layout="constrained")
    return fig, list(fig.subplots(1, max(n, 1), squeeze=False)[0])


def _table(data: Finding | pd.DataFrame, compute: Callable[[pd.DataFrame], Finding]) -> pd.DataFrame:
    """A finding's table, computing the finding first when given the tidy records."""
    return (data if isinstance(data, Finding) else compute(data)).table


def plot_accuracy_vs_ratio(df: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> Figure:
    """Mean accuracy per method against the ratio, with bootstrap 95 % CI bands over samples; one facet per model.

    Samples are pooled over datasets after averaging seeds per sample; vanilla is the dashed line.
    """
    recs, _ = usable_records(df, ACCURACY_COLUMNS)
    scores = sample_scores(recs)
    models = sorted(scores["model"].unique())
    hue_order = sorted(scores.loc[scores["method"] != VANILLA, "method"].unique())
    fig, axes = _facets(len(models))
    for ax, model in zip(axes, models, strict=False):
        sub = scores[scores["model"] == model]
        pruned = sub[sub["method"] != VANILLA]
        sns.lineplot(
            data=pruned,
            x="ratio",
            y="correct",
            hue="method",
            hue_order=hue_order,
            marker="o",
            errorbar=("ci", 95),
            n_boot=n_boot,
            seed=seed,
            ax=ax,
        )
        vanilla = sub.loc[sub["method"] == VANILLA, "correct"].mean()
        if pd.notna(vanilla):
            ax.axhline(vanilla, color="black", linestyle="--", linewidth=1, label=VANILLA)
        ax.set(title=model, xlabel="share of visual tokens removed", ylabel="accuracy")
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # 15+ methods: keep the data visible
    return fig


def plot_relative_heatmap(df: pd.DataFrame, model: str | None = None) -> Figure:
    """Method x dataset relative accuracy (pruned / unpruned), averaged over ratios and seeds.

    One heatmap for ``model``, or averaged over models when it is None.
    """
    recs, _ = usable_records(df, ACCURACY_COLUMNS)
    cells = relative_accuracy(recs).table
    if model is not None:
        cells = cells[cells["model"] == model]
    grid = cells.pivot_table(index="method", columns="dataset", values="relative_accuracy", aggfunc="mean")
    fig = Figure(figsize=(3.0 + 0.9 * grid.shape[1], 1.5 + 0.45 * grid.shape[0]), layout="constrained")
    ax = fig.subplots()
    if grid.size:
        sns.heatmap(
            grid, annot=True, fmt=".2f", cmap="RdYlGn", center=1.0, cbar_kws={"label": "relative accuracy"}, ax=ax
        )
    ax.set_title(f"relative accuracy ({model or 'mean over models'})")
    return fig


def plot_dimension_sensitivity(data: Finding | pd.DataFrame) -> Figure:
    """Bars of relative accuracy per ability dimension, most fragile first, OCR highlighted."""
    table = _table(data, task_sensitivity)
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.subplots()
    palette = {d: ("tab:red" if d == OCR else "tab:gray") for d in table["dimension"]}
    sns.barplot(
        data=table,
        x="dimension",
        y="relative_accuracy",
        hue="dimension",
        palette=palette,
        legend=False,
        order=list(table["dimension"]),
        ax=ax,
    )
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1)
    ax.set(xlabel="ability dimension (most fragile first)", ylabel="relative accuracy")
    return fig


def plot_pareto(data: Finding | pd.DataFrame, latency: str = "t_prefill") -> Figure:
    """Accuracy against median latency per (method, ratio); each model's front is joined by a line."""
    table = _table(data, lambda d: pareto_front(d, latency=latency))
    models = sorted(table["model"].unique())
    fig, axes = _facets(len(models))
    for ax, model in zip(axes, models, strict=False):
        sub = table[table["model"] == model]
        sns.scatterplot(data=sub, x="latency", y="accuracy", hue="method", style="on_front", s=60, ax=ax)
        front = sub[sub["on_front"]].sort_values("latency")
        ax.plot(front["latency"], front["accuracy"], color="black", linewidth=1, zorder=0)
        ax.set(title=model, xlabel="median latency (s)", ylabel="accuracy")
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # 15+ methods: keep the data visible
    return fig


def plot_variance_decomposition(data: Finding | pd.DataFrame) -> Figure:
    """Bars of eta-squared per factor (and the residual) from ``ratio_dominance``."""
    table = _table(data, ratio_dominance).dropna(subset=["eta_sq"])
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.subplots()
    sns.barplot(data=table, x="factor", y="eta_sq", color="tab:blue", ax=ax)
    ax.set(xlabel="factor", ylabel="eta-squared (share of variance)", ylim=(0, 1))
    return fig


def plot_kept_tokens(image: Any, kept: Sequence[int], grid_shape: tuple[int, int], title: str = "") -> Figure:
    """The image with pruned visual tokens darkened on its patch grid (``kept`` in raster order; the explorer)."""
    rows, cols = grid_shape
    mask = np.zeros(rows * cols, dtype=bool)
    mask[[k for k in kept if k < rows * cols]] = True
    shade = np.zeros((rows, cols, 4))
    shade[..., 3] = np.where(mask.reshape(rows, cols), 0.0, 0.65)  # pruned patches: 65 % black
    width, height = image.size
    fig = Figure(figsize=(5, 5 * height / width), layout="constrained")
    ax = fig.subplots()
    ax.imshow(image)
    ax.imshow(shade, extent=(0, width, height, 0), interpolation="nearest")
    ax.set_xticks(np.linspace(0, width, cols + 1), labels=[])
    ax.set_yticks(np.linspace(0, height, rows + 1), labels=[])
    ax.grid(color="white", linewidth=0.3, alpha=0.5)
    ax.tick_params(length=0)
    ax.set_title(title or f"{int(mask.sum())} of {rows * cols} visual tokens kept", fontsize="small", wrap=True)
    return fig
