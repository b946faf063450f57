"""The pruning engine: applies a method's selections to a model of any family, with hooks.

``PruningEngine`` is the lifecycle and the accounting: it installs its hooks on entry and removes every one on
exit, seeds each sample's generator, plans the method's stages (pre-LLM and/or intra-LLM), calls the method,
checks its selection and counts the kept tokens per stage and per decoder layer. The sequence surgery the
hooks do (gathering embeddings, masks, positions and rotary embeddings; decode steps against the pruned
cache) is ``surgery._Surgery``.

Method time (scoring + selection) is timed around ``method.select`` only, per stage, on the sample's
``SampleTimer`` (CUDA events on GPU, no host sync inside the window). At batch size B (``begin_batch``) each
sample gets its own context, generator and selection, and the one timer of the batch accumulates the method
time of all its samples.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import math
from typing import Any

import torch

from ..models.base import FamilyAdapter, ModelInputError
from ..timing import SampleTimer
from .base import PruningMethod, Selection, Stage, stage_outside
from .context import PruneContext
from .errors import PruningError
from .surgery import StageRecord, _arg, _Batch, _padding_of, _Prefill, _Surgery

__all__ = ["POSITION_POLICIES", "PruningEngine", "PruningError", "StageRecord"]

POSITION_POLICIES = ("original", "contiguous")


class PruningEngine(_Surgery):
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
        self._sample_keys: list[str] = [""]
        self._grids: list[list[tuple[int, int]] | None] = [None]
        self._state: _Batch | None = None
        self._saved: dict[tuple[int, str], Selection] = {}
        self._handles: list = []
        # Encoder-layer inputs captured for methods that read encoder attention; where the resized images' tokens
        # belong, for methods that encode resized images.
        self._vision_store: dict = {}

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
        if getattr(self.method, "needs_vision_input", False):  # methods that encode resized images (downsample)
            self._handles.append(m.route_image_features(self._encode_resized))
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
        self.begin_batch([key], timer=timer, grids=[grids])

    def begin_batch(
        self,
        keys: list[str],
        timer: SampleTimer | None = None,
        grids: list[list[tuple[int, int]] | None] | None = None,
    ) -> None:
        """Set the keys of the next batch's samples (in batch order), the batch's timer and each sample's grids."""
        keys = [str(k) for k in keys]
        if not keys:
            raise PruningError("begin_batch: no sample keys given; a batch has at least one sample")
        if grids is not None and len(grids) != len(keys):
            raise PruningError(f"begin_batch: {len(grids)} grid lists for {len(keys)} samples; give one per sample")
        self._sample_keys, self.timer = keys, timer
        self._grids = list(grids) if grids is not None else [None] * len(keys)

    # ------------------------------------------------------------------ accounting
    @property
    def records(self) -> list[StageRecord]:
        """Stage records of the last prefill's first sample (``summaries()`` has every sample's)."""
        return [] if self._state is None else [_listed(r) for r in self._state.samples[0].records]

    def summaries(self) -> list[dict[str, Any]]:
        """``summary(b)`` of every sample of the last prefill, in batch order."""
        return [] if self._state is None else [self.summary(b) for b in range(self._state.size)]

    def summary(self, index: int = 0) -> dict[str, Any]:
        """Token accounting of the last prefill (sample ``index`` of its batch): counts per stage and decoder layer."""
        if self._state is None:
            return {"n_visual": 0, "stages": [], "visual_per_layer": [], "visual_kept_mean": 0.0}
        s = self._state.samples[index]
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
        if input_ids is not None and _is_empty(cache):
            self._start_prefill(input_ids, _arg(args, kwargs, "attention_mask", 2), cache)
        elif self._state is not None:
            self._state.phase = "decode"

    def _start_prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, cache: Any = None) -> None:
        width = _static_width(cache)
        impl = str(getattr(self.model.language_model.config, "_attn_implementation", ""))
        if width is not None and impl.startswith("flash"):
            raise PruningError(
                f"method {self.method.name!r} with a static KV cache (decode mode 'static' or 'graphs') needs "
                f"attn_implementation 'sdpa' or 'eager'; {impl} keeps generate's 2-D mask, which the pruned cache "
                "does not match"
            )
        attention_mask = _padding_of(attention_mask, input_ids.shape[1])
        size, length = input_ids.shape
        keys = self._sample_keys if len(self._sample_keys) == size else None
        if keys is None:
            if size != 1:
                raise PruningError(
                    f"a batch of {size} samples reached the pruning engine after begin_batch() named "
                    f"{len(self._sample_keys)}; call begin_batch(keys) with one key per sample before the forward"
                )
            keys = self._sample_keys[:1]
        if size > 1 and self.positions == "contiguous":
            raise PruningError("positions='contiguous' runs at batch size 1 only; use batch_size 1 for it")
        visual = self.model.visual_mask(input_ids)  # [B, L]
        pads, counts = self._layout(visual, attention_mask)
        samples, offset = [], 0
        for b, (key, pad, n_visual) in enumerate(zip(keys, pads, counts, strict=True)):
            ids = input_ids[b : b + 1, pad:]
            is_visual = visual[b, pad:]
            stages = self.method.plan(n_visual, self.ratio, self.model.num_layers) if n_visual else []
            outside = stage_outside(stages, self.model.num_layers)
            if outside is not None:
                raise PruningError(
                    f"method {self.method.name!r}: layer K={outside.layer} is outside the model; {self.model.spec} "
                    f"has {self.model.num_layers} decoder layers (valid K: 0..{self.model.num_layers - 1})"
                )
            generator = torch.Generator(device="cpu")
            digest = hashlib.sha256(f"{self.seed}:{key}".encode()).digest()
            generator.manual_seed(int.from_bytes(digest[:8], "little"))
            samples.append(_Prefill(ids, is_visual, n_visual, generator, stages, index=b, key=key,
                                    grids=self._grids[b], visual_offset=offset))  # fmt: skip
            offset += n_visual
        self._state = _Batch(samples, length, pads, width=width)
        self._vision_store.pop("downsampled", None)  # what an earlier prefill encoded is not this one's

    @staticmethod
    def _layout(visual: torch.Tensor, attention_mask: torch.Tensor | None) -> tuple[list[int], list[int]]:
        """Each sample's left padding and visual-token count (``visual``: the batch's placeholder mask), in the
        prefill's one host read (taken before the forward queues any work, so the device has nothing to finish). A
        placeholder never sits in padding, so a padded row's count is its sample's."""
        size, length = visual.shape
        rows = [visual.sum(dim=1)]
        padded = size > 1 and isinstance(attention_mask, torch.Tensor)
        if padded:
            rows += [attention_mask.sum(dim=1), (attention_mask[:, 1:] < attention_mask[:, :-1]).any(dim=1)]
        values = torch.stack([row.to(torch.long) for row in rows]).tolist()
        if padded and any(values[2]):
            raise PruningError("the pruning engine needs a left-padded batch (padding_side='left'); got right padding")
        return ([length - n for n in values[1]] if padded else [0] * size), values[0]

    def _grids_for(self, s: _Prefill) -> list[tuple[int, int]]:
        if s.grids:
            return s.grids
        side = int(math.isqrt(s.n_visual))
        return [(side, side)] if side * side == s.n_visual else [(1, s.n_visual)]

    def _select(self, stage: Stage, ctx: PruneContext, s: _Prefill) -> Selection:
        key = (s.index, stage.label)
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
                f"method {self.method.name!r} kept {keep.numel()} tokens at {stage.label}; the plan asks for "
                f"{stage.n_keep}"
            )
        if keep.numel():
            bad = (keep[1:] <= keep[:-1]).any() | (keep[0] < 0) | (keep[-1] >= ctx.n_visual)
            self._state.checks.append((bad, stage.label, ctx.n_visual))
            if keep.device.type == "cpu":  # free here, and the clear error comes before the gathers fail
                self._check_selections()
            # On an accelerator the flags are read once in ``_check_selections`` at the end of the decoder stack:
            # a host read here would stall the device mid-prefill.
        self._saved[key] = selection
        return selection

    def _check_selections(self) -> None:
        """Whether every selection of the prefill was sorted, unique and in range: one host read, at the end of the
        decoder stack (where a timed run synchronises anyway), before any decode step uses the pruned cache.

        An index out of range has already failed the gathers by then (on CUDA as a device-side assert).
        """
        checks, self._state.checks = self._state.checks, []
        if not checks:
            return
        flags = torch.stack([bad for bad, _, _ in checks]).tolist()
        for flag, (_, label, n_visual) in zip(flags, checks, strict=True):
            if flag:
                raise PruningError(
                    f"method {self.method.name!r} returned keep indices that are not sorted, unique and within "
                    f"0..{n_visual - 1} at {label}"
                )

    def _vision_extras(self, stage: Stage, s: _Prefill) -> dict:
        """Lazy vision-side entries: computed only if the method asks (encoder attention: once per prefill, for
        the whole batch; each sample gets the rows of its own visual tokens)."""
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
            full = store["_computed"]
            if self._state.size == 1:
                return full
            groups = full.groups[s.visual_offset : s.visual_offset + s.n_visual]
            return dataclasses.replace(full, groups=groups)

        def downsampled():
            if "downsampled" not in store:
                raise PruningError(
                    f"method {self.method.name!r} encodes resized images, but the vision tower did not run in this "
                    "forward (pass pixel values, not precomputed image embeddings)"
                )
            return store["downsampled"][s.index]

        if getattr(self.method, "needs_vision_attention", False):
            extras["encoder_attention"] = encoder_attention
        if getattr(self.method, "needs_vision_input", False):
            extras["downsampled"] = downsampled
        return extras

    def _encode_resized(self, encode, *args, **kwargs) -> _Deferred:
        """The routed ``get_image_features`` (``route_image_features``) of a method that encodes resized images.

        ``generate`` encodes the images before the prefill's forward, when the samples' budgets are not known yet,
        so the encoding waits until the stock forward reads the result, after the engine has planned the prefill
        (``_on_model``): then, if the pre-LLM stage acts, the images are resized first, so that the one vision pass
        yields each sample's ``n_keep`` tokens (``FamilyAdapter.encode_downsampled``); otherwise the stock call.
        """

        def encode_planned():
            batch = self._state
            stages = [] if batch is None else [self._acting_pre(s) for s in batch.samples]
            if all(st is None for st in stages):
                return encode(*args, **kwargs)
            pairs = zip(batch.samples, stages, strict=True)
            budgets = [(s.n_visual, s.n_visual if st is None else st.n_keep) for s, st in pairs]
            try:
                out, geometry = self.model.encode_downsampled(encode, args, kwargs, budgets)
            except (ModelInputError, NotImplementedError) as exc:
                raise PruningError(f"{self.method.name} cannot run on {self.model.family}: {exc}") from exc
            self._vision_store["downsampled"] = geometry
            return out

        return _Deferred(encode_planned)


class _Deferred:
    """A model output computed on first use of any of its attributes (the stock forward reads ``pooler_output``)."""

    def __init__(self, compute):
        self._compute = compute

    @functools.cached_property
    def _output(self):
        return self._compute()

    def __getattr__(self, name: str):
        if name.startswith("_"):  # not the output's (copy, pickle, a failed ``_output``)
            raise AttributeError(name)
        return getattr(self._output, name)


def _is_empty(cache: Any) -> bool:
    """Whether a forward starts from an empty cache (a prefill), without reading a device value.

    A static cache's layers allocate their buffers on their first write and from then on report their length as a
    device tensor (reading it would be a host sync each decode step): such a cache holds tokens. A static cache
    reused after ``reset()`` would be taken for a decode step; ``generate`` makes a fresh cache for every call.
    """
    if cache is None:
        return True
    past = cache.get_seq_length()
    return not isinstance(past, torch.Tensor) and past == 0


def _static_width(cache: Any) -> int | None:
    """Key slots of every layer of a static (fixed-size) cache; None for a cache that grows (or none)."""
    if cache is None or not getattr(cache, "is_compileable", False):
        return None
    width = cache.get_max_length()
    return int(width) if width > 0 else None


def _listed(record: StageRecord) -> StageRecord:
    kept = record.kept
    return dataclasses.replace(record, kept=kept.tolist()) if isinstance(kept, torch.Tensor) else record
