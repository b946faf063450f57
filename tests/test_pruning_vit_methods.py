"""Vision-side (pre-LLM) methods: the engine contract on every family, the pooling baseline on hand-built
contexts, and the encoder-attention recomputation against eager. Fidelity to the authors' released code of
divprune, gprune, prumerge(_plus), visionzip and vispruner: ``test_fidelity_vit.py``."""

from __future__ import annotations

import pytest
import torch
from conftest import FAMILY_NAMES, draw_image, tiny_model
from pruning_invariants import PROMPT, check_invariants

from unipb_core.models.vision_attention import VisionAttention
from unipb_core.pruning import PruningEngine, Stage, get
from unipb_core.pruning.context import PruneContext

VIT_METHODS = ("divprune", "gprune", "pool", "prumerge", "prumerge_plus", "vispruner", "visionzip")
RATIOS = (0.667, 0.778, 0.889)


@pytest.fixture
def inputs(model, image):
    return model.build_inputs([image], PROMPT)


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("method_name", VIT_METHODS)
def test_invariants(model, inputs, method_name, ratio):
    check_invariants(model, method_name, ratio, inputs)


# ---------------------------------------------------------------------------- hand-built contexts
def make_ctx(x, n_keep, grids=None, scores=None, keys=None):
    n = x.shape[0]
    vision = {}
    if scores is not None:
        attention = VisionAttention(scores, keys if keys is not None else x, torch.arange(n).unsqueeze(1))
        vision["encoder_attention"] = lambda: attention
    return PruneContext(
        stage=Stage("pre", None, n_keep), family="llava", visual=x, text=x[:0],
        visual_positions=torch.arange(n), text_positions=torch.arange(0), visual_origin=torch.arange(n),
        grids=grids or [(1, n)], generator=torch.Generator().manual_seed(0), num_layers=2, vision=vision,
    )  # fmt: skip


def test_pool_on_a_4x4_grid_by_hand():
    x = torch.arange(16.0).unsqueeze(1).repeat(1, 4)  # feature = token index
    sel = get("pool").select(make_ctx(x, 4, grids=[(4, 4)]))
    # 2x2 cells of 2x2 tokens; centre = upper-left of the middle four; merged = mean of the cell.
    assert sel.keep.tolist() == [0, 2, 8, 10]
    assert sel.merged[:, 0].tolist() == [2.5, 4.5, 10.5, 12.5]
    sel = get("pool").select(make_ctx(x, 8, grids=[(4, 4)]))  # 8 = 2 x 4 (ties in aspect: fewer rows)
    assert sel.keep.tolist() == [0, 1, 2, 3, 8, 9, 10, 11]
    assert sel.merged[:, 0].tolist() == [2.0, 3.0, 4.0, 5.0, 10.0, 11.0, 12.0, 13.0]


def test_pool_prime_budget_and_two_images():
    x = torch.arange(18.0).unsqueeze(1)
    sel = get("pool").select(make_ctx(x[:16], 5, grids=[(4, 4)]))  # 5 > 4: no 1 x 5 fits; raster runs
    assert sel.keep.tolist() == [1, 4, 7, 10, 13] and sel.merged[:, 0].tolist() == [1.5, 4.5, 7.5, 10.5, 13.5]
    sel = get("pool").select(make_ctx(x[:12], 3, grids=[(3, 3), (1, 3)]))  # budget 2 : 1; 1 x 2 cells overlap
    assert sel.keep.tolist() == [3, 4, 10] and sel.merged[:, 0].tolist() == [3.5, 4.5, 10.0]
    sel = get("pool").select(make_ctx(x[:6], 6, grids=[(2, 3)]))  # ratio 0: every token its own cell
    assert sel.keep.tolist() == list(range(6)) and torch.equal(sel.merged, x[:6])


# ---------------------------------------------------------------------------- encoder attention vs eager
def _eager_weights(monkeypatch, family):
    """Attention weights every eager encoder call returns, in call order (the stock code drops Qwen's)."""
    import transformers.models.qwen2_5_vl.modeling_qwen2_5_vl as qwen

    calls = []
    if family == "qwen2_5_vl":
        original = qwen.eager_attention_forward

        def spy(*args, **kwargs):
            out = original(*args, **kwargs)
            calls.append(out[1])
            return out

        monkeypatch.setattr(qwen, "eager_attention_forward", spy)
    return calls


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_encoder_attention_equals_eager(family, monkeypatch):
    model = tiny_model(family, attn_implementation="eager")
    inputs = model.build_inputs([draw_image(1)], PROMPT)
    store: dict = {}
    handles = model.vision_attention_hooks(store)
    calls = _eager_weights(monkeypatch, family)
    try:
        with torch.no_grad():
            if family == "qwen2_5_vl":
                model.model.model.visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"])
            else:
                out = model.model.model.vision_tower(pixel_values=inputs["pixel_values"], output_attentions=True)
    finally:
        for h in handles:
            h.remove()
    va = model.vision_attention(store)
    if family == "qwen2_5_vl":
        visual = model.model.model.visual
        block = visual.fullatt_block_indexes[-1]
        # Windowed blocks make one call per window; the full-attention block one call per image.
        per_block = [c for c in calls if c.shape[-1] == va.patch_scores.numel()]
        eager = per_block[[i for i in range(len(visual.blocks)) if i in visual.fullatt_block_indexes].index(block)]
        expected = eager[0].mean(dim=(0, 1))  # mean over heads and query rows = attention received
    else:
        layers = len(out.attentions)
        eager = out.attentions[model.vision_feature_layer_index(layers)]  # [B, H, 1 + P, 1 + P]
        expected = eager[:, :, 0, 1:].mean(dim=1).reshape(-1)
    torch.testing.assert_close(va.patch_scores, expected.float(), atol=1e-5, rtol=1e-4)
    assert va.scores.shape == (144,) and va.keys.shape[0] == 144


@pytest.mark.parametrize("family", ("internvl", "qwen2_5_vl"))
def test_encoder_groups_match_the_stock_token_layout(family):
    """The patch -> visual-token grouping reproduces the stock pixel shuffle / merger output exactly."""
    model = tiny_model(family)
    inputs = model.build_inputs([draw_image(2)], PROMPT)
    store: dict = {}
    handles = model.vision_attention_hooks(store)
    try:
        with torch.no_grad():
            if family == "qwen2_5_vl":
                visual = model.model.model.visual
                out = visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"])
                grouped = out.last_hidden_state[model.vision_attention(store).groups]  # [N, 4, D]
                rebuilt = visual.merger.mlp(visual.merger.ln_q(grouped).reshape(grouped.shape[0], -1))
                torch.testing.assert_close(rebuilt, out.pooler_output)
            else:
                tower = model.model.model.vision_tower
                hidden = tower(pixel_values=inputs["pixel_values"]).last_hidden_state[:, 1:]
                side = int(hidden.shape[1] ** 0.5)
                shuffled = model.model.model.pixel_shuffle(hidden.reshape(1, side, side, -1), 0.5)
                grouped = hidden.reshape(-1, hidden.shape[-1])[model.vision_attention(store).groups]
                assert torch.equal(grouped.reshape(grouped.shape[0], -1), shuffled.reshape(grouped.shape[0], -1))
    finally:
        for h in handles:
            h.remove()


def test_encoder_attention_is_lazy_and_hooks_only_when_needed():
    model = tiny_model("llava")
    inputs = model.build_inputs([draw_image()], PROMPT)
    tower = model.model.model.vision_tower
    with PruningEngine(model, get("divprune"), 0.5):
        assert not any(layer._forward_pre_hooks for layer in tower.encoder.layers)
    with PruningEngine(model, get("visionzip"), 0.5) as engine:
        assert sum(len(layer._forward_pre_hooks) for layer in tower.encoder.layers) == 1
        with torch.no_grad():
            model.model(**inputs)
        assert "_computed" in engine._vision_store
    assert not any(layer._forward_pre_hooks for layer in tower.encoder.layers)
