"""Visual-token pruning: the method registry, the context a method sees, and the engine.

Importing the package fills the registry: ``methods`` imports every method module (one line each), and each
registers itself with ``@register`` on import, the way ``data/__init__`` fills the dataset registry.
"""

from . import methods  # noqa: F401  (fills the registry)
from .base import PruningMethod, ScoredMethod, Selection, Stage, n_keep_for, top_k
from .context import PruneContext
from .engine import PruningEngine
from .errors import PruningError
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
