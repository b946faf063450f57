"""Imports every method module so that ``@register`` fills the registry (one line per method)."""

from . import (  # noqa: F401  (one line per method, alphabetical)
    dart,
    divprune,
    fastv,
    fitprune,
    gprune,
    pdrop,
    pool,
    prumerge,
    prumerge_plus,
    random_intra,
    random_pre,
    visionzip,
    vispruner,
    vtw,
)
