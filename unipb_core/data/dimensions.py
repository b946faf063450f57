"""The six ability dimensions of the study.

Which dataset measures which lives on each dataset's spec (``DatasetSpec.dimension``); the dataset -> dimension
map is derived from the registry (``unipb_core.data.DATASET_DIMENSION``), so adding a dataset touches only its
own file.
"""

from __future__ import annotations

DIMENSIONS: tuple[str, ...] = ("comprehensive", "ocr", "multidisciplinary", "hallucination", "math", "instruction")

# What a spec reports as its dimension when its Samples carry their own (the synthetic suite).
ALL_DIMENSIONS = "all"


def check_dimension(dimension: str) -> str:
    """Return ``dimension`` unchanged, or raise naming the accepted keys (a typo must not filter to nothing)."""
    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown dimension {dimension!r}; expected one of {', '.join(DIMENSIONS)}")
    return dimension
