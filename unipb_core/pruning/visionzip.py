"""VisionZip: dominant tokens by vision-encoder [CLS] attention plus contextual tokens merged from the rest.

Reference: Yang et al., "VisionZip: Longer is Better but Not Necessary in Vision Language Models"
(CVPR 2025, arXiv 2412.04467); released code: dvlab-research/VisionZip ``visionzip/clip_encoder.py``
(``CLIPVisionTower_VisionZip.forward``) and ``visionzip/main.py`` (``dominant_num = dominant - 1``), followed rule
for rule: ``D`` dominant tokens *counting the [CLS] token*, i.e. [CLS] plus the top ``D - 1`` patches by [CLS]
attention; of the remaining patches (original order, ``M`` of them), every ``max(1, M // C)``-th is a contextual
target (the first ``C``); every other remaining patch is assigned to its most key-similar target (cosine, first
maximum on ties); each contextual token = its target's features + the mean of the features assigned to it (the
target alone when none).
Budget: ``D = round(n_keep * dominant_share)`` with ``dominant_share`` = 54 / 64 (the README's
``visionzip(model, dominant=54, contextual=10)`` for 64 tokens, as a share for every budget). The LLM here
never sees [CLS] (LLaVA drops it, InternVL drops it before pixel shuffle, Qwen2.5-VL has none), so the [CLS]
slot cannot be filled with [CLS]: the dominant patches are exactly the released ``D - 1`` and the slot goes to
the contextual tokens, ``C = n_keep - D + 1``.
Nothing pruned (ratio 0): the tokens are returned unchanged (the engine's ratio-0 invariant).
Parameters: ``dominant_share`` (54 / 64). Stage: pre-LLM; merges. Input deviations: merging uses the projected
tokens (the released code merges the CLIP features of layer -2 before the projector); similarity uses the
encoder keys with heads concatenated (the released code averages the raw keys over heads). Per family: see
``notes_for``. No study variant (the study's code has no VisionZip).
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
        if ctx.n_keep >= ctx.n_visual:
            return Selection(torch.arange(ctx.n_visual, device=ctx.visual.device))
        # D dominant tokens count [CLS]: D - 1 patches; the [CLS] slot goes to the contextual tokens.
        n_dom = max(0, min(ctx.n_keep, round(ctx.n_keep * self.dominant_share)) - 1)
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
