"""G-Prune: score visual tokens by propagating their feature norms over a similarity graph.

Reference: Jiang et al., "What Kind of Visual Tokens Do We Need? Training-free Visual Token Pruning
for Multi-modal Large Language Models from the Perspective of Graph" (G-Prune, AAAI 2025, arXiv
2501.02268). No authors' repository was found; the released code used here is the study's copy,
``select_important_features`` in TianfanPeng/VLMUniPruneBench ``methods/GPrune_PreLLM.py``, followed rule for
rule: ``S = cos(x_i, x_j)``; entries below ``similarity_threshold`` set to 0; ``S / temperature``; entries with
``|value| < 1e-6`` (the zeroed ones) set to -5000; ``A = row_softmax``; ``degree_i = #{j : A_ij > 0}`` counted
*after* the softmax, so the token itself and every neighbour above the threshold count (an entry whose
softmax underflows to 0 does not); ``score = (||x_i||_2 as a row vector) . A^steps / degree``; keep the top
``n_keep`` scores (ties: lowest index).
Parameters: ``similarity_threshold`` (0.5), ``temperature`` (0.03), ``steps`` (5), the study's environment
defaults. ``variant``: ``"authors"`` keeps ``round(N (1 - ratio))`` like every method here; ``"study"`` keeps
``max(1, int(N (1 - ratio)))`` as the study's code does (47 of 144 at 66.7 %).
Stage: pre-LLM, on the projected tokens; the same on every family (the study prunes InternVL tile 0
separately from the other tiles; this benchmark's runs use one tile, so that split does not arise).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import AUTHORS, ScoredMethod, Stage
from .context import PruneContext
from .registry import register
from .study import study_count
from .vit_common import cosine_matrix

MASKED_LOGIT = -5000.0  # the released code's value for "no edge" before the softmax
ZERO_TOLERANCE = 1e-6  # entries with |S / temperature| below this count as "no edge" (the zeroed ones)


def gprune_scores(x: torch.Tensor, similarity_threshold: float, temperature: float, steps: int) -> torch.Tensor:
    """``[N]`` G-Prune scores of the rows of ``x`` (float32), as in the released ``select_important_features``."""
    sim = cosine_matrix(x)
    # The released `where(S < thr, 0, S) / t`, then -5000 where |.| < tol, as one mask and one fill in place:
    # a zeroed entry is 0 after the division, so it is masked either way (bit for bit the same logits).
    masked = sim < similarity_threshold
    logits = sim.div_(temperature)
    masked |= logits.abs() < ZERO_TOLERANCE
    logits.masked_fill_(masked, MASKED_LOGIT)
    adjacency = torch.softmax(logits, dim=-1)
    degree = (adjacency > 0).sum(dim=1)  # after the softmax: the token itself counts
    state = x.float().norm(dim=-1)
    for _ in range(steps):
        state = state @ adjacency
    return state / degree


@register
@dataclass
class GPrune(ScoredMethod):
    similarity_threshold: float = 0.5
    temperature: float = 0.03
    steps: int = 5
    variant: str = AUTHORS

    name = "gprune"
    category = "vit"
    stage_kind = "pre"
    variants = (AUTHORS, "study")

    def plan(self, n_visual: int, ratio: float, num_layers: int) -> list[Stage]:
        if self.variant == AUTHORS:
            return super().plan(n_visual, ratio, num_layers)
        return [Stage("pre", None, min(n_visual, max(1, study_count(n_visual, ratio))))]

    def score(self, ctx: PruneContext) -> torch.Tensor:
        return gprune_scores(ctx.visual, self.similarity_threshold, self.temperature, self.steps)
