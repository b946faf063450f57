"""MMBench EN dev (Liu et al., 2023), v1.0: 1164 questions stored with their choice-shifted CircularEval copies.

Rows with ``index >= 1e6`` are copies of question ``index % 1e6`` with the options rotated. CircularEval counts
a question correct only when every copy is answered correctly; data without copies reduces to plain accuracy.
Prompt: VLMEvalKit's layout (Hint / Question / Options) with lmms-eval's letter-only instruction, so short
generations stay parseable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from unipb_core.data.prompts import LETTER_HINT, join, with_options
from unipb_core.data.registry import register
from unipb_core.data.sample import Sample
from unipb_core.data.spec import ChoiceSpec, is_missing
from unipb_core.metrics.aggregate import accuracy, finish, group_all_correct, split_by
from unipb_core.metrics.score import Judge, SampleScore

CIRCULAR_OFFSET = 1_000_000


@register
class MMBench(ChoiceSpec):
    name = "mmbench"
    dimension = "comprehensive"
    hub_id = "lmms-lab/MMBench"
    config = "en"
    split = "dev"
    max_new_tokens = 16
    headline_metric = "circular_accuracy"
    aggregate_needs = ("group", "l2_category", "circular_copy")
    columns = ("index", "question", "hint", "A", "B", "answer", "category", "L2-category", "image")
    tsv_columns = ("index", "question", "hint", "A", "B", "answer", "category", "l2-category", "image")

    def _sample(self, row: dict[str, Any], position: int, l2_field: str) -> Sample:
        index = int(float(self.need(row, "index", f"row {position}")))
        sample_id = str(index)
        hint = row.get("hint")
        return self.make(
            id=sample_id,
            question=str(self.need(row, "question", sample_id)),
            options=self.letter_options(row, "ABCD"),
            answer=str(self.need(row, "answer", sample_id)).strip().upper(),
            category=str(self.need(row, "category", sample_id)),
            meta={
                "group": str(index % CIRCULAR_OFFSET),
                "l2_category": str(row.get(l2_field, "")),
                "hint": "" if is_missing(hint) else str(hint),
                "circular_copy": index >= CIRCULAR_OFFSET,
            },
        )

    def from_row(self, row: dict[str, Any], position: int) -> Sample:
        return self._sample(row, position, "L2-category")

    def from_tsv(self, row: dict[str, Any], position: int) -> Sample:
        return self._sample(row, position, "l2-category")

    def to_prompt(self, sample: Sample) -> str:
        hint = f"Hint: {sample.meta['hint']}" if sample.meta["hint"] else ""
        return join(hint, *with_options(f"Question: {sample.question}", sample.options, "Options:"), LETTER_HINT)

    def metric_scale(self, key: str, samples: Sequence[Sample]) -> float | None:
        return None if key == "questions" else super().metric_scale(key, samples)

    def aggregate(
        self, samples: Sequence[Sample], scores: Sequence[SampleScore], judge: Judge | None = None
    ) -> dict[str, float | str]:
        """CircularEval accuracy over questions (headline), overall and per category / L2 category, plus the
        single-pass accuracy on the original (non-copy) rows for comparison with harnesses that skip copies."""
        groups = [s.meta["group"] for s in samples]
        originals = [sc for s, sc in zip(samples, scores, strict=True) if not s.meta["circular_copy"]]
        metrics = {"circular_accuracy": group_all_correct(groups, scores), "vanilla_accuracy": accuracy(originals)}
        breakdowns = {"category": [s.category for s in samples], "l2": [s.meta["l2_category"] for s in samples]}
        for prefix, keys in breakdowns.items():
            for key, (part_samples, part_scores) in split_by(keys, samples, scores).items():
                part_groups = [s.meta["group"] for s in part_samples]
                metrics[f"{prefix}/{key}"] = group_all_correct(part_groups, part_scores)
        metrics["questions"] = float(len(set(groups)))
        return finish(self.name, metrics, samples, scores, metrics["circular_accuracy"], judge)
