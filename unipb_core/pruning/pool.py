"""Pool: spatial average pooling of each image's patch grid down to the kept count.

Reference: a standard baseline beyond the study (average pooling of visual tokens, e.g. the "pooling"
baselines of LLaVA-NeXT / LLaVA-PruMerge ablations). Rule: each image's ``rows x cols`` grid (original
token order) is cut into an ``h x w`` grid of cells with ``h * w`` equal to the image's share of ``n_keep``,
choosing the exact factorisation (``1 x k`` allowed) whose aspect ratio is closest to the grid's and that
fits inside it; cell edges follow adaptive average pooling (``floor(i R / h)`` .. ``ceil((i + 1) R / h)``).
Each cell keeps the token at its centre (the upper-left of the four middle tokens when the cell has an
even side) and replaces its features by the cell's mean.
When no factorisation fits the grid (a prime budget larger than both sides), the image's tokens are
pooled as ``k`` contiguous runs of its raster order instead. Parameters: none. Stage: pre-LLM; merges.
Per family: the grid is the visual-token grid (after InternVL's pixel shuffle / Qwen2.5-VL's 2x2 merger).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import PruningMethod, Selection
from .context import PruneContext
from .registry import register
from .vit_common import image_cells, split_budget


def pooled_shape(rows: int, cols: int, k: int) -> tuple[int, int] | None:
    """``(h, w)``: ``h * w == k`` inside the grid, aspect closest to ``rows / cols`` (ties: smaller ``h``)."""
    target = math.log(rows / cols)
    fits = [(h, k // h) for h in range(1, k + 1) if k % h == 0 and h <= rows and k // h <= cols]
    if not fits:
        return None
    return min(fits, key=lambda hw: (abs(math.log(hw[0] / hw[1]) - target), hw[0]))


def _edges(size: int, parts: int) -> list[tuple[int, int]]:
    return [((i * size) // parts, -((-(i + 1) * size) // parts)) for i in range(parts)]


def pool_cells(grid: torch.Tensor, k: int) -> list[tuple[int, torch.Tensor]]:
    """For one image's ``[rows, cols]`` token-index grid: ``k`` pairs (kept token, member tokens)."""
    if k == 0:
        return []
    rows, cols = grid.shape
    shape = pooled_shape(rows, cols, k)
    if shape is None:  # no exact grid fits: contiguous runs of the raster order
        flat = grid.reshape(-1)
        return [(int(flat[(s + e - 1) // 2]), flat[s:e]) for s, e in _edges(flat.numel(), k)]
    cells = []
    for r0, r1 in _edges(rows, shape[0]):
        for c0, c1 in _edges(cols, shape[1]):
            centre = int(grid[(r0 + r1 - 1) // 2, (c0 + c1 - 1) // 2])
            cells.append((centre, grid[r0:r1, c0:c1].reshape(-1)))
    return cells


def pooled_selection(ctx: PruneContext) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Kept indices (sorted) and each one's cell members, over all images of the sample."""
    grids = image_cells(ctx)
    budgets = split_budget([g.numel() for g in grids], ctx.n_keep)
    cells = [cell for grid, k in zip(grids, budgets, strict=True) for cell in pool_cells(grid, k)]
    cells.sort(key=lambda c: c[0])
    keep = torch.tensor([c[0] for c in cells], dtype=torch.long)
    return keep, [c[1] for c in cells]


@register
@dataclass
class Pool(PruningMethod):
    name = "pool"
    category = "vit"
    stage_kind = "pre"
    merges: ClassVar[bool] = True

    def select(self, ctx: PruneContext) -> Selection:
        keep, members = pooled_selection(ctx)
        device = ctx.visual.device
        if not members:
            return Selection(keep.to(device), ctx.visual[:0])
        merged = torch.stack([ctx.visual[m.to(device)].float().mean(dim=0) for m in members])
        return Selection(keep.to(device), merged.to(ctx.visual.dtype))
