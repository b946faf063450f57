"""Small helpers shared by the vision-side (pre-LLM) methods: cosine matrices, encoder-attention notes, grids."""

from __future__ import annotations

from typing import Any

import torch

from .context import PruneContext


def cosine_matrix(x: torch.Tensor) -> torch.Tensor:
    """``[N, N]`` cosine similarity of the rows of ``x`` (float32; zero rows give zero similarity)."""
    xn = torch.nn.functional.normalize(x.float(), dim=-1)
    return xn @ xn.T


def encoder_attention_notes(family: str) -> dict[str, Any]:
    """How a family's vision-encoder attention is read (recorded in the run config by methods that use it)."""
    from ..models.loading import FAMILIES

    if family not in FAMILIES:
        return {}
    return {"encoder_attention": FAMILIES[family].adapter_class.vision_attention_note}


def check_every_token(ctx: PruneContext) -> None:
    """Fail unless the stage sees every visual token of the sample, in the original order (grid methods).

    Kept indices are sorted and unique at every stage, so a stage holding as many tokens as the grids cover
    holds all of them in order; comparing ``visual_origin`` itself would read the device.
    """
    total = sum(r * c for r, c in ctx.grids)
    if total != ctx.n_visual:
        raise ValueError(
            f"grid methods need every visual token of the sample: grids {ctx.grids} cover {total} tokens, "
            f"the stage has {ctx.n_visual}"
        )


def image_cells(ctx: PruneContext) -> list[torch.Tensor]:
    """Original visual-token indices of each image (``ctx.grids``, original order), as ``[rows, cols]`` tensors.

    Pre-LLM stages see every visual token, so position ``i`` of ``ctx.visual`` is original token ``i``.
    """
    check_every_token(ctx)
    out, start = [], 0
    for rows, cols in ctx.grids:
        out.append(torch.arange(start, start + rows * cols).view(rows, cols))
        start += rows * cols
    return out
