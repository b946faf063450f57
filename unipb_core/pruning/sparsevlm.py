"""SparseVLM: text raters score the visual tokens at several layers; pruned tokens are recycled by merging.

Reference: Zhang et al., "SparseVLM: Visual Token Sparsification for Efficient Vision-Language Model
Inference", ICML 2025 (arXiv 2410.04417; code: github.com/Gumpest/SparseVLMs).
Authors' code: ``llava/model/language_model/modelling_sparse_llama.py`` (``LlamaModel.forward``: raters,
``pruning_loc``, recycling) and ``score.py`` (``attn_postprocess_topk``).
Rule: the raters are chosen once, from the LLM's input embeddings H (as the authors): the instruction tokens t
(every token after the image) whose relevance ``mean_v softmax_t(H_v . H_t)`` exceeds the mean relevance; at
each stage layer K, score_i = attention from the raters to visual token i at layer K-1 (mean over heads and
raters; the authors prune layer K-1's output with its own map); keep the ``n_j`` highest.
Recycling: of the deleted tokens, the ``int(recycle_share * deleted) + 1`` with the highest scores are
merged into their most cosine-similar kept token (hidden states entering K; kept feature = mean of itself
and the tokens merged into it); the other deleted tokens are dropped.

Parameters
----------
layers : tuple of int, optional
    Stage layers. Default ``None``: ``round(num_layers * f)`` for f in (3/32, 7/32, 16/32), i.e. the original's
    pruning after layers 2, 6 and 15 of LLaVA-7B's 32 (stages at 3, 7, 16; 1, 2, 4 on the tiny 8 layers).
recycle_share : float
    Share of the deleted tokens that is recycled (default 0.3, the original's).

Stages: intra-LLM at every layer of ``layers`` (merges). Schedule: ``schedule.geometric_counts``, the same
layer-averaged schedule as PDrop, instead of the original's rank-based counts (see ``docs/methods.md``).
Category "hybrid" is the study's (inferred) label: nothing leaves before the LLM; the only pre-LLM
computation is choosing the raters from the LLM's input embeddings (``needs_llm_input``: the engine keeps
layer 0's input for it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import PruningMethod, Selection, Stage, top_k
from .context import PruneContext, instruction_positions
from .registry import register
from .schedule import check_layers, geometric_counts, scaled_layers
from .vit_common import cosine_matrix

ORIGINAL_FRACTIONS = (3 / 32, 7 / 32, 16 / 32)  # pruning after layers 2, 6, 15 of 32 (LLaVA-7B)


def select_raters(visual: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Indices into ``text`` of the raters: relevance ``mean_v softmax_t(visual @ text.T)`` above its mean."""
    relevance = torch.softmax(visual.float() @ text.float().T, dim=1).mean(dim=0)
    raters = (relevance > relevance.mean()).nonzero().squeeze(1)
    return raters if raters.numel() else torch.arange(text.shape[0], device=text.device)


def recycle(x: torch.Tensor, keep: torch.Tensor, scores: torch.Tensor, share: float) -> torch.Tensor | None:
    """Merged features of the kept tokens, or ``None`` when nothing is recycled (see the module docstring)."""
    n_deleted = x.shape[0] - keep.numel()  # keep is unique: no host read needed for the deleted count
    if n_deleted == 0 or keep.numel() == 0:
        return None
    deleted_mask = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    deleted_mask[keep] = False
    # The deleted indices in order, without nonzero's host read: a stable sort puts them first.
    deleted = torch.sort((~deleted_mask).to(torch.int8), stable=True).indices[:n_deleted]
    n_rec = min(n_deleted, int(n_deleted * share) + 1)
    recycled = deleted[torch.argsort(scores[deleted].float(), descending=True, stable=True)[:n_rec]]
    owner = cosine_matrix(x)[recycled.unsqueeze(1), keep].argmax(dim=1)  # first maximum on ties
    sums = x[keep].float().index_add(0, owner, x[recycled].float())
    # Counts by index_add, not bincount: bincount reads its input's maximum on the host.
    counts = torch.ones_like(keep).index_add_(0, owner, torch.ones_like(owner)).unsqueeze(1)
    return (sums / counts).to(x.dtype)


@register
@dataclass
class SparseVLM(PruningMethod):
    name = "sparsevlm"
    category = "hybrid"
    stage_kind = "intra"
    merges: ClassVar[bool] = True
    needs_llm_input: ClassVar[bool] = True
    layers: tuple[int, ...] | None = None
    recycle_share: float = 0.3

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.recycle_share <= 1.0:
            raise ValueError(f"sparsevlm: recycle_share must be in [0, 1], got {self.recycle_share}")

    def stage_layers(self, num_layers: int) -> list[int]:
        if self.layers is None:
            return scaled_layers(num_layers, ORIGINAL_FRACTIONS)
        return check_layers(list(self.layers), num_layers, self.name)

    def plan(self, n_visual: int, ratio: float, num_layers: int) -> list[Stage]:
        layers = self.stage_layers(num_layers)
        counts = geometric_counts(n_visual, layers, num_layers, ratio)
        return [Stage("intra", k, n) for k, n in zip(layers, counts, strict=True)]

    def select(self, ctx: PruneContext) -> Selection:
        if ctx.n_keep >= ctx.n_visual:
            return Selection(torch.arange(ctx.n_visual, device=ctx.visual.device))
        layer = ctx.stage.layer - 1
        prev, first = ctx.layer_inputs[layer], ctx.layer_inputs[0]
        embeds = first.hidden[0]
        first_instruction, instruction = instruction_positions(first, prev)
        chosen = select_raters(embeds[first.visual_positions], embeds[first_instruction])
        # Text tokens are never dropped, so the i-th instruction token of the LLM input is the i-th one here.
        raters = instruction[chosen.to(prev.hidden.device)]
        scores = ctx.attention(raters, layer=layer).mean(dim=(0, 1))[prev.visual_positions]
        keep = top_k(scores, ctx.n_keep)
        return Selection(keep, recycle(ctx.visual, keep, scores, self.recycle_share))
