"""Decoding the image payloads datasets ship (HF Image structs, raw bytes, base64 TSV cells, file paths)."""

from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path
from typing import Any

from PIL import Image


def _open(payload: Any) -> Image.Image:
    if isinstance(payload, Image.Image):
        return payload
    if isinstance(payload, dict):  # HF Image feature stored undecoded: {"bytes": ..., "path": ...}
        if payload.get("bytes"):
            return Image.open(io.BytesIO(payload["bytes"]))
        if payload.get("path"):
            return Image.open(payload["path"])
        raise ValueError("image struct has neither bytes nor path")
    if isinstance(payload, bytes | bytearray):
        return Image.open(io.BytesIO(payload))
    if isinstance(payload, str) and payload:
        # A short string naming an existing file is a path; anything else is a VLMEvalKit base64 cell.
        if len(payload) < 1024 and Path(payload).is_file():
            return Image.open(payload)
        try:
            return Image.open(io.BytesIO(base64.b64decode(payload, validate=True)))
        except binascii.Error as err:
            raise ValueError("not valid base64 and not an existing file path") from err
    raise ValueError(f"no image data (got {type(payload).__name__})")


def decode_image(payload: Any, *, dataset: str, row_id: str, field: str) -> Image.Image:
    """Return the payload as a fully loaded RGB image, or raise naming the dataset, row and field.

    Decoding happens once, at load time, so a corrupt image fails the load instead of a run hours later.
    """
    try:
        image = _open(payload)
        image.load()
        return image.convert("RGB")
    except Exception as err:  # PIL raises several unrelated types for corrupt data
        raise ValueError(
            f"{dataset}: row {row_id!r}: field {field!r}: cannot decode image ({type(err).__name__}: {err})"
        ) from err
