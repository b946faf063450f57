"""The pruning engine on the three tiny families: positions (pre- and intra-LLM against the stock model with the
dropped keys masked), errors, schedules and the attention a stage sees. The per-method contract matrix is in
test_pruning_contract.py."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model
from pruning_invariants import PROMPT, logits

from unipb_core.pruning import PruningEngine, PruningError, Stage, UnknownMethodError, available, get
from unipb_core.pruning.base import PruningMethod
from unipb_core.pruning.context import PruneContext


@pytest.fixture
def inputs(model, image):
    return model.build_inputs([image], PROMPT)


def test_pre_llm_equals_stock_model_with_dropped_tokens_masked(model, family, inputs):
    """Gathering keeps original positions: the pruned logits equal the stock model's with the dropped
    tokens masked out as keys (same positions, same causal order) at every kept position."""
    with PruningEngine(model, get("random_pre"), 0.778, seed=3) as engine:
        pruned = logits(model, inputs)
        kept_visual = engine.summary()["stages"][0]["kept"]
    ids = inputs["input_ids"][0]
    visual_pos = model.visual_mask(ids).nonzero().squeeze(1)
    mask = torch.ones_like(inputs["attention_mask"])
    dropped = torch.ones(visual_pos.numel(), dtype=torch.bool)
    dropped[kept_visual] = False
    mask[0, visual_pos[dropped]] = 0
    masked = dict(inputs, attention_mask=mask)
    if family == "qwen2_5_vl":  # positions must not be renumbered around the masked tokens
        masked["position_ids"], _ = model.model.model.get_rope_index(
            ids[None], inputs["mm_token_type_ids"], image_grid_thw=inputs["image_grid_thw"],
            attention_mask=inputs["attention_mask"],
        )  # fmt: skip
    else:
        masked["position_ids"] = torch.arange(ids.numel())[None]
    reference = logits(model, masked)[0, mask[0].bool()]
    torch.testing.assert_close(pruned[0], reference, atol=1e-5, rtol=1e-4)


def test_contiguous_positions_renumber_for_1d_families(family, image):
    model = tiny_model(family)
    inputs = model.build_inputs([image], PROMPT)
    if model.position_scheme != "rope1d":
        with pytest.raises(PruningError, match="contiguous.*1-D RoPE"):
            PruningEngine(model, get("random_pre"), 0.5, positions="contiguous")
        return
    with PruningEngine(model, get("random_pre"), 0.889, positions="original") as engine:
        original = logits(model, inputs)
    with PruningEngine(model, get("random_pre"), 0.889, positions="contiguous") as engine:
        contiguous = logits(model, inputs)
        assert engine.positions == "contiguous"
    assert original.shape == contiguous.shape and not torch.allclose(original, contiguous)
    for name in ("random_pre", "random_intra"):  # cached decoding stays exact under renumbering
        with PruningEngine(model, get(name), 0.778, positions="contiguous") as engine:
            first = model.generate(inputs, max_new_tokens=4).text
            engine.reuse_selections = True
            assert model.generate(inputs, max_new_tokens=4).text == first


def test_unknown_method_lists_registered():
    with pytest.raises(UnknownMethodError, match=r"'random_pr'.*Did you mean: random_pre.*Registered: .*random_intra"):
        get("random_pr")
    assert {"random_pre", "random_intra"} <= set(available())


def test_unknown_method_parameter_is_named():
    with pytest.raises(UnknownMethodError, match="unknown parameter.*lyer; accepted: layer"):
        get("random_intra", lyer=3)


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, float("nan")])
def test_ratio_outside_unit_interval(ratio):
    with pytest.raises(PruningError, match=r"outside \[0, 1\)"):
        PruningEngine(tiny_model("llava"), get("random_pre"), ratio)


def test_layer_outside_model(inputs, model):
    with (
        PruningEngine(model, get("random_intra", layer=99), 0.5) as _,
        pytest.raises(PruningError, match=r"K=99 is outside the model.*8 decoder layers \(valid K: 0..7\)"),
    ):
        logits(model, inputs)


def test_a_batch_needs_one_key_per_sample(family, image):
    """A batch the engine was not told about is refused (its samples would share one key, hence one generator)."""
    model = tiny_model(family)
    single = model.build_inputs([image], PROMPT)
    batch = {k: torch.cat([v, v]) for k, v in single.items()}
    with (
        PruningEngine(model, get("random_pre"), 0.5) as _,
        pytest.raises(PruningError, match="batch of 2.*begin_batch"),
    ):
        logits(model, batch)


def test_contiguous_positions_are_refused_in_a_batch(image):
    model = tiny_model("internvl")
    inputs = model.build_batch([([image], PROMPT), ([image], "Why?")])
    with PruningEngine(model, get("random_pre"), 0.5, positions="contiguous") as engine:
        engine.begin_batch(["a", "b"])
        with pytest.raises(PruningError, match="contiguous.*batch size 1"):
            logits(model, inputs)


def test_a_method_that_keeps_the_wrong_count_is_caught(inputs, model):
    class Greedy(PruningMethod):
        name, category, stage_kind = "greedy_test", "vit", "pre"

        def select(self, ctx: PruneContext):
            return torch.arange(ctx.n_keep + 1)

    with PruningEngine(model, Greedy(), 0.5) as _, pytest.raises(PruningError, match="kept 73 tokens.*asks for 72"):
        logits(model, inputs)


def test_a_method_that_returns_unsorted_indices_is_caught_before_decoding(inputs, model):
    class Reversed(PruningMethod):
        name, category, stage_kind = "reversed_test", "vit", "pre"

        def select(self, ctx: PruneContext):
            return torch.arange(ctx.n_keep).flip(0)

    with PruningEngine(model, Reversed(), 0.5) as _, pytest.raises(PruningError, match="not sorted, unique"):
        model.generate(inputs, max_new_tokens=2)


@pytest.mark.parametrize("stage_kind", ["pre", "intra"])
def test_a_method_that_keeps_an_index_past_the_visual_tokens_is_caught_on_cpu(inputs, model, stage_kind):
    """On a CPU the check is read at once, so the engine's error comes before a gather fails on the bad index."""

    class PastTheEnd(PruningMethod):
        name, category = "past_the_end_test", "vit"

        def select(self, ctx: PruneContext):
            return torch.arange(ctx.n_visual - ctx.n_keep + 1, ctx.n_visual + 1)

    PastTheEnd.stage_kind = stage_kind
    with PruningEngine(model, PastTheEnd(), 0.5) as _, pytest.raises(PruningError, match=r"within 0\.\.\d+ at"):
        logits(model, inputs)


def test_multi_stage_schedule_down_to_zero(inputs, model):
    """Progressive schedules (several layers) down to no visual token at all (token withdrawal)."""

    class Staircase(PruningMethod):
        name, category, stage_kind = "staircase_test", "llm", "intra"

        def plan(self, n_visual, ratio, num_layers):
            return [Stage("intra", 2, n_visual // 2), Stage("intra", 4, n_visual // 4), Stage("intra", 6, 0)]

        def select(self, ctx):
            return torch.arange(ctx.n_keep)

    with PruningEngine(model, Staircase(), 0.5) as engine:
        out = model.generate(inputs, max_new_tokens=4)
        summary = engine.summary()
        engine.reuse_selections = True
        assert model.generate(inputs, max_new_tokens=4).text == out.text
    assert summary["visual_per_layer"] == [144, 144, 72, 72, 36, 36, 0, 0]
    assert summary["visual_kept_mean"] == pytest.approx(sum([144, 144, 72, 72, 36, 36]) / 8)
    assert [s["n_out"] for s in summary["stages"]] == [72, 36, 0]


def test_stage_sees_its_own_layer_and_the_previous_layer_attention(family, image):
    """At a stage at layer K, a method can score with layer K's own (unpruned) attention and with K-1's,
    both equal to what eager attention computes at those layers."""
    model = tiny_model(family, attn_implementation="eager")
    inputs = model.build_inputs([image], PROMPT)
    seen = {}

    class Probe(PruningMethod):
        name, category, stage_kind = "probe_test", "llm", "intra"

        def plan(self, n_visual, ratio, num_layers):
            return [Stage("intra", 2, n_visual // 2), Stage("intra", 3, n_visual // 4)]

        def select(self, ctx):
            seen[ctx.stage.layer] = (ctx.attention("last"), ctx.attention("last", layer=ctx.stage.layer - 1))
            return torch.arange(ctx.n_keep)

    with torch.no_grad():
        stock = model.model(**inputs, output_attentions=True).attentions
    with PruningEngine(model, Probe(), 0.5):
        logits(model, inputs)
    own, previous = seen[2]
    torch.testing.assert_close(own[:, 0], stock[2][0][:, -1].float(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(previous[:, 0], stock[1][0][:, -1].float(), atol=1e-5, rtol=1e-4)
    # At layer 3 the sequence is the one pruned at layer 2: the attention spans the kept tokens only.
    assert seen[3][0].shape[-1] == inputs["input_ids"].shape[1] - 144 // 2
    assert seen[3][1].shape[-1] == seen[3][0].shape[-1]


def stock_with_keys_masked_from_stages(model, inputs, stages):
    """The stock model where, from each stage's layer K on, the visual tokens that stage dropped are masked out as
    keys (hooks hand layers >= K a 4-D boolean mask: causal and those columns off). Positions stay the stock ones."""
    ids = inputs["input_ids"][0]
    visual_pos = model.visual_mask(ids).nonzero().squeeze(1)
    length = ids.numel()
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    masks = {}
    for stage in stages:
        cols = torch.ones(length, dtype=torch.bool)
        dropped = torch.ones(visual_pos.numel(), dtype=torch.bool)
        dropped[stage["kept"]] = False
        cols[visual_pos[dropped]] = False
        for layer in range(stage["layer"], model.num_layers):
            masks[layer] = (causal & cols)[None, None]

    def hook(idx):
        def pre(module, args, kwargs):
            kwargs["attention_mask"] = masks[idx]
            return args, kwargs

        return pre

    handles = [model.decoder_layers[i].register_forward_pre_hook(hook(i), with_kwargs=True) for i in masks]
    try:
        return logits(model, inputs)
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize(
    ("method_name", "params"),
    [("random_intra", {}), ("fastv", {}), ("dart", {}), ("pdrop", {}), ("vtw", {}), ("fitprune", {})],
)
def test_intra_llm_equals_stock_model_with_dropped_keys_masked_from_layer_k(model, inputs, method_name, params):
    """The intra-LLM twin of the pre-LLM test: gathering at layer K keeps every kept token's position and causal
    order, so the pruned logits equal the stock model's with the dropped tokens masked as keys from K on, row by
    row at the kept positions (read off the stage records, not assumed)."""
    seen: dict = {}

    def record(layer):  # registered after the engine's hooks: sees what the engine hands each decoder layer
        def pre(module, args, kwargs):
            seen[layer] = (kwargs["position_embeddings"][0][0].clone(), kwargs.get("position_ids"))

        return pre

    with PruningEngine(model, get(method_name, **params), 0.778, seed=3) as engine:
        handles = [
            layer.register_forward_pre_hook(record(i), with_kwargs=True) for i, layer in enumerate(model.decoder_layers)
        ]
        try:
            pruned = logits(model, inputs)
        finally:
            for h in handles:
                h.remove()
        summary = engine.summary()
    stock_pos = {}
    handle = model.decoder_layers[0].register_forward_pre_hook(
        lambda m, a, kw: stock_pos.update(cos=kw["position_embeddings"][0][0].clone()), with_kwargs=True
    )
    try:
        reference_plain = logits(model, inputs)
    finally:
        handle.remove()
    stages = [s for s in summary["stages"] if s["n_out"] < s["n_in"]]
    assert stages and all(s["kind"] == "intra" for s in stages)
    reference = stock_with_keys_masked_from_stages(model, inputs, stages)
    ids = inputs["input_ids"][0]
    is_visual = model.visual_mask(ids)
    visual_pos, text_pos = is_visual.nonzero().squeeze(1), (~is_visual).nonzero().squeeze(1)
    # Positions, directly: every layer gets each kept token's own stock rotary position (cos), in sequence order.
    for layer in range(model.num_layers):
        active = [s for s in stages if s["layer"] <= layer]
        rows = visual_pos if not active else visual_pos[active[-1]["kept"]]
        rows = torch.sort(torch.cat([text_pos, rows])).values
        torch.testing.assert_close(seen[layer][0], stock_pos["cos"][rows], rtol=0, atol=0)
    # Rows that survive to the output: every text token and the visual tokens the last stage kept.
    kept_rows = torch.sort(torch.cat([text_pos, visual_pos[stages[-1]["kept"]]])).values
    assert pruned.shape[1] == kept_rows.numel() and not torch.allclose(reference_plain[0, kept_rows], pruned[0])
    torch.testing.assert_close(pruned[0], reference[0, kept_rows], atol=1e-5, rtol=1e-4)


def test_a_right_padded_batch_is_refused(image):
    model = tiny_model("llava")
    inputs = dict(model.build_batch([([image], PROMPT), ([image], "Why?")]))
    pad = int((inputs["attention_mask"][1] == 0).sum())
    assert pad > 0
    for key in ("input_ids", "attention_mask"):
        inputs[key] = inputs[key].clone()
        inputs[key][1] = torch.roll(inputs[key][1], -pad)
    with PruningEngine(model, get("random_pre"), 0.5) as engine:
        engine.begin_batch(["a", "b"])
        with pytest.raises(PruningError, match="left-padded"):
            logits(model, inputs)
