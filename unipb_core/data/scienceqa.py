"""ScienceQA-IMG (Lu et al., 2022): the 2017 test questions that come with an image, 2-5 options.

Prompt (lmms-eval default): "Context: {hint}" when there is a hint, the question, lettered options and the
letter-only instruction. Aggregate: the shared accuracy overall (headline) and per subject (natural, social,
language science: the paper's NAT / SOC / LAN).
"""

from __future__ import annotations

from typing import Any

from unipb_core.data.registry import register
from unipb_core.data.sample import Sample
from unipb_core.data.spec import ChoiceSpec, is_missing, parse_list
from unipb_core.metrics.extract import LETTERS


@register
class ScienceQA(ChoiceSpec):
    name = "scienceqa"
    dimension = "multidisciplinary"
    hub_id = "lmms-lab/ScienceQA"
    config = "ScienceQA-IMG"
    split = "test"
    max_new_tokens = 16
    columns = ("image", "question", "choices", "answer", "hint", "subject")
    tsv_columns = ("index", "image", "question", "hint", "A", "B", "answer")

    def _sample(self, row: dict[str, Any], sample_id: str, options: list[str], answer: str, subject: Any) -> Sample:
        hint = row.get("hint")
        return self.make(
            id=sample_id,
            question=str(self.need(row, "question", sample_id)),
            options=options,
            answer=answer,
            category="" if is_missing(subject) else str(subject),
            meta={"context": "" if is_missing(hint) else f"Context: {hint}"},
        )

    def from_row(self, row: dict[str, Any], position: int) -> Sample:
        # The HF rows carry no id column; the position in the pinned split is the stable id.
        sample_id = str(position)
        options = [str(o) for o in parse_list(self.need(row, "choices", sample_id))]
        answer = int(self.need(row, "answer", sample_id))
        if not 0 <= answer < len(options):
            raise ValueError(f"scienceqa: row {sample_id!r}: field 'answer' is {answer}, not an index into {options}")
        return self._sample(row, sample_id, options, LETTERS[answer], row.get("subject"))

    def from_tsv(self, row: dict[str, Any], position: int) -> Sample:
        sample_id = str(self.need(row, "index", f"row {position}"))
        answer = str(self.need(row, "answer", sample_id)).strip().upper()
        # The subject (natural / social / language science) is its own column where the TSV has one; some
        # builds carry it in "category" instead.
        subject = row.get("subject")
        return self._sample(row, sample_id, self.letter_options(row), answer,
                            row.get("category") if is_missing(subject) else subject)  # fmt: skip
