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
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_rotary_pos_emb_vision
from transformers.vision_utils import get_vision_window_index

from .base import FamilyAdapter, ModelInputError
from .processors import Qwen2_5_VLImageProcessor
from .real_sizes import reduced, reduced_depth, reduced_heads, token_ids
from .tiny_sizes import VISION_SIZES, text_sizes
from .tokenizer import build_tokenizer
from .vision_attention import VisionAttention, capture_input, capture_output, mean_received_attention

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

    vision_attention_note = (
        "no [CLS] token: mean attention each patch receives from all patches of its image in the last "
        "full-attention ViT block, mean over heads, summed over each 2x2 merger group; keys are the mean "
        "pre-RoPE keys of the group"
    )

    @property
    def vision_modules(self) -> list[torch.nn.Module]:
        return [self.model.model.visual]

    def vision_attention_hooks(self, store: dict) -> list:
        # The block's input carries cu_seqlens and the rotary tables; its qkv projection's output is what the
        # stock attention used, so the scores need no second norm + projection (on the 7B shape that GEMM costs
        # about as much as the S x S logits).
        visual = self.model.model.visual
        block = visual.blocks[visual.fullatt_block_indexes[-1]]
        return [
            visual.register_forward_pre_hook(capture_input(store, "tower"), with_kwargs=True),
            block.register_forward_pre_hook(capture_input(store, "layer"), with_kwargs=True),
            block.attn.qkv.register_forward_hook(capture_output(store, "qkv")),
        ]

    def vision_attention(self, store: dict) -> VisionAttention:
        visual, t_args, t_kwargs = store["tower"]
        grid_thw = t_args[1] if len(t_args) > 1 else t_kwargs["grid_thw"]
        block, _, kwargs = store["layer"]
        qkv = store["qkv"]  # [S, 3 * D], merge groups permuted into windows
        attn = block.attn
        seq = qkv.shape[0]
        q, k, _ = qkv.reshape(seq, 3, attn.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
        cos, sin = kwargs["position_embeddings"]
        q_rot, k_rot = apply_rotary_pos_emb_vision(q, k, cos, sin)
        scores = mean_received_attention(
            q_rot.transpose(0, 1), k_rot.transpose(0, 1), attn.scaling, kwargs["cu_seqlens"]
        )
        # Inside the blocks each run of `unit` rows is one merger group, groups in window order; the merger
        # output is put back in raster order with argsort(window_index): map each visual token to its rows.
        window_index, _ = get_vision_window_index(
            grid_thw, visual.spatial_merge_size, visual.window_size, visual.patch_size
        )
        unit = visual.spatial_merge_unit
        start = torch.argsort(window_index).to(qkv.device) * unit
        groups = start.unsqueeze(1) + torch.arange(unit, device=qkv.device)
        return VisionAttention(scores, k.reshape(seq, -1), groups)

    _image_call_args = ("pixel_values", "image_grid_thw")

    def _downsample_units(self, call: dict) -> list[tuple[int, int]]:
        merge = self.config.vision_config.spatial_merge_size
        units = []
        for t, h, w in call["image_grid_thw"].tolist():
            if t != 1:
                raise ModelInputError("downsample: Qwen2.5-VL video inputs (t > 1) are not supported; images only")
            units.append((h // merge, w // merge))
        return units

    def _encode_resized(self, encode, call, grids, jobs):
        # Dynamic resolution: undo the processor's patchify, resize, patchify again at the smaller size; every
        # image keeps its own grid_thw, so all of them go through one call.
        vc = self.config.vision_config
        p, m, tp, ch = vc.patch_size, vc.spatial_merge_size, vc.temporal_patch_size, vc.in_channels
        flat, grid_thw = call["pixel_values"], call["image_grid_thw"]  # flat: [patches, C * T * p * p]
        starts = [0]
        for rows, cols in grids:
            starts.append(starts[-1] + rows * cols * m * m)
        pieces, new_thw = [], []
        for unit, (gh, gw) in jobs:
            rows, cols = grids[unit]
            # Flat layout (image_processing_pil_qwen2_vl.patchify): (h/m, w/m, m, m, C, T, p, p); an image's T
            # frames are copies (the processor tiles it), so the first is the image.
            image = flat[starts[unit] : starts[unit + 1]].view(rows, cols, m, m, ch, tp, p, p)[:, :, :, :, :, 0].float()
            image = image.permute(4, 0, 2, 5, 1, 3, 6).reshape(1, ch, rows * m * p, cols * m * p)
            image = self._resize(image, gh * m * p, gw * m * p)[0]
            new = image.reshape(ch, gh, m, p, gw, m, p).permute(1, 4, 2, 5, 0, 3, 6).unsqueeze(5)
            pieces.append(new.expand(gh, gw, m, m, ch, tp, p, p).reshape(gh * gw * m * m, ch * tp * p * p))
            new_thw.append([1, gh * m, gw * m])
        rest = {key: value for key, value in call.items() if key not in self._image_call_args}
        thw = torch.tensor(new_thw, dtype=grid_thw.dtype).to(grid_thw.device, non_blocking=True)
        out = encode(torch.cat(pieces).to(flat.dtype), thw, **rest)
        return out, list(out.pooler_output)

    def visual_grids(self, inputs) -> list[tuple[int, int]]:
        # Dynamic resolution: the grid comes from image_grid_thw (t, h, w patches), merged 2x2.
        merge = self.model.config.vision_config.spatial_merge_size
        return [(int(h) // merge, int(t) * int(w) // merge) for t, h, w in inputs["image_grid_thw"].tolist()]


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
    text = text_sizes(len(tok), max_positions=2048)
    config = Qwen2_5_VLConfig(
        vision_config=Qwen2_5_VLVisionConfig(
            **VISION_SIZES,
            depth=3,
            num_heads=4,
            out_hidden_size=text["hidden_size"],
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            fullatt_block_indexes=[2],
        ),
        text_config=Qwen2_5_VLTextConfig(
            **text,
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


# ---------------------------------------------------------------- the real shape (random weights; benchmarks/)
REAL_IMAGE_SIZE = 896  # 896 / 14 = 64 patches a side, merged 2 x 2 -> 32 x 32 = 1024 visual tokens


def real_config(tok, reduce: int = 1) -> Qwen2_5_VLConfig:
    """Qwen2.5-VL-7B's shape (window-attention ViT + Qwen2.5-7B text), widths and depths divided by ``reduce``."""
    heads, kv = reduced_heads(28, 4, reduce)
    depth = reduced_depth(32, reduce)
    vision_heads = reduced(16, reduce)
    # The real tower ends each group of 8 window-attention blocks with a full-attention block (7/15/23/31):
    # keep that 1-in-8 share, at least one (full attention over all patches dominates the tower's cost).
    n_full = max(1, round(4 * depth / 32))
    full_attention = [(i + 1) * depth // n_full - 1 for i in range(n_full)]
    return Qwen2_5_VLConfig(
        vision_config=Qwen2_5_VLVisionConfig(
            depth=depth, hidden_size=vision_heads * 80, intermediate_size=reduced(3420, reduce), num_heads=vision_heads,
            out_hidden_size=heads * 128, patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
            fullatt_block_indexes=full_attention, tokens_per_second=2,
        ),
        text_config=Qwen2_5_VLTextConfig(
            vocab_size=152064, hidden_size=heads * 128, intermediate_size=reduced(18944, reduce),
            num_hidden_layers=reduced_depth(28, reduce), num_attention_heads=heads, num_key_value_heads=kv,
            max_position_embeddings=128000, rms_norm_eps=1e-6, tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
            **token_ids(tok),
        ),
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"), tie_word_embeddings=False,
    )  # fmt: skip


# The study's VLMEvalKit setting for Qwen2.5-VL-7B: 1280 to 4096 visual tokens (one per 28 x 28 px).
STUDY_MIN_PIXELS, STUDY_MAX_PIXELS = 1280 * 28 * 28, 4096 * 28 * 28


def real_processor(tiny, study_pixels: bool = False) -> Qwen2_5_VLImageProcessor:
    """A processor for the real shape, on the tiny model's tokenizer.

    Default: every image resized to 896 x 896 px, 1024 visual tokens. ``study_pixels``: the study's bounds
    (``STUDY_MIN_PIXELS`` / ``STUDY_MAX_PIXELS``), so the count follows the image: a 1792-px square gives
    4096 tokens, anything below ~1000 px a side is upscaled to at least 1280.
    """
    low, high = (STUDY_MIN_PIXELS, STUDY_MAX_PIXELS) if study_pixels else (REAL_IMAGE_SIZE**2, REAL_IMAGE_SIZE**2)
    image_processor = Qwen2VLImageProcessorPil(
        size={"shortest_edge": low, "longest_edge": high}, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    return Qwen2_5_VLImageProcessor(image_processor=image_processor, tokenizer=tiny.tokenizer,
                                    chat_template=tiny.chat_template)  # fmt: skip
