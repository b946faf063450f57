"""Helpers of the real-shape config builders (``real_config`` in ``models/<family>.py``).

Each family builds its real checkpoint's shape (LLaVA-1.5-7B, InternVL3-8B, Qwen2.5-VL-7B) beside its tiny
builder, with random weights: the speed benchmark (``benchmarks/``) times them without a download. ``reduce``
divides the widths (hidden, MLP, heads, kv heads; head size kept) and the depths of both towers, but not the
image sizes, so the real visual-token counts stay: on a CPU the full models are far too slow.
"""

from __future__ import annotations

import math
from typing import Any


def reduced(value: int, reduce: int, minimum: int = 1) -> int:
    """A width divided by ``reduce``, at least ``minimum``."""
    return max(minimum, value // reduce)


def reduced_depth(layers: int, reduce: int) -> int:
    """A depth divided by ``reduce`` (rounded up), at least 2 layers."""
    return max(2, math.ceil(layers / reduce))


def reduced_heads(heads: int, kv_heads: int, reduce: int) -> tuple[int, int]:
    """Query and key/value heads divided by ``reduce``; kv heads stay a divisor of the query heads."""
    h, kv = reduced(heads, reduce), reduced(kv_heads, reduce)
    while h % kv:
        kv -= 1
    return h, kv


def vit_large(reduce: int) -> dict[str, int]:
    """ViT-L sizes (width 1024 = 16 heads x 64, MLP 4096, 24 layers): both CLIP-L/14 and InternViT-300M."""
    heads = reduced(16, reduce)
    return {"hidden_size": heads * 64, "intermediate_size": reduced(4096, reduce),
            "num_hidden_layers": reduced_depth(24, reduce), "num_attention_heads": heads}  # fmt: skip


def token_ids(tok) -> dict[str, Any]:
    """The special-token ids a text config takes, from the family's (tiny) tokenizer."""
    return {"bos_token_id": tok.bos_token_id or tok.pad_token_id, "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id}  # fmt: skip
