"""Image-only processors for Qwen2.5-VL and InternVL.

The stock ``Qwen2_5_VLProcessor`` and ``InternVLProcessor`` insist on a video processor, which
needs torchvision; torchvision does not import on a CPU-only machine with the pinned torch. These
subclasses keep the stock ``__call__`` (placeholder expansion, ``mm_token_type_ids``) and drop
only the video part, so the same code path serves tiny models and real checkpoints everywhere.
Trap (docs/footguns.md): ``AutoProcessor.from_pretrained`` on a folder saved from one of these
silently returns only the tokenizer, so load them with their own ``from_pretrained``.
"""

from __future__ import annotations

import re

from transformers import InternVLProcessor, Qwen2_5_VLProcessor
from transformers.processing_utils import ProcessorMixin


class Qwen2_5_VLImageProcessor(Qwen2_5_VLProcessor):
    """``Qwen2_5_VLProcessor`` without the video processor."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


class InternVLImageProcessor(InternVLProcessor):
    """``InternVLProcessor`` without the video processor."""

    def __init__(self, image_processor=None, tokenizer=None, image_seq_length: int = 256, chat_template=None, **kwargs):
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)
        self.image_seq_length = image_seq_length
        self.start_image_token = tokenizer.start_image_token
        self.end_image_token = tokenizer.end_image_token
        self.start_image_token_id = tokenizer.start_image_token_id
        self.end_image_token_id = tokenizer.end_image_token_id
        self.image_token = tokenizer.context_image_token
        self.video_token = tokenizer.video_token
        self.image_token_id = tokenizer.context_image_token_id
        self.multimodal_pattern = re.compile(
            f"(?P<image>{re.escape(self.image_token)})|(?P<video>{re.escape(self.video_token)})"
        )
