"""Vision-side (pre-LLM) methods: the engine contract on every family, fidelity against slow transcriptions
of the papers' rules on small hand-built contexts, and the encoder-attention recomputation against eager."""

from __future__ import annotations

import math

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


def features(n=12, d=6, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def cos(a, b):
    return float(a @ b) / (float(a.norm()) * float(b.norm()))


def slow_divprune(x, k):
    n = len(x)
    dist = [[1 - cos(x[i], x[j]) for j in range(n)] for i in range(n)]
    nn_dist = [min(dist[i][j] for j in range(n) if j != i) for i in range(n)]
    chosen = [max(range(n), key=lambda i: (nn_dist[i], -i))]
    while len(chosen) < k:
        rest = [i for i in range(n) if i not in chosen]
        chosen.append(max(rest, key=lambda i: (min(dist[i][j] for j in chosen), -i)))
    return sorted(chosen)


def test_divprune_matches_slow_transcription():
    for seed in range(3):
        x = features(seed=seed)
        for k in (1, 4, 7):
            assert get("divprune").select(make_ctx(x, k)).keep.tolist() == slow_divprune(x, k)


def test_divprune_ties_go_to_lowest_index():
    x = torch.tensor([[1.0, 0], [0, 1.0], [-1.0, 0], [0, -1.0]])  # every nearest neighbour at distance 1
    assert get("divprune").select(make_ctx(x, 1)).keep.tolist() == [0]


def slow_gprune(x, k, thr=0.5, temp=0.03, steps=5):
    n = len(x)
    sim = [[cos(x[i], x[j]) for j in range(n)] for i in range(n)]
    logit = [[sim[i][j] / temp if sim[i][j] >= thr else -5000.0 for j in range(n)] for i in range(n)]
    a = []
    for row in logit:
        m = max(row)
        e = [math.exp(v - m) for v in row]
        a.append([v / sum(e) for v in e])
    s = [float(x[i].norm()) for i in range(n)]
    for _ in range(steps):
        s = [sum(s[i] * a[i][j] for i in range(n)) for j in range(n)]
    deg = [max(1, sum(1 for j in range(n) if j != i and sim[i][j] >= thr)) for i in range(n)]
    score = [s[i] / deg[i] for i in range(n)]
    return sorted(sorted(range(n), key=lambda i: (-score[i], i))[:k])


def test_gprune_matches_slow_transcription():
    base = features(4, 5, seed=1)
    x = base.repeat_interleave(3, 0) + 0.3 * features(12, 5, seed=2)  # clusters, so the graph has edges
    for k in (3, 6):
        assert get("gprune").select(make_ctx(x, k)).keep.tolist() == slow_gprune(x, k)


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


def slow_prumerge_merge(x, keys, att, keep, k):
    out = []
    for i in keep:
        others = sorted((j for j in range(len(x)) if j != i), key=lambda j: (-cos(keys[i], keys[j]), j))[:k]
        out.append(x[i] + sum(float(att[j]) * x[j] for j in others))
    return torch.stack(out)


def test_prumerge_keeps_top_attention_and_merges_weighted_neighbours():
    x, keys = features(12, 4, seed=3), features(12, 5, seed=4)
    att = torch.softmax(features(12, 1, seed=5)[:, 0] * 2, 0)
    sel = get("prumerge", k=3, reference_tokens=12).select(make_ctx(x, 4, scores=att, keys=keys))
    expected = sorted(sorted(range(12), key=lambda i: -float(att[i]))[:4])
    assert sel.keep.tolist() == expected
    torch.testing.assert_close(sel.merged, slow_prumerge_merge(x, keys, att, expected, 3))


def test_prumerge_plus_adds_uniform_samples_to_iqr_outliers():
    att = torch.full((16,), 0.01)
    att[5], att[11] = 0.5, 0.3  # the only IQR outliers
    x = features(16, 4, seed=6)
    sel = get("prumerge_plus", k=2, reference_tokens=16).select(make_ctx(x, 5, scores=att, keys=x))
    # 3 more from the 14 non-outliers [0..4, 6..10, 12..15] at positions int((i + 0.5) * 14 / 3) = 2, 7, 11.
    assert sel.keep.tolist() == [2, 5, 8, 11, 13]
    torch.testing.assert_close(sel.merged, slow_prumerge_merge(x, x, att, [2, 5, 8, 11, 13], 2))
    sel = get("prumerge_plus").select(make_ctx(x, 1, scores=att, keys=x))  # more outliers than budget
    assert sel.keep.tolist() == [5]


def slow_vispruner(x, att, n_keep, ratio=0.5, step=8):
    n_imp = int(n_keep * ratio)
    order = sorted(range(len(x)), key=lambda i: (-float(att[i]), i))
    residual = order[n_imp:]
    while (r := min(step, len(residual) - (n_keep - n_imp))) > 0:
        even, odd = residual[0::2], residual[1::2]
        best = [max(cos(x[e], x[o]) for o in odd) for e in even]
        ranked = sorted(range(len(even)), key=lambda i: (-best[i], i))
        residual = [even[i] for i in ranked[r:]] + odd
    return sorted(order[:n_imp] + residual)


def test_vispruner_matches_slow_transcription():
    for seed, n_keep in ((7, 4), (8, 5), (9, 1)):
        x = features(15, 4, seed=seed)  # 15: odd residual lengths occur
        att = torch.softmax(features(15, 1, seed=seed + 10)[:, 0], 0)
        sel = get("vispruner", step=2).select(make_ctx(x, n_keep, scores=att))
        assert sel.keep.tolist() == slow_vispruner(x, att, n_keep, step=2)


def test_visionzip_by_hand():
    att = torch.tensor([0.0, 0.9, 0.0, 0.0, 0.8, 0.0, 0.0, 0.0, 0.0, 0.0])
    keys = torch.tensor([[1.0, 0]] * 5 + [[0, 1.0]] * 5)  # tokens 0-4 point one way, 5-9 the other
    x = torch.arange(10.0).unsqueeze(1)
    sel = get("visionzip", dominant_share=0.5).select(make_ctx(x, 4, scores=att, keys=keys))
    # dominant: 1, 4. Rest [0, 2, 3, 5, 6, 7, 8, 9], step 8 // 2 = 4 -> targets 0 and 6.
    # 2, 3 -> target 0 (same key direction); 5, 7, 8, 9 -> target 6.
    assert sel.keep.tolist() == [0, 1, 4, 6]
    assert sel.merged[:, 0].tolist() == [0 + (2 + 3) / 2, 1.0, 4.0, 6 + (5 + 7 + 8 + 9) / 4]


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
