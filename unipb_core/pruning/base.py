"""What a pruning method is: a plan (where it acts, how many tokens it keeps) and a selection rule.

A method never touches the model. It sees a ``PruneContext`` (tensors at one stage) and returns the
visual tokens to keep, optionally with merged features; the engine does the surgery and timing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .context import PruneContext

DEFAULT_INTRA_LAYER = 2  # the study's layer for FastV, DART, FitPrune and Random-Intra
AUTHORS = "authors"  # every method's default variant: the rule of the authors' released code


@dataclass(frozen=True)
class Stage:
    """One place a method acts: ``"pre"`` (before the LLM) or ``"intra"`` at decoder layer ``layer``."""

    kind: str
    layer: int | None
    n_keep: int

    @property
    def label(self) -> str:
        return "pre" if self.kind == "pre" else f"layer{self.layer}"


@dataclass
class Selection:
    """A method's answer for one stage.

    Attributes
    ----------
    keep : LongTensor
        Indices into the stage's visual tokens (``ctx.visual``), sorted and unique.
    merged : Tensor, optional
        ``[len(keep), D]`` features that replace the kept tokens' hidden states (merging methods).
    """

    keep: torch.Tensor
    merged: torch.Tensor | None = None


def stage_outside(stages: list[Stage], num_layers: int) -> Stage | None:
    """The first intra-LLM stage whose layer is not a decoder layer of a model with ``num_layers`` layers.

    The one check the engine runs at a sample and the params check runs before any model loads.
    """
    return next((st for st in stages if st.kind == "intra" and not 0 <= (st.layer or 0) < num_layers), None)


def n_keep_for(n_visual: int, ratio: float) -> int:
    """Tokens kept at a single stage: ``round(N * (1 - ratio))`` (the study's ratios give 48/32/16 of 144).

    The study's own code truncates instead; its variants count with ``study.study_count``.
    """
    return int(round(n_visual * (1.0 - ratio)))


class PruningMethod:
    """Base class. Subclasses are dataclasses (their fields are the method's parameters) and set:

    ``name`` (registry key), ``category`` (``baseline``/``vit``/``llm``/``hybrid``) and ``stage_kind``
    (``"pre"`` or ``"intra"``; hybrids override ``plan``). Single-stage methods implement ``select``.

    A method whose study implementation deviates from its authors' code lists its rules in ``variants``
    (``("authors", "study")``) and declares a dataclass field ``variant: str = "authors"``; it is a
    parameter like any other, so it is recorded in the run config and its hash. Subclasses that define
    ``__post_init__`` call ``super().__post_init__()``.
    """

    name: ClassVar[str]
    category: ClassVar[str]
    stage_kind: ClassVar[str] = "pre"
    variants: ClassVar[tuple[str, ...]] = (AUTHORS,)

    def __post_init__(self) -> None:
        variant = getattr(self, "variant", AUTHORS)
        if variant not in self.variants:
            raise ValueError(
                f"method {self.name!r}: variant must be one of {', '.join(self.variants)} (got {variant!r})"
            )

    def plan(self, n_visual: int, ratio: float, num_layers: int) -> list[Stage]:
        """Stages in forward order. Default: one stage keeping ``round(N * (1 - ratio))`` tokens."""
        layer = getattr(self, "layer", DEFAULT_INTRA_LAYER) if self.stage_kind == "intra" else None
        return [Stage(self.stage_kind, layer, n_keep_for(n_visual, ratio))]

    def select(self, ctx: PruneContext) -> Selection | torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement select(ctx)")

    def params(self) -> dict[str, Any]:
        """The method's parameters, for the run config and its hash."""
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}

    def notes_for(self, family: str) -> dict[str, Any]:
        """Family adaptations this method applies (recorded in the run config); none by default."""
        return {}


class ScoredMethod(PruningMethod):
    """A method that scores each visual token and keeps the ``n_keep`` highest (ties: lowest index)."""

    def score(self, ctx: PruneContext) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement score(ctx)")

    def select(self, ctx: PruneContext) -> Selection:
        return Selection(top_k(self.score(ctx), ctx.n_keep))


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Sorted indices of the ``k`` largest scores; a stable sort makes ties go to the lowest index."""
    order = torch.argsort(scores.float(), descending=True, stable=True)[:k]
    return torch.sort(order).values
