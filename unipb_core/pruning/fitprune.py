"""FitPrune: progressive pruning by text->visual x visual->visual attention on a budget-fitted schedule.

Reference: Ye et al., "Fit and Prune: Fast and Training-free Visual Token Pruning for Multi-modal Large
Language Models", AAAI 2025 (arXiv 2409.10197). Authors' code: github ywh187/FitPrune,
``LLaVA_1.5/llava/model/language_model/modeling_llama.py`` (``LlamaAttention.forward``, "fitprune" block).
Rule (authors' code): at decoder layer L, with A = layer L's own attention map, max over heads,
score_i = (sum over the tokens after the image t of A[t, i]) * (sum over visual v of A[v, i] / N_visual);
the ``delete_scheme[L]`` LOWEST scores are removed from layer L's output, i.e. the highest are kept. A
token removed at L's output still served as a key at L, so this is exactly a stage at K = L + 1 scored
with layer K-1's attention (the rows before the image attend to no visual token, so "every text row" and
"the rows after the image" give the same sums).

Parameters
----------
start : int, optional
    First stage layer K. Default ``None``: 1 (the authors' schemes delete from layer 0's output on), or 2
    for ``variant="study"``. Stages at every layer ``start..num_layers-1``.
variant : str
    ``"authors"`` (default) or ``"study"`` (``methods/FitPrune_IntraLLM.py`` of the study): ONE stage at layer
    2 keeping ``int(N * keep_ratio)`` tokens, the LOWEST scores (the authors' delete list used as a keep
    list: ``torch.sort(scores).indices[:keep_num]``), entering layer 2 in ascending-score order (``study.py``).

Schedule (authors' variant): stage ``j`` keeps ``n_j ~ N * lam**j`` with ``lam`` solved so the
layer-averaged visual count is as close to ``N * (1 - ratio)`` as integer counts allow
(``schedule.geometric_counts``; when the target is below ``start / num_layers * N`` everything is withdrawn
at ``start``). Deviation: the authors fit ``delete_scheme`` (per-layer counts) offline, by a binary search on
a calibration set, for LLaVA-1.5-7B's 32 layers and FLOPs reductions 10..90 %; those tables exist for one
model only, so the schedule here is solved per sample from the token budget. The scores are the authors'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import AUTHORS, DEFAULT_INTRA_LAYER, ScoredMethod, Selection, Stage
from .context import PruneContext
from .registry import register
from .schedule import check_layers, geometric_counts
from .study import EntryOrder, study_count

AUTHORS_START = 1  # the authors' delete_scheme prunes from layer 0's output on


def fitprune_scores(attn: torch.Tensor, visual: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """``attn``: ``[H, L, L]`` probabilities; ``visual``/``text``: positions. Returns ``[N]`` scores."""
    a = attn.amax(dim=0).index_select(1, visual)  # head-max (the FitPrune and study code's), visual columns
    cross = a[text].sum(dim=0)
    self_attn = a[visual].sum(dim=0) / visual.numel()
    return cross * self_attn


@register
@dataclass
class FitPrune(ScoredMethod):
    name = "fitprune"
    category = "llm"
    stage_kind = "intra"
    variants: ClassVar[tuple[str, ...]] = (AUTHORS, "study")
    start: int | None = None
    variant: str = AUTHORS

    def first_layer(self) -> int:
        if self.start is not None:
            return self.start
        return DEFAULT_INTRA_LAYER if self.variant == "study" else AUTHORS_START

    def plan(self, n_visual: int, ratio: float, num_layers: int) -> list[Stage]:
        start = self.first_layer()
        if start < 1:
            raise ValueError(f"fitprune: start must be >= 1 (it scores with layer K-1), got {start}")
        if self.variant == "study":
            layer = check_layers([start], num_layers, self.name)[0]
            return [Stage("intra", layer, study_count(n_visual, ratio))]
        layers = check_layers(list(range(start, num_layers)), num_layers, self.name)
        counts = geometric_counts(n_visual, layers, num_layers, ratio)
        return [Stage("intra", k, n) for k, n in zip(layers, counts, strict=True)]

    def score(self, ctx: PruneContext) -> torch.Tensor:
        layer = ctx.stage.layer - 1
        li = ctx.layer_inputs[layer]
        return fitprune_scores(ctx.attention("all", layer=layer), li.visual_positions, li.text_positions)

    def select(self, ctx: PruneContext) -> Selection:
        if self.variant == "study":
            return EntryOrder.of(torch.argsort(self.score(ctx).float(), stable=True)[: ctx.n_keep])
        return super().select(ctx)
