"""The shared answer extractors and the math comparison, on hand-written model outputs."""

from __future__ import annotations

import pytest

from unipb_core.metrics.extract import (
    extract_boxed,
    extract_list,
    extract_number,
    extract_option,
    extract_word,
    extract_yes_no,
    normalize_text,
)
from unipb_core.metrics.math_answer import evaluate, extract_math_answer, math_equal


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes.", "yes"),
        ("yes, there is a dog in the image", "yes"),
        ("No, there is not.", "no"),
        ("**No**", "no"),
        ("The answer is yes.", "yes"),
        ("Yes and no", "yes"),  # both words: the first word decides
        ("There is not a dog", ""),  # no yes/no word: a parse failure, not a guess
        ("I cannot tell", ""),
        ("", ""),
        ("Nope", ""),
    ],
)
def test_yes_no(text: str, expected: str) -> None:
    assert extract_yes_no(text) == expected


OPTIONS = ["cow", "horse", "sheep", "goat"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B", "B"),
        ("(b)", "B"),
        ("B. horse", "B"),
        ("The answer is C.", "C"),
        ("Answer: D", "D"),
        ("The correct option is (C) sheep", "C"),
        ("I think A is correct", "A"),  # "A" before a verb is the option
        ("horse", "B"),  # unique option text
        ("It is a sheep.", "C"),
        ("\\boxed{D}", "D"),
        ("A or B", ""),  # two letters: ambiguous
        ("E", ""),  # not one of the four options
        ("A cat is not shown; the animal here looks rather like a horse or a goat", ""),  # article "A", two texts
    ],
)
def test_option_letter(text: str, expected: str) -> None:
    assert extract_option(text, OPTIONS) == expected


def test_option_text_prefers_the_longer_overlapping_option() -> None:
    assert extract_option("dark red", ["red", "dark red", "blue"]) == "B"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 12.", "12"),
        ("x = 3, so the total is 1,000", "1000"),
        ("\\boxed{-2.5}", "-2.5"),
        ("Step 1: 4 apples. Answer: 7 apples", "7"),
        ("no number here", ""),
    ],
)
def test_number(text: str, expected: str) -> None:
    assert extract_number(text) == expected


def test_word_from_a_closed_vocabulary() -> None:
    colours = ["red", "green", "blue"]
    assert extract_word("It is Red.", colours) == "red"
    assert extract_word("green, not blue", colours) == "green"  # the first one named
    assert extract_word("a reddish tone", colours) == ""  # whole words only


def test_boxed_list_and_normalisation() -> None:
    assert extract_boxed(r"so \boxed{\frac{1}{2}} done") == r"\frac{1}{2}"
    assert extract_boxed("no box") == ""
    assert extract_list("The intercepts are [1, 3].") == "[1, 3]"
    assert normalize_text("  Red, 3.5 cm!\n") == "red 3.5 cm"


@pytest.mark.parametrize(
    ("prediction", "gold", "equal"),
    [
        (r"\frac{1}{2}", "0.5", True),
        ("1/2", r"\frac{1}{2}", True),
        (r"2\sqrt{3}", "3.464", True),  # rounded to 2 decimals, as MATH-V's is_equal
        (r"$12\,\text{cm}$", "12", True),
        ("x = 5", "5", True),
        (r"\text{East}", "east", True),
        ("(1,2)", "12", False),  # a tuple is not twelve
        ("3", "4", False),
        ("9**9**9", "1", False),  # refused, not computed
    ],
)
def test_math_equal(prediction: str, gold: str, equal: bool) -> None:
    assert math_equal(prediction, gold) is equal


def test_math_evaluate_and_extract() -> None:
    assert evaluate(r"\frac{\sqrt{2}}{2}") == pytest.approx(0.70710678)
    assert evaluate("2^{10}") == 1024.0
    assert evaluate("hello") is None
    assert extract_math_answer(r"First 2+2=4, so \boxed{\frac{3}{4}}.") == r"\frac{3}{4}"
    assert extract_math_answer("1/2") == "1/2"  # short answers are taken whole
    assert extract_math_answer("The area is half of the square, which makes it 8 in total units\n") == "8"
    assert extract_math_answer("I am not sure what the figure shows here at all") == ""
