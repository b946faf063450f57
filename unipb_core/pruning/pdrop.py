"""PyramidDrop: drop visual tokens in stages, each keeping the tokens the last instruction token attends to.

Reference: Xing et al., "PyramidDrop: Accelerating Your Large Vision-Language Models via Pyramid
Visual Redundancy Reduction", CVPR 2025 (arXiv 2410.17247).
Rule: at each stage layer K, score_i = attention from the last token to visual token i (mean over
heads) at layer K-1; keep the ``n_j`` highest.

Parameters
----------
layers : tuple of int, optional
    Stage layers. Default ``None``: ``round(num_layers * f)`` for ``f`` in (6/28, 12/28, 18/28), i.e. the
    study's 6/12/18 on a 28-layer model scaled to the model's depth (2/3/5 on the 8-layer tiny models),
    deduplicated and clamped to ``1..num_layers-1``.

Schedule: stage ``j`` keeps ``n_j ~ N * lam**j`` (a share ``lam`` of the remaining tokens, counted from
the original N as in the paper); ``lam`` is solved so that the count entering each decoder layer,
averaged over all layers, is as close to ``N * (1 - ratio)`` as integer counts allow
(``schedule.geometric_counts``: bisection on ``lam``, then +-1 nudges). When the target is below what
the first stage can reach (``layers[0] / num_layers * N``, e.g. 88.9 % with stages from layer 6 of 28),
every token is withdrawn at the first stage.

Stage: intra-LLM at every layer of ``layers``.
Deviations: the paper scores stage K with layer K's own q/k (the last instruction token against the
tokens entering K). The engine hands a stage the captured input of layer K-1 only (layer K's input is
captured after the stage has pruned it), so the score uses layer K-1's attention, as the study's code
does. The paper's fixed lam = 0.5 is replaced by the solved lam so the ratio means the same for all methods.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import ScoredMethod, Stage
from .context import PruneContext
from .registry import register
from .schedule import check_layers, geometric_counts, scaled_layers

STUDY_FRACTIONS = (6 / 28, 12 / 28, 18 / 28)


@register
@dataclass
class PDrop(ScoredMethod):
    name = "pdrop"
    category = "llm"
    stage_kind = "intra"
    layers: tuple[int, ...] | None = None

    def stage_layers(self, num_layers: int) -> list[int]:
        if self.layers is None:
            return scaled_layers(num_layers, STUDY_FRACTIONS)
        return check_layers(list(self.layers), num_layers, self.name)

    def plan(self, n_visual: int, ratio: float, num_layers: int) -> list[Stage]:
        layers = self.stage_layers(num_layers)
        counts = geometric_counts(n_visual, layers, num_layers, ratio)
        return [Stage("intra", k, n) for k, n in zip(layers, counts, strict=True)]

    def score(self, ctx: PruneContext) -> torch.Tensor:
        return ctx.received_attention("last", layer=ctx.stage.layer - 1)
