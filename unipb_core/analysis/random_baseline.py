"""Finding 1: random pruning is a strong baseline (method-minus-random gaps per cell, per stage family).

Per-sample records: a paired sign-flip test and bootstrap CI per cell. Cell-level results with a sample count
``n``: an unpaired two-proportion z-test per cell (conservative for any score in [0, 1]). Without ``n`` no cell
can be tested and the claim is undecided; the gaps are still reported.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.stats import norm

from . import naming
from .finding import POOLED, Finding, views_frame
from .records import CELLS, Inputs, chance_note, excluded_note, prepare, relative_scores, with_note
from .stats import bootstrap_mean_ci, sign_flip_pvalue

CLAIM = "1. Random pruning is a strong baseline"
# Compare a method with random pruning at the same stage: pre-LLM methods with random_pre, methods acting inside
# the LLM (llm, hybrid) with random_intra.
DEFAULT_RANDOM_FOR: dict[str, str] = {
    "vit": naming.RANDOM_PRE,
    "llm": naming.RANDOM_INTRA,
    "hybrid": naming.RANDOM_INTRA,
}
POWER = 0.8  # power at which the minimum detectable difference is quoted
WEAK_MDD = 0.2  # a median minimum detectable difference above 20 points makes the verdict "weak evidence"
HOLDS_SHARE = 0.5  # the claim holds when at least this share of testable cells is not significantly better

_KEYS = ["model", "method", "category", "dataset", "ratio"]
_STATS = [
    "n_samples",
    "n_random",
    "n_seeds_random",
    "score_method",
    "score_random",
    "difference",
    "ci_low",
    "ci_high",
    "p_value",
    "min_p_value",
    "mdd",
]


def _pick_random(category: str, available: list[str], random_for: Mapping[str, str]) -> str | None:
    """The random baseline of the method's stage family if present, else the only random present, else None."""
    wanted = random_for.get(category)
    if wanted in available:
        return wanted
    return available[0] if len(available) == 1 else None


def _paired(method: np.ndarray, random: np.ndarray, n_seeds: int, n_boot: int, rng: np.random.Generator, z: float):
    """Paired gap of one cell: method minus seed-averaged random, sample by sample."""
    diffs = method - random
    low, high = bootstrap_mean_ci(diffs, n_boot, rng)
    sd = float(np.std(diffs, ddof=1)) if diffs.size > 1 else float("nan")
    return {
        "n_samples": len(diffs),
        "n_random": len(diffs),
        "n_seeds_random": n_seeds,
        "score_method": float(method.mean()),
        "score_random": float(random.mean()),
        "difference": float(diffs.mean()),
        "ci_low": low,
        "ci_high": high,
        "p_value": sign_flip_pvalue(diffs, n_boot, rng),
        "min_p_value": 0.5 ** len(diffs),  # every difference positive: the smallest p the test can give
        "mdd": z * sd / np.sqrt(len(diffs)) if sd > 0 else float("nan"),
    }


def _unpaired(method: pd.Series, random: pd.Series, z: float) -> dict[str, float]:
    """One-sided pooled two-proportion z-test of method > random from cell scores and counts.

    For a score in [0, 1] with mean p the per-sample variance is at most p (1 - p) (Bhatia-Davis), so the test
    is conservative for non-binary scores too; ignoring the pairing on shared samples makes it more so.
    """
    p1, p2 = float(method["score"]), float(random["score"])
    n1, n2 = float(method["n"]), float(random["n"])
    out = {"n_samples": n1, "n_random": n2, "n_seeds_random": int(random["n_seeds"]), "score_method": p1}
    out |= {"score_random": p2, "difference": p1 - p2}
    if not (np.isfinite(n1) and np.isfinite(n2) and n1 >= 1 and n2 >= 1):
        return out | {k: float("nan") for k in ("ci_low", "ci_high", "p_value", "min_p_value", "mdd")}
    pooled = (n1 * p1 + n2 * p2) / (n1 + n2)
    se0 = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    p_value = float(norm.sf((p1 - p2) / se0)) if se0 > 0 else (0.0 if p1 > p2 else 1.0)
    se = np.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    half = norm.ppf(0.975) * se
    return out | {
        "ci_low": p1 - p2 - half,
        "ci_high": p1 - p2 + half,
        "p_value": p_value,
        "min_p_value": float(norm.sf(np.sqrt(n1 + n2))),  # method 1, random 0: the largest z the test can give
        "mdd": z * se0 if se0 > 0 else float("nan"),
    }


def random_baseline_strength(
    df: pd.DataFrame,
    alpha: float = 0.05,
    n_boot: int = 1000,
    seed: int = 0,
    random_for: Mapping[str, str] | None = None,
) -> Finding:
    """How often a pruning method is not significantly better than seeded random pruning at its stage.

    Each (model, method, dataset, ratio) cell is compared with the random baseline of its stage family at the
    same (model, dataset, ratio): pre-LLM methods (``vit``) with ``random_pre``, intra-LLM methods (``llm``,
    ``hybrid``) with ``random_intra``; a lone random baseline (e.g. a table's plain "Random") serves all.
    Random's seeds are averaged first: the target is random's expected score.

    Parameters
    ----------
    df : DataFrame
        Per-sample records (``records.SCHEMA``) or cell-level results (``records.CELL_SCHEMA``).
    alpha : float
        Level of the one-sided per-cell test.
    n_boot : int
        Bootstrap resamples for the paired 95 % CI, and random sign patterns when the sign-flip test is not exact.
    seed : int
        Seed of the resampling generator, so the table is reproducible.
    random_for : mapping of str to str, optional
        Method category -> random method key; default ``DEFAULT_RANDOM_FOR``.

    Returns
    -------
    Finding
        ``holds`` is True when at least half the *testable* cells are not significantly better than random.
        A cell is testable when its sample count lets the test reach ``alpha`` at all (``min_p_value < alpha``);
        with no testable cell (one sample per cell, or cell-level results without ``n``) ``holds`` is None.
        Views: the per-cell test per model and pooled. Details: ``effects`` (mean gap per stage family, per model
        and pooled, with a bootstrap CI over cells).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot}")
    random_for = DEFAULT_RANDOM_FOR if random_for is None else random_for
    inputs = prepare(df)
    z = float(norm.ppf(1 - alpha) + norm.ppf(POWER))
    rng = np.random.default_rng(seed)
    if inputs.level == CELLS:
        table, skipped = _cell_level(inputs, random_for, z)
    else:
        table, skipped = _sample_level(inputs, random_for, n_boot, rng, z)
    table["stage"] = table["category"].map(naming.CATEGORY_STAGE).fillna("other")
    table["testable"] = table["min_p_value"] < alpha
    table["significantly_better"] = table["testable"] & (table["p_value"] < alpha)
    return _finding(table, inputs, alpha, skipped, rng)


def _choose(methods: pd.DataFrame, randoms: pd.DataFrame, random_for: Mapping[str, str]) -> tuple[pd.DataFrame, int]:
    """The random baseline each method cell is compared with (column ``random_method``), and how many have none."""
    available = randoms.groupby(["model", "dataset", "ratio"])["method"].agg(lambda m: sorted(set(m))).to_dict()
    cells = methods[_KEYS].drop_duplicates().reset_index(drop=True)
    chosen = [
        _pick_random(category, available.get((model, dataset, ratio), []), random_for)
        for model, _, category, dataset, ratio in cells.itertuples(index=False)
    ]
    cells["random_method"] = pd.Series(chosen, index=cells.index, dtype=object)
    return cells.dropna(subset=["random_method"]), int(sum(c is None for c in chosen))


def _sample_level(
    inputs: Inputs, random_for: Mapping[str, str], n_boot: int, rng: np.random.Generator, z: float
) -> tuple[pd.DataFrame, int]:
    recs = inputs.samples
    keys = ["model", "method", "category", "ratio", "dataset", "sample_id"]
    scores = recs.groupby(keys, sort=True).agg(correct=("correct", "mean"), n_seeds=("seed", "nunique")).reset_index()
    is_random = scores["category"] == "random"
    methods = scores[~is_random & (scores["category"] != "baseline")]
    randoms = scores[is_random].rename(columns={"method": "random_method"})
    cells, skipped = _choose(methods, randoms.rename(columns={"random_method": "method"}), random_for)
    # one merge for all cells: each method sample next to its chosen random's seed-averaged score on that sample
    paired = methods.merge(cells, on=_KEYS).merge(
        randoms.drop(columns="category"), on=["model", "dataset", "ratio", "random_method", "sample_id"]
    )
    rows = []
    for key, cell in paired.groupby([*_KEYS, "random_method"], sort=True):
        stats = _paired(cell["correct_x"].to_numpy(), cell["correct_y"].to_numpy(), int(cell["n_seeds_y"].max()),
                        n_boot, rng, z)  # fmt: skip
        rows.append({**dict(zip([*_KEYS, "random_method"], key, strict=True)), **stats})
    skipped += len(cells) - len(rows)  # a chosen random that shares no sample with the method
    return pd.DataFrame(rows, columns=[*_KEYS, "random_method", *_STATS]), skipped


def _cell_level(inputs: Inputs, random_for: Mapping[str, str], z: float) -> tuple[pd.DataFrame, int]:
    cells = inputs.cells
    by = ["model", "method", "category", "ratio", "dataset"]
    seeds = cells.groupby(by, sort=True).agg(score=("score", "mean"), n=("n", "mean"), n_seeds=("seed", "nunique"))
    seeds = seeds.reset_index()
    is_random = seeds["category"] == "random"
    is_method = ~is_random & (seeds["category"] != "baseline")
    randoms = dict(list(seeds[is_random].groupby(["model", "dataset", "ratio"], sort=True)))
    rows, skipped = [], 0
    for _, cell in seeds[is_method].iterrows():
        pool = randoms.get((cell["model"], cell["dataset"], cell["ratio"]))
        chosen = None if pool is None else _pick_random(cell["category"], sorted(pool["method"].unique()), random_for)
        if chosen is None:
            skipped += 1
            continue
        random = pool[pool["method"] == chosen].iloc[0]
        rows.append({**{k: cell[k] for k in _KEYS}, "random_method": chosen, **_unpaired(cell, random, z)})
    return pd.DataFrame(rows, columns=[*_KEYS, "random_method", *_STATS]), skipped


def _effects(table: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Mean method-minus-random gap per stage family and scope, with a percentile bootstrap CI over cells."""
    rows = []
    scopes = [(m, table[table["model"] == m]) for m in sorted(table["model"].unique())] + [(POOLED, table)]
    for scope, sub in scopes:
        for stage, group in sub.groupby("stage", sort=True):
            diffs = group["difference"].to_numpy(dtype=float)
            low, high = bootstrap_mean_ci(diffs, 1000, rng)
            randoms = ", ".join(sorted(group["random_method"].unique()))
            rows.append({"scope": scope, "stage": stage, "random_method": randoms, "n_cells": len(group),
                         "mean_difference": float(diffs.mean()), "ci_low": low, "ci_high": high,
                         "share_significantly_better": float(group["significantly_better"].mean())})  # fmt: skip
    columns = ["scope", "stage", "random_method", "n_cells", "mean_difference", "ci_low", "ci_high"]
    return pd.DataFrame(rows, columns=[*columns, "share_significantly_better"])


def _scope_verdict(sub: pd.DataFrame) -> tuple[bool | None, float, str]:
    testable = sub[sub["testable"]]
    if testable.empty:
        return None, float("nan"), f"none of {len(sub)} cell(s) can reach alpha"
    share = float(1 - testable["significantly_better"].mean())
    return share >= HOLDS_SHARE, share, f"{int(round(share * len(testable)))} of {len(testable)} testable cells"


def _finding(table: pd.DataFrame, inputs: Inputs, alpha: float, skipped: int, rng: np.random.Generator) -> Finding:
    paired = inputs.level != CELLS
    test = (
        f"one-sided paired sign-flip test per cell, alpha {alpha:g}"
        if paired
        else f"one-sided unpaired two-proportion z-test per cell from the table's n, alpha {alpha:g}"
    )
    view = "per-cell paired test" if paired else "per-cell unpaired test"
    scopes = [(m, table[table["model"] == m]) for m in sorted(table["model"].unique())] + [(POOLED, table)]
    view_rows = []
    for scope, sub in scopes:
        holds, share, note = _scope_verdict(sub)
        view_rows.append({"view": view, "scope": scope, "holds": holds, "value": share,
                          "margin": share - HOLDS_SHARE, "note": note})  # fmt: skip
    effects = _effects(table, rng)
    views = views_frame(view_rows)
    testable = table[table["testable"]]
    n, n_test = len(table), len(testable)
    n_better = int(testable["significantly_better"].sum())
    share = (n_test - n_better) / n_test if n_test else float("nan")
    numbers = {
        "share_not_better": share,
        "n_cells": float(n),
        "n_testable_cells": float(n_test),
        "n_not_better": float(n_test - n_better),
        "n_better": float(n_better),
        "mean_difference": float(table["difference"].mean()) if n else float("nan"),
        "median_mdd": float(testable["mdd"].median()) if n_test else float("nan"),
        "median_n": float(table["n_samples"].median()) if n else float("nan"),
        "n_skipped_cells": float(skipped),
        "n_excluded_rows": float(inputs.n_excluded),
    }
    evidence = _evidence(table, numbers, paired, alpha, skipped, inputs.n_excluded)
    rel = relative_scores(inputs.cells)
    skip_note = f"{skipped} cell(s) without a matching random baseline skipped" if skipped else ""
    notes = (skip_note, chance_note(_only(rel, table)), excluded_note(inputs.n_excluded))
    finding = dict(name="random_baseline_strength", key="share_not_better", numbers=numbers, table=table,
                   details={"effects": effects}, claim=CLAIM, level=inputs.described, evidence=evidence,
                   views=views)  # fmt: skip
    gaps = "; ".join(
        f"{r.stage} methods vs {r.random_method} {100 * r.mean_difference:+.1f} points"
        for r in effects[effects["scope"] == POOLED].itertuples()
    )
    if n == 0:
        sentence = "Cannot say: no pruning method shares a (model, dataset, ratio) cell with a random baseline"
        return Finding(holds=None, verdict=with_note(sentence, *notes), **finding)
    if n_test == 0:
        why = (
            "no cell has enough samples for the test to reach alpha"
            if paired or table["n_samples"].notna().any()
            else "per-cell significance needs per-sample records or a sample count n per cell"
        )
        sentence = f"Cannot say: {why} ({n} cells; mean gaps: {gaps})"
        return Finding(holds=None, verdict=with_note(sentence, *notes), **finding)
    holds = share >= HOLDS_SHARE
    counts = f"{n_test - n_better} of {n_test} testable (model, method, dataset, ratio) cells ({100 * share:.0f} %)"
    if holds:
        sentence = f"Random is a strong baseline: in {counts} the method is not significantly better than random"
    else:
        sentence = f"Random is not a strong baseline here: only in {counts} is the method not significantly better"
    mdd = numbers["median_mdd"]
    power = ""
    if np.isfinite(mdd):
        weak = "weak evidence: " if mdd > WEAK_MDD else ""
        power = f"; {weak}gaps below {100 * mdd:.0f} points are hard to detect at n = {numbers['median_n']:.0f}"
    per = views[views["scope"] != POOLED]
    if len(per) > 1:
        status = {True: "holds", False: "does not hold", None: "undecided"}
        power += "; per model: " + ", ".join(f"{r.scope} {status[r.holds]} ({r.note})" for r in per.itertuples())
    verdict = with_note(f"{sentence} ({test}; mean gaps: {gaps}{power})", *notes)
    return Finding(holds=holds, verdict=verdict, **finding)


def _only(rel, table: pd.DataFrame):
    """``rel`` restricted to the (model, dataset) pairs the table compared."""
    pairs = table[["model", "dataset"]].drop_duplicates()
    return type(rel)(*(t.merge(pairs, on=["model", "dataset"]) for t in rel))


def _evidence(table: pd.DataFrame, numbers: dict, paired: bool, alpha: float, skipped: int, excluded: int) -> str:
    if table.empty:
        return "no comparable cells"
    parts = [f"{int(numbers['n_cells'])} cells, median n = {numbers['median_n']:.0f} samples per cell"]
    if np.isfinite(numbers["median_mdd"]):
        parts.append(
            f"median minimum detectable difference {100 * numbers['median_mdd']:.0f} points "
            f"({100 * POWER:.0f} % power, one-sided alpha {alpha:g})"
        )
    untestable = int((~table["testable"]).sum())
    if untestable:
        why = "too few samples to reach alpha" if paired or table["n_samples"].notna().all() else "no n given"
        parts.append(f"{untestable} cell(s) excluded: {why}")
    if skipped:
        parts.append(f"{skipped} cell(s) without a random baseline at their (model, dataset, ratio) skipped")
    if excluded:
        parts.append(f"{excluded} row(s) with an error or no score excluded")
    return "; ".join(parts)
