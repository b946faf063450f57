"""Forward hooks that place the per-sample timing intervals on a model's real work.

Intervals (see docs/timing.md): ``vision`` spans the vision tower and projector; ``prefill`` runs from the
start of ``generate`` to the end of the first forward (time to first token: vision + method + decoder);
``llm_prefill`` spans the decoder stack during that first forward, minus time spent inside a pruning method;
``decode`` runs from the end of prefill to the end of ``generate``. The caller opens ``total``/``preprocess``.

Under ``torch.profiler`` the prefill is also a range named ``PREFILL_RANGE``, from just after its start sync to just
after its end sync, so a trace shows where the device idles inside it (``benchmarks/host_bound.py``); without a
profiler nothing is recorded.

The hooks leave the model when the first forward ends: decode steps run without them, so a compiled decode step
(``decode="graphs"``) neither traces them nor recompiles for their per-sample state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from .models.base import FamilyAdapter
from .timing import SampleTimer

PREFILL_RANGE = "unipb::prefill"


@contextlib.contextmanager
def instrument(model: FamilyAdapter, timer: SampleTimer) -> Iterator[None]:
    """Install the timing hooks for one sample; they are removed on exit."""
    state = {"prefilled": False}
    first, last = model.vision_modules[0], model.vision_modules[-1]
    handles: list = []
    marked = torch.autograd.profiler._is_profiler_enabled  # a range costs a dispatch: only for a trace
    prefill_range = torch.profiler.record_function(PREFILL_RANGE)

    def vision_start(*_):
        timer.start("vision")

    def vision_stop(*_):
        timer.stop("vision")

    def model_stop(*_):
        timer.stop("prefill")
        if marked:
            prefill_range.__exit__(None, None, None)
        timer.start("decode")
        state["prefilled"] = True
        for handle in handles:  # prefill is over; decode needs no hook (the ``finally`` stops its interval)
            handle.remove()

    def lm_start(*_):
        timer.start("llm_prefill")

    def lm_stop(*_):
        timer.stop("llm_prefill")

    handles += [
        first.register_forward_pre_hook(vision_start),
        last.register_forward_hook(vision_stop),
        model.model.register_forward_hook(model_stop),
        # Registered after the engine's hooks: pre-LLM surgery happens before llm_prefill starts.
        model.language_model.register_forward_pre_hook(lm_start),
        model.language_model.register_forward_hook(lm_stop),
    ]
    timer.start("prefill")
    if marked:
        prefill_range.__enter__()
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        if state["prefilled"]:
            timer.stop("decode")
        else:
            timer.stop("prefill")
            if marked:
                prefill_range.__exit__(None, None, None)
