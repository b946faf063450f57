"""DivPrune: keep the most diverse visual tokens by greedy max-min selection on cosine distance.

Reference: Alvar et al., "DivPrune: Diversity-based Visual Token Pruning for Large Multimodal Models",
CVPR 2025 (arXiv 2503.02175); released code: vbdi/divprune ``LLaVA/llava/model/llava_arch.py`` (``DivPrune``),
followed rule for rule. With ``d(i, j) = 1 - cos(x_i, x_j)`` on the projected visual tokens (the released
code prunes after ``mm_projector`` too), the first pick is the column whose *second-smallest* entry is largest
(the smallest is the token's own distance 0, so this is its nearest-neighbour distance), then repeatedly the
token whose minimum distance to the selected set is largest; ``argmax`` ties go to the lowest index; keep
``round(N (1 - ratio))`` (the released ``int(round(ratio * N))``).
Deviation, degenerate inputs only: an already selected token is never picked again (the released code can
re-pick one when every remaining distance is 0, i.e. duplicate tokens, and then keeps fewer distinct tokens).
The study's copy (TianfanPeng/VLMUniPruneBench ``methods/DivPrune_PreLLM.py``) is the same rule, so there is no
study variant. Parameters: none. Stage: pre-LLM (after the projector); the same on every family (InternVL /
Qwen2.5-VL tokens are the pixel-shuffled / merged ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import PruningMethod, Selection
from .context import PruneContext
from .registry import register
from .vit_common import cosine_matrix


def max_min_diverse(x: torch.Tensor, k: int) -> torch.Tensor:
    """Sorted indices of ``k`` rows of ``x`` chosen greedily by max-min cosine distance.

    The greedy steps stay on the device (no host sync): each is an argmax written into a preallocated index
    tensor, one row gather and one in-place minimum.
    """
    n = x.shape[0]
    if k <= 0:
        return torch.empty(0, dtype=torch.long, device=x.device)
    dist = cosine_matrix(x).neg_().add_(1.0)  # 1 - cos, bit for bit, without a second n x n buffer
    if n == 1:
        return torch.zeros(1, dtype=torch.long, device=x.device)
    # The released rule: each column's second-smallest entry (its own ~0 distance is the smallest).
    nearest_other = torch.topk(dist, 2, dim=0, largest=False).values[1]
    chosen = torch.empty(min(k, n), dtype=torch.long, device=x.device)
    torch.argmax(nearest_other, dim=0, keepdim=True, out=chosen[:1])  # the first maximum: ties -> lowest index
    # A -inf diagonal marks a token as selected the moment its own row enters the minimum, so it is never
    # picked again (the released code's `nearest[nxt] = -inf`, without indexing by a device scalar).
    dist.fill_diagonal_(-float("inf"))
    nearest = dist.index_select(0, chosen[:1])[0]  # each token's distance to the selected set
    row = torch.empty_like(dist[:1])
    for i in range(1, chosen.numel()):
        torch.argmax(nearest, dim=0, keepdim=True, out=chosen[i : i + 1])
        torch.minimum(nearest, torch.index_select(dist, 0, chosen[i : i + 1], out=row)[0], out=nearest)
    return torch.sort(chosen).values


@register
@dataclass
class DivPrune(PruningMethod):
    name = "divprune"
    category = "vit"
    stage_kind = "pre"

    def select(self, ctx: PruneContext) -> Selection:
        return Selection(max_min_diverse(ctx.visual, ctx.n_keep))
