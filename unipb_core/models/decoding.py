"""How ``generate`` runs its decode steps: ``eager``, ``static`` or ``graphs`` (see ``docs/benchmarks.md``).

* ``eager`` (the default, what every stored result used): a cache that grows by one slot per step
  (``DynamicCache``); each step is a Python forward, launch-bound on a GPU.
* ``static``: a fixed-size cache (``StaticCache``, ``cache_implementation="static"``) of ``cache_width`` slots
  per layer, decode steps still eager (``disable_compile``: on CUDA, ``generate`` would otherwise compile them).
* ``graphs``: the static cache plus the stock compiled decode step. transformers 5.x ``generate`` compiles
  ``model.__call__`` for the decode steps (never the prefill) when the cache is static and the device is CUDA
  (``CompileConfig()``: ``mode="reduce-overhead"``, i.e. CUDA graphs); on a CPU only when the config says
  ``_compile_all_devices``, and then with ``mode="default"`` (CUDA graphs do not exist there).

The width is rounded up to a multiple of ``BUCKET`` so that one compiled step, whose shapes are the cache's,
serves every sample of a bucket; ``generate`` also keeps the widest cache it has made on the model
(``_previous_max_cache_length``), so the width only grows.

Dynamo does not guard on module hooks by default (``skip_nnmodule_hook_guards``): a step compiled without the
pruning engine's hooks would be replayed with them installed, silently unpruned (seen on the tiny LLaVA: FastV's
answer changed). ``graphs`` turns those guards on for the call, so every set of hooks gets its own compiled step,
shared by the engines whose decode hooks read the same structure (on the tiny LLaVA, 8 cells compiled 4 steps:
vanilla, pre-LLM, intra-LLM, both), and raises the recompile limit so a benchmark's cells do not exhaust it
(past it, dynamo would quietly run the step eagerly).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

DECODE_MODES = ("eager", "static", "graphs")
BUCKET = 256  # cache slots are rounded up to a multiple of this: compiled steps are reused across samples
RECOMPILE_LIMIT = 64  # compiled steps per code object; dynamo's default (8) is below a benchmark's hook structures


def cache_width(prompt_length: int, new_tokens: int, bucket: int = BUCKET) -> int:
    """Slots of the static cache for a prompt of ``prompt_length`` tokens and ``new_tokens`` decode steps."""
    return -(-(prompt_length + new_tokens) // bucket) * bucket


def check_mode(mode: str) -> str:
    """``mode`` if it is a decode mode, else a ValueError listing them."""
    if mode not in DECODE_MODES:
        raise ValueError(f"decode mode {mode!r}; accepted: {', '.join(DECODE_MODES)}")
    return mode


@contextlib.contextmanager
def decoding(mode: str, prompt_length: int, new_tokens: int, device: torch.device) -> Iterator[dict[str, Any]]:
    """The ``generate`` keyword arguments of decode ``mode``; for ``graphs``, dynamo's hook guards are on inside.

    Examples
    --------
    >>> with decoding("static", 300, 4, torch.device("cpu")) as extra:
    ...     sorted(extra)
    ['cache_implementation', 'disable_compile', 'max_cache_len']
    """
    check_mode(mode)
    if mode == "eager":
        yield {}
        return
    extra: dict[str, Any] = {"cache_implementation": "static", "max_cache_len": cache_width(prompt_length, new_tokens)}
    if mode == "static":
        yield {**extra, "disable_compile": True}
        return
    from transformers import CompileConfig

    if device.type == "cuda":
        config = CompileConfig()  # generate's own default: reduce-overhead (CUDA graphs), not fullgraph
    else:
        config = CompileConfig(mode="default")
        config._compile_all_devices = True  # transformers' switch for compiling off CUDA ("useful for testing")
    with torch._dynamo.config.patch(skip_nnmodule_hook_guards=False, recompile_limit=RECOMPILE_LIMIT):
        yield {**extra, "compile_config": config}
