"""DART: keep pivot tokens and the visual tokens least duplicated by them (duplication-aware).

Reference: Wen et al., "Stop Looking for Important Tokens in Multimodal Language Models: Duplication
Matters More", EMNLP 2025 (arXiv 2502.11494). Authors' code: github ZichenWen1/DART, LLaVA-1.5 path
(``get_retained_image_token`` and the ``DART_K_norm`` decoder forward; scripts ``scripts/v1_5/eval/*.sh``
with ``--pruned_layer 2 --pivot_image_token 4 --pivot_text_token 4 --max_num_trunction <kept count>``).
Rule (authors' code), at layer K:
- pivots: the ``pivot_image_token`` visual and ``pivot_text_token`` text tokens (every token after the image)
  with the largest L1 norm of layer K-1's post-RoPE keys (heads concatenated);
- the hidden states entering layer K are passed through the model's FINAL norm (``self.norm``);
- the pivots are visited in the iteration order of a Python ``set`` of their sequence positions; each takes
  the ``TOKEN_TOPK = budget // (pivots)`` tokens of the remaining visual pool (every visual token but the visual
  pivots, minus what earlier pivots took) with the lowest cosine similarity to it;
- kept = visual pivots + everything taken; text pivots are not kept. That is
  ``n_visual_pivots + pivots * (budget // pivots)`` tokens (132 for a budget of 128 with 4 + 4 pivots).

Parameters
----------
layer : int
    K (default 2, the authors' and the study's). Keys come from layer K-1.
n_visual_pivots, n_text_pivots : int
    Pivot counts. Default ``None``: 4 + 4 (the authors' scripts), or 10 + 5 for ``variant="study"``.
budget : str
    ``"fixed"`` (default): exactly ``round(N * (1 - ratio))`` tokens, the comparison's budget: the visual pivots
    count toward it, each pivot takes ``(n_keep - visual pivots) // pivots`` tokens, then one more per pivot in
    the same visiting order until ``n_keep`` are kept (with ``n_keep <= visual pivots`` only the ``n_keep``
    highest-norm visual pivots). ``"adaptive"``: the authors' count, ``visual pivots + pivots * (n_keep // pivots)``.
variant : str
    ``"authors"`` (default) or ``"study"`` (the study's ``methods/DART_IntraLLM.py`` and
    ``layer_prune._save_hidden_states_norm``): 10 + 5 pivots, ``TOKEN_TOPK = int(N * keep_ratio / 15)`` so
    ``10 + 15 * TOKEN_TOPK`` tokens are kept (``budget`` is ignored), and cosines on layer K's own
    ``input_layernorm`` of the hidden states entering K instead of the final norm.

Stage: intra-LLM at layer K. Ties (equal norms or cosines) go to the lowest index, where ``topk`` leaves the
order to the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from .base import AUTHORS, DEFAULT_INTRA_LAYER, PruningMethod, Selection, Stage, n_keep_for
from .context import PruneContext
from .registry import register
from .study import study_count

BUDGETS = ("fixed", "adaptive")
AUTHORS_PIVOTS = (4, 4)  # --pivot_image_token 4 --pivot_text_token 4 in the authors' scripts
STUDY_PIVOTS = (10, 5)  # PIVOT_IMAGE_TOKEN / PIVOT_TEXT_TOKEN defaults in the study's DART_IntraLLM.py


def set_order(positions: list[int]) -> list[int]:
    """The order in which ``for item in list(set(positions))`` visits ``positions`` (CPython int sets), as the
    authors' and the study's loops over the pivot set do; returned as indices into ``positions``."""
    where = {p: i for i, p in enumerate(positions)}
    return [where[p] for p in list(set(positions))]


def dart_select(
    key_norm_visual: torch.Tensor,
    key_norm_text: torch.Tensor,
    hidden_visual: torch.Tensor,
    hidden_text: torch.Tensor,
    n_keep: int,
    n_visual_pivots: int,
    n_text_pivots: int,
    visual_positions: torch.Tensor | None = None,
    text_positions: torch.Tensor | None = None,
    per_pivot: int | None = None,
) -> torch.Tensor:
    """Sorted visual indices kept by DART (module docstring).

    ``hidden_*`` are the (normed) hidden states the cosines use; ``*_positions`` the tokens' sequence positions
    (they set the pivots' visiting order; default: visual 0..N-1, text after them). ``per_pivot`` = the authors'
    ``TOKEN_TOPK``: every pivot takes exactly that many; ``None`` = the fixed budget ``n_keep``.
    """
    n, device = hidden_visual.shape[0], hidden_visual.device
    if visual_positions is None:
        visual_positions = torch.arange(n, device=device)
    if text_positions is None:
        text_positions = torch.arange(n, n + hidden_text.shape[0], device=device)
    n_vp = min(n_visual_pivots, n)
    vis_pivots = torch.argsort(key_norm_visual.float(), descending=True, stable=True)[:n_vp]
    if per_pivot is None and n_keep <= n_vp:
        return torch.sort(vis_pivots[:n_keep]).values
    n_tp = min(n_text_pivots, hidden_text.shape[0])
    text_pivots = torch.argsort(key_norm_text.float(), descending=True, stable=True)[:n_tp]
    # One host read for the pivots and their positions: the set's visiting order needs the positions as ints.
    host = torch.cat([vis_pivots, visual_positions[vis_pivots], text_positions[text_pivots]]).tolist()
    keep, absolute = host[:n_vp], host[n_vp:]
    visit = torch.tensor(set_order(absolute), device=device)
    vecs = torch.cat([hidden_visual[vis_pivots], hidden_text[text_pivots]]).double()[visit]
    target = n_vp + len(absolute) * per_pivot if per_pivot is not None else n_keep
    # [P, N] cosine of each pivot (in visiting order) to each visual token; "least similar first" = ascending.
    # A pivot's cursor never passes the tokens taken so far (< target), so the first target columns suffice;
    # one more host read brings them over for the greedy walk, which is sequential across pivots.
    sims = F.normalize(vecs, dim=-1) @ F.normalize(hidden_visual.double(), dim=-1).T
    orders = torch.argsort(sims, dim=1, stable=True)[:, :target].tolist()
    taken = [False] * n
    for i in keep:
        taken[i] = True
    cursors = [0] * len(orders)

    def take(p: int, count: int) -> None:
        # The pool shrinks as tokens are taken: skip tokens an earlier pivot already took.
        while count > 0 and len(keep) < target:
            while taken[orders[p][cursors[p]]]:
                cursors[p] += 1
            idx = orders[p][cursors[p]]
            taken[idx] = True
            keep.append(idx)
            count -= 1

    share = per_pivot if per_pivot is not None else (n_keep - n_vp) // len(orders)
    for p in range(len(orders)):
        take(p, share)
    p = 0
    while len(keep) < target:  # fixed budget only: one more per pivot, in visiting order
        take(p, 1)
        p = (p + 1) % len(orders)
    return torch.tensor(sorted(keep), dtype=torch.long, device=device)


@register
@dataclass
class DART(PruningMethod):
    name = "dart"
    category = "llm"
    stage_kind = "intra"
    variants: ClassVar[tuple[str, ...]] = (AUTHORS, "study")
    layer: int = DEFAULT_INTRA_LAYER
    n_visual_pivots: int | None = None
    n_text_pivots: int | None = None
    budget: str = "fixed"
    variant: str = AUTHORS

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.layer < 1:
            raise ValueError(f"dart: layer must be >= 1 (pivots use layer K-1's keys), got {self.layer}")
        if self.budget not in BUDGETS:
            raise ValueError(f"dart: budget must be one of {', '.join(BUDGETS)}, got {self.budget!r}")
        n_vp, n_tp = self.pivots()
        if n_vp < 0 or n_tp < 0 or n_vp + n_tp == 0:
            raise ValueError("dart: pivot counts must be >= 0 and not both 0")

    def pivots(self) -> tuple[int, int]:
        default = STUDY_PIVOTS if self.variant == "study" else AUTHORS_PIVOTS
        n_vp = default[0] if self.n_visual_pivots is None else self.n_visual_pivots
        n_tp = default[1] if self.n_text_pivots is None else self.n_text_pivots
        return n_vp, n_tp

    def per_pivot(self, n_visual: int, ratio: float) -> int | None:
        """The authors' / study's ``TOKEN_TOPK``, or ``None`` for the fixed budget."""
        n_pivots = sum(self.pivots())
        if self.variant == "study":
            return study_count(n_visual, ratio) // n_pivots
        if self.budget == "adaptive":
            return n_keep_for(n_visual, ratio) // n_pivots
        return None

    def plan(self, n_visual: int, ratio: float, num_layers: int) -> list[Stage]:
        per = self.per_pivot(n_visual, ratio)
        if per is None:
            return [Stage("intra", self.layer, n_keep_for(n_visual, ratio))]
        n_vp, n_tp = self.pivots()
        # Assumes n_text_pivots tokens follow the image (chat templates always have them); checked in select.
        return [Stage("intra", self.layer, min(n_visual, min(n_vp, n_visual) + (n_vp + n_tp) * per))]

    def select(self, ctx: PruneContext) -> Selection:
        prev = ctx.layer_inputs[self.layer - 1]
        norms = ctx.keys(layer=self.layer - 1).float().abs().sum(dim=(0, 2))  # L1 over heads concatenated
        # The tokens after the image are a suffix of the (sorted) text positions: one host read for its length.
        first = ctx.text_positions.numel() - int((ctx.text_positions > ctx.visual_positions.max()).sum())
        n_vp, n_tp = self.pivots()
        if self.variant == "study":
            layer_norm = ctx.layer_inputs[self.layer].layer.input_layernorm
        elif ctx.final_norm is None:
            raise ValueError("dart: the stage context has no final norm (the engine hands language_model.norm)")
        else:
            layer_norm = ctx.final_norm
        with torch.no_grad():
            visual, text = layer_norm(ctx.visual), layer_norm(ctx.text[first:])
        per = None if self.variant == AUTHORS and self.budget == "fixed" else self._per_from_plan(ctx, n_vp, n_tp)
        if per is not None and text.shape[0] < n_tp:
            raise ValueError(f"dart: {n_tp} text pivots need {n_tp} tokens after the image; found {text.shape[0]}")
        keep = dart_select(
            norms[prev.visual_positions], norms[prev.text_positions][first:], visual, text, ctx.n_keep, n_vp, n_tp,
            ctx.visual_positions, ctx.text_positions[first:], per,
        )  # fmt: skip
        return Selection(keep)

    @staticmethod
    def _per_from_plan(ctx: PruneContext, n_vp: int, n_tp: int) -> int:
        # The plan set n_keep = min(n_vp, N) + pivots * TOKEN_TOPK; recover TOKEN_TOPK from it.
        return (ctx.n_keep - min(n_vp, ctx.n_visual)) // (n_vp + n_tp)
