"""The pruning engine's sequence surgery: the layer hooks and their pre-LLM / intra-LLM / decode mechanics.

``PruningEngine`` (engine.py) owns the lifecycle and the accounting: installing and removing hooks, the sample
key and timer, the plan of stages, calling the method, and the token counts. This mixin does the surgery on
the sequence, in two stages, each usable alone or together:

* **pre-LLM** — a forward pre-hook on the decoder stack (``XModel.language_model``). The image features
  are already scattered into ``inputs_embeds``; embeddings, the 2-D attention mask and the position ids
  are gathered with one sorted index, so kept tokens keep their original (1-D or M-RoPE) positions
  unless ``positions="contiguous"``. On decode steps the 2-D mask is shrunk the same way.
* **intra-LLM** — pre-hooks on decoder layers. At a stage's layer K the hidden states, the rotary
  embeddings, the 4-D mask (when one exists) and the position ids are gathered; every later layer gets
  the same pruned view (the decoder loop hands all layers the full-length tensors). Layers < K cache
  every token, layers >= K only the kept ones; on decode steps each layer's mask columns are mapped to
  its own cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .base import Selection, Stage
from .context import LayerInput, PruneContext


@dataclass
class StageRecord:
    """Accounting of one stage of one prefill."""

    label: str
    kind: str
    layer: int | None
    n_in: int
    n_out: int
    kept: list[int] | torch.Tensor  # kept tokens as indices into the sample's original visual-token list
    # (a tensor while the prefill runs: turned into a list by ``summary()`` / ``records``, outside the timed
    # window, because ``tolist()`` is a host sync on CUDA)


@dataclass
class _View:
    """The pruned sequence seen by the layers from a stage on (indices into the LLM-input sequence)."""

    index: torch.Tensor
    visual_positions: torch.Tensor  # positions of visual tokens within ``index``
    visual_origin: torch.Tensor  # original visual-token index of each of them
    cache: dict = field(default_factory=dict)


@dataclass
class _Prefill:
    input_ids: torch.Tensor
    is_visual: torch.Tensor  # [L0] bool over the original sequence
    n_visual: int
    generator: torch.Generator
    stages: list[Stage]
    phase: str = "prefill"  # prefill -> lm_prefill -> decode
    pre_index: torch.Tensor | None = None  # original positions kept by the pre-LLM stage
    lm_len: int = 0
    lm_view: _View | None = None  # the LLM input itself (after the pre-LLM stage)
    views: dict[int, _View] = field(default_factory=dict)  # stage layer -> view from that layer on
    records: list[StageRecord] = field(default_factory=list)
    visual_per_layer: list[int] = field(default_factory=list)
    layer_inputs: dict[int, LayerInput] = field(default_factory=dict)


def _arg(args: tuple, kwargs: dict, name: str, pos: int) -> Any:
    return kwargs[name] if name in kwargs else (args[pos] if len(args) > pos else None)


class _Surgery:
    """The hook mechanics of ``PruningEngine`` (a mixin: it reads the engine's ``model``, ``method``,
    ``positions`` and ``_state``, and calls its ``_select``, ``_grids_for`` and ``_vision_extras``)."""

    def _apply(self, stage: Stage, view: _View, hidden: torch.Tensor) -> tuple[_View, Selection, torch.Tensor]:
        """Run the method on ``hidden`` (the sequence of ``view``); return the pruned view, the selection
        and the kept positions within ``hidden``."""
        s = self._state
        vis_pos = view.visual_positions
        text_mask = torch.ones(hidden.shape[1], dtype=torch.bool, device=hidden.device)
        text_mask[vis_pos] = False
        text_pos = _positions(text_mask, hidden.shape[1] - vis_pos.numel())
        ctx = PruneContext(
            stage=stage,
            family=self.model.family,
            visual=hidden[0, vis_pos],
            text=hidden[0, text_pos],
            visual_positions=vis_pos,
            text_positions=text_pos,
            visual_origin=view.visual_origin,
            grids=self._grids_for(s.n_visual),
            generator=s.generator,
            num_layers=self.model.num_layers,
            layer_inputs=s.layer_inputs,
            vision=self._vision_extras(stage),
            final_norm=getattr(self.model.language_model, "norm", None),
        )
        sel = self._select(stage, ctx)
        keep_pos, _ = torch.sort(torch.cat([text_pos, vis_pos[sel.keep.to(vis_pos.device)]]))
        new_visual = _positions(torch.isin(keep_pos, vis_pos), sel.keep.numel())
        order = sel.keep if getattr(sel, "entry", None) is None else sel.entry  # study variants: see study.py
        if order is not sel.keep:  # the kept tokens fill the visual slots in the method's order
            keep_pos = keep_pos.clone()
            keep_pos[new_visual] = vis_pos[order.to(vis_pos.device)]
        origin = view.visual_origin[order.to(view.visual_origin.device)]
        s.records.append(
            StageRecord(stage.label, stage.kind, stage.layer, int(vis_pos.numel()), int(sel.keep.numel()),
                        torch.sort(origin).values)
        )  # fmt: skip
        return _View(view.index[keep_pos], new_visual, origin), sel, keep_pos

    @staticmethod
    def _merge(hidden: torch.Tensor, view: _View, sel: Selection) -> torch.Tensor:
        if sel.merged is None:
            return hidden
        hidden = hidden.clone()
        hidden[0, view.visual_positions] = sel.merged.to(hidden.dtype)
        return hidden

    def _on_lm(self, module, args, kwargs):
        s = self._state
        if s is None:
            return None
        if s.phase == "prefill":
            return self._lm_prefill(kwargs, s)
        if s.phase == "decode" and s.pre_index is not None:
            mask = kwargs.get("attention_mask")
            if isinstance(mask, torch.Tensor) and mask.dim() == 2:
                extra = torch.arange(s.input_ids.shape[1], mask.shape[1], device=mask.device)
                kwargs["attention_mask"] = mask[:, torch.cat([s.pre_index, extra])]
            if self.positions == "contiguous" and kwargs.get("position_ids") is not None:
                kwargs["position_ids"] = kwargs["position_ids"] - (s.input_ids.shape[1] - s.pre_index.numel())
            return args, kwargs
        return None

    def _lm_prefill(self, kwargs: dict, s: _Prefill):
        embeds = kwargs["inputs_embeds"]
        length = embeds.shape[1]
        vis_pos = _positions(s.is_visual, s.n_visual).to(embeds.device)
        view = _View(
            torch.arange(length, device=embeds.device), vis_pos, torch.arange(s.n_visual, device=embeds.device)
        )
        pre = [st for st in s.stages if st.kind == "pre"]
        if pre and (pre[0].n_keep < s.n_visual or self._always_apply()):
            view, sel, index = self._apply(pre[0], view, embeds)
            kwargs["inputs_embeds"] = self._merge(embeds[:, index], view, sel)
            mask = kwargs.get("attention_mask")
            if not isinstance(mask, torch.Tensor):
                mask = torch.ones(1, length, dtype=torch.long, device=embeds.device)
            # Always pass a mask: gapped positions with no mask are read as packed sequences.
            kwargs["attention_mask"] = mask[:, index]
            pos = kwargs.get("position_ids")
            if pos is None:
                pos = torch.arange(length, device=embeds.device).unsqueeze(0)
            if self.positions == "contiguous":
                kwargs["position_ids"] = torch.arange(index.numel(), device=embeds.device).unsqueeze(0)
            else:
                kwargs["position_ids"] = pos[..., index]
            s.pre_index = index
            view = _View(torch.arange(index.numel(), device=embeds.device), view.visual_positions, view.visual_origin)
        elif pre:
            s.records.append(StageRecord("pre", "pre", None, s.n_visual, s.n_visual, list(range(s.n_visual))))
        s.lm_len = view.index.numel()
        s.lm_view = view
        s.phase = "lm_prefill"
        return (), kwargs

    def _always_apply(self) -> bool:
        # Merging methods change features even when a stage drops nothing; plain selection is then a no-op.
        # At ratio 0 no stage acts at all: the contract is that ratio 0 is the stock model, for every method.
        return self.ratio > 0 and bool(getattr(self.method, "merges", False))

    def _after_lm(self, module, args, kwargs, output):
        if self._state is not None and self._state.phase == "lm_prefill":
            self._state.phase = "decode"

    def _layer_hook(self, idx: int):
        def hook(module, args, kwargs):
            s = self._state
            if s is None or s.phase == "prefill":
                return None
            if s.phase == "lm_prefill":
                return self._layer_prefill(idx, module, args, kwargs, s)
            return self._layer_decode(idx, args, kwargs, s)

        return hook

    def _current_view(self, idx: int, s: _Prefill) -> _View | None:
        layers = [k for k in s.views if k <= idx]
        return s.views[max(layers)] if layers else None

    def _layer_prefill(self, idx, module, args, kwargs, s: _Prefill):
        hidden = args[0] if args else kwargs["hidden_states"]
        stage = next((st for st in s.stages if st.kind == "intra" and st.layer == idx), None)
        previous = self._current_view(idx, s) or s.lm_view
        changed = False
        if stage is not None and (stage.n_keep < previous.visual_positions.numel() or self._always_apply()):
            # Layer K's own (unpruned) input, so a method may score with layer K's attention; replaced by
            # the pruned input below, which is what a stage at K+1 reads as "layer K".
            unpruned = dict(kwargs)
            if previous is not s.lm_view:  # an earlier stage pruned: hand its view, as the layer would see it
                self._gather_layer_kwargs(unpruned, previous, hidden)
            s.layer_inputs[idx] = self._layer_input(module, hidden, unpruned, previous)
            view, sel, local = self._apply(stage, previous, hidden)
            hidden = self._merge(hidden[:, local], view, sel)
            s.views[idx] = view
            changed = True
        elif stage is not None:
            n = previous.visual_positions.numel()
            s.records.append(StageRecord(stage.label, "intra", idx, n, n, torch.sort(previous.visual_origin).values))
        view = self._current_view(idx, s)
        if view is not None:
            self._gather_layer_kwargs(kwargs, view, hidden)
            changed = True
        if args:
            args = (hidden, *args[1:])
        else:
            kwargs["hidden_states"] = hidden
        cur = view or s.lm_view
        s.visual_per_layer.append(int(cur.visual_positions.numel()))
        if self._captures(idx, s):
            s.layer_inputs[idx] = self._layer_input(module, hidden, kwargs, cur)
        return (args, kwargs) if changed else None

    @staticmethod
    def _layer_input(module, hidden: torch.Tensor, kwargs: dict, view: _View) -> LayerInput:
        positions = view.visual_positions
        return LayerInput(module, hidden, kwargs["position_embeddings"], kwargs.get("attention_mask"), positions,
                          _complement(positions, hidden.shape[1]))  # fmt: skip

    def _captures(self, idx: int, s: _Prefill) -> bool:
        # Methods score at layer K with layer K's or K-1's attention; keep references to those inputs only,
        # plus the LLM input (layer 0) for a method that reads it (``needs_llm_input``: SparseVLM's raters).
        if idx == 0 and getattr(self.method, "needs_llm_input", False):
            return True
        return any(st.kind == "intra" and st.layer is not None and idx in (st.layer - 1, st.layer) for st in s.stages)

    def _gather_layer_kwargs(self, kwargs: dict, view: _View, hidden: torch.Tensor) -> None:
        index, cache = view.index, view.cache
        cos, sin = kwargs["position_embeddings"]
        if cache.get("pe_src") is not cos:  # the decoder hands every layer the same tensors: gather once
            if self.positions == "contiguous":
                pos = torch.arange(index.numel(), device=hidden.device).unsqueeze(0)
                cache["pe"] = self.model.language_model.rotary_emb(hidden, pos)
            else:
                cache["pe"] = (cos[:, index], sin[:, index])
            cache["pe_src"] = cos
        kwargs["position_embeddings"] = cache["pe"]
        mask = kwargs.get("attention_mask")
        if isinstance(mask, torch.Tensor):
            if cache.get("mask_src") is not mask:
                # Sorted: a view whose kept tokens are in a method's entry order (study.py) stays causal in
                # its own sequence order, as the study's sliced mask is; a no-op for sequence-ordered views.
                rows = torch.sort(index).values
                cache["mask"] = mask[:, :, rows][:, :, :, rows]
                cache["mask_src"] = mask
            kwargs["attention_mask"] = cache["mask"]
        pos_ids = kwargs.get("position_ids")
        if isinstance(pos_ids, torch.Tensor) and pos_ids.shape[-1] == self._state.lm_len:
            kwargs["position_ids"] = pos_ids[..., index]

    def _layer_decode(self, idx, args, kwargs, s: _Prefill):
        view = self._current_view(idx, s)
        if view is None:
            return None
        mask = kwargs.get("attention_mask")
        if isinstance(mask, torch.Tensor):
            extra = torch.arange(s.lm_len, mask.shape[-1], device=mask.device)
            kwargs["attention_mask"] = mask[..., torch.cat([view.index, extra])]
        if self.positions == "contiguous":
            hidden = args[0] if args else kwargs["hidden_states"]
            pos = kwargs.get("position_ids")
            shift = s.lm_len - view.index.numel()
            if pos is not None:
                kwargs["position_embeddings"] = self.model.language_model.rotary_emb(hidden, pos - shift)
        return args, kwargs


def _complement(positions: torch.Tensor, length: int) -> torch.Tensor:
    mask = torch.ones(length, dtype=torch.bool, device=positions.device)
    mask[positions] = False
    return _positions(mask, length - positions.numel())


def _positions(mask: torch.Tensor, count: int) -> torch.Tensor:
    """Sorted indices of the ``count`` True entries of a 1-D ``mask``, without a host sync.

    ``nonzero`` must copy its output size to the host (a CUDA sync inside the timed prefill); here the
    count is known, and a stable sort puts the True entries first, in index order.
    """
    return torch.sort((~mask).to(torch.int8), stable=True).indices[:count]
