"""DART: keep pivot tokens and the visual tokens least duplicated by them (duplication-aware).

Reference: Wen et al., "Stop Looking for Important Tokens in Multimodal Language Models: Duplication
Matters More", 2025 (arXiv 2502.11494).
Rule: pivots = the ``n_visual_pivots`` visual and ``n_text_pivots`` instruction tokens with the largest
L1 norm of layer K-1's post-RoPE keys (heads concatenated); each pivot, in turn, takes the
``floor((n_keep - visual pivots) / pivots)`` tokens of the remaining visual pool with the lowest cosine
similarity to it (on the hidden states entering layer K); visual pivots are kept, text pivots are not.

Parameters
----------
layer : int
    K (default 2, the study's). Keys come from layer K-1.
n_visual_pivots, n_text_pivots : int
    Pivot counts (default 10 + 5, the study's; the paper's code uses 4 + 4 on LLaVA).

Stage: intra-LLM at layer K.
Deviations (the engine keeps exactly ``n_keep``; the original over-keeps by up to the visual pivots):
- visual pivots count toward the budget: each pivot takes ``floor((n_keep - n_vp) / n_pivots)`` tokens,
  then one more per pivot in turn (same order, least similar first) until ``n_keep`` are kept; with
  ``n_keep <= n_vp`` only the ``n_keep`` highest-norm visual pivots are kept;
- pivots are visited in a fixed order (visual by decreasing norm, then text), where the original
  iterates a Python set;
- text pivots are the text tokens after the last visual token (the instruction), as in the original;
- cosines use the raw hidden states entering layer K. The original applies the model's final RMSNorm
  first; cosine ignores RMSNorm's per-token scale, so only its elementwise gain is left out (the
  stage context does not hand the method that norm module).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import DEFAULT_INTRA_LAYER, PruningMethod, Selection
from .context import PruneContext
from .registry import register


def dart_select(
    key_norm_visual: torch.Tensor,
    key_norm_text: torch.Tensor,
    hidden_visual: torch.Tensor,
    hidden_text: torch.Tensor,
    n_keep: int,
    n_visual_pivots: int,
    n_text_pivots: int,
) -> torch.Tensor:
    """Sorted visual indices kept by DART from key L1 norms and hidden states (see module docstring)."""
    n = hidden_visual.shape[0]
    n_vp = min(n_visual_pivots, n)
    vis_pivots = torch.argsort(key_norm_visual.float(), descending=True, stable=True)[:n_vp]
    if n_keep <= n_vp:
        return torch.sort(vis_pivots[:n_keep]).values
    n_tp = min(n_text_pivots, hidden_text.shape[0])
    text_pivots = torch.argsort(key_norm_text.float(), descending=True, stable=True)[:n_tp]
    pivot_vecs = torch.cat([hidden_visual[vis_pivots], hidden_text[text_pivots]]).float()
    # [P, N] cosine of each pivot to each visual token; "least similar first" = ascending order.
    sims = F.normalize(pivot_vecs, dim=-1) @ F.normalize(hidden_visual.float(), dim=-1).T
    orders = torch.argsort(sims, dim=1, stable=True).tolist()
    taken = torch.zeros(n, dtype=torch.bool)
    taken[vis_pivots.cpu()] = True
    keep = vis_pivots.tolist()
    per_pivot = (n_keep - n_vp) // len(orders)
    cursors = [0] * len(orders)

    def take(p: int, count: int) -> None:
        # The pool shrinks as tokens are taken: skip tokens an earlier pivot already took.
        while count > 0 and len(keep) < n_keep:
            while taken[orders[p][cursors[p]]]:
                cursors[p] += 1
            idx = orders[p][cursors[p]]
            taken[idx] = True
            keep.append(idx)
            count -= 1

    for p in range(len(orders)):
        take(p, per_pivot)
    p = 0
    while len(keep) < n_keep:  # remainder: one more per pivot, round robin
        take(p, 1)
        p = (p + 1) % len(orders)
    return torch.sort(torch.tensor(keep, dtype=torch.long, device=hidden_visual.device)).values


@register
@dataclass
class DART(PruningMethod):
    name = "dart"
    category = "llm"
    stage_kind = "intra"
    layer: int = DEFAULT_INTRA_LAYER
    n_visual_pivots: int = 10
    n_text_pivots: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.layer < 1:
            raise ValueError(f"dart: layer must be >= 1 (pivots use layer K-1's keys), got {self.layer}")
        if self.n_visual_pivots < 0 or self.n_text_pivots < 0 or self.n_visual_pivots + self.n_text_pivots == 0:
            raise ValueError("dart: pivot counts must be >= 0 and not both 0")

    def select(self, ctx: PruneContext) -> Selection:
        prev = ctx.layer_inputs[self.layer - 1]
        _, keys = ctx.query_key(layer=self.layer - 1)  # [H, L, d]
        norms = keys.float().abs().sum(dim=(0, 2))  # L1 over heads concatenated
        after = ctx.text_positions > ctx.visual_positions.max()
        keep = dart_select(
            norms[prev.visual_positions], norms[prev.text_positions][after], ctx.visual, ctx.text[after],
            ctx.n_keep, self.n_visual_pivots, self.n_text_pivots,
        )  # fmt: skip
        return Selection(keep)
