"""Random-Pre: a uniformly random subset of the visual tokens, after the projector (study baseline).

Reference: UniPruneBench (arXiv 2511.02650), "Random-Pre". Rule: keep ``n_keep`` tokens drawn without
replacement with the run's seeded generator (the study's code set no seed; we do, so runs repeat).
Parameters: none. Stage: pre-LLM.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import PruningMethod, Selection
from .context import PruneContext
from .registry import register


def random_subset(ctx: PruneContext) -> Selection:
    """Sorted random subset of ``ctx.n_keep`` visual tokens from the context's generator."""
    order = torch.randperm(ctx.n_visual, generator=ctx.generator)[: ctx.n_keep]
    return Selection(torch.sort(order).values.to(ctx.visual.device))


@register
@dataclass
class RandomPre(PruningMethod):
    name = "random_pre"
    category = "baseline"
    stage_kind = "pre"

    def select(self, ctx: PruneContext) -> Selection:
        return random_subset(ctx)
