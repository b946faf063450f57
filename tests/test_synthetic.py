"""The synthetic suite: all six dimensions, seeded determinism, disjoint splits, answers true to the pixels."""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict

import numpy as np
import pytest
from scipy import ndimage

from unipb_core import data
from unipb_core.data.synthetic import CHANCE, OCR_CHARS
from unipb_core.data.synthetic_draw import COLOURS

SPEC = data.get("synthetic")


def digest(sample: data.Sample) -> str:
    return hashlib.sha1(sample.images[0].tobytes()).hexdigest()


def ink(sample: data.Sample) -> np.ndarray:
    """Mask of non-white pixels."""
    return np.asarray(sample.images[0]).astype(int).sum(axis=2) < 720


def colour_mask(sample: data.Sample, colour: str) -> np.ndarray:
    pixels = np.asarray(sample.images[0]).astype(int)
    return np.abs(pixels - np.array(COLOURS[colour])).sum(axis=2) < 30


def test_covers_all_six_dimensions_with_short_answers() -> None:
    samples = data.load("synthetic", split="test", limit=6)
    assert [s.dimension for s in samples[::6]] == list(data.DIMENSIONS)
    assert len(samples) == 36 and len({s.id for s in samples}) == 36  # limit is per dimension
    for s in samples:
        assert s.dataset == "synthetic" and s.images[0].size == (336, 336) and s.images[0].mode == "RGB"
        assert 0 < len(s.answer) <= 8 and " " not in s.answer
        assert SPEC.to_prompt(s).startswith(s.question)
    assert {s.dimension for s in data.load("synthetic", dimension="ocr", limit=3)} == {"ocr"}
    assert data.load("synthetic", limit=1, image_size=224)[0].images[0].size == (224, 224)


def test_deterministic_by_seed() -> None:
    a = data.load("synthetic", split="train", limit=5, seed=3)
    b = data.load("synthetic", split="train", limit=5, seed=3)
    c = data.load("synthetic", split="train", limit=5, seed=4)
    assert [(s.id, s.question, s.answer, digest(s)) for s in a] == [(s.id, s.question, s.answer, digest(s)) for s in b]
    assert [digest(s) for s in a] != [digest(s) for s in c]
    # A sample depends only on (split, seed, dimension, index): asking for fewer gives a prefix.
    assert [digest(s) for s in data.load("synthetic", split="train", limit=2, seed=3, dimension="math")] == [
        digest(s) for s in a if s.dimension == "math"
    ][:2]


def test_train_and_test_do_not_overlap() -> None:
    train = data.load("synthetic", split="train", limit=40)
    test = data.load("synthetic", split="test", limit=40)
    assert not {s.id for s in train} & {s.id for s in test}
    assert not {digest(s) for s in train} & {digest(s) for s in test}


def test_generation_is_fast() -> None:
    start = time.perf_counter()
    data.load("synthetic", split="train", limit=100)
    assert time.perf_counter() - start < 5.0  # 600 images; about 0.3 s on 2 cores


def test_gold_answers_score_one_and_wrong_ones_zero() -> None:
    samples = data.load("synthetic", split="test", limit=12)
    scores = [SPEC.score(s, s.answer) for s in samples]
    assert all(sc.correct == 1.0 and sc.parsed for sc in scores)
    result = SPEC.aggregate(samples, scores)
    assert result["headline"] == 100.0 and result["parse_failure_rate"] == 0.0
    assert all(result[f"{d}/accuracy"] == 100.0 for d in data.DIMENSIONS)


def test_scoring_rules_per_answer_kind() -> None:
    by_category = {}
    for s in data.load("synthetic", split="test", limit=12):
        by_category.setdefault(s.category, s)
    ocr, count, chart = by_category["read"], by_category["count"], by_category["bar_chart"]
    assert SPEC.score(ocr, f"The text is {ocr.answer.lower()}.").correct == 1.0
    assert SPEC.score(ocr, f"{ocr.answer}{ocr.answer}").correct == 0.0
    assert SPEC.score(count, f"There are {count.answer} shapes.").correct == 1.0
    assert SPEC.score(chart, f"The {chart.answer} bar.").correct == 1.0
    other = next(c for c in chart.meta["colours"] if c != chart.answer)  # another bar of the same chart
    assert SPEC.score(chart, other).correct == 0.0
    assert SPEC.score(by_category["presence"], "Hmm.").parsed is False
    instruction = next(s for s in data.load("synthetic", dimension="instruction", limit=1))
    assert instruction.answer == instruction.meta["target"].upper()  # first constraint: capitals
    assert SPEC.score(instruction, instruction.meta["target"]).correct == 0.5  # right colour, wrong case
    wrong = next(c for c in COLOURS if c != instruction.meta["target"])
    assert SPEC.score(instruction, wrong.upper()).correct == 0.5  # right case, wrong colour
    assert SPEC.score(instruction, "I see a shape").parsed is False


@pytest.mark.parametrize("seed", [0, 1])
def test_answers_match_the_pixels(seed: int) -> None:
    """Answers are true by construction: check each with a few lines of image analysis."""
    for s in data.load("synthetic", split="train", limit=24, seed=seed):
        width = s.images[0].width
        if s.category == "colour" or s.dimension == "instruction":
            colour = s.answer if s.category == "colour" else s.meta["target"]
            assert colour_mask(s, colour).sum() > 0.5 * ink(s).sum()
        elif s.category == "side":
            x0, x1 = np.nonzero(ink(s).any(axis=0))[0][[0, -1]]
            assert (x1 < 0.45 * width) if s.answer == "left" else (x0 > 0.55 * width)
        elif s.category == "count":
            assert ndimage.label(ink(s))[1] == int(s.answer)
        elif s.category == "bar_chart":
            heights = {c: colour_mask(s, c).any(axis=1).sum() for c in s.meta["colours"]}
            pick = max if "tallest" in s.question else min
            assert s.answer == pick(heights, key=heights.get)
        elif s.category == "presence":
            asked = s.question.split()[3]  # "Is there a <colour> shape ..."
            (drawn,) = s.meta["colours"]
            assert colour_mask(s, drawn).sum() > 0.9 * ink(s).sum() > 0
            assert s.answer == ("yes" if asked == drawn else "no")
        elif s.dimension == "ocr":
            assert len(s.answer) == 1 and s.answer in OCR_CHARS and ndimage.label(ink(s))[1] >= 1


def test_objects_span_several_tokens_but_not_the_image() -> None:
    """Pruning 88.9 % (16 of 144 tokens kept) must be able to lose what a question asks about."""
    for s in data.load("synthetic", split="test", limit=12):
        share = ink(s).mean()
        assert 0.01 < share < 0.45, (s.id, share)


def test_documented_chance_is_what_a_blind_answer_scores() -> None:
    """A model that sees the question but not the image does no better than ``CHANCE`` (up to sampling)."""
    by_category: dict[str, list[data.Sample]] = defaultdict(list)
    for s in data.load("synthetic", split="test", limit=240):
        by_category[s.category].append(s)
    assert set(by_category) == set(CHANCE)
    for category, samples in by_category.items():
        answers = sorted({s.answer for s in samples})
        by_question: dict[str, list[data.Sample]] = defaultdict(list)
        for s in samples:
            by_question[s.question].append(s)
        # The best answer for each question text, chosen with hindsight: an upper bound on a blind model.
        best = sum(max(sum(SPEC.score(s, a).correct for s in group) for a in answers) for group in by_question.values())
        assert CHANCE[category] - 0.02 <= best / len(samples) <= CHANCE[category] + 0.1, category


def test_hallucination_answers_are_balanced() -> None:
    answers = [s.answer for s in data.load("synthetic", dimension="hallucination", limit=20)]
    assert answers.count("yes") == answers.count("no") == 10
