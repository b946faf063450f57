"""The one record type every dataset adapter produces and every model adapter consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image


@dataclass
class Sample:
    """One benchmark question.

    Attributes
    ----------
    id : str
        Unique within its dataset (stable across runs: it keys the results store).
    images : list of PIL.Image.Image
        Decoded RGB images, usually one.
    question : str
        The question text as the dataset gives it (no prompt template applied).
    options : list of str
        Option texts for multiple choice, in letter order (A, B, ...); empty for open questions.
    answer : str
        Gold answer: an option letter, "yes"/"no", or free text (a JSON list when several
        strings are accepted).
    dataset : str
        Registry key of the dataset (``"pope"``, ``"synthetic"``, ...).
    dimension : str
        One of the six ability dimensions (see ``unipb_core.data.dimensions``).
    category : str
        The dataset's own sub-category (MME subtask, POPE split, OCRBench type, ...).
    meta : dict
        Anything else the dataset's scorer needs (group ids for paired metrics, precision, ...).
    """

    id: str
    images: list[Image.Image]
    question: str
    options: list[str] = field(default_factory=list)
    answer: str = ""
    dataset: str = ""
    dimension: str = ""
    category: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
