"""``Sample`` lives at the bottom of the import graph (``unipb_core.sample``) so that ``metrics`` can use it
without importing ``data``; this module keeps the ``unipb_core.data.sample`` import path."""

from unipb_core.sample import Sample

__all__ = ["Sample"]
