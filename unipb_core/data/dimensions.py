"""The six ability dimensions of the study and which dataset measures which (the one place they live)."""

from __future__ import annotations

DIMENSIONS: tuple[str, ...] = ("comprehensive", "ocr", "multidisciplinary", "hallucination", "math", "instruction")

# The paper's grouping (UniPruneBench, Tables 1-3): each real dataset belongs to exactly one dimension.
# The synthetic suite is not listed: it spans all six and each of its Samples names its own dimension.
DATASET_DIMENSION: dict[str, str] = {
    "mme": "comprehensive",
    "mmbench": "comprehensive",
    "seedbench2plus": "ocr",
    "ocrbench": "ocr",
    "scienceqa": "multidisciplinary",
    "pope": "hallucination",
    "hallusionbench": "hallucination",
    "mathvista": "math",
    "mathvision": "math",
    "miabench": "instruction",
}

# What a spec reports as its dimension when its Samples carry their own (the synthetic suite).
ALL_DIMENSIONS = "all"


def check_dimension(dimension: str) -> str:
    """Return ``dimension`` unchanged, or raise naming the accepted keys (a typo must not filter to nothing)."""
    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown dimension {dimension!r}; expected one of {', '.join(DIMENSIONS)}")
    return dimension
