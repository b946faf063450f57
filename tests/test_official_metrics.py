"""Official metrics from a results store: every dataset's headline on fixture predictions, checked by hand.

Each test writes fixture samples and scored predictions into a real ``ResultStore`` (as the runner does, with
``Sample.record_fields`` in the ``score`` field), reads the store back and recomputes the official aggregates.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from unipb_core import analysis, data
from unipb_core.confighash import config_hash
from unipb_core.store import ResultStore

FIXTURES = Path(__file__).parent / "fixtures" / "datasets"


def write_cell(store: ResultStore, name: str, predictions: list[str], *, method: str = "vanilla", seed: int = 0,
               path: Path | None = None, legacy: bool = False) -> None:  # fmt: skip
    """Score ``predictions`` on the fixture of ``name`` and store them as one cell, like the runner."""
    spec = data.get(name)
    if name == "synthetic":
        samples = data.load("synthetic", limit=1, dimension="hallucination")
    else:
        default = FIXTURES / (name if name == "mmbench" else f"{name}.parquet")
        samples = data.load(name, path=path or default)
    assert len(samples) == len(predictions), [s.id for s in samples]
    dataset = "synthetic/hallucination" if name == "synthetic" else name
    config = {"model": "tiny:llava", "method": method, "category": "baseline" if method == "vanilla" else "random",
              "ratio": 0.0 if method == "vanilla" else 0.889, "seed": seed, "dataset": dataset,
              "dimension": samples[0].dimension}  # fmt: skip
    key = config_hash(config)
    store.register_cell(key, config, {"host": "test"})
    for sample, prediction in zip(samples, predictions, strict=True):
        score = spec.score(sample, prediction)
        fields = {"category": sample.category} if legacy else sample.record_fields()
        store.write(key, {"sample_id": sample.id, "prediction": prediction, "correct": score.correct,
                          "parsed": score.parsed, "extracted": score.extracted, "score": fields})  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> ResultStore:
    return ResultStore(tmp_path / "results.sqlite")


def headline(metrics: pd.DataFrame, dataset: str) -> pd.Series:
    rows = metrics[(metrics["dataset"] == dataset) & metrics["headline"]]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def value(metrics: pd.DataFrame, dataset: str, metric: str) -> float:
    return float(metrics[(metrics["dataset"] == dataset) & (metrics["metric"] == metric)]["value"].iloc[0])


# (dataset, predictions in fixture row order, headline metric, its value, its scale) -- worked out by hand:
CASES = [
    # MME existence img1 (Yes,No) img2 (Yes,No); code_reasoning img3 (Yes,No) img4 (No,Yes).
    # existence acc 75 + acc+ 50 = 125; code_reasoning acc 25 + acc+ 0 = 25; total 150 of 2 x 200.
    ("mme", ["Yes.", "no", "yes, there is", "Yes", "No", "Yes", "No", "maybe"], "total", 150.0, "0-400"),
    # POPE F1 per split: adversarial 2/3, popular 0, random 1 -> mean 55.6.
    ("pope", ["Yes", "Yes", "No", "No", "Yes, there is.", "I don't know"], "f1_mean", (200 / 3 + 100) / 3, "0-100"),
    # HallusionBench: aAcc 5/6, fAcc 2/3 figures, qAcc 3/4 questions -> mean 75.
    ("hallusionbench", ["yes", "no", "yes", "yes", "Yes", "No"], "score", 75.0, "0-100"),
    # OCRBench: 3 hits of 4 questions (the KIE answer is empty).
    ("ocrbench", ["The word is stop.", "It says BLUE CAFE", "x^{2}+1", ""], "final_score", 3.0, "0-4"),
    # MathVista: all five right (letter, integer, float at precision 1, list, text).
    ("mathvista", ["B", "There are 7 dots.", "2.54", "[1, 3]", "east."], "accuracy", 100.0, "0-100"),
    # MATH-Vision: MC gold C ("5") right by option text, 1/2 right numerically, 12 wrong -> 2 of 3.
    ("mathvision", ["5", r"\boxed{0.5}", "13"], "accuracy", 200 / 3, "0-100"),
    # ScienceQA golds B, A, C; SEED-2-Plus golds D, A, C.
    ("scienceqa", ["B", "B", "C"], "accuracy", 200 / 3, "0-100"),
    ("seedbench2plus", ["D", "A", "nonsense"], "accuracy", 200 / 3, "0-100"),
    # MIA-Bench rule stand-in: component credit 1.0, 0.5, 1.0.
    ("miabench", ["Look at this.", "Look at this.", "Look at this."], "score", 250 / 3, "0-100"),
]


@pytest.mark.parametrize(("name", "predictions", "metric", "expected", "scale"), CASES, ids=[c[0] for c in CASES])
def test_headline_of_every_dataset_from_the_store(store, name, predictions, metric, expected, scale) -> None:
    write_cell(store, name, predictions)
    metrics = analysis.store_metrics(store)
    row = headline(metrics, name)
    assert row["metric"] == metric and row["value"] == pytest.approx(expected) and row["scale"] == scale
    assert row["dimension"] == data.get(name).dimension and row["n"] == len(predictions)
    scores = analysis.headline_scores(store.frame())
    assert list(scores.columns[:5]) == ["model", "method", "ratio", "seed", "dataset"]
    assert scores["score"].iloc[0] == pytest.approx(expected / row["scale_max"])


def test_mmbench_circular_groups_from_the_store(store) -> None:
    samples = data.load("mmbench", path=FIXTURES / "mmbench")
    predictions = [s.answer for s in samples]
    wrong = next(i for i, s in enumerate(samples) if s.id == "1000001")  # a shifted copy of question 1
    predictions[wrong] = "B" if samples[wrong].answer == "A" else "A"
    write_cell(store, "mmbench", predictions)
    metrics = analysis.store_metrics(store)
    row = headline(metrics, "mmbench")
    # Two questions; question 1 fails on its copy, so CircularEval is 1/2 while every original row is right.
    assert row["metric"] == "circular_accuracy" and row["value"] == 50.0
    assert value(metrics, "mmbench", "vanilla_accuracy") == 100.0
    assert metrics[metrics["metric"] == "questions"]["scale"].iloc[0] == "count"


def test_mme_sub_metrics_scales_and_per_category_sum(store) -> None:
    write_cell(store, "mme", ["Yes.", "no", "yes, there is", "Yes", "No", "Yes", "No", "maybe"])
    metrics = analysis.official_metrics(store.frame())
    assert value(metrics, "mme", "existence/acc") == 75.0 and value(metrics, "mme", "existence/acc_plus") == 50.0
    assert value(metrics, "mme", "perception") == 125.0 and value(metrics, "mme", "cognition") == 25.0
    scales = dict(zip(metrics["metric"], metrics["scale"], strict=True))
    assert scales["existence/score"] == "0-200" and scales["perception"] == "0-200" and scales["total"] == "0-400"
    assert metrics["parse_failure_rate"].iloc[0] == pytest.approx(1 / 8)  # "maybe"
    assert not metrics["judge_free"].astype(bool).any()


def test_ocrbench_reports_the_normalised_final_score(store) -> None:
    write_cell(store, "ocrbench", ["The word is stop.", "It says BLUE CAFE", "x^{2}+1", ""])
    metrics = analysis.official_metrics(store.frame())
    assert value(metrics, "ocrbench", "final_score_norm") == 75.0  # = Final Score / 10 on the full 1000
    scales = dict(zip(metrics["metric"], metrics["scale"], strict=True))
    assert scales["final_score_norm"] == "0-100" and scales["type/Regular Text Recognition"] == "0-1"


def test_judge_free_stand_in_is_labelled(store) -> None:
    write_cell(store, "miabench", ["Look at this."] * 3)
    metrics = analysis.official_metrics(store.frame())
    assert metrics["judge_free"].str.contains("stand-in").all()
    table = analysis.official_tables(metrics)["miabench"]
    assert any("headline; judge-free stand-in" in c for c in table.columns)
    assert analysis.headline_scores(store.frame())["judge_free"].str.contains("stand-in").all()


def test_seeds_and_methods_are_separate_cells(store) -> None:
    write_cell(store, "pope", ["Yes", "No", "Yes", "No", "Yes", "No"])  # all right
    write_cell(store, "pope", ["No"] * 6, method="random_vit", seed=1)  # F1 0 everywhere
    scores = analysis.headline_scores(store.frame()).set_index("method")
    assert scores.loc["vanilla", "score"] == 1.0 and scores.loc["random_vit", "score"] == 0.0
    assert scores.loc["random_vit", "seed"] == 1 and scores.loc["random_vit", "ratio"] == 0.889
    assert set(scores["dimension"]) == {"hallucination"}


def test_synthetic_dimension_cell(store) -> None:
    spec = data.get("synthetic")
    sample = data.load("synthetic", limit=1, dimension="hallucination")[0]
    write_cell(store, "synthetic", [sample.answer])
    row = headline(analysis.store_metrics(store), "synthetic/hallucination")
    assert row["metric"] == spec.headline_metric and row["value"] == 100.0 and row["dimension"] == "hallucination"


def test_records_without_sample_fields_fail_naming_what_is_missing(store) -> None:
    # ... but a paired metric cannot be computed without its group keys: an error, not a silent row mean.
    write_cell(store, "hallusionbench", ["yes"] * 6, legacy=True)
    with pytest.raises(ValueError, match=r"hallusionbench: record .* lacks the sample field\(s\) \['figure'"):
        analysis.official_metrics(store.frame())
    with pytest.raises(ValueError, match=r"lacks the sample field\(s\) \['figure'"):
        analysis.headline_scores(store.frame().drop(columns="score"))


def test_errors_are_left_out_and_missing_columns_named(store) -> None:
    write_cell(store, "scienceqa", ["B", "A", "C"])
    frame = store.frame()
    frame.loc[0, "error"] = "CUDA out of memory"
    row = headline(analysis.official_metrics(frame), "scienceqa")
    assert row["n"] == 2 and row["value"] == 100.0
    with pytest.raises(ValueError, match=r"missing column\(s\) \['sample_id'\]"):
        analysis.official_metrics(frame.drop(columns="sample_id"))
    # Without the stored sample fields an accuracy dataset still aggregates (it needs only the scores) ...
    bare = frame.drop(columns=["score", "parsed", "extracted", "error"]).iloc[1:]
    assert headline(analysis.official_metrics(bare), "scienceqa")["value"] == 100.0


def test_official_tables_put_the_headline_first(store) -> None:
    write_cell(store, "pope", ["Yes", "No", "Yes", "No", "Yes", "No"])
    write_cell(store, "pope", ["Yes", "No", "Yes", "No", "Yes", "Yes"], seed=1)
    tables = analysis.official_tables(analysis.official_metrics(store.frame()))
    table = tables["pope"]
    assert list(table.columns[:4]) == ["model", "method", "ratio", "f1_mean [headline, 0-100]"]
    # Seeds averaged: F1 100 and (100 + 100 + 2/3 x 100) / 3 for the second seed's random split.
    assert table["f1_mean [headline, 0-100]"].iloc[0] == pytest.approx((100 + (200 + 200 / 3) / 3) / 2)


def test_runner_records_carry_what_the_official_aggregate_needs(store, tmp_path: Path) -> None:
    # End to end: the runner stores Sample.record_fields, so the official aggregate runs on its records.
    from unipb_core.runner import Cell, evaluate_cell

    samples = data.load("hallusionbench", path=FIXTURES / "hallusionbench.parquet")
    cell = Cell(model="tiny:llava", method="vanilla", ratio=0.0, seed=0, dataset="hallusionbench")
    evaluate_cell(cell, store, samples=samples, progress=False)
    frame = store.frame()
    assert frame["score"].iloc[0] == samples[0].record_fields()
    metrics = analysis.official_metrics(frame)
    assert set(metrics["metric"]) >= {"overall/aAcc", "overall/fAcc", "overall/qAcc", "score"}
    spec = data.get("hallusionbench")
    scores = [spec.score(s, p) for s, p in zip(samples, frame["prediction"], strict=True)]
    expected = spec.aggregate(samples, scores)
    assert headline(metrics, "hallusionbench")["value"] == pytest.approx(expected["score"])


def test_headline_table_has_one_column_per_dataset_headline(store) -> None:
    write_cell(store, "pope", ["Yes", "No", "Yes", "No", "Yes", "No"])
    write_cell(store, "pope", ["Yes", "No", "Yes", "No", "Yes", "Yes"], seed=1)
    table = analysis.headline_table(analysis.official_metrics(store.frame()))
    assert list(table.columns) == ["model", "method", "ratio", "pope [f1_mean, 0-100]"]
    # The same seed average as the per-dataset table's headline column.
    assert table["pope [f1_mean, 0-100]"].iloc[0] == pytest.approx((100 + (200 + 200 / 3) / 3) / 2)
