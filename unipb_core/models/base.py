"""The model adapter: one small interface over the three families' stock transformers classes.

Everything family-specific (chat template, processor call, where the decoder and vision tower
live, the position scheme) is answered here or in ``models/<family>.py``; the pruning engine,
runner and notebooks only talk to this interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from PIL import Image
from transformers import BatchFeature

from .vision_attention import VisionAttention


class ModelInputError(ValueError):
    """Input the adapter cannot turn into model inputs (e.g. an image that cannot be decoded)."""


@dataclass(frozen=True)
class Generation:
    """What one greedy ``generate`` call produced.

    Attributes
    ----------
    text : str
        The decoded answer (new tokens only, special tokens skipped, stripped).
    n_generated : int
        New tokens produced (stops at EOS; counts the EOS token when emitted).
    n_visual, n_text : int
        Visual placeholder tokens and other tokens of the prompt, before any pruning.
    """

    text: str
    n_generated: int
    n_visual: int
    n_text: int


def to_rgb(image: Any, *, name: str = "image") -> Image.Image:
    """Return ``image`` as an RGB PIL image, or raise naming what is accepted."""
    if isinstance(image, Image.Image):
        try:
            image.load()
        except Exception as exc:  # PIL raises many types for truncated / corrupt files
            raise ModelInputError(f"{name}: the image cannot be decoded ({exc}); expected a valid image") from exc
        return image.convert("RGB")
    raise ModelInputError(f"{name}: expected a PIL.Image.Image, got {type(image).__name__}")


class FamilyAdapter:
    """Base adapter; subclasses set the class attributes and the few family hooks.

    Attributes
    ----------
    family : str
        ``"llava"``, ``"internvl"`` or ``"qwen2_5_vl"``.
    position_scheme : str
        ``"rope1d"`` (one position per token) or ``"mrope"`` (Qwen's 3-D t/h/w positions).
    """

    family: ClassVar[str]
    position_scheme: ClassVar[str] = "rope1d"
    # How the encoder attention maps onto visual tokens (recorded by methods that read it).
    vision_attention_note: ClassVar[str] = ""

    def __init__(self, model: torch.nn.Module, processor: Any, spec: str):
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.spec = spec

    # ----------------------------------------------------------------- structure
    @property
    def config(self):
        return self.model.config

    @property
    def text_config(self):
        return self.model.config.text_config

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def image_token_id(self) -> int:
        return int(self.model.config.image_token_id)

    @property
    def language_model(self) -> torch.nn.Module:
        """The decoder stack (``XModel.language_model``): embeddings already merged when it runs."""
        return self.model.model.language_model

    @property
    def decoder_layers(self) -> torch.nn.ModuleList:
        return self.language_model.layers

    @property
    def num_layers(self) -> int:
        return len(self.decoder_layers)

    @property
    def vision_modules(self) -> list[torch.nn.Module]:
        """Modules that turn pixels into projected visual tokens, in call order (for timing)."""
        return [self.model.model.vision_tower, self.model.model.multi_modal_projector]

    # ----------------------------------------------------------------- vision-encoder attention
    def vision_attention_hooks(self, store: dict) -> list:
        """Register forward pre-hooks that keep references to the encoder inputs ``vision_attention`` needs."""
        raise NotImplementedError(f"{type(self).__name__} does not expose vision-encoder attention")

    def vision_attention(self, store: dict) -> VisionAttention:
        """Recompute the feature layer's attention from what ``vision_attention_hooks`` captured."""
        raise NotImplementedError(f"{type(self).__name__} does not expose vision-encoder attention")

    def vision_feature_layer_index(self, num_layers: int) -> int:
        """Encoder layer whose output is the feature layer (``hidden_states[f]`` is layer ``f - 1``'s output)."""
        f = int(self.config.vision_feature_layer)
        return num_layers + f if f < 0 else f - 1

    # ----------------------------------------------------------------- inputs
    def format_prompt(self, text: str, n_images: int) -> str:
        """Wrap the user text and image placeholders in the family's chat template."""
        content = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": text}]
        return self.processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )

    def build_inputs(self, images: list[Any], text: str) -> BatchFeature:
        """Processor inputs for one sample (batch of 1) on the model's device."""
        if not images:
            raise ModelInputError("build_inputs: at least one image is required (this is a visual-token benchmark)")
        rgb = [to_rgb(im, name=f"image {i}") for i, im in enumerate(images)]
        prompt = self.format_prompt(text, len(rgb))
        inputs = self.processor(images=rgb, text=prompt, return_tensors="pt", **self._processor_kwargs())
        return inputs.to(self.device)

    def _processor_kwargs(self) -> dict:
        return {}

    def visual_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Boolean mask of visual placeholder tokens, same shape as ``input_ids``."""
        return input_ids == self.image_token_id

    def visual_spans(self, input_ids: torch.Tensor) -> list[tuple[int, int]]:
        """Contiguous ``[start, end)`` runs of visual tokens in a 1-row ``input_ids`` (one per image)."""
        mask = self.visual_mask(input_ids.reshape(-1)).tolist()
        spans, start = [], None
        for i, is_visual in enumerate(mask + [False]):
            if is_visual and start is None:
                start = i
            elif not is_visual and start is not None:
                spans.append((start, i))
                start = None
        return spans

    def visual_grids(self, inputs: BatchFeature) -> list[tuple[int, int]]:
        """Patch grid ``(rows, cols)`` of each image's visual tokens, in token order (square by default)."""
        grids = []
        for start, end in self.visual_spans(inputs["input_ids"]):
            side = int((end - start) ** 0.5)
            grids.append((side, side) if side * side == end - start else (1, end - start))
        return grids

    # ----------------------------------------------------------------- generation
    @torch.inference_mode()
    def generate(self, inputs: BatchFeature, max_new_tokens: int = 16) -> Generation:
        """Greedy decoding; returns the text and the token counts the records need."""
        input_ids = inputs["input_ids"]
        if input_ids.shape[0] != 1:
            raise ModelInputError(f"generate: batch size {input_ids.shape[0]} given; the benchmark runs batch size 1")
        out = self.model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        new = out[0, input_ids.shape[1] :]
        n_visual = int(self.visual_mask(input_ids).sum())
        return Generation(
            text=self.tokenizer.decode(new, skip_special_tokens=True).strip(),
            n_generated=int(new.numel()),
            n_visual=n_visual,
            n_text=int(input_ids.shape[1]) - n_visual,
        )
