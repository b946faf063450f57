"""MustDrop: merge near-identical neighbouring tokens before the LLM, then filter by text-guided dual attention.

Reference: Liu et al., "Multi-Stage Vision Token Dropping: Towards Efficient Multimodal Large Language
Model", arXiv 2411.10803 (code: github.com/liuting20/MustDrop).
Rule: (1) pre-LLM, local spatial merging: each image's token grid is cut into ``window x window`` tiles;
a tile's score is the mean cosine over its distinct token pairs; tiles are merged into their centre token
(feature = mean of the tile) in decreasing score until the pre stage's count is reached. (2) At layer K,
with A = layer K-1's attention (mean over heads) from the instruction tokens to the visual tokens,
global_i = sum_t A[t, i] and individual_i = max_t A[t, i]; the key set (the ``ceil(key_share * n)`` tokens
with the highest vision-encoder attention) is kept first, the rest by
``max(global_i / (global_thr * sum_j global_j), individual_i / individual_thr)``.

Parameters
----------
layer : int, optional
    K, the first decoder layer without the filtered tokens. Default ``None``: ``round(num_layers * 3/32)``
    (3 on LLaVA-7B's 32 layers, where the original filters with layer 2's attention; 1 on the tiny 8).
merge_share : float
    Share of the visual tokens the spatial merge removes (default 0.25), the same at every ratio.
window : int
    Side of the merge tiles (default 3, the original's 3x3).
key_share : float
    Size of the key set as a share of the tokens entering the filter (default 0.08, the original's).
global_thr, individual_thr : float
    The filter's thresholds (default 0.001 each, the original's 66.7 % setting); only their ratio matters here.

Stages: pre-LLM (merges) and intra-LLM at layer K. Budget: the pre stage keeps ``N * (1 - merge_share)``
(ratio-independent, as the original's fixed merge threshold), but at least ``ceil(N * (1 - ratio))`` and at
most ``num_layers * N * (1 - ratio) / K`` so the filter's count is never negative; the filter's count
``round((num_layers * target - K * n_pre) / (num_layers - K))`` then puts the layer-averaged visual count
within half a token of ``N * (1 - ratio)`` (the original's budgets are layer averages too).
Deviations (why): see ``docs/methods.md``. In short: fixed counts replace the thresholds (the engine plans
exact counts per stage), so tiles are merged in score order and the filter keeps the top of the thresholds'
common scaling; the merge acts on projected tokens, not after the encoder's first block; the kept token is
the tile centre, not its last token; one filter layer instead of four; the key set uses the feature layer's
[CLS] attention of the surviving token; decode-time KV dropping (output-aware cache policy) is left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .base import PruningMethod, Selection, Stage, top_k
from .context import PruneContext, instruction_positions
from .registry import register
from .schedule import check_layers, scaled_layers
from .vit_common import cosine_matrix, encoder_attention_notes, image_cells

ORIGINAL_FRACTION = 3 / 32  # the original filters after layer 2 of LLaVA-7B's 32: from layer 3 on


# Cosine similarities are compared at 4 decimals. Encoder noise between attention kernels reaches ~1e-6 on
# the tiny models (6 decimals flipped a Qwen2.5-VL tile), while real merge decisions differ far above 1e-4.
SIM_DECIMALS = 4


def _half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def merge_windows(grids: list[torch.Tensor], window: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tiles of ``window x window`` tokens over each image grid (edge tiles are smaller), as one table.

    Returns ``members`` ``[W, window**2]`` (each tile's tokens in row-major order, then the centre repeated as
    padding), ``sizes`` ``[W]`` and ``centres`` ``[W]``. The centre is the middle token, the upper-left of the
    middle four for an even side (as ``pool``).
    """
    members, centres = [], []
    for grid in grids:
        rows, cols = grid.shape
        r0, c0 = torch.arange(0, rows, window), torch.arange(0, cols, window)
        mid_r = (r0 + (r0 + window).clamp(max=rows) - 1) // 2
        mid_c = (c0 + (c0 + window).clamp(max=cols) - 1) // 2
        centres.append(grid[mid_r.unsqueeze(1), mid_c].reshape(-1))
        padded = grid.new_full((r0.numel() * window, c0.numel() * window), -1)
        padded[:rows, :cols] = grid
        tiles = padded.view(r0.numel(), window, c0.numel(), window).transpose(1, 2)
        members.append(tiles.reshape(-1, window * window))
    table, centre = torch.cat(members), torch.cat(centres)
    pad = table < 0
    # A stable sort on the padding flag moves each tile's tokens to the front, keeping their row-major order.
    table = table.gather(1, torch.sort(pad.to(torch.int8), dim=1, stable=True).indices)
    return torch.where(table < 0, centre.unsqueeze(1), table), window * window - pad.sum(dim=1), centre


def window_scores(tiles: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Mean cosine over the distinct token pairs of each tile; ``-inf`` for a single-token tile.

    ``tiles`` ``[W, S, S]``: the cosines among each tile's members (``merge_windows`` order). Tiles of one size are
    reduced together, each over its own contiguous ``[n, n]`` block: the same sums, in the same order, as one
    tile at a time.
    """
    out = torch.full((tiles.shape[0],), float("-inf"))
    groups: dict[int, list[int]] = {}
    for w, n in enumerate(sizes.tolist()):
        groups.setdefault(n, []).append(w)
    for n, idx in groups.items():
        if n > 1:
            sub = tiles[idx, :n, :n].contiguous()
            out[idx] = (sub.sum(dim=(1, 2)) - sub.diagonal(dim1=1, dim2=2).sum(dim=1)) / (n * (n - 1))
    return torch.round(out, decimals=SIM_DECIMALS)


def spatial_merge(
    x: torch.Tensor, grids: list[torch.Tensor], n_keep: int, window: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Kept token indices (sorted) and their merged features after removing ``N - n_keep`` tokens by merging.

    Tiles are taken in decreasing score (ties: tile order); a tile is merged whole into its centre while the
    budget allows, the last one partially (the tokens most similar to the centre, ties lowest index). If every
    tile is merged and tokens remain to remove (extreme ratios only), the most similar pair of remaining
    clusters (cosine of their mean features) is merged, repeatedly.
    """
    n = x.shape[0]
    members, sizes, centres = merge_windows(grids, window)
    # Only the pairs inside a tile are read, so only ``[W, S, S]`` reaches the host; they are gathered from the one
    # N x N product because smaller products (per tile) round differently (docs/footguns.md). Rounded so that
    # float noise (SDPA vs eager encoders) cannot reorder tiles of identical tokens (blank background); exact
    # ties then go to tile order / the lowest index. The product is queued before the table's copy to the device,
    # which waits for the queue: the copy back to the host would wait for the same work anyway.
    sim = cosine_matrix(x)
    index = members.to(x.device)
    tiles = torch.round(sim[index.unsqueeze(2), index.unsqueeze(1)].cpu(), decimals=SIM_DECIMALS)
    order = torch.argsort(window_scores(tiles, sizes), descending=True, stable=True)
    remove = n - n_keep
    # Whole tiles merge while their other tokens fit in the budget: a prefix of the score order.
    merged_upto = torch.cumsum(sizes[order] - 1, dim=0)
    n_whole = int(torch.searchsorted(merged_upto, remove, side="right"))
    whole = order[:n_whole]
    owner = torch.arange(n)
    owner[members[whole]] = centres[whole].unsqueeze(1).expand(-1, members.shape[1])  # padding: centre -> centre
    remove -= int(merged_upto[n_whole - 1]) if n_whole else 0
    if remove and n_whole < order.numel():  # the next tile merges partially: its tokens closest to the centre
        w = int(order[n_whole])
        size = int(sizes[w])
        real, centre = members[w, :size], centres[w]
        others = (real != centre).nonzero().squeeze(1)
        closest = torch.argsort(tiles[w, int((real == centre).int().argmax())][others], descending=True, stable=True)
        owner[real[others[closest[:remove]]]] = centre
        remove = 0
    sums = torch.zeros(n, x.shape[1], dtype=torch.float32).index_add_(0, owner, x.float().cpu())
    counts = torch.bincount(owner, minlength=n).unsqueeze(1).float()
    for _ in range(remove):  # fallback: every tile is one token already
        alive = (counts[:, 0] > 0).nonzero().squeeze(1)
        s = torch.round(cosine_matrix(sums[alive] / counts[alive]), decimals=SIM_DECIMALS).fill_diagonal_(float("-inf"))
        flat = int(torch.argmax(s))
        a, b = sorted((int(alive[flat // alive.numel()]), int(alive[flat % alive.numel()])))
        owner[owner == b] = a
        sums[a] += sums[b]
        counts[a] += counts[b]
        sums[b], counts[b] = 0.0, 0.0
    keep = (counts[:, 0] > 0).nonzero().squeeze(1)
    merged = (sums[keep] / counts[keep]).to(device=x.device, dtype=x.dtype)
    return keep.to(x.device), merged


def dual_attention_scores(attn: torch.Tensor, global_thr: float, individual_thr: float) -> torch.Tensor:
    """``attn``: ``[T, N]`` instruction -> visual attention (head mean). The original keeps token ``i`` when
    ``global_i >= global_thr * sum(global)`` or ``individual_i >= individual_thr``, i.e. when this score is >= 1."""
    attn = attn.float()
    glob = attn.sum(dim=0)
    indiv = attn.max(dim=0).values
    return torch.maximum(glob / (global_thr * glob.sum()).clamp_min(1e-30), indiv / individual_thr)


def filter_keep(dual: torch.Tensor, key_scores: torch.Tensor, n_keep: int, n_key: int) -> torch.Tensor:
    """The ``n_key`` highest ``key_scores`` first, then the highest ``dual`` scores, ``n_keep`` in all (sorted)."""
    ranking = dual.float().clone()
    ranking[top_k(key_scores, min(n_key, n_keep))] = float("inf")
    return top_k(ranking, n_keep)


@register
@dataclass
class MustDrop(PruningMethod):
    name = "mustdrop"
    category = "hybrid"
    stage_kind = "intra"
    merges: ClassVar[bool] = True
    needs_vision_attention: ClassVar[bool] = True
    layer: int | None = None
    merge_share: float = 0.25
    window: int = 3
    key_share: float = 0.08
    global_thr: float = 0.001
    individual_thr: float = 0.001

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.merge_share < 1.0 or not 0.0 <= self.key_share <= 1.0:
            raise ValueError("mustdrop: merge_share must be in [0, 1) and key_share in [0, 1]")
        if self.window < 2:
            raise ValueError(f"mustdrop: window must be >= 2, got {self.window}")
        if self.global_thr <= 0 or self.individual_thr <= 0:
            raise ValueError("mustdrop: global_thr and individual_thr must be > 0")

    def stage_layer(self, num_layers: int) -> int:
        if self.layer is None:
            return scaled_layers(num_layers, (ORIGINAL_FRACTION,))[0]
        return check_layers([self.layer], num_layers, self.name)[0]

    def plan(self, n_visual: int, ratio: float, num_layers: int) -> list[Stage]:
        k = self.stage_layer(num_layers)
        target = n_visual * (1.0 - ratio)
        n_pre = max(_half_up(n_visual * (1.0 - self.merge_share)), math.ceil(target - 1e-9))
        n_pre = min(n_pre, n_visual, int(math.floor(num_layers * target / k + 1e-9)))
        n_intra = _half_up((num_layers * target - k * n_pre) / (num_layers - k))
        return [Stage("pre", None, n_pre), Stage("intra", k, min(max(n_intra, 0), n_pre))]

    def select(self, ctx: PruneContext) -> Selection:
        if ctx.stage.kind == "pre":
            keep, merged = spatial_merge(ctx.visual, image_cells(ctx), ctx.n_keep, self.window)
            return Selection(keep, merged)
        if ctx.n_keep >= ctx.n_visual:
            return Selection(torch.arange(ctx.n_visual, device=ctx.visual.device))
        prev = ctx.layer_inputs[ctx.stage.layer - 1]
        (instruction,) = instruction_positions(prev)  # image last in the prompt: the last token stands in
        attn = ctx.attention(instruction, layer=ctx.stage.layer - 1).mean(dim=0)[:, prev.visual_positions]
        dual = dual_attention_scores(attn, self.global_thr, self.individual_thr)
        n_key = math.ceil(self.key_share * ctx.n_visual - 1e-9)
        key_scores = ctx.encoder_scores() if n_key else dual
        return Selection(filter_keep(dual, key_scores, ctx.n_keep, n_key))

    def notes_for(self, family: str) -> dict[str, Any]:
        return encoder_attention_notes(family)
