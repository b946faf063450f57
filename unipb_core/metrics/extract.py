"""Rule-based answer extraction: the one implementation every dataset scorer uses.

Each extractor returns the answer it read as a string, or ``""`` when the rules cannot read one. An empty
result is a *parse failure*: the scorer counts the sample wrong and the aggregate reports the failure rate,
so a pruned model that drifts out of the answer format is not mistaken for one that stopped seeing.

The yes/no and option readers follow VLMEvalKit (``YOrN_Extraction``, ``can_infer``), the harness the study
scored with, by default; this project's more lenient readers are kept behind ``lenient=True`` (off by default,
listed in docs/datasets.md).
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


# VLMEvalKit's VQA punctuation clean-up (``process_punctuation``), used by its yes/no reader.
_VQA_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
_PERIOD_STRIP = re.compile(r"\.(?!\d)")  # VLMEvalKit's pattern has a no-op lookbehind typo: the same
# can_infer_option blanks these before splitting an answer into words.
_OPTION_PUNCT = ".()[],:;!*#{}"
# Canned refusals can_infer_option maps to "Z" (an answer that is no option: parsed, and wrong).
_REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
NO_OPTION = "Z"


def process_punctuation(text: str) -> str:
    """VLMEvalKit's ``process_punctuation`` (from the VQA evaluation): a punctuation mark next to a space is
    deleted, one inside a word becomes a space (all are deleted when the text holds a "1,000"-style number), and
    full stops not followed by a digit are dropped."""
    out = text
    delete = _COMMA_STRIP.search(text) is not None
    for p in _VQA_PUNCT:
        out = out.replace(p, "" if delete or f"{p} " in text or f" {p}" in text else " ")
    return _PERIOD_STRIP.sub("", out)


def extract_yes_no(text: str, *, lenient: bool = False) -> str:
    """Read "yes" or "no" from a free-form answer; ``""`` when it says neither or both.

    Default: VLMEvalKit's ``YOrN_Extraction`` -- lowercase, ``process_punctuation``, split on whitespace; "yes"
    when the word "yes" occurs and "no" does not, "no" for the reverse, otherwise Unknown (``""``), so
    "Yes, but no" and "There is not a dog" are parse failures (VLMEvalKit hands them to its judge).

    ``lenient=True`` is this project's former reader, a deliberate deviation kept as an option: markdown and
    quotes are stripped ("**Yes**" reads), all punctuation splits words, and when both words occur the answer's
    first word decides ("No, yes-like shapes are absent" reads "no").
    """
    if not lenient:
        tokens = process_punctuation(text.lower()).split()
        has_yes, has_no = "yes" in tokens, "no" in tokens
        return ("yes" if has_yes else "no") if has_yes != has_no else ""
    tokens = words(text.strip(_WRAPPERS + " \n"))
    has_yes, has_no = "yes" in tokens, "no" in tokens
    if has_yes != has_no:
        return "yes" if has_yes else "no"
    if has_yes and tokens[0] in ("yes", "no"):
        return tokens[0]
    return ""


def extract_option(text: str, options: Sequence[str], *, lenient: bool = False) -> str:
    """Read an option letter (``"A"``...) from an answer to a multiple-choice question; ``""`` if none.

    Default: VLMEvalKit's ``can_infer``. (1) ``can_infer_option``: blank ``.()[],:;!*#{}``, split into words;
    exactly one word that is a valid option letter -- case-sensitive, so a bare "b" is no letter -- gives that
    letter; a canned refusal, or no letter but a standalone "Z", gives ``"Z"`` (no option: parsed, wrong).
    (2) ``can_infer_text``: if the answer is at most twice as long as all option texts together, the only
    option whose lowercased text is a substring of the lowercased answer.

    ``lenient=True`` is this project's former reader, kept as an option: a bare letter in either case ("b",
    "(b)"), an "answer is X" phrase wins over other letters, a capital "A" followed by an ordinary word is the
    article, and option texts match on word boundaries with the longer of two nested options winning.
    """
    letters = LETTERS[: len(options)]
    if not letters:
        return ""
    if lenient:
        return _lenient_option(text, options, letters)
    if any(refusal in text for refusal in _REFUSALS):
        return NO_OPTION
    spaced = text
    for ch in _OPTION_PUNCT:
        spaced = spaced.replace(ch, " ")
    tokens = spaced.split()
    found = [letter for letter in letters if letter in tokens]
    if len(found) == 1:
        return found[0]
    if not found and NO_OPTION in tokens:
        return NO_OPTION
    answer = text.lower()
    if len(answer) > 2 * sum(len(str(o)) for o in options):
        return ""
    hits = [letter for letter, option in zip(letters, options, strict=False) if str(option).lower() in answer]
    return hits[0] if len(hits) == 1 else ""


def _lenient_option(text: str, options: Sequence[str], letters: str) -> str:
    """The project's former option reader (see :func:`extract_option` with ``lenient=True``)."""
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


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions of one character each cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def closest_option(text: str, options: Sequence[str]) -> str:
    """MathVista's fallback for a multiple-choice answer no rule could read: a letter in parentheses ("(b)")
    if it names an option, else the letter of the option text closest to the stripped answer by edit
    distance (the first on ties, as ``list.index(min(...))`` picks). Always returns a letter."""
    text = text.strip()
    letters = LETTERS[: len(options)]
    marked = re.findall(r"\(([a-zA-Z])\)", text)
    if marked and marked[0].upper() in letters:
        return marked[0].upper()
    distances = [edit_distance(text, str(option)) for option in options]
    return letters[distances.index(min(distances))]
