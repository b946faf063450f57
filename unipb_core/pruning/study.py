"""What the study's own code (UniPruneBench, github TianfanPeng/VLMUniPruneBench) does differently, shared by the
``variant="study"`` rules of the methods.

The study's ``layer_prune._merge_context`` rebuilds the sequence as ``[system, visual[keep_idx], instruction]``
with ``keep_idx`` exactly as the method returned it: FastV's and PDrop's ``topk`` indices (descending score) and
FitPrune's ascending ``sort`` indices are not sorted back, so the kept tokens enter layer K in that order (the
causal mask is then sliced, i.e. causal in the new order; positions: InternVL renumbers ``arange``, Qwen keeps
each token's M-RoPE ids). ``EntryOrder`` carries that order to the engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Selection


@dataclass
class EntryOrder(Selection):
    """A selection whose kept tokens enter the next layer in the order ``entry`` (indices into ``ctx.visual``),
    not in sequence order. ``keep`` is ``sorted(entry)``, as for every selection; no merged features."""

    entry: torch.Tensor | None = None

    @classmethod
    def of(cls, entry: torch.Tensor) -> EntryOrder:
        return cls(keep=torch.sort(entry).values, entry=entry)


def study_count(n_visual: int, ratio: float) -> int:
    """``int(N * KEEP_RATIO)``, the study's count (``keep_num = int(image_len * keep_radio)``).

    The study sets the keep ratio directly (env ``KEEP_RATIO`` = 0.333 / 0.222 / 0.111); ``1 - ratio`` is rounded
    to 12 decimals first so it is that same float: ``int(1000 * (1 - 0.667))`` is 332 (0.33299999999999996),
    the study's ``int(1000 * 0.333)`` is 333; a plain ``int(N * (1 - ratio))`` is one short at N = 500, 1000, ...
    """
    return int(n_visual * round(1.0 - ratio, 12))
