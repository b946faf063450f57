"""Random-Intra: a uniformly random subset of the visual tokens at decoder layer K (study baseline).

Reference: UniPruneBench (arXiv 2511.02650), "Random-Intra" (the study's ``methods/Random_IntraLLM.py``, layer
2). Rule: keep ``round(N * (1 - ratio))`` tokens drawn without replacement with the run's seeded generator.
Parameters: ``layer`` (K, default 2); ``variant``: ``"study"`` keeps ``int(N * keep_ratio)`` as the study's
code (its draw is unseeded there, seeded here). Stage: intra-LLM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import AUTHORS, DEFAULT_INTRA_LAYER, PruningMethod, Selection, Stage, n_keep_for
from .context import PruneContext
from .random_pre import random_subset
from .registry import register
from .study import study_count


@register
@dataclass
class RandomIntra(PruningMethod):
    name = "random_intra"
    category = "baseline"
    stage_kind = "intra"
    variants: ClassVar[tuple[str, ...]] = (AUTHORS, "study")
    layer: int = DEFAULT_INTRA_LAYER
    variant: str = AUTHORS

    def plan(self, n_visual: int, ratio: float, num_layers: int) -> list[Stage]:
        n_keep = study_count(n_visual, ratio) if self.variant == "study" else n_keep_for(n_visual, ratio)
        return [Stage("intra", self.layer, n_keep)]

    def select(self, ctx: PruneContext) -> Selection:
        return random_subset(ctx)
