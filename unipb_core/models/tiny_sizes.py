"""Sizes shared by the three tiny builders, so that the families differ only where their architectures do.

The tiny models are trained on the synthetic suite (``unipb_core/training.py``). Their initialisation is wider
than the stock 0.02, which suits widths of ~1,000: at width 128 it leaves every path from a visual token to
the answer a product of near-zero matrices, and training sat at chance for 1,000+ steps
(docs/tiny-models.md).
"""

from __future__ import annotations

# Vision encoders: width and MLP; each family names its depth and heads its own way.
VISION_SIZES = {"hidden_size": 64, "intermediate_size": 128, "initializer_range": 0.1}


def text_sizes(vocab_size: int, max_positions: int) -> dict:
    """Language-model sizes: 8 layers of width 128 (4 heads, 2 KV heads), so intra-LLM layer choices matter."""
    return {
        "vocab_size": vocab_size,
        "hidden_size": 128,
        "intermediate_size": 256,
        "initializer_range": 0.15,
        "num_hidden_layers": 8,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": max_positions,
    }
