"""PruMerge: keep the [CLS]-attention outliers of the vision encoder and merge the rest into them.

Reference: Shang et al., "LLaVA-PruMerge: Adaptive Token Reduction for Efficient Large Multimodal
Models" (arXiv 2403.15388). Rule: outliers = tokens whose [CLS] attention ``a`` exceeds
``Q3 + 1.5 IQR``; every kept token ``i`` becomes ``x_i + sum_{j in kNN(i)} a_j x_j`` over its ``k`` most
key-similar other tokens (cosine of the feature layer's keys).
Fixed-budget adaptation (this benchmark compares methods at equal ratios, as the study did): exactly
``n_keep`` tokens are kept; outliers beyond the budget are trimmed and a short outlier set is filled, both
by [CLS] attention. Since the outliers are the highest-attention tokens, the kept set is the top-``n_keep``
by [CLS] attention whatever the outlier count; the IQR rule matters only for PruMerge+ (``prumerge_plus``).
Parameters: ``k`` (32 neighbours for 576 tokens) and ``reference_tokens`` (576): the neighbour count
scales with the token count, ``max(1, round(k * N / reference_tokens))`` (8 for 144 tokens).
Stage: pre-LLM. Deviation: merging happens on the projected tokens (the engine acts after the projector;
the original merges CLIP features before the projector). Per family: see ``notes_for`` (InternVL: [CLS]
attention of the 4 pixel-shuffled patches summed; Qwen2.5-VL: no [CLS], mean received attention).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .base import PruningMethod, Selection, top_k
from .context import PruneContext
from .registry import register
from .vit_common import cosine_matrix, encoder_attention_notes


def iqr_outliers(scores: torch.Tensor) -> torch.Tensor:
    """Boolean mask of scores above ``Q3 + 1.5 (Q3 - Q1)`` (linear-interpolated quartiles)."""
    q1, q3 = torch.quantile(scores.float(), torch.tensor([0.25, 0.75], device=scores.device))
    return scores.float() > q3 + 1.5 * (q3 - q1)


def merge_neighbours(
    features: torch.Tensor, keys: torch.Tensor, weights: torch.Tensor, keep: torch.Tensor, k: int
) -> torch.Tensor:
    """``x_i + sum_j w_j x_j`` over the ``k`` tokens ``j != i`` whose keys are most cosine-similar to ``i``'s."""
    sim = cosine_matrix(keys)[keep]  # [K, N]
    sim[torch.arange(keep.numel(), device=keep.device), keep] = -float("inf")  # never the token itself
    k = min(k, features.shape[0] - 1)
    if k <= 0:
        return features[keep]
    nbr = torch.topk(sim, k, dim=1).indices  # [K, k]
    x = features.float()
    merged = x[keep] + (weights.float()[nbr].unsqueeze(-1) * x[nbr]).sum(dim=1)
    return merged.to(features.dtype)


def scaled_neighbours(k: int, reference_tokens: int, n: int) -> int:
    return max(1, round(k * n / reference_tokens))


@register
@dataclass
class PruMerge(PruningMethod):
    k: int = 32
    reference_tokens: int = 576

    name = "prumerge"
    category = "vit"
    stage_kind = "pre"
    merges: ClassVar[bool] = True
    needs_vision_attention: ClassVar[bool] = True

    def keep_indices(self, ctx: PruneContext, attention: torch.Tensor) -> torch.Tensor:
        return top_k(attention, ctx.n_keep)

    def select(self, ctx: PruneContext) -> Selection:
        attention = ctx.encoder_scores()
        keep = self.keep_indices(ctx, attention)
        k = scaled_neighbours(self.k, self.reference_tokens, ctx.n_visual)
        return Selection(keep, merge_neighbours(ctx.visual, ctx.encoder_keys(), attention, keep, k))

    def notes_for(self, family: str) -> dict[str, Any]:
        return encoder_attention_notes(family)
