"""Vision-encoder attention for pre-LLM pruning methods, recomputed without eager attention.

[CLS]-attention methods (PruMerge, VisPruner, VisionZip) read the encoder's attention at the feature
layer. Switching the tower to eager attention to get it would slow every layer, so the adapter hooks
the one encoder layer it needs (a forward pre-hook keeps a reference to that layer's input; Qwen2.5-VL's
adapter also keeps its qkv projection's output) and, only when a method asks, recomputes the needed rows
from the layer's own norm and q/k projections.

Why not inside the layer's own attention (Qwen2.5-VL, transformers 5.x: ``Qwen2_5_VLVisionAttention`` calls
``ALL_ATTENTION_FUNCTIONS`` keyed by the tower config's ``_attn_implementation``, shared by every block): the
SDPA / flash kernels return no probabilities, so exact column sums need every logit again whichever module
computes them; a custom attention function for one block would need its own config object, would run in the
vision timer rather than the method's, and would see packed ``cu_seqlens`` (flash) or per-image splits (SDPA
/ eager); replacing the block's kernel by an explicit softmax that also sums columns would save that second
pass but change the block's output bits, hence the visual tokens every method sees.

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


def capture_output(store: dict, key: str):
    """Forward hook that keeps a reference to a module's output (what the stock forward computed anyway)."""

    def hook(module, args, output):
        store[key] = output

    return hook


def cls_row_attention(q_cls: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """Softmax attention of the [CLS] query over every token, averaged over heads.

    ``q_cls``: ``[B, H, d]``; ``k``: ``[B, H, L, d]`` -> ``[B, L]`` (float32).
    """
    logits = torch.einsum("bhd,bhld->bhl", q_cls.float(), k.float()) * scale
    return torch.softmax(logits, dim=-1).mean(dim=1)


def mean_received_attention(q: torch.Tensor, k: torch.Tensor, scale: float, cu_seqlens: torch.Tensor) -> torch.Tensor:
    """Mean attention each token receives from all tokens of its own segment, averaged over heads.

    ``q``, ``k``: ``[H, S, d]``; segments are ``cu_seqlens`` boundaries (one image each) -> ``[S]`` (float32).
    The column sums need every logit, so the ``S x S`` work is inherent; it is done in blocks of query rows
    (all heads at once), so no ``H x S x S`` (nor even one ``S x S``) tensor exists: a block holds
    ``query_block_elements`` logits, or one row of every head if that is more. One host sync: the segment bounds.
    """
    heads, seq, _ = q.shape
    budget = query_block_elements(q.device)
    out = torch.empty(seq, dtype=torch.float32, device=q.device)
    bounds = cu_seqlens.tolist()
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        n = end - start
        keys_t = k[:, start:end].float().transpose(1, 2)  # [H, d, n]
        received = torch.zeros(heads, n, dtype=torch.float32, device=q.device)
        rows = max(1, budget // (heads * n))
        for first in range(start, end, rows):
            logits = torch.matmul(q[:, first : min(first + rows, end)].float(), keys_t).mul_(scale)
            received += torch.softmax(logits, dim=-1).sum(dim=1)
        out[start:end] = received.sum(dim=0) / (heads * n)
    return out


def query_block_elements(device: torch.device) -> int:
    """Logits per block of ``mean_received_attention``.

    A CPU is fastest when the block stays in its L2 cache (2^18 floats, 1 MiB: 2-3x faster than whole heads at
    S = 4096); a GPU wants few, large kernels (2^24 floats, 64 MiB: 16 blocks at 16 heads x 4096 patches).
    """
    return 1 << 18 if device.type == "cpu" else 1 << 24
