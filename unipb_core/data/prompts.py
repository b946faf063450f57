"""Answer-format instructions and the option block, shared by every dataset's ``to_prompt``."""

from __future__ import annotations

import re
from collections.abc import Sequence

from unipb_core.metrics.extract import LETTERS

LETTER_HINT = "Answer with the option's letter from the given choices directly."
SHORT_HINT = "Answer the question using a single word or phrase."
YES_NO_HINT = "Please answer yes or no."


def options_block(options: Sequence[str]) -> str:
    """``"A. first\\nB. second"``: the option layout both harnesses use."""
    return "\n".join(f"{LETTERS[i]}. {option}" for i, option in enumerate(options))


def lists_options(question: str, options: Sequence[str]) -> bool:
    """Whether ``question`` already lists every option with its letter ("A. 10", "(A) 10", "A: 10"), as some
    VLMEvalKit TSV questions do; the prompt then must not list them a second time."""
    if not options:
        return False
    for letter, option in zip(LETTERS, options, strict=False):
        text = re.escape(str(option).strip())
        if not re.search(rf"(?:^|[\s\[(])\(?{letter}[.):\]]\s*{text}(?=\s|$|[.,;])", question, re.MULTILINE):
            return False
    return True


def with_options(question: str, options: Sequence[str], heading: str = "") -> list[str]:
    """Prompt parts for a question and its options: ``[question, heading, "A. ..."]``, or just the question when
    it already lists the options (never twice)."""
    if not options or lists_options(question, options):
        return [question]
    return [question, heading, options_block(options)]


def join(*parts: str) -> str:
    """Join the non-empty prompt parts with newlines (a missing hint leaves no blank line)."""
    return "\n".join(part.strip() for part in parts if part and part.strip())
