"""The pruning package's error, at the bottom of its imports: the engine and any method raise it."""


class PruningError(ValueError):
    """A configuration or input the engine cannot apply (names the problem and what is accepted)."""
