"""The pruning contract (DESIGN.md), as reusable checks every method must pass on every family.

``check_invariants(model, method_name, ratio, inputs, params)`` runs them all; ``tests/test_pruning_contract.py``
parametrizes it over every registered method x variant x family x ratio.
"""

from __future__ import annotations

import torch

from unipb_core.pruning import PruningEngine, get, method_class

PROMPT = "What colour is the largest circle?"


def logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model.model(**inputs).logits


def planned_stages(model, method, n_visual, ratio):
    return method.plan(n_visual, ratio, model.num_layers)


def check_counts(model, engine, method, ratio, n_visual, seq_len, out_len):
    """Exactly the planned visual tokens leave each stage; kept indices are sorted, unique, visual."""
    summary = engine.summary()
    stages = planned_stages(model, method, n_visual, ratio)
    assert summary["n_visual"] == n_visual
    assert len(summary["stages"]) == len(stages)
    prev = n_visual
    for record, stage in zip(summary["stages"], stages, strict=True):
        assert record["n_in"] == prev
        assert record["n_out"] == min(stage.n_keep, prev)
        kept = record["kept"]
        assert kept == sorted(set(kept)) and all(0 <= i < n_visual for i in kept)
        assert len(kept) == record["n_out"]
        prev = record["n_out"]
    # Only visual tokens are ever dropped: the output keeps every text token.
    assert out_len == seq_len - n_visual + prev
    per_layer = summary["visual_per_layer"]
    assert len(per_layer) == model.num_layers
    expected_mean = n_visual * (1 - ratio)
    if len(stages) > 1 or any(s.kind == "intra" for s in stages):
        # Layer-averaged definition for schedules; a single intra stage is checked per stage above.
        return per_layer, expected_mean
    assert all(n == prev for n in per_layer)
    return per_layer, expected_mean


def check_cached_equals_teacher_forced(
    model, method_name, ratio, inputs, max_new_tokens=5, params=None, positions="original"
):
    """Cached greedy decoding == argmax of one uncached forward over prompt + answer, same selection."""
    method = get(method_name, **(params or {}))
    with PruningEngine(model, method, ratio, seed=0, positions=positions) as engine:
        out = model.model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, return_dict_in_generate=True,
            pad_token_id=model.tokenizer.pad_token_id, suppress_tokens=[model.image_token_id],  # as adapter.generate
        )  # fmt: skip
        summary = engine.summary()
        engine.reuse_selections = True
        seq = out.sequences
        prompt_len = inputs["input_ids"].shape[1]
        new = seq[0, prompt_len:]
        full = dict(inputs)
        full["input_ids"] = seq[:, :-1]
        full["attention_mask"] = torch.ones_like(seq[:, :-1])
        if "mm_token_type_ids" in full:
            pad = torch.zeros(1, seq.shape[1] - 1 - prompt_len, dtype=full["mm_token_type_ids"].dtype)
            full["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], pad], dim=1)
        with torch.no_grad():
            lg = model.model(**full, use_cache=False).logits
            lg[..., model.image_token_id] = float("-inf")  # suppressed in generation too
    n_new = new.numel()
    assert torch.equal(lg[0, -n_new:].argmax(-1), new)
    # Cache length per layer: all tokens before the first stage's layer, only kept ones from it on.
    per_layer = summary["visual_per_layer"]
    n_visual = summary["n_visual"]
    seq_len_cached = seq.shape[1] - 1  # the last generated token is never fed back
    for idx, layer_cache in enumerate(out.cache.layers):
        expected = seq_len_cached - (n_visual - per_layer[idx])
        assert layer_cache.get_seq_length() == expected, (idx, layer_cache.get_seq_length(), expected)


def check_seed(model, method_name, ratio, inputs, params=None):
    """Same seed -> same selection; for methods that use randomness, another seed -> another one."""

    def kept(seed):
        with PruningEngine(model, get(method_name, **(params or {})), ratio, seed=seed) as engine:
            logits(model, inputs)
            return [r["kept"] for r in engine.summary()["stages"]]

    first = kept(0)
    assert kept(0) == first
    if getattr(method_class(method_name), "category", "") == "baseline" and method_name.startswith("random"):
        assert kept(1) != first


def check_invariants(model, method_name, ratio, inputs, params=None):
    """Run the whole contract for one (family, method, ratio, parameters); returns the engine's summary."""
    stock = logits(model, inputs)
    method = get(method_name, **(params or {}))
    n_visual = int(model.visual_mask(inputs["input_ids"]).sum())
    with PruningEngine(model, method, ratio, seed=0) as engine:
        pruned = logits(model, inputs)
        if ratio == 0:  # every method, merging ones included: nothing removed means nothing changed
            assert torch.equal(pruned, stock), f"{method_name} {params or ''} at ratio 0 changed the logits"
        check_counts(model, engine, method, ratio, n_visual, inputs["input_ids"].shape[1], pruned.shape[1])
        summary = engine.summary()
    assert torch.equal(logits(model, inputs), stock), "hooks left behind: the stock model changed"
    if ratio > 0:
        check_cached_equals_teacher_forced(model, method_name, ratio, inputs, params=params)
        check_seed(model, method_name, ratio, inputs, params=params)
    return summary
