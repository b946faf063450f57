"""One analytic FLOPs model for a decoder-only language model, driven by the kept-token counts.

Pruning saves compute only through the number of tokens each decoder layer processes, so the model takes one
token count per layer: pre-LLM pruning shortens every layer, intra-LLM pruning at layer K shortens layers K
onward. Counts are per sample (batch size 1). A multiply-add is 2 FLOPs.

Per decoder layer with ``n`` tokens (``h`` hidden, ``H`` / ``Hkv`` query / key-value heads of size ``d``,
``I`` intermediate)::

    projections  2·n·h·(H·d)  +  2·2·n·h·(Hkv·d)  +  2·n·(H·d)·h      q, k, v, o
    attention    2·H·n·n·d  +  2·H·n·n·d                              q·kᵀ scores, scores·v
    MLP          3 · 2·n·h·I                                          gate, up, down (SwiGLU)

plus the lm_head, ``2·h·V``, for the last position only (generation needs logits of the last token).

Causal attention is counted over the full ``n x n`` score matrix, as dense kernels (eager, SDPA math) compute
it; FlashAttention skips the upper triangle, so on those kernels the attention term is about 2x too high.
Ignored because they are O(n·h) with small constants: norms, RoPE, softmax, activations, residual adds,
projection biases, embedding lookup. The vision tower is not modelled: pre-LLM pruning happens after it,
so its cost is the same with and without pruning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LMDims:
    """Shape of a decoder-only text model, as far as its FLOPs are concerned."""

    hidden: int
    intermediate: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab: int

    @classmethod
    def from_config(cls, config: Any) -> LMDims:
        """Read a transformers text config (LlamaConfig, Qwen2Config, Qwen2.5-VL text config, ...).

        A full multimodal config is accepted too: its text part is found with ``get_text_config()``.
        ``head_dim`` defaults to ``hidden_size // num_attention_heads`` and ``num_key_value_heads`` to
        ``num_attention_heads`` when absent or None, as the models themselves do.
        """
        if hasattr(config, "get_text_config"):
            config = config.get_text_config()
        missing = [
            key
            for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
            if getattr(config, key, None) is None
        ]
        if missing:
            raise ValueError(f"{type(config).__name__} lacks {missing}; need a decoder-only text config")
        heads = config.num_attention_heads
        return cls(
            hidden=config.hidden_size,
            intermediate=config.intermediate_size,
            n_layers=config.num_hidden_layers,
            n_heads=heads,
            n_kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
            vocab=config.vocab_size,
        )


def _check_counts(dims: LMDims, counts: Sequence[int], what: str) -> None:
    if len(counts) != dims.n_layers:
        raise ValueError(f"{what} has {len(counts)} entries; need one per decoder layer ({dims.n_layers})")
    if any(n < 0 for n in counts):
        raise ValueError(f"{what} has a negative token count: {list(counts)}")


def _layer_flops(dims: LMDims, n_query: float, n_key: float) -> float:
    """FLOPs of one decoder layer for ``n_query`` new tokens attending to ``n_key`` tokens."""
    q_out, kv_out = dims.n_heads * dims.head_dim, dims.n_kv_heads * dims.head_dim
    projections = 2 * n_query * dims.hidden * (2 * q_out + 2 * kv_out)
    attention = 2 * 2 * dims.n_heads * n_query * n_key * dims.head_dim
    mlp = 3 * 2 * n_query * dims.hidden * dims.intermediate
    return float(projections + attention + mlp)


def prefill_flops(dims: LMDims, tokens_per_layer: Sequence[int]) -> float:
    """FLOPs of the prefill forward pass (see the module docstring for what is counted).

    Parameters
    ----------
    dims : LMDims
        The text model's shape.
    tokens_per_layer : sequence of int
        Sequence length entering each decoder layer (visual + text tokens), one entry per layer.
    """
    _check_counts(dims, tokens_per_layer, "tokens_per_layer")
    body = sum(_layer_flops(dims, n, n) for n in tokens_per_layer)
    return body + 2.0 * dims.hidden * dims.vocab


def decode_flops(dims: LMDims, context_per_layer: Sequence[int]) -> float:
    """FLOPs of one decode step: one new token attending to its cached context plus itself.

    ``context_per_layer`` is the KV-cache length of each layer before the step (after pruning, layer by
    layer), so the cost of step ``t`` is ``decode_flops(dims, [c + t for c in prefill_counts])``.
    """
    _check_counts(dims, context_per_layer, "context_per_layer")
    body = sum(_layer_flops(dims, 1, c + 1) for c in context_per_layer)
    return body + 2.0 * dims.hidden * dims.vocab


def ideal_speedup(dims: LMDims, base_tokens_per_layer: Sequence[int], pruned_tokens_per_layer: Sequence[int]) -> float:
    """Prefill speed-up if time were proportional to FLOPs: ``prefill_flops(base) / prefill_flops(pruned)``.

    The gap between this and the measured prefill speed-up is the method's overhead plus kernels that
    are not compute-bound at short lengths.
    """
    return prefill_flops(dims, base_tokens_per_layer) / prefill_flops(dims, pruned_tokens_per_layer)
