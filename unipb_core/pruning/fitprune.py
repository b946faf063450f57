"""FitPrune: progressive pruning by text->visual x visual->visual attention on a budget-fitted schedule.

Reference: Ye et al., "Fit and Prune: Fast and Training-free Visual Token Pruning for Multi-modal Large
Language Models", AAAI 2025 (arXiv 2409.10197).
Rule: at each stage layer K, with A = layer K-1's attention (max over heads),
score_i = (sum over text queries t of A[t, i]) * (sum over visual queries v of A[v, i]) / N_visual;
keep the ``n_j`` HIGHEST.

Parameters
----------
start : int
    First pruning layer (default 2, the study's); stages at every layer ``start..num_layers-1``.

Schedule: stage ``j`` keeps ``n_j ~ N * lam**j`` with ``lam`` solved so the layer-averaged visual count
is as close to ``N * (1 - ratio)`` as integer counts allow (``schedule.geometric_counts``; when the
target is below ``start / num_layers * N`` everything is withdrawn at ``start``).

Stage: intra-LLM at every layer from ``start``.
What the paper does and what this is:
- Paper: per-layer pruning counts are fitted offline on a small calibration set: a binary search over
  the share of attention mass that pruning may remove, per layer, so that the attention distributions
  (self-attention among visual tokens, cross-attention from text) change least while the FLOPs budget
  is met; at inference each layer removes its fitted count of the least important tokens.
- Here: no calibration set. The per-layer counts form a geometric schedule solved per sample from the
  token budget alone (the same solver as PDrop), and the importance is the paper's product of the two
  attention statistics, computed at every stage. So the scores are the paper's, the schedule's shape is not.
- Kept tokens are the HIGHEST scores. The study's code sorted ascending and kept the LOWEST, in one shot
  at layer 2 (its delete list used as a keep list), which likely explains its poor results.
- Scores use layer K-1's attention (the engine captures layer K's input only after the stage prunes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import DEFAULT_INTRA_LAYER, ScoredMethod, Stage
from .context import PruneContext
from .registry import register
from .schedule import check_layers, geometric_counts


def fitprune_scores(attn: torch.Tensor, visual: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """``attn``: ``[H, L, L]`` probabilities; ``visual``/``text``: positions. Returns ``[N]`` scores."""
    a = attn.max(dim=0).values  # head-max, as the FitPrune and study code reduce heads
    cross = a[text][:, visual].sum(dim=0)
    self_attn = a[visual][:, visual].sum(dim=0) / visual.numel()
    return cross * self_attn


@register
@dataclass
class FitPrune(ScoredMethod):
    name = "fitprune"
    category = "llm"
    stage_kind = "intra"
    start: int = DEFAULT_INTRA_LAYER

    def plan(self, n_visual: int, ratio: float, num_layers: int) -> list[Stage]:
        layers = check_layers(list(range(self.start, num_layers)), num_layers, self.name)
        if layers[0] != self.start:
            raise ValueError(f"fitprune: start must be >= 1 (it scores with layer K-1), got {self.start}")
        counts = geometric_counts(n_visual, layers, num_layers, ratio)
        return [Stage("intra", k, n) for k, n in zip(layers, counts, strict=True)]

    def score(self, ctx: PruneContext) -> torch.Tensor:
        layer = ctx.stage.layer - 1
        li = ctx.layer_inputs[layer]
        return fitprune_scores(ctx.attention("all", layer=layer), li.visual_positions, li.text_positions)
