"""The tokens of resized images (the ``downsample`` baseline): where they belong, and how extra ones are averaged.

``FamilyAdapter.encode_downsampled`` resizes each image so that the stock vision pass yields its sample's share
of the budget; this module holds the arithmetic around it that is the same for every family: which images belong
to which sample of a batch, how a sample's budget is shared among them, and the averaging of runs of
raster-adjacent tokens. ``Downsampled`` is what the method reads to put the tokens in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Downsampled:
    """Where one sample's tokens from its resized images belong (the ``downsample`` baseline).

    The tokens themselves reach the LLM input through the stock forward: ``encode_downsampled`` hands them
    to it as the sample's first ``K`` visual tokens, in the order listed here.

    Attributes
    ----------
    units : LongTensor ``[K]``
        The image (InternVL: tile) each token comes from, an index into ``unit_grids``.
    centres : Tensor ``[K, 2]``
        Centre of the image area each token covers, as fractional ``(row, col)`` in its unit's original
        visual-token grid.
    unit_grids : list of (rows, cols)
        Original visual-token grid of every unit, in visual-token order (units are contiguous, raster order).
    """

    units: torch.Tensor
    centres: torch.Tensor
    unit_grids: list[tuple[int, int]]


def run_means(x: torch.Tensor, k: int) -> torch.Tensor:
    """Means of ``k`` runs of adjacent rows of ``x`` (``[M, ...]``, ``M >= k``): run ``o`` covers rows
    ``floor(o M / k) .. floor((o + 1) M / k)``, so runs hold ``M // k`` or ``M // k + 1`` rows.

    Vectorised with the indices built on ``x``'s device (no host sync); each run is averaged by ``mean`` over
    exactly its own rows, so the result is a per-run loop's to the bit (the token centres decide ties between
    anchors, so they must not move by a rounding).
    """
    m = x.shape[0]
    if m == k:
        return x
    edges = torch.arange(k + 1, device=x.device) * m // k
    out = None
    for length in (m // k, m // k + 1):  # every run has one of the two lengths
        rows = (edges[:-1, None] + torch.arange(length, device=x.device)).clamp(max=m - 1)
        means = x[rows].mean(dim=1)
        fits = (edges[1:] - edges[:-1] == length).view(-1, *[1] * (x.dim() - 1))
        out = means if out is None else torch.where(fits, means, out)
    return out


def units_of_samples(grids: list[tuple[int, int]], counts: list[int]) -> list[range] | None:
    """The units (images; InternVL tiles) of each sample of a batch, which has ``counts[b]`` visual tokens, as
    ranges over ``grids`` (every unit's token grid, in visual-token order); None if they do not line up."""
    out, start = [], 0
    for n in counts:
        stop, covered = start, 0
        while covered < n and stop < len(grids):
            covered += grids[stop][0] * grids[stop][1]
            stop += 1
        if covered != n:
            break
        out.append(range(start, stop))
        start = stop
    return out if len(out) == len(counts) and start == len(grids) else None


def shares(sizes: list[int], total: int) -> list[int]:
    """``total`` split in proportion to ``sizes`` (largest remainder; ties to the lower index)."""
    exact = [total * n / sum(sizes) for n in sizes]
    out = [int(e) for e in exact]
    for i in sorted(range(len(sizes)), key=lambda i: (-(exact[i] - out[i]), i))[: total - sum(out)]:
        out[i] += 1
    return out
