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

Choices (documented in docs/benchmarks.md): by default InternVL3 is timed on one tile and Qwen2.5-VL on a
896 x 896 image (1024 tokens); ``Visual`` (the ``--internvl-tiles`` / ``--qwen-image`` flags) turns on
InternVL3's dynamic tiling (up to ``max_tiles`` + a thumbnail, 256 tokens each) and the study's Qwen2.5-VL
pixel bounds (1280 to 4096 tokens).

The config and processor builders live beside each family's tiny builder, ``real_config`` and ``real_processor``
in ``unipb_core/models/<family>.py``; this file lists which ones the benchmark times. ``reduce`` divides the
widths (hidden, MLP, heads, kv heads; head size kept) and depths of both towers, but keeps the image sizes,
hence the real visual-token counts: on a CPU the full models are far too slow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from unipb_core.models import FAMILIES, FamilyAdapter, internvl, llava, qwen2_5_vl
from unipb_core.models.qwen2_5_vl import REAL_IMAGE_SIZE as QWEN_IMAGE

TINY_PREFIX = "tiny-random:"


# Realistic visual-token counts (``--internvl-tiles``, ``--qwen-image``): InternVL3 tiles a 4:3 image, the
# aspect of a typical photo, so the tile grid is the widest ``max_tiles`` allows (6 -> 3 x 2 + thumbnail =
# 1792 tokens; 12 -> 4 x 3 + thumbnail = 3328); Qwen2.5-VL takes a square of the given side under the study's
# pixel bounds (448 -> 1296 tokens, 1344 -> 2304, 1792 -> 4096).
TILED_IMAGE = (1024, 768)


@dataclass(frozen=True)
class Visual:
    """How many visual tokens the real architectures get: the defaults are the one-tile / 896-px choices."""

    internvl_tiles: int = 1  # InternVL3 max tiles (VLMEvalKit: 6 for MME and most sets; 1: one 448-px tile)
    qwen_image: int | None = None  # Qwen2.5-VL square image side under the study's pixel bounds; None: 896 px fixed

    def __post_init__(self) -> None:
        if self.internvl_tiles < 1:
            raise ValueError(f"internvl_tiles must be >= 1, got {self.internvl_tiles}")
        if self.qwen_image is not None and self.qwen_image < 28:
            raise ValueError(f"qwen_image must be at least 28 px, got {self.qwen_image}")


DEFAULT_VISUAL = Visual()


@dataclass(frozen=True)
class VisualSetting:
    """What a ``Visual`` means for one architecture: processor options, image, and a spec suffix."""

    processor_options: dict[str, Any]  # keyword arguments of the family's real_processor
    image: int | tuple[int, int] | None  # benchmark image (side, or width x height); None: the default size
    suffix: str  # appended to the spec (``/tiles6``, ``/1344px``); empty for the defaults


def _fixed(visual: Visual) -> VisualSetting:
    return VisualSetting({}, None, "")


def _internvl_tiles(visual: Visual) -> VisualSetting:
    tiled = visual.internvl_tiles > 1
    return VisualSetting({"max_tiles": visual.internvl_tiles}, TILED_IMAGE if tiled else None,
                         f"/tiles{visual.internvl_tiles}" if tiled else "")  # fmt: skip


def _qwen_pixels(visual: Visual) -> VisualSetting:
    size = visual.qwen_image
    return VisualSetting({"study_pixels": size is not None}, size, f"/{size}px" if size is not None else "")


@dataclass(frozen=True)
class Architecture:
    """A real model's shape: which family, its image size, and a config builder taking the reduce factor."""

    name: str
    family: str
    image_size: int  # pixels per side of the benchmark image (decides the visual-token count)
    n_visual: int  # visual tokens per image at that size (checked after building the inputs)
    config: Callable[[Any, int], Any]  # (tiny tokenizer, reduce) -> the transformers config
    processor: Callable[..., Any]  # (tiny processor, **VisualSetting.processor_options) -> real processor
    visual: Callable[[Visual], VisualSetting] = _fixed  # how the --internvl-tiles / --qwen-image flags apply


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("llava-1.5-7b", "llava", 336, 576, llava.real_config, llava.real_processor),
        Architecture(
            "internvl3-8b", "internvl", 448, 256, internvl.real_config, internvl.real_processor, _internvl_tiles
        ),
        Architecture(
            "qwen2.5-vl-7b",
            "qwen2_5_vl",
            QWEN_IMAGE,
            1024,
            qwen2_5_vl.real_config,
            qwen2_5_vl.real_processor,
            _qwen_pixels,
        ),  # fmt: skip
    )
}
TINY_IMAGE_SIZE = 336  # every tiny family turns a 336-px image into 144 visual tokens
# The study's timing run (Table 4): InternVL3-8B on MME at 88.9 %, VLMEvalKit's tiling (max 6 tiles + thumbnail).
STUDY_TIMING = {
    "models": "internvl3-8b",
    "methods": "random_pre,random_intra,fitprune,fastv,divprune,gprune",
    "ratios": "0,88.9",
    "internvl_tiles": 6,
}


def model_names() -> list[str]:
    """Every name ``build`` accepts: the tiny families, then the architectures."""
    return [f"{TINY_PREFIX}{f}" for f in FAMILIES] + list(ARCHITECTURES)


def image_size(name: str, visual: Visual = DEFAULT_VISUAL) -> int | tuple[int, int]:
    """Side in pixels of the benchmark image for model ``name``, or (width, height) for a tiled InternVL."""
    if name not in ARCHITECTURES:
        return TINY_IMAGE_SIZE
    arch = ARCHITECTURES[name]
    image = arch.visual(visual).image
    return arch.image_size if image is None else image


def build(
    name: str, reduce: int = 1, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
    attn_implementation: str = "sdpa", seed: int = 0, visual: Visual = DEFAULT_VISUAL,
) -> FamilyAdapter:  # fmt: skip
    """A random-initialised model and its family adapter, built directly on ``device`` (no download).

    ``name`` is ``tiny-random:<family>`` (the tiny test model's shape; ``reduce`` is ignored) or an
    architecture of ``ARCHITECTURES``, divided by ``reduce`` (see the module docstring); ``visual`` sets
    InternVL3's tiling and Qwen2.5-VL's pixel bounds (``Visual``; the image itself comes from ``image_size``).
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
        setting = arch.visual(visual)
        processor = arch.processor(tiny, **setting.processor_options)
        config = arch.config(tiny.tokenizer, reduce)
        spec = (name if reduce == 1 else f"{name}/reduce{reduce}") + setting.suffix
    else:
        raise ValueError(f"unknown benchmark model {name!r}; accepted: {', '.join(model_names())}")
    torch.manual_seed(seed)
    # Built on the device in the target dtype: a full 8B model never exists in float32 on the host.
    with torch.device(device):
        model = family.model_class._from_config(config, dtype=dtype, attn_implementation=attn_implementation)
    return family.adapter_class(model.eval(), processor, spec)
