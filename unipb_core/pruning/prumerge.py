"""PruMerge: keep the [CLS]-attention outliers of the vision encoder and merge the rest into them.

Reference: Shang et al., "LLaVA-PruMerge: Adaptive Token Reduction for Efficient Large Multimodal
Models" (arXiv 2403.15388); released code: 42Shawn/LLaVA-PruMerge ``llava/model/multimodal_encoder/clip_encoder.py``
(``token_prune_merge_advanced``), followed rule for rule:

* kept tokens = the top tokens by [CLS] attention ``a`` (with ``budget="adaptive"`` as many as there are IQR
  outliers, ``a > Q3 + 1.5 IQR``, i.e. the released ``if_adaptive=True``);
* each kept token ``i`` becomes ``x_i + sum_{j in kNN(i)} a_j x_j`` over its ``k`` = 32 most key-similar
  tokens among *all* others, kept or not (cosine of the encoder keys, heads concatenated; unnormalised
  attention weights);
* one extra token, ``sum_{j pruned} a_j x_j`` (the attention-weighted sum of every pruned token).

Fixed budget (default, ``budget="fixed"``; the released ``if_adaptive=False`` path with its ratio set from the
budget): ``n_keep`` tokens in all, the extra token inside the budget: the top ``n_keep - 1`` by attention are
kept and merged, and the extra token takes the slot of the last pruned token in raster order (the released
code appends it after the kept tokens; the engine keeps every token at an original position, so the latest
free one is the closest). ``budget="adaptive"`` returns the released adaptive count (outliers + the extra
token) from ``select``; the engine holds a fixed count per stage, so ``plan`` refuses it (it serves direct
``select`` calls, e.g. measuring the released count per image).
Nothing pruned (ratio 0): the tokens are returned unchanged (the engine's ratio-0 invariant; the released
code would still merge neighbours and append a zero extra token).
Parameters: ``k`` (32), ``budget`` ("fixed"). Stage: pre-LLM. Input deviations (inputs come from
``models/vision_attention.py``): the released code scores with a single-head softmax of layer 23's q/k
(1024-d, scale 1024^-0.5); here [CLS] attention is the head mean of the feature layer, and merging happens on
the projected tokens, not the CLIP features before the projector (the projector is not linear, so merged
features differ from projecting merged CLIP features). Per family: see ``notes_for`` (InternVL: [CLS]
attention of the 4 pixel-shuffled patches summed; Qwen2.5-VL: no [CLS], mean received attention).
There is no study variant: the study's code has no PruMerge (its LLaVA numbers come from the original repos).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .base import PruningMethod, Selection, Stage, top_k
from .context import PruneContext
from .registry import register
from .vit_common import cosine_matrix, encoder_attention_notes

BUDGETS = ("fixed", "adaptive")
NEIGHBOURS = 32  # the released code's ``topk(..., k=int(32))``


def iqr_outliers(scores: torch.Tensor) -> torch.Tensor:
    """Boolean mask of scores above ``Q3 + 1.5 (Q3 - Q1)`` (linear-interpolated quartiles, as ``np.percentile``)."""
    s = scores.double()
    q1, q3 = torch.quantile(s, torch.tensor([0.25, 0.75], dtype=s.dtype, device=s.device))
    return s > q3 + 1.5 * (q3 - q1)


def adaptive_count(scores: torch.Tensor) -> int:
    """The released ``int(N * reduction_ratio)`` with ``reduction_ratio`` = the IQR outlier share."""
    n = scores.numel()
    return int(n * (int(iqr_outliers(scores).sum()) / n))


def merge_neighbours(
    features: torch.Tensor, keys: torch.Tensor, weights: torch.Tensor, keep: torch.Tensor, k: int
) -> torch.Tensor:
    """``x_i + sum_j w_j x_j`` over the ``k`` tokens ``j != i`` whose keys are most cosine-similar to ``i``'s."""
    sim = cosine_matrix(keys)[keep]  # [K, N]
    sim[torch.arange(keep.numel(), device=keep.device), keep] = -float("inf")  # never the token itself
    k = min(k, features.shape[0] - 1)
    x = features.float()
    if k <= 0:
        return features[keep]
    nbr = torch.topk(sim, k, dim=1).indices  # [K, k]
    merged = x[keep] + (weights.float()[nbr].unsqueeze(-1) * x[nbr]).sum(dim=1)
    return merged.to(features.dtype)


def with_extra_token(
    features: torch.Tensor, keys: torch.Tensor, weights: torch.Tensor, kept: torch.Tensor, k: int
) -> Selection:
    """``kept`` tokens merged with their neighbours, plus the extra token in the last pruned slot.

    ``kept`` may be in any order; the selection is sorted. With nothing pruned there is no extra token.
    """
    n = features.shape[0]
    pruned = torch.ones(n, dtype=torch.bool, device=features.device)
    pruned[kept] = False
    merged = merge_neighbours(features, keys, weights, kept, k)
    if not bool(pruned.any()):
        keep, order = torch.sort(kept)
        return Selection(keep, merged[order])
    rest = pruned.nonzero().squeeze(1)
    extra = (weights.float()[rest].unsqueeze(-1) * features.float()[rest]).sum(dim=0, keepdim=True)
    keep, order = torch.sort(torch.cat([kept, rest[-1:]]))
    return Selection(keep, torch.cat([merged, extra.to(features.dtype)])[order])


@register
@dataclass
class PruMerge(PruningMethod):
    k: int = NEIGHBOURS
    budget: str = "fixed"

    name = "prumerge"
    category = "vit"
    stage_kind = "pre"
    merges: ClassVar[bool] = True
    needs_vision_attention: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.budget not in BUDGETS:
            raise ValueError(f"method {self.name!r}: budget must be one of {', '.join(BUDGETS)} (got {self.budget!r})")
        if not isinstance(self.k, int) or self.k < 0:
            raise ValueError(f"method {self.name!r}: k (neighbours merged into each kept token) must be an int >= 0")

    def plan(self, n_visual: int, ratio: float, num_layers: int) -> list[Stage]:
        if self.budget == "adaptive":
            raise ValueError(
                f"method {self.name!r}: budget='adaptive' keeps a data-dependent number of tokens (the released IQR "
                "count), which the engine's fixed per-stage count cannot hold; use budget='fixed' in runs, or call "
                "select() on a PruneContext to get the released adaptive selection"
            )
        return super().plan(n_visual, ratio, num_layers)

    def kept_tokens(self, attention: torch.Tensor, n_kept: int | None) -> torch.Tensor:
        """Tokens kept besides the extra one: ``n_kept`` of them, or the released adaptive set when None."""
        return top_k(attention, adaptive_count(attention) if n_kept is None else n_kept)

    def select(self, ctx: PruneContext) -> Selection:
        if self.budget == "fixed" and ctx.n_keep >= ctx.n_visual:
            return Selection(torch.arange(ctx.n_visual, device=ctx.visual.device))
        if self.budget == "fixed" and ctx.n_keep <= 0:
            empty = torch.empty(0, dtype=torch.long, device=ctx.visual.device)
            return Selection(empty, ctx.visual[:0])
        attention = ctx.encoder_scores()
        kept = self.kept_tokens(attention, ctx.n_keep - 1 if self.budget == "fixed" else None)
        return with_extra_token(ctx.visual, ctx.encoder_keys(), attention, kept, self.k)

    def notes_for(self, family: str) -> dict[str, Any]:
        return encoder_attention_notes(family)
