"""LLM-side methods (FastV, PDrop, FitPrune, VTW, DART): the contract, layer-averaged schedules,
fidelity to slow transcriptions of the papers' rules, and SDPA == eager selections."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_model
from pruning_invariants import PROMPT, check_invariants, logits
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from unipb_core.pruning import PruningEngine, get
from unipb_core.pruning.schedule import geometric_counts, layer_mean, reachable_mean

METHODS = ("fastv", "pdrop", "fitprune", "vtw", "dart")
SCHEDULED = ("pdrop", "fitprune", "vtw")  # layer-averaged ratio
ATTENTION_SCORED = ("fastv", "pdrop", "fitprune", "dart")
RATIOS = (0.667, 0.778, 0.889)


@pytest.fixture
def inputs(model, image):
    return model.build_inputs([image], PROMPT)


def run(model, method, ratio, inputs):
    with PruningEngine(model, method, ratio, seed=0) as engine:
        logits(model, inputs)
    return engine.summary()


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("method_name", METHODS)
def test_invariants(model, inputs, method_name, ratio):
    check_invariants(model, method_name, ratio, inputs)
    if method_name not in SCHEDULED:
        return
    summary = run(model, get(method_name), ratio, inputs)
    n, layers = summary["n_visual"], model.num_layers
    mean = sum(summary["visual_per_layer"]) / layers
    if method_name == "vtw":  # K is an integer: within one layer's worth of tokens
        assert abs(mean - n * (1 - ratio)) <= n / layers
    else:  # integer counts: within one token of the target, or of the least the first stage can reach
        stage_layers = [s["layer"] for s in summary["stages"]]
        assert abs(mean - reachable_mean(n, stage_layers, layers, ratio)) <= 1.0


# ---------------------------------------------------------------- schedules


@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.667])
def test_geometric_counts_near_best_integer_schedule(ratio):
    """Against brute force over every non-increasing integer schedule (small N)."""
    n, layers, num_layers = 24, [2, 3, 5], 8
    target = n * (1 - ratio)
    best = min(
        abs(layer_mean(n, layers, list(c), num_layers) - target)
        for c in itertools.product(range(n + 1), repeat=3)
        if c[0] >= c[1] >= c[2]
    )
    counts = geometric_counts(n, layers, num_layers, ratio)
    assert counts == sorted(counts, reverse=True)
    assert abs(layer_mean(n, layers, counts, num_layers) - target) <= best + 1 / num_layers


def test_pdrop_default_layers_scale_with_depth():
    pdrop = get("pdrop")
    assert [s.layer for s in pdrop.plan(576, 0.5, 28)] == [6, 12, 18]
    assert [s.layer for s in pdrop.plan(576, 0.5, 32)] == [7, 14, 21]
    assert [s.layer for s in pdrop.plan(144, 0.5, 8)] == [2, 3, 5]


def test_vtw_layer_from_ratio():
    vtw = get("vtw")
    assert [(s.layer, s.n_keep) for s in vtw.plan(576, 0.889, 32)] == [(4, 0)]  # round(32 * 0.111)
    assert [(s.layer, s.n_keep) for s in vtw.plan(576, 0.667, 32)] == [(11, 0)]
    assert [(s.layer, s.n_keep) for s in vtw.plan(576, 0.99, 32)] == [(1, 0)]  # clamped
    assert [(s.layer, s.n_keep) for s in vtw.plan(576, 0.0, 32)] == [(31, 576)]  # no-op


# ---------------------------------------------------------------- fidelity (eager reference, LLaVA)


@pytest.fixture(scope="module")
def eager_llava():
    model = tiny_model("llava", attn_implementation="eager")
    from conftest import draw_image

    inputs = model.build_inputs([draw_image()], PROMPT)
    with torch.no_grad():
        out = model.model(**inputs, output_attentions=True, output_hidden_states=True)
    visual = model.visual_mask(inputs["input_ids"][0]).nonzero().squeeze(1).tolist()
    return model, inputs, out, visual


def top_by_loop(scores: list[float], k: int) -> list[int]:
    """Indices of the k largest scores, ties to the lowest index, returned sorted."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return sorted(order[:k])


def first_stage_kept(model, method, ratio, inputs):
    stages = run(model, method, ratio, inputs)["stages"]
    return stages[0]["kept"], stages[0]["n_out"]


@pytest.mark.parametrize("queries", ["all", "last"])
def test_fastv_matches_eager_attention(eager_llava, queries):
    model, inputs, out, visual = eager_llava
    kept, n_keep = first_stage_kept(model, get("fastv", queries=queries), 0.778, inputs)
    attn = out.attentions[1][0].float()  # layer K-1 = 1: [H, L, L]
    heads, length = attn.shape[0], attn.shape[1]
    rows = range(length) if queries == "all" else [length - 1]
    scores = [sum(float(attn[h, r, v]) for h in range(heads) for r in rows) / (heads * len(rows)) for v in visual]
    assert kept == top_by_loop(scores, n_keep)


def test_pdrop_first_stage_matches_eager_attention(eager_llava):
    model, inputs, out, visual = eager_llava
    kept, n_keep = first_stage_kept(model, get("pdrop"), 0.667, inputs)  # first stage at layer 2
    attn = out.attentions[1][0].float()
    scores = [float(attn[:, -1, v].mean()) for v in visual]
    assert kept == top_by_loop(scores, n_keep)


def test_fitprune_first_stage_matches_eager_attention_and_keeps_highest(eager_llava):
    model, inputs, out, visual = eager_llava
    kept, n_keep = first_stage_kept(model, get("fitprune"), 0.667, inputs)
    attn = out.attentions[1][0].float().max(dim=0).values  # head-max
    text = [i for i in range(attn.shape[0]) if i not in set(visual)]
    scores = []
    for v in visual:
        cross = sum(float(attn[t, v]) for t in text)
        self_attn = sum(float(attn[u, v]) for u in visual) / len(visual)
        scores.append(cross * self_attn)
    assert kept == top_by_loop(scores, n_keep)
    assert min(scores[i] for i in kept) >= max(s for i, s in enumerate(scores) if i not in set(kept))


def test_dart_matches_slow_transcription(eager_llava):
    model, inputs, out, visual = eager_llava
    layer_k, n_vp, n_tp = 2, 10, 5
    captured = {}
    attn = model.decoder_layers[layer_k - 1].self_attn
    hooks = [
        model.decoder_layers[layer_k - 1].register_forward_pre_hook(
            lambda m, a, kw: captured.update(pe=kw["position_embeddings"]), with_kwargs=True
        ),
        attn.k_proj.register_forward_hook(lambda m, a, o: captured.update(k=o)),
    ]
    try:
        with torch.no_grad():
            model.model(**inputs)
    finally:
        for h in hooks:
            h.remove()
    k = captured["k"].view(1, -1, attn.config.num_key_value_heads, attn.head_dim).transpose(1, 2)
    cos, sin = captured["pe"]
    _, k = apply_rotary_pos_emb(k, k, cos, sin)
    k = k.repeat_interleave(attn.num_key_value_groups, dim=1)[0]  # [H, L, d]
    norms = [float(k[:, i].abs().sum()) for i in range(k.shape[1])]
    hidden = out.hidden_states[layer_k][0].float()  # input of layer K
    instruction = [i for i in range(hidden.shape[0]) if i > max(visual)]

    ratio = 0.778
    kept, n_keep = first_stage_kept(model, get("dart"), ratio, inputs)
    vis_pivots = sorted(range(len(visual)), key=lambda j: (-norms[visual[j]], j))[:n_vp]
    text_pivots = sorted(instruction, key=lambda t: (-norms[t], t))[:n_tp]
    pivots = [hidden[visual[j]] for j in vis_pivots] + [hidden[t] for t in text_pivots]
    chosen = list(vis_pivots)
    pool = [j for j in range(len(visual)) if j not in chosen]
    per_pivot = (n_keep - n_vp) // len(pivots)

    def take_one(pivot):
        cosines = [float(F.cosine_similarity(pivot, hidden[visual[j]], dim=0)) for j in pool]
        j = pool[min(range(len(pool)), key=lambda i: (cosines[i], pool[i]))]
        pool.remove(j)
        chosen.append(j)

    for pivot in pivots:
        for _ in range(per_pivot):
            take_one(pivot)
    p = 0
    while len(chosen) < n_keep:
        take_one(pivots[p])
        p = (p + 1) % len(pivots)
    assert kept == sorted(chosen)
    assert math.isclose(len(kept), n_keep)


# ---------------------------------------------------------------- SDPA == eager


@pytest.mark.parametrize("method_name", ATTENTION_SCORED)
def test_same_selection_under_sdpa_and_eager(family, image, method_name):
    sdpa, eager = tiny_model(family), tiny_model(family, attn_implementation="eager")
    inputs = sdpa.build_inputs([image], PROMPT)
    kept = [[s["kept"] for s in run(m, get(method_name), 0.667, inputs)["stages"]] for m in (sdpa, eager)]
    assert kept[0] == kept[1]
