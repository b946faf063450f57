"""Attention rows recomputed from a decoder layer's own projections.

SDPA and FlashAttention return no attention weights, and switching the whole model to eager attention
to get them slows every layer. Scoring methods need only a few rows (the last token, the text tokens),
so we recompute exactly those rows from the layer's input: ``softmax(q_rows . k^T * scale + mask)``.
This reproduces the eager attention of those rows (tested against ``output_attentions`` in eager mode).
"""

from __future__ import annotations

import torch


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: [H, L, d]; cos/sin: [L, d] (all three families hand layers cos/sin of shape [B, L, head_dim];
    # Qwen2.5-VL's M-RoPE sections are already recomposed into that layout by its rotary module).
    return x * cos.unsqueeze(0) + _rotate_half(x) * sin.unsqueeze(0)


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
    x = layer.input_layernorm(hidden)[0]
    cos, sin = position_embeddings[0][0], position_embeddings[1][0]
    idx = torch.arange(x.shape[0], device=x.device) if rows is None else rows
    head_dim = attn.head_dim
    q = attn.q_proj(x[idx]).view(len(idx), -1, head_dim).transpose(0, 1)
    k = attn.k_proj(x).view(x.shape[0], -1, head_dim).transpose(0, 1)
    q, k = _rope(q, cos[idx], sin[idx]), _rope(k, cos, sin)
    return q, k.repeat_interleave(attn.num_key_value_groups, dim=0)


def attention_rows(
    layer: torch.nn.Module,
    hidden: torch.Tensor,
    position_embeddings: tuple[torch.Tensor, torch.Tensor],
    rows: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention probabilities ``[H, R, L]`` of the given query ``rows`` (causal, plus any padding mask)."""
    q, k = query_key(layer, hidden, position_embeddings, rows)
    scores = torch.matmul(q, k.transpose(1, 2)).float() * layer.self_attn.scaling
    n = k.shape[1]
    causal = torch.arange(n, device=rows.device).unsqueeze(0) <= rows.unsqueeze(1)  # [R, L]
    if attention_mask is not None and attention_mask.dim() == 4:
        extra = attention_mask[0, 0][rows]
        causal = causal & (extra if extra.dtype == torch.bool else extra == 0)
    scores = scores.masked_fill(~causal.unsqueeze(0), float("-inf"))
    return torch.softmax(scores, dim=-1)
