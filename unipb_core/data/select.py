"""Choosing which samples of a dataset to run: the first N, or a seeded subset that keeps groups whole."""

from __future__ import annotations

import random
from collections.abc import Sequence


def select(groups: Sequence[str], limit: int | None, *, seed: int = 0, subsample: bool = False) -> list[int]:
    """Indices (in dataset order) of the samples to keep.

    Parameters
    ----------
    groups : sequence of str
        Group key of every sample (``sample.meta["group"]``). Paired metrics (MME acc+, CircularEval,
        HallusionBench fAcc/qAcc) are only defined over whole groups.
    limit : int or None
        None keeps everything. Without ``subsample`` the first ``limit`` samples are kept, as a quick look.
    subsample : bool
        Draw whole groups in a seeded random order until at least ``limit`` samples are kept. The last group is
        kept whole, so the result can exceed ``limit`` by less than one group; stopping short instead would
        favour small groups and bias the subset.
    """
    n = len(groups)
    if limit is None or limit >= n:
        return list(range(n))
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if not subsample:
        return list(range(limit))
    members: dict[str, list[int]] = {}
    for i, key in enumerate(groups):
        members.setdefault(key, []).append(i)
    order = list(members)
    random.Random(seed).shuffle(order)
    kept: list[int] = []
    for key in order:
        if len(kept) >= limit:
            break
        kept.extend(members[key])
    return sorted(kept)
