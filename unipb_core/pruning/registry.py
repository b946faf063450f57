"""The method registry: a tiny dict filled by ``@register`` on each method class.

The package's ``__init__`` imports ``methods`` (every method module), so the registry is full as soon as
``unipb_core.pruning`` (or any module in it) is imported; this module imports none of them.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

CATEGORIES = ("baseline", "vit", "llm", "hybrid")

_REGISTRY: dict[str, type] = {}


class UnknownMethodError(ValueError):
    """A method name that is not registered."""


def register(cls: type) -> type:
    """Class decorator: register ``cls`` under its ``name``; category and stage must be declared."""
    name = getattr(cls, "name", None)
    if not name or name in _REGISTRY:
        raise ValueError(f"method class {cls.__name__} needs a unique `name` (got {name!r})")
    if getattr(cls, "category", None) not in CATEGORIES:
        raise ValueError(f"method {name!r}: category must be one of {CATEGORIES}")
    _REGISTRY[name] = cls
    return cls


def available() -> list[str]:
    """Registered method names, sorted."""
    return sorted(_REGISTRY)


def method_class(name: str) -> type:
    """The registered class for ``name``; unknown names list the valid ones and close matches."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownMethodError(f"unknown pruning method {name!r}.{hint} Registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def get(name: str, **params: Any):
    """Instantiate method ``name`` with ``params`` (unknown parameters are an error naming the accepted ones)."""
    cls = method_class(name)

    accepted = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    unknown = sorted(set(params) - accepted)
    if unknown:
        names = ", ".join(sorted(accepted)) or "none"
        raise UnknownMethodError(f"method {name!r}: unknown parameter(s) {', '.join(unknown)}; accepted: {names}")
    return cls(**params)
