"""The shared answer extractors and the math comparison, on hand-written model outputs."""

from __future__ import annotations

import pytest

from unipb_core.metrics.extract import (
    closest_option,
    edit_distance,
    extract_boxed,
    extract_list,
    extract_number,
    extract_option,
    extract_word,
    extract_yes_no,
    normalize_text,
    process_punctuation,
)
from unipb_core.metrics.math_answer import clean_latex, evaluate, extract_math_answer, math_equal, math_v_answer


@pytest.mark.parametrize(
    ("text", "expected", "lenient"),
    [
        ("Yes.", "yes", "yes"),
        ("yes, there is a dog in the image", "yes", "yes"),
        ("No, there is not.", "no", "no"),
        ("The answer is yes.", "yes", "yes"),
        # VLMEvalKit's YOrN_Extraction: both words -> Unknown; the lenient reader lets the first word decide.
        ("Yes and no", "", "yes"),
        ("No, yes-like shapes are absent", "", "no"),
        ("yes-no", "", ""),  # "-" inside a word becomes a space: both words
        # process_punctuation keeps "*" and "'": a markdown-bold answer is not the word "yes" (judge territory).
        ("**No**", "", "no"),
        ("'yes'", "", "yes"),
        ("There is not a dog", "", ""),  # no yes/no word: a parse failure, not a guess
        ("I cannot tell", "", ""),
        ("", "", ""),
        ("Nope", "", ""),
    ],
)
def test_yes_no(text: str, expected: str, lenient: str) -> None:
    assert extract_yes_no(text) == expected
    assert extract_yes_no(text, lenient=True) == lenient


def test_process_punctuation_is_vlmevalkits() -> None:
    assert process_punctuation("yes, it is.") == "yes it is"  # "," next to a space is deleted, "." dropped
    assert process_punctuation("yes,no") == "yes no"  # inside a word it becomes a space
    assert process_punctuation("1,000 yes,no") == "1000 yesno"  # a 1,000-style number: all are deleted
    assert process_punctuation("3.5") == "3.5"


OPTIONS = ["cow", "horse", "sheep", "goat"]


@pytest.mark.parametrize(
    ("text", "expected", "lenient"),
    [
        ("B", "B", "B"),
        # can_infer_option is case-sensitive: a bare lowercase letter is no option letter.
        ("b", "", "B"),
        ("(b)", "", "B"),
        ("B. horse", "B", "B"),
        ("The answer is C.", "C", "C"),
        ("Answer: D", "D", "D"),
        ("The correct option is (C) sheep", "C", "C"),
        ("I think A is correct", "A", "A"),
        ("horse", "B", "B"),  # unique option text
        ("It is a sheep.", "C", "C"),
        ("\\boxed{D}", "D", "D"),
        ("**B**", "B", "B"),
        ("A or B", "", ""),  # two letters: ambiguous
        ("The answer is B, not C", "", "B"),  # can_infer sees two letters; the lenient reader the phrase
        ("E", "", ""),  # not one of the four options
        # can_infer counts a standalone "A" as option A (VLMEvalKit only logs it as a possible article).
        ("A cat is not shown; the animal here looks rather like a horse or a goat", "A", ""),
        ("Cannot determine the answer", "Z", ""),  # a canned refusal: no option (parsed, wrong)
        ("Z", "Z", ""),
    ],
)
def test_option_letter(text: str, expected: str, lenient: str) -> None:
    assert extract_option(text, OPTIONS) == expected
    assert extract_option(text, OPTIONS, lenient=True) == lenient


def test_option_text_match_is_a_plain_substring() -> None:
    # can_infer_text: "red" is inside "dark red" too, so two options match and nothing is read.
    assert extract_option("dark red", ["red", "dark red", "blue"]) == ""
    assert extract_option("dark red", ["red", "dark red", "blue"], lenient=True) == "B"  # the longer one wins
    # The option's text must occur in the answer (not the reverse): "b" is not "blue".
    assert extract_option("b", ["red", "green", "blue"]) == ""
    assert extract_option("Blue!", ["red", "green", "blue"]) == "C"
    # Answers over twice as long as all options together are explanations, not choices.
    assert extract_option("I would say that it is most likely the horse", ["cow", "horse"]) == ""


def test_closest_option_is_mathvistas_fallback() -> None:
    options = ["circle", "square", "triangle"]
    assert edit_distance("squre", "square") == 1 and edit_distance("", "abc") == 3
    assert closest_option("squre", options) == "B"
    assert closest_option("(c) I guess", options) == "C"  # a letter in parentheses first
    assert closest_option("b", options) == "A"  # ties go to the first option, as list.index(min(...))


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
        ("x = 5", "5", True),
        ("12 km", "12", True),  # MATH-V removes "km", "units", "m^3" ...
        ("(1,2)", "12", False),  # a tuple is not twelve
        ("3", "4", False),
        ("9**9**9", "1", False),  # refused, not computed
    ],
)
def test_math_equal(prediction: str, gold: str, equal: bool) -> None:
    assert math_equal(prediction, gold) is equal


@pytest.mark.parametrize("prediction", ["5 cm", r"$5\,\text{cm}$", r"5^{\circ}\text{ }cm", "5 degrees", "5°"], ids=str)
def test_math_v_keeps_units_it_does_not_list(prediction: str) -> None:
    # find_math_answer strips only "units", "km", "m^3" and degree marks written ^\circ: "5 cm" is not 5.
    assert math_equal(prediction, "5") is False
    assert math_equal(prediction, "5", strip_units=True) is True  # the lenient clean-up, off by default
    assert math_equal(r"\text{East}", "east") is False and math_equal(r"\text{East}", "east", strip_units=True)
    assert clean_latex(r"5^{\circ}") == "5" and clean_latex(r"$\dfrac{1}{2}$") == r"\frac{1}{2}"


def test_math_evaluate_and_extract() -> None:
    assert evaluate(r"\frac{\sqrt{2}}{2}") == pytest.approx(0.70710678)
    assert evaluate("2^{10}") == 1024.0
    assert evaluate("hello") is None
    assert extract_math_answer(r"First 2+2=4, so \boxed{\frac{3}{4}}.") == r"\frac{3}{4}"
    assert extract_math_answer("1/2") == "1/2"  # short answers are taken whole
    assert extract_math_answer("The area is half of the square, which makes it 8 in total units\n") == "8"
    assert extract_math_answer("I am not sure what the figure shows here at all") == ""


@pytest.mark.parametrize(
    ("response", "answer"),
    [
        ("B", "b"),
        ("The answer is B.", "b"),
        ("I think it is C.", "c"),  # a trailing " C." is the letter
        ("(D)\nbecause the angles add up", "d"),  # a leading "(D)\n" too
        ("The correct answer is (b).", "b"),
        ("The answer is 12 cm", "12cm"),  # units other than units/km/m^3 stay
        (r"so \boxed{\frac{1}{2}} and finally \boxed{3}", "3"),  # the last box
        ("x = 3", "3"),
        ("", ""),
    ],
)
def test_math_v_answer_reads_like_the_official_script(response: str, answer: str) -> None:
    assert math_v_answer(response) == answer
