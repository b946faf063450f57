"""Visual-token pruning: the method registry, the context a method sees, and the engine."""

from .base import PruningMethod, ScoredMethod, Selection, Stage, n_keep_for, top_k
from .context import PruneContext
from .engine import PruningEngine, PruningError
from .registry import UnknownMethodError, available, get, method_class, register

__all__ = [
    "PruneContext",
    "PruningEngine",
    "PruningError",
    "PruningMethod",
    "ScoredMethod",
    "Selection",
    "Stage",
    "UnknownMethodError",
    "available",
    "get",
    "method_class",
    "n_keep_for",
    "register",
    "top_k",
]
