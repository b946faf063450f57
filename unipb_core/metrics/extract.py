"""Rule-based answer extraction: the one implementation every dataset scorer uses.

Each extractor returns the answer it read as a string, or ``""`` when the rules cannot read one. An empty
result is a *parse failure*: the scorer counts the sample wrong and the aggregate reports the failure rate,
so a pruned model that drifts out of the answer format is not mistaken for one that stopped seeing.

The rules follow VLMEvalKit (``YOrN_Extraction``, ``can_infer``), the harness the study scored with, with
two deliberate extensions noted at each function.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

LETTERS = string.ascii_uppercase

# Markdown and quoting that models wrap answers in ("**B**", "`yes`"); stripped before reading.
_WRAPPERS = "*_`\"'“”‘’"
_NUMBER = r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+−]?\.\d+"
_ANSWER_IS = re.compile(r"answer\s*(?:is|:)\s*:?\s*(.+)", re.IGNORECASE | re.DOTALL)
# Words after which a standalone capital "A" is a real option letter, not the article ("A is correct").
_A_VERBS = {"is", "was", "seems", "appears", "would", "should", "because", "and", "or", "since", "as", "looks"}


def normalize_text(text: str) -> str:
    """Lowercase, turn punctuation into spaces (decimal points survive) and collapse whitespace.

    Used wherever two short free-text answers are compared, so "Red." and " red" are the same answer.
    """
    text = text.lower().replace("−", "-")
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text)  # drop full stops but keep the point in "3.5"
    text = re.sub(r"[^\w\s.\-]", " ", text)
    return " ".join(text.split())


def words(text: str) -> list[str]:
    """The normalised words of ``text`` (see :func:`normalize_text`)."""
    return normalize_text(text).split()


def extract_yes_no(text: str) -> str:
    """Read "yes" or "no" from a free-form answer; ``""`` when it says neither or both.

    VLMEvalKit's rule (the word "yes" without the word "no", or the reverse) plus one extension: when both
    words occur, the answer's first word decides, so "No, yes-like shapes are absent" reads as "no". "Yes.",
    "yes, there is a dog" and "**No**" all parse; "There is not a dog" does not (no yes/no word) and is
    therefore counted as a parse failure rather than guessed.
    """
    tokens = words(text.strip(_WRAPPERS + " \n"))
    has_yes, has_no = "yes" in tokens, "no" in tokens
    if has_yes != has_no:
        return "yes" if has_yes else "no"
    if has_yes and tokens[0] in ("yes", "no"):
        return tokens[0]
    return ""


def extract_option(text: str, options: Sequence[str]) -> str:
    """Read an option letter (``"A"``...) from an answer to a multiple-choice question; ``""`` if ambiguous.

    In order: (1) the whole answer is one letter ("B", "(b)", "B."); (2) an "answer is X" phrase; (3) exactly
    one distinct valid capital letter stands alone in the text, where "A" followed by an ordinary lowercase
    word is read as the article (VLMEvalKit only logs that case); (4) exactly one option's text occurs in
    the answer (an option whose text is contained in another matched option yields to the longer one).
    """
    letters = LETTERS[: len(options)]
    if not letters:
        return ""
    stripped = text.strip().strip(_WRAPPERS + " \n")
    whole = re.fullmatch(r"[(\[]?([A-Za-z])[)\].:]?", stripped)
    if whole and whole.group(1).upper() in letters:
        return whole.group(1).upper()
    phrase = _ANSWER_IS.search(stripped)
    if phrase:
        head = re.match(r"[\s*(\[]*(?:option\s+)?([A-Za-z])(?![A-Za-z])", phrase.group(1), re.IGNORECASE)
        if head and head.group(1).upper() in letters:
            return head.group(1).upper()
    found = set()
    for match in re.finditer(r"(?<![A-Za-z])([A-Z])(?![A-Za-z'’])", stripped):
        letter = match.group(1)
        if letter not in letters:
            continue
        after = re.match(r" ([a-z]+)", stripped[match.end() :])
        if letter == "A" and after and after.group(1) not in _A_VERBS:
            continue  # "A cat sits ..." -- the article, not option A
        found.add(letter)
    if len(found) == 1:
        return found.pop()
    if found:
        return ""
    return _option_by_text(stripped, options, letters)


def _option_by_text(text: str, options: Sequence[str], letters: str) -> str:
    """The letter of the only option whose normalised text occurs in the answer (VLMEvalKit can_infer_text)."""
    answer = f" {normalize_text(text)} "
    texts = [normalize_text(str(o)) for o in options]
    # An answer far longer than all options together is an explanation, not a choice (VLMEvalKit's guard).
    if not answer.strip() or len(answer) > 2 * sum(len(t) for t in texts) + 2:
        return ""
    hits = [i for i, t in enumerate(texts) if t and f" {t} " in answer]
    hits = [i for i in hits if not any(j != i and texts[i] in texts[j] for j in hits)]
    return letters[hits[0]] if len(hits) == 1 else ""


def extract_word(text: str, vocabulary: Sequence[str]) -> str:
    """The first word of the answer that belongs to a closed ``vocabulary`` (colour names, "left"/"right");
    ``""`` when none does. Short-text answers from a known set are read this way, so "It is red." reads "red"."""
    return next((word for word in words(text) if word in vocabulary), "")


def extract_boxed(text: str) -> str:
    r"""Content of the last ``\boxed{...}`` (braces matched), or ``""`` when there is none."""
    start = text.rfind("\\boxed")
    if start < 0:
        return ""
    rest = text[start + len("\\boxed") :].lstrip()
    if not rest.startswith("{"):
        return rest.split("$")[0].split()[0] if rest.split() else ""
    depth = 0
    for i, ch in enumerate(rest):
        depth += ch == "{"
        depth -= ch == "}"
        if depth == 0:
            return rest[1:i].strip()
    return rest[1:].strip()  # unbalanced: a truncated generation, keep what is there


def answer_span(text: str) -> str:
    r"""The part of an answer that holds the final result: the last ``\boxed{}``, else the text after the last
    "answer is"/"answer:", else the whole text. Math extractors read numbers from this span only."""
    boxed = extract_boxed(text)
    if boxed:
        return boxed
    phrases = list(_ANSWER_IS.finditer(text))
    return phrases[-1].group(1).strip() if phrases else text


def extract_number(text: str) -> str:
    """The final number of an answer as a plain decimal string ("1,000" -> "1000"); ``""`` if none.

    Takes the last number inside :func:`answer_span`, so "The answer is 12." and "x = 3, so 12" give "12".
    """
    numbers = re.findall(_NUMBER, answer_span(text))
    if not numbers:
        return ""
    return numbers[-1].replace(",", "").replace("−", "-").lstrip("+")


def extract_list(text: str) -> str:
    """The last ``[...]`` list of an answer, normalised to ``"[a, b]"``; ``""`` if none."""
    lists = re.findall(r"\[([^\[\]]*)\]", answer_span(text))
    if not lists:
        return ""
    items = [item.strip().strip(_WRAPPERS) for item in lists[-1].split(",")]
    return "[" + ", ".join(item for item in items if item) + "]"


def parse_float(text: str) -> float | None:
    """``float(text)`` tolerating thousands separators, a unicode minus and a trailing "%"; None if not a number."""
    cleaned = text.strip().replace(",", "").replace("−", "-").rstrip("%").strip()
    try:
        return float(cleaned)
    except ValueError:
        return None
