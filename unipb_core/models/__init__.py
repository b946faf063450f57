"""Model loading and the family adapters (LLaVA-1.5, InternVL3, Qwen2.5-VL)."""

from .base import FamilyAdapter, Generation, ModelInputError
from .loading import (
    FAMILIES,
    KNOWN_CHECKPOINTS,
    TINY_RANDOM_SPECS,
    TINY_SPECS,
    MissingWeightsError,
    UnknownModelError,
    detect_family,
    ensure_tiny,
    load_model,
)

__all__ = [
    "FAMILIES",
    "KNOWN_CHECKPOINTS",
    "TINY_RANDOM_SPECS",
    "TINY_SPECS",
    "FamilyAdapter",
    "Generation",
    "MissingWeightsError",
    "ModelInputError",
    "UnknownModelError",
    "detect_family",
    "ensure_tiny",
    "load_model",
]
