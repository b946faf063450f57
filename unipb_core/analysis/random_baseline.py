"""Finding 1: random pruning is a strong baseline (paired method-minus-random gaps per cell)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from .finding import Finding
from .records import (
    ACCURACY_COLUMNS,
    BASELINE_CATEGORY,
    RANDOM_CATEGORY,
    VANILLA,
    excluded_note,
    sample_scores,
    usable_records,
    with_note,
)
from .stats import bootstrap_mean_ci, sign_flip_pvalue

# Compare a method with random pruning at the same stage: pre-LLM methods with random_pre, methods acting inside
# the LLM (llm, hybrid) with random_intra.
DEFAULT_RANDOM_FOR: dict[str, str] = {"vit": "random_pre", "llm": "random_intra", "hybrid": "random_intra"}

_KEYS = ["model", "method", "category", "dataset", "ratio"]
_STATS = [
    "n_samples",
    "n_seeds_random",
    "accuracy_method",
    "accuracy_random",
    "difference",
    "ci_low",
    "ci_high",
    "p_value",
]


def _pick_random(category: str, available: list[str], random_for: Mapping[str, str]) -> str | None:
    """The random baseline of the method's stage family if present, else the only random present, else None."""
    wanted = random_for.get(category)
    if wanted in available:
        return wanted
    return available[0] if len(available) == 1 else None


def _compare(paired: pd.DataFrame, n_boot: int, rng: np.random.Generator) -> dict[str, float]:
    """Paired gap of one cell: method (suffix _x) minus seed-averaged random (suffix _y), sample by sample."""
    diffs = (paired["correct_x"] - paired["correct_y"]).to_numpy()
    low, high = bootstrap_mean_ci(diffs, n_boot, rng)
    return {
        "n_samples": len(diffs),
        "n_seeds_random": int(paired["n_seeds_y"].max()),
        "accuracy_method": float(paired["correct_x"].mean()),
        "accuracy_random": float(paired["correct_y"].mean()),
        "difference": float(diffs.mean()),
        "ci_low": low,
        "ci_high": high,
        "p_value": sign_flip_pvalue(diffs, n_boot, rng),
    }


def random_baseline_strength(
    df: pd.DataFrame,
    alpha: float = 0.05,
    n_boot: int = 1000,
    seed: int = 0,
    random_for: Mapping[str, str] | None = None,
) -> Finding:
    """How often a pruning method is not significantly better than seeded random pruning.

    For each (model, method, dataset, ratio) cell the method is paired, sample by sample, with the random
    baseline of its stage family at the same (model, dataset, ratio). Random's seeds are averaged per sample
    first: the target is random's expected accuracy, and three seeds are too few to resample.

    Parameters
    ----------
    df : DataFrame
        Tidy per-sample records (see ``records.SCHEMA``).
    alpha : float
        Level of the one-sided paired sign-flip test per cell.
    n_boot : int
        Bootstrap resamples for the 95 % CI, and random sign patterns for the test when it is not exact.
    seed : int
        Seed of the resampling generator, so the table is reproducible.
    random_for : mapping of str to str, optional
        Method category -> random method key; default ``DEFAULT_RANDOM_FOR``.

    Returns
    -------
    Finding
        ``holds`` is True when at least half the cells are not significantly better than random.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot}")
    random_for = DEFAULT_RANDOM_FOR if random_for is None else random_for
    recs, n_excluded = usable_records(df, ACCURACY_COLUMNS)
    scores = sample_scores(recs)
    is_random = scores["category"] == RANDOM_CATEGORY
    is_method = ~is_random & (scores["method"] != VANILLA) & (scores["category"] != BASELINE_CATEGORY)
    randoms = dict(list(scores[is_random].groupby(["model", "dataset", "ratio"], sort=True)))
    rng = np.random.default_rng(seed)
    rows, skipped = [], 0
    for key, cell in scores[is_method].groupby(_KEYS, sort=True):
        model, _, category, dataset, ratio = key
        pool = randoms.get((model, dataset, ratio))
        chosen = None if pool is None else _pick_random(category, sorted(pool["method"].unique()), random_for)
        paired = pd.DataFrame() if chosen is None else cell.merge(pool[pool["method"] == chosen], on="sample_id")
        if paired.empty:
            skipped += 1
            continue
        rows.append({**dict(zip(_KEYS, key, strict=True)), "random_method": chosen, **_compare(paired, n_boot, rng)})
    table = pd.DataFrame(rows, columns=[*_KEYS, "random_method", *_STATS])
    table["significantly_better"] = table["p_value"] < alpha
    return _finding(table, alpha, skipped, n_excluded)


def _finding(table: pd.DataFrame, alpha: float, skipped: int, n_excluded: int) -> Finding:
    n = len(table)
    n_better = int(table["significantly_better"].sum()) if n else 0
    share = (n - n_better) / n if n else float("nan")
    numbers = {
        "share_not_better": share,
        "n_cells": float(n),
        "n_not_better": float(n - n_better),
        "n_better": float(n_better),
        "mean_difference": float(table["difference"].mean()) if n else float("nan"),
        "n_skipped_cells": float(skipped),
        "n_excluded_rows": float(n_excluded),
    }
    skip_note = f"{skipped} cell(s) without a matching random baseline skipped" if skipped else ""
    if n == 0:
        verdict = with_note(
            "Cannot say: no pruning method shares a (model, dataset, ratio) cell with seeded random",
            skip_note,
            excluded_note(n_excluded),
        )
        return Finding("random_baseline_strength", None, verdict, "share_not_better", numbers, table)
    holds = share >= 0.5
    test = f"one-sided paired sign-flip test, alpha {alpha:g}"
    counts = f"{n - n_better} of {n} (model, method, dataset, ratio) cells ({100 * share:.0f} %)"
    gap = f"mean gap {100 * numbers['mean_difference']:+.1f} points"
    if holds:
        sentence = f"Random is a strong baseline: in {counts} the method is not significantly better than seeded random"
    else:
        sentence = f"Random is not a strong baseline here: only in {counts} is the method not significantly better"
    verdict = with_note(f"{sentence} ({test}; {gap})", skip_note, excluded_note(n_excluded))
    return Finding("random_baseline_strength", holds, verdict, "share_not_better", numbers, table)
