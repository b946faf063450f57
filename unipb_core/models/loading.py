"""``load_model(spec)``: one loading path for real checkpoints and tiny offline models.

Two kinds of tiny model, both loaded through the very same ``from_pretrained`` path as a real checkpoint
(so the tests exercise the code that loads LLaVA-1.5-7B or Qwen2.5-VL-7B):

- ``tiny:<family>``: trained on the synthetic suite (``unipb train-tiny``) and shipped in the package as a
  ``save_pretrained`` folder, ``models/weights/<family>`` (float16 on disk, float32 once loaded).
- ``tiny-random:<family>``: the random initialisation, built once per (family, seed, builder version) and
  written to a cache directory. Tests use it where they need the builder's exact weights.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoProcessor,
    InternVLForConditionalGeneration,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    Qwen2_5_VLForConditionalGeneration,
)
from transformers.utils import logging as hf_logging

from . import internvl, llava, qwen2_5_vl
from .base import FamilyAdapter
from .processors import InternVLImageProcessor, Qwen2_5_VLImageProcessor

# Bump when a tiny builder changes, so stale caches are never reused (and retrain the shipped weights).
TINY_BUILD_VERSION = 2
# The trained tiny models shipped with the package, one save_pretrained folder per family.
TRAINED_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class Family:
    """What the loader needs to know about one model family."""

    name: str
    model_class: type
    adapter_class: type[FamilyAdapter]
    image_only_processor: type  # fallback when AutoProcessor cannot build the stock one (no torchvision)
    build_tiny: Callable[[int], tuple]


# Keyed by ``config.model_type``: the family is detected from the config, never from the name.
FAMILIES: dict[str, Family] = {
    "llava": Family("llava", LlavaForConditionalGeneration, llava.LlavaAdapter, LlavaProcessor, llava.build_tiny),
    "internvl": Family(
        "internvl",
        InternVLForConditionalGeneration,
        internvl.InternVLAdapter,
        InternVLImageProcessor,
        internvl.build_tiny,
    ),  # fmt: skip
    "qwen2_5_vl": Family(
        "qwen2_5_vl",
        Qwen2_5_VLForConditionalGeneration,
        qwen2_5_vl.Qwen2_5_VLAdapter,
        Qwen2_5_VLImageProcessor,
        qwen2_5_vl.build_tiny,
    ),  # fmt: skip
}

KNOWN_CHECKPOINTS = (
    "llava-hf/llava-1.5-7b-hf",
    "OpenGVLab/InternVL3-1B-hf",
    "OpenGVLab/InternVL3-8B-hf",
    "Qwen/Qwen2.5-VL-3B-Instruct",
    "Qwen/Qwen2.5-VL-7B-Instruct",
)
TINY_SPECS = tuple(f"tiny:{name}" for name in FAMILIES)  # trained, shipped in models/weights
TINY_RANDOM_SPECS = tuple(f"tiny-random:{name}" for name in FAMILIES)  # random init, built into the cache


class UnknownModelError(ValueError):
    """A model spec that names no supported family."""


def accepted_specs() -> str:
    return (
        f"a tiny spec ({', '.join([*TINY_SPECS, *TINY_RANDOM_SPECS])}), a hub id of a supported checkpoint "
        f"({', '.join(KNOWN_CHECKPOINTS)}), or a local directory holding a config.json of model_type "
        f"{', '.join(FAMILIES)}"
    )


def tiny_cache_dir() -> Path:
    """Where tiny models are written: ``$UNIPB_CACHE`` or ``~/.cache/unipb``."""
    return Path(os.environ.get("UNIPB_CACHE", Path.home() / ".cache" / "unipb")) / "tiny"


def _family_of(spec: str, model_type: str) -> Family:
    if model_type not in FAMILIES:
        raise UnknownModelError(
            f"model {spec!r}: config model_type {model_type!r} is not a supported family; accepted: "
            f"{', '.join(FAMILIES)}"
        )
    return FAMILIES[model_type]


def detect_family(path_or_id: str) -> Family:
    """Family of a checkpoint from its config (a local directory is read without transformers)."""
    path = Path(path_or_id)
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise UnknownModelError(f"model {path_or_id!r}: directory has no config.json; expected {accepted_specs()}")
        model_type = json.loads(config_file.read_text()).get("model_type", "<missing>")
        return _family_of(path_or_id, model_type)
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path_or_id)
    except (OSError, ValueError) as exc:
        # The id itself is no suggestion: a known checkpoint that is not in the offline cache fails here too.
        candidates = [s for s in (*TINY_SPECS, *KNOWN_CHECKPOINTS) if s != path_or_id]
        close = difflib.get_close_matches(path_or_id, candidates, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"model {path_or_id!r} is neither a local directory nor a reachable hub checkpoint ({exc}).{hint} "
            f"Accepted: {accepted_specs()}"
        ) from exc
    return _family_of(path_or_id, config.model_type)


def ensure_tiny(family_name: str, seed: int = 0) -> Path:
    """Build the tiny model of ``family_name`` once and return its directory."""
    family = FAMILIES[family_name]
    target = tiny_cache_dir() / f"{family_name}-seed{seed}-v{TINY_BUILD_VERSION}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build into a private directory and rename: concurrent processes never see half a model.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model, processor = family.build_tiny(seed)
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:  # another process won the race; its copy is identical
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


class MissingWeightsError(FileNotFoundError):
    """The shipped weights of a trained tiny model are not where the package keeps them."""


def trained_tiny_dir(family_name: str) -> Path:
    """The shipped ``save_pretrained`` folder of the trained tiny ``family_name`` model."""
    path = TRAINED_DIR / family_name
    if not (path / "config.json").is_file() or not any(path.glob("*.safetensors")):
        raise MissingWeightsError(
            f"tiny:{family_name}: the trained weights are missing from {path} (the package data was not "
            f"installed?). Re-create them with `unipb train-tiny --family {family_name}` (see "
            f"docs/tiny-models.md), or use tiny-random:{family_name} for the untrained model."
        )
    return path


def _tiny_family(spec: str) -> str:
    name = spec.split(":", 1)[1]
    if name not in FAMILIES:
        specs = TINY_SPECS if spec.startswith("tiny:") else TINY_RANDOM_SPECS
        close = difflib.get_close_matches(spec, [*TINY_SPECS, *TINY_RANDOM_SPECS], n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModelError(f"unknown tiny model {spec!r}.{hint} Accepted: {', '.join(specs)}")
    return name


def _load_processor(family: Family, path: str):
    try:
        processor = AutoProcessor.from_pretrained(path)
    except (OSError, ValueError, ImportError, TypeError):
        processor = None
    # AutoProcessor silently returns a bare tokenizer where it cannot build the stock processor.
    if processor is None or not hasattr(processor, "image_processor"):
        processor = family.image_only_processor.from_pretrained(path)
    return processor


def load_model(
    spec: str,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    *,
    attn_implementation: str = "sdpa",
    tiny_seed: int = 0,
) -> FamilyAdapter:
    """Load a model by spec and return its family adapter.

    Parameters
    ----------
    spec
        ``tiny:<family>`` (trained, shipped), ``tiny-random:<family>`` (random init), a hub id, or a local
        checkpoint directory (family read from its config).
    device
        Defaults to CUDA when available, else CPU.
    dtype
        Defaults to bfloat16 on CUDA and float32 on CPU.
    attn_implementation
        ``"sdpa"`` (default), ``"eager"`` or ``"flash_attention_2"``; recorded with every run.
    tiny_seed
        Seed of the random initialisation (``tiny-random:`` specs only).
    """
    if not isinstance(spec, str) or not spec:
        raise UnknownModelError(f"model spec must be a non-empty string; accepted: {accepted_specs()}")
    if spec.startswith("tiny:"):
        name = _tiny_family(spec)
        path, family = str(trained_tiny_dir(name)), FAMILIES[name]
    elif spec.startswith("tiny-random:"):
        name = _tiny_family(spec)
        path, family = str(ensure_tiny(name, tiny_seed)), FAMILIES[name]
    else:
        path, family = spec, detect_family(spec)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    elif isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    hf_logging.disable_progress_bar()  # one bar per load drowns the runner's per-cell progress bars
    model = family.model_class.from_pretrained(path, dtype=dtype, attn_implementation=attn_implementation)
    model.to(device)
    return family.adapter_class(model, _load_processor(family, path), spec)
