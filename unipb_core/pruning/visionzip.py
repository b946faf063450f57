"""VisionZip: dominant tokens by vision-encoder [CLS] attention plus contextual tokens merged from the rest.

Reference: Yang et al., "VisionZip: Longer is Better but Not Necessary in Vision Language Models"
(CVPR 2025, arXiv 2412.04467). Rule: dominant = the top tokens by [CLS] attention; of the remaining
tokens (original order), every ``max(1, M // n_ctx)``-th is a contextual target (the first ``n_ctx``);
every other remaining token is assigned to its most key-similar target (cosine); each contextual token =
its target's features + the mean of the features assigned to it (the target alone when none).
Parameters: ``dominant_share`` (54 / 64, the original's 54 dominant + 10 contextual at 64 tokens), giving
``round(n_keep * dominant_share)`` dominant and the rest contextual. Stage: pre-LLM; merges.
Deviations: the original keeps the [CLS] token as one of the dominant tokens; the LLM here never sees
[CLS] (LLaVA drops it, InternVL drops it before pixel shuffle, Qwen2.5-VL has none), so all dominant
tokens are patches. Merging uses the projected tokens (the original merges encoder features before the
projector); similarity uses the feature layer's keys with heads concatenated (the original averages keys
over heads). Per family: see ``notes_for``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .base import PruningMethod, Selection, top_k
from .context import PruneContext
from .registry import register
from .vit_common import cosine_matrix, encoder_attention_notes


def contextual_merge(
    features: torch.Tensor, keys: torch.Tensor, rest: torch.Tensor, n_ctx: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Contextual targets among ``rest`` (sorted indices) and their merged features ``target + mean(assigned)``."""
    if n_ctx <= 0:
        return rest[:0], features[:0]
    step = max(1, rest.numel() // n_ctx)
    is_target = torch.zeros(rest.numel(), dtype=torch.bool, device=rest.device)
    is_target[torch.arange(0, rest.numel(), step, device=rest.device)[:n_ctx]] = True
    targets, others = rest[is_target], rest[~is_target]
    x = features.float()
    merged = x[targets].clone()
    if others.numel():
        owner = cosine_matrix(keys)[others][:, targets].argmax(dim=1)  # first maximum on ties
        sums = torch.zeros_like(merged).index_add_(0, owner, x[others])
        counts = torch.bincount(owner, minlength=targets.numel()).clamp(min=1).unsqueeze(1)
        merged = merged + sums / counts
    return targets, merged.to(features.dtype)


@register
@dataclass
class VisionZip(PruningMethod):
    dominant_share: float = 54 / 64

    name = "visionzip"
    category = "vit"
    stage_kind = "pre"
    merges: ClassVar[bool] = True
    needs_vision_attention: ClassVar[bool] = True

    def select(self, ctx: PruneContext) -> Selection:
        n_dom = min(ctx.n_keep, round(ctx.n_keep * self.dominant_share))
        dominant = top_k(ctx.encoder_scores(), n_dom)
        rest_mask = torch.ones(ctx.n_visual, dtype=torch.bool, device=ctx.visual.device)
        rest_mask[dominant] = False
        rest = rest_mask.nonzero().squeeze(1)
        targets, contextual = contextual_merge(ctx.visual, ctx.encoder_keys(), rest, ctx.n_keep - n_dom)
        keep, order = torch.sort(torch.cat([dominant, targets]))
        merged = torch.cat([ctx.visual[dominant], contextual])[order]
        return Selection(keep, merged)

    def notes_for(self, family: str) -> dict[str, Any]:
        return encoder_attention_notes(family)
