"""PruMerge+: PruMerge's [CLS]-attention outliers plus spatially sampled tokens, merged as in PruMerge.

Reference: Shang et al., "LLaVA-PruMerge: Adaptive Token Reduction for Efficient Large Multimodal
Models" (arXiv 2403.15388), the "+" variant; released code: 42Shawn/LLaVA-PruMerge
``llava/model/multimodal_encoder/clip_encoder.py`` (``token_prune_merge_advanced_plus``, ``if_adaptive=True``, the
path its ``forward`` calls). The released rule: outliers ``O`` by IQR on [CLS] attention (``a > Q3 + 1.5 IQR``),
in descending attention; then the raster positions ``range(0, N - 1, s)`` not in ``O``, with the stride
``s = int(int(1 / rr) / 3)`` and ``rr = |O| / N`` (``torch.arange(0, 575, int(step_length / 3))`` for 576 tokens);
every kept token merged with its 32 most key-similar tokens and one extra token (the attention-weighted sum of
the pruned tokens) appended, exactly as ``prumerge``.

Fixed budget (default, ``budget="fixed"``): ``n_keep`` tokens in all, the extra token inside the budget (it
takes the last pruned slot, see ``prumerge``), so ``B = n_keep - 1`` tokens are selected: if ``|O| >= B`` the
top ``B`` outliers; otherwise ``O`` plus the released samples at the released stride when they fit, else at
the smallest wider stride whose samples fit; slots still free go to the highest-attention remaining tokens
(PruMerge's own rule). When the released set has exactly ``B`` tokens it is kept unchanged.
``budget="adaptive"``: the released set and count (the engine's fixed per-stage count rejects it; it serves
direct ``select`` calls). Where the released code fails (no outlier: division by zero; ``rr > 1/3``: stride 0),
the stride is computed as if there were one outlier, and clamped to at least 1.
Parameters: ``k`` (32), ``budget`` ("fixed"). Stage: pre-LLM; merges on the projected tokens. Input deviations
and per-family notes: see ``prumerge``. No study variant (the study's code has no PruMerge+).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import top_k
from .prumerge import PruMerge, iqr_outliers
from .registry import register


def released_stride(n_outliers: int, n: int) -> int:
    """The released ``int(int(1 / rr) / 3)`` with ``rr = |O| / N`` (one outlier assumed if none; at least 1)."""
    rr = max(n_outliers, 1) / n
    return max(1, int(int(1 / rr) / 3))


def spatial_samples(outlier: torch.Tensor, stride: int) -> torch.Tensor:
    """Raster positions ``range(0, N - 1, stride)`` that are not outliers (ascending)."""
    n = outlier.numel()
    seq = torch.arange(0, n - 1, stride, device=outlier.device)
    return seq[~outlier[seq]]


def outliers_plus_samples(attention: torch.Tensor, budget: int | None) -> torch.Tensor:
    """Selected tokens (any order): the released set when ``budget`` is None, else exactly ``budget`` tokens."""
    outlier = iqr_outliers(attention)
    n_out, n = int(outlier.sum()), attention.numel()
    ranked = top_k(attention, n_out)  # the outliers are the top |O| by attention
    if budget is not None and n_out >= budget:
        return top_k(attention, budget)
    stride = released_stride(n_out, n)
    samples = spatial_samples(outlier, stride)
    if budget is None:
        return torch.cat([ranked, samples])
    while n_out + samples.numel() > budget:  # terminates: stride n - 1 samples only position 0
        stride += 1
        samples = spatial_samples(outlier, stride)
    chosen = torch.cat([ranked, samples])
    if chosen.numel() < budget:
        rest = torch.ones(n, dtype=torch.bool, device=attention.device)
        rest[chosen] = False
        masked = torch.where(rest, attention.float(), torch.full_like(attention.float(), -float("inf")))
        chosen = torch.cat([chosen, top_k(masked, budget - chosen.numel())])
    return chosen


@register
@dataclass
class PruMergePlus(PruMerge):
    name = "prumerge_plus"

    def kept_tokens(self, attention: torch.Tensor, n_kept: int | None) -> torch.Tensor:
        return outliers_plus_samples(attention, n_kept)
