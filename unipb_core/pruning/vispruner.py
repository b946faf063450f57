"""VisPruner: important tokens by vision-encoder [CLS] attention, then diverse tokens by removing duplicates.

Reference: Zhang et al., "Beyond Text-Visual Attention: Exploiting Visual Cues for Effective Token
Pruning in VLMs" (VisPruner, ICCV 2025, arXiv 2412.01818). Rule: keep the ``int(n_keep * important_ratio)``
tokens with the highest [CLS] attention; from the rest, repeatedly split the (ordered) residual list into
even / odd positions, give each even-position token its highest cosine similarity to an odd-position token,
and drop the ``min(8, excess)`` most similar even-position tokens, until ``n_keep`` tokens remain.
Parameters: ``important_ratio`` (0.5, the released code's default split), ``step`` (8 duplicates dropped
per round). Stage: pre-LLM. Deviations: similarities use the projected tokens (the original uses the
CLIP features before the projector; cosine ranks differ slightly); an odd residual length is handled
(the even half has one more token), where the original code fails. Per family: see ``notes_for``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .base import PruningMethod, Selection
from .context import PruneContext
from .registry import register
from .vit_common import encoder_attention_notes


def remove_duplicates(features: torch.Tensor, residual: torch.Tensor, target: int, step: int) -> torch.Tensor:
    """Shrink the ordered index list ``residual`` to ``target`` tokens by bipartite duplicate removal."""
    normed = torch.nn.functional.normalize(features.float(), dim=-1)
    while (r := min(step, residual.numel() - target)) > 0:
        even, odd = residual[0::2], residual[1::2]
        best = (normed[even] @ normed[odd].T).max(dim=1).values
        distinct = torch.argsort(best, descending=True, stable=True)[r:]
        residual = torch.cat([even[distinct], odd])
    return residual


@register
@dataclass
class VisPruner(PruningMethod):
    important_ratio: float = 0.5
    step: int = 8

    name = "vispruner"
    category = "vit"
    stage_kind = "pre"
    needs_vision_attention: ClassVar[bool] = True

    def select(self, ctx: PruneContext) -> Selection:
        n_important = int(ctx.n_keep * self.important_ratio)
        order = torch.argsort(ctx.encoder_scores().float(), descending=True, stable=True)
        residual = remove_duplicates(ctx.visual, order[n_important:], ctx.n_keep - n_important, self.step)
        return Selection(torch.sort(torch.cat([order[:n_important], residual])).values)

    def notes_for(self, family: str) -> dict[str, Any]:
        return encoder_attention_notes(family)
