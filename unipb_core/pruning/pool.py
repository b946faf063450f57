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
import torch.nn.functional as F

from ..models.resized import shares
from .base import PruningMethod, Selection
from .context import PruneContext
from .registry import register
from .vit_common import check_every_token


def pooled_shape(rows: int, cols: int, k: int) -> tuple[int, int] | None:
    """``(h, w)``: ``h * w == k`` inside the grid, aspect closest to ``rows / cols`` (ties: smaller ``h``)."""
    target = math.log(rows / cols)
    fits = [(h, k // h) for h in range(1, k + 1) if k % h == 0 and h <= rows and k // h <= cols]
    if not fits:
        return None
    return min(fits, key=lambda hw: (abs(math.log(hw[0] / hw[1]) - target), hw[0]))


def _centres(size: int, parts: int, device: torch.device) -> torch.Tensor:
    """Centre of each adaptive-pooling cell along one axis: edges ``floor(i S / p)`` .. ``ceil((i + 1) S / p)``.

    Built on the device (a list copied there would be a blocking copy on a GPU). For ``parts <= size`` both
    edges rise strictly with ``i``, so the centres do too.
    """
    i = torch.arange(parts, device=device)
    return ((i * size) // parts - ((-(i + 1) * size) // parts) - 1) // 2


def pool_image(tokens: torch.Tensor, rows: int, cols: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One image's ``k`` cells: kept token of each (index inside the image, ascending) and cell means ``[k, D]``.

    The cell edges are adaptive average pooling's, so one ``adaptive_avg_pool`` call gives every mean.
    """
    if k == 0:
        return torch.empty(0, dtype=torch.long, device=tokens.device), tokens[:0]
    planes = tokens.T.unsqueeze(0)  # [1, D, rows * cols], a view
    shape = pooled_shape(rows, cols, k)
    if shape is None:  # no exact grid fits: contiguous runs of the raster order
        return _centres(rows * cols, k, tokens.device), F.adaptive_avg_pool1d(planes, k)[0].T
    h, w = shape
    keep = _centres(rows, h, tokens.device).unsqueeze(1) * cols + _centres(cols, w, tokens.device)
    means = F.adaptive_avg_pool2d(planes.reshape(1, -1, rows, cols), shape)  # [1, D, h, w]
    return keep.reshape(-1), means.reshape(-1, k).T  # raster order of the cells = ascending kept index


def pooled_selection(ctx: PruneContext) -> tuple[torch.Tensor, torch.Tensor]:
    """Kept indices (sorted) and their cell means (float32), over all images of the sample."""
    check_every_token(ctx)
    sizes = [rows * cols for rows, cols in ctx.grids]
    visual = ctx.visual.float()
    keep, means, start = [], [], 0
    for (rows, cols), k in zip(ctx.grids, shares(sizes, ctx.n_keep), strict=True):
        centres, cell_means = pool_image(visual[start : start + rows * cols], rows, cols, k)
        keep.append(centres + start)  # images in order, each ascending: sorted
        means.append(cell_means)
        start += rows * cols
    return torch.cat(keep), torch.cat(means)


@register
@dataclass
class Pool(PruningMethod):
    name = "pool"
    category = "vit"
    stage_kind = "pre"
    merges: ClassVar[bool] = True

    def select(self, ctx: PruneContext) -> Selection:
        keep, merged = pooled_selection(ctx)
        return Selection(keep, merged.to(ctx.visual.dtype))
