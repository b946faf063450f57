"""HallusionBench (Guan et al., 2024), image split: yes/no questions over original and edited figures.

aAcc is per question. fAcc groups the questions about one figure (category_subcategory_set_figure) and qAcc
one question across its figure variants (category_subcategory_set_question); a group counts only when all
its members are right. Both groups live inside a set, so the set is the unit kept whole when subsampling.
Judge-free recipe (DATASETS-NOTES): "Please answer yes or no." plus the yes/no reader, instead of lmms-eval's
GPT-4 comparison with ``gt_answer_details``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from unipb_core.data.prompts import YES_NO_HINT
from unipb_core.data.registry import register
from unipb_core.data.sample import Sample
from unipb_core.data.spec import YesNoSpec
from unipb_core.metrics.aggregate import accuracy, finish, group_all_correct, split_by
from unipb_core.metrics.score import Judge, SampleScore


@register
class HallusionBench(YesNoSpec):
    name = "hallusionbench"
    dimension = "hallucination"
    hub_id = "lmms-lab/HallusionBench"
    split = "image"
    max_new_tokens = 16
    prompt_hint = YES_NO_HINT
    headline_metric = "score"
    aggregate_needs = ("figure", "question_key")  # (aAcc + fAcc + qAcc) / 3, VLMEvalKit's "Overall"
    judge_free = "yes/no rules (VLMEvalKit's first pass) instead of the official GPT-4 comparison"
    columns = ("category", "subcategory", "set_id", "figure_id", "question_id", "question", "gt_answer", "image")
    tsv_columns = ("index", "image", "question", "answer", "category", "l2-category")

    def _sample(self, row: dict[str, Any], sample_id: str, ids: tuple[str, ...], answer: str) -> Sample:
        category, subcategory, set_id, figure_id, question_id = ids
        base = f"{category}_{subcategory}_{set_id}"
        return self.make(
            id=sample_id,
            question=str(self.need(row, "question", sample_id)),
            answer=answer,
            category=category,
            meta={
                "group": base,
                "subcategory": subcategory,
                "figure": f"{base}_{figure_id}",
                "question_key": f"{base}_{question_id}",
            },
        )

    def from_row(self, row: dict[str, Any], position: int) -> Sample:
        where = f"row {position}"
        ids = tuple(str(self.need(row, f, where)) for f in ("category", "subcategory", "set_id", "figure_id"))
        ids += (str(self.need(row, "question_id", where)),)
        sample_id = "_".join(ids)
        gold = str(self.need(row, "gt_answer", sample_id)).strip()
        if gold not in ("0", "1"):
            raise ValueError(f"hallusionbench: row {sample_id!r}: field 'gt_answer' is {gold!r}; expected '0' or '1'")
        return self._sample(row, sample_id, ids, "yes" if gold == "1" else "no")

    def from_tsv(self, row: dict[str, Any], position: int) -> Sample:
        # VLMEvalKit's index ends in _<set>_<figure>_<question> (its scorer reads fields 3, 4 and 5).
        index = str(self.need(row, "index", f"row {position}"))
        parts = index.split("_")
        if len(parts) < 3:
            raise ValueError(f"hallusionbench: row {index!r}: field 'index' does not end in _set_figure_question")
        category = str(self.need(row, "category", index))
        ids = (category, str(self.need(row, "l2-category", index)), *parts[-3:])
        return self._sample(row, index, ids, self.yes_no(row, "answer", index))

    def aggregate(
        self, samples: Sequence[Sample], scores: Sequence[SampleScore], judge: Judge | None = None
    ) -> dict[str, float | str]:
        """aAcc, fAcc, qAcc overall and per category (VD / VS); headline = their mean (VLMEvalKit "Overall")."""
        metrics: dict[str, float] = {}
        parts = {"overall": (samples, scores), **split_by([s.category for s in samples], samples, scores)}
        for key, (part_samples, part_scores) in parts.items():
            metrics[f"{key}/aAcc"] = accuracy(part_scores)
            metrics[f"{key}/fAcc"] = group_all_correct([s.meta["figure"] for s in part_samples], part_scores)
            metrics[f"{key}/qAcc"] = group_all_correct([s.meta["question_key"] for s in part_samples], part_scores)
        metrics["score"] = (metrics["overall/aAcc"] + metrics["overall/fAcc"] + metrics["overall/qAcc"]) / 3
        return finish(self.name, metrics, samples, scores, metrics["score"], judge)
