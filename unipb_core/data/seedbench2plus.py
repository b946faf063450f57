"""SEED-Bench-2-Plus (Li et al., 2024): text-rich chart, map and web screenshots, four-option MCQ.

Aggregate: the shared accuracy overall (headline) and per chart / map / web. Answers are read with the
option-letter extractor rather than lmms-eval's first-character rule, which marks "The answer is B" wrong.
"""

from __future__ import annotations

from typing import Any

from unipb_core.data.registry import register
from unipb_core.data.sample import Sample
from unipb_core.data.spec import ChoiceSpec


@register
class SEEDBench2Plus(ChoiceSpec):
    name = "seedbench2plus"
    dimension = "ocr"
    hub_id = "doolayer/SEED-Bench-2-Plus"
    split = "test"
    max_new_tokens = 16
    columns = ("question_id", "question_image_type", "question", "choice_A", "choice_B", "answer", "image")
    tsv_columns = ("index", "image", "question", "A", "B", "answer", "category")

    def _sample(self, row: dict[str, Any], sample_id: str, category_field: str) -> Sample:
        return self.make(
            id=sample_id,
            question=str(self.need(row, "question", sample_id)),
            options=self.letter_options(row, "ABCD"),
            answer=str(self.need(row, "answer", sample_id)).strip().upper(),
            category=str(self.need(row, category_field, sample_id)).lower(),
        )

    def from_row(self, row: dict[str, Any], position: int) -> Sample:
        return self._sample(row, str(self.need(row, "question_id", f"row {position}")), "question_image_type")

    def from_tsv(self, row: dict[str, Any], position: int) -> Sample:
        return self._sample(row, str(self.need(row, "index", f"row {position}")), "category")
