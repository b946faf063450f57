"""Fidelity of the vision-side (pre-LLM) methods to their authors' released code.

Each ``slow_*`` function is a plain transcription of the released rule (float64 Python loops over
lists; torch only builds the float64 cosine matrices), written from the file named in its docstring.
The methods must keep exactly the same tokens (and merged features within float tolerance) on
hand-built cases with answers worked out by hand and on seeded random inputs at N = 576 / 256 / 144.
The "sees a wrong rule" tests compare raw scores and check that the inputs separate each component of
a rule (a mutated rule gives a different answer on them), so a silent change of a rule fails here.
"""

from __future__ import annotations

import math

import pytest
import torch

from unipb_core.models.vision_attention import VisionAttention
from unipb_core.pruning import Stage, get
from unipb_core.pruning.context import PruneContext
from unipb_core.pruning.gprune import gprune_scores

SIZES = (576, 256, 144)
RATIOS = (0.667, 0.778, 0.889)


def make_ctx(x, n_keep, scores=None, keys=None):
    n = x.shape[0]
    vision = {}
    if scores is not None:
        attention = VisionAttention(scores, keys if keys is not None else x, torch.arange(n).unsqueeze(1))
        vision["encoder_attention"] = lambda: attention
    side = math.isqrt(n)
    return PruneContext(
        stage=Stage("pre", None, n_keep), family="llava", visual=x, text=x[:0],
        visual_positions=torch.arange(n), text_positions=torch.arange(0), visual_origin=torch.arange(n),
        grids=[(side, side)] if side * side == n else [(1, n)], generator=torch.Generator().manual_seed(0),
        num_layers=2, vision=vision,
    )  # fmt: skip


def n_keep(n, ratio):
    return round(n * (1 - ratio))


def clustered(n, d=32, clusters=24, noise=0.6, seed=0):
    """Tokens around a few directions (so similarity graphs have edges), like patches of one image."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, d, generator=g)
    owner = torch.randint(0, clusters, (n,), generator=g)
    scale = 0.5 + torch.rand(n, 1, generator=g)  # varied norms: G-Prune's propagated mass is norm-weighted
    return (centres[owner] + noise * torch.randn(n, d, generator=g)) * scale


def cls_attention(n, seed=0):
    """A [CLS]-attention-like distribution: mostly flat, a heavy tail of outliers (as CLIP's)."""
    g = torch.Generator().manual_seed(seed + 1000)
    logits = torch.randn(n, generator=g) + 4.0 * (torch.rand(n, generator=g) < 0.06)
    return torch.softmax(logits, 0)


def encoder_keys(x, seed=0):
    g = torch.Generator().manual_seed(seed + 2000)
    return x @ torch.randn(x.shape[1], 24, generator=g) + 0.3 * torch.randn(x.shape[0], 24, generator=g)


def cos64(x):
    """Float64 cosine matrix as nested lists."""
    x = x.double()
    xn = x / x.norm(dim=1, keepdim=True)
    return (xn @ xn.T).tolist()


def ranked(values, k=None):
    """Indices by descending value, ties to the lowest index (the rule these methods document)."""
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))
    return order if k is None else order[:k]


# ---------------------------------------------------------------------------- DivPrune
def slow_divprune(x, k):
    """vbdi/divprune LLaVA/llava/model/llava_arch.py ``DivPrune``: float64 transcription."""
    n = x.shape[0]
    dist = [[1.0 - c for c in row] for row in cos64(x)]
    chosen = []
    for i in range(k):
        if i == 0:  # topk(m2, 2, dim=0, largest=False).values[1, :]: each column's second-smallest entry
            scores = [sorted(dist[r][j] for r in range(n))[1] for j in range(n)]
        else:  # min over the selected rows, for every column
            scores = [min(dist[r][j] for r in chosen) for j in range(n)]
        chosen.append(max(range(n), key=lambda j: (scores[j], -j)))  # argmax: first maximum
    return sorted(chosen)


def test_divprune_by_hand():
    angles = torch.tensor([0.0, 10.0, 90.0, 180.0]) * math.pi / 180
    x = torch.stack([angles.cos(), angles.sin()], 1)
    # Nearest-neighbour distances 0.015, 0.015, 0.826, 1.0 -> 180 deg first; then 0 deg (distance 2).
    assert get("divprune").select(make_ctx(x, 2)).keep.tolist() == [0, 3]
    assert get("divprune").select(make_ctx(x, 3)).keep.tolist() == [0, 2, 3]


def test_divprune_ties_go_to_lowest_index():
    x = torch.tensor([[1.0, 0], [0, 1.0], [-1.0, 0], [0, -1.0]])  # every nearest neighbour at distance 1
    assert get("divprune").select(make_ctx(x, 1)).keep.tolist() == [0]


@pytest.mark.parametrize("n", SIZES)
def test_divprune_matches_released_rule(n):
    for seed, ratio in zip(range(3), RATIOS, strict=True):
        x = clustered(n, seed=seed)
        k = n_keep(n, ratio)
        keep = get("divprune").select(make_ctx(x, k)).keep.tolist()
        assert keep == slow_divprune(x, k)
        assert keep != list(range(k))  # a rule that keeps the first k tokens fails here


# ---------------------------------------------------------------------------- G-Prune
def slow_gprune_scores(x, thr=0.5, temp=0.03, steps=5, self_in_degree=True):
    """TianfanPeng/VLMUniPruneBench methods/GPrune_PreLLM.py ``select_important_features``: float64."""
    n = x.shape[0]
    a = [[(c if c >= thr else 0.0) / temp for c in row] for row in cos64(x)]
    a = [[-5000.0 if abs(v) < 1e-6 else v for v in row] for row in a]
    soft = []
    for row in a:
        m = max(row)
        e = [math.exp(v - m) for v in row]
        soft.append([v / sum(e) for v in e])
    degree = [sum(1 for v in row if v > 0) for row in soft]
    if not self_in_degree:  # the old rule: other neighbours only (kept to show the inputs separate the rules)
        degree = [max(1, d - 1) for d in degree]
    w = [float(v) for v in x.double().norm(dim=1)]
    for _ in range(steps):  # W @ A^steps, one vector-matrix product at a time
        w = [sum(w[i] * soft[i][j] for i in range(n)) for j in range(n)]
    return [w[j] / degree[j] for j in range(n)]


def test_gprune_degree_counts_the_token_itself():
    x = torch.tensor([[1.0, 0, 0], [1.0, 0.1, 0], [0, 0, 0.8]])
    # Tokens 0 and 1 are one cluster (degree 2 each, mass ~2.0 shared), token 2 alone (degree 1, mass 0.8).
    assert get("gprune").select(make_ctx(x, 1)).keep.tolist() == [2]
    torch.testing.assert_close(
        gprune_scores(x, 0.5, 0.03, 5).double(),
        torch.tensor(slow_gprune_scores(x), dtype=torch.float64),
        rtol=1e-5,
        atol=1e-6,
    )


def _graph_margin(x, thr=0.5):
    """Distance of the nearest cosine to the threshold (float32 and float64 agree on every edge past 1e-5)."""
    sim = torch.tensor(cos64(x))
    return float((sim - thr).abs().min())


@pytest.mark.parametrize("n", SIZES)
def test_gprune_matches_released_rule(n):
    x = clustered(n, d=12, clusters=10, noise=0.35, seed=1)
    assert _graph_margin(x) > 1e-5
    slow = slow_gprune_scores(x)
    torch.testing.assert_close(
        gprune_scores(x, 0.5, 0.03, 5).double(), torch.tensor(slow, dtype=torch.float64), rtol=1e-4, atol=1e-7
    )
    for ratio in RATIOS:
        k = n_keep(n, ratio)
        assert get("gprune").select(make_ctx(x, k)).keep.tolist() == sorted(ranked(slow, k))


def test_gprune_inputs_separate_every_component():
    """Propagation, temperature, threshold and the degree rule each change the kept set on this input."""
    n = 144
    x = clustered(n, d=12, clusters=10, noise=0.35, seed=1)
    k = n_keep(n, 0.778)
    kept = sorted(ranked(slow_gprune_scores(x), k))
    for mutated in (
        dict(steps=0),
        dict(steps=1),
        dict(steps=4),
        dict(steps=6),
        dict(temp=0.3),
        dict(temp=0.04),
        dict(thr=0.6),
        dict(self_in_degree=False),
    ):
        assert sorted(ranked(slow_gprune_scores(x, **mutated), k)) != kept, mutated
    assert get("gprune").select(make_ctx(x, k)).keep.tolist() == kept


def test_gprune_study_variant_truncates_the_count():
    assert get("gprune").plan(144, 0.667, 2)[0].n_keep == 48
    study = get("gprune", variant="study")
    assert [study.plan(144, r, 2)[0].n_keep for r in RATIOS] == [47, 31, 15]  # int(), as the study's code
    assert study.plan(576, 0.667, 2)[0].n_keep == 191
    assert study.plan(4, 0.9, 2)[0].n_keep == 1  # max(1, ...)
    with pytest.raises(ValueError, match="variant must be one of authors, study"):
        get("gprune", variant="paper")


# ---------------------------------------------------------------------------- PruMerge / PruMerge+
def slow_iqr_outliers(att):
    """clip_encoder.py ``outlier_dectection``: np.percentile (linear) quartiles, ``a > Q3 + 1.5 IQR``."""
    s = sorted(att)

    def percentile(p):
        pos = p * (len(s) - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, len(s) - 1)
        return s[lo] + (s[hi] - s[lo]) * (pos - lo)

    q1, q3 = percentile(0.25), percentile(0.75)
    return [i for i in ranked(att) if att[i] > q3 + 1.5 * (q3 - q1)]  # descending attention, as topk


def slow_prumerge_merge(x, keys, att, kept, k=32):
    """clip_encoder.py ``token_prune_merge_advanced``: each kept token + its k most key-similar others
    (kept or not) weighted by attention; the extra token = attention-weighted sum of the pruned tokens.
    Returns ``{index: feature}`` for the kept tokens and the extra token's feature."""
    n = x.shape[0]
    sim = cos64(keys)
    xs = x.double().tolist()
    att = [float(a) for a in att]
    merged = {}
    for i in kept:
        others = sorted((j for j in range(n) if j != i), key=lambda j: (-sim[i][j], j))[:k]
        merged[i] = [xs[i][c] + sum(att[j] * xs[j][c] for j in others) for c in range(x.shape[1])]
    pruned = [j for j in range(n) if j not in kept]
    extra = [sum(att[j] * xs[j][c] for j in pruned) for c in range(x.shape[1])]
    return merged, extra, pruned


def as_selection(merged, extra, pruned):
    """The engine's form: the extra token sits in the last pruned slot; indices sorted."""
    rows = dict(merged)
    if pruned:
        rows[pruned[-1]] = extra
    keep = sorted(rows)
    return keep, torch.tensor([rows[i] for i in keep], dtype=torch.float64)


def slow_prumerge_plus_released(att):
    """clip_encoder.py ``token_prune_merge_advanced_plus`` with ``if_adaptive=True``: outliers, then
    ``arange(0, N - 1, int(int(1 / rr) / 3))`` minus the outliers."""
    n = len(att)
    outliers = slow_iqr_outliers(att)
    rr = len(outliers) / n
    step = int(int(1 / rr) / 3)
    return outliers + [p for p in range(0, n - 1, step) if p not in outliers]


def slow_prumerge_plus_fixed(att, budget):
    """The documented fixed-budget rule on top of the released one (see prumerge_plus.py)."""
    n = len(att)
    outliers = slow_iqr_outliers(att)
    if len(outliers) >= budget:
        return ranked(att, budget)
    step = max(1, int(int(1 / (max(len(outliers), 1) / n)) / 3))
    while True:
        samples = [p for p in range(0, n - 1, step) if p not in outliers]
        if len(outliers) + len(samples) <= budget:
            break
        step += 1
    chosen = outliers + samples
    return chosen + [i for i in ranked(att) if i not in chosen][: budget - len(chosen)]


def test_prumerge_by_hand():
    x = torch.tensor([[1.0], [2.0], [3.0], [4.0], [5.0]])
    att = torch.tensor([0.1, 0.4, 0.2, 0.05, 0.25])
    sel = get("prumerge").select(make_ctx(x, 3, scores=att, keys=x))
    # Budget 3 = 2 kept (tokens 1 and 4 by attention) + the extra token in the last pruned slot (3).
    # Each kept token takes every other token (k = 32 > 4): 2 + (.1*1 + .2*3 + .05*4 + .25*5) = 4.15,
    # 5 + (.1*1 + .4*2 + .2*3 + .05*4) = 6.7; extra = .1*1 + .2*3 + .05*4 = 0.9.
    assert sel.keep.tolist() == [1, 3, 4]
    torch.testing.assert_close(sel.merged[:, 0], torch.tensor([4.15, 0.9, 6.7]))


def test_prumerge_plus_by_hand():
    att = torch.full((24,), 0.01)
    att[5], att[11] = 0.5, 0.3  # the only IQR outliers (Q1 = Q3 = 0.01)
    x = torch.randn(24, 4, generator=torch.Generator().manual_seed(6))
    method = get("prumerge_plus")
    # Released: rr = 2/24, stride int(12 / 3) = 4 -> 0, 4, 8, 12, 16, 20; + extra token = 9 tokens.
    assert method.select(make_ctx(x, 9, scores=att, keys=x)).keep.tolist() == [0, 4, 5, 8, 11, 12, 16, 20, 23]
    # Budget 6 (5 + extra): strides 4..7 give 4+ samples; stride 8 gives 0, 8, 16.
    assert method.select(make_ctx(x, 6, scores=att, keys=x)).keep.tolist() == [0, 5, 8, 11, 16, 23]
    # Budget 12 (11 + extra): 2 outliers + 6 samples + 3 by attention (all tied: lowest index).
    assert method.select(make_ctx(x, 12, scores=att, keys=x)).keep.tolist() == [0, 1, 2, 3, 4, 5, 8, 11, 12, 16, 20, 23]
    # More outliers than budget: the top ones by attention (budget 2 = token 5 + the extra token).
    assert method.select(make_ctx(x, 2, scores=att, keys=x)).keep.tolist() == [5, 23]
    adaptive = get("prumerge_plus", budget="adaptive").select(make_ctx(x, 3, scores=att, keys=x))
    assert adaptive.keep.tolist() == [0, 4, 5, 8, 11, 12, 16, 20, 23]  # the released count, whatever n_keep


def _prumerge_case(n, seed):
    x = clustered(n, seed=seed)
    return x, encoder_keys(x, seed), cls_attention(n, seed)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", ("prumerge", "prumerge_plus"))
def test_prumerge_matches_released_rule(name, n):
    for seed, ratio in enumerate(RATIOS):
        x, keys, att = _prumerge_case(n, seed)
        k = n_keep(n, ratio)
        a = att.tolist()
        kept = ranked(a, k - 1) if name == "prumerge" else slow_prumerge_plus_fixed(a, k - 1)
        expected_keep, expected = as_selection(*slow_prumerge_merge(x, keys, a, kept))
        sel = get(name).select(make_ctx(x, k, scores=att, keys=keys))
        assert sel.keep.tolist() == expected_keep
        torch.testing.assert_close(sel.merged.double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", SIZES)
def test_prumerge_adaptive_budget_is_the_released_count(n):
    x, keys, att = _prumerge_case(n, 1)
    a = att.tolist()
    outliers = slow_iqr_outliers(a)
    sel = get("prumerge", budget="adaptive").select(make_ctx(x, 1, scores=att, keys=keys))
    assert sel.keep.tolist() == as_selection(*slow_prumerge_merge(x, keys, a, outliers))[0]
    assert sel.keep.numel() == len(outliers) + 1
    released = slow_prumerge_plus_released(a)
    expected_keep, expected = as_selection(*slow_prumerge_merge(x, keys, a, released))
    sel = get("prumerge_plus", budget="adaptive").select(make_ctx(x, 1, scores=att, keys=keys))
    assert sel.keep.tolist() == expected_keep
    torch.testing.assert_close(sel.merged.double(), expected, rtol=1e-5, atol=1e-5)
    # With the released count as the budget, the fixed rule keeps the released set.
    fixed = get("prumerge_plus").select(make_ctx(x, len(released) + 1, scores=att, keys=keys))
    assert fixed.keep.tolist() == expected_keep


def test_prumerge_adaptive_budget_is_refused_by_the_engine_plan():
    for name in ("prumerge", "prumerge_plus"):
        with pytest.raises(ValueError, match="budget='adaptive' keeps a data-dependent number"):
            get(name, budget="adaptive").plan(144, 0.889, 8)
        with pytest.raises(ValueError, match="budget must be one of fixed, adaptive"):
            get(name, budget="iqr")


def test_prumerge_inputs_separate_every_component():
    """Neighbour count, extra token and weights each change the merged features on this input."""
    n = 144
    x, keys, att = _prumerge_case(n, 0)
    k = n_keep(n, 0.778)
    a = att.tolist()
    sel = get("prumerge").select(make_ctx(x, k, scores=att, keys=keys))
    kept = ranked(a, k - 1)
    keep, right = as_selection(*slow_prumerge_merge(x, keys, a, kept))
    for wrong in (
        as_selection(*slow_prumerge_merge(x, keys, a, kept, k=8))[1],  # neighbours scaled with N (32 * 144 / 576)
        as_selection(*slow_prumerge_merge(x, keys, [1.0] * n, kept))[1],  # unweighted sums
    ):
        assert not torch.allclose(wrong, right, rtol=1e-3)
    assert sel.keep.tolist() == keep and sel.keep.tolist() != sorted(ranked(a, k))  # the extra token's slot
    torch.testing.assert_close(sel.merged.double(), right, rtol=1e-5, atol=1e-5)


def test_prumerge_plus_stride_is_the_released_one():
    """At the released count, an evenly spaced fill of the same size keeps a different set."""
    n = 576
    att = cls_attention(n, 3).tolist()
    released = slow_prumerge_plus_released(att)
    outliers = slow_iqr_outliers(att)
    others = [i for i in range(n) if i not in outliers]
    r = len(released) - len(outliers)
    even = outliers + [others[int((i + 0.5) * len(others) / r)] for i in range(r)]
    assert sorted(even) != sorted(released)
    assert sorted(slow_prumerge_plus_fixed(att, len(released))) == sorted(released)


def test_merging_methods_leave_tokens_alone_when_nothing_is_pruned():
    x, keys, att = _prumerge_case(16, 0)
    for name in ("prumerge", "prumerge_plus", "visionzip"):
        sel = get(name).select(make_ctx(x, 16, scores=att, keys=keys))
        assert sel.keep.tolist() == list(range(16)) and sel.merged is None


# ---------------------------------------------------------------------------- VisionZip
def slow_visionzip(x, keys, att, n_keep, share=54 / 64):
    """dvlab-research/VisionZip visionzip/clip_encoder.py ``CLIPVisionTower_VisionZip.forward`` (main.py:
    ``dominant_num = dominant - 1``), with the [CLS] slot given to one more contextual token."""
    n = x.shape[0]
    dominant_total = round(n_keep * share)  # counts [CLS]
    dominant = ranked(att, dominant_total - 1)
    contextual = n_keep - len(dominant)
    rest = [i for i in range(n) if i not in dominant]  # original order
    step = max(1, len(rest) // contextual)
    targets = [rest[p] for p in range(0, len(rest), step)][:contextual]
    sim = cos64(keys)
    xs = x.double().tolist()
    rows = {i: xs[i] for i in dominant}
    assigned = {t: [] for t in targets}
    for j in rest:
        if j not in assigned:
            assigned[max(targets, key=lambda t: (sim[j][t], -targets.index(t)))].append(j)
    for t in targets:
        group = assigned[t]
        mean = [sum(xs[j][c] for j in group) / max(1, len(group)) for c in range(x.shape[1])]
        rows[t] = [xs[t][c] + mean[c] for c in range(x.shape[1])]
    keep = sorted(rows)
    return keep, torch.tensor([rows[i] for i in keep], dtype=torch.float64)


def test_visionzip_by_hand():
    att = torch.tensor([0.0, 0.9, 0.0, 0.0, 0.8, 0.0, 0.0, 0.0, 0.0, 0.0])
    keys = torch.tensor([[1.0, 0]] * 5 + [[0, 1.0]] * 5)  # tokens 0-4 point one way, 5-9 the other
    x = torch.arange(10.0).unsqueeze(1)
    sel = get("visionzip", dominant_share=0.5).select(make_ctx(x, 4, scores=att, keys=keys))
    # D = 2 dominant counting [CLS] -> 1 patch (token 1); C = 3. Rest [0, 2..9], step 9 // 3 = 3 -> targets
    # 0, 4, 7. 2, 3 -> target 0 (first maximum: 0 and 4 share a key); 5, 6, 8, 9 -> target 7.
    assert sel.keep.tolist() == [0, 1, 4, 7]
    assert sel.merged[:, 0].tolist() == [0 + (2 + 3) / 2, 1.0, 4.0, 7 + (5 + 6 + 8 + 9) / 4]


@pytest.mark.parametrize("n", SIZES)
def test_visionzip_matches_released_rule(n):
    for seed, ratio in enumerate(RATIOS):
        x, keys, att = _prumerge_case(n, seed)
        k = n_keep(n, ratio)
        expected_keep, expected = slow_visionzip(x, keys, att.tolist(), k)
        sel = get("visionzip").select(make_ctx(x, k, scores=att, keys=keys))
        assert sel.keep.tolist() == expected_keep
        torch.testing.assert_close(sel.merged.double(), expected, rtol=1e-5, atol=1e-5)


def test_visionzip_counts_cls_among_the_dominant_tokens():
    """At 64 tokens: 53 dominant patches + 11 contextual (the released 54 = [CLS] + 53 patches, and 10)."""
    n = 576
    x, keys, att = _prumerge_case(n, 2)
    sel = get("visionzip").select(make_ctx(x, 64, scores=att, keys=keys))
    unmerged = [i for row, i in enumerate(sel.keep.tolist()) if torch.equal(sel.merged[row], x[i])]
    assert unmerged == sorted(ranked(att.tolist(), 53))  # every contextual token absorbed others here
    assert sel.keep.numel() == 64


# ---------------------------------------------------------------------------- VisPruner
def slow_vispruner(x, att, n_keep, important_ratio=0.5, step=8):
    """Theia-4869/VisPruner llava/model/llava_arch.py ``encode_images``: float64 transcription, ties to the
    lower position (stable sorts); odd residual lengths: the even half has one more token."""
    n_imp = int(n_keep * important_ratio)
    order = ranked(att)
    important, residual = order[:n_imp], order[n_imp:]
    diverse = n_keep - n_imp
    sim = cos64(x)
    while diverse > 0:
        r = min(step, len(residual) - diverse)
        if r <= 0:
            break
        even, odd = residual[0::2], residual[1::2]
        best = [max(sim[e][o] for o in odd) for e in even]
        distinct = ranked(best)[r:]
        residual = [even[i] for i in distinct] + odd
    return sorted(important + (residual if diverse > 0 else []))


@pytest.mark.parametrize("n", SIZES)
def test_vispruner_matches_released_rule(n):
    for seed, ratio in enumerate(RATIOS):
        x, _, att = _prumerge_case(n, seed)
        k = n_keep(n, ratio)
        keep = get("vispruner").select(make_ctx(x, k, scores=att)).keep.tolist()
        assert keep == slow_vispruner(x, att.tolist(), k)
        assert keep != sorted(ranked(att.tolist(), k))  # the duplicate removal matters on these inputs


def test_vispruner_odd_lengths_and_small_steps():
    for seed, k in ((7, 4), (8, 5), (9, 1)):
        x = torch.randn(15, 4, generator=torch.Generator().manual_seed(seed))  # 15: odd residual lengths occur
        att = torch.softmax(torch.randn(15, generator=torch.Generator().manual_seed(seed + 10)), 0)
        sel = get("vispruner", step=2).select(make_ctx(x, k, scores=att))
        assert sel.keep.tolist() == slow_vispruner(x, att.tolist(), k, step=2)


def test_vispruner_ties_are_deterministic():
    """Equal attention: the lower index is more important; equal similarity: the lower position is dropped first."""
    x = torch.tensor([[1.0, 0.0]] * 8)  # every token identical: every similarity ties
    att = torch.full((8,), 1 / 8)
    sel = get("vispruner").select(make_ctx(x, 4, scores=att))
    # Important: 0, 1. Residual [2..7], 2 to keep: r = min(8, 4) drops every even (2, 4, 6) -> [3, 5, 7];
    # then even [3, 7], odd [5], r = 1: all tie, so 3 (the lower position) is dropped -> [7, 5].
    assert sel.keep.tolist() == slow_vispruner(x, att.tolist(), 4) == [0, 1, 5, 7]
