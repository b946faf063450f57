"""Vision-encoder attention for pre-LLM pruning methods, recomputed without eager attention.

[CLS]-attention methods (PruMerge, VisPruner, VisionZip) read the encoder's attention at the feature
layer. Switching the tower to eager attention to get it would slow every layer, so the adapter hooks
the one encoder layer it needs (a forward pre-hook keeps a reference to that layer's input) and, only
when a method asks, recomputes the needed rows from the layer's own norm and q/k projections.

Each family reports three things over its *encoder sequence* (patches of every image, flattened, the
[CLS] column dropped): a score per patch, a key per patch, and ``groups`` — for each visual token the
encoder positions it is built from (one patch for LLaVA, the 2x2 pixel-shuffle or merger group for
InternVL and Qwen2.5-VL). ``VisionAttention`` aggregates them per visual token, in the original
visual-token order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class VisionAttention:
    """Encoder attention of one prefill, per visual token (original visual-token order).

    Attributes
    ----------
    patch_scores : Tensor ``[S]``
        Per encoder patch: [CLS] -> patch attention averaged over heads (or, without [CLS], the mean
        attention the patch receives).
    patch_keys : Tensor ``[S, D]``
        Per encoder patch: the feature layer's keys, heads concatenated.
    groups : LongTensor ``[N, g]``
        Encoder patches that make up each visual token.
    """

    patch_scores: torch.Tensor
    patch_keys: torch.Tensor
    groups: torch.Tensor

    @property
    def scores(self) -> torch.Tensor:
        """``[N]``: the summed score of each visual token's patches (the attention mass it carries)."""
        return self.patch_scores[self.groups].sum(dim=1)

    @property
    def keys(self) -> torch.Tensor:
        """``[N, D]``: the mean key of each visual token's patches."""
        return self.patch_keys[self.groups].mean(dim=1)


def capture_input(store: dict, key: str):
    """Forward pre-hook that keeps references (not copies) to a module's positional and keyword inputs."""

    def hook(module, args, kwargs):
        store[key] = (module, args, kwargs)
        store.pop("_computed", None)  # a new forward invalidates what an earlier prefill computed

    return hook


def cls_row_attention(q_cls: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """Softmax attention of the [CLS] query over every token, averaged over heads.

    ``q_cls``: ``[B, H, d]``; ``k``: ``[B, H, L, d]`` -> ``[B, L]`` (float32).
    """
    logits = torch.einsum("bhd,bhld->bhl", q_cls.float(), k.float()) * scale
    return torch.softmax(logits, dim=-1).mean(dim=1)


def mean_received_attention(q: torch.Tensor, k: torch.Tensor, scale: float, cu_seqlens: torch.Tensor) -> torch.Tensor:
    """Mean attention each token receives from all tokens of its own segment, averaged over heads.

    ``q``, ``k``: ``[H, S, d]``; segments are ``cu_seqlens`` boundaries (one image each) -> ``[S]``.
    Computed head by head so the ``S x S`` matrix of one head is the largest temporary.
    """
    out = torch.empty(q.shape[1], dtype=torch.float32, device=q.device)
    bounds = cu_seqlens.tolist()
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        total = torch.zeros(end - start, dtype=torch.float32, device=q.device)
        for h in range(q.shape[0]):
            logits = (q[h, start:end].float() @ k[h, start:end].float().T) * scale
            total += torch.softmax(logits, dim=-1).mean(dim=0)
        out[start:end] = total / q.shape[0]
    return out
