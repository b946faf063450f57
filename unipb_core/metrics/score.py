"""The per-sample score record and the judge hook every dataset scorer shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from unipb_core.sample import Sample  # the shared type sits below both metrics and data

# A judge maps (sample, raw prediction) to an answer the rules can read ("B", "yes", "42"). It is called
# only when the rules fail, and the dataset's own rules are run again on what it returns.
Judge = Callable[[Sample, str], str]


@dataclass(frozen=True)
class SampleScore:
    """How one prediction scored.

    Attributes
    ----------
    correct : float
        Score in [0, 1]: 1/0 for exact tasks, a fraction where partial credit is defined (MIA-Bench).
    parsed : bool
        Whether the rules could read an answer. Unparsed predictions are counted, never dropped, and score 0,
        except where the official script guesses instead (MathVista's closest-choice fallback scores the
        choice it falls back to).
    extracted : str
        What the extractor read ("" when nothing), kept so that a reader can audit the rules.
    """

    correct: float
    parsed: bool
    extracted: str


def judge_name(judge: Judge | None) -> str | None:
    """A stable name for a judge callable, recorded in results so judged and rule-only runs never mix."""
    if judge is None:
        return None
    return getattr(judge, "__name__", None) or type(judge).__name__


def score_with_rules(
    extract: Callable[[str], str],
    match: Callable[[str], float],
    sample: Sample,
    prediction: str,
    judge: Judge | None = None,
) -> SampleScore:
    """Extract an answer, fall back to the judge when the rules read nothing, then compare with the gold.

    Parameters
    ----------
    extract : callable
        The dataset's rule extractor for this sample: text -> answer, or "" when it cannot read one.
    match : callable
        Extracted answer -> score in [0, 1].
    judge : callable, optional
        Only consulted for parse failures; its output goes through ``extract`` again, so a judge that
        answers in prose is held to the same format rules as the model.
    """
    extracted = extract(prediction)
    if not extracted and judge is not None:
        extracted = extract(judge(sample, prediction))
    if not extracted:
        return SampleScore(0.0, False, "")
    return SampleScore(float(match(extracted)), True, extracted)
