"""The pruning engine's sequence surgery: the layer hooks and their pre-LLM / intra-LLM / decode mechanics.

``PruningEngine`` (engine.py) owns the lifecycle and the accounting: installing and removing hooks, the sample
keys and timer, the plan of stages, calling the method, and the token counts. This mixin does the surgery on
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

**Static caches** (``cache_implementation="static"``, what a compiled decode step needs). Every layer's keys are
then the cache's whole fixed-width buffer, and ``generate`` builds the 4-D mask before the forward, over the
buffer's slots. The engine reads the padding back from that mask at prefill, widens each gathered mask to the
buffer with masked columns (slots a layer never writes), and builds the decode steps' column maps once, at the
end of prefill, so a decode step reads only tensors whose shapes depend on the buffer width and batch size,
never on a sample's length: one compiled step serves every sample of a width.

**Batches.** Every sample of a left-padded batch is handled as at batch size 1: the method sees the sample's own
sequence (its left padding stripped), with its own generator, plan, patch grids and captured layer inputs, and
returns its own selection. After a stage the samples' sequences (whose lengths may now differ) are left-padded
again to the longest one; a ``_Level`` maps each padded slot to the LLM-input sequence, and padded slots are
masked out of every attention (as keys at prefill and decode; a padded query row attends to itself only, so it
stays finite). Positions are gathered per sample, so each kept token keeps its batch-1 position.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .base import Selection, Stage
from .context import LayerInput, PruneContext
from .errors import PruningError


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
    """The pruned sequence seen by the layers from a stage on (indices into the sample's LLM-input sequence)."""

    index: torch.Tensor
    visual_positions: torch.Tensor  # positions of visual tokens within ``index``
    visual_origin: torch.Tensor  # original visual-token index of each of them
    cache: dict = field(default_factory=dict)


@dataclass
class _Prefill:
    """One sample's prefill (at batch size B, one per sample; all indices exclude the batch's left padding)."""

    input_ids: torch.Tensor  # [1, L0] the sample's own tokens
    is_visual: torch.Tensor  # [L0] bool over the original sequence
    n_visual: int
    generator: torch.Generator
    stages: list[Stage]
    index: int = 0  # position in the batch
    key: str = ""
    grids: list[tuple[int, int]] | None = None
    visual_offset: int = 0  # visual tokens of the earlier samples of the batch (encoder-side slicing)
    phase: str = "prefill"  # prefill -> lm_prefill -> decode
    pre_index: torch.Tensor | None = None  # original positions kept by the pre-LLM stage
    lm_len: int = 0
    lm_view: _View | None = None  # the LLM input itself (after the pre-LLM stage)
    views: dict[int, _View] = field(default_factory=dict)  # stage layer -> view from that layer on
    records: list[StageRecord] = field(default_factory=list)
    visual_per_layer: list[int] = field(default_factory=list)
    layer_inputs: dict[int, LayerInput] = field(default_factory=dict)


@dataclass
class _Level:
    """The batch's padded sequence from a stage's layer on: slot ``j`` of sample ``b`` is token ``gather[b, j]``
    of the padded LLM-input sequence (a padded slot where ``valid`` is False)."""

    gather: torch.Tensor  # [B, Lk] (method entry order)
    rows: torch.Tensor  # [B, Lk] the same tokens in sequence order (mask rows/columns)
    valid: torch.Tensor  # [B, Lk] bool
    padded: bool
    lengths: list[int]
    cache: dict = field(default_factory=dict)
    columns: tuple[torch.Tensor, torch.Tensor | None] | None = None  # static cache: the decode column map (fixed)


@dataclass
class _Batch:
    samples: list[_Prefill]
    length: int  # padded input length
    pads: list[int]  # left padding of each sample in the input
    phase: str = "prefill"
    lm_length: int = 0
    lm_pads: list[int] = field(default_factory=list)
    lm_mask: torch.Tensor | None = None  # the 2-D LLM-input mask after a pre-LLM stage (decode steps extend it)
    levels: dict[int, _Level] = field(default_factory=dict)
    width: int | None = None  # key slots of a static cache's layers (None: a cache that grows)
    decode_mask: torch.Tensor | None = None  # static cache, after a pre-LLM stage: the 2-D mask of all ``width`` slots
    checks: list = field(default_factory=list)  # (device flag: selection invalid, stage label, n_visual) per stage

    @property
    def size(self) -> int:
        return len(self.samples)


def _arg(args: tuple, kwargs: dict, name: str, pos: int) -> Any:
    return kwargs[name] if name in kwargs else (args[pos] if len(args) > pos else None)


def _left_pad(pieces: list[torch.Tensor], fill: float | int = 0) -> torch.Tensor:
    """Stack ``[..., 1, n_b, *rest]``-free pieces ``[n_b, *rest]`` into ``[B, max n, *rest]``, padded on the left."""
    if len(pieces) == 1:
        return pieces[0].unsqueeze(0)
    longest = max(p.shape[0] for p in pieces)
    out = pieces[0].new_full((len(pieces), longest, *pieces[0].shape[1:]), fill)
    for b, piece in enumerate(pieces):
        out[b, longest - piece.shape[0] :] = piece
    return out


def _attend_value(mask: torch.Tensor) -> tuple[Any, Any]:
    """(allowed, masked) values of a 4-D attention mask's dtype: bool masks or additive float masks."""
    if mask.dtype == torch.bool:
        return True, False
    return 0.0, torch.finfo(mask.dtype).min


class _Surgery:
    """The hook mechanics of ``PruningEngine`` (a mixin: it reads the engine's ``model``, ``method``,
    ``positions`` and ``_state``, and calls its ``_select``, ``_check_selections``, ``_grids_for`` and
    ``_vision_extras``)."""

    def _apply(
        self, s: _Prefill, stage: Stage, view: _View, hidden: torch.Tensor
    ) -> tuple[_View, Selection, torch.Tensor]:
        """Run the method on ``hidden`` (``[1, n, D]``: the sample's sequence of ``view``); return the pruned view,
        the selection and the kept positions within ``hidden``."""
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
            grids=self._grids_for(s),
            generator=s.generator,
            num_layers=self.model.num_layers,
            layer_inputs=s.layer_inputs,
            vision=self._vision_extras(stage, s),
            final_norm=getattr(self.model.language_model, "norm", None),
        )
        sel = self._select(stage, ctx, s)
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

    # ------------------------------------------------------------------ the decoder stack (pre-LLM stage)
    def _on_lm(self, module, args, kwargs):
        batch = self._state
        if batch is None:
            return None
        if batch.phase == "prefill":
            return self._lm_prefill(kwargs, batch)
        if batch.phase != "decode" or (batch.decode_mask is None and batch.lm_mask is None):
            return None
        mask = kwargs.get("attention_mask")
        if batch.decode_mask is not None:
            # A static cache: generate's 4-D mask counts the unpruned prompt's slots; the decoder rebuilds it from this
            # one. (Read before ``lm_mask``: a compiled step guards on the shapes it reads, and this one's is fixed.)
            kwargs["attention_mask"] = batch.decode_mask
        elif isinstance(mask, torch.Tensor) and mask.dim() == 2:
            kwargs["attention_mask"] = torch.cat([batch.lm_mask.to(mask.dtype), mask[:, batch.length :]], dim=1)
        elif mask is None and batch.size > 1:
            # generate passes no mask when its own has no padding; the pre-LLM stage's padding needs one.
            cache = kwargs.get("cache", kwargs.get("past_key_values"))
            steps = cache.get_seq_length() + kwargs["inputs_embeds"].shape[1] - batch.lm_length
            ones = batch.lm_mask.new_ones(batch.size, steps)
            kwargs["attention_mask"] = torch.cat([batch.lm_mask, ones], dim=1)
        if self.positions == "contiguous" and kwargs.get("position_ids") is not None:
            s = batch.samples[0]  # contiguous positions run at batch size 1 only (checked at prefill)
            kwargs["position_ids"] = kwargs["position_ids"] - (s.input_ids.shape[1] - s.pre_index.numel())
        return args, kwargs

    def _lm_prefill(self, kwargs: dict, batch: _Batch):
        embeds = kwargs["inputs_embeds"]
        length, device = embeds.shape[1], embeds.device
        mask = _padding_of(kwargs.get("attention_mask"), length)
        if mask is None:
            mask = torch.ones(embeds.shape[0], length, dtype=torch.long, device=device)
        pos = kwargs.get("position_ids")
        if pos is None:
            pos = torch.arange(length, device=device).unsqueeze(0).expand(embeds.shape[0], -1)
        pieces, mask_pieces, pos_pieces, acted = [], [], [], False
        for s, pad in zip(batch.samples, batch.pads, strict=True):
            b, n = s.index, length - pad
            vis_pos = _positions(s.is_visual, s.n_visual).to(device)
            view = _View(torch.arange(n, device=device), vis_pos, torch.arange(s.n_visual, device=device))
            own = embeds[b : b + 1, pad:]
            pre = self._acting_pre(s)
            index = None
            if pre is not None:
                view, sel, index = self._apply(s, pre, view, own)
                own = self._merge(own[:, index], view, sel)
                s.pre_index = index
                view = _View(torch.arange(index.numel(), device=device), view.visual_positions, view.visual_origin)
                acted = True
            elif any(st.kind == "pre" for st in s.stages):
                s.records.append(StageRecord("pre", "pre", None, s.n_visual, s.n_visual, list(range(s.n_visual))))
            keep = torch.arange(pad, length, device=device) if index is None else index + pad
            pieces.append(own[0])
            mask_pieces.append(mask[b, keep])
            pos_pieces.append(pos[..., b, keep])
            s.lm_len = view.index.numel()
            s.lm_view = view
        if acted:
            kwargs["inputs_embeds"] = _left_pad(pieces)
            # Always pass a mask: gapped positions with no mask are read as packed sequences.
            kwargs["attention_mask"] = batch.lm_mask = _left_pad(mask_pieces, 0)
            if batch.width is not None:  # decoded tokens fill the slots after the prompt; causality masks the future
                ones = batch.lm_mask.new_ones(batch.size, batch.width - batch.lm_mask.shape[1])
                batch.decode_mask = torch.cat([batch.lm_mask, ones], dim=1)
            if self.positions == "contiguous":
                kwargs["position_ids"] = torch.arange(batch.samples[0].lm_len, device=device).unsqueeze(0)
            else:
                kwargs["position_ids"] = _left_pad_last(pos_pieces, 1)
            batch.lm_length = kwargs["inputs_embeds"].shape[1]
        else:
            batch.lm_length = length
        batch.lm_pads = [batch.lm_length - s.lm_len for s in batch.samples]
        batch.phase = "lm_prefill"
        return (), kwargs

    def _acting_pre(self, s: _Prefill) -> Stage | None:
        """The sample's pre-LLM stage if it acts this prefill (it drops tokens, or merges at a ratio above 0)."""
        pre = next((st for st in s.stages if st.kind == "pre"), None)
        return pre if pre is not None and (pre.n_keep < s.n_visual or self._always_apply()) else None

    def _always_apply(self) -> bool:
        # Merging methods change features even when a stage drops nothing; plain selection is then a no-op.
        # At ratio 0 no stage acts at all: the contract is that ratio 0 is the stock model, for every method.
        return self.ratio > 0 and bool(getattr(self.method, "merges", False))

    def _after_lm(self, module, args, kwargs, output):
        batch = self._state
        if batch is not None and batch.phase == "lm_prefill":
            self._check_selections()
            batch.phase = "decode"
            if batch.width is not None:  # fixed for the whole decode: built here, outside a compiled decode step
                for level in batch.levels.values():
                    level.columns = _decode_columns(level, batch.lm_length, batch.width, static=True)

    # ------------------------------------------------------------------ decoder layers (intra-LLM stages)
    def _layer_hook(self, idx: int):
        def hook(module, args, kwargs):
            batch = self._state
            if batch is None or batch.phase == "prefill":
                return None
            if batch.phase == "lm_prefill":
                return self._layer_prefill(idx, module, args, kwargs, batch)
            return self._layer_decode(idx, args, kwargs, batch)

        return hook

    @staticmethod
    def _current_view(idx: int, s: _Prefill) -> _View | None:
        layers = [k for k in s.views if k <= idx]
        return s.views[max(layers)] if layers else None

    @staticmethod
    def _current_level(idx: int, batch: _Batch) -> _Level | None:
        layers = [k for k in batch.levels if k <= idx]
        return batch.levels[max(layers)] if layers else None

    def _layer_prefill(self, idx, module, args, kwargs, batch: _Batch):
        hidden = args[0] if args else kwargs["hidden_states"]
        previous_level = self._current_level(idx, batch)
        lengths = previous_level.lengths if previous_level is not None else [s.lm_len for s in batch.samples]
        acting = []
        for s in batch.samples:
            stage = next((st for st in s.stages if st.kind == "intra" and st.layer == idx), None)
            previous = self._current_view(idx, s) or s.lm_view
            if stage is not None and (stage.n_keep < previous.visual_positions.numel() or self._always_apply()):
                acting.append((s, stage, previous))
            elif stage is not None:
                n = previous.visual_positions.numel()
                s.records.append(
                    StageRecord(stage.label, "intra", idx, n, n, torch.sort(previous.visual_origin).values)
                )
        changed = False
        if acting:
            # Layer K's own (unpruned) input, so a method may score with layer K's attention; replaced by
            # the pruned input below, which is what a stage at K+1 reads as "layer K".
            unpruned = dict(kwargs)
            if previous_level is not None:  # an earlier stage pruned: hand its view, as the layer would see it
                self._gather_layer_kwargs(unpruned, previous_level, hidden, batch)
            pieces = [hidden[s.index, hidden.shape[1] - n :] for s, n in zip(batch.samples, lengths, strict=True)]
            for s, stage, previous in acting:
                s.layer_inputs[idx] = self._layer_input(module, hidden, unpruned, previous, s.index, lengths[s.index])
                view, sel, local = self._apply(s, stage, previous, pieces[s.index].unsqueeze(0))
                pieces[s.index] = self._merge(pieces[s.index].unsqueeze(0)[:, local], view, sel)[0]
                s.views[idx] = view
            hidden = _left_pad(pieces)
            batch.levels[idx] = self._level(batch, idx, hidden.device)
            changed = True
        level = self._current_level(idx, batch)
        if level is not None:
            self._gather_layer_kwargs(kwargs, level, hidden, batch)
            changed = True
        if args:
            args = (hidden, *args[1:])
        else:
            kwargs["hidden_states"] = hidden
        lengths = level.lengths if level is not None else [s.lm_len for s in batch.samples]
        for s in batch.samples:
            cur = self._current_view(idx, s) or s.lm_view
            s.visual_per_layer.append(int(cur.visual_positions.numel()))
            if self._captures(idx, s):
                s.layer_inputs[idx] = self._layer_input(module, hidden, kwargs, cur, s.index, lengths[s.index])
        return (args, kwargs) if changed else None

    def _level(self, batch: _Batch, idx: int, device: torch.device) -> _Level:
        """The padded batch sequence from layer ``idx`` on, from each sample's current view."""
        gathers, rows, lengths = [], [], []
        for s, lm_pad in zip(batch.samples, batch.lm_pads, strict=True):
            view = self._current_view(idx, s) or s.lm_view
            gathers.append(view.index + lm_pad)
            rows.append(torch.sort(view.index).values + lm_pad)
            lengths.append(int(view.index.numel()))
        valid = _left_pad([torch.ones(n, dtype=torch.bool, device=device) for n in lengths], False)
        return _Level(_left_pad(gathers, 0), _left_pad(rows, 0), valid, min(lengths) != max(lengths) or
                      any(batch.lm_pads), lengths)  # fmt: skip

    @staticmethod
    def _layer_input(module, hidden: torch.Tensor, kwargs: dict, view: _View, b: int, n: int) -> LayerInput:
        """Sample ``b``'s layer input (its last ``n`` slots: the batch's left padding stripped), as at batch 1."""
        start = hidden.shape[1] - n
        cos, sin = kwargs["position_embeddings"]
        mask = kwargs.get("attention_mask")
        if isinstance(mask, torch.Tensor) and mask.dim() == 4:  # keys cut to the sequence (a static cache's are wider)
            mask = mask[b : b + 1, :, start:, start : hidden.shape[1]]
        positions = view.visual_positions
        r = b if cos.shape[0] > 1 else 0  # rotary tables are shared by the batch when no position ids are given
        return LayerInput(module, hidden[b : b + 1, start:], (cos[r : r + 1, start:], sin[r : r + 1, start:]), mask,
                          positions, _complement(positions, n))  # fmt: skip

    def _captures(self, idx: int, s: _Prefill) -> bool:
        # Methods score at layer K with layer K's or K-1's attention; keep references to those inputs only,
        # plus the LLM input (layer 0) for a method that reads it (``needs_llm_input``: SparseVLM's raters).
        if idx == 0 and getattr(self.method, "needs_llm_input", False):
            return True
        return any(st.kind == "intra" and st.layer is not None and idx in (st.layer - 1, st.layer) for st in s.stages)

    def _gather_layer_kwargs(self, kwargs: dict, level: _Level, hidden: torch.Tensor, batch: _Batch) -> None:
        gather, cache = level.gather, level.cache
        cos, sin = kwargs["position_embeddings"]
        if cache.get("pe_src") is not cos:  # the decoder hands every layer the same tensors: gather once
            if self.positions == "contiguous":
                pos = torch.arange(gather.shape[1], device=hidden.device).unsqueeze(0)
                cache["pe"] = self.model.language_model.rotary_emb(hidden, pos)
            else:
                cache["pe"] = (_take(cos, gather), _take(sin, gather))
            cache["pe_src"] = cos
        kwargs["position_embeddings"] = cache["pe"]
        mask = kwargs.get("attention_mask")
        if isinstance(mask, torch.Tensor) and mask.dim() != 4 and level.padded:
            raise PruningError(
                f"a padded batch reached a pruned layer with a {mask.dim()}-D attention mask; batches run with "
                "attn_implementation 'sdpa' or 'eager' (4-D masks), flash_attention_2 at batch size 1 only"
            )
        if isinstance(mask, torch.Tensor):
            if cache.get("mask_src") is not mask:
                # Sorted: a view whose kept tokens are in a method's entry order (study.py) stays causal in
                # its own sequence order, as the study's sliced mask is; a no-op for sequence-ordered views.
                cache["mask"] = _widen(_prefill_mask(mask, level), batch.width)
                cache["mask_src"] = mask
            kwargs["attention_mask"] = cache["mask"]
        elif level.padded:
            if "mask" not in cache:
                cache["mask"] = _widen(_prefill_mask(None, level, self._mask_dtype(hidden)), batch.width)
            kwargs["attention_mask"] = cache["mask"]
        pos_ids = kwargs.get("position_ids")
        if isinstance(pos_ids, torch.Tensor) and pos_ids.shape[-1] == batch.lm_length:
            kwargs["position_ids"] = _take_positions(pos_ids, gather)

    def _mask_dtype(self, hidden: torch.Tensor) -> torch.dtype:
        """The mask type the attention takes when the engine must build one: boolean for SDPA, additive otherwise."""
        impl = getattr(self.model.language_model.config, "_attn_implementation", "sdpa")
        return torch.bool if impl == "sdpa" else hidden.dtype

    def _layer_decode(self, idx, args, kwargs, batch: _Batch):
        level = self._current_level(idx, batch)
        if level is None:
            return None
        mask = kwargs.get("attention_mask")
        if isinstance(mask, torch.Tensor):
            index, valid = level.columns or _decode_columns(level, batch.lm_length, mask.shape[-1], static=False)
            cols = _take_columns(mask, index)
            kwargs["attention_mask"] = cols if valid is None else cols.masked_fill(~valid, _attend_value(mask)[1])
        elif level.padded:
            hidden = args[0] if args else kwargs["hidden_states"]
            # Keys of this step: the layer's cache (its padded kept slots + decoded tokens) and the new tokens.
            past = kwargs.get("cache", kwargs.get("past_key_values"))
            steps = past.get_seq_length(idx) - level.gather.shape[1] + hidden.shape[1]
            valid = torch.cat([level.valid, level.valid.new_ones(batch.size, steps)], dim=1)[:, None, None, :]
            valid = valid.expand(-1, 1, hidden.shape[1], -1)
            dtype = self._mask_dtype(hidden)
            if dtype == torch.bool:
                kwargs["attention_mask"] = valid
            else:
                kwargs["attention_mask"] = torch.zeros(valid.shape, dtype=dtype, device=valid.device).masked_fill(
                    ~valid, torch.finfo(dtype).min
                )
        if self.positions == "contiguous":
            hidden = args[0] if args else kwargs["hidden_states"]
            pos = kwargs.get("position_ids")
            s = batch.samples[0]
            shift = s.lm_len - level.lengths[0]
            if pos is not None:
                kwargs["position_embeddings"] = self.model.language_model.rotary_emb(hidden, pos - shift)
        return args, kwargs


def _take(values: torch.Tensor, gather: torch.Tensor) -> torch.Tensor:
    """``values[b, gather[b]]`` for ``[B, L, ...]`` values (rotary tables); a batch of one broadcasts."""
    if values.shape[0] == 1 and gather.shape[0] == 1:
        return values[:, gather[0]]
    rows = torch.arange(gather.shape[0], device=gather.device).unsqueeze(1)
    return values.expand(gather.shape[0], *values.shape[1:])[rows, gather]


def _take_positions(pos: torch.Tensor, gather: torch.Tensor) -> torch.Tensor:
    """Gather position ids ``[B, L]`` / ``[k, B, L]`` (M-RoPE) per sample with ``gather`` ``[B, Lk]``."""
    if gather.shape[0] == 1 and pos.shape[-2] == 1:
        return pos[..., gather[0]]
    lead = pos.shape[:-2]
    index = gather.expand(*lead, *gather.shape)
    return pos.expand(*lead, gather.shape[0], pos.shape[-1]).gather(-1, index)


def _take_columns(mask: torch.Tensor, gather: torch.Tensor) -> torch.Tensor:
    """Gather the key columns of a ``[B, h, q, L]`` mask per sample with ``gather`` ``[B, Lk]``."""
    if gather.shape[0] == 1 and mask.shape[0] == 1:
        return mask[..., gather[0]]
    index = gather[:, None, None, :].expand(gather.shape[0], *mask.shape[1:-1], gather.shape[1])
    return mask.expand(gather.shape[0], *mask.shape[1:]).gather(-1, index)


def _decode_columns(
    level: _Level, lm_length: int, width: int, static: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Which column of a decode step's LLM-input mask (``width`` key slots) each key slot of ``level``'s layers
    reads (``[B, n]``), and which of those slots may be attended (``[B, 1, 1, n]``; None: all).

    A layer of the level caches its kept tokens, then the decoded ones (columns ``lm_length`` on). A static
    cache's layer returns its whole buffer, as wide as layer 0's (``n = width``): its last ``lm_length - Lk``
    slots are never written and stay masked. A growing cache's layer returns only what it holds.
    """
    size, kept = level.gather.shape
    device = level.gather.device
    decoded = torch.arange(lm_length, width, device=device).expand(size, -1)
    index, valid = [level.gather, decoded], [level.valid, level.valid.new_ones(size, width - lm_length)]
    if static:
        index.append(level.gather.new_zeros(size, lm_length - kept))
        valid.append(level.valid.new_zeros(size, lm_length - kept))
    elif not level.padded:
        return torch.cat(index, dim=1), None
    return torch.cat(index, dim=1), torch.cat(valid, dim=1)[:, None, None, :]


def _padding_of(mask: torch.Tensor | dict | None, length: int) -> torch.Tensor | None:
    """The ``[B, length]`` padding mask (1: a token) of a 2-D mask or of a 4-D causal mask over ``length`` queries.

    ``generate`` with a static cache builds the 4-D mask before the forward (Qwen2 decoders: one per attention
    type, of which the full-attention one is read); every prompt key precedes the last query, whose row is
    therefore exactly the keys' padding. None when no mask was given (no padding).
    """
    if isinstance(mask, dict):
        mask = mask.get("full_attention")
    if not isinstance(mask, torch.Tensor) or mask.dim() == 2:
        return mask
    row = mask[:, 0, -1, :length]
    return (row if row.dtype == torch.bool else row == 0).long()


def _widen(mask: torch.Tensor, width: int | None) -> torch.Tensor:
    """``mask`` with masked key columns appended up to ``width``: a static cache's layer returns all its slots,
    also those it has not written (None: a growing cache, whose keys are the sequence)."""
    if width is None or mask.shape[-1] >= width:
        return mask
    fill = mask.new_full((*mask.shape[:-1], width - mask.shape[-1]), _attend_value(mask)[1])
    return torch.cat([mask, fill], dim=-1)


def _left_pad_last(pieces: list[torch.Tensor], fill: int) -> torch.Tensor:
    """Pieces ``[..., n_b]`` (one sample each) -> ``[..., B, max n]``, padded on the left of the last dimension."""
    longest = max(p.shape[-1] for p in pieces)
    out = pieces[0].new_full((*pieces[0].shape[:-1], len(pieces), longest), fill)
    for b, piece in enumerate(pieces):
        out[..., b, longest - piece.shape[-1] :] = piece
    return out


def _prefill_mask(mask: torch.Tensor | None, level: _Level, dtype: torch.dtype = torch.bool) -> torch.Tensor:
    """The 4-D prefill mask of ``level``: each sample's rows/columns gathered (in sequence order), padded slots
    masked as keys; a padded query attends to itself only. Without a mask, the causal mask of each sample."""
    if mask is not None and not level.padded and level.rows.shape[0] == 1:
        rows = level.rows[0]
        return mask[:, :, rows][:, :, :, rows]
    size, length = level.rows.shape
    device = level.rows.device
    if mask is None:
        allowed, masked = (True, False) if dtype == torch.bool else (0.0, torch.finfo(dtype).min)
        heads = 1
    else:
        (allowed, masked), dtype, heads = _attend_value(mask), mask.dtype, mask.shape[1]
    out = torch.full((size, heads, length, length), masked, dtype=dtype, device=device)
    causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
    for b, n in enumerate(level.lengths):
        start = length - n
        if mask is None:
            block = torch.full((1, heads, n, n), masked, dtype=dtype, device=device)
            block.masked_fill_(causal[:n, :n], allowed)
        else:
            rows = level.rows[b, start:]
            block = mask[b : b + 1, :, rows][:, :, :, rows]
        out[b : b + 1, :, start:, start:] = block
        pad = torch.arange(start, device=device)
        out[b, :, pad, pad] = allowed
    return out


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
