"""OCRBench v1 (Liu et al., 2024): 1000 open OCR questions in 10 types, scored by substring hits out of 1000.

Not OCRBench v2 (``ling99/OCRBench_v2``), a different benchmark with other metrics. A prediction scores 1 when
any accepted answer is a substring of it: lowercased, stripped, newlines as spaces; for handwritten math
expressions (HME100k) all spaces are removed and case is kept. Prompt: the question plus VLMEvalKit's
short-answer suffix, which keeps answers inside a short generation budget.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from unipb_core.data.prompts import join
from unipb_core.data.registry import register
from unipb_core.data.sample import Sample
from unipb_core.data.spec import TableSpec, parse_list
from unipb_core.metrics.aggregate import finish
from unipb_core.metrics.score import Judge, SampleScore

HME = "Handwritten Mathematical Expression Recognition"
RECOGNITION = (
    "Regular Text Recognition",
    "Irregular Text Recognition",
    "Artistic Text Recognition",
    "Handwriting Recognition",
    "Digit String Recognition",
    "Non-Semantic Text Recognition",
)
# The five groups of the OCRBench paper's table; every question type belongs to one.
GROUPS = {
    "text_recognition": RECOGNITION,
    "scene_text_vqa": ("Scene Text-centric VQA",),
    "doc_vqa": ("Doc-oriented VQA",),
    "kie": ("Key Information Extraction",),
    "hmer": (HME,),
}
SUFFIX = "Please try to answer the question with short words or phrases if possible."


@register
class OCRBench(TableSpec):
    name = "ocrbench"
    dimension = "ocr"
    hub_id = "echo840/OCRBench"
    split = "test"
    max_new_tokens = 64
    headline_metric = "final_score"  # hits, out of 1000 on the full benchmark
    columns = ("question", "question_type", "answer", "image")
    tsv_columns = ("index", "image", "question", "answer", "category")

    def _sample(self, row: dict[str, Any], sample_id: str, question_type: str) -> Sample:
        if not any(question_type in types for types in GROUPS.values()):
            raise ValueError(f"ocrbench: row {sample_id!r}: question type {question_type!r} is not an OCRBench v1 type")
        answers = [str(a) for a in parse_list(self.need(row, "answer", sample_id))]
        return self.make(
            id=sample_id,
            question=str(self.need(row, "question", sample_id)),
            answer=json.dumps(answers, ensure_ascii=False),
            category=question_type,
            # The official script keys the HME rule on the source dataset, VLMEvalKit on the type; either marks it.
            meta={"answers": answers, "hme": question_type == HME or row.get("dataset") == "HME100k"},
        )

    def from_row(self, row: dict[str, Any], position: int) -> Sample:
        # No id column on the hub; the position in the pinned split is the stable id.
        return self._sample(row, str(position), str(self.need(row, "question_type", f"row {position}")))

    def from_tsv(self, row: dict[str, Any], position: int) -> Sample:
        index = str(self.need(row, "index", f"row {position}"))
        return self._sample(row, index, str(self.need(row, "category", index)))

    def to_prompt(self, sample: Sample) -> str:
        return join(sample.question, SUFFIX)

    def extract(self, sample: Sample, text: str) -> str:
        # Open answers: anything non-empty is an answer; only an empty generation is a parse failure.
        return text.strip()

    def match(self, sample: Sample, extracted: str) -> float:
        if sample.meta["hme"]:
            prediction = "".join(extracted.split())
            return float(any("".join(a.split()) in prediction for a in sample.meta["answers"]))
        prediction = extracted.lower().replace("\n", " ")
        return float(any(a.lower().strip().replace("\n", " ") in prediction for a in sample.meta["answers"]))

    def metric_scale(self, key: str, samples: Sequence[Sample]) -> float | None:
        """Hit counts are out of the number of questions they cover (final score: 1000 on the full set)."""
        if key == "final_score":
            return float(len(samples))
        if key == "score_per_1000":
            return 1000.0
        if key.startswith("type/"):
            return float(sum(s.category == key[len("type/") :] for s in samples))
        if key.startswith("group/"):
            return float(sum(s.category in GROUPS[key[len("group/") :]] for s in samples))
        return super().metric_scale(key, samples)

    def aggregate(
        self, samples: Sequence[Sample], scores: Sequence[SampleScore], judge: Judge | None = None
    ) -> dict[str, float | str]:
        """Hits per question type and per group, ``final_score`` = total hits (out of 1000 on the full set),
        ``final_score_norm`` = hits / n x 100 (on the full set the official "Final Score Norm", Final Score / 10),
        ``score_per_1000`` rescaled for subsets; headline = ``final_score_norm``."""
        hits = sum(sc.correct for sc in scores)
        metrics: dict[str, float] = {
            "final_score": hits,
            "final_score_norm": 100.0 * hits / len(scores) if scores else float("nan"),
            "score_per_1000": 1000.0 * hits / len(scores) if scores else float("nan"),
        }
        for s, sc in zip(samples, scores, strict=True):
            metrics[f"type/{s.category}"] = metrics.get(f"type/{s.category}", 0.0) + sc.correct
        for group, types in GROUPS.items():
            metrics[f"group/{group}"] = sum(metrics.get(f"type/{t}", 0.0) for t in types)
        return finish(self.name, metrics, samples, scores, metrics["final_score_norm"], judge)
