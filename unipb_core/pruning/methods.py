"""Imports every method module so that ``@register`` fills the registry (one line per method)."""

from . import random_intra, random_pre  # noqa: F401
