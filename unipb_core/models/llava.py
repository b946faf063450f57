"""LLaVA-1.5 (``LlavaForConditionalGeneration``): CLIP ViT-L/14 -> MLP projector -> Llama/Vicuna.

Visual tokens: one placeholder per CLIP patch ([CLS] dropped), 576 at 336 px; positions are 1-D.
"""

from __future__ import annotations

import torch
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

from .base import FamilyAdapter
from .tokenizer import build_tokenizer

# The llava-hf chat template, reduced to what the benchmark sends (user turn: images, then text).
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'].upper() + ': ' }}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}{{ '<image>\n' }}{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] + ' ' }}{% endif %}{% endfor %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

# 168 px / 14 px patches = 12 x 12 = 144 visual tokens, so 66.7/77.8/88.9 % keep 48/32/16.
TINY_IMAGE_SIZE = 168


class LlavaAdapter(FamilyAdapter):
    family = "llava"
    position_scheme = "rope1d"


def build_tiny(seed: int) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A ~2 M-parameter LLaVA of the stock classes, deterministic in ``seed``."""
    tok = build_tokenizer(["<unk>", "<s>", "</s>", "<pad>", "<image>"], bos="<s>", eos="</s>", pad="<pad>", unk="<unk>")
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": TINY_IMAGE_SIZE},
        crop_size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE},
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=14,
        vision_feature_select_strategy="default",
        chat_template=CHAT_TEMPLATE,
        num_additional_image_tokens=1,
    )
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=3,
            num_attention_heads=4,
            image_size=TINY_IMAGE_SIZE,
            patch_size=14,
            projection_dim=64,
        ),
        text_config=LlamaConfig(
            vocab_size=len(tok),
            hidden_size=128,
            intermediate_size=384,
            num_hidden_layers=8,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=1024,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        ),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    return model, processor
