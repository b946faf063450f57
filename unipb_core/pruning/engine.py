"""The pruning engine: applies a method's selections to a model of any family, with hooks.

Two stages, each usable alone or together:

* **pre-LLM** — a forward pre-hook on the decoder stack (``XModel.language_model``). The image features
  are already scattered into ``inputs_embeds``; embeddings, the 2-D attention mask and the position ids
  are gathered with one sorted index, so kept tokens keep their original (1-D or M-RoPE) positions
  unless ``positions="contiguous"``. On decode steps the 2-D mask is shrunk the same way.
* **intra-LLM** — pre-hooks on decoder layers. At a stage's layer K the hidden states, the rotary
  embeddings, the 4-D mask (when one exists) and the position ids are gathered; every later layer gets
  the same pruned view (the decoder loop hands all layers the full-length tensors). Layers < K cache
  every token, layers >= K only the kept ones; on decode steps each layer's mask columns are mapped to
  its own cache.

Method time (scoring + selection) is timed around ``method.select`` only, per stage, on the sample's
``SampleTimer`` (CUDA events on GPU, no host sync inside the window).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from ..models.base import FamilyAdapter
from ..timing import SampleTimer
from .base import PruningMethod, Selection, Stage
from .context import LayerInput, PruneContext

POSITION_POLICIES = ("original", "contiguous")


class PruningError(ValueError):
    """A configuration or input the engine cannot apply (names the problem and what is accepted)."""


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


class PruningEngine:
    """Context manager that installs a method on a model and removes every hook on exit.

    Parameters
    ----------
    model : FamilyAdapter
    method : PruningMethod
    ratio : float
        Share of visual tokens removed, in ``[0, 1)``; layer-averaged for multi-stage schedules.
    seed : int
        Seeds the generator handed to methods (combined with the sample key of ``begin_sample``).
    positions : str
        ``"original"`` (default): kept tokens keep their positions. ``"contiguous"``: renumbered 0..n-1
        (the study's InternVL code); 1-D RoPE families only.
    reuse_selections : bool
        Re-apply the previous prefill's selections instead of calling the method again (used to check
        cached decoding against a teacher-forced full forward, and by the explorer).

    Examples
    --------
    >>> with PruningEngine(model, get("random_pre"), ratio=0.889, seed=0) as engine:  # doctest: +SKIP
    ...     out = model.generate(model.build_inputs([image], "What is shown?"))
    ...     engine.summary()["visual_kept_mean"]
    """

    def __init__(
        self,
        model: FamilyAdapter,
        method: PruningMethod,
        ratio: float,
        seed: int = 0,
        positions: str = "original",
        reuse_selections: bool = False,
    ):
        if not isinstance(ratio, (int, float)) or math.isnan(ratio) or not 0.0 <= ratio < 1.0:
            raise PruningError(f"ratio {ratio!r} is outside [0, 1): it is the share of visual tokens removed")
        if positions not in POSITION_POLICIES:
            raise PruningError(f"positions={positions!r}; accepted: {', '.join(POSITION_POLICIES)}")
        if positions == "contiguous" and model.position_scheme != "rope1d":
            raise PruningError(
                f"positions='contiguous' is defined for 1-D RoPE families; {model.family} uses "
                f"{model.position_scheme} (3-D positions), which keeps original positions only"
            )
        self.model, self.method, self.ratio, self.seed = model, method, float(ratio), int(seed)
        self.positions = positions
        self.reuse_selections = reuse_selections
        self.timer: SampleTimer | None = None
        self._sample_key = ""
        self._grids: list[tuple[int, int]] | None = None
        self._state: _Prefill | None = None
        self._saved: dict[str, Selection] = {}
        self._handles: list = []
        self._vision_store: dict = {}  # encoder-layer inputs captured for methods that read encoder attention

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> PruningEngine:
        m = self.model
        self._handles.append(m.model.register_forward_pre_hook(self._on_model, with_kwargs=True))
        self._handles.append(m.language_model.register_forward_pre_hook(self._on_lm, with_kwargs=True))
        self._handles.append(m.language_model.register_forward_hook(self._after_lm, with_kwargs=True))
        for idx, layer in enumerate(m.decoder_layers):
            self._handles.append(layer.register_forward_pre_hook(self._layer_hook(idx), with_kwargs=True))
        if getattr(self.method, "needs_vision_attention", False):
            self._handles.extend(m.vision_attention_hooks(self._vision_store))
        if getattr(self.method, "needs_vision_input", False):  # re-encoding methods (downsample)
            self._handles.extend(m.vision_input_hooks(self._vision_store))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._vision_store.clear()

    def begin_sample(
        self, key: str = "", timer: SampleTimer | None = None, grids: list[tuple[int, int]] | None = None
    ) -> None:
        """Set the sample key (seeds the generator), the timer for method time, and the patch grids."""
        self._sample_key, self.timer, self._grids = str(key), timer, grids

    def config(self) -> dict[str, Any]:
        """What this engine contributes to the run config (and its hash)."""
        return {
            "method": self.method.name,
            "category": self.method.category,
            "params": self.method.params(),
            "ratio": self.ratio,
            "positions": self.positions,
            "family_notes": self.method.notes_for(self.model.family),
        }

    # ------------------------------------------------------------------ accounting
    @property
    def records(self) -> list[StageRecord]:
        return [] if self._state is None else [_listed(r) for r in self._state.records]

    def summary(self) -> dict[str, Any]:
        """Token accounting of the last prefill: counts per stage and per decoder layer."""
        s = self._state
        if s is None:
            return {"n_visual": 0, "stages": [], "visual_per_layer": [], "visual_kept_mean": 0.0}
        per_layer = list(s.visual_per_layer)
        return {
            "n_visual": s.n_visual,
            "stages": [_listed(r).__dict__ for r in s.records],
            "visual_per_layer": per_layer,
            "visual_kept_mean": sum(per_layer) / len(per_layer) if per_layer else float(s.n_visual),
        }

    # ------------------------------------------------------------------ hooks
    def _on_model(self, module, args, kwargs):
        input_ids = _arg(args, kwargs, "input_ids", 0)
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        past = cache.get_seq_length() if cache is not None else 0
        if input_ids is not None and past == 0:
            self._start_prefill(input_ids)
        elif self._state is not None:
            self._state.phase = "decode"

    def _start_prefill(self, input_ids: torch.Tensor) -> None:
        if input_ids.shape[0] != 1:
            raise PruningError(
                f"batch size {input_ids.shape[0]} is not supported by the pruning engine; it runs batch size 1 "
                "(the study's protocol), so each sample keeps its own token count"
            )
        is_visual = self.model.visual_mask(input_ids[0])
        n_visual = int(is_visual.sum())
        stages = self.method.plan(n_visual, self.ratio, self.model.num_layers) if n_visual else []
        for stage in stages:
            if stage.kind == "intra" and not 0 <= (stage.layer or 0) < self.model.num_layers:
                raise PruningError(
                    f"method {self.method.name!r}: layer K={stage.layer} is outside the model; {self.model.spec} "
                    f"has {self.model.num_layers} decoder layers (valid K: 0..{self.model.num_layers - 1})"
                )
        generator = torch.Generator(device="cpu")
        digest = hashlib.sha256(f"{self.seed}:{self._sample_key}".encode()).digest()
        generator.manual_seed(int.from_bytes(digest[:8], "little"))
        self._state = _Prefill(input_ids, is_visual, n_visual, generator, stages)

    def _grids_for(self, n_visual: int) -> list[tuple[int, int]]:
        if self._grids:
            return self._grids
        side = int(math.isqrt(n_visual))
        return [(side, side)] if side * side == n_visual else [(1, n_visual)]

    def _select(self, stage: Stage, ctx: PruneContext) -> Selection:
        key = stage.label
        if self.reuse_selections and key in self._saved:
            return self._saved[key]
        timer = self.timer
        # An intra-LLM method runs inside the decoder loop: pause llm_prefill so that it counts decoder
        # layers only and method + llm_prefill <= prefill holds for every method.
        paused = timer is not None and timer.is_open("llm_prefill")
        if paused:
            timer.stop("llm_prefill")
        try:
            with timer.interval("method") if timer is not None else contextlib.nullcontext():
                out = self.method.select(ctx)
        finally:
            if paused:
                timer.start("llm_prefill")
        selection = out if isinstance(out, Selection) else Selection(out)
        keep = selection.keep
        if keep.numel() != stage.n_keep or keep.dim() != 1:
            raise PruningError(
                f"method {self.method.name!r} kept {keep.numel()} tokens at {key}; the plan asks for {stage.n_keep}"
            )
        if keep.numel() and bool(((keep[1:] <= keep[:-1]).any() | (keep[0] < 0) | (keep[-1] >= ctx.n_visual)).item()):
            raise PruningError(
                f"method {self.method.name!r} returned keep indices that are not sorted, unique and within "
                f"0..{ctx.n_visual - 1} at {key}"
            )
        self._saved[key] = selection
        return selection

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

    def _vision_extras(self, stage: Stage) -> dict:
        """Lazy vision-side entries: computed only if the method asks (encoder attention: once per prefill)."""
        extras: dict = {}
        store = self._vision_store

        def encoder_attention():
            if "layer" not in store:
                raise PruningError(
                    f"method {self.method.name!r} reads vision-encoder attention, but the vision tower did not run "
                    "in this forward (pass pixel values, not precomputed image embeddings)"
                )
            if "_computed" not in store:
                with torch.no_grad():
                    store["_computed"] = self.model.vision_attention(store)
            return store["_computed"]

        def downsampled():
            if "pixels" not in store:
                raise PruningError(
                    f"method {self.method.name!r} re-encodes the images, but the vision tower did not run in this "
                    "forward (pass pixel values, not precomputed image embeddings)"
                )
            return self.model.downsampled_features(store, stage.n_keep)

        if getattr(self.method, "needs_vision_attention", False):
            extras["encoder_attention"] = encoder_attention
        if getattr(self.method, "needs_vision_input", False):
            extras["downsampled"] = downsampled
        return extras

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


def _listed(record: StageRecord) -> StageRecord:
    kept = record.kept
    return dataclasses.replace(record, kept=kept.tolist()) if isinstance(kept, torch.Tensor) else record
