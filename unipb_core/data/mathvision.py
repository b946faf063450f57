"""MATH-Vision (Wang et al., 2024): competition math with figures, 16 subjects, MCQ (A-E) and free form.

Scored judge-free as lmms-eval's default, the official Math-V rule script (``evaluate.py``): the model answer is
read the same way for both kinds (a trailing " B." or leading "B\\n", a number after "is ", the text after "the
answer is", the last ``\\boxed{}``), lowercased and cleaned; a multiple-choice answer counts when it equals the
gold letter (case-insensitive: "b" is B) or the gold option's text; free form when it equals the gold answer as
strings after the official clean-up (which removes only the units "units", "km" and "m^3": "12 cm" is not 12) or as
numbers rounded to 2 decimals (see ``metrics.math_answer``, which replaces ``latex2sympy`` with a small arithmetic
evaluator). The rule ``strip_units=True`` (a deviation) also strips cm, m, degrees and ``\\text{}``. The prompt
asks for the answer directly rather than step-by-step reasoning, because pruning runs use a short generation
budget.
"""

from __future__ import annotations

from typing import Any

from unipb_core.data.prompts import LETTER_HINT, join, with_options
from unipb_core.data.registry import register
from unipb_core.data.sample import Sample
from unipb_core.data.spec import TableSpec, is_missing, parse_list
from unipb_core.metrics.math_answer import MAX_ANSWER_CHARS, math_equal, math_v_answer
from unipb_core.metrics.score import Judge, SampleScore

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
    VERSION = "2"  # v2: MATH-V's evaluate.py for letters and values; its clean-up keeps units such as "cm"
    RULES = {
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
        return math_v_answer(text)

    def match(self, sample: Sample, extracted: str) -> float:
        """MATH-V's ``is_equal`` against the gold answer, and for multiple choice also against the gold option's
        text (so "b", "(B)" and the option's value all count)."""
        golds = [sample.answer]
        if sample.options:
            golds.append(sample.options["ABCDE".index(sample.answer)])
        return float(any(math_equal(extracted, g, strip_units=self.rule("strip_units")) for g in golds))

    def score(self, sample: Sample, prediction: str, judge: Judge | None = None) -> SampleScore:
        """Scored as the official script scores every response; an empty or whole-response "answer" (over
        ``MAX_ANSWER_CHARS`` once cleaned) is flagged unparsed, and only then is a judge asked."""
        answer = self.extract(sample, prediction)
        if len(answer) > MAX_ANSWER_CHARS or not answer:
            if judge is not None:
                answer = self.extract(sample, judge(sample, prediction))
        parsed = 0 < len(answer) <= MAX_ANSWER_CHARS
        return SampleScore(self.match(sample, answer) if answer else 0.0, parsed, answer)
