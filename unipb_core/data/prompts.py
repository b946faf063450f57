"""Answer-format instructions and the option block, shared by every dataset's ``to_prompt``."""

from __future__ import annotations

from collections.abc import Sequence

from unipb_core.metrics.extract import LETTERS

LETTER_HINT = "Answer with the option's letter from the given choices directly."
SHORT_HINT = "Answer the question using a single word or phrase."
YES_NO_HINT = "Please answer yes or no."


def options_block(options: Sequence[str]) -> str:
    """``"A. first\\nB. second"``: the option layout both harnesses use."""
    return "\n".join(f"{LETTERS[i]}. {option}" for i, option in enumerate(options))


def join(*parts: str) -> str:
    """Join the non-empty prompt parts with newlines (a missing hint leaves no blank line)."""
    return "\n".join(part.strip() for part in parts if part and part.strip())
