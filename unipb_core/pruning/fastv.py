"""FastV: keep the visual tokens that receive the most attention at layer K-1, from layer K on.

Reference: Chen et al., "An Image is Worth 1/2 Tokens After Layer 2: Plug-and-Play Inference
Acceleration for Large Vision-Language Models", ECCV 2024 (arXiv 2403.06764).
Rule: score_i = attention visual token i receives at layer K-1, averaged over heads and the query rows
``queries``; keep the ``n_keep`` highest (ties: lowest index).

Parameters
----------
layer : int
    K, the decoder layer from which only the kept tokens remain (default 2, the paper's and the study's).
queries : str
    ``"all"`` (default): average over every query token, the paper's wording. ``"last"``: the last
    token's row only, as every official FastV variant and the study's code do.

Stage: intra-LLM at layer K, scored with layer K-1's attention (recomputed from q/k, so SDPA stays on).
Deviations: kept tokens enter layer K in sequence order (the study leaves them in score order, which
only changes their order in the cache, not their positions).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import DEFAULT_INTRA_LAYER, ScoredMethod
from .context import PruneContext
from .registry import register


@register
@dataclass
class FastV(ScoredMethod):
    name = "fastv"
    category = "llm"
    stage_kind = "intra"
    layer: int = DEFAULT_INTRA_LAYER
    queries: str = "all"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.queries not in ("all", "last"):
            raise ValueError(f"fastv: queries must be 'all' or 'last', got {self.queries!r}")
        if self.layer < 1:
            raise ValueError(f"fastv: layer must be >= 1 (it scores with layer K-1), got {self.layer}")

    def score(self, ctx: PruneContext) -> torch.Tensor:
        return ctx.received_attention(self.queries, layer=self.layer - 1)
