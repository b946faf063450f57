"""The one record type every dataset adapter produces and every model adapter consumes.

It sits at the bottom of the import graph (it needs only PIL), so ``data`` and ``metrics`` both use it without an
import arrow between them.
"""

from __future__ import annotations

from collections.abc import Mapping
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

    def record_fields(self) -> dict[str, Any]:
        """What the official aggregate needs of this sample, as JSON-safe values (no images, no question).

        The runner stores this in each record's ``score`` field, so the official metrics can be recomputed from
        a results store alone (see :meth:`from_record` and ``unipb_core.analysis.official``).
        """
        return {
            "category": self.category,
            "answer": self.answer,
            "options": list(self.options),
            "dimension": self.dimension,
            "meta": dict(self.meta),
        }

    @classmethod
    def from_record(cls, sample_id: str, dataset: str, fields: Mapping[str, Any] | None) -> Sample:
        """The image-less Sample a stored record describes (the inverse of :meth:`record_fields`).

        Records written before the fields were stored hold at most ``category``; the rebuilt sample then has
        its own id as its group (``meta["group"]``) and nothing else in ``meta``.
        """
        fields = dict(fields or {})
        meta = dict(fields.get("meta") or {})
        meta.setdefault("group", str(sample_id))
        return cls(
            id=str(sample_id),
            images=[],
            question="",
            options=[str(o) for o in fields.get("options") or []],
            answer=str(fields.get("answer") or ""),
            dataset=dataset,
            dimension=str(fields.get("dimension") or ""),
            category=str(fields.get("category") or ""),
            meta=meta,
        )
