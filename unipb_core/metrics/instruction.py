"""Judge-free checks of instruction constraints written in plain English ("in no more than 50 words").

MIA-Bench scores each instruction component with GPT-4o; there is no official rule scorer. This module
verifies the components a program *can* verify, in the spirit of IFEval: length limits (words, sentences,
paragraphs, lines, characters, list items), formats (bullets, numbered lists, JSON, letter case, end
punctuation, quotes, hashtags) and literal "begin/end with/include 'X'" requirements. The synthetic
instruction tasks phrase their constraints in the same English, so one parser serves both.

:func:`compile_constraint` depends only on the constraint text, so which share of a benchmark is
rule-checkable is known before any model runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

Check = Callable[[str], bool]

_NUMBER_WORDS = {
    "a single": 1, "single": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "twelve": 12, "fifteen": 15, "twenty": 20,
}  # fmt: skip
_N = r"(\d+|" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + ")"
_UNIT = r"(words?|sentences?|paragraphs?|lines?|characters?|bullet points?|items?|points?)"
_AT_MOST = r"no more than|not more than|at most|fewer than|less than|under|within|a maximum of|maximum of|" \
    r"not exceeding|not exceed|up to|no longer than"  # fmt: skip
_AT_LEAST = r"at least|no less than|no fewer than|more than|over|a minimum of|minimum of"
_STRICT = {"fewer than", "less than", "under", "more than", "over"}
_NOT_NEGATED = r"(?<!no )(?<!not )\b"  # "more than" inside "no more than" is the opposite bound
_QUOTE = r"[\"'“‘](.+?)[\"'”’]"


def count_words(text: str) -> int:
    """Words as runs of letters/digits (apostrophes and hyphens kept inside a word)."""
    return len(re.findall(r"[\w][\w'’-]*", text))


def count_sentences(text: str) -> int:
    """Sentences as non-empty pieces between ., ! or ? followed by a space or the end."""
    return len([s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if re.search(r"\w", s)])


def _count_paragraphs(text: str) -> int:
    return len([p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()])


def _count_lines(text: str) -> int:
    return len([line for line in text.splitlines() if line.strip()])


def _bullet_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(r"\s*(?:[-*•]|\d+[.)])\s+\S", line)]


_COUNTERS: dict[str, Callable[[str], int]] = {
    "word": count_words,
    "sentence": count_sentences,
    "paragraph": _count_paragraphs,
    "line": _count_lines,
    "character": lambda text: len(text.strip()),
    "bullet point": lambda text: len(_bullet_lines(text)),
    "item": lambda text: len(_bullet_lines(text)),
    "point": lambda text: len(_bullet_lines(text)),
}


def _number(token: str) -> int:
    return int(token) if token.isdigit() else _NUMBER_WORDS[token]


def _counter(unit: str) -> Callable[[str], int]:
    return _COUNTERS[unit[:-1] if unit.endswith("s") and unit[:-1] in _COUNTERS else unit]


def _length_checks(text: str) -> list[Check]:
    checks: list[Check] = []
    for low, high, unit in re.findall(rf"(?:between|from) {_N} (?:and|to) {_N} {_UNIT}", text):
        count, lo, hi = _counter(unit), _number(low), _number(high)
        checks.append(lambda r, c=count, lo=lo, hi=hi: lo <= c(r) <= hi)
    for bound, n, unit in re.findall(rf"{_NOT_NEGATED}({_AT_MOST}) {_N} {_UNIT}", text):
        count, limit, strict = _counter(unit), _number(n), bound in _STRICT
        checks.append(lambda r, c=count, n=limit, s=strict: c(r) < n if s else c(r) <= n)
    for bound, n, unit in re.findall(rf"{_NOT_NEGATED}({_AT_LEAST}) {_N} {_UNIT}", text):
        count, limit, strict = _counter(unit), _number(n), bound in _STRICT
        checks.append(lambda r, c=count, n=limit, s=strict: c(r) > n if s else c(r) >= n)
    if not checks:
        # "in one word", "using exactly three sentences", "a two-sentence caption": an exact count when small
        # (a discrete format request), an upper bound when large ("in 100 words" is a budget, not a target).
        for n, unit in re.findall(rf"(?:exactly|in|using|with|of|write) {_N}[ -]{_UNIT}", text):
            count, target = _counter(unit), _number(n)
            checks.append(lambda r, c=count, n=target: c(r) == n if n <= 5 else c(r) <= n)
    return checks


def _json_ok(response: str) -> bool:
    body = re.sub(r"^```(?:json)?|```$", "", response.strip()).strip()
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def _letters(response: str) -> str:
    return "".join(ch for ch in response if ch.isalpha())


_FORMATS: list[tuple[str, Check]] = [
    (r"bullet", lambda r: len([line for line in _bullet_lines(r) if not re.match(r"\s*\d", line)]) >= 2),
    (r"numbered list|numbered points", lambda r: len([ln for ln in _bullet_lines(r) if re.match(r"\s*\d", ln)]) >= 2),
    (r"\bjson\b", _json_ok),
    (r"all capital letters|uppercase|upper case|all caps", lambda r: _letters(r) != "" and _letters(r).isupper()),
    (r"lowercase|lower case", lambda r: _letters(r) != "" and _letters(r).islower()),
    (r"end with a question mark|ends? with a question\b|in the form of a question", lambda r: r.rstrip().endswith("?")),
    (r"exclamation", lambda r: r.rstrip().endswith("!")),
    (r"hashtag", lambda r: re.search(r"#\w", r) is not None),
    (r"(?:in|within|use) (?:double )?quotation marks|in quotes", lambda r: re.search(r"[\"“].+?[\"”]", r) is not None),
]


_LITERALS = (  # requirement kind, phrasing that quotes the literal
    ("start", rf"(?:begin|start)s? (?:\w+ ){{0,3}}with (?:the (?:word|phrase) )?{_QUOTE}"),
    ("end", rf"\bends? (?:\w+ ){{0,3}}with (?:the (?:word|phrase) )?{_QUOTE}"),
    ("include", rf"(?:include|mention|use|contain)s? (?:\w+ ){{0,3}}{_QUOTE}"),
)


def _literal_check(kind: str, literal: str) -> Check:
    """Case-insensitive check that the response starts with, ends with or contains ``literal``."""
    literal = literal.lower()
    if kind == "start":
        return lambda r: r.strip().strip("\"'“*").lower().startswith(literal)
    if kind == "end":  # closing punctuation and quotes do not count against "end with 'X'"
        return lambda r: r.strip().rstrip(".!?\"'”’ ").lower().endswith(literal.rstrip(".!?"))
    return lambda r: literal in r.lower()


def _literal_checks(text: str) -> list[Check]:
    return [_literal_check(kind, lit) for kind, pattern in _LITERALS for lit in re.findall(pattern, text, re.I)]


def compile_constraint(text: str) -> Check | None:
    """A function ``response -> bool`` for every rule-checkable requirement in ``text``; None if there is none.

    When a component states several checkable requirements ("in lowercase, using one word") all must hold.
    """
    lowered = " ".join(text.lower().split())
    checks = _literal_checks(text) + _length_checks(lowered)
    checks += [check for pattern, check in _FORMATS if re.search(pattern, lowered)]
    if not checks:
        return None
    return lambda response: all(check(response) for check in checks)


def substantive(response: str) -> bool:
    """Whether a response says something: at least one word and, when long, not a repetition loop.

    Heavy pruning can collapse generation into repeating a phrase; such a response satisfies no content
    requirement even though it is not empty.
    """
    tokens = re.findall(r"\w+", response.lower())
    if not tokens:
        return False
    return len(tokens) < 12 or len(set(tokens)) / len(tokens) >= 0.3
