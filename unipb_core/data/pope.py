"""POPE (Li et al., 2023): "Is there a <object> in the image?" over COCO, adversarial / popular / random splits.

The HF ``default`` config holds all three splits (``category`` column); VLMEvalKit's TSV merges identical
questions into one row whose category lists several splits ("adversarial,popular,random"). Such a row counts
once in every split it belongs to, and the pooled metrics run over the expanded rows, as VLMEvalKit does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from unipb_core.data.prompts import SHORT_HINT
from unipb_core.data.registry import register
from unipb_core.data.sample import Sample
from unipb_core.data.spec import YesNoSpec
from unipb_core.metrics.aggregate import accuracy, binary_metrics, finish, pct
from unipb_core.metrics.score import Judge, SampleScore


@register
class POPE(YesNoSpec):
    name = "pope"
    dimension = "hallucination"
    hub_id = "lmms-lab/POPE"
    split = "test"
    max_new_tokens = 16
    prompt_hint = SHORT_HINT  # lmms-eval; the yes/no reader also accepts "Yes, there is a ..."
    headline_metric = "f1_mean"
    aggregate_needs = ("splits",)
    columns = ("id", "question", "answer", "image", "category")
    tsv_columns = ("index", "image", "question", "answer", "category")

    def _sample(self, row: dict[str, Any], sample_id: str) -> Sample:
        category = str(self.need(row, "category", sample_id))
        return self.make(
            id=sample_id,
            question=str(self.need(row, "question", sample_id)),
            answer=self.yes_no(row, "answer", sample_id),
            category=category,
            meta={"splits": [c.strip() for c in category.split(",") if c.strip()]},
        )

    def from_row(self, row: dict[str, Any], position: int) -> Sample:
        return self._sample(row, str(self.need(row, "id", f"row {position}")))

    def from_tsv(self, row: dict[str, Any], position: int) -> Sample:
        return self._sample(row, str(self.need(row, "index", f"row {position}")))

    def aggregate(
        self, samples: Sequence[Sample], scores: Sequence[SampleScore], judge: Judge | None = None
    ) -> dict[str, float | str]:
        """Accuracy, precision, recall, F1 and yes-ratio per split and pooled ("yes" is the positive class).

        An unreadable answer counts as a "no" prediction in F1, as in VLMEvalKit (and is wrong in accuracy).
        Headline: the mean F1 of the splits present (LLaVA-1.5 and most pruning papers report this).
        """
        expanded = [(split, s, sc) for s, sc in zip(samples, scores, strict=True) for split in s.meta["splits"]]
        splits = list(dict.fromkeys(split for split, _, _ in expanded))
        metrics: dict[str, float] = {}
        for split in ["overall", *splits]:
            part = [(s, sc) for name, s, sc in expanded if split in ("overall", name)]
            metrics[f"{split}/accuracy"] = accuracy([sc for _, sc in part])
            gold, predicted = [s.answer == "yes" for s, _ in part], [sc.extracted == "yes" for _, sc in part]
            metrics.update({f"{split}/{key}": value for key, value in binary_metrics(gold, predicted).items()})
        metrics["f1_mean"] = pct(metrics[f"{split}/f1"] / 100 for split in splits)
        metrics["accuracy_mean"] = pct(metrics[f"{split}/accuracy"] / 100 for split in splits)
        return finish(self.name, metrics, samples, scores, metrics["f1_mean"], judge)
