"""Random-Intra: a uniformly random subset of the visual tokens at decoder layer K (study baseline).

Reference: UniPruneBench (arXiv 2511.02650), "Random-Intra" (layer 2 in the study's code). Rule: keep
``n_keep`` tokens drawn without replacement with the run's seeded generator. Parameters: ``layer`` (K,
default 2). Stage: intra-LLM.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import DEFAULT_INTRA_LAYER, PruningMethod, Selection
from .context import PruneContext
from .random_pre import random_subset
from .registry import register


@register
@dataclass
class RandomIntra(PruningMethod):
    name = "random_intra"
    category = "baseline"
    stage_kind = "intra"
    layer: int = DEFAULT_INTRA_LAYER

    def select(self, ctx: PruneContext) -> Selection:
        return random_subset(ctx)
