"""Downsample: the same image, resized so that the vision encoder itself emits the kept number of tokens.

Reference: a baseline beyond the study, argued for by VTC-Bench (Liao et al., "Are We Using the Right
Benchmark: An Evaluation Framework for Visual Token Compression Methods", arXiv 2510.07143): plain image
downsampling is a strong reference point that many pruning methods fail to beat.
Rule: each image (InternVL: tile) is resized before the one vision pass, so that the model's own vision tower
and projector yield its share of ``n_keep`` tokens (``FamilyAdapter.encode_downsampled``, called by the engine
in place of the stock ``get_image_features``); these tokens are the kept ones and sit at the ``n_keep``
original tokens nearest to the centres of the image areas they cover (squared distance on the token grid;
coarse tokens in raster order each take the nearest free original token, ties to the lowest index), so their
positions keep their meaning.
Parameters: none. Stage: pre-LLM (merges: the kept tokens' features are the resized images' ones; the stock
forward hands them over as the sample's first ``n_keep`` visual tokens, and ``select`` moves them to their
places).

Per family (the adapter's ``_coarse_grid`` / ``_encode_resized``):
- LLaVA: any token grid; CLIP's learned position embeddings are interpolated (``interpolate_pos_encoding``).
- InternVL: square token grids only (the stock ``get_image_features`` reshapes a square patch grid before
  the pixel shuffle): side ``ceil(sqrt(k))``, patch grid twice that (even, so the shuffle is exact).
- Qwen2.5-VL: the processor's patchify is undone, the image resized and patchified again; ``grid_thw``
  changes with it (dynamic resolution; the processor's ``min_pixels`` does not apply).
When the feasible grid holds more than ``k`` tokens (``k`` not a product of the grid's sides, e.g. 32 or 48
on a square), the extra tokens are averaged away in runs of raster-adjacent tokens, giving exactly ``k``.
Timing: ``vision`` is the pass over the resized images only (one per distinct grid; Qwen2.5-VL: one), ``method``
the placement (``nearest_tokens``) and the gather; the resize before the pass and the run averaging after it
count in ``prefill`` only.
Deviations: the resize is applied to the processed pixels (bicubic, antialiased) rather than to the decoded
image before the processor (the prompt keeps the full-size placeholders, which the pre-LLM stage shrinks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..models.resized import Downsampled
from .base import PruningMethod, Selection
from .context import PruneContext
from .registry import register


def nearest_tokens(ds: Downsampled) -> torch.Tensor:
    """For each token of the resized images, the nearest free original visual token (an index into the
    visual-token list): tokens in raster order each take the nearest cell not yet taken, ties to the lowest index.

    When no two tokens of a unit share their nearest cell (the rule at the study's ratios), each takes it, found
    among the 2 x 2 cells around it (``_nearest_cells``); otherwise the greedy runs over every cell in full.
    """
    offsets = [0]
    for rows, cols in ds.unit_grids:
        offsets.append(offsets[-1] + rows * cols)
    anchors = torch.empty(ds.units.numel(), dtype=torch.long)  # host tensors: the geometry lives on the CPU
    for unit, (rows, cols) in enumerate(ds.unit_grids):
        members = (ds.units == unit).nonzero().squeeze(1)
        if members.numel() == 0:
            continue
        centres = ds.centres[members].float()
        nearest = _nearest_cells(centres, rows, cols)
        if torch.unique(nearest).numel() < nearest.numel():
            nearest = _free_nearest_cells(centres, rows, cols)
        anchors[members] = offsets[unit] + nearest
    return anchors


def _squared_distances(centres: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """``[n, m]`` squared distances from ``centres [n, 2]`` to ``cells`` (``[m, 2]`` or ``[n, m, 2]``), exact on
    half-integer centres; both nearest-cell searches use this one expression, so they see the same ties."""
    return (centres.unsqueeze(1) - cells.float()).pow(2).sum(-1)


def _nearest_cells(centres: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Each centre's nearest cell of a ``rows x cols`` grid (raster index, ties to the lowest). Only the 2 x 2 cells
    around a centre can be nearest: any other is at least 1 away (squared), one of them at most 0.5."""
    low = centres.floor().long()
    r = torch.stack([low[:, 0], low[:, 0] + 1], 1).clamp(0, rows - 1)
    c = torch.stack([low[:, 1], low[:, 1] + 1], 1).clamp(0, cols - 1)
    cells = torch.stack([r.repeat_interleave(2, 1), c.repeat(1, 2)], -1)  # [n, 4, 2], raster order
    best = _squared_distances(centres, cells).argmin(dim=1, keepdim=True)  # argmin: the first of equal minima
    return (cells[..., 0] * cols + cells[..., 1]).gather(1, best).squeeze(1)


def _free_nearest_cells(centres: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """The greedy in full: centres in order each take the nearest cell not yet taken (ties to the lowest index)."""
    ii, jj = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    orders = torch.argsort(_squared_distances(centres, torch.stack([ii, jj], -1).reshape(-1, 2)), dim=1, stable=True)
    heads = orders[:, :9].tolist()  # collisions are rare: only look further when the nine nearest are taken
    taken: set[int] = set()
    out = []
    for i, head in enumerate(heads):
        cell = next((c for c in head if c not in taken), None)
        if cell is None:
            cell = next(c for c in orders[i].tolist() if c not in taken)
        taken.add(cell)
        out.append(cell)
    return torch.tensor(out, dtype=torch.long)


@register
@dataclass
class Downsample(PruningMethod):
    name = "downsample"
    category = "baseline"
    stage_kind = "pre"
    merges: ClassVar[bool] = True
    needs_vision_input: ClassVar[bool] = True

    def select(self, ctx: PruneContext) -> Selection:
        # Inputs a family cannot resize are refused (PruningError) when the engine encodes them, before this runs.
        ds = ctx.vision["downsampled"]()
        # A host-to-device copy that does not wait for the queued work (CUDA stages pageable memory at once).
        keep, order = torch.sort(nearest_tokens(ds).to(ctx.visual.device, non_blocking=True))
        return Selection(keep, ctx.visual[: keep.numel()][order])
