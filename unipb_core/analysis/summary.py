"""The findings table: one row per finding, the one table the CLI, the analysis notebook and the report show."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pandas as pd

from . import random_baseline, sensitivity, variance, winners
from .finding import POOLED, Finding
from .random_baseline import random_baseline_strength
from .records import prepare
from .sensitivity import task_sensitivity
from .variance import ratio_dominance
from .winners import no_single_winner

CLAIMS = (random_baseline.CLAIM, winners.CLAIM, sensitivity.CLAIM, variance.CLAIM)  # the study's order

STATUS = {True: "holds", False: "does not hold", None: "undecided"}
COLUMNS = ["finding", "status", "verdict", "views", "per_model", "input", "evidence"]


def compute_findings(
    df: pd.DataFrame,
    alpha: float = 0.05,
    n_boot: int = 1000,
    seed: int = 0,
    max_win_share: float = 0.5,
    progress: Callable[[str], None] | None = None,
) -> list[Finding]:
    """The study's four findings on per-sample records or cell-level results, in the study's order.

    Parameters
    ----------
    df : DataFrame
        Per-sample records (``SCHEMA``) or cell-level results (``CELL_SCHEMA``).
    alpha, n_boot, seed : see ``random_baseline_strength``.
    max_win_share : see ``no_single_winner``.
    progress : callable, optional
        Called with a short line before each finding is computed (the CLI prints it).
    """
    inputs = prepare(df)  # once: the official cell scores are the costly part
    steps = [
        (CLAIMS[0], lambda: random_baseline_strength(inputs, alpha=alpha, n_boot=n_boot, seed=seed)),
        (CLAIMS[1], lambda: no_single_winner(inputs, max_win_share=max_win_share)),
        (CLAIMS[2], lambda: task_sensitivity(inputs)),
        (CLAIMS[3], lambda: ratio_dominance(inputs)),
    ]
    findings = []
    for i, (claim, compute) in enumerate(steps, 1):
        if progress is not None:
            progress(f"finding {i} of {len(steps)}: {claim}")
        findings.append(compute())
    return findings


def status(holds: object) -> str:
    """ "holds", "does not hold" or "undecided" for a verdict's True / False / None (NaN counts as None)."""
    return STATUS[None if holds is None or holds != holds else bool(holds)]


def _per_model(finding: Finding) -> str:
    """Per-model verdicts, grouped by view when there are several: "(a): m1 holds, m2 undecided; (b): ..."."""
    rows = finding.views[finding.views["scope"] != POOLED]
    if rows.empty:
        return "one model: see the pooled verdict"
    groups = [(view, group) for view, group in rows.groupby("view", sort=False)]
    texts = [", ".join(f"{r.scope} {status(r.holds)}" for r in group.itertuples()) for _, group in groups]
    if len(groups) == 1:
        return texts[0]
    return "; ".join(f"{view.split(' ')[0]}: {text}" for (view, _), text in zip(groups, texts, strict=True))


def _views(finding: Finding) -> str:
    pooled = finding.views[finding.views["scope"] == POOLED]
    return "; ".join(f"{r.view}: {status(r.holds)}" for r in pooled.itertuples())


def findings_table(
    findings: Iterable[Finding] | pd.DataFrame,
    alpha: float = 0.05,
    n_boot: int = 1000,
    seed: int = 0,
    max_win_share: float = 0.5,
) -> pd.DataFrame:
    """One row per finding: its claim, status, verdict, the pooled verdict of each view, per-model verdicts, the
    input level and score it used, and how far to trust it.

    Parameters
    ----------
    findings : iterable of Finding, or DataFrame
        Computed findings (e.g. ``compute_findings(df)``), or records / cell-level results to compute them from
        (with ``alpha``, ``n_boot``, ``seed`` and ``max_win_share``).

    Returns
    -------
    DataFrame
        Columns ``finding`` (the claim), ``status`` (holds / does not hold / undecided), ``verdict``, ``views``,
        ``per_model``, ``input``, ``evidence``; plain strings, ready to show or save.
    """
    if isinstance(findings, pd.DataFrame):
        findings = compute_findings(findings, alpha=alpha, n_boot=n_boot, seed=seed, max_win_share=max_win_share)
    rows = [
        {"finding": f.claim or f.name, "status": status(f.holds), "verdict": f.verdict, "views": _views(f),
         "per_model": _per_model(f), "input": f.level, "evidence": f.evidence}
        for f in findings
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def views_table(findings: Iterable[Finding]) -> pd.DataFrame:
    """Every verdict behind the findings table: one row per (finding, view, scope) with its value and margin.

    Columns ``finding`` (the claim), ``view``, ``scope`` (a model, or "pooled"), ``status``, ``value``,
    ``margin`` (distance to the decision threshold, positive on the "holds" side) and ``note``.
    """
    frames = [
        f.views.assign(finding=f.claim or f.name, status=[status(h) for h in f.views["holds"]])
        for f in findings
        if len(f.views)
    ]
    columns = ["finding", "view", "scope", "status", "value", "margin", "note"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
