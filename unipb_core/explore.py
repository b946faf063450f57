"""The explorer's live single-sample run: one sample through the runner's own ``evaluate_sample``, plus the
patch grids and the kept visual tokens that ``notebooks/explore.ipynb`` draws (``analysis.plot_kept_tokens``)."""

from __future__ import annotations

from typing import Any

from . import data
from .pruning import PruningEngine, get
from .runner import evaluate_sample
from .vocabulary import VANILLA


def explore_sample(
    model: Any, sample: data.Sample, method: str, ratio: float, seed: int = 0, positions: str = "original"
) -> dict[str, Any]:
    """Run one sample live with ``method`` at ``ratio`` and return its record plus the explorer's extras.

    The record is exactly what the runner stores (``evaluate_sample``); ``kept_indices`` are the visual tokens
    reaching the last stage (indices into the original visual tokens, raster order of ``grids``); ``stages``
    is the per-stage accounting of ``engine.summary()``.
    """
    spec = data.get(sample.dataset)
    grids = model.visual_grids(model.build_inputs(sample.images, spec.to_prompt(sample)))
    max_new = int(spec.max_new_tokens)
    if method == VANILLA:
        record = evaluate_sample(model, spec, sample, None, max_new)
        return {**record, "grids": grids, "stages": [], "kept_indices": list(range(record["n_visual"]))}
    with PruningEngine(model, get(method), ratio, seed, positions) as engine:
        record = evaluate_sample(model, spec, sample, engine, max_new)
        summary = engine.summary()
    stages = summary["stages"]
    kept = stages[-1]["kept"] if stages else list(range(summary["n_visual"]))
    return {**record, "grids": grids, "stages": stages, "kept_indices": kept}


def kept_caption(result: dict[str, Any]) -> str:
    """Where the explorer's kept count applies: before the LLM, or from a decoder layer on.

    An intra-LLM stage at layer K prunes the input of layer K, so layers 0..K-1 still see the tokens that
    reached them; VTW's "0 of 144" holds from layer K on, not for the whole model.
    """
    kept, total = len(result["kept_indices"]), result["n_visual"]
    stages = result["stages"]
    if not stages:
        return f"{kept} of {total} visual tokens (unpruned)"
    last = stages[-1]
    if last["kind"] == "intra":
        layer = last["layer"]
        earlier = f" (layers 0-{layer - 1}: {last['n_in']})" if layer else ""
        return f"{kept} of {total} visual tokens kept from decoder layer {layer} on{earlier}"
    return f"{kept} of {total} visual tokens kept (pruned before the LLM)"
