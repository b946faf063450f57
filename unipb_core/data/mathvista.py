"""MathVista testmini (Lu et al., 2024): 1000 math-in-context questions, multiple choice and free form.

The official pipeline extracts answers with GPT; this adapter is the judge-free approximation from
DATASETS-NOTES, labelled "rule-extracted": a direct-answer prompt per answer type, then the option letter
(an answer equal to a choice text, else VLMEvalKit's ``can_infer``), the last number (int, or float rounded
to the row's ``precision``), the last ``[...]`` list or the normalised text, compared by string equality after
the official normalisation. A multiple-choice answer no rule reads goes through the official fallback of
``calculate_score.py``: a letter in parentheses, else the choice closest by Levenshtein distance; such a sample
is flagged unparsed (it counts in the parse-failure rate) but scored by the choice it falls back to. The rule
``closest_choice=False`` (a deviation) scores it wrong instead.
"""

from __future__ import annotations

from typing import Any

from unipb_core.data.prompts import LETTER_HINT, SHORT_HINT, join, with_options
from unipb_core.data.registry import register
from unipb_core.data.sample import Sample
from unipb_core.data.spec import LENIENT_LETTERS, TableSpec, is_missing, parse_list
from unipb_core.metrics.extract import (
    LETTERS,
    answer_span,
    closest_option,
    extract_list,
    extract_number,
    extract_option,
    normalize_text,
    parse_float,
)
from unipb_core.metrics.score import Judge, SampleScore

TYPE_HINTS = {
    "integer": "Answer the question using a single integer number.",
    "float1": "Answer the question using a single floating-point number with one decimal place.",
    "float2": "Answer the question using a single floating-point number with two decimal places.",
    "list": "Answer the question using a Python list.",
    "text": SHORT_HINT,
}


def _normal_form(value: str, answer_type: str, precision: int) -> str:
    """The official normalisation: int(float(x)) for integers, round(x, precision) for floats, list items
    without spaces, lowercased words for text; "" when ``value`` has no such form."""
    if answer_type in ("integer", "float"):
        number = parse_float(value)
        if number is None:
            return ""
        return str(int(number)) if answer_type == "integer" else str(round(number, precision))
    if answer_type == "list":
        return extract_list(value).replace(" ", "")
    return normalize_text(value)


@register
class MathVista(TableSpec):
    name = "mathvista"
    dimension = "math"
    hub_id = "AI4Math/MathVista"
    split = "testmini"
    max_new_tokens = 32
    judge_free = "rule extraction instead of the official GPT answer extraction"
    VERSION = "2"  # v2: can_infer letters and the official closest-choice fallback
    RULES = {
        "lenient_letters": LENIENT_LETTERS,
        "closest_choice": (True, "False: an unreadable multiple-choice answer is wrong, not the closest choice"),
    }
    columns = ("pid", "question", "decoded_image", "choices", "answer", "question_type", "answer_type")
    tsv_columns = ("index", "image", "question", "answer", "question_type", "answer_type")
    image_column = "decoded_image"

    def _sample(self, row: dict[str, Any], sample_id: str, task: Any, is_query: bool) -> Sample:
        question_type = str(self.need(row, "question_type", sample_id))
        answer_type = str(self.need(row, "answer_type", sample_id))
        precision = 1 if is_missing(row.get("precision")) else int(float(row["precision"]))
        choices = [str(c) for c in parse_list(row.get("choices"))] if question_type == "multi_choice" else []
        raw = str(self.need(row, "answer", sample_id))
        if choices:
            if raw not in choices:
                raise ValueError(f"mathvista: row {sample_id!r}: field 'answer' {raw!r} is not one of {choices}")
            answer = LETTERS[choices.index(raw)]
        else:
            answer = _normal_form(raw, answer_type, precision)
            if not answer:
                raise ValueError(f"mathvista: row {sample_id!r}: field 'answer' {raw!r} is not a valid {answer_type}")
        return self.make(
            id=sample_id,
            question=str(self.need(row, "question", sample_id)),
            options=choices,
            answer=answer,
            category="" if is_missing(task) else str(task),
            # A VLMEvalKit TSV question is already the official query (hint + choices): sent as is.
            meta={"answer_type": answer_type, "precision": precision, "answer_text": raw, "is_query": is_query},
        )

    def from_row(self, row: dict[str, Any], position: int) -> Sample:
        sample_id = str(self.need(row, "pid", f"row {position}"))
        metadata = row.get("metadata") or {}
        return self._sample(row, sample_id, metadata.get("task"), is_query=False)

    def from_tsv(self, row: dict[str, Any], position: int) -> Sample:
        sample_id = str(self.need(row, "index", f"row {position}"))
        return self._sample(row, sample_id, row.get("task"), is_query=True)

    def to_prompt(self, sample: Sample) -> str:
        if sample.meta["is_query"]:
            return sample.question
        if sample.options:
            return join(*with_options(sample.question, sample.options), LETTER_HINT)
        kind = sample.meta["answer_type"]
        if kind == "float":
            kind = "float2" if sample.meta["precision"] >= 2 else "float1"
        return join(sample.question, TYPE_HINTS.get(kind, SHORT_HINT))

    def extract(self, sample: Sample, text: str) -> str:
        if sample.options:
            if text.strip() in sample.options:  # the official extractor takes an answer equal to a choice as is
                return LETTERS[sample.options.index(text.strip())]
            return extract_option(text, sample.options, lenient=self.rule("lenient_letters"))
        kind, precision = sample.meta["answer_type"], sample.meta["precision"]
        if kind in ("integer", "float"):
            number = extract_number(text)
            return _normal_form(number, kind, precision) if number else ""
        return _normal_form(text if kind == "list" else answer_span(text), kind, precision)

    def score(self, sample: Sample, prediction: str, judge: Judge | None = None) -> SampleScore:
        result = super().score(sample, prediction, judge)
        if result.parsed or not sample.options or not self.rule("closest_choice"):
            return result
        letter = closest_option(prediction, sample.options)
        return SampleScore(float(letter == sample.answer), False, letter)
