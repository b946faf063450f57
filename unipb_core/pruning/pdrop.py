"""PyramidDrop: drop visual tokens in stages, each keeping the tokens the last instruction token attends to.

Reference: Xing et al., "PyramidDrop: Accelerating Your Large Vision-Language Models via Pyramid
Visual Redundancy Reduction", CVPR 2025 (arXiv 2410.17247). Authors' code: github Cooperx521/PyramidDrop,
``llava/model/modeling_llama_pdrop.py`` (``pdrop_forward``, ``pdrop_rank_drop``) and the evaluation scripts
``scripts/v1_5/pdrop_eval/*.sh`` (``--layer_list [8,16,24] --image_token_ratio_list [0.5,0.25,0.125]``).
Rule (authors' code): after layer K-1, before layer K (K in ``layer_list``), score_i = attention of the last
prompt token to visual token i computed with layer K's OWN input norm, q/k projections and RoPE on the tokens
entering K, mean over heads; keep the ``n_j`` highest, sorted back into sequence order.

Parameters
----------
layers : tuple of int, optional
    Stage layers. Default ``None``: ``round(num_layers * f)`` for f in (8/32, 16/32, 24/32), the authors'
    LLaVA-1.5 (32-layer) setting scaled to the model's depth (7/14/21 on 28 layers, 2/4/6 on the tiny 8).
lam : float, optional
    Default ``None``: the share kept per stage is solved for the ratio (below). A number gives the authors'
    fixed counts ``int(N * lam**(j+1))`` counted from the original N (their scripts: 0.5), whatever the ratio.
variant : str
    ``"authors"`` (default) or ``"study"`` (the study's ``methods/Pdrop_IntraLLM.py`` with
    ``layer_prune.DEFAULT_PDROP_LAYERS = (6, 12, 18)``): stages at ``round(num_layers * f)`` for f in
    (6/28, 12/28, 18/28) (its 6/12/18 on 28 layers), each keeping ``int(n * keep_ratio)`` of the tokens
    CURRENTLY left (chained), scored with layer K-1's attention (last row, head mean), handed to layer K in
    ``topk`` order (``study.py``).

Schedule (authors' variant, ``lam=None``): stage ``j`` keeps ``n_j ~ N * lam**(j+1)`` with ``lam`` solved so
that the count entering each decoder layer, averaged over all layers, is as close to ``N * (1 - ratio)`` as
integer counts allow (``schedule.geometric_counts``); below what the first stage can reach
(``layers[0] / num_layers * N``) every token is withdrawn at the first stage. Deviation (why): the study's
ratios are layer averages, which the authors' fixed 0.5 cannot hit.

Stage: intra-LLM at every layer of ``layers``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import AUTHORS, ScoredMethod, Selection, Stage
from .context import PruneContext
from .registry import register
from .schedule import check_layers, geometric_counts, scaled_layers
from .study import EntryOrder, study_count

AUTHORS_FRACTIONS = (8 / 32, 16 / 32, 24 / 32)  # layer_list [8, 16, 24] of LLaVA-1.5-7B's 32 layers
STUDY_FRACTIONS = (6 / 28, 12 / 28, 18 / 28)  # the study's (6, 12, 18) on its 28-layer models


@register
@dataclass
class PDrop(ScoredMethod):
    name = "pdrop"
    category = "llm"
    stage_kind = "intra"
    variants: ClassVar[tuple[str, ...]] = (AUTHORS, "study")
    layers: tuple[int, ...] | None = None
    lam: float | None = None
    variant: str = AUTHORS

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lam is not None and not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"pdrop: lam must be in [0, 1] or None, got {self.lam}")

    def stage_layers(self, num_layers: int) -> list[int]:
        if self.layers is None:
            fractions = STUDY_FRACTIONS if self.variant == "study" else AUTHORS_FRACTIONS
            return scaled_layers(num_layers, fractions)
        return check_layers(list(self.layers), num_layers, self.name)

    def plan(self, n_visual: int, ratio: float, num_layers: int) -> list[Stage]:
        layers = self.stage_layers(num_layers)
        if self.variant == "study":
            counts, n = [], n_visual
            for _ in layers:
                n = study_count(n, ratio)
                counts.append(n)
        elif self.lam is not None:
            counts = [int(n_visual * self.lam ** (j + 1)) for j in range(len(layers))]  # the authors' int()
        else:
            counts = geometric_counts(n_visual, layers, num_layers, ratio)
        return [Stage("intra", k, n) for k, n in zip(layers, counts, strict=True)]

    def score(self, ctx: PruneContext) -> torch.Tensor:
        layer = ctx.stage.layer - 1 if self.variant == "study" else ctx.stage.layer
        return ctx.received_attention("last", layer=layer)

    def select(self, ctx: PruneContext) -> Selection:
        if self.variant == "study":
            return EntryOrder.of(torch.argsort(self.score(ctx).float(), descending=True, stable=True)[: ctx.n_keep])
        return super().select(ctx)
