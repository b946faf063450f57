"""Scoring: rule-based answer extraction, per-sample scores and the building blocks of official aggregates.

Dataset-specific prompts, scorers and aggregates live with each dataset in ``unipb_core.data``; this package
holds what they share, so there is one yes/no reader, one option-letter reader and one number reader.
"""

from unipb_core.metrics.extract import (
    closest_option,
    edit_distance,
    extract_boxed,
    extract_list,
    extract_number,
    extract_option,
    extract_word,
    extract_yes_no,
    normalize_text,
    parse_float,
    process_punctuation,
    words,
)
from unipb_core.metrics.score import Judge, SampleScore, judge_name, score_with_rules

__all__ = [
    "Judge",
    "closest_option",
    "edit_distance",
    "SampleScore",
    "extract_boxed",
    "extract_list",
    "extract_number",
    "extract_option",
    "extract_word",
    "extract_yes_no",
    "judge_name",
    "normalize_text",
    "parse_float",
    "process_punctuation",
    "score_with_rules",
    "words",
]
