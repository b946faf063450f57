"""Each dataset's official aggregate on fixture rows, against numbers computed by hand in the comments."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from unipb_core import data
from unipb_core.metrics import SampleScore

FIXTURES = Path(__file__).parent / "fixtures" / "datasets"


def run(name: str, predictions: list[str], path: Path | None = None, judge=None):
    """Load the parquet fixture, score ``predictions`` in row order, return (samples, scores, aggregate)."""
    spec = data.get(name)
    samples = data.load(name, path=path or FIXTURES / f"{name}.parquet")
    assert len(samples) == len(predictions)
    scores = [spec.score(s, p, judge=judge) for s, p in zip(samples, predictions, strict=True)]
    return samples, scores, spec.aggregate(samples, scores, judge=judge)


def test_mme_acc_plus_and_scores() -> None:
    # Rows: existence img1 (Yes, No), img2 (Yes, No); code_reasoning img3 (Yes, No), img4 (No, Yes).
    preds = ["Yes.", "no", "yes, there is", "Yes", "No", "Yes", "No", "maybe"]
    _, scores, agg = run("mme", preds)
    # existence: 3/4 right -> acc 75; img1 both right, img2 not -> acc+ 50; score 125.
    assert agg["existence/acc"] == 75.0 and agg["existence/acc_plus"] == 50.0 and agg["existence/score"] == 125.0
    # code_reasoning: only img4's "No" right -> acc 25, acc+ 0; "maybe" is unparsed and wrong.
    assert agg["code_reasoning/acc"] == 25.0 and agg["code_reasoning/acc_plus"] == 0.0
    assert agg["perception"] == 125.0 and agg["cognition"] == 25.0 and agg["total"] == 150.0
    assert agg["headline"] == pytest.approx(150 / 400 * 100)  # total / (200 x 2 subtasks present)
    assert agg["parse_failure_rate"] == pytest.approx(1 / 8)
    assert scores[-1] == SampleScore(0.0, False, "")


def test_pope_per_split_f1_and_unparsed_counts_wrong() -> None:
    # Rows per split: (yes, no). adversarial says yes/yes, popular no/no, random yes/<unreadable>.
    preds = ["Yes", "Yes", "No", "No", "Yes, there is.", "I don't know"]
    _, _, agg = run("pope", preds)
    assert agg["adversarial/precision"] == 50.0 and agg["adversarial/recall"] == 100.0
    assert agg["adversarial/f1"] == pytest.approx(200 / 3)
    assert agg["popular/f1"] == 0.0 and agg["popular/accuracy"] == 50.0
    # The unreadable answer is a "no" for F1 (tp=1, fp=0, fn=0) but wrong for accuracy although gold is "no".
    assert agg["random/f1"] == 100.0 and agg["random/accuracy"] == 50.0
    assert agg["f1_mean"] == pytest.approx((200 / 3 + 0 + 100) / 3)
    assert agg["headline"] == agg["f1_mean"]
    # Pooled: tp=2, fp=1, fn=1 -> P = R = F1 = 2/3; 3 of 6 correct; 3 of 6 predicted yes.
    assert agg["overall/f1"] == pytest.approx(200 / 3) and agg["overall/accuracy"] == 50.0
    assert agg["overall/yes_ratio"] == 50.0
    assert agg["parse_failure_rate"] == pytest.approx(1 / 6)


def test_pope_tsv_rows_count_in_every_listed_split() -> None:
    # Row 0 (Yes) is in all three splits, row 1 (No) adversarial, row 2 (No) popular+random.
    _, _, agg = run("pope", ["yes", "yes", "no"], path=FIXTURES / "pope.tsv")
    assert agg["adversarial/accuracy"] == 50.0
    assert agg["popular/accuracy"] == 100.0 and agg["random/accuracy"] == 100.0
    assert agg["overall/accuracy"] == pytest.approx(500 / 6)  # 5 of the 6 expanded rows (3 + 1 + 2)


def test_hallusionbench_figure_and_question_pairing() -> None:
    # VD set 0: (fig0 q0 yes) (fig0 q1 no) (fig1 q0 no) (fig1 q1 yes); VS set 1: (fig0 q0 yes) (fig0 q1 no).
    preds = ["yes", "no", "yes", "yes", "Yes", "No"]  # only VD fig1 q0 is wrong
    _, _, agg = run("hallusionbench", preds)
    assert agg["overall/aAcc"] == pytest.approx(500 / 6)
    assert agg["overall/fAcc"] == pytest.approx(200 / 3)  # VD fig0 and VS fig0 of 3 figures
    assert agg["overall/qAcc"] == 75.0  # VD q1, VS q0, VS q1 of 4 questions (VD q0 fails on fig1)
    assert agg["VD/aAcc"] == 75.0 and agg["VD/fAcc"] == 50.0 and agg["VD/qAcc"] == 50.0
    assert agg["headline"] == pytest.approx((500 / 6 + 200 / 3 + 75) / 3)


def test_ocrbench_substring_rules_and_groups() -> None:
    # Regular "STOP", scene "Blue Cafe", HME "x ^ { 2 } + 1", KIE "12/03/2020".
    preds = ["The word is stop.", "It says BLUE CAFE", "x^{2}+1", ""]
    samples, scores, agg = run("ocrbench", preds)
    assert [s.correct for s in scores] == [1.0, 1.0, 1.0, 0.0]
    assert agg["final_score"] == 3.0 and agg["score_per_1000"] == 750.0 and agg["headline"] == 75.0
    assert agg["group/text_recognition"] == 1.0 and agg["group/kie"] == 0.0 and agg["group/hmer"] == 1.0
    assert agg["type/Regular Text Recognition"] == 1.0
    assert agg["parse_failure_rate"] == 0.25  # the empty answer
    spec = data.get("ocrbench")
    assert spec.score(samples[2], "X^{2}+1").correct == 0.0  # HME keeps case


def test_mmbench_circular_evaluation() -> None:
    samples = data.load("mmbench", path=FIXTURES / "mmbench")
    spec = data.get("mmbench")
    preds = [s.answer for s in samples]
    wrong = next(i for i, s in enumerate(samples) if s.id == "1000001")
    preds[wrong] = "B" if samples[wrong].answer == "A" else "A"
    scores = [spec.score(s, p) for s, p in zip(samples, preds, strict=True)]
    agg = spec.aggregate(samples, scores)
    assert agg["questions"] == 2.0
    assert agg["circular_accuracy"] == 50.0 and agg["headline"] == 50.0  # question 1 fails on its copy
    assert agg["vanilla_accuracy"] == 100.0  # both originals right
    assert agg["category/scene"] == 0.0 and agg["category/animal_recognition"] == 100.0


def test_mathvista_rule_extraction_by_answer_type() -> None:
    # MC (gold "square" = B), integer 7, float 2.5 at precision 1, list [1, 3], text "East".
    _, scores, agg = run("mathvista", ["B", "There are 7 dots.", "2.54", "[1, 3]", "east."])
    assert [s.correct for s in scores] == [1.0] * 5
    _, scores, agg = run("mathvista", ["square", "8", "2.4", "[1, 2]", "I do not know"])
    assert [s.correct for s in scores] == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert agg["accuracy"] == 20.0 and agg["parse_failure_rate"] == 0.0


def test_mathvista_closest_choice_fallback() -> None:
    # MC gold "square" (B) of circle / square / triangle. "squre" reads no letter and no option text: the
    # official calculate_score.py takes the closest choice by Levenshtein distance (square, 1 edit).
    samples = data.load("mathvista", path=FIXTURES / "mathvista.parquet")
    spec = data.get("mathvista")
    assert spec.score(samples[0], "squre") == SampleScore(1.0, False, "B")  # right, but counted as unparsed
    assert spec.score(samples[0], "(b)") == SampleScore(1.0, False, "B")  # "(b)": the parenthesised letter
    assert spec.score(samples[0], "b") == SampleScore(0.0, False, "A")  # tie circle/square: the first, circle
    strict = spec.variant(closest_choice=False)
    assert strict.score(samples[0], "squre") == SampleScore(0.0, False, "")
    assert strict.version == "mathvista/v2+closest_choice=False" and spec.version == "mathvista/v2"


def test_mathvision_letters_and_free_form() -> None:
    # MC gold C ("5"), free-form \frac{1}{2}, free-form 12.
    _, scores, agg = run("mathvision", ["5", r"\boxed{0.5}", "The answer is 12"])
    assert [s.correct for s in scores] == [1.0, 1.0, 1.0]
    # The official clean-up keeps "cm" (only "units", "km", "m^3" go): "12 cm" is not 12.
    _, scores, _ = run("mathvision", ["5", r"\boxed{0.5}", "The answer is 12 cm"])
    assert [s.correct for s in scores] == [1.0, 1.0, 0.0]
    samples = data.load("mathvision", path=FIXTURES / "mathvision.parquet")
    lenient = data.get("mathvision").variant(strip_units=True)
    assert lenient.score(samples[2], "The answer is 12 cm").correct == 1.0
    # MATH-V's evaluate.py lowercases the answer and compares it with the gold letter or option text, so its
    # multiple-choice letters are case-insensitive (unlike VLMEvalKit's can_infer).
    spec = data.get("mathvision")
    for prediction in ("c", "(C)", "The answer is C.", "I think it is C.", r"\boxed{c}", "5"):
        assert spec.score(samples[0], prediction).correct == 1.0, prediction
    assert spec.score(samples[0], "B").correct == 0.0 and spec.score(samples[0], "4").correct == 0.0
    _, scores, agg = run("mathvision", ["D", "1/3", "I cannot see the figure clearly enough to say"])
    assert [s.parsed for s in scores] == [True, True, False]
    assert agg["headline"] == 0.0 and agg["parse_failure_rate"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("name", ["mme", "pope", "hallusionbench"])
def test_yes_and_no_together_is_unknown(name: str) -> None:
    # VLMEvalKit's YOrN_Extraction: an answer holding both words is Unknown (a parse failure), not its first word.
    spec = data.get(name)
    sample = data.load(name, path=FIXTURES / f"{name}.parquet")[0]
    assert spec.score(sample, "Yes, but no cat is visible.") == SampleScore(0.0, False, "")
    lenient = spec.variant(lenient_yes_no=True)
    assert lenient.score(sample, "Yes, but no cat is visible.").extracted == "yes"
    assert lenient.version == f"{name}/v2+lenient_yes_no=True"


@pytest.mark.parametrize("name", ["mmbench", "seedbench2plus", "scienceqa"])
def test_bare_lowercase_letter_is_not_an_option(name: str) -> None:
    # can_infer_option is case-sensitive: "b" alone is no option letter (VLMEvalKit would ask its judge).
    spec = data.get(name)
    path = FIXTURES / (name if name == "mmbench" else f"{name}.parquet")
    sample = next(s for s in data.load(name, path=path) if len(s.options) >= 2)
    assert not any(option.lower() in "b" for option in sample.options)  # nor a text match
    assert spec.score(sample, "b") == SampleScore(0.0, False, "")
    assert spec.score(sample, "B").extracted == "B"
    assert spec.variant(lenient_letters=True).score(sample, "b").extracted == "B"


def test_unknown_scoring_rule_names_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match=r"pope: unknown scoring rule\(s\) \['lenient'\]; accepted: lenient_yes_no"):
        data.get("pope").variant(lenient=True)


def test_scienceqa_and_seedbench_accuracy() -> None:
    _, _, agg = run("scienceqa", ["B", "The answer is B", "C"])  # golds B, A, C
    assert agg["accuracy"] == pytest.approx(200 / 3)
    assert agg["category/natural science"] == 0.0 and agg["category/language science"] == 100.0
    _, _, agg = run("seedbench2plus", ["D", "A", "nonsense"])  # golds D, A, C
    assert agg["accuracy"] == pytest.approx(200 / 3) and agg["category/web"] == 0.0
    assert agg["parse_failure_rate"] == pytest.approx(1 / 3)


def test_miabench_rule_approximation_and_judge() -> None:
    # Sample 0: describe (4, substantive), <= 12 words (3), begins with 'Look' (3) -> 1.0
    # Sample 1: list colours (5, substantive), bullet points (5, fails) -> 0.5; sample 2: poem (10) -> 1.0
    samples, scores, agg = run("miabench", ["Look at this.", "Look at this.", "Look at this."])
    assert [s.correct for s in scores] == [1.0, 0.5, 1.0]
    assert agg["score"] == pytest.approx(250 / 3) and agg["headline"] == agg["score"]
    assert agg["rule_checked_weight_share"] == pytest.approx((6 + 5 + 0) / 30)

    def gpt_grader(sample, response):
        return "score of component 1: 3/4, total score: 7/10"

    _, scores, agg = run("miabench", ["a", "b", "c"], judge=gpt_grader)
    assert [s.correct for s in scores] == [0.7] * 3
    assert agg["judge"] == "gpt_grader" and "rule_checked_weight_share" not in agg


def test_judge_only_rescues_parse_failures_and_is_recorded() -> None:
    calls = []

    def my_judge(sample, prediction):
        calls.append(prediction)
        return "Yes"

    samples, scores, agg = run("mme", ["Yes", "No", "Yes", "No", "Yes", "No", "No", "hmm"], judge=my_judge)
    assert calls == ["hmm"]  # asked once, for the one answer the rules could not read
    assert scores[-1] == SampleScore(1.0, True, "yes")
    assert agg["judge"] == "my_judge" and agg["parse_failure_rate"] == 0.0
    assert "judge" not in run("mme", ["Yes"] * 8)[2]


def test_parse_failures_are_logged_with_ids(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        run("pope", ["Yes", "No", "Yes", "No", "Yes", "???"])
    assert "pope: 1/6 predictions had no answer the rules could read" in caplog.text and "ids 5" in caplog.text
