"""Findings that can fail: for each claim, records where it is true, false and undecidable, at both input levels.

Every scenario is built per sample and then run twice: as per-sample records and as the cell-level table
``cell_scores`` makes of them (one row per cell with its score and n). The verdict must flip with the data
and must say which input level it used.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import product

import numpy as np
import pandas as pd
import pytest

from unipb_core import analysis as A
from unipb_core.analysis.finding import POOLED

METHODS = ("vanilla", "random_pre", "random_intra", "divprune", "fastv")
DATASETS = {"mme": "comprehensive", "ocrbench": "ocr", "pope": "hallucination", "mathvista": "math"}
RATIOS = (0.667, 0.778, 0.889)
Score = Callable[[str, str, float, int, str, int], float]
LEVELS = ("samples", "cells")


def first(share: float, i: int, n: int) -> float:
    """1.0 for the first round(share * n) samples: a cell whose score is exactly ``share``."""
    return float(i < round(share * n))


def records(
    score: Score,
    models: tuple[str, ...] = ("m1",),
    methods: tuple[str, ...] = METHODS,
    datasets: dict[str, str] = DATASETS,
    ratios: tuple[float, ...] = RATIOS,
    n: int = 40,
    skip: Callable[[str, str, str], bool] = lambda model, method, dataset: False,
) -> pd.DataFrame:
    """Per-sample records of a full grid; ``score(model, method, ratio, seed, dataset, i)`` gives ``correct``.

    No ``category`` column: the analysis must recognise methods and random baselines by name.
    """
    rows = []
    for model, method, (dataset, dimension) in product(models, methods, datasets.items()):
        if skip(model, method, dataset):
            continue
        seeds = (0, 1) if method.startswith("random") else (0,)
        for ratio, seed in product((0.0,) if method == "vanilla" else ratios, seeds):
            for i in range(n):
                rows.append({"model": model, "method": method, "ratio": ratio, "seed": seed, "dataset": dataset,
                             "dimension": dimension, "sample_id": f"s{i}",
                             "correct": score(model, method, ratio, seed, dataset, i), "error": None})  # fmt: skip
    return pd.DataFrame(rows)


def at(level: str, df: pd.DataFrame) -> pd.DataFrame:
    """The scenario at one input level."""
    return df if level == "samples" else A.cell_scores(df)


def check_level(finding: A.Finding, level: str) -> None:
    expected = "per-sample records" if level == "samples" else "cell-level results"
    assert expected in finding.level, finding.level


# ---------------------------------------------------------------- finding 1: random baseline


def equal_to_random(model, method, ratio, seed, dataset, i):
    return first(0.6, i, 40)


def far_better_than_random(model, method, ratio, seed, dataset, i):
    return first(0.3 if method.startswith("random") else 0.9, i, 40)


@pytest.mark.parametrize("level", LEVELS)
def test_random_baseline_flips(level):
    true = A.random_baseline_strength(at(level, records(equal_to_random)), n_boot=200)
    false = A.random_baseline_strength(at(level, records(far_better_than_random)), n_boot=200)
    assert true.holds is True and false.holds is False
    assert true.numbers["share_not_better"] == 1.0 and false.numbers["share_not_better"] == 0.0
    assert "not a strong baseline" in false.verdict
    check_level(true, level)
    check_level(false, level)
    # each method is judged against random at its own stage
    pairs = dict(zip(false.table["method"], false.table["random_method"], strict=False))
    assert pairs == {"divprune": "random_pre", "fastv": "random_intra"}
    effects = false.details["effects"].set_index(["scope", "stage"])
    assert effects.loc[(POOLED, "pre-LLM"), "mean_difference"] == pytest.approx(0.6)
    assert effects.loc[(POOLED, "intra-LLM"), "random_method"] == "random_intra"


@pytest.mark.parametrize("level", LEVELS)
def test_random_baseline_undecidable_when_no_cell_can_reach_alpha(level):
    # one sample per cell: the paired test's smallest p is 0.5, the unpaired one's 0.08; a 60-point gap
    # everywhere must not read as "random is strong"
    f = A.random_baseline_strength(at(level, records(far_better_than_random, n=1)), n_boot=50)
    assert f.holds is None and "Cannot say" in f.verdict
    assert f.numbers["n_testable_cells"] == 0 and f.numbers["n_cells"] == 2 * len(DATASETS) * len(RATIOS)
    assert "excluded" in f.evidence
    check_level(f, level)


def test_random_baseline_on_cells_without_n_says_it_needs_samples():
    cells = A.cell_scores(records(far_better_than_random)).drop(columns="n")
    f = A.random_baseline_strength(cells)
    assert f.holds is None and "per-sample records or a sample count n" in f.verdict
    assert f.details["effects"]["mean_difference"].gt(0.5).all()  # the gaps are still reported


@pytest.mark.parametrize("level", LEVELS)
def test_random_baseline_per_model_verdicts_differ(level):
    def score(model, method, ratio, seed, dataset, i):
        return (far_better_than_random if model == "m2" else equal_to_random)(model, method, ratio, seed, dataset, i)

    f = A.random_baseline_strength(at(level, records(score, models=("m1", "m2"))), n_boot=200)
    assert f.holds_for("m1") is True and f.holds_for("m2") is False
    assert f.holds_for(POOLED) is f.holds  # 50 % of the cells are not better: the pooled claim holds, at the limit
    assert f.numbers["share_not_better"] == pytest.approx(0.5)
    assert "per model: m1 holds (24 of 24 testable cells), m2 does not hold (0 of 24 testable cells)" in f.verdict


def test_random_baseline_recognises_random_by_alias():
    df = records(equal_to_random).replace({"method": {"random_pre": "Random (ViT)", "random_intra": "random-LLM"}})
    f = A.random_baseline_strength(df, n_boot=50)
    assert set(f.table["random_method"]) == {"random_pre", "random_intra"} and f.holds is True


# ---------------------------------------------------------------- finding 2: no single winner

ORDER = ("divprune", "fastv", "random_pre", "random_intra")
FOUR = {f"d{k}": "comprehensive" for k in range(4)}


def one_winner(model, method, ratio, seed, dataset, i):
    quality = {"divprune": 0.9, "fastv": 0.7, "random_pre": 0.5, "random_intra": 0.3, "vanilla": 1.0}
    return first(quality[method], i, 40)


def rotating(model, method, ratio, seed, dataset, i):
    if method == "vanilla":
        return 1.0
    rank = (ORDER.index(method) + int(dataset[1])) % 4  # each method takes each rank once
    return first(0.2 + 0.2 * rank, i, 40)


@pytest.mark.parametrize("level", LEVELS)
def test_no_single_winner_flips(level):
    true = A.no_single_winner(at(level, records(rotating, datasets=FOUR)))
    false = A.no_single_winner(at(level, records(one_winner, datasets=FOUR)))
    assert true.holds is True and false.holds is False
    assert true.numbers["top_win_share"] == pytest.approx(0.25) and false.numbers["top_win_share"] == 1.0
    assert true.numbers["margin"] == pytest.approx(0.25) and false.numbers["margin"] == pytest.approx(-0.5)
    assert "dominates" in false.verdict and "divprune" in false.verdict
    check_level(true, level)
    check_level(false, level)


@pytest.mark.parametrize("level", LEVELS)
def test_no_single_winner_undecidable_with_one_contested_cell(level):
    f = A.no_single_winner(at(level, records(one_winner, datasets={"d0": "comprehensive"}, ratios=(0.889,))))
    assert f.holds is None and "Cannot say" in f.verdict
    check_level(f, level)


@pytest.mark.parametrize("level", LEVELS)
def test_no_single_winner_per_model_and_borderline(level):
    def score(model, method, ratio, seed, dataset, i):
        return (one_winner if model == "m1" else rotating)(model, method, ratio, seed, dataset, i)

    f = A.no_single_winner(at(level, records(score, models=("m1", "m2"), datasets=FOUR)))
    assert f.holds_for("m1") is False and f.holds_for("m2") is True
    # pooled: divprune wins all 12 cells of m1 and 3 of m2: 15 of 24 > 12, three cells beyond the limit
    assert f.holds is False and f.numbers["top_win_share"] == pytest.approx(15 / 24)
    assert "margin -3.0 cells" in f.verdict

    def near(model, method, ratio, seed, dataset, i):  # divprune wins 7 of 12 cells: one cell over the limit
        k = int(dataset[1]) * 3 + RATIOS.index(ratio) if method != "vanilla" else 0
        best = "divprune" if k < 7 else ORDER[1 + k % 3]
        return first(0.9 if method == best else 0.5, i, 40) if method != "vanilla" else 1.0

    g = A.no_single_winner(at(level, records(near, datasets=FOUR)))
    assert g.holds is False and "borderline" in g.verdict


# ---------------------------------------------------------------- finding 3: task sensitivity


def fragile(dimension: str, at_highest_only: bool = False) -> Score:
    """Relative score 0.3 on ``dimension`` (at every ratio, or only at the highest), 0.6 on math, 0.9 elsewhere."""
    datasets = {d for d, dim in DATASETS.items() if dim == dimension}

    def score(model, method, ratio, seed, dataset, i):
        if method == "vanilla":
            return first(0.8, i, 40)
        if dataset in datasets and dimension != "math":
            keep = 0.3 if (ratio == max(RATIOS) or not at_highest_only) else 1.0
        elif dataset == "mathvista":
            keep = 0.6
        else:
            keep = 0.9
        return first(0.8 * keep, i, 40)

    return score


@pytest.mark.parametrize("level", LEVELS)
def test_task_sensitivity_flips(level):
    true = A.task_sensitivity(at(level, records(fragile("ocr"))))
    false = A.task_sensitivity(at(level, records(fragile("math"))))
    assert true.holds is True and false.holds is False
    assert "OCR is not the most fragile" in false.verdict and "math drops most" in false.verdict
    assert true.table.iloc[0]["dimension"] == "ocr" and true.numbers["headline_ratio"] == max(RATIOS)
    check_level(true, level)
    check_level(false, level)


@pytest.mark.parametrize("level", LEVELS)
def test_task_sensitivity_undecidable_without_ocr(level):
    no_ocr = {d: dim for d, dim in DATASETS.items() if dim != "ocr"}
    f = A.task_sensitivity(at(level, records(fragile("math"), datasets=no_ocr)))
    assert f.holds is None and "OCR is absent" in f.verdict
    check_level(f, level)


@pytest.mark.parametrize("level", LEVELS)
def test_task_sensitivity_headline_is_the_highest_ratio(level):
    # OCR keeps everything at the two lower ratios and drops to 0.3 at the highest; math sits at 0.6 throughout:
    # averaged over ratios math is more fragile, at the highest ratio OCR is
    f = A.task_sensitivity(at(level, records(fragile("ocr", at_highest_only=True))))
    assert f.holds is True
    curve = f.details["curve"]
    ocr = curve[(curve["scope"] == POOLED) & (curve["dimension"] == "ocr")].set_index("ratio")["relative_accuracy"]
    assert ocr[min(RATIOS)] == pytest.approx(1.0) and ocr[max(RATIOS)] == pytest.approx(0.3, abs=0.02)


@pytest.mark.parametrize("level", LEVELS)
def test_task_sensitivity_pools_only_shared_datasets_and_has_per_model_views(level):
    datasets = {**DATASETS, "miabench": "instruction"}

    def score(model, method, ratio, seed, dataset, i):
        if dataset == "miabench" and method != "vanilla":
            return first(0.8 * 0.1, i, 40)  # m2 only: instruction collapses there
        return fragile("ocr")(model, method, ratio, seed, dataset, i)

    df = records(score, models=("m1", "m2"), datasets=datasets, skip=lambda m, _, d: m == "m1" and d == "miabench")
    f = A.task_sensitivity(at(level, df))
    assert f.holds is True and f.holds_for("m1") is True and f.holds_for("m2") is False
    assert "miabench" not in set(f.details["datasets"]["dataset"]) and "miabench" in f.evidence
    assert "m2: most fragile instruction" in f.verdict


def test_task_sensitivity_names_a_model_at_chance_unpruned():
    def score(model, method, ratio, seed, dataset, i):
        if dataset == "pope":
            return first(0.5, i, 40)  # yes/no at 50 %: guessing
        return fragile("ocr")(model, method, ratio, seed, dataset, i)

    f = A.task_sensitivity(records(score))
    assert "m1/pope" in f.verdict and "at or below chance unpruned" in f.verdict


# ---------------------------------------------------------------- finding 4: ratio dominance


def by_ratio(model, method, ratio, seed, dataset, i):
    return 1.0 if method == "vanilla" else first(1.0 - ratio / 2, i, 40)


def by_method(model, method, ratio, seed, dataset, i):
    quality = {"divprune": 0.9, "fastv": 0.7, "random_pre": 0.5, "random_intra": 0.3}
    return 1.0 if method == "vanilla" else first(quality[method], i, 40)


@pytest.mark.parametrize("level", LEVELS)
def test_ratio_dominance_flips_in_both_views(level):
    true = A.ratio_dominance(at(level, records(by_ratio)))
    false = A.ratio_dominance(at(level, records(by_method)))
    assert true.holds is True and false.holds is False
    for f, expected in ((true, True), (false, False)):
        pooled = f.views[f.views["scope"] == POOLED]
        assert pooled["view"].str.startswith("(a)").any() and pooled["view"].str.startswith("(b)").any()
        assert all(h is expected for h in pooled["holds"])
        check_level(f, level)
    assert true.table.set_index("factor")["eta_sq"]["ratio"] == pytest.approx(1.0)
    assert false.numbers["eta_sq_method"] == pytest.approx(1.0)


@pytest.mark.parametrize("level", LEVELS)
def test_ratio_dominance_undecidable_with_one_ratio(level):
    f = A.ratio_dominance(at(level, records(by_method, ratios=(0.889,))))
    assert f.holds is None and "ratio has a single level" in f.verdict
    check_level(f, level)


@pytest.mark.parametrize("level", LEVELS)
def test_ratio_dominance_robustness_without_an_outlier_method(level):
    methods = ("vanilla", "random_pre", "random_intra", "divprune", "fastv", "visionzip")

    def score(model, method, ratio, seed, dataset, i):
        if method == "vanilla":
            return 1.0
        if method == "visionzip":
            return first(0.05, i, 40)  # a broken method: far below the rest
        return first(1.0 - ratio / 2 + (0.025 if method == "divprune" else 0.0), i, 40)

    f = A.ratio_dominance(at(level, records(score, methods=methods)))
    assert f.holds is False  # the broken method's spread swamps the ratio
    assert f.details["outliers"].set_index("method")["outlier"].to_dict()["visionzip"]
    robust = f.views[f.views["view"].str.contains("without outliers")]
    assert len(robust) == 2 and all(h is True for h in robust["holds"])
    assert "without outlier method(s) visionzip: view (a) ratio explains more" in f.verdict


# ---------------------------------------------------------------- the findings table and the external CSV


@pytest.mark.parametrize("level", LEVELS)
def test_findings_table_shows_views_per_model_and_level(level):
    table = A.findings_table(at(level, records(fragile("ocr"), models=("m1", "m2"))), n_boot=100)
    assert list(table.columns) == ["finding", "status", "verdict", "views", "per_model", "input", "evidence"]
    assert table["finding"].str.match(r"[1-4]\. ").all()
    assert set(table["status"]) <= {"holds", "does not hold", "undecided"}
    assert table["per_model"].str.contains("m1").all() and table["per_model"].str.contains("m2").all()
    assert table["input"].str.contains("per-sample" if level == "samples" else "cell-level").all()
    assert not table["verdict"].str.startswith(("'", '"')).any()
    verdicts = A.views_table(A.compute_findings(at(level, records(fragile("ocr"), models=("m1", "m2"))), n_boot=50))
    assert set(verdicts["scope"]) == {"m1", "m2", POOLED}
    assert verdicts.groupby("finding")["view"].nunique().to_dict()[A.summary.CLAIMS[3]] >= 2  # both views


def test_read_results_maps_columns_aliases_and_percentages(tmp_path):
    from unipb_core.analysis.records import prepare

    path = tmp_path / "paper.csv"
    pd.DataFrame(
        {
            "Model": ["M"] * 4,
            "Method": ["Vanilla", "Random (ViT)", "random-pre", "MyPrune"],
            "Pruning Ratio": [None, 0.889, 0.778, 0.889],
            "Benchmark": ["POPE"] * 4,
            "Top-1": [85.0, 80.0, 82.0, 83.0],
        }
    ).to_csv(path, index=False)
    df = A.read_results(path, columns={"Top-1": "score"}, aliases={"MyPrune": "divprune"}, score_scale=100)
    assert list(df["method"]) == ["vanilla", "random_pre", "random_pre", "divprune"]
    cells = prepare(df).cells
    assert set(cells["category"]) == {"baseline", "random", "vit"} and cells["score"].max() == pytest.approx(0.85)
    assert set(cells["dimension"]) == {"hallucination"}
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\].*score_scale=100"):
        A.no_single_winner(A.read_results(path, columns={"Top-1": "score"}, aliases={"MyPrune": "divprune"}))
    with pytest.raises(ValueError, match=r"unknown method\(s\) \['myprune'\].*category"):
        A.no_single_winner(A.read_results(path, columns={"Top-1": "score"}, score_scale=100))


def test_cell_level_rejects_duplicate_cells_and_unknown_shapes():
    cells = A.cell_scores(records(by_ratio, n=2))
    with pytest.raises(ValueError, match="share"):
        A.no_single_winner(pd.concat([cells, cells]))
    with pytest.raises(ValueError, match="cannot tell the input level"):
        A.no_single_winner(cells.drop(columns="score"))


def test_example_csv_runs_every_finding():
    from unipb_core.report import ROOT

    df = A.read_results(ROOT / "tests" / "fixtures" / "results_example.csv", score_scale=100)
    findings = A.compute_findings(df, n_boot=100)
    assert [f.holds for f in findings] != [None] * 4
    assert all("cell-level results" in f.level for f in findings)
    assert np.isfinite(findings[0].numbers["median_mdd"])


def test_ratio_dominance_view_a_averages_only_datasets_every_method_has():
    df = records(by_ratio, skip=lambda model, method, dataset: method == "fastv" and dataset == "pope")
    f = A.ratio_dominance(df)
    assert "m1/pope" in f.evidence and f.holds is True
    assert f.numbers["n_averaged"] == 4 * len(RATIOS)  # four pruned methods x three ratios, one model


def test_a_stated_category_outside_the_accepted_ones_is_an_error():
    cells = A.cell_scores(records(by_ratio, n=2)).assign(category="ViT-based")
    with pytest.raises(ValueError, match=r"unknown category value\(s\) \['vit-based'\]"):
        A.ratio_dominance(cells)


def test_task_sensitivity_tie_for_most_fragile_is_not_the_claim():
    f = A.task_sensitivity(records(by_ratio))  # every dimension loses the same share
    assert f.holds is False and "tied with" in f.verdict


def test_random_baseline_at_ten_samples_says_the_evidence_is_weak():
    rng = np.random.default_rng(0)
    draws = {}

    def noisy(model, method, ratio, seed, dataset, i):
        return draws.setdefault((method, ratio, seed, dataset, i), float(rng.random() < 0.5))

    f = A.random_baseline_strength(records(noisy, n=10), n_boot=200)
    assert f.holds is True and "weak evidence" in f.verdict
    assert f.numbers["median_mdd"] > 0.3 and "minimum detectable difference" in f.evidence


@pytest.mark.parametrize("level", LEVELS)
def test_task_sensitivity_model_at_zero_on_ocr_is_named_and_kept_out_of_the_pooled_view(level):
    def score(model, method, ratio, seed, dataset, i):
        if model == "m2" and dataset == "ocrbench":
            return 0.0  # m2 cannot read at all, pruned or not
        return fragile("ocr")(model, method, ratio, seed, dataset, i)

    f = A.task_sensitivity(at(level, records(score, models=("m1", "m2"))))
    assert f.holds is None and "OCR is not in every model's datasets" in f.verdict
    assert "vanilla score 0 for 1 (model, dataset) pair(s) (m2/ocrbench)" in f.verdict
    assert f.holds_for("m1") is True
