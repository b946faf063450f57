"""Layer-averaged schedules for progressive methods (PDrop, FitPrune, SparseVLM, MustDrop).

For a schedule the study's ratio is the *layer-averaged* share of visual tokens removed ("retain
averaged N tokens"): the count entering each decoder layer, averaged over all layers, should be
``N * (1 - ratio)``. A schedule here is a list of intra stages at increasing layers; stage ``j`` keeps
``n_j`` tokens, which stay until the next stage.
"""

from __future__ import annotations

import math


def scaled_layers(num_layers: int, fractions: tuple[float, ...]) -> list[int]:
    """``round(num_layers * f)`` for each fraction, clamped to ``1..num_layers-1`` and deduplicated.

    Layer 0 is excluded because the methods score with layer K-1's attention.
    """
    return sorted({min(max(int(math.floor(num_layers * f + 0.5)), 1), num_layers - 1) for f in fractions})


def check_layers(layers: list[int], num_layers: int, name: str) -> list[int]:
    """Sorted unique layers, each in ``1..num_layers-1`` (scoring reads layer K-1)."""
    layers = sorted(set(int(k) for k in layers))
    bad = [k for k in layers if not 1 <= k < num_layers]
    if not layers or bad:
        raise ValueError(
            f"{name}: layers {bad or layers} invalid; the model has {num_layers} decoder layers and stages need "
            f"1 <= K <= {num_layers - 1} (they score with layer K-1)"
        )
    return layers


def layer_mean(n_visual: int, layers: list[int], counts: list[int], num_layers: int) -> float:
    """Visual tokens entering each decoder layer, averaged over all layers."""
    bounds = [0, *layers, num_layers]
    values = [n_visual, *counts]
    return sum((bounds[i + 1] - bounds[i]) * values[i] for i in range(len(values))) / num_layers


def geometric_counts(n_visual: int, layers: list[int], num_layers: int, ratio: float) -> list[int]:
    """Per-stage counts ``n_j ~ N * lam**j`` whose layer-averaged count is closest to ``N * (1 - ratio)``.

    ``lam`` (the share of the remaining tokens each stage keeps) is solved by bisection on the
    continuous counts (the layer mean grows monotonically with ``lam``); the rounded counts are then
    nudged one token at a time (keeping them non-increasing and within ``0..N``) while that brings the
    integer layer mean closer to the target. When the target is below what the first stage allows
    (``layers[0] / num_layers * N``: the layers before it see every token), the result is ``lam = 0``,
    i.e. all visual tokens are withdrawn at the first stage, the closest reachable mean.
    """
    target = n_visual * (1.0 - ratio)
    m = len(layers)

    def continuous_mean(lam: float) -> float:
        return layer_mean(n_visual, layers, [n_visual * lam ** (j + 1) for j in range(m)], num_layers)

    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if continuous_mean(mid) < target else (lo, mid)
    lam = (lo + hi) / 2
    counts = [min(n_visual, int(math.floor(n_visual * lam ** (j + 1) + 0.5))) for j in range(m)]
    return refine_counts(n_visual, layers, counts, num_layers, target)


def refine_counts(n_visual: int, layers: list[int], counts: list[int], num_layers: int, target: float) -> list[int]:
    """Greedy +-1 moves on single stages while they reduce |layer mean - target| (counts stay monotone)."""
    counts = list(counts)
    while True:
        err = abs(layer_mean(n_visual, layers, counts, num_layers) - target)
        best = None
        for j in range(len(counts)):
            for step in (-1, 1):
                value = counts[j] + step
                upper = n_visual if j == 0 else counts[j - 1]
                lower = counts[j + 1] if j + 1 < len(counts) else 0
                if not lower <= value <= upper:
                    continue
                trial = counts[:j] + [value] + counts[j + 1 :]
                trial_err = abs(layer_mean(n_visual, layers, trial, num_layers) - target)
                if trial_err < err - 1e-9 and (best is None or trial_err < best[0]):
                    best = (trial_err, trial)
        if best is None:
            return counts
        counts = best[1]


def reachable_mean(n_visual: int, layers: list[int], num_layers: int, ratio: float) -> float:
    """The layer-averaged target clamped to what a schedule starting at ``layers[0]`` can reach."""
    return max(n_visual * (1.0 - ratio), layers[0] / num_layers * n_visual)
