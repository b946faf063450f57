"""The dataset registry: a dict filled by a decorator, one entry per dataset file."""

from __future__ import annotations

import difflib

from unipb_core.data.dimensions import ALL_DIMENSIONS, DIMENSIONS
from unipb_core.data.spec import DatasetSpec

_REGISTRY: dict[str, DatasetSpec] = {}


def register(cls: type[DatasetSpec]) -> type[DatasetSpec]:
    """Class decorator: store one (stateless) instance of ``cls`` under ``cls.name``."""
    if cls.name in _REGISTRY:
        raise ValueError(f"dataset {cls.name!r} is registered twice")
    dimension = getattr(cls, "dimension", None)
    if dimension not in (*DIMENSIONS, ALL_DIMENSIONS):
        raise ValueError(
            f"dataset {cls.name!r} declares dimension {dimension!r}; expected one of {', '.join(DIMENSIONS)} "
            f"(or {ALL_DIMENSIONS!r} for a suite whose samples name their own)"
        )
    _REGISTRY[cls.name] = cls()
    return cls


def available() -> list[str]:
    """Registered dataset keys, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> DatasetSpec:
    """The spec registered as ``name``; unknown names raise ValueError listing valid keys and close matches."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown dataset {name!r}; valid keys: {', '.join(available())}.{hint}") from None


def dataset_dimensions() -> dict[str, str]:
    """``{dataset: dimension}`` for every registered dataset that measures one dimension, in registration order.

    The single dataset -> dimension map, derived from the specs (a suite spanning all dimensions is left out).
    """
    return {name: spec.dimension for name, spec in _REGISTRY.items() if spec.dimension != ALL_DIMENSIONS}
