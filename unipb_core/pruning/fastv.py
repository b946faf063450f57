"""FastV: keep the visual tokens that receive the most attention at layer K-1, from layer K on.

Reference: Chen et al., "An Image is Worth 1/2 Tokens After Layer 2: Plug-and-Play Inference
Acceleration for Large Vision-Language Models", ECCV 2024 (arXiv 2403.06764). Authors' code:
github pkunlp-icler/FastV, ``src/FastV/llava-hf/transformers/src/transformers/models/llama/modeling_llama.py``
(``LlamaModel.forward``, the ``use_fast_v`` branch).
Rule (authors' code): score_i = attention from the LAST token to visual token i in layer K-1's attention
map, averaged over heads; keep the ``round(N * (1 - ratio))`` highest (``topk``; ties here: lowest index); the
kept tokens are sorted back into sequence order and keep their original positions (``position_ids =
keep_indexs``). The paper's text speaks of the attention a token receives from all tokens; every released
variant uses the last token's row.

Parameters
----------
layer : int
    K, the decoder layer from which only the kept tokens remain (default 2, the paper's and the study's).
queries : str
    ``"last"`` (default, the authors' code): the last token's row. ``"all"``: the mean over every query
    row (the paper's wording).
variant : str
    ``"authors"`` (default) or ``"study"``: the study's ``methods/FastV_IntraLLM.py`` keeps
    ``int(N * keep_ratio)`` tokens (not ``round``) and hands them to layer K in ``topk`` order (descending
    score, not sorted; see ``study.py``). Its scores are the same (layer K-1's head-mean, last row).

Stage: intra-LLM at layer K, scored with layer K-1's attention (recomputed from q/k, so SDPA stays on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import AUTHORS, DEFAULT_INTRA_LAYER, ScoredMethod, Selection, Stage, n_keep_for
from .context import PruneContext
from .registry import register
from .study import EntryOrder, study_count


@register
@dataclass
class FastV(ScoredMethod):
    name = "fastv"
    category = "llm"
    stage_kind = "intra"
    variants: ClassVar[tuple[str, ...]] = (AUTHORS, "study")
    layer: int = DEFAULT_INTRA_LAYER
    queries: str = "last"
    variant: str = AUTHORS

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.queries not in ("all", "last"):
            raise ValueError(f"fastv: queries must be 'all' or 'last', got {self.queries!r}")
        if self.layer < 1:
            raise ValueError(f"fastv: layer must be >= 1 (it scores with layer K-1), got {self.layer}")

    def plan(self, n_visual: int, ratio: float, num_layers: int) -> list[Stage]:
        n_keep = study_count(n_visual, ratio) if self.variant == "study" else n_keep_for(n_visual, ratio)
        return [Stage("intra", self.layer, n_keep)]

    def score(self, ctx: PruneContext) -> torch.Tensor:
        return ctx.received_attention(self.queries, layer=self.layer - 1)

    def select(self, ctx: PruneContext) -> Selection:
        if self.variant == "study":
            scores = self.score(ctx).float()
            return EntryOrder.of(torch.argsort(scores, descending=True, stable=True)[: ctx.n_keep])
        return super().select(ctx)
