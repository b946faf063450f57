"""MustDrop, SparseVLM and Downsample: layer-averaged budgets; MustDrop and SparseVLM: fidelity to slow transcriptions
of the rules and SDPA == eager selections (the contract is in test_pruning_contract.py; Downsample's own tests are in
test_downsample.py)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import draw_image, tiny_model
from pruning_invariants import PROMPT

from unipb_core.pruning import PruningEngine, Stage, get
from unipb_core.pruning.context import PruneContext
from unipb_core.pruning.mustdrop import filter_keep
from unipb_core.pruning.schedule import reachable_mean
from unipb_core.pruning.sparsevlm import recycle

METHODS = ("mustdrop", "sparsevlm", "downsample")
ATTENTION_SCORED = ("mustdrop", "sparsevlm")
RATIOS = (0.667, 0.778, 0.889)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run faster on one thread


@pytest.fixture
def inputs(model, image):
    return model.build_inputs([image], PROMPT)


def run(model, method, ratio, inputs, **kwargs):
    with PruningEngine(model, method, ratio, seed=0) as engine:
        with torch.no_grad():
            out = model.model(**inputs, **kwargs)
    return engine.summary(), out


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("method_name", METHODS)
def test_layer_averaged_budget(model, inputs, method_name, ratio):
    """The layer-averaged visual count hits the target (the contract matrix checks the per-stage counts)."""
    summary, _ = run(model, get(method_name), ratio, inputs)
    n, layers = summary["n_visual"], model.num_layers
    if method_name in ("mustdrop", "downsample"):  # downsample: one exact stage; mustdrop: the filter's count
        assert abs(summary["visual_kept_mean"] - n * (1 - ratio)) <= 0.5  # is rounded once (half a token)
    else:  # integer geometric counts: within one token of the target or of the first stage's reach
        stage_layers = [s["layer"] for s in summary["stages"]]
        assert abs(summary["visual_kept_mean"] - reachable_mean(n, stage_layers, layers, ratio)) <= 1.0


@pytest.mark.parametrize("method_name", ATTENTION_SCORED)
def test_same_selection_under_sdpa_and_eager(family, image, method_name):
    sdpa, eager = tiny_model(family), tiny_model(family, attn_implementation="eager")
    inputs = sdpa.build_inputs([image], PROMPT)
    kept = [[s["kept"] for s in run(m, get(method_name), 0.667, inputs)[0]["stages"]] for m in (sdpa, eager)]
    assert kept[0] == kept[1]


# ---------------------------------------------------------------------------- helpers
def make_ctx(x, n_keep, grids, vision=None):
    n = x.shape[0]
    return PruneContext(
        stage=Stage("pre", None, n_keep), family="llava", visual=x, text=x[:0],
        visual_positions=torch.arange(n), text_positions=torch.arange(0), visual_origin=torch.arange(n),
        grids=grids, generator=torch.Generator().manual_seed(0), num_layers=8, vision=vision or {},
    )  # fmt: skip


def cos(a, b):
    return float(a @ b) / (float(a.norm()) * float(b.norm()))


def rcos(a, b):  # the merge ranks cosines rounded to 4 decimals (float noise must not reorder identical tokens)
    return round(cos(a, b), 4)


def top_by_loop(scores, k):
    return sorted(sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k])


@pytest.fixture(scope="module")
def eager_llava():
    model = tiny_model("llava", attn_implementation="eager")
    return model, model.build_inputs([draw_image()], PROMPT)


# ---------------------------------------------------------------------------- MustDrop
def test_mustdrop_plan_splits_the_layer_averaged_budget():
    md = get("mustdrop")
    assert [s.layer for s in md.plan(576, 0.889, 32)] == [None, 3] and md.plan(144, 0.5, 8)[1].layer == 1
    for n, layers in ((576, 32), (144, 8), (1280, 28)):
        for ratio in (0.0, 0.3, 0.667, 0.778, 0.889, 0.95):
            pre, intra = md.plan(n, ratio, layers)
            mean = (intra.layer * pre.n_keep + (layers - intra.layer) * intra.n_keep) / layers
            assert n >= pre.n_keep >= intra.n_keep >= 0 and abs(mean - n * (1 - ratio)) <= 0.5
            if ratio in (0.667, 0.778, 0.889):  # the merge removes merge_share of the tokens at study ratios
                assert pre.n_keep == round(n * 0.75)


def slow_spatial_merge(x, rows, cols, n_keep, w):
    """Python-loop transcription: score tiles, merge in score order, then merge the closest clusters."""
    windows = []
    for r0 in range(0, rows, w):
        for c0 in range(0, cols, w):
            r1, c1 = min(r0 + w, rows), min(c0 + w, cols)
            members = [r * cols + c for r in range(r0, r1) for c in range(c0, c1)]
            centre = ((r0 + r1 - 1) // 2) * cols + (c0 + c1 - 1) // 2
            pairs = [rcos(x[i], x[j]) for i in members for j in members if i != j]
            windows.append((round(sum(pairs) / len(pairs), 4) if pairs else -math.inf, members, centre))
    clusters = {i: [i] for i in range(len(x))}
    remove = len(x) - n_keep
    for _, members, centre in sorted(windows, key=lambda t: -t[0]):  # sorted() is stable: ties keep tile order
        if remove == 0:
            break
        others = [i for i in members if i != centre]
        others = sorted(others, key=lambda i: (-rcos(x[centre], x[i]), i))[:remove]
        for i in others:
            clusters[centre] += clusters.pop(i)
        remove -= len(others)

    def mean(c):
        return torch.stack([x[i] for i in c]).mean(0)

    while remove:
        alive = sorted(clusters)
        a, b = max(
            ((a, b) for a in alive for b in alive if a != b),
            key=lambda p: rcos(mean(clusters[p[0]]), mean(clusters[p[1]])),
        )
        a, b = min(a, b), max(a, b)
        clusters[a] += clusters.pop(b)
        remove -= 1
    keep = sorted(clusters)
    return keep, torch.stack([mean(clusters[k]) for k in keep])


@pytest.mark.parametrize(("rows", "cols", "n_keep", "window"), [(5, 7, 20, 3), (4, 4, 9, 2), (3, 4, 2, 2)])
def test_mustdrop_spatial_merge_matches_slow_transcription(rows, cols, n_keep, window):
    g = torch.Generator().manual_seed(rows * cols + n_keep)
    base = torch.randn(4, 6, generator=g)
    x = base[torch.randint(0, 4, (rows * cols,), generator=g)] + 0.4 * torch.randn(rows * cols, 6, generator=g)
    sel = get("mustdrop", window=window).select(make_ctx(x, n_keep, [(rows, cols)]))
    keep, merged = slow_spatial_merge(x, rows, cols, n_keep, window)
    assert sel.keep.tolist() == keep  # (3, 4, 2, 2) exhausts the tiles: the fallback merges clusters
    torch.testing.assert_close(sel.merged, merged)


@pytest.mark.parametrize(("rows", "cols", "n_keep", "window"), [(24, 24, 432, 3), (24, 24, 437, 3), (13, 17, 150, 3)])
def test_mustdrop_spatial_merge_with_exact_ties(rows, cols, n_keep, window):
    """Blank regions: whole tiles of one repeated token tie at score 1 (tile order decides), identical neighbours
    tie inside a partially merged tile (lowest index decides); LLaVA's 24 x 24 grid and an odd one with edge tiles."""
    g = torch.Generator().manual_seed(rows + n_keep)
    base = torch.randn(5, 8, generator=g)
    x = base[torch.randint(0, 5, (rows * cols,), generator=g)] + 0.3 * torch.randn(rows * cols, 8, generator=g)
    blank = torch.rand(rows * cols, generator=g) < 0.4
    x[blank] = base[0]  # exact duplicates, as a blank background gives
    sel = get("mustdrop", window=window).select(make_ctx(x, n_keep, [(rows, cols)]))
    keep, merged = slow_spatial_merge(x, rows, cols, n_keep, window)
    assert sel.keep.tolist() == keep
    torch.testing.assert_close(sel.merged, merged)


def test_mustdrop_spatial_merge_by_hand():
    # 4x4 grid, 2x2 tiles: the upper-right tile is four copies of one vector, so it merges first (into its
    # centre, the tile's upper-left token 2); one more removal goes to the next best tile, partially.
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(0))
    x[[2, 3, 6, 7]] = torch.tensor([1.0, 2.0, 3.0])
    x[8], x[9] = torch.tensor([5.0, 0, 0]), torch.tensor([4.0, 0.1, 0])  # lower-left tile: 8 ~ 9
    sel = get("mustdrop", window=2).select(make_ctx(x, 12, [(4, 4)]))
    assert 3 not in sel.keep.tolist() and 2 in sel.keep.tolist()
    torch.testing.assert_close(sel.merged[sel.keep.tolist().index(2)], torch.tensor([1.0, 2.0, 3.0]))
    sel = get("mustdrop", window=2).select(make_ctx(x, 16, [(4, 4)]))  # ratio 0: nothing merges
    assert sel.keep.tolist() == list(range(16)) and torch.equal(sel.merged, x)


def test_mustdrop_filter_keeps_the_key_set_first():
    dual = torch.tensor([0.5, 3.0, 2.0, 0.1, 1.0])
    key = torch.tensor([0.0, 0.0, 0.0, 9.0, 8.0])
    assert filter_keep(dual, key, 3, 0).tolist() == [1, 2, 4]
    assert filter_keep(dual, key, 3, 1).tolist() == [1, 2, 3]
    assert filter_keep(dual, key, 2, 5).tolist() == [3, 4]  # key set larger than the budget: top of it


def test_mustdrop_filter_matches_eager_attention(eager_llava):
    model, inputs = eager_llava
    ratio = 0.667
    summary, out = run(model, get("mustdrop", key_share=0.0), ratio, inputs, output_attentions=True)
    pre, intra = summary["stages"]
    k = intra["layer"]
    v0 = int(model.visual_mask(inputs["input_ids"][0]).nonzero()[0])
    visual = list(range(v0, v0 + pre["n_out"]))  # one image: its kept tokens stay contiguous
    attn = out.attentions[k - 1][0].float().mean(dim=0)  # head mean over the pruned sequence
    text = range(visual[-1] + 1, attn.shape[0])
    glob = [sum(float(attn[t, v]) for t in text) for v in visual]
    indiv = [max(float(attn[t, v]) for t in text) for v in visual]
    scores = [max(g / (0.001 * sum(glob)), i / 0.001) for g, i in zip(glob, indiv, strict=True)]
    expected = [pre["kept"][j] for j in top_by_loop(scores, intra["n_out"])]
    assert intra["kept"] == expected


def test_mustdrop_key_set_is_the_top_encoder_attention(eager_llava):
    model, inputs = eager_llava
    store: dict = {}
    handles = model.vision_attention_hooks(store)
    try:
        with torch.no_grad():
            model.model(**inputs)
            encoder = model.vision_attention(store).scores
    finally:
        for h in handles:
            h.remove()
    summary, _ = run(model, get("mustdrop", key_share=1.0), 0.778, inputs)
    pre, intra = summary["stages"]
    entering = [float(encoder[i]) for i in pre["kept"]]
    assert intra["kept"] == [pre["kept"][j] for j in top_by_loop(entering, intra["n_out"])]


# ---------------------------------------------------------------------------- SparseVLM
def test_sparsevlm_default_layers_scale_with_depth():
    sv = get("sparsevlm")
    assert [s.layer for s in sv.plan(576, 0.5, 32)] == [3, 7, 16]
    assert [s.layer for s in sv.plan(576, 0.5, 28)] == [3, 6, 14]
    assert [s.layer for s in sv.plan(144, 0.5, 8)] == [1, 2, 4]


def test_sparsevlm_first_stage_matches_eager_attention(eager_llava):
    model, inputs = eager_llava
    summary, out = run(model, get("sparsevlm"), 0.667, inputs, output_attentions=True, output_hidden_states=True)
    first = summary["stages"][0]
    k = first["layer"]
    visual = model.visual_mask(inputs["input_ids"][0]).nonzero().squeeze(1).tolist()
    hidden = out.hidden_states[k - 1][0].float()  # the input of layer K-1 (stages before K-1: none)
    text = list(range(visual[-1] + 1, hidden.shape[0]))
    relevance = [0.0] * len(text)
    for v in visual:
        logits_v = torch.tensor([float(hidden[v] @ hidden[t]) for t in text])
        for j, p in enumerate(torch.softmax(logits_v, 0).tolist()):
            relevance[j] += p / len(visual)
    raters = [t for t, r in zip(text, relevance, strict=True) if r > sum(relevance) / len(relevance)]
    attn = out.attentions[k - 1][0].float()
    scores = [float(attn[:, raters, v].mean()) for v in visual]
    assert first["kept"] == top_by_loop(scores, first["n_out"])


def slow_raters(embeds, visual, text):
    """modelling_sparse_llama.py: m_v_t = (v_t @ t_t^T).softmax(text).mean(visual); raters = m_v_t > mean."""
    relevance = [0.0] * len(text)
    for v in visual:
        logits_v = torch.tensor([float(embeds[v].double() @ embeds[t].double()) for t in text], dtype=torch.float64)
        for j, p in enumerate(torch.softmax(logits_v, 0).tolist()):
            relevance[j] += p / len(visual)
    return [j for j, r in enumerate(relevance) if r > sum(relevance) / len(relevance)]


def test_sparsevlm_later_stage_uses_the_raters_of_the_llm_input(eager_llava):
    """The raters are chosen once from the LLM input embeddings (the authors'), not from each stage's input: the
    second stage (layer 2) scores with layer 1's map over the sequence the first stage pruned."""
    model, inputs = eager_llava
    summary, out = run(model, get("sparsevlm"), 0.667, inputs, output_attentions=True, output_hidden_states=True)
    first, second = summary["stages"][:2]
    assert (first["layer"], second["layer"]) == (1, 2) and 0 < second["n_out"] < second["n_in"]
    visual0 = model.visual_mask(inputs["input_ids"][0]).nonzero().squeeze(1).tolist()
    embeds = out.hidden_states[0][0]
    text0 = list(range(visual0[-1] + 1, embeds.shape[0]))
    chosen = slow_raters(embeds, visual0, text0)
    attn = out.attentions[1][0].double()  # layer 1 ran on the first stage's kept tokens
    v0, n1 = visual0[0], first["n_out"]
    visual1 = list(range(v0, v0 + n1))  # one image: its kept tokens stay contiguous
    text1 = list(range(v0 + n1, attn.shape[-1]))
    raters = [text1[j] for j in chosen]
    scores = [sum(float(attn[h, r, v]) for h in range(attn.shape[0]) for r in raters) / (attn.shape[0] * len(raters))
              for v in visual1]  # fmt: skip
    assert second["kept"] == [first["kept"][j] for j in top_by_loop(scores, second["n_out"])]
    # Raters from a later layer's hidden states (layer 0's output, full length) would differ on this input.
    hidden1 = out.hidden_states[1][0]
    assert hidden1.shape[0] == embeds.shape[0]
    assert slow_raters(hidden1, [visual0[i] for i in first["kept"]], text0) != chosen


def slow_recycle(x, keep, scores, share):
    """Loop transcription: the top int(share * deleted) + 1 deleted tokens by score (ties: lowest index) join their
    most cosine-similar kept token (ties: lowest index); each kept feature becomes its group's mean."""
    kept = keep.tolist()
    deleted = [i for i in range(len(x)) if i not in set(kept)]
    recycled = sorted(deleted, key=lambda i: (-float(scores[i]), i))[: int(len(deleted) * share) + 1]
    groups = {k: [k] for k in kept}
    for r in recycled:
        groups[max(kept, key=lambda k: (cos(x[r], x[k]), -k))].append(r)
    return recycled, torch.stack([x[g].mean(0) for g in groups.values()])


def test_sparsevlm_recycling_matches_slow_transcription():
    x = torch.randn(10, 4, generator=torch.Generator().manual_seed(1))
    scores = torch.tensor([0.9, 0.1, 0.8, 0.3, 0.7, 0.2, 0.6, 0.05, 0.5, 0.4])
    keep = torch.tensor([0, 2, 4, 6])
    recycled, expected = slow_recycle(x, keep, scores, 0.3)
    assert recycled == [8, 9]  # 6 deleted -> int(6 * 0.3) + 1 = 2 recycled: 8 (0.5) and 9 (0.4)
    torch.testing.assert_close(recycle(x, keep, scores, 0.3), expected)
    assert recycle(x, torch.arange(10), scores, 0.3) is None  # nothing deleted
    assert recycle(x, keep[:0], scores, 0.3) is None  # withdrawal: nothing to merge into


@pytest.mark.parametrize(("n", "n_keep"), [(576, 64), (1029, 300), (144, 143)])
def test_sparsevlm_recycling_with_ties_at_scale(n, n_keep):
    """Duplicate tokens (equal cosines) and quantised scores (equal ranks): ties go to the lowest index."""
    g = torch.Generator().manual_seed(n)
    base = torch.randn(6, 16, generator=g)
    x = base[torch.randint(0, 6, (n,), generator=g)] + 0.1 * torch.randn(n, 16, generator=g)
    x[::7] = base[1]
    scores = torch.randint(0, 4, (n,), generator=g).float()
    keep = torch.randperm(n, generator=g)[:n_keep].sort().values
    _, expected = slow_recycle(x, keep, scores, 0.3)
    torch.testing.assert_close(recycle(x, keep, scores, 0.3), expected)


def test_sparsevlm_recycled_features_reach_the_next_layer(eager_llava):
    model, inputs = eager_llava
    few_summary, few = run(model, get("sparsevlm", recycle_share=0.0), 0.667, inputs)  # int(0 * n) + 1: one token
    many_summary, many = run(model, get("sparsevlm", recycle_share=1.0), 0.667, inputs)
    assert few_summary["stages"][0] == many_summary["stages"][0]  # the same first selection ...
    assert not torch.allclose(few.logits, many.logits)  # ... with different merged features
