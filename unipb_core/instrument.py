"""Forward hooks that place the per-sample timing intervals on a model's real work.

Intervals (see docs/timing.md): ``vision`` spans the vision tower and projector; ``prefill`` runs from the
start of ``generate`` to the end of the first forward (time to first token: vision + method + decoder);
``llm_prefill`` spans the decoder stack during that first forward, minus time spent inside a pruning method;
``decode`` runs from the end of prefill to the end of ``generate``. The caller opens ``total``/``preprocess``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .models.base import FamilyAdapter
from .timing import SampleTimer


@contextlib.contextmanager
def instrument(model: FamilyAdapter, timer: SampleTimer) -> Iterator[None]:
    """Install the timing hooks for one sample; they are removed on exit."""
    state = {"calls": 0}
    first, last = model.vision_modules[0], model.vision_modules[-1]

    def vision_start(*_):
        timer.start("vision")

    def vision_stop(*_):
        timer.stop("vision")

    def model_start(*_):
        state["calls"] += 1

    def model_stop(*_):
        if state["calls"] == 1:
            timer.stop("prefill")
            timer.start("decode")

    def lm_start(*_):
        if state["calls"] == 1:
            timer.start("llm_prefill")

    def lm_stop(*_):
        if state["calls"] == 1:
            timer.stop("llm_prefill")

    handles = [
        first.register_forward_pre_hook(vision_start),
        last.register_forward_hook(vision_stop),
        model.model.register_forward_pre_hook(model_start),
        model.model.register_forward_hook(model_stop),
        # Registered after the engine's hooks: pre-LLM surgery happens before llm_prefill starts.
        model.language_model.register_forward_pre_hook(lm_start),
        model.language_model.register_forward_hook(lm_stop),
    ]
    timer.start("prefill")
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        if state["calls"] >= 1:
            timer.stop("decode")
        else:
            timer.stop("prefill")
