"""VTW: withdraw every visual token at decoder layer K (Visual Token Withdrawal).

Reference: Lin et al., "Boosting Multimodal Large Language Models with Visual Tokens Withdrawal for
Rapid Inference", AAAI 2025 (arXiv 2405.05803).
Rule: no scoring; from layer K on no visual token remains (text tokens have absorbed the image).

Authors' code: github lzhxmu/VTW, ``llava/model/language_model/VTW.py`` (``temp_cache.k = 15`` on
LLaVA-1.5-7B's 32 layers, chosen by their KL criterion; at decoder layer ``k`` the image span is cut out of
the hidden states and position ids, the rest keep their positions, ``pe_type = "keep"``).

Parameters
----------
layer : int, optional
    Default ``None``: K is derived from the ratio: ``K = round(num_layers * (1 - ratio))`` clamped to
    ``1..num_layers-1``, so the layer-averaged retained share ``K / num_layers`` matches ``1 - ratio``
    (the study's "retain averaged" counts; K ~ 32 * r on LLaVA). Because K is an integer the layer mean
    ``N * K / num_layers`` is within one layer's worth (``N / num_layers``) of ``N * (1 - ratio)``.
    At ``ratio = 0`` (K would be ``num_layers``) the plan is a no-op stage at the last layer.
    An integer fixes K whatever the ratio (the authors' K = 15 of 32 for LLaVA-1.5-7B), except that
    ratio 0 stays a no-op.

Stage: one intra-LLM stage with ``n_keep = 0``.
Deviations: the authors pick K per model with a KL-divergence criterion on a calibration set; by default the
ratio decides K here, as the study's ratios require (the rule at K is the authors').
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .base import PruningMethod, Selection, Stage
from .context import PruneContext
from .registry import register
from .schedule import check_layers


def withdrawal_layer(num_layers: int, ratio: float) -> int:
    """``round(num_layers * (1 - ratio))`` (half up); ``num_layers`` means nothing is withdrawn."""
    return min(max(int(math.floor(num_layers * (1.0 - ratio) + 0.5)), 1), num_layers)


@register
@dataclass
class VTW(PruningMethod):
    name = "vtw"
    category = "llm"
    stage_kind = "intra"
    layer: int | None = None

    def plan(self, n_visual: int, ratio: float, num_layers: int) -> list[Stage]:
        k = withdrawal_layer(num_layers, ratio)
        if self.layer is not None and k < num_layers:
            k = check_layers([self.layer], num_layers, self.name)[0]
        if k >= num_layers:
            return [Stage("intra", num_layers - 1, n_visual)]
        return [Stage("intra", k, 0)]

    def select(self, ctx: PruneContext) -> Selection:
        return Selection(torch.arange(ctx.n_keep, device=ctx.visual.device))
