"""Rule checks of plain-English instruction constraints (MIA-Bench components, synthetic instructions)."""

from __future__ import annotations

import pytest

from unipb_core.metrics.instruction import compile_constraint, count_sentences, count_words, substantive


@pytest.mark.parametrize(
    ("constraint", "response", "ok"),
    [
        ("in no more than 12 words", "Look at this.", True),  # "more than" inside "no more than" is an upper bound
        ("in no more than 3 words", "one two three four", False),
        ("no less than 3 sentences", "One. Two.", False),
        ("no less than 3 sentences", "One. Two. Three.", True),
        ("at least 5 words", "a b c d", False),
        ("more than 2 words", "a b c", True),
        ("fewer than 3 words", "a b c", False),
        ("between 2 and 4 sentences", "A. B. C.", True),
        ("in one word", "Red", True),
        ("in one word", "Red car", False),
        ("use exactly three sentences", "One. Two. Three.", True),
        ("Answer in all capital letters.", "RED", True),
        ("Answer in all capital letters.", "Red", False),
        ("Answer in lowercase letters, using one word.", "red", True),
        ("Answer in lowercase letters, using one word.", "Red", False),
        ("Answer with one word and end with an exclamation mark.", "red!", True),
        ("Answer with one word and end with an exclamation mark.", "red", False),
        ("as bullet points", "- a\n- b", True),
        ("as bullet points", "a, b", False),
        ("in JSON format", '{"a": 1}', True),
        ("in JSON format", "a: 1", False),
        ('End your answer with "Thanks"', "ok, thanks.", True),
        ("Begin your answer with 'Look'", "Look here", True),
        ("Begin your answer with 'Look'", "Here", False),
        ('include the word "sunny"', "It is sunny", True),
    ],
)
def test_constraint(constraint: str, response: str, ok: bool) -> None:
    check = compile_constraint(constraint)
    assert check is not None
    assert check(response) is ok


def test_uncheckable_components_are_none() -> None:
    assert compile_constraint("Describe the image") is None
    assert compile_constraint("Write a short poem about the image") is None


def test_counters_and_substance() -> None:
    assert count_words("It's a well-known fact.") == 4
    assert count_sentences("One. Two! Three? ") == 3
    assert substantive("A red circle.")
    assert not substantive("   ")
    assert not substantive("the the the the the the the the the the the the the")  # a repetition loop
