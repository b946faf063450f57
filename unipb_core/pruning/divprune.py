"""DivPrune: keep the most diverse visual tokens by greedy max-min selection on cosine distance.

Reference: Alvar et al., "DivPrune: Diversity-based Visual Token Pruning for Large Multimodal Models",
CVPR 2025 (arXiv 2503.02175). Rule: with ``d(i, j) = 1 - cos(x_i, x_j)`` on the projected visual tokens,
pick first ``argmax_i min_{j != i} d(i, j)``, then repeatedly the token maximising its minimum distance to
the selected set (ties to the lowest index). Parameters: none. Stage: pre-LLM (after the projector); the
same on every family (InternVL / Qwen2.5-VL tokens are the pixel-shuffled / merged ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import PruningMethod, Selection
from .context import PruneContext
from .registry import register
from .vit_common import cosine_matrix


def max_min_diverse(x: torch.Tensor, k: int) -> torch.Tensor:
    """Sorted indices of ``k`` rows of ``x`` chosen greedily by max-min cosine distance."""
    n = x.shape[0]
    if k <= 0:
        return torch.empty(0, dtype=torch.long, device=x.device)
    dist = 1.0 - cosine_matrix(x)
    off_diag = dist.clone().fill_diagonal_(float("inf"))
    first = torch.argmax(off_diag.min(dim=1).values)  # argmax returns the first maximum: ties -> lowest index
    chosen = [first]
    nearest = dist[first].clone()  # each token's distance to the selected set
    nearest[first] = -float("inf")
    for _ in range(min(k, n) - 1):
        nxt = torch.argmax(nearest)
        chosen.append(nxt)
        nearest = torch.minimum(nearest, dist[nxt])
        nearest[nxt] = -float("inf")
    return torch.sort(torch.stack(chosen)).values


@register
@dataclass
class DivPrune(PruningMethod):
    name = "divprune"
    category = "vit"
    stage_kind = "pre"

    def select(self, ctx: PruneContext) -> Selection:
        return Selection(max_min_diverse(ctx.visual, ctx.n_keep))
