"""Figures for the findings; each returns a matplotlib Figure and never shows it.

Figures are built with ``matplotlib.figure.Figure`` rather than ``pyplot`` so that nothing is registered with a
global figure manager: a notebook displays the returned figure once, and scripts need no ``plt.close``.

A default grid has ~18 methods, so no figure draws them all in one panel with one colour each: the accuracy
figure puts each method category (ViT-side, LLM-side, hybrid, simple baselines) in its own column with vanilla
and the random baselines repeated in every panel as the yardstick, and every method keeps one style
(``method_styles``: a colour unique within its category, a marker per category) across all figures. Each figure
has at most one legend, placed outside the panels (``loc="outside ..."`` of the constrained layout), so that it
never hides data or ticks and is never cut from the saved file.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from textwrap import fill
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..vocabulary import BASELINE_CATEGORY, RANDOM_CATEGORY, VANILLA
from .efficiency import pareto_front
from .finding import Finding
from .naming import CATEGORY_LABELS
from .records import ACCURACY_COLUMNS, relative_accuracy, sample_scores, usable_records
from .sensitivity import OCR, task_sensitivity
from .stats import bootstrap_mean_ci
from .variance import ratio_dominance

_MARKERS = {"vit": "o", "llm": "s", "hybrid": "^", BASELINE_CATEGORY: "D"}
# tab10 without its grey (index 7), which is kept for the random baselines.
_COLOURS = [c for i, c in enumerate(sns.color_palette("tab10").as_hex()) if i != 7]
_RANDOM_COLOURS = ("#4d4d4d", "#a0a0a0")
REFERENCE_HEADING = "references"
_LEGEND_FONT = "small"


def _category_order(categories: Iterable[str]) -> list[str]:
    present = set(categories) - {RANDOM_CATEGORY}
    return [c for c in CATEGORY_LABELS if c in present] + sorted(present - set(CATEGORY_LABELS))


def method_styles(methods: Mapping[str, str]) -> dict[str, dict[str, object]]:
    """One line/marker style per method, the same in every figure.

    Parameters
    ----------
    methods : mapping of method key to category
        E.g. ``{"fastv": "llm", "random_pre": "random", "vanilla": "baseline"}``.

    Returns
    -------
    dict of method to ``{"color", "marker", "linestyle"}``
        Pruned methods: a tab10 colour unique within the category (cycling past nine) and the category's
        marker, so (colour, marker) tells methods apart across categories; the random baselines grey, vanilla
        black and dashed.
    """
    styles: dict[str, dict[str, object]] = {}
    randoms = sorted(m for m, c in methods.items() if c == RANDOM_CATEGORY)
    for i, method in enumerate(randoms):
        styles[method] = {"color": _RANDOM_COLOURS[i % 2], "marker": "X", "linestyle": ("-", ":")[i // 2 % 2]}
    for category in _category_order(c for m, c in methods.items() if m != VANILLA):
        members = sorted(m for m, c in methods.items() if c == category and m != VANILLA)
        for i, method in enumerate(members):
            styles[method] = {"color": _COLOURS[i % len(_COLOURS)], "marker": _MARKERS.get(category, "v"),
                              "linestyle": "-"}  # fmt: skip
    if VANILLA in methods:
        styles[VANILLA] = {"color": "black", "marker": "*", "linestyle": "--"}
    return styles


def _methods(frame: pd.DataFrame) -> dict[str, str]:
    return dict(frame[["method", "category"]].drop_duplicates().itertuples(index=False, name=None))


def _legend(fig: Figure, methods: Mapping[str, str], styles: Mapping, references: list, line: bool) -> None:
    """One figure legend below the panels: a column per method category (headed by its name) plus references."""
    blank = Patch(visible=False)
    columns = []
    for category in _category_order(c for m, c in methods.items() if m != VANILLA):
        members = sorted(m for m, c in methods.items() if c == category and m != VANILLA)
        entries = [(blank, CATEGORY_LABELS.get(category, category))]
        for m in members:
            style = styles[m]
            handle = Line2D([], [], color=style["color"], marker=style["marker"],
                            linestyle=style["linestyle"] if line else "none")  # fmt: skip
            entries.append((handle, m))
        columns.append(entries)
    columns.append([(blank, REFERENCE_HEADING), *references])
    rows = max(len(c) for c in columns)
    handles, labels = [], []
    for column in columns:  # the legend fills column by column, so pad each to the same height
        column = column + [(blank, "")] * (rows - len(column))
        handles += [h for h, _ in column]
        labels += [label for _, label in column]
    legend = fig.legend(handles, labels, loc="outside lower center", ncols=len(columns), fontsize=_LEGEND_FONT,
                        frameon=False, handlelength=2.2, columnspacing=1.6)  # fmt: skip
    headings = {CATEGORY_LABELS.get(c, c) for c in methods.values()} | {REFERENCE_HEADING}
    for text in legend.get_texts():
        if text.get_text() in headings:
            text.set_fontweight("bold")


def _ratio_references(methods: Mapping[str, str], styles: Mapping) -> list[tuple[Artist, str]]:
    """Legend entries of the accuracy figure's yardstick: vanilla, each random baseline, the random CI band."""
    refs = []
    if VANILLA in methods:
        refs.append((Line2D([], [], color="black", linestyle="--"), "vanilla (unpruned)"))
    for m in sorted(m for m, c in methods.items() if c == RANDOM_CATEGORY):
        s = styles[m]
        refs.append((Line2D([], [], color=s["color"], marker=s["marker"], linestyle=s["linestyle"]), m))
    if any(c == RANDOM_CATEGORY for c in methods.values()):
        refs.append((Patch(color=_RANDOM_COLOURS[0], alpha=0.2), "random: 95 % CI"))
    return refs


def _legend_rows(methods: Mapping[str, str]) -> int:
    counts = pd.Series([c for m, c in methods.items() if m != VANILLA and c != RANDOM_CATEGORY]).value_counts()
    return max([int(counts.max()) if len(counts) else 0, 4]) + 1


def _percent(ratio: float) -> str:
    return f"{100 * ratio:.1f} %"


def plot_accuracy_vs_ratio(df: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> Figure:
    """Accuracy against the pruning ratio: one row per model, one column per method category.

    Each panel shows the category's methods (mean accuracy over samples pooled across datasets, seeds averaged
    per sample) against the same yardstick: vanilla (dashed) and each random baseline with its 95 % bootstrap
    CI band over samples. Method CIs are left out to keep the lines readable; a method whose points sit inside
    the random band is not clearly better than random at this n (finding 1 tests that properly).
    """
    recs, _ = usable_records(df, ACCURACY_COLUMNS)
    scores = sample_scores(recs)
    methods = _methods(scores)
    styles = method_styles(methods)
    models = sorted(scores["model"].unique())
    categories = _category_order(c for m, c in methods.items() if m != VANILLA) or [RANDOM_CATEGORY]
    rng = np.random.default_rng(seed)
    ncols, nrows = len(categories), max(len(models), 1)
    legend_in = 0.19 * _legend_rows(methods)
    fig = Figure(figsize=(0.5 + 3.0 * ncols, 0.4 + 2.6 * nrows + legend_in), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    ratios = sorted(scores.loc[scores["method"] != VANILLA, "ratio"].unique())
    for row, model in enumerate(models):
        sub = scores[scores["model"] == model]
        vanilla = sub.loc[sub["method"] == VANILLA, "correct"].mean()
        for col, category in enumerate(categories):
            ax = axes[row, col]
            if pd.notna(vanilla):
                ax.axhline(vanilla, color="black", linestyle="--", linewidth=1.2)
            for method in sorted(m for m, c in methods.items() if c == RANDOM_CATEGORY):
                _line_with_band(ax, sub[sub["method"] == method], styles[method], n_boot, rng)
            if category != RANDOM_CATEGORY:
                for method in sorted(m for m, c in methods.items() if c == category and m != VANILLA):
                    means = sub[sub["method"] == method].groupby("ratio")["correct"].mean()
                    ax.plot(means.index, means.values, linewidth=1.6, markersize=5, **styles[method])
            if row == 0:
                ax.set_title(CATEGORY_LABELS.get(category, category), fontsize="medium")
            if col == 0:
                ax.set_ylabel(f"{model}\naccuracy")
            if row == nrows - 1:
                ax.set_xlabel("visual tokens removed")
            ax.grid(alpha=0.3)
    if ratios:
        axes[0, 0].set_xticks(ratios, labels=[_percent(r) for r in ratios])
        pad = 0.12 * (max(ratios) - min(ratios) or 1.0)  # room between neighbouring panels' edge ticks
        axes[0, 0].set_xlim(min(ratios) - pad, max(ratios) + pad)
    _legend(fig, methods, styles, _ratio_references(methods, styles), line=True)
    return fig


def _line_with_band(ax, rows: pd.DataFrame, style: Mapping, n_boot: int, rng: np.random.Generator) -> None:
    """Mean per ratio as a line and its bootstrap 95 % CI over samples as a band."""
    points = []
    for ratio, group in rows.groupby("ratio"):
        values = group["correct"].to_numpy(dtype=float)
        low, high = bootstrap_mean_ci(values, n_boot, rng)
        points.append((ratio, values.mean(), low, high))
    if not points:
        return
    x, mean, low, high = map(np.array, zip(*points, strict=True))
    ax.fill_between(x, low, high, color=style["color"], alpha=0.15, linewidth=0)
    ax.plot(x, mean, linewidth=1.3, markersize=5, **style)


def plot_relative_heatmap(df: pd.DataFrame, model: str | None = None) -> Figure:
    """Method x dataset relative accuracy (pruned / unpruned), averaged over ratios and seeds.

    One heatmap for ``model``, or averaged over models when it is None. Methods are grouped by category.
    """
    recs, _ = usable_records(df, ACCURACY_COLUMNS)
    cells = relative_accuracy(recs).table
    if model is not None:
        cells = cells[cells["model"] == model]
    grid = cells.pivot_table(index="method", columns="dataset", values="relative_accuracy", aggfunc="mean")
    methods = _methods(cells) if len(cells) else {}
    order = sorted(grid.index, key=lambda m: (_rank(methods.get(m, "")), m))
    grid = grid.loc[order]
    fig = Figure(figsize=(3.2 + 1.0 * grid.shape[1], 1.8 + 0.32 * grid.shape[0]), layout="constrained")
    ax = fig.subplots()
    if grid.size:
        with warnings.catch_warnings():  # seaborn 0.13 calls Colormap.set_bad, which matplotlib 3.11 deprecates
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            sns.heatmap(grid, annot=True, fmt=".2f", cmap="RdYlGn", center=1.0, annot_kws={"fontsize": "small"},
                        cbar_kws={"label": "relative accuracy"}, yticklabels=True, ax=ax)  # fmt: skip
        ax.set_xticks(ax.get_xticks(), labels=[_wrap(c, 14) for c in grid.columns], rotation=45, ha="right",
                      rotation_mode="anchor")  # fmt: skip
    ax.set(xlabel="dataset", ylabel="method")
    ax.set_title(f"relative accuracy ({model or 'mean over models'})")
    return fig


def _rank(category: str) -> int:
    order = [RANDOM_CATEGORY, *CATEGORY_LABELS]
    return order.index(category) if category in order else len(order)


def _wrap(text: str, width: int) -> str:
    """Wrap a long label, breaking after a slash too (``synthetic/multidisciplinary``)."""
    return fill(str(text).replace("/", "/ "), width=width, break_long_words=False).replace("/ ", "/")


def plot_dimension_sensitivity(data: Finding | pd.DataFrame) -> Figure:
    """Bars of relative accuracy per ability dimension, most fragile first, OCR highlighted, values on the bars."""
    table = _table(data, task_sensitivity)
    fig = Figure(figsize=(1.6 + 1.1 * max(len(table), 1), 3.8), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(table))
    colours = ["tab:red" if d == OCR else "tab:gray" for d in table["dimension"]]
    bars = ax.bar(x, table["relative_accuracy"], color=colours)
    ax.bar_label(bars, fmt="%.2f", fontsize="small", padding=2)
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1)
    ax.set_xticks(x, labels=list(table["dimension"]), rotation=30, ha="right", rotation_mode="anchor")
    top = float(np.nanmax([*table["relative_accuracy"], 1.0])) if len(table) else 1.0
    ax.set_ylim(0, 1.15 * top)
    ax.set(xlabel="ability dimension (most fragile first)", ylabel="relative accuracy")
    return fig


def plot_pareto(data: Finding | pd.DataFrame, latency: str = "t_prefill") -> Figure:
    """Accuracy against median latency per (method, ratio), one panel per model, one shared legend.

    Filled markers lie on the model's Pareto front (joined by the black line), hollow ones are dominated.
    """
    table = _table(data, lambda d: pareto_front(d, latency=latency))
    models = sorted(table["model"].unique())
    methods = _methods(table) if len(table) else {}
    styles = method_styles(methods)
    ncols = min(max(len(models), 1), 3)
    nrows = -(-max(len(models), 1) // ncols)
    legend_in = 0.19 * _legend_rows(methods)
    fig = Figure(figsize=(0.5 + 4.0 * ncols, 0.4 + 3.3 * nrows + legend_in), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(models) :]:
        ax.set_visible(False)
    for ax, model in zip(axes, models, strict=False):
        sub = table[table["model"] == model]
        for point in sub.itertuples(index=False):
            style = styles[point.method]
            ax.scatter(1000 * point.latency, point.accuracy, marker=style["marker"], s=80 if point.method ==
                       VANILLA else 42, edgecolors=style["color"], linewidths=1.3,
                       facecolors=style["color"] if point.on_front else "none", zorder=3)  # fmt: skip
        front = sub[sub["on_front"]].sort_values("latency")
        ax.plot(1000 * front["latency"], front["accuracy"], color="black", linewidth=1, zorder=2)
        ax.set(title=model, xlabel=f"median {latency} (ms)", ylabel="accuracy")
        ax.grid(alpha=0.3)
    references: list[tuple[Artist, str]] = []
    if VANILLA in methods:
        references.append((Line2D([], [], color="black", marker="*", linestyle="none"), "vanilla (unpruned)"))
    for method in sorted(m for m, c in methods.items() if c == RANDOM_CATEGORY):
        references.append((Line2D([], [], color=styles[method]["color"], marker="X", linestyle="none"), method))
    references += [
        (Line2D([], [], color="black", linewidth=1), "Pareto front"),
        (Line2D([], [], color="gray", marker="o", linestyle="none"), "filled: on the front"),
        (Line2D([], [], color="gray", marker="o", markerfacecolor="none", linestyle="none"), "hollow: dominated"),
    ]
    _legend(fig, methods, styles, references, line=False)
    return fig


def plot_variance_decomposition(data: Finding | pd.DataFrame) -> Figure:
    """Bars of eta-squared per factor (and the residual) from ``ratio_dominance``."""
    table = _table(data, ratio_dominance).dropna(subset=["eta_sq"])
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.subplots()
    bars = ax.bar(table["factor"], table["eta_sq"], color="tab:blue")
    ax.bar_label(bars, fmt="%.2f", fontsize="small", padding=2)
    ax.set(xlabel="factor", ylabel="eta-squared (share of variance)", ylim=(0, 1.05))
    return fig


def _table(data: Finding | pd.DataFrame, compute: Callable[[pd.DataFrame], Finding]) -> pd.DataFrame:
    """A finding's table, computing the finding first when given the tidy records."""
    return (data if isinstance(data, Finding) else compute(data)).table


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
