"""MIA-Bench (Qian et al., 2024): 400 layered instructions about an image, each split into weighted components.

The official score is GPT-4o's grade of each component (weights total 10), averaged over samples. There is no
official judge-free scorer; without a judge this adapter gives an *approximation that is not comparable to
published MIA-Bench numbers*:

* components a program can verify (length limits, list/JSON/case/punctuation formats, literal "begin with /
  include 'X'") are checked by the rules in ``metrics.instruction``;
* every other component (describe, mention, genre, perspective, ...) earns its weight when the response is
  substantive (words, and not a repetition loop) -- a floor that only catches collapsed generations.

The aggregate reports ``rule_checked_weight_share`` so a reader sees how much of the score the rules really
verified. A judge, when passed, is called for every sample with (sample, response) and must return the
official grader's text ("... total score: 7/10") or a bare score; that score replaces the rule score.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from unipb_core.data.registry import register
from unipb_core.data.sample import Sample
from unipb_core.data.spec import TableSpec, parse_list
from unipb_core.metrics.aggregate import accuracy, finish, per_category_accuracy
from unipb_core.metrics.instruction import compile_constraint, substantive
from unipb_core.metrics.score import Judge, SampleScore


def parse_judge_score(text: str) -> float | None:
    """The total of a MIA-Bench grader reply as a fraction: "total score: 7/10" -> 0.7; a bare "0.7" or "7"."""
    totals = re.findall(r"total score\s*[:=]?\s*(\d+(?:\.\d+)?)\s*/\s*10", text, re.IGNORECASE)
    fractions = totals or re.findall(r"(\d+(?:\.\d+)?)\s*/\s*10\b", text)
    if fractions:
        value = float(fractions[-1]) / 10
    elif re.fullmatch(r"\s*\d+(?:\.\d+)?\s*", text):
        value = float(text)
        value = value / 10 if value > 1 else value
    else:
        return None
    return value if 0.0 <= value <= 1.0 else None


@register
class MIABench(TableSpec):
    name = "miabench"
    dimension = "instruction"
    hub_id = "lmms-lab/MIA-Bench"
    split = "test"
    max_new_tokens = 128
    headline_metric = "score"
    aggregate_needs = ("components", "weights")
    judge_free = "judge-free stand-in: rule checks instead of the GPT-4o grader, not comparable to published numbers"
    columns = ("image", "instruction", "components", "component_weight", "component_type")
    tsv_columns = ("index", "image", "question", "components", "component_weight", "component_type")

    def _sample(self, row: dict[str, Any], sample_id: str, instruction_field: str) -> Sample:
        components = [str(c) for c in parse_list(self.need(row, "components", sample_id))]
        weights = [float(w) for w in parse_list(self.need(row, "component_weight", sample_id))]
        types = [str(t) for t in parse_list(row.get("component_type"))]
        if not components or len(weights) != len(components):
            raise ValueError(
                f"miabench: row {sample_id!r}: field 'component_weight' has {len(weights)} weights "
                f"for {len(components)} components"
            )
        return self.make(
            id=sample_id,
            question=str(self.need(row, instruction_field, sample_id)),
            category=str(row.get("type", "")),
            meta={"components": components, "weights": weights, "component_types": types},
        )

    def from_row(self, row: dict[str, Any], position: int) -> Sample:
        # No id column on the hub; the position in the pinned split is the stable id.
        return self._sample(row, str(position), "instruction")

    def from_tsv(self, row: dict[str, Any], position: int) -> Sample:
        return self._sample(row, str(self.need(row, "index", f"row {position}")), "question")

    def to_prompt(self, sample: Sample) -> str:
        return sample.question

    def extract(self, sample: Sample, text: str) -> str:
        return text.strip()

    def checked_share(self, sample: Sample) -> float:
        """Share of the sample's component weight that the rules can verify (depends on the text only)."""
        checked = sum(
            w for c, w in zip(sample.meta["components"], sample.meta["weights"], strict=True) if compile_constraint(c)
        )
        return checked / sum(sample.meta["weights"])

    def rule_score(self, sample: Sample, response: str) -> float:
        """Weighted share of components met: rule-checked ones by their rule, the rest by substance."""
        earned = 0.0
        for component, weight in zip(sample.meta["components"], sample.meta["weights"], strict=True):
            check = compile_constraint(component)
            earned += weight if (check(response) if check else substantive(response)) else 0.0
        return earned / sum(sample.meta["weights"])

    def score(self, sample: Sample, prediction: str, judge: Judge | None = None) -> SampleScore:
        response = self.extract(sample, prediction)
        if not response:
            return SampleScore(0.0, False, "")
        if judge is not None:
            # A grader reply without a score is a parse failure: wrong, counted and logged by the aggregate.
            graded = parse_judge_score(judge(sample, prediction))
            return SampleScore(0.0, False, response) if graded is None else SampleScore(graded, True, response)
        return SampleScore(self.rule_score(sample, response), True, response)

    def aggregate(
        self, samples: Sequence[Sample], scores: Sequence[SampleScore], judge: Judge | None = None
    ) -> dict[str, float | str]:
        """Mean score x 100 (headline) overall and per instruction type, plus the rule-checked weight share."""
        weights = [sum(s.meta["weights"]) for s in samples]
        checked = [self.checked_share(s) * w for s, w in zip(samples, weights, strict=True)]
        metrics = {"score": accuracy(scores)}
        metrics.update(per_category_accuracy("type", [s.category for s in samples], scores))
        if judge is None:
            metrics["rule_checked_weight_share"] = sum(checked) / sum(weights) if weights else 0.0
        return finish(self.name, metrics, samples, scores, metrics["score"], judge)
