"""PruMerge+: PruMerge's [CLS]-attention outliers plus spatially uniform samples, merged as in PruMerge.

Reference: Shang et al., "LLaVA-PruMerge: Adaptive Token Reduction for Efficient Large Multimodal
Models" (arXiv 2403.15388), the "+" variant. Rule: outliers by IQR on [CLS] attention
(``a > Q3 + 1.5 IQR``), then uniformly spaced tokens to complete the set; each kept token becomes
``x_i + sum_{j in kNN(i)} a_j x_j`` (see ``prumerge``).
Fixed-budget adaptation: exactly ``n_keep`` tokens. If the outliers exceed the budget, the top ``n_keep``
of them by attention are kept; otherwise the remaining ``n_keep - |outliers|`` tokens are evenly spaced
samples of the non-outlier tokens in raster order (``(i + 0.5) M / r``), instead of the original's fixed
stride over the whole grid, so that the count is exact. Parameters: ``k`` (32), ``reference_tokens`` (576).
Stage: pre-LLM; merges on the projected tokens. Per family: see ``notes_for`` / ``prumerge``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import top_k
from .context import PruneContext
from .prumerge import PruMerge, iqr_outliers
from .registry import register


def outliers_plus_uniform(attention: torch.Tensor, n_keep: int) -> torch.Tensor:
    """Sorted keep indices: IQR outliers (trimmed by attention to ``n_keep``), then evenly spaced others."""
    outlier = iqr_outliers(attention)
    n_out = int(outlier.sum())
    if n_out >= n_keep:
        masked = torch.where(outlier, attention.float(), torch.full_like(attention.float(), -float("inf")))
        return top_k(masked, n_keep)
    others = (~outlier).nonzero().squeeze(1)
    r = n_keep - n_out
    picks = ((torch.arange(r, device=attention.device) + 0.5) * others.numel() / r).long()
    return torch.sort(torch.cat([outlier.nonzero().squeeze(1), others[picks]])).values


@register
@dataclass
class PruMergePlus(PruMerge):
    name = "prumerge_plus"

    def keep_indices(self, ctx: PruneContext, attention: torch.Tensor) -> torch.Tensor:
        return outliers_plus_uniform(attention, ctx.n_keep)
