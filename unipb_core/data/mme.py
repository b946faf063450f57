"""MME (Fu et al., 2023): 14 yes/no subtasks, two questions per image, scored as acc + acc+ per subtask.

Prompt: the question as stored -- it already ends with "Please answer yes or no." (VLMEvalKit, the harness
of the study, sends it unchanged; lmms-eval swaps in "Answer the question using a single word or phrase.").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from unipb_core.data.registry import register
from unipb_core.data.sample import Sample
from unipb_core.data.spec import YesNoSpec
from unipb_core.metrics.aggregate import accuracy, finish, group_all_correct, split_by
from unipb_core.metrics.score import Judge, SampleScore

PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
SUBTASK_MAX = 200.0  # acc (max 100) + acc+ (max 100)
GROUPS = {"perception": PERCEPTION, "cognition": COGNITION}


@register
class MME(YesNoSpec):
    name = "mme"
    dimension = "comprehensive"
    hub_id = "lmms-lab/MME"
    split = "test"
    max_new_tokens = 16
    aggregate_needs = ("group",)
    headline_metric = "total"  # perception + cognition, 0-2800 on the full benchmark
    columns = ("question_id", "image", "question", "answer", "category")
    tsv_columns = ("index", "image", "question", "answer", "category", "image_path")

    def _sample(self, sample_id: str, image_key: str, row: dict[str, Any]) -> Sample:
        category = str(self.need(row, "category", sample_id))
        if category not in PERCEPTION + COGNITION:
            raise ValueError(
                f"mme: row {sample_id!r}: field 'category' is {category!r}; expected one of {PERCEPTION + COGNITION}"
            )
        return self.make(
            id=sample_id,
            question=str(self.need(row, "question", sample_id)),
            answer=self.yes_no(row, "answer", sample_id),
            category=category,
            # The two questions about one image share its file name: that pair is the acc+ unit.
            meta={"group": f"{category}/{image_key}"},
        )

    def from_row(self, row: dict[str, Any], position: int) -> Sample:
        # question_id is the image file, shared by both questions, so the row position makes the id unique.
        question_id = str(self.need(row, "question_id", f"row {position}"))
        return self._sample(f"{question_id}@{position}", question_id, row)

    def from_tsv(self, row: dict[str, Any], position: int) -> Sample:
        index = str(self.need(row, "index", f"row {position}"))
        return self._sample(index, str(self.need(row, "image_path", index)), row)

    def metric_scale(self, key: str, samples: Sequence[Sample]) -> float | None:
        """Subtask score 0-200 (acc and acc+ 0-100 each); perception, cognition and total: 200 per subtask
        present (2000, 800 and 2800 on the full benchmark)."""
        present = {s.category for s in samples}
        if key in GROUPS:
            return SUBTASK_MAX * len(present & set(GROUPS[key]))
        if key == "total":
            return SUBTASK_MAX * len(present)
        return SUBTASK_MAX if key.endswith("/score") else super().metric_scale(key, samples)

    def aggregate(
        self, samples: Sequence[Sample], scores: Sequence[SampleScore], judge: Judge | None = None
    ) -> dict[str, float | str]:
        """Per subtask acc, acc+ and score = acc + acc+; perception and cognition are sums of subtask scores.

        The headline rescales the total to 0-100 by the subtasks present (full data: (P + C) / 2800 x 100).
        """
        present = {s.category for s in samples}
        metrics: dict[str, float] = {group: 0.0 for group, cats in GROUPS.items() if present & set(cats)}
        for category, (cat_samples, cat_scores) in split_by([s.category for s in samples], samples, scores).items():
            acc = accuracy(cat_scores)
            acc_plus = group_all_correct([s.meta["group"] for s in cat_samples], cat_scores)
            metrics[f"{category}/acc"] = acc
            metrics[f"{category}/acc_plus"] = acc_plus
            metrics[f"{category}/score"] = acc + acc_plus
            metrics["perception" if category in PERCEPTION else "cognition"] += acc + acc_plus
        metrics["total"] = sum(metrics.get(group, 0.0) for group in GROUPS)
        n_subtasks = len({s.category for s in samples})
        headline = 100.0 * metrics["total"] / (SUBTASK_MAX * n_subtasks) if n_subtasks else float("nan")
        return finish(self.name, metrics, samples, scores, headline, judge)
