"""Fidelity of the intra-LLM methods to their authors' released code, and of ``variant="study"`` to the study's code.

Each rule is transcribed slowly (float64, Python loops) from the released code named in the method's docstring and
compared on hand-built cases with known answers, on seeded random inputs at N = 576 / 256 / 144, and on the tiny
LLaVA's eager attention maps. Raw scores are compared, not only the kept sets, and each case also checks that the
parts of the rule matter on that input (a different query row, layer, norm or order would keep other tokens).
"""

from __future__ import annotations

import math
import random

import pytest
import torch
from conftest import draw_image, tiny_model
from pruning_invariants import PROMPT
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from unipb_core.pruning import PruneContext, PruningEngine, Stage, get
from unipb_core.pruning import dart as dart_module
from unipb_core.pruning.context import LayerInput
from unipb_core.pruning.dart import dart_select
from unipb_core.pruning.fitprune import fitprune_scores

SIZES = (576, 256, 144)


# ---------------------------------------------------------------------------- slow helpers
def slow_top(scores: list[float], k: int) -> list[int]:
    """Indices of the k largest scores (ties: lowest index), sorted."""
    return sorted(sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k])


def slow_cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def slow_rmsnorm(x: list[float], weight: list[float], eps: float) -> list[float]:
    scale = 1.0 / math.sqrt(sum(v * v for v in x) / len(x) + eps)
    return [v * scale * w for v, w in zip(x, weight, strict=True)]


@pytest.fixture(scope="module")
def eager():
    """Tiny LLaVA in eager mode with the stock attention maps and hidden states of the prompt."""
    model = tiny_model("llava", attn_implementation="eager")
    inputs = model.build_inputs([draw_image()], PROMPT)
    with torch.no_grad():
        out = model.model(**inputs, output_attentions=True, output_hidden_states=True)
    visual = model.visual_mask(inputs["input_ids"][0]).nonzero().squeeze(1).tolist()
    return model, inputs, out, visual


def recording(method):
    """The method with its ``score`` wrapped to record each stage's raw scores (float64)."""
    seen: list[torch.Tensor] = []
    score = method.score

    def wrapped(ctx):
        out = score(ctx)
        seen.append(out.detach().double().clone())
        return out

    method.score = wrapped
    return method, seen


def run(model, method, ratio, inputs, layer=None):
    """Run a pruned forward; with ``layer``, also capture the hidden states and rotary cos entering that layer
    (a pre-hook registered after the engine's sees the pruned inputs)."""
    seen: dict = {}
    with PruningEngine(model, method, ratio, seed=0) as engine:
        handle = None
        if layer is not None:
            handle = model.decoder_layers[layer].register_forward_pre_hook(
                lambda m, a, kw: seen.update(
                    hidden=a[0] if a else kw["hidden_states"], cos=kw["position_embeddings"][0]
                ),
                with_kwargs=True,
            )
        try:
            with torch.no_grad():
                model.model(**inputs)
        finally:
            if handle is not None:
                handle.remove()
    return engine.summary(), seen


def stock_layer_input(model, inputs, layer):
    seen: dict = {}
    handle = model.decoder_layers[layer].register_forward_pre_hook(
        lambda m, a, kw: seen.update(hidden=a[0] if a else kw["hidden_states"], cos=kw["position_embeddings"][0]),
        with_kwargs=True,
    )
    try:
        with torch.no_grad():
            model.model(**inputs)
    finally:
        handle.remove()
    return seen


def assert_entry_order(model, inputs, method, ratio, layer, order, visual):
    """The kept visual tokens enter ``layer`` in ``order`` (indices into the visual tokens): same hidden states and
    the same (original) rotary position as in the stock model, placed in the visual span in that order."""
    stock = stock_layer_input(model, inputs, layer)
    _, seen = run(model, method, ratio, inputs, layer=layer)
    start, n = visual[0], len(order)
    rows = torch.tensor([visual[i] for i in order])
    torch.testing.assert_close(seen["hidden"][0, start : start + n], stock["hidden"][0, rows], rtol=0, atol=0)
    torch.testing.assert_close(seen["cos"][0, start : start + n], stock["cos"][0, rows], rtol=0, atol=0)


# ---------------------------------------------------------------------------- random attention maps
class MapContext(PruneContext):
    """A stage context whose attention maps are given (``maps[layer]``: ``[H, L, L]``) instead of recomputed."""

    maps: dict = {}

    def attention(self, rows="last", layer=None):
        layer = self.stage.layer if layer is None else layer
        if isinstance(rows, str):
            rows = self.query_rows(rows, layer)
        return self.maps[layer][:, rows]


def map_context(stage, n, maps, start=5):
    """N visual tokens at ``start..start+N-1`` of a sequence of ``N + 24`` tokens, with given maps per layer."""
    length = next(iter(maps.values())).shape[-1]
    visual = torch.arange(start, start + n)
    text = torch.tensor([i for i in range(length) if not start <= i < start + n])
    captured = LayerInput(None, torch.zeros(1, length, 4), (None, None), None, visual, text)
    inputs = {stage.layer - 1: captured, stage.layer: captured}
    ctx = MapContext(
        stage=stage, family="llava", visual=torch.zeros(n, 4), text=torch.zeros(length - n, 4),
        visual_positions=visual, text_positions=text, visual_origin=torch.arange(n), grids=[(1, n)],
        generator=torch.Generator().manual_seed(0), num_layers=8, layer_inputs=inputs,
    )  # fmt: skip
    ctx.maps = maps
    return ctx


def random_map(length, seed, heads=3):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(heads, length, length, generator=g, dtype=torch.float64) * 3
    logits = logits.masked_fill(torch.ones(length, length, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(logits, dim=-1)


@pytest.mark.parametrize("n", SIZES)
def test_fastv_pdrop_fitprune_on_random_maps(n):
    """Each rule on seeded random maps at layers K-1 and K: FastV and the study's PDrop read K-1's last row, the
    authors' PDrop K's own last row; FitPrune keeps the highest product (authors) or the lowest, in ascending
    order (study)."""
    length, k = n + 24, round(n / 3)
    maps = {1: random_map(length, n), 2: random_map(length, n + 1)}
    visual = list(range(5, 5 + n))
    last = [length - 1]
    ctx = map_context(Stage("intra", 2, k), n, maps)
    prev_row, own_row = slow_fastv_scores(maps[1], visual, last), slow_fastv_scores(maps[2], visual, last)
    assert get("fastv").select(ctx).keep.tolist() == slow_top(prev_row, k)
    assert get("pdrop").select(ctx).keep.tolist() == slow_top(own_row, k) != slow_top(prev_row, k)
    study = get("pdrop", variant="study").select(ctx)
    assert study.entry.tolist() == sorted(range(n), key=lambda i: (-prev_row[i], i))[:k]
    product = slow_fitprune_scores(maps[1], visual)
    torch.testing.assert_close(
        get("fitprune").score(ctx), torch.tensor(product, dtype=torch.float64), rtol=1e-10, atol=0
    )
    assert get("fitprune").select(ctx).keep.tolist() == slow_top(product, k)
    lowest = get("fitprune", variant="study").select(ctx)
    assert lowest.entry.tolist() == sorted(range(n), key=lambda i: (product[i], i))[:k]


# ---------------------------------------------------------------------------- FastV (pkunlp-icler/FastV)
def slow_fastv_scores(attn: torch.Tensor, visual: list[int], rows: list[int]) -> list[float]:
    """modeling_llama.py (use_fast_v): head mean of layer K-1's map, the last row, over the image span."""
    a = attn.double().tolist()  # [H, L, L]
    return [sum(a[h][r][v] for h in range(len(a)) for r in rows) / (len(a) * len(rows)) for v in visual]


def test_fastv_authors_scores_and_kept(eager):
    model, inputs, out, visual = eager
    method, seen = recording(get("fastv"))
    summary, _ = run(model, method, 0.778, inputs)
    last = out.attentions[1].shape[-1] - 1
    scores = slow_fastv_scores(out.attentions[1][0], visual, [last])
    torch.testing.assert_close(seen[0], torch.tensor(scores, dtype=torch.float64), rtol=1e-5, atol=1e-7)
    kept = slow_top(scores, round(144 * (1 - 0.778)))
    assert summary["stages"][0]["kept"] == kept and len(kept) == 32
    # The query row matters here: the paper's "all rows" wording keeps other tokens.
    all_rows = slow_fastv_scores(out.attentions[1][0], visual, list(range(last + 1)))
    assert slow_top(all_rows, 32) != kept


def test_fastv_study_count_and_score_order(eager):
    model, inputs, out, visual = eager
    last = out.attentions[1].shape[-1] - 1
    scores = slow_fastv_scores(out.attentions[1][0], visual, [last])
    n = int(144 * (1 - 0.778))  # the study's int(): 31, not 32
    order = sorted(range(144), key=lambda i: (-scores[i], i))[:n]  # topk order, not sorted back
    summary, _ = run(model, get("fastv", variant="study"), 0.778, inputs)
    assert n == 31 and summary["stages"][0]["kept"] == sorted(order)
    assert order != sorted(order)
    assert_entry_order(model, inputs, get("fastv", variant="study"), 0.778, 2, order, visual)


# ---------------------------------------------------------------------------- PDrop (Cooperx521/PyramidDrop)
def test_pdrop_authors_scores_with_layer_k_own_attention(eager):
    model, inputs, out, visual = eager
    method, seen = recording(get("pdrop"))
    summary, _ = run(model, method, 0.667, inputs)
    first = summary["stages"][0]
    assert first["layer"] == 2  # round(8 * 8/32)
    last = out.attentions[2].shape[-1] - 1
    # pdrop_rank_drop: layer K's own input norm, q/k and RoPE on the tokens entering K; last prompt token.
    scores = slow_fastv_scores(out.attentions[2][0], visual, [last])
    torch.testing.assert_close(seen[0], torch.tensor(scores, dtype=torch.float64), rtol=1e-5, atol=1e-7)
    assert first["kept"] == slow_top(scores, first["n_out"])
    previous_layer = slow_fastv_scores(out.attentions[1][0], visual, [last])
    assert slow_top(previous_layer, first["n_out"]) != first["kept"]  # K's own map, not K-1's


def test_pdrop_study_first_stage(eager):
    model, inputs, out, visual = eager
    last = out.attentions[1].shape[-1] - 1
    scores = slow_fastv_scores(out.attentions[1][0], visual, [last])  # Pdrop_IntraLLM.py: layer K-1's map
    order = sorted(range(144), key=lambda i: (-scores[i], i))[: int(144 * (1 - 0.667))]
    summary, _ = run(model, get("pdrop", variant="study"), 0.667, inputs)
    assert [s["n_out"] for s in summary["stages"]] == [47, 15, 4]  # int() chained on the tokens left
    assert summary["stages"][0]["kept"] == sorted(order)
    assert_entry_order(model, inputs, get("pdrop", variant="study"), 0.667, 2, order, visual)


# ---------------------------------------------------------------------------- FitPrune (ywh187/FitPrune)
def slow_fitprune_scores(attn: torch.Tensor, visual: list[int]) -> list[float]:
    """modeling_llama.py (fitprune block): head max; (rows after the image -> v) x (visual rows -> v / N)."""
    a = attn.double().max(dim=0).values.tolist()
    after = range(visual[-1] + 1, len(a))
    return [sum(a[t][v] for t in after) * sum(a[u][v] for u in visual) / len(visual) for v in visual]


@pytest.mark.parametrize("n", SIZES)
def test_fitprune_scores_on_random_maps(n):
    g = torch.Generator().manual_seed(n)
    length, start = n + 24, 5
    logits = torch.randn(3, length, length, generator=g, dtype=torch.float64)
    logits = logits.masked_fill(torch.ones(length, length, dtype=torch.bool).triu(1), float("-inf"))
    attn = torch.softmax(logits, dim=-1)
    visual = list(range(start, start + n))
    text = [i for i in range(length) if i not in set(visual)]
    fast = fitprune_scores(attn, torch.tensor(visual), torch.tensor(text))
    slow = slow_fitprune_scores(attn, visual)
    torch.testing.assert_close(fast, torch.tensor(slow, dtype=torch.float64), rtol=1e-10, atol=0)
    # Both factors matter on this input: either one alone keeps other tokens.
    a = attn.max(dim=0).values
    cross = a[visual[-1] + 1 :, start : start + n].sum(0).tolist()
    self_ = a[start : start + n, start : start + n].sum(0).tolist()
    k = n // 3
    assert slow_top(slow, k) != slow_top(cross, k) and slow_top(slow, k) != slow_top(self_, k)


def test_fitprune_authors_first_stage(eager):
    model, inputs, out, visual = eager
    method, seen = recording(get("fitprune"))
    summary, _ = run(model, method, 0.667, inputs)
    first = summary["stages"][0]
    assert first["layer"] == 1  # the authors delete from layer 0's output: scored with layer 0's map
    scores = slow_fitprune_scores(out.attentions[0][0], visual)
    torch.testing.assert_close(seen[0], torch.tensor(scores, dtype=torch.float64), rtol=1e-4, atol=1e-9)
    assert first["kept"] == slow_top(scores, first["n_out"])  # the highest: the lowest are deleted


def test_fitprune_study_keeps_the_lowest_in_ascending_order(eager):
    model, inputs, out, visual = eager
    scores = slow_fitprune_scores(out.attentions[1][0], visual)  # FitPrune_IntraLLM.py: layer 1's map
    order = sorted(range(144), key=lambda i: (scores[i], i))[: int(144 * (1 - 0.667))]  # sort(...).indices[:k]
    summary, _ = run(model, get("fitprune", variant="study"), 0.667, inputs)
    assert [(s["layer"], s["kept"]) for s in summary["stages"]] == [(2, sorted(order))]
    assert_entry_order(model, inputs, get("fitprune", variant="study"), 0.667, 2, order, visual)


# ---------------------------------------------------------------------------- DART (ZichenWen1/DART)
def slow_dart(knorm_v, knorm_t, hv, ht, vpos, tpos, n_vp, n_tp, token_topk=None, n_keep=None):
    """get_retained_image_token: L1-norm pivots; the pivot set's visiting order; TOKEN_TOPK least-similar tokens
    per pivot from the pool; text pivots dropped. ``n_keep`` instead of ``token_topk``: this project's fixed budget
    (visual pivots count, an equal share per pivot, then one more per pivot in visiting order)."""
    n = len(hv)
    img = sorted(range(n), key=lambda j: (-knorm_v[j], j))[:n_vp]
    txt = sorted(range(len(ht)), key=lambda j: (-knorm_t[j], j))[:n_tp]
    pivots = {vpos[j]: hv[j] for j in img} | {tpos[j]: ht[j] for j in txt}
    visiting = [pivots[p] for p in list(set([vpos[j] for j in img] + [tpos[j] for j in txt]))]
    cosines = [[slow_cos(p, hv[i]) for i in range(n)] for p in visiting]
    pool = [i for i in range(n) if i not in img]
    kept = list(img)

    def take(p):
        best = min(pool, key=lambda i: (cosines[p][i], i))
        pool.remove(best)
        kept.append(best)

    if n_keep is not None and n_keep <= n_vp:
        return sorted(img[:n_keep])
    share = token_topk if token_topk is not None else (n_keep - len(img)) // len(visiting)
    for p in range(len(visiting)):
        for _ in range(share):
            take(p)
    p = 0
    while n_keep is not None and len(kept) < n_keep:
        take(p)
        p = (p + 1) % len(visiting)
    return sorted(kept)


def random_dart_case(n, seed, dim=12, n_text=9):
    rng = random.Random(seed)
    hv = [[rng.gauss(0, 1) for _ in range(dim)] for _ in range(n)]
    ht = [[rng.gauss(0, 1) for _ in range(dim)] for _ in range(n_text)]
    knorm_v = [rng.random() for _ in range(n)]
    knorm_t = [rng.random() for _ in range(n_text)]
    vpos = list(range(35, 35 + n))  # LLaVA-1.5's image span starts at 35
    tpos = list(range(35 + n, 35 + n + n_text))
    return knorm_v, knorm_t, hv, ht, vpos, tpos


def assert_dart_matches_slow(knorm_v, knorm_t, hv, ht, vpos, tpos, pivots, topk, budget):
    """``dart_select`` keeps exactly the transcription's tokens (``topk`` None: the budget-driven rule)."""
    n_vp, n_tp = pivots
    expected = slow_dart(knorm_v, knorm_t, hv, ht, vpos, tpos, n_vp, n_tp, topk, None if topk else budget)
    n_keep = n_vp + (n_vp + n_tp) * topk if topk is not None else budget
    fast = dart_select(
        torch.tensor(knorm_v), torch.tensor(knorm_t), torch.tensor(hv, dtype=torch.float64),
        torch.tensor(ht, dtype=torch.float64), n_keep, n_vp, n_tp, torch.tensor(vpos), torch.tensor(tpos), topk,
    )  # fmt: skip
    assert fast.tolist() == expected and len(expected) == n_keep


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize(("pivots", "rule"), [((4, 4), "adaptive"), ((4, 4), "fixed"), ((10, 5), "study")])
def test_dart_select_on_random_inputs(n, pivots, rule):
    knorm_v, knorm_t, hv, ht, vpos, tpos = random_dart_case(n, seed=n + pivots[0])
    n_vp, n_tp = pivots
    budget = round(n * (1 - 0.778)) if rule != "study" else int(n * (1 - 0.778))
    topk = budget // (n_vp + n_tp) if rule != "fixed" else None
    assert_dart_matches_slow(knorm_v, knorm_t, hv, ht, vpos, tpos, pivots, topk, budget)


@pytest.mark.parametrize("n", (577, 1024))
@pytest.mark.parametrize(("pivots", "rule"), [((4, 4), "fixed"), ((10, 5), "study")])
def test_dart_select_with_ties(n, pivots, rule):
    """Quantised key norms (pivot ties: lowest index) and repeated tokens (cosine ties: lowest index)."""
    knorm_v, knorm_t, hv, ht, vpos, tpos = random_dart_case(n, seed=n + pivots[0])
    knorm_v, knorm_t = [round(v * 4) / 4 for v in knorm_v], [round(v * 2) / 2 for v in knorm_t]
    hv = [hv[j % 7] if j % 3 == 0 else v for j, v in enumerate(hv)]  # a third of the tokens repeat seven vectors
    n_vp, n_tp = pivots
    budget = round(n * (1 - 0.889)) if rule != "study" else int(n * (1 - 0.889))
    topk = budget // (n_vp + n_tp) if rule == "study" else None
    assert_dart_matches_slow(knorm_v, knorm_t, hv, ht, vpos, tpos, pivots, topk, budget)


def test_dart_by_hand():
    """One visual pivot (token 0) and one text pivot, TOKEN_TOPK = 1: each takes its least similar token."""
    hv = [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.9, 0.1], [0.0, -1.0], [-0.9, -0.1]]
    ht = [[0.0, 1.0], [5.0, 5.0]]
    args = (torch.tensor([9.0, 1, 1, 1, 1, 1]), torch.tensor([3.0, 1.0]), torch.tensor(hv), torch.tensor(ht))
    # Pivot v0 = (1, 0) takes v2 = (-1, 0) (cos -1 < -0.994); text pivot (0, 1) then takes v4 = (0, -1).
    assert dart_select(*args, 3, 1, 1, per_pivot=1).tolist() == [0, 2, 4]
    # Fixed budget of 4: one each (1 + 2), then one more for the first pivot visited (v0): v5 = (-0.9, -0.1).
    assert dart_select(*args, 4, 1, 1).tolist() == [0, 2, 4, 5]
    # Budget below the visual pivots: only the highest-norm ones.
    assert dart_select(*args, 1, 2, 1).tolist() == [0]


def test_dart_pivots_follow_the_set_order():
    """The visual pivot at position 43 and the text pivot at 50: ``list({43, 50})`` visits 50 first, so the text
    pivot takes the token both want (v1) and the visual pivot its second choice."""
    hv = [[1.0, 0.2], [-1.0, 0.0], [-0.6, 0.8], [-0.6, -0.8]]  # v0: v1 first, then v3; the text pivot: v1, then v2
    ht = [[0.95, -0.3]]
    knorm_v, knorm_t = torch.tensor([9.0, 0, 0, 0]), torch.tensor([1.0])
    common = (knorm_v, knorm_t, torch.tensor(hv), torch.tensor(ht), 3, 1, 1)
    text_first = dart_select(*common, torch.tensor([43, 44, 45, 46]), torch.tensor([50]), per_pivot=1)
    visual_first = dart_select(*common, torch.tensor([40, 41, 42, 43]), torch.tensor([50]), per_pivot=1)
    assert list({43, 50}) == [50, 43] and list({40, 50}) == [40, 50]
    assert text_first.tolist() == [0, 1, 3] and visual_first.tolist() == [0, 1, 2]


def dart_inputs_by_slow_path(model, inputs, out, visual, layer_k=2):
    """Layer K-1's post-RoPE keys (hooked k_proj + stock RoPE) and the hidden states entering K, as lists."""
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
    _, k = apply_rotary_pos_emb(k, k, *captured["pe"])
    k = k[0].double()  # [H_kv, L, d]: the authors' K_states, heads concatenated per token
    norms = [float(k[:, i].abs().sum()) * attn.num_key_value_groups for i in range(k.shape[1])]
    hidden = out.hidden_states[layer_k][0].double().tolist()  # the input of layer K
    after = list(range(visual[-1] + 1, len(hidden)))
    return norms, hidden, after


@pytest.fixture
def distinct_norm_gains(eager):
    """The tiny model's RMSNorm gains are all 1, under which every norm gives the same cosines. Give the final norm
    and layer 2's input norm distinct seeded gains for one test (neither changes the hidden states entering layer
    2, which the ``eager`` fixture recorded), then restore them."""
    model = eager[0]
    norms = (model.language_model.norm, model.decoder_layers[2].input_layernorm)
    saved = [n.weight.detach().clone() for n in norms]
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for n in norms:
            n.weight.copy_(0.2 + 2 * torch.rand(n.weight.shape, generator=g))
    yield
    with torch.no_grad():
        for n, w in zip(norms, saved, strict=True):
            n.weight.copy_(w)


@pytest.mark.parametrize("rule", ["fixed", "adaptive", "study"])
def test_dart_on_the_model(eager, distinct_norm_gains, monkeypatch, rule):
    model, inputs, out, visual = eager
    norms, hidden, after = dart_inputs_by_slow_path(model, inputs, out, visual)
    lm = model.language_model
    if rule == "study":  # layer K's own input_layernorm (layer_prune._save_hidden_states_norm)
        norm = model.decoder_layers[2].input_layernorm
    else:  # the authors' DART_K_norm: self.norm, the final norm
        norm = lm.norm
    weight, eps = norm.weight.double().tolist(), norm.variance_epsilon
    normed = [slow_rmsnorm(h, weight, eps) for h in hidden]
    n_vp, n_tp = (10, 5) if rule == "study" else (4, 4)
    budget = int(144 * (1 - 0.778)) if rule == "study" else 32
    topk = None if rule == "fixed" else budget // (n_vp + n_tp)
    expected = slow_dart(
        [norms[v] for v in visual], [norms[t] for t in after], [normed[v] for v in visual],
        [normed[t] for t in after], visual, after, n_vp, n_tp, topk, budget if topk is None else None,
    )  # fmt: skip
    captured = {}

    def spy(*args):
        captured["args"] = args
        return dart_select(*args)

    monkeypatch.setattr(dart_module, "dart_select", spy)
    params = {"variant": "study"} if rule == "study" else {"budget": rule}
    summary, _ = run(model, get("dart", **params), 0.778, inputs)
    assert summary["stages"][0]["kept"] == expected
    assert summary["stages"][0]["n_out"] == {"fixed": 32, "adaptive": 36, "study": 40}[rule]
    # Raw inputs of the rule: key L1 norms (pivots) and the normed hidden states (cosines).
    knorm_v, knorm_t, hv, ht = captured["args"][:4]
    torch.testing.assert_close(
        knorm_v.double(), torch.tensor([norms[v] for v in visual], dtype=torch.float64), rtol=1e-4, atol=1e-6
    )
    torch.testing.assert_close(
        knorm_t.double(), torch.tensor([norms[t] for t in after], dtype=torch.float64), rtol=1e-4, atol=1e-6
    )
    torch.testing.assert_close(
        hv.double(), torch.tensor([normed[v] for v in visual], dtype=torch.float64), rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(
        ht.double(), torch.tensor([normed[t] for t in after], dtype=torch.float64), rtol=1e-4, atol=1e-5
    )
    if rule == "fixed":  # the norm matters on this input: the other norm's gains keep other tokens
        other = model.decoder_layers[2].input_layernorm.weight.double().tolist()
        renormed = [slow_rmsnorm(h, other, eps) for h in hidden]
        swapped = slow_dart(
            [norms[v] for v in visual], [norms[t] for t in after], [renormed[v] for v in visual],
            [renormed[t] for t in after], visual, after, n_vp, n_tp, None, budget,
        )  # fmt: skip
        assert swapped != expected


# ---------------------------------------------------------------------------- VTW (lzhxmu/VTW)
def test_vtw_withdraws_every_visual_token_at_k(eager):
    """VTW.py (mode "vtw", pe_type "keep"): at layer k the image span is cut out, the rest keep their positions."""
    model, inputs, out, visual = eager
    summary, seen = run(model, get("vtw", layer=3), 0.5, inputs, layer=3)
    stock = stock_layer_input(model, inputs, 3)
    text = [i for i in range(stock["hidden"].shape[1]) if i not in set(visual)]
    torch.testing.assert_close(seen["hidden"][0], stock["hidden"][0, text], rtol=0, atol=0)
    torch.testing.assert_close(seen["cos"][0], stock["cos"][0, text], rtol=0, atol=0)
    assert summary["visual_per_layer"] == [144, 144, 144, 0, 0, 0, 0, 0]


# ---------------------------------------------------------------------------- SparseVLM (Gumpest/SparseVLMs)
def test_sparsevlm_raters_and_scores(eager, monkeypatch):
    """modelling_sparse_llama.py: raters = text tokens after the image whose mean_v softmax_t(v . t) over the LLM
    input embeddings exceeds the mean; score.py attn_postprocess_topk: the raters' rows of the pruned layer's map,
    mean over heads then raters; the top count is kept."""
    from unipb_core.pruning import sparsevlm as sparsevlm_module

    model, inputs, out, visual = eager
    embeds = out.hidden_states[0][0].double().tolist()
    text = list(range(visual[-1] + 1, len(embeds)))
    relevance = [0.0] * len(text)
    for v in visual:
        logits_v = [sum(a * b for a, b in zip(embeds[v], embeds[t], strict=True)) for t in text]
        top = max(logits_v)
        exp = [math.exp(x - top) for x in logits_v]
        for j, e in enumerate(exp):
            relevance[j] += e / sum(exp) / len(visual)
    raters = [t for t, r in zip(text, relevance, strict=True) if r > sum(relevance) / len(relevance)]
    assert 0 < len(raters) < len(text)
    attn = out.attentions[0][0].double().tolist()  # first stage at K = 1: layer 0's map (the authors' layer 2)
    scores = [sum(attn[h][r][v] for h in range(len(attn)) for r in raters) / (len(attn) * len(raters)) for v in visual]
    captured = {}
    recycle = sparsevlm_module.recycle

    def spy(x, keep, s, share):
        captured.setdefault("scores", s.detach().double().clone())
        return recycle(x, keep, s, share)

    monkeypatch.setattr(sparsevlm_module, "recycle", spy)
    summary, _ = run(model, get("sparsevlm"), 0.667, inputs)
    first = summary["stages"][0]
    torch.testing.assert_close(captured["scores"], torch.tensor(scores, dtype=torch.float64), rtol=1e-4, atol=1e-8)
    assert first["layer"] == 1 and first["kept"] == slow_top(scores, first["n_out"])


# ---------------------------------------------------------------------------- MustDrop (liuting20/MustDrop)
def test_mustdrop_dual_attention_scores(eager, monkeypatch):
    """score.py (MustDrop's dual-attention filter): global_i = sum over instruction rows, individual_i = max over
    them, of the head-mean map; kept when global_i >= g * sum(global) or individual_i >= tau (score >= 1 here)."""
    from unipb_core.pruning import mustdrop as mustdrop_module

    model, inputs, _, visual = eager
    captured = {}
    filter_keep = mustdrop_module.filter_keep

    def spy(dual, key_scores, n_keep, n_key):
        captured["dual"] = dual.detach().double().clone()
        return filter_keep(dual, key_scores, n_keep, n_key)

    monkeypatch.setattr(mustdrop_module, "filter_keep", spy)
    with PruningEngine(model, get("mustdrop", key_share=0.0), 0.667, seed=0) as engine:
        with torch.no_grad():
            out = model.model(**inputs, output_attentions=True)
    pre, intra = engine.summary()["stages"]
    attn = out.attentions[intra["layer"] - 1][0].double().mean(dim=0).tolist()  # the merged sequence's map
    vis = list(range(visual[0], visual[0] + pre["n_out"]))
    rows = range(vis[-1] + 1, len(attn))
    glob = [sum(attn[t][v] for t in rows) for v in vis]
    indiv = [max(attn[t][v] for t in rows) for v in vis]
    dual = [max(g / (0.001 * sum(glob)), i / 0.001) for g, i in zip(glob, indiv, strict=True)]
    torch.testing.assert_close(captured["dual"], torch.tensor(dual, dtype=torch.float64), rtol=1e-4, atol=1e-6)
    assert intra["kept"] == [pre["kept"][j] for j in slow_top(dual, intra["n_out"])]
