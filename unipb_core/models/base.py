"""The model adapter: one small interface over the three families' stock transformers classes.

Everything family-specific (chat template, processor call, where the decoder and vision tower
live, the position scheme) is answered here or in ``models/<family>.py``; the pruning engine,
runner and notebooks only talk to this interface.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from PIL import Image
from transformers import BatchFeature

from .decoding import decoding
from .resized import Downsampled, run_means, shares, units_of_samples
from .vision_attention import VisionAttention, capture_input


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


class RoutedMethod:
    """Handle of ``FamilyAdapter.route_image_features``: ``remove()`` restores the stock method."""

    def __init__(self, owner: torch.nn.Module, name: str, route: Any):
        self.owner, self.name, self.route = owner, name, route

    def remove(self) -> None:
        if vars(self.owner).get(self.name) is self.route:
            delattr(self.owner, self.name)


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
    def vision_encoder_layers(self) -> torch.nn.ModuleList:
        """The vision encoder's transformer layers, for families whose feature layer is one of them."""
        raise NotImplementedError(f"{type(self).__name__} does not expose vision-encoder attention")

    def vision_attention_hooks(self, store: dict) -> list:
        """Register forward pre-hooks that keep references to the encoder inputs ``vision_attention`` needs.

        Default: the input of the feature layer (``store["layer"]``), from which ``vision_attention``
        recomputes that layer's attention rows.
        """
        layers = self.vision_encoder_layers()
        layer = layers[self.vision_feature_layer_index(len(layers))]
        return [layer.register_forward_pre_hook(capture_input(store, "layer"), with_kwargs=True)]

    def vision_attention(self, store: dict) -> VisionAttention:
        """Recompute the feature layer's attention from what ``vision_attention_hooks`` captured."""
        raise NotImplementedError(f"{type(self).__name__} does not expose vision-encoder attention")

    # ----------------------------------------------------------------- encoding resized images (downsample)
    # Positional parameters of the stock ``get_image_features`` call, in order (the rest arrive by keyword).
    _image_call_args: ClassVar[tuple[str, ...]] = ("pixel_values",)

    def route_image_features(self, route: Any) -> RoutedMethod:
        """Make the model's image encoding a call of ``route(encode, *args, **kwargs)``, where ``encode`` is the
        stock ``get_image_features``, until the handle's ``remove()``.

        Each family's forward, and ``generate`` before the prefill, call ``get_image_features`` on the inner model:
        an instance attribute of that name shadows the method, so the stock code runs unchanged around whatever
        ``route`` returns. It keeps the stock signature, which ``generate`` reads to pick the encoder's inputs.
        """
        inner = self.model.model
        encode = inner.get_image_features
        routed = functools.update_wrapper(functools.partial(route, encode), encode)
        inner.get_image_features = routed
        return RoutedMethod(inner, "get_image_features", routed)

    def encode_downsampled(
        self, encode: Any, args: tuple, kwargs: dict, samples: list[tuple[int, int]]
    ) -> tuple[Any, list[Downsampled]]:
        """Run the stock image-encoding call ``encode(*args, **kwargs)`` on resized images: sample ``b`` of the batch
        (``samples[b] = (n_visual, n_keep)``, batch order; samples own contiguous runs of units) yields ``n_keep``
        tokens.

        A sample's budget is shared among its units (images; InternVL tiles) in proportion to their token counts
        (largest remainder). Each unit is resized (bicubic, antialiased, on the processed pixels: the per-channel
        normalisation is affine, so it commutes with the resampling) to the family's smallest feasible token grid
        holding at least its budget (``_coarse_grid``); the units are encoded by the stock call, one call per
        distinct grid (``_encode_resized``). Extra tokens are removed by averaging runs of raster-adjacent tokens
        (``run_means``: at most ``M - k`` runs have two tokens, the rest stay untouched).

        Returns the call's output, its ``pooler_output`` holding each sample's ``n_keep`` tokens in its first
        ``n_keep`` visual-token rows (zeros in the rest, which the pre-LLM stage drops), and each sample's
        ``Downsampled`` (where its tokens belong).
        """
        call = dict(zip(self._image_call_args, args, strict=False)) | kwargs
        grids = self._downsample_units(call)
        jobs, plans, geometry = [], [], []
        per_sample = units_of_samples(grids, [n for n, _ in samples])
        if per_sample is None:
            raise ModelInputError(
                f"the images of the vision input ({[r * c for r, c in grids]} visual tokens each) do not match the "
                f"prompts' visual tokens ({[n for n, _ in samples]} per sample) image by image"
            )
        for units, (n_visual, n_keep) in zip(per_sample, samples, strict=True):
            own = [grids[u] for u in units]
            members, centres, plan = [], [], []
            for i, ((rows, cols), k) in enumerate(zip(own, shares([r * c for r, c in own], n_keep), strict=True)):
                if k == 0:
                    continue
                gh, gw = self._coarse_grid(rows, cols, k)
                ii, jj = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
                cells = torch.stack([(ii + 0.5) * rows / gh - 0.5, (jj + 0.5) * cols / gw - 0.5], -1).reshape(-1, 2)
                centres.append(run_means(cells, k))
                members.append(torch.full((k,), i, dtype=torch.long))
                plan.append((len(jobs), k))
                jobs.append((units[i], (gh, gw)))
            geometry.append(Downsampled(torch.cat(members) if members else torch.zeros(0, dtype=torch.long),
                                        torch.cat(centres) if centres else torch.zeros(0, 2), own))  # fmt: skip
            plans.append((plan, n_visual - n_keep))
        with torch.no_grad():
            out, coarse = self._encode_resized(encode, call, grids, jobs)
            pieces, width = [], self.text_config.hidden_size
            for plan, n_dropped in plans:
                pieces += [run_means(coarse[job].float(), k).to(self.dtype) for job, k in plan]
                pieces.append(torch.zeros(n_dropped, width, device=self.device, dtype=self.dtype))
            tokens = torch.cat(pieces)
        # The stock forward concatenates a list (LLaVA, Qwen2.5-VL) or takes one tensor (InternVL).
        out.pooler_output = tokens if isinstance(out.pooler_output, torch.Tensor) else (tokens,)
        return out, geometry

    def _encode_resized(
        self, encode: Any, call: dict, grids: list[tuple[int, int]], jobs: list[tuple[int, tuple[int, int]]]
    ) -> tuple[Any, list[torch.Tensor]]:
        """Projected tokens ``[gh * gw, D]`` (raster order) of each job ``(unit, (gh, gw))``: unit ``unit`` (of
        ``grids``) resized to a ``gh x gw`` token grid, through the stock call, one call per distinct grid; and the
        output of the last call."""
        pixels, size = call["pixel_values"], self._token_pixels()
        rest = {key: value for key, value in call.items() if key != "pixel_values"} | self._resized_call_kwargs
        out, coarse = None, [None] * len(jobs)
        for gh, gw in dict.fromkeys(grid for _, grid in jobs):
            members = [j for j, (_, grid) in enumerate(jobs) if grid == (gh, gw)]
            batch = torch.cat([pixels[jobs[j][0] : jobs[j][0] + 1] for j in members])
            out = encode(pixel_values=self._resize(batch, gh * size, gw * size), **rest)
            for j, tokens in zip(members, out.pooler_output, strict=True):
                coarse[j] = tokens
        return out, coarse

    # Extra keyword arguments of the stock call on resized pixels (LLaVA: interpolated position embeddings).
    _resized_call_kwargs: ClassVar[dict] = {}

    def _token_pixels(self) -> int:
        """Side in pixels of the image square one visual token covers."""
        raise NotImplementedError(f"{type(self).__name__} cannot encode resized images")

    def _downsample_units(self, call: dict) -> list[tuple[int, int]]:
        """Visual-token grid of each unit (image; InternVL: tile) of a stock image-encoding call, in token order."""
        raise NotImplementedError(f"{type(self).__name__} cannot encode resized images")

    def _coarse_grid(self, rows: int, cols: int, k: int) -> tuple[int, int]:
        """The token grid to encode a ``rows x cols`` unit at for ``k`` tokens: the unit's aspect with
        ``round(sqrt(k rows / cols))`` rows and as few columns as hold ``k`` tokens."""
        gh = max(1, math.floor(math.sqrt(k * rows / cols) + 0.5))
        return gh, math.ceil(k / gh)

    @staticmethod
    def _resize(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Bicubic, antialiased resize of ``[B, C, H, W]`` processed pixels (a no-op at the same size)."""
        if tuple(pixels.shape[-2:]) == (height, width):
            return pixels
        out = F.interpolate(pixels.float(), size=(height, width), mode="bicubic", antialias=True, align_corners=False)
        return out.to(pixels.dtype)

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

    def build_batch(self, items: list[tuple[list[Any], str]]) -> BatchFeature:
        """Processor inputs for a batch of samples ``[(images, text), ...]``, left-padded (for generation).

        Each row holds the same tokens as ``build_inputs`` gives that sample alone, after its left padding.
        """
        if not items:
            raise ModelInputError("build_batch: no samples given; a batch has at least one sample")
        if len(items) == 1:
            return self.build_inputs(*items[0])
        images, prompts = [], []
        for i, (sample_images, text) in enumerate(items):
            if not sample_images:
                raise ModelInputError(f"build_batch: sample {i} has no image (this is a visual-token benchmark)")
            rgb = [to_rgb(im, name=f"sample {i} image {j}") for j, im in enumerate(sample_images)]
            images.extend(rgb)
            prompts.append(self.format_prompt(text, len(rgb)))
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        try:
            inputs = self.processor(images=images, text=prompts, return_tensors="pt", padding=True,
                                    **self._processor_kwargs())  # fmt: skip
        finally:
            self.tokenizer.padding_side = side
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

    def batch_grids(self, inputs: BatchFeature) -> list[list[tuple[int, int]]]:
        """``visual_grids`` of each sample of a batch (``build_batch``), in batch order."""
        ids = inputs["input_ids"]
        if ids.shape[0] == 1:
            return [self.visual_grids(inputs)]
        grids, image = [], 0
        for b in range(ids.shape[0]):
            row = {"input_ids": ids[b : b + 1]}
            n_images = len(self.visual_spans(ids[b]))
            if "image_grid_thw" in inputs:
                row["image_grid_thw"] = inputs["image_grid_thw"][image : image + n_images]
            image += n_images
            grids.append(self.visual_grids(row))
        return grids

    # ----------------------------------------------------------------- generation
    @torch.inference_mode()
    def generate(self, inputs: BatchFeature, max_new_tokens: int = 16, decode: str = "eager") -> Generation:
        """Greedy decoding of one sample; returns the text and the token counts the records need."""
        input_ids = inputs["input_ids"]
        if input_ids.shape[0] != 1:
            raise ModelInputError(
                f"generate: batch size {input_ids.shape[0]} given; use generate_batch for batches (build_batch)"
            )
        return self.generate_batch(inputs, max_new_tokens=max_new_tokens, decode=decode)[0]

    @torch.inference_mode()
    def generate_batch(self, inputs: BatchFeature, max_new_tokens: int = 16, decode: str = "eager") -> list[Generation]:
        """Greedy decoding of a left-padded batch (``build_batch``); one ``Generation`` per sample, in order.

        A sample's answer ends at its first end-of-sequence token (counted, as at batch size 1, where decoding
        stops there); what the batch decodes after it is padding. ``decode`` picks the cache and decode step
        (``models.decoding``: ``eager``, ``static``, ``graphs``); the answers are the same.
        """
        input_ids = inputs["input_ids"]
        with decoding(decode, input_ids.shape[1], max_new_tokens, self.device) as extra:
            out = self.model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=self.tokenizer.pad_token_id,
                # A generated image placeholder would be taken for a visual token on the next step ("image features
                # and image tokens do not match"); untrained weights do emit it, so it is never a candidate.
                suppress_tokens=[self.image_token_id],
                **extra,
            )
        eos = self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        mask = inputs.get("attention_mask")
        results = []
        for b in range(input_ids.shape[0]):
            new = out[b, input_ids.shape[1] :].tolist()
            if input_ids.shape[0] > 1:
                end = next((i + 1 for i, token in enumerate(new) if token in eos), len(new))
                new = new[:end]
            length = int(mask[b].sum()) if mask is not None else int(input_ids.shape[1])
            n_visual = int(self.visual_mask(input_ids[b]).sum())
            results.append(
                Generation(
                    text=self.tokenizer.decode(new, skip_special_tokens=True).strip(),
                    n_generated=len(new),
                    n_visual=n_visual,
                    n_text=length - n_visual,
                )
            )
        return results
