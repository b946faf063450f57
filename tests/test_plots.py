"""The report's figures on records shaped like the default run's: legible, one legend, nothing cut or overlapping.

The records are built, not evaluated (no model runs): the real store schema, 3 tiny models, the 18 methods of the
default grid with their categories, 3 ratios, 3 seeds for the random baselines, the six synthetic dimensions and
10 samples per cell. Each figure is drawn with Agg and checked with matplotlib's tight bounding boxes: every
legend and every label lies inside the figure (so the saved PNG / SVG cuts nothing), no label or legend covers a
panel's data area, and no two labels overlap (tick labels that run together).
"""

from __future__ import annotations

from itertools import combinations, product

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from unipb_core import analysis as A
from unipb_core.analysis.plots import method_styles

# matplotlib reports a layout it cannot fit (constrained_layout "not applied", ...) as a UserWarning, which would
# print into the report: here it fails the test.
pytestmark = pytest.mark.filterwarnings("error::UserWarning")

MODELS = ("tiny:llava", "tiny:internvl", "tiny:qwen2_5_vl")
METHODS = {
    "vanilla": "baseline", "downsample": "baseline", "random_pre": "random", "random_intra": "random",
    "divprune": "vit", "gprune": "vit", "pool": "vit", "prumerge": "vit", "prumerge_plus": "vit", "visionzip": "vit",
    "vispruner": "vit", "dart": "llm", "fastv": "llm", "fitprune": "llm", "pdrop": "llm", "vtw": "llm",
    "mustdrop": "hybrid", "sparsevlm": "hybrid",
}  # fmt: skip
DIMENSIONS = ("comprehensive", "ocr", "multidisciplinary", "hallucination", "math", "instruction")
RATIOS = (0.667, 0.778, 0.889)
SEEDS = (0, 1, 2)
N = 10


def default_like_records(seed: int = 0) -> pd.DataFrame:
    """Tidy records with the store frame's columns, shaped like ``params/smoke.yaml``'s grid."""
    rng = np.random.default_rng(seed)
    rows = []
    for model, (method, category), dimension in product(MODELS, METHODS.items(), DIMENSIONS):
        vanilla = method == "vanilla"
        for ratio, run_seed in product([0.0] if vanilla else RATIOS, SEEDS if category == "random" else SEEDS[:1]):
            p = 0.6 if vanilla else max(0.05, 0.6 - 0.4 * ratio * rng.uniform(0.5, 1.5))
            cell = {"config_hash": f"{hash((model, method, ratio, run_seed, dimension)) & 0xFFFFFFFF:016x}",
                    "model": model, "method": method, "category": category, "ratio": ratio, "seed": run_seed,
                    "dataset": f"synthetic/{dimension}", "split": "test", "dimension": dimension,
                    "attn_implementation": "sdpa", "code_version": "0.1.0", "dataset_version": "synthetic/v1",
                    "dtype": "float32", "family": model.split(":")[1], "positions": "original", "revision": None,
                    "weights": "0123456789abcdef"}  # fmt: skip
            for i in range(N):
                correct = float(rng.random() < p)
                prefill = 0.03 * (1 - 0.6 * ratio) * rng.uniform(0.9, 1.1)
                rows.append(cell | {"sample_id": f"test-s0-{dimension}-{i:05d}", "prediction": "A" if correct else "B",
                                    "correct": correct, "parsed": True, "n_visual": 144, "error": None,
                                    "t_total": 0.3, "t_prefill": prefill, "t_llm_prefill": 0.7 * prefill,
                                    "t_method": 0.001, "flops": 5e8 * (1 - ratio)})  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def records() -> pd.DataFrame:
    return default_like_records()


def _drawn_tick_labels(axis) -> list:
    """Tick labels at locations inside the view limits (matplotlib keeps, but does not draw, the others)."""
    low, high = sorted(axis.get_view_interval())
    span = 1e-9 * max(abs(low), abs(high), 1.0)
    ticks = [t for t in axis.get_major_ticks() if low - span <= t.get_loc() <= high + span]
    return [label for t in ticks for label in (t.label1, t.label2) if label.get_visible()]


def _layout_problems(fig: Figure) -> list[str]:
    """Legends or labels outside the figure, covering a panel's data area, or overlapping each other."""
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    frame = fig.bbox
    panels = [ax for ax in fig.axes if ax.get_visible()]
    legends = [*fig.legends, *(ax.get_legend() for ax in panels if ax.get_legend() is not None)]
    texts = []
    for ax in panels:
        candidates = [*_drawn_tick_labels(ax.xaxis), *_drawn_tick_labels(ax.yaxis), ax.xaxis.label, ax.yaxis.label,
                      ax.title, ax._left_title, ax._right_title, ax.xaxis.offsetText, ax.yaxis.offsetText]  # fmt: skip
        texts += [t for t in candidates if t.get_visible() and t.get_text().strip()]
    texts += [t for t in fig.texts if t.get_visible() and t.get_text().strip()]

    def inside(box: Bbox) -> bool:
        return (
            box.x0 >= frame.x0 - 0.5
            and box.y0 >= frame.y0 - 0.5
            and box.x1 <= frame.x1 + 0.5
            and (box.y1 <= frame.y1 + 0.5)
        )

    def overlap(a: Bbox, b: Bbox) -> bool:  # more than a hairline of shared area
        return min(a.x1, b.x1) - max(a.x0, b.x0) > 1 and min(a.y1, b.y1) - max(a.y0, b.y0) > 1

    problems = []
    boxes = []
    for legend in legends:
        box = legend.get_window_extent(renderer)
        boxes.append((box, "legend"))
        if not inside(box):
            problems.append(f"legend cut: {box.bounds} outside the figure {frame.bounds}")
    for text in texts:
        box = text.get_window_extent(renderer)
        boxes.append((box, repr(text.get_text())))
        if not inside(box):
            problems.append(f"text {text.get_text()!r} outside the figure")
    for box, what in boxes:
        for ax in panels:
            if overlap(box, ax.bbox):
                problems.append(f"{what} covers the data area of the panel {ax.get_title()!r}")
    for (a, what_a), (b, what_b) in combinations(boxes, 2):
        if overlap(a, b):
            problems.append(f"{what_a} overlaps {what_b}")
    return problems


def _figures(records: pd.DataFrame) -> dict[str, Figure]:
    return {
        "accuracy_vs_ratio": A.plot_accuracy_vs_ratio(records, n_boot=50),
        "relative_heatmap": A.plot_relative_heatmap(records),
        "dimension_sensitivity": A.plot_dimension_sensitivity(A.task_sensitivity(records)),
        "pareto": A.plot_pareto(A.pareto_front(records)),
        "variance_decomposition": A.plot_variance_decomposition(A.ratio_dominance(records)),
    }


@pytest.fixture(scope="module")
def figures(records) -> dict[str, Figure]:
    return _figures(records)


@pytest.mark.parametrize("name", ["accuracy_vs_ratio", "relative_heatmap", "dimension_sensitivity", "pareto",
                                  "variance_decomposition"])  # fmt: skip
def test_figure_has_nothing_cut_or_overlapping(figures, name):
    fig = figures[name]
    assert _layout_problems(fig) == []
    # shown at 100 dpi, a figure wider than the page's content column (~1300 px at 1400 px) gets scaled down
    assert fig.get_figwidth() <= 12.5, "too wide to show at its size on a 1400 px page"
    assert len(fig.legends) + sum(ax.get_legend() is not None for ax in fig.axes) <= 1, "more than one legend"


def test_the_layout_check_catches_a_cut_legend_and_crowded_labels():
    fig = Figure(figsize=(2, 2))  # no layout engine: nothing moves the legend back in
    ax = fig.subplots()
    ax.plot([0, 7], [0, 1], label="a line")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))  # hangs off the right edge
    ax.set_xticks(np.arange(8), labels=["multidisciplinary"] * 8)
    problems = _layout_problems(fig)
    assert any("legend cut" in p for p in problems) and any("overlaps" in p for p in problems)


def test_accuracy_vs_ratio_facets_by_category_with_one_style_per_method(records, figures):
    fig = figures["accuracy_vs_ratio"]
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 3 * 4  # 3 models x (ViT-side, LLM-side, hybrid, simple baselines)
    legend = fig.legends[0]
    labels = [t.get_text() for t in legend.get_texts()]
    assert {m for m in METHODS if m != "vanilla"} <= set(labels) and "vanilla (unpruned)" in labels
    for ax in panels:  # within a panel every line has its own (colour, marker)
        styles = [(str(line.get_color()), line.get_marker()) for line in ax.get_lines() if line.get_marker() != "None"]
        assert len(styles) == len(set(styles))
        assert len(ax.collections) == 2  # the CI bands of the two random baselines


def test_method_styles_are_unique_across_the_default_methods():
    styles = method_styles(METHODS)
    pairs = [(s["color"], s["marker"]) for m, s in styles.items()]
    assert set(styles) == set(METHODS) and len(pairs) == len(set(pairs))
    assert styles["vanilla"]["color"] == "black"


def test_pareto_has_one_panel_per_model_and_hollow_dominated_points(figures):
    fig = figures["pareto"]
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == sorted(MODELS)
    for ax in panels:
        faces = [tuple(c.get_facecolors()[0]) if len(c.get_facecolors()) else None for c in ax.collections]
        assert None in faces or any(f[3] == 0 for f in faces if f), "no hollow (dominated) point"


def test_dimension_labels_are_rotated(figures):
    ax = figures["dimension_sensitivity"].axes[0]
    assert all(label.get_rotation() == 30 for label in ax.get_xticklabels())
    assert [t.get_text() for t in ax.get_xticklabels()][0] in DIMENSIONS


def test_saved_files_keep_the_whole_figure(figures, tmp_path):
    from PIL import Image

    from unipb_core import report

    fig = figures["pareto"]
    png, svg = report.save_figure(fig, "pareto", tmp_path)
    with Image.open(png) as image:
        width, height = image.size
    assert (width, height) == (round(fig.get_figwidth() * 150), round(fig.get_figheight() * 150))
    assert svg.read_text().count("filled: on the front") == 1  # the legend is in the SVG
