"""InternVL3 (``InternVLForConditionalGeneration``): InternViT -> pixel shuffle 0.5 -> MLP -> Qwen2.5.

Visual tokens: ``(S/14)^2 / 4`` per tile after pixel shuffle (256 at 448 px; 144 at 336 px), wrapped
in ``<img> ... </img>``; positions are 1-D. The tiny model uses one tile (``crop_to_patches=False``).
"""

from __future__ import annotations

import math

import torch
from transformers import (
    GotOcr2ImageProcessorPil,
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLVisionConfig,
    Qwen2Config,
)

from .base import FamilyAdapter
from .processors import InternVLImageProcessor
from .real_sizes import reduced, reduced_depth, reduced_heads, token_ids, vit_large
from .tiny_sizes import VISION_SIZES, text_sizes
from .tokenizer import build_tokenizer
from .vision_attention import VisionAttention, cls_row_attention

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<IMG_CONTEXT>\n{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# 336 px -> 24 x 24 patches -> pixel shuffle 0.5 -> 12 x 12 = 144 visual tokens.
TINY_IMAGE_SIZE = 336


class InternVLAdapter(FamilyAdapter):
    family = "internvl"
    position_scheme = "rope1d"

    vision_attention_note = (
        "InternViT [CLS] -> patch attention at the feature layer (-1), mean over heads, summed over the 4 patches "
        "that pixel shuffle folds into each visual token; keys are the mean of those 4 patches' keys"
    )

    def vision_encoder_layers(self) -> torch.nn.ModuleList:
        return self.model.model.vision_tower.encoder.layer

    def vision_attention(self, store: dict) -> VisionAttention:
        layer, args, kwargs = store["layer"]
        hidden = args[0] if args else kwargs["hidden_states"]  # [tiles, 1 + P, D]
        attn = layer.attention
        x = layer.layernorm_before(hidden)
        b, length, _ = x.shape
        k = attn.k_norm(attn.k_proj(x)).view(b, length, attn.num_heads, attn.head_dim).transpose(1, 2)
        q_cls = attn.q_norm(attn.q_proj(x[:, :1]))[:, 0].view(b, attn.num_heads, attn.head_dim)
        probs = cls_row_attention(q_cls, k, attn.scale)[:, 1:]  # [tiles, P]: [CLS] is dropped before the shuffle
        keys = k.transpose(1, 2).reshape(b, length, -1)[:, 1:]
        n_patches = length - 1
        groups = self._shuffle_groups(n_patches, x.device)  # [P / 4, 4] within one tile
        offsets = torch.arange(b, device=x.device).repeat_interleave(groups.shape[0]) * n_patches
        groups = groups.repeat(b, 1) + offsets.unsqueeze(1)
        return VisionAttention(probs.reshape(-1), keys.reshape(b * n_patches, -1), groups)

    def _shuffle_groups(self, n_patches: int, device: torch.device) -> torch.Tensor:
        """Patches folded into each visual token, read off the model's own ``pixel_shuffle`` applied to
        patch indices (so the grouping is whatever the stock code does, channel order included)."""
        side = int(n_patches**0.5)
        index = torch.arange(n_patches, dtype=torch.float64, device=device).view(1, side, side, 1)
        shuffled = self.model.model.pixel_shuffle(index, scale_factor=self.config.downsample_ratio)
        return shuffled.reshape(-1, shuffled.shape[-1]).round().long()

    def _token_pixels(self) -> int:
        # Pixel shuffle folds 2 x 2 patches into a token; an even patch grid keeps it exact. InternViT
        # interpolates its position embeddings to any grid.
        return self.config.vision_config.patch_size[0] * int(round(1 / self.config.downsample_ratio))

    def _downsample_units(self, call: dict) -> list[tuple[int, int]]:
        # Each tile (thumbnail included) is its own unit: the visual tokens run tile by tile.
        pixels, size = call["pixel_values"], self._token_pixels()  # [tiles, 3, S, S]
        return [(pixels.shape[-2] // size, pixels.shape[-1] // size)] * pixels.shape[0]

    def _coarse_grid(self, rows: int, cols: int, k: int) -> tuple[int, int]:
        # The stock get_image_features reshapes the patch grid as a square before the pixel shuffle.
        side = math.isqrt(k)
        side += side * side < k
        return side, side

    def _processor_kwargs(self) -> dict:
        # Tiling multiplies the visual tokens; the tiny default and the ratio arithmetic assume one tile.
        return {"crop_to_patches": bool(getattr(self.processor.image_processor, "crop_to_patches", False))}


def build_tiny(seed: int) -> tuple[InternVLForConditionalGeneration, InternVLImageProcessor]:
    """A ~2 M-parameter InternVL of the stock classes, deterministic in ``seed``."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]
    tok = build_tokenizer(
        specials,
        bos=None,
        eos="<|im_end|>",
        pad="<|endoftext|>",
        unk=None,
        extra_special_tokens={
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        },
    )
    image_processor = GotOcr2ImageProcessorPil(
        size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE}, crop_to_patches=False
    )
    processor = InternVLImageProcessor(
        image_processor=image_processor, tokenizer=tok, image_seq_length=144, chat_template=CHAT_TEMPLATE
    )
    config = InternVLConfig(
        vision_config=InternVLVisionConfig(
            **VISION_SIZES,
            num_hidden_layers=3,
            num_attention_heads=4,
            image_size=[TINY_IMAGE_SIZE, TINY_IMAGE_SIZE],
            patch_size=[14, 14],
        ),
        text_config=Qwen2Config(
            **text_sizes(len(tok), max_positions=2048),
            bos_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        ),
        image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=144,
        downsample_ratio=0.5,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(config)
    return model, processor


# ---------------------------------------------------------------- the real shape (random weights; benchmarks/)
def real_config(tok, reduce: int = 1) -> InternVLConfig:
    """InternVL3-8B's shape (Qwen2.5-7B + InternViT-300M), widths and depths divided by ``reduce``."""
    heads, kv = reduced_heads(28, 4, reduce)
    return InternVLConfig(
        vision_config=InternVLVisionConfig(
            **vit_large(reduce), attention_bias=True, image_size=[448, 448], patch_size=[14, 14],
        ),
        text_config=Qwen2Config(
            vocab_size=151674, hidden_size=heads * 128, intermediate_size=reduced(18944, reduce),
            num_hidden_layers=reduced_depth(28, reduce), num_attention_heads=heads, num_key_value_heads=kv,
            max_position_embeddings=32768, rms_norm_eps=1e-6, rope_parameters={"rope_type": "default",
            "rope_theta": 1e6}, tie_word_embeddings=False, **token_ids(tok),
        ),
        image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"), image_seq_length=256, downsample_ratio=0.5,
        vision_feature_layer=-1, vision_feature_select_strategy="default", tie_word_embeddings=False,
    )  # fmt: skip


def real_processor(tiny, max_tiles: int = 1) -> InternVLImageProcessor:
    """A processor giving 256 visual tokens per 448-px tile, on the tiny model's tokenizer.

    ``max_tiles = 1`` (default): one tile, the image resized to 448 x 448. Above 1: InternVL's dynamic tiling,
    the image cut into the grid of at most ``max_tiles`` tiles closest to its aspect ratio, plus a 448-px
    thumbnail whenever there is more than one tile (so 1 to ``max_tiles + 1`` tiles). VLMEvalKit's
    ``InternVLChat`` uses 6 for most datasets (MME included), 12 / 18 / 24 for chart, document and OCR sets.
    """
    if max_tiles < 1:
        raise ValueError(f"max_tiles must be >= 1, got {max_tiles}")
    image_processor = GotOcr2ImageProcessorPil(size={"height": 448, "width": 448}, crop_to_patches=max_tiles > 1,
                                               min_patches=1, max_patches=max_tiles)  # fmt: skip
    return InternVLImageProcessor(image_processor=image_processor, tokenizer=tiny.tokenizer, image_seq_length=256,
                                  chat_template=tiny.chat_template)  # fmt: skip
