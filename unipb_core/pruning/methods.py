"""Imports every method module so that ``@register`` fills the registry (one line per method)."""

from . import (  # noqa: F401  (one line per method, alphabetical)
    dart,
    divprune,
    downsample,
    fastv,
    fitprune,
    gprune,
    mustdrop,
    pdrop,
    pool,
    prumerge,
    prumerge_plus,
    random_intra,
    random_pre,
    sparsevlm,
    visionzip,
    vispruner,
    vtw,
)
