"""G-Prune: score visual tokens by propagating their feature norms over a similarity graph.

Reference: Jiang et al., "What Kind of Visual Tokens Do We Need? Training-free Visual Token Pruning
for Multi-modal Large Language Models from the Perspective of Graph" (G-Prune, AAAI 2025, arXiv
2501.02268), as implemented in the study. Rule: ``S = cos(x_i, x_j)``, zeroed below ``similarity_threshold``;
``A = row_softmax(S / temperature)`` with zeroed entries set to -5000 (so they get no weight);
``score = (||x_i||_2 as a row vector) . A^steps / degree`` with ``degree`` = the number of other tokens
above the threshold (at least 1); keep the top ``n_keep`` scores.
Parameters: ``similarity_threshold`` (0.5), ``temperature`` (0.03), ``steps`` (5). Stage: pre-LLM, on the
projected tokens; the same on every family (the study prunes InternVL tile 0 separately from the other
tiles; this benchmark's runs use one tile, so that split does not arise).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import ScoredMethod
from .context import PruneContext
from .registry import register
from .vit_common import cosine_matrix

MASKED_LOGIT = -5000.0  # the study's value for "no edge" before the softmax


def gprune_scores(x: torch.Tensor, similarity_threshold: float, temperature: float, steps: int) -> torch.Tensor:
    sim = cosine_matrix(x)
    edge = sim >= similarity_threshold
    logits = torch.where(edge, sim / temperature, torch.full_like(sim, MASKED_LOGIT))
    adjacency = torch.softmax(logits, dim=-1)
    state = x.float().norm(dim=-1)
    for _ in range(steps):
        state = state @ adjacency
    degree = (edge.sum(dim=1) - edge.diagonal().long()).clamp(min=1)
    return state / degree


@register
@dataclass
class GPrune(ScoredMethod):
    similarity_threshold: float = 0.5
    temperature: float = 0.03
    steps: int = 5

    name = "gprune"
    category = "vit"
    stage_kind = "pre"

    def score(self, ctx: PruneContext) -> torch.Tensor:
        return gprune_scores(ctx.visual, self.similarity_threshold, self.temperature, self.steps)
