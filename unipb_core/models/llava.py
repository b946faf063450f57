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

from .base import FamilyAdapter, ModelInputError
from .real_sizes import reduced, reduced_depth, reduced_heads, token_ids, vit_large
from .tiny_sizes import VISION_SIZES, text_sizes
from .tokenizer import build_tokenizer
from .vision_attention import VisionAttention, cls_row_attention

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
    vision_attention_note = "CLIP [CLS] -> patch attention at the feature layer (-2), mean over heads"

    def vision_encoder_layers(self) -> torch.nn.ModuleList:
        return self.model.model.vision_tower.encoder.layers

    def vision_attention(self, store: dict) -> VisionAttention:
        layer, args, kwargs = store["layer"]
        hidden = args[0] if args else kwargs["hidden_states"]  # [B, 1 + P, D]
        attn = layer.self_attn
        x = layer.layer_norm1(hidden)
        b, length, _ = x.shape
        k = attn.k_proj(x).view(b, length, attn.num_heads, attn.head_dim).transpose(1, 2)
        q_cls = attn.q_proj(x[:, 0]).view(b, attn.num_heads, attn.head_dim)
        probs = cls_row_attention(q_cls, k, attn.scale)  # [B, 1 + P]
        # "default" drops [CLS] from the visual tokens; "full" keeps it (then it is scored by its self-attention).
        first = 1 if self.config.vision_feature_select_strategy == "default" else 0
        keys = k.transpose(1, 2).reshape(b, length, -1)[:, first:]
        n = b * (length - first)
        groups = torch.arange(n, device=x.device).unsqueeze(1)
        return VisionAttention(probs[:, first:].reshape(n), keys.reshape(n, -1), groups)

    # CLIP's position embeddings are learned for one grid: interpolated (bicubic) to the smaller one.
    _resized_call_kwargs = {"interpolate_pos_encoding": True}

    def _token_pixels(self) -> int:
        return self.config.vision_config.patch_size

    def _downsample_units(self, call: dict) -> list[tuple[int, int]]:
        if self.config.vision_feature_select_strategy != "default":
            raise ModelInputError(
                "downsample: LLaVA with vision_feature_select_strategy='full' feeds [CLS] as a visual token, "
                "which has no place on a resized patch grid"
            )
        pixels, patch = call["pixel_values"], self._token_pixels()  # [images, 3, H, W]
        return [(pixels.shape[-2] // patch, pixels.shape[-1] // patch)] * pixels.shape[0]


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
            **VISION_SIZES,
            num_hidden_layers=3,
            num_attention_heads=4,
            image_size=TINY_IMAGE_SIZE,
            patch_size=14,
            projection_dim=64,
        ),
        text_config=LlamaConfig(
            **text_sizes(len(tok), max_positions=1024),
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


# ---------------------------------------------------------------- the real shape (random weights; benchmarks/)
def real_config(tok, reduce: int = 1) -> LlavaConfig:
    """LLaVA-1.5-7B's shape (Vicuna-7B + CLIP ViT-L/14-336), widths and depths divided by ``reduce``."""
    heads, kv = reduced_heads(32, 32, reduce)
    return LlavaConfig(
        vision_config=CLIPVisionConfig(
            **vit_large(reduce), image_size=336, patch_size=14, projection_dim=768,
            hidden_act="quick_gelu", layer_norm_eps=1e-5,
        ),
        text_config=LlamaConfig(
            vocab_size=32064, hidden_size=heads * 128, intermediate_size=reduced(11008, reduce),
            num_hidden_layers=reduced_depth(32, reduce), num_attention_heads=heads, num_key_value_heads=kv,
            max_position_embeddings=4096, rms_norm_eps=1e-5, **token_ids(tok),
        ),
        image_token_id=tok.convert_tokens_to_ids("<image>"), projector_hidden_act="gelu",
        vision_feature_layer=-2, vision_feature_select_strategy="default", pad_token_id=tok.pad_token_id,
    )  # fmt: skip


def real_processor(tiny) -> LlavaProcessor:
    """A processor giving LLaVA-1.5's 576 visual tokens at 336 px, on the tiny model's tokenizer."""
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    return LlavaProcessor(image_processor=image_processor, tokenizer=tiny.tokenizer, patch_size=14,
                          vision_feature_select_strategy="default", chat_template=CHAT_TEMPLATE,
                          num_additional_image_tokens=1)  # fmt: skip
