"""Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``): window-attention ViT with 2x2 patch merger -> Qwen2.5.

Visual tokens: dynamic resolution, one per merged 2x2 group of 14 px patches (144 at 336x336);
positions are 3-D M-RoPE (temporal, height, width), carried by ``position_ids`` of shape [3|4, B, L].
The processor's ``mm_token_type_ids`` must reach the model: without it the forward silently falls
back to 1-D positions.
"""

from __future__ import annotations

import torch
from transformers import (
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
)
from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLTextConfig, Qwen2_5_VLVisionConfig

from .base import FamilyAdapter
from .processors import Qwen2_5_VLImageProcessor
from .tokenizer import build_tokenizer

CHAT_TEMPLATE = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# 336 x 336 px -> 24 x 24 patches of 14 px -> 12 x 12 = 144 merged visual tokens.
TINY_IMAGE_SIZE = 336


class Qwen2_5_VLAdapter(FamilyAdapter):
    family = "qwen2_5_vl"
    position_scheme = "mrope"

    @property
    def vision_modules(self) -> list[torch.nn.Module]:
        return [self.model.model.visual]


def build_tiny(seed: int) -> tuple[Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLImageProcessor]:
    """A ~2 M-parameter Qwen2.5-VL of the stock classes, deterministic in ``seed``."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]  # fmt: skip
    tok = build_tokenizer(specials, bos=None, eos="<|im_end|>", pad="<|endoftext|>", unk=None)
    pixels = TINY_IMAGE_SIZE * TINY_IMAGE_SIZE
    image_processor = Qwen2VLImageProcessorPil(
        size={"shortest_edge": pixels, "longest_edge": pixels}, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    processor = Qwen2_5_VLImageProcessor(image_processor=image_processor, tokenizer=tok, chat_template=CHAT_TEMPLATE)
    hidden, heads = 128, 4
    config = Qwen2_5_VLConfig(
        vision_config=Qwen2_5_VLVisionConfig(
            depth=3,
            hidden_size=64,
            intermediate_size=128,
            num_heads=4,
            out_hidden_size=hidden,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            fullatt_block_indexes=[2],
        ),
        text_config=Qwen2_5_VLTextConfig(
            vocab_size=len(tok),
            hidden_size=hidden,
            intermediate_size=384,
            num_hidden_layers=8,
            num_attention_heads=heads,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            # mrope sections (t, h, w) must sum to head_dim / 2 = 16.
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
            bos_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        ),
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"),
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    return model, processor
