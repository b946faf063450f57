"""Attention rows recomputed from a decoder layer's own projections.

SDPA and FlashAttention return no attention weights, and switching the whole model to eager attention
to get them slows every layer. Scoring methods need only a few rows (the last token, the text tokens),
so we recompute exactly those rows from the layer's input: ``softmax(q_rows . k^T * scale + mask)``.
This reproduces the eager attention of those rows (tested against ``output_attentions`` in eager mode).
Methods that need only keys (DART's key norms) get them without the query projection (``keys``).
"""

from __future__ import annotations

import torch


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``x * cos + rotate_half(x) * sin``, the stock RoPE, written half by half.

    x: [H, L, d]; cos/sin: [L, d] (all three families hand layers cos/sin of shape [B, L, head_dim];
    Qwen2.5-VL's M-RoPE sections are already recomposed into that layout by its rotary module). The float
    operations are the stock ones (``a + (-b) * s`` equals ``a - b * s`` exactly), without the two
    concatenated copies ``rotate_half`` allocates: bit-identical, and several times faster on large inputs.
    """
    half = x.shape[-1] // 2
    out = x * cos.unsqueeze(0)
    out[..., :half] -= x[..., half:] * sin[:, :half]
    out[..., half:] += x[..., :half] * sin[:, half:]
    return out


def _normed(layer: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    return layer.input_layernorm(hidden)[0]


def _keys(layer: torch.nn.Module, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    attn = layer.self_attn
    k = _rope(attn.k_proj(x).view(x.shape[0], -1, attn.head_dim).transpose(0, 1), cos, sin)
    groups = attn.num_key_value_groups
    return k if groups == 1 else k.repeat_interleave(groups, dim=0)


def keys(
    layer: torch.nn.Module, hidden: torch.Tensor, position_embeddings: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """Post-RoPE keys ``[H, L, d]`` of every token at the layer's input, repeated to every query head."""
    return _keys(layer, _normed(layer, hidden), position_embeddings[0][0], position_embeddings[1][0])


def query_key(
    layer: torch.nn.Module,
    hidden: torch.Tensor,
    position_embeddings: tuple[torch.Tensor, torch.Tensor],
    rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Post-RoPE queries (of ``rows``, default all) and keys (all, repeated to every query head).

    Parameters
    ----------
    layer
        A decoder layer with ``input_layernorm`` and ``self_attn.{q,k}_proj`` (Llama / Qwen2 / Qwen2.5-VL).
    hidden
        The layer's input hidden states, ``[1, L, D]``.

    Returns
    -------
    q : ``[H, R, d]``, k : ``[H, L, d]``
    """
    attn = layer.self_attn
    x = _normed(layer, hidden)
    cos, sin = position_embeddings[0][0], position_embeddings[1][0]
    xq, cq, sq = (x, cos, sin) if rows is None else (x[rows], cos[rows], sin[rows])
    q = _rope(attn.q_proj(xq).view(xq.shape[0], -1, attn.head_dim).transpose(0, 1), cq, sq)
    return q, _keys(layer, x, cos, sin)


def attention_rows(
    layer: torch.nn.Module,
    hidden: torch.Tensor,
    position_embeddings: tuple[torch.Tensor, torch.Tensor],
    rows: torch.Tensor | None,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention probabilities ``[H, R, L]`` of the query ``rows`` (``None``: all ``L``; causal, plus any padding
    mask).

    The score matrix can be ``heads x L x L``, so it is scaled and masked in place, the mask as an added
    ``0 / -inf`` row block: several times faster than a broadcast ``masked_fill``, and the same probabilities
    (``s + 0`` is ``s``, up to the sign of a zero, which ``exp`` does not see).
    """
    q, k = query_key(layer, hidden, position_embeddings, rows)
    scores = torch.matmul(q, k.transpose(1, 2)).float()
    scores.mul_(layer.self_attn.scaling)
    n = k.shape[1]
    cols = torch.arange(n, device=k.device)
    ids = cols if rows is None else rows
    allowed = cols.unsqueeze(0) <= ids.unsqueeze(1)  # [R, L] causal
    if attention_mask is not None and attention_mask.dim() == 4:
        extra = attention_mask[0, 0] if rows is None else attention_mask[0, 0][rows]
        allowed = allowed & (extra if extra.dtype == torch.bool else extra == 0)
    scores.add_(torch.zeros(allowed.shape, device=k.device).masked_fill_(~allowed, float("-inf")))
    return torch.softmax(scores, dim=-1)
