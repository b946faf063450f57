"""MATH-Vision (Wang et al., 2024): competition math with figures, 16 subjects, MCQ (A-E) and free form.

Scored judge-free as lmms-eval's default (the official Math-V rule script): the option letter (or option
text) for multiple choice; for free form the last ``\\boxed{}`` / "answer is" span, compared as strings
after the official clean-up (which removes only the units "units", "km" and "m^3": "12 cm" is not 12) or as
numbers rounded to 2 decimals (see ``metrics.math_answer``, which replaces ``latex2sympy`` with a small
arithmetic evaluator). The rule ``strip_units=True`` (a deviation) also strips cm, m, degrees and ``\\text{}``.
The prompt asks for the answer directly rather than step-by-step reasoning, because pruning runs use a short
generation budget.
"""

from __future__ import annotations

from typing import Any

from unipb_core.data.prompts import LETTER_HINT, join, with_options
from unipb_core.data.registry import register
from unipb_core.data.sample import Sample
from unipb_core.data.spec import LENIENT_LETTERS, TableSpec, is_missing, parse_list
from unipb_core.metrics.extract import extract_option
from unipb_core.metrics.math_answer import extract_math_answer, math_equal

BOXED_HINT = 'Answer the question directly and put the final answer in one "\\boxed{}".'


@register
class MathVision(TableSpec):
    name = "mathvision"
    dimension = "math"
    hub_id = "MathLLMs/MathVision"
    split = "test"
    max_new_tokens = 64
    columns = ("id", "question", "options", "decoded_image", "answer")
    tsv_columns = ("index", "image", "question", "answer")
    image_column = "decoded_image"
    VERSION = "2"  # v2: the official clean-up keeps units such as "cm"; can_infer letters
    RULES = {
        "lenient_letters": LENIENT_LETTERS,
        "strip_units": (False, "True: also strip unit words (cm, m, degrees, ...) and \\text{} before comparing"),
    }

    def _sample(self, row: dict[str, Any], sample_id: str, options: list[Any], subject: Any) -> Sample:
        answer = str(self.need(row, "answer", sample_id)).strip()
        if options and answer not in "ABCDE"[: len(options)]:
            raise ValueError(f"mathvision: row {sample_id!r}: field 'answer' {answer!r} is not an option letter")
        return self.make(
            id=sample_id,
            question=str(self.need(row, "question", sample_id)),
            options=[str(o) for o in options],
            answer=answer,
            category="" if is_missing(subject) else str(subject),
            meta={"level": str(row.get("level", ""))},
        )

    def from_row(self, row: dict[str, Any], position: int) -> Sample:
        sample_id = str(self.need(row, "id", f"row {position}"))
        return self._sample(row, sample_id, parse_list(row.get("options")), row.get("subject"))

    def from_tsv(self, row: dict[str, Any], position: int) -> Sample:
        sample_id = str(self.need(row, "index", f"row {position}"))
        return self._sample(row, sample_id, parse_list(row.get("choices")), row.get("category"))

    def to_prompt(self, sample: Sample) -> str:
        if sample.options:
            return join(*with_options(sample.question, sample.options, "Choices:"), LETTER_HINT)
        return join(sample.question, BOXED_HINT)

    def extract(self, sample: Sample, text: str) -> str:
        if sample.options:
            return extract_option(text, sample.options, lenient=self.rule("lenient_letters"))
        return extract_math_answer(text)

    def match(self, sample: Sample, extracted: str) -> float:
        if sample.options:
            return float(extracted == sample.answer)
        return float(math_equal(extracted, sample.answer, strip_units=self.rule("strip_units")))
