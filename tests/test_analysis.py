"""Tests of the findings on constructed records whose right answers are known by construction."""

from __future__ import annotations

import io
from collections.abc import Callable
from itertools import product

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from matplotlib.figure import Figure

from unipb_core import analysis as A
from unipb_core.analysis.stats import bootstrap_mean_ci, kendall_w, pareto_mask, sign_flip_pvalue
from unipb_core.analysis.variance import type2_sum_squares

METHODS = {"vanilla": "baseline", "random_pre": "random", "random_intra": "random", "divprune": "vit", "fastv": "llm"}
DATASETS = {"mme": "comprehensive", "ocrbench": "ocr", "pope": "hallucination", "mathvista": "math"}
RATIOS = (0.667, 0.778, 0.889)
OTHER = {"parsed": True, "t_llm_prefill": 0.5, "t_total": 2.0, "t_method": 0.0, "flops": 1.0, "error": None}
Score = Callable[[str, str, float, int, str, int], float]


def first(share: float, i: int, n: int) -> float:
    """1.0 for the first round(share * n) samples: a cell with accuracy exactly ``share``."""
    return float(i < round(share * n))


def make_records(
    score: Score,
    models: tuple[str, ...] = ("tiny:llava",),
    methods: dict[str, str] = METHODS,
    datasets: dict[str, str] = DATASETS,
    ratios: tuple[float, ...] = RATIOS,
    n: int = 10,
    random_seeds: tuple[int, ...] = (0, 1, 2),
) -> pd.DataFrame:
    """Full grid of tidy records; ``score(model, method, ratio, seed, dataset, i)`` gives ``correct``."""
    rows = []
    for model, (method, category), (dataset, dimension) in product(models, methods.items(), datasets.items()):
        cell_ratios = [0.0] if method == "vanilla" else ratios
        for ratio, seed in product(cell_ratios, random_seeds if category == "random" else [0]):
            key = {"model": model, "method": method, "category": category, "ratio": ratio, "seed": seed}
            for i in range(n):
                correct = score(model, method, ratio, seed, dataset, i)
                answer = {"correct": correct, "prediction": "yes" if correct else "no", "t_prefill": 1.0 - ratio / 2}
                rows.append(key | {"dataset": dataset, "dimension": dimension, "sample_id": f"s{i}"} | answer | OTHER)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- statistics


def test_sign_flip_all_ties_gives_one_and_clear_gain_is_small():
    rng = np.random.default_rng(0)
    assert sign_flip_pvalue(np.zeros(50), 200, rng) == 1.0
    assert sign_flip_pvalue(np.ones(5), 200, rng) == pytest.approx(1 / 32)  # exact: 1 of 2**5 patterns
    assert sign_flip_pvalue(np.r_[np.ones(40), np.zeros(60)], 500, rng) < 0.01


def test_bootstrap_ci_of_constant_difference_is_a_point():
    low, high = bootstrap_mean_ci(np.full(30, 0.3), 100, np.random.default_rng(0))
    assert low == pytest.approx(0.3) and high == pytest.approx(0.3)


def test_kendall_w_identical_rotated_and_tied():
    identical = np.tile([4.0, 3.0, 2.0, 1.0], (5, 1))
    rotated = np.array([np.roll([4.0, 3.0, 2.0, 1.0], k) for k in range(4)])
    assert kendall_w(identical) == pytest.approx(1.0)
    assert kendall_w(rotated) == pytest.approx(0.0)
    assert np.isnan(kendall_w(np.ones((3, 4))))
    # tie correction: identical rankings with a tie are still perfect agreement
    assert kendall_w(np.tile([2.0, 2.0, 1.0], (3, 1))) == pytest.approx(1.0)


def test_pareto_mask_hand_made():
    acc = np.array([0.9, 0.8, 0.7, 0.9, 0.5, np.nan])
    lat = np.array([10.0, 5.0, 6.0, 12.0, 1.0, 0.1])
    assert pareto_mask(acc, lat).tolist() == [True, True, False, False, True, False]


# ---------------------------------------------------------------- finding 1: random baseline


def test_method_equal_to_random_is_never_significantly_better():
    def score(model, method, ratio, seed, dataset, i):
        return 0.0 if method == "vanilla" else first(0.6, i, 10)  # every pruned method == random, sample by sample

    f = A.random_baseline_strength(make_records(score), n_boot=200)
    assert len(f.table) == 2 * len(DATASETS) * len(RATIOS)
    assert not f.table["significantly_better"].any()
    assert (f.table["p_value"] == 1.0).all() and (f.table["difference"] == 0).all()
    assert f.holds is True and f.numbers["share_not_better"] == 1.0
    # the stage mapping: vit vs random_pre, llm vs random_intra
    pairs = dict(zip(f.table["method"], f.table["random_method"], strict=False))
    assert pairs == {"divprune": "random_pre", "fastv": "random_intra"}


def test_clearly_better_method_is_significant_and_ci_covers_truth():
    rng = np.random.default_rng(1)
    draws = {}

    def score(model, method, ratio, seed, dataset, i):
        p = 0.8 if method in ("divprune", "fastv") else 0.5  # true gap +30 points
        return draws.setdefault((method, ratio, seed, dataset, i), float(rng.random() < p))

    datasets = {f"d{k}": "comprehensive" for k in range(5)}
    f = A.random_baseline_strength(make_records(score, datasets=datasets, n=200), n_boot=300)
    assert f.table["significantly_better"].all()
    assert f.holds is False and f.numbers["share_not_better"] == 0.0
    covered = (f.table["ci_low"] <= 0.3) & (f.table["ci_high"] >= 0.3)
    assert covered.mean() >= 0.8  # 95 % intervals: at most a few of 30 cells may miss
    assert f.numbers["mean_difference"] == pytest.approx(0.3, abs=0.05)


def test_random_mapping_falls_back_to_the_only_random_and_is_a_parameter():
    def score(model, method, ratio, seed, dataset, i):
        return first(0.5, i, 10)

    only_intra = {k: v for k, v in METHODS.items() if k != "random_pre"}
    f = A.random_baseline_strength(make_records(score, methods=only_intra), n_boot=50)
    assert set(f.table["random_method"]) == {"random_intra"}
    swapped = {"vit": "random_intra", "llm": "random_pre"}
    g = A.random_baseline_strength(make_records(score), n_boot=50, random_for=swapped)
    assert set(g.table.loc[g.table["method"] == "divprune", "random_method"]) == {"random_intra"}


def test_without_random_baseline_the_finding_cannot_say():
    no_random = {k: v for k, v in METHODS.items() if v != "random"}
    f = A.random_baseline_strength(make_records(lambda *a: 1.0, methods=no_random), n_boot=20)
    assert f.holds is None and f.table.empty
    assert f.numbers["n_skipped_cells"] == 2 * len(DATASETS) * len(RATIOS) and "skipped" in f.verdict


# ---------------------------------------------------------------- finding 2: no single winner


def test_one_method_winning_everywhere_is_a_single_winner_with_w_near_one():
    quality = {"divprune": 0.9, "fastv": 0.7, "random_pre": 0.5, "random_intra": 0.3, "vanilla": 1.0}

    def score(model, method, ratio, seed, dataset, i):
        return first(quality[method], i, 10)

    f = A.no_single_winner(make_records(score))
    assert f.holds is False
    assert f.table.iloc[0]["method"] == "divprune" and f.numbers["top_win_share"] == 1.0
    assert f.numbers["mean_kendall_w"] == pytest.approx(1.0)
    assert "vanilla" not in set(f.table["method"])


def test_rotated_ranks_give_no_single_winner_and_low_w():
    order = ["divprune", "fastv", "random_pre", "random_intra"]
    datasets = {f"d{k}": "comprehensive" for k in range(4)}

    def score(model, method, ratio, seed, dataset, i):
        if method == "vanilla":
            return 1.0
        rank = (order.index(method) + int(dataset[1])) % 4  # each method takes each rank once
        return first(0.2 + 0.2 * rank, i, 10)

    f = A.no_single_winner(make_records(score, datasets=datasets))
    assert f.holds is True
    assert f.numbers["top_win_share"] == pytest.approx(0.25)
    assert f.numbers["mean_kendall_w"] == pytest.approx(0.0)
    assert len(f.details["winners"]) == len(datasets) * len(RATIOS)


# ---------------------------------------------------------------- finding 3: task sensitivity


def test_ratio_insensitive_dataset_has_relative_accuracy_one_and_ocr_ranks_first():
    kept = {"mme": 1.0, "ocrbench": 0.4, "pope": 0.8, "mathvista": 0.9}

    def score(model, method, ratio, seed, dataset, i):
        base = first(0.8, i, 10)
        return base if method == "vanilla" else base * float(i < round(kept[dataset] * 8))

    f = A.task_sensitivity(make_records(score))
    datasets = f.details["datasets"].set_index("dataset")["relative_accuracy"]
    assert datasets["mme"] == pytest.approx(1.0)
    assert datasets["ocrbench"] == pytest.approx(round(0.4 * 8) / 8)
    assert f.table.iloc[0]["dimension"] == "ocr" and f.numbers["ocr_rank"] == 1
    assert f.holds is True


def test_task_sensitivity_without_ocr_or_vanilla_reports_instead_of_crashing():
    def score(model, method, ratio, seed, dataset, i):
        return first(0.5, i, 10)

    no_ocr = {k: v for k, v in DATASETS.items() if v != "ocr"}
    assert A.task_sensitivity(make_records(score, datasets=no_ocr)).holds is None
    df = make_records(score)
    df = df[~((df["method"] == "vanilla") & (df["dataset"] == "pope"))]
    f = A.task_sensitivity(df)
    assert f.numbers["n_missing_vanilla"] == 1 and "pope" in f.verdict
    assert "hallucination" not in set(f.table["dimension"])


def test_zero_vanilla_accuracy_gives_nan_relative_accuracy_reported():
    def score(model, method, ratio, seed, dataset, i):
        return 0.0 if dataset == "pope" else 0.5

    f = A.task_sensitivity(make_records(score))
    assert f.numbers["n_zero_vanilla"] == 1 and "hallucination" not in set(f.table["dimension"])


# ---------------------------------------------------------------- finding 4: ratio dominance


def test_relative_accuracy_depending_only_on_ratio_gives_ratio_eta_one():
    def score(model, method, ratio, seed, dataset, i):
        return 1.0 if method == "vanilla" else first(1.0 - ratio / 2, i, 20)

    f = A.ratio_dominance(make_records(score, n=20))
    eta = f.table.set_index("factor")["eta_sq"]
    assert eta["ratio"] == pytest.approx(1.0) and eta["method"] == pytest.approx(0.0, abs=1e-9)
    assert f.holds is True
    per_dataset = f.details["per_dataset"].set_index("factor")
    assert per_dataset.loc["model", "note"] == "dropped: single level"  # single model: dropped and said so
    assert np.isnan(f.numbers["eta_sq_model_per_dataset"])


def test_relative_accuracy_depending_only_on_method_makes_method_largest():
    quality = {"divprune": 0.9, "fastv": 0.7, "random_pre": 0.5, "random_intra": 0.3}

    def score(model, method, ratio, seed, dataset, i):
        return 1.0 if method == "vanilla" else first(quality[method], i, 10)

    f = A.ratio_dominance(make_records(score))
    assert f.table.iloc[0]["factor"] == "method" and f.holds is False
    assert f.numbers["eta_sq_method"] == pytest.approx(1.0)


def test_type2_sum_squares_equal_the_drop_one_rss_rise_on_noisy_data():
    # anova_lm's type-II SS and the drop-one RSS rise (used for exact fits) must be the same quantity
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"ratio": rng.choice(RATIOS, 80), "method": rng.choice(list("abcd"), 80)})
    data["relative_accuracy"] = data["ratio"] + 0.1 * (data["method"] == "a") + rng.normal(0, 0.05, 80)
    ss, rss_full, _ = type2_sum_squares(data, ["ratio", "method"])
    for factor, other in (("ratio", "method"), ("method", "ratio")):
        _, rss_without, _ = type2_sum_squares(data, [other])
        assert ss[factor] == pytest.approx(rss_without - rss_full, rel=1e-6)


def test_type2_sum_squares_survive_a_saturated_design():
    # no residual df left: anova_lm raises here, the drop-one route must not
    data = pd.DataFrame(
        {"ratio": [0.667, 0.667, 0.889], "method": ["a", "b", "a"], "relative_accuracy": [0.9, 0.8, 0.5]}
    )
    ss, rss, df_resid = type2_sum_squares(data, ["ratio", "method"])
    assert df_resid == 0 and rss == pytest.approx(0.0, abs=1e-12)
    assert ss["ratio"] == pytest.approx(0.08) and ss["method"] == pytest.approx(0.005)


# ---------------------------------------------------------------- efficiency and agreement


def _one_sample_per_method(rows: list[tuple], columns: list[str], category: str) -> pd.DataFrame:
    """Hand-made records of model "m", dataset "d": vanilla at ratio 0, every other method at ratio 0.5."""
    df = pd.DataFrame(rows, columns=columns)
    vanilla = df["method"] == "vanilla"
    return df.assign(
        model="m",
        category=np.where(vanilla, "baseline", category),
        ratio=np.where(vanilla, 0.0, 0.5),
        dataset="d",
        error=None,
    )


def test_pareto_front_hand_made():
    rows = [("vanilla", 0.9, 10.0), ("b", 0.8, 5.0), ("c", 0.7, 6.0), ("d", 0.9, 12.0), ("e", 0.5, 1.0)]
    f = A.pareto_front(
        _one_sample_per_method(rows, ["method", "correct", "t_prefill"], "vit").assign(seed=0, sample_id="s0")
    )
    front = dict(zip(f.table["method"], f.table["on_front"], strict=True))
    assert front == {"vanilla": True, "b": True, "c": False, "d": False, "e": True}
    assert f.numbers["max_speedup_on_front"] == pytest.approx(10.0)
    assert f.holds is None


def test_agreement_with_unpruned_hand_made():
    vanilla = ["A", "b", " C ", "d"]
    pruned = {0: ["a", "B", "c", "x"], 1: ["a", "x", "x", "x"]}
    rows = [("vanilla", 0, f"s{i}", p) for i, p in enumerate(vanilla)]
    rows += [("random_pre", s, f"s{i}", p) for s, preds in pruned.items() for i, p in enumerate(preds)]
    rows += [("random_pre", 0, "s9", "orphan")]  # no vanilla answer: left out and counted
    df = _one_sample_per_method(rows, ["method", "seed", "sample_id", "prediction"], "random")
    f = A.agreement_with_unpruned(df)
    assert f.table["agreement"].item() == pytest.approx((0.75 + 0.25) / 2)
    assert f.numbers["n_rows_without_vanilla"] == 1


# ---------------------------------------------------------------- input checks, small grids, table, plots


def test_missing_column_names_it_and_the_schema():
    df = make_records(lambda *a: 1.0).drop(columns=["correct", "sample_id"])
    with pytest.raises(ValueError, match=r"cannot tell the input level.*sample_id and correct.*score"):
        A.random_baseline_strength(df)
    with pytest.raises(ValueError, match=r"\['seed'\].*Accepted schema"):
        A.random_baseline_strength(make_records(lambda *a: 1.0).drop(columns=["seed"]))


def test_error_rows_are_excluded_and_counted():
    df = make_records(lambda m, method, r, s, d, i: 0.0 if method == "vanilla" else 1.0)
    df.loc[df.index[:3], "error"] = "CUDA out of memory"
    f = A.no_single_winner(df)
    assert f.numbers["n_excluded_rows"] == 3 and "3 row(s) with an error" in f.verdict


def _small_grid() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    df = make_records(lambda *a: float(rng.random() < 0.6), n=4)
    return df[~((df["method"] == "vanilla") & (df["dataset"] == "mathvista"))]  # a missing vanilla


def test_findings_table_on_a_small_grid():
    findings = A.compute_findings(_small_grid(), n_boot=50)
    names = ["random_baseline_strength", "no_single_winner", "task_sensitivity", "ratio_dominance"]
    assert [f.name for f in findings] == names
    table = A.findings_table(findings)
    assert list(table["finding"]) == [f.claim for f in findings]
    assert table["verdict"].str.len().gt(20).all()
    assert set(table["status"]) <= {"holds", "does not hold", "undecided"}
    assert not {"key", "function"} & set(table.columns)


def test_plots_return_figures():
    df = _small_grid()
    figures = [
        A.plot_accuracy_vs_ratio(df, n_boot=20),
        A.plot_relative_heatmap(df),
        A.plot_relative_heatmap(df, model="tiny:llava"),
        A.plot_dimension_sensitivity(df),
        A.plot_dimension_sensitivity(A.task_sensitivity(df)),
        A.plot_pareto(df),
        A.plot_variance_decomposition(A.ratio_dominance(df)),
    ]
    for fig in figures:
        assert isinstance(fig, Figure)
        fig.savefig(io.BytesIO(), format="png")  # renders every artist
