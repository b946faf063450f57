"""Random-initialised timing models: the tiny families and the real architectures' shapes, as code.

Timing does not depend on the weights once the decode length is fixed (the harness forces
``min_new_tokens == max_new_tokens``), so a model with a real checkpoint's shapes and random weights times
like the checkpoint, without a download. Dimensions below are transcribed from the public configs:

================  ===================================  =========================================
architecture      language model                       vision tower, visual tokens
================  ===================================  =========================================
llava-1.5-7b      Vicuna-7B: 4096 hidden, 32 layers,    CLIP ViT-L/14-336: 1024, 24 layers, 16 heads,
                  32 heads (32 kv), 11008 MLP,          4096 MLP, quick-GELU; feature layer -2;
                  vocab 32064                           336 px -> 24 x 24 = 576 tokens
internvl3-8b      Qwen2.5-7B: 3584, 28 layers, 28       InternViT-300M-448px: 1024, 24 layers, 16
                  heads, 4 kv, 18944 MLP, vocab         heads, 4096 MLP, qkv bias; pixel shuffle 0.5;
                  151674, untied                        one 448-px tile -> 1024 / 4 = 256 tokens
qwen2.5-vl-7b     Qwen2.5-7B text: 3584, 28 layers,     ViT: 1280, depth 32, 16 heads, 3420 MLP,
                  28 heads, 4 kv, 18944 MLP, vocab      window 112 px, full attention at blocks
                  152064, M-RoPE sections 16/24/24      7/15/23/31, merger 2x2 -> 3584; 896 x 896 px
                                                        -> 64 x 64 patches -> 1024 tokens
================  ===================================  =========================================

Verified against public material: the Qwen2.5-VL-7B module dump (every dimension above), the InternViT-300M
dump of InternVL3-1B (1024 / 4096 / qkv bias / LayerNorm 1e-6) and InternVL3's vocabulary (151674, untied
embeddings). From memory, not re-checked here: the LLaVA-1.5-7B numbers (the well-known Llama-2-7B and
CLIP ViT-L/14-336 shapes) and InternVL3-8B's text dims (those of Qwen2.5-7B, as in Qwen2.5-VL-7B).

Choices (documented in docs/benchmarks.md): InternVL3 is timed on one tile (its dynamic tiling would use up
to 12 tiles + a thumbnail, 256 tokens each); Qwen2.5-VL on a 896 x 896 image (1024 tokens; dynamic
resolution, so any image gives a different count).

``reduce`` divides the widths (hidden, MLP, heads, kv heads; head size kept) and depths of both towers, but
keeps the image sizes, hence the real visual-token counts: on a CPU the full models are far too slow.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    GotOcr2ImageProcessorPil,
    InternVLConfig,
    InternVLVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaProcessor,
    Qwen2_5_VLConfig,
    Qwen2Config,
    Qwen2VLImageProcessorPil,
)
from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLTextConfig, Qwen2_5_VLVisionConfig

from unipb_core.models import FAMILIES, FamilyAdapter
from unipb_core.models.llava import CHAT_TEMPLATE as LLAVA_TEMPLATE
from unipb_core.models.processors import InternVLImageProcessor, Qwen2_5_VLImageProcessor

TINY_PREFIX = "tiny-random:"


@dataclass(frozen=True)
class Architecture:
    """A real model's shape: which family, its image size, and a config builder taking the reduce factor."""

    name: str
    family: str
    image_size: int  # pixels per side of the benchmark image (decides the visual-token count)
    n_visual: int  # visual tokens per image at that size (checked after building the inputs)
    config: Callable[[Any, int], Any]  # (tiny tokenizer, reduce) -> the transformers config
    processor: Callable[[Any], Any]  # tiny processor -> processor giving the real token count


def _div(value: int, reduce: int, minimum: int = 1) -> int:
    return max(minimum, value // reduce)


def _depth(layers: int, reduce: int) -> int:
    return max(2, math.ceil(layers / reduce))


def _heads(heads: int, kv_heads: int, reduce: int) -> tuple[int, int]:
    """Query and key/value heads divided by ``reduce``; kv heads stay a divisor of the query heads."""
    h, kv = _div(heads, reduce), _div(kv_heads, reduce)
    while h % kv:
        kv -= 1
    return h, kv


def _vit_large(reduce: int) -> dict[str, int]:
    """ViT-L sizes (width 1024 = 16 heads x 64, MLP 4096, 24 layers): both CLIP-L/14 and InternViT-300M."""
    heads = _div(16, reduce)
    return {"hidden_size": heads * 64, "intermediate_size": _div(4096, reduce), "num_hidden_layers": _depth(24, reduce),
            "num_attention_heads": heads}  # fmt: skip


def _token_ids(tok) -> dict[str, Any]:
    return {"bos_token_id": tok.bos_token_id or tok.pad_token_id, "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id}  # fmt: skip


# ---------------------------------------------------------------- LLaVA-1.5-7B
def _llava_config(tok, reduce: int) -> LlavaConfig:
    heads, kv = _heads(32, 32, reduce)
    return LlavaConfig(
        vision_config=CLIPVisionConfig(
            **_vit_large(reduce), image_size=336, patch_size=14, projection_dim=768,
            hidden_act="quick_gelu", layer_norm_eps=1e-5,
        ),
        text_config=LlamaConfig(
            vocab_size=32064, hidden_size=heads * 128, intermediate_size=_div(11008, reduce),
            num_hidden_layers=_depth(32, reduce), num_attention_heads=heads, num_key_value_heads=kv,
            max_position_embeddings=4096, rms_norm_eps=1e-5, **_token_ids(tok),
        ),
        image_token_id=tok.convert_tokens_to_ids("<image>"), projector_hidden_act="gelu",
        vision_feature_layer=-2, vision_feature_select_strategy="default", pad_token_id=tok.pad_token_id,
    )  # fmt: skip


def _llava_processor(tiny) -> LlavaProcessor:
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    return LlavaProcessor(image_processor=image_processor, tokenizer=tiny.tokenizer, patch_size=14,
                          vision_feature_select_strategy="default", chat_template=LLAVA_TEMPLATE,
                          num_additional_image_tokens=1)  # fmt: skip


# ---------------------------------------------------------------- InternVL3-8B
def _internvl_config(tok, reduce: int) -> InternVLConfig:
    heads, kv = _heads(28, 4, reduce)
    return InternVLConfig(
        vision_config=InternVLVisionConfig(
            **_vit_large(reduce), attention_bias=True, image_size=[448, 448], patch_size=[14, 14],
        ),
        text_config=Qwen2Config(
            vocab_size=151674, hidden_size=heads * 128, intermediate_size=_div(18944, reduce),
            num_hidden_layers=_depth(28, reduce), num_attention_heads=heads, num_key_value_heads=kv,
            max_position_embeddings=32768, rms_norm_eps=1e-6, rope_parameters={"rope_type": "default",
            "rope_theta": 1e6}, tie_word_embeddings=False, **_token_ids(tok),
        ),
        image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"), image_seq_length=256, downsample_ratio=0.5,
        vision_feature_layer=-1, vision_feature_select_strategy="default", tie_word_embeddings=False,
    )  # fmt: skip


def _internvl_processor(tiny) -> InternVLImageProcessor:
    image_processor = GotOcr2ImageProcessorPil(size={"height": 448, "width": 448}, crop_to_patches=False)
    return InternVLImageProcessor(image_processor=image_processor, tokenizer=tiny.tokenizer, image_seq_length=256,
                                  chat_template=tiny.chat_template)  # fmt: skip


# ---------------------------------------------------------------- Qwen2.5-VL-7B
QWEN_IMAGE = 896  # 896 / 14 = 64 patches a side, merged 2 x 2 -> 32 x 32 = 1024 visual tokens


def _qwen_config(tok, reduce: int) -> Qwen2_5_VLConfig:
    heads, kv = _heads(28, 4, reduce)
    depth = _depth(32, reduce)
    vision_heads = _div(16, reduce)
    # The real tower ends each group of 8 window-attention blocks with a full-attention block (7/15/23/31):
    # keep that 1-in-8 share, at least one (full attention over all patches dominates the tower's cost).
    n_full = max(1, round(4 * depth / 32))
    full_attention = [(i + 1) * depth // n_full - 1 for i in range(n_full)]
    return Qwen2_5_VLConfig(
        vision_config=Qwen2_5_VLVisionConfig(
            depth=depth, hidden_size=vision_heads * 80, intermediate_size=_div(3420, reduce), num_heads=vision_heads,
            out_hidden_size=heads * 128, patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
            fullatt_block_indexes=full_attention, tokens_per_second=2,
        ),
        text_config=Qwen2_5_VLTextConfig(
            vocab_size=152064, hidden_size=heads * 128, intermediate_size=_div(18944, reduce),
            num_hidden_layers=_depth(28, reduce), num_attention_heads=heads, num_key_value_heads=kv,
            max_position_embeddings=128000, rms_norm_eps=1e-6, tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
            **_token_ids(tok),
        ),
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"), tie_word_embeddings=False,
    )  # fmt: skip


def _qwen_processor(tiny) -> Qwen2_5_VLImageProcessor:
    pixels = QWEN_IMAGE * QWEN_IMAGE
    image_processor = Qwen2VLImageProcessorPil(
        size={"shortest_edge": pixels, "longest_edge": pixels}, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    return Qwen2_5_VLImageProcessor(image_processor=image_processor, tokenizer=tiny.tokenizer,
                                    chat_template=tiny.chat_template)  # fmt: skip


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("llava-1.5-7b", "llava", 336, 576, _llava_config, _llava_processor),
        Architecture("internvl3-8b", "internvl", 448, 256, _internvl_config, _internvl_processor),
        Architecture("qwen2.5-vl-7b", "qwen2_5_vl", QWEN_IMAGE, 1024, _qwen_config, _qwen_processor),
    )
}
TINY_IMAGE_SIZE = 336  # every tiny family turns a 336-px image into 144 visual tokens


def model_names() -> list[str]:
    """Every name ``build`` accepts: the tiny families, then the architectures."""
    return [f"{TINY_PREFIX}{f}" for f in FAMILIES] + list(ARCHITECTURES)


def image_size(name: str) -> int:
    """Side in pixels of the benchmark image for model ``name``."""
    return ARCHITECTURES[name].image_size if name in ARCHITECTURES else TINY_IMAGE_SIZE


def build(
    name: str, reduce: int = 1, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
    attn_implementation: str = "sdpa", seed: int = 0,
) -> FamilyAdapter:  # fmt: skip
    """A random-initialised model and its family adapter, built directly on ``device`` (no download).

    ``name`` is ``tiny-random:<family>`` (the tiny test model's shape; ``reduce`` is ignored) or an
    architecture of ``ARCHITECTURES``, divided by ``reduce`` (see the module docstring).
    """
    if name.startswith(TINY_PREFIX):
        family = FAMILIES[name.removeprefix(TINY_PREFIX)]
        tiny_model, processor = family.build_tiny(seed)
        config, spec = tiny_model.config, name
        del tiny_model
    elif name in ARCHITECTURES:
        arch = ARCHITECTURES[name]
        family = FAMILIES[arch.family]
        _, tiny = family.build_tiny(seed)  # reuse the tiny tokenizer and chat template
        processor = arch.processor(tiny)
        config = arch.config(tiny.tokenizer, reduce)
        spec = name if reduce == 1 else f"{name}/reduce{reduce}"
    else:
        raise ValueError(f"unknown benchmark model {name!r}; accepted: {', '.join(model_names())}")
    torch.manual_seed(seed)
    # Built on the device in the target dtype: a full 8B model never exists in float32 on the host.
    with torch.device(device):
        model = family.model_class._from_config(config, dtype=dtype, attn_implementation=attn_implementation)
    return family.adapter_class(model.eval(), processor, spec)
