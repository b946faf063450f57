"""Building blocks of the official aggregates: accuracy, grouped accuracy, binary detection metrics.

Every number returned here is a percentage (0-100) except rates named ``*_rate`` (a fraction in [0, 1]).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence

from unipb_core.metrics.score import Judge, SampleScore, judge_name
from unipb_core.sample import Sample  # the shared type sits below both metrics and data

log = logging.getLogger(__name__)


def pct(values: Iterable[float]) -> float:
    """Mean of ``values`` x 100; NaN for no values (an empty subset has no accuracy, not 0 %)."""
    values = list(values)
    return 100.0 * sum(values) / len(values) if values else float("nan")


def accuracy(scores: Sequence[SampleScore]) -> float:
    """Mean per-sample score in percent."""
    return pct(s.correct for s in scores)


def group_all_correct(keys: Sequence[Hashable], scores: Sequence[SampleScore]) -> float:
    """Percentage of groups whose every member is fully correct (MME acc+, CircularEval, fAcc, qAcc)."""
    groups: dict[Hashable, bool] = {}
    for key, score in zip(keys, scores, strict=True):
        groups[key] = groups.get(key, True) and score.correct >= 1.0
    return pct(float(ok) for ok in groups.values())


def split_by(
    keys: Sequence[Hashable], samples: Sequence[Sample], scores: Sequence[SampleScore]
) -> dict[Hashable, tuple[list[Sample], list[SampleScore]]]:
    """``{key: (samples, scores)}`` in first-seen key order, for per-category breakdowns."""
    parts: dict[Hashable, tuple[list, list]] = defaultdict(lambda: ([], []))
    for key, sample, score in zip(keys, samples, scores, strict=True):
        parts[key][0].append(sample)
        parts[key][1].append(score)
    return dict(parts)


def per_category_accuracy(prefix: str, keys: Sequence[str], scores: Sequence[SampleScore]) -> dict[str, float]:
    """``{f"{prefix}/{key}": accuracy}`` for each key value present."""
    by_key: dict[str, list[float]] = defaultdict(list)
    for key, score in zip(keys, scores, strict=True):
        by_key[key].append(score.correct)
    return {f"{prefix}/{key}": pct(values) for key, values in by_key.items()}


def binary_metrics(gold: Sequence[bool], predicted: Sequence[bool]) -> dict[str, float]:
    """Precision, recall, F1 and yes-ratio with "yes" as the positive class (POPE's definition).

    Accuracy is not computed here: it comes from the per-sample scores, where an unreadable answer is wrong
    even when the gold answer is "no". Zero denominators give 0, as in POPE's and VLMEvalKit's scripts.
    """
    pairs = list(zip(gold, predicted, strict=True))
    tp = sum(g and p for g, p in pairs)
    fp = sum(p and not g for g, p in pairs)
    fn = sum(g and not p for g, p in pairs)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    yes_ratio = sum(predicted) / len(pairs) if pairs else float("nan")
    return {"precision": 100.0 * precision, "recall": 100.0 * recall, "f1": 100.0 * f1, "yes_ratio": 100.0 * yes_ratio}


def parse_failure_rate(scores: Sequence[SampleScore]) -> float:
    """Fraction (0-1) of predictions the rules could not read."""
    return sum(not s.parsed for s in scores) / len(scores) if scores else 0.0


def finish(
    dataset: str,
    metrics: dict[str, float],
    samples: Sequence[Sample],
    scores: Sequence[SampleScore],
    headline: float,
    judge: Judge | None = None,
) -> dict[str, float | str]:
    """Add the keys every aggregate carries: ``n``, ``parse_failure_rate``, ``headline`` and ``judge``.

    Also logs one warning naming the unparsed samples, so format drift is visible in the run log and not
    only in a number.
    """
    if len(samples) != len(scores):
        raise ValueError(f"{dataset}: {len(samples)} samples but {len(scores)} scores; pass them in the same order")
    failed = [s.id for s, sc in zip(samples, scores, strict=True) if not sc.parsed]
    if failed:
        shown = ", ".join(failed[:5]) + (" ..." if len(failed) > 5 else "")
        log.warning(
            "%s: %d/%d predictions had no answer the rules could read (field 'prediction'; ids %s)",
            dataset,
            len(failed),
            len(scores),
            shown,
        )
    result: dict[str, float | str] = dict(metrics)
    result.update(n=float(len(scores)), parse_failure_rate=parse_failure_rate(scores), headline=float(headline))
    name = judge_name(judge)
    if name is not None:
        result["judge"] = name
    return result
