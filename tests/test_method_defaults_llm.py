"""Every default parameter of the intra-LLM and hybrid methods, pinned to its source (one row per method).

A changed, added or removed default fails here, and the row's comment says where the value comes from. The
second table pins what the defaults resolve to on a model (layers scaled by depth, pivot counts, counts)."""

from __future__ import annotations

import pytest

from unipb_core.pruning import get

DEFAULTS = {
    # pkunlp-icler/FastV, llava-hf/.../modeling_llama.py: K = 2 (paper, "after layer 2"); the score is the LAST
    # token's row of layer K-1's head-mean map (last_layer_attention_avg[-1]); round(N * (1 - r)) kept.
    "fastv": {"layer": 2, "queries": "last", "variant": "authors"},
    # ZichenWen1/DART, scripts/v1_5/eval/*.sh: --pruned_layer 2 --pivot_image_token 4 --pivot_text_token 4
    # (None resolves to 4 + 4, or 10 + 5 for the study's DART_IntraLLM.py); budget "fixed" = the comparison's
    # exact count, "adaptive" = the authors' pivots + pivots * (budget // pivots).
    "dart": {"layer": 2, "n_visual_pivots": None, "n_text_pivots": None, "budget": "fixed", "variant": "authors"},
    # Cooperx521/PyramidDrop, scripts/v1_5/pdrop_eval/*.sh: --layer_list [8,16,24] (None: scaled by depth);
    # lam None = solved for the layer-averaged ratio (the authors' image_token_ratio_list 0.5/0.25/0.125 = lam 0.5).
    "pdrop": {"layers": None, "lam": None, "variant": "authors"},
    # ywh187/FitPrune, modeling_llama.py delete_scheme: deletions from layer 0's output on (None resolves to
    # K = 1; 2 for the study's one-shot FitPrune_IntraLLM.py).
    "fitprune": {"start": None, "variant": "authors"},
    # lzhxmu/VTW, VTW.py temp_cache.k = 15 on LLaVA-1.5-7B; None = K from the ratio (the comparison's budget).
    "vtw": {"layer": None},
    # Gumpest/SparseVLMs, modelling_sparse_llama.py: pruning_loc [2, 6, 15] (None: scaled by depth);
    # int(0.3 * deleted) + 1 recycled ("Top 30%").
    "sparsevlm": {"layers": None, "recycle_share": 0.3},
    # liuting20/MustDrop, clip_encoder.py: keep_rate 0.08, conditional_pooling(..., 0.8, (3, 3)); score.py
    # thresholds 0.001 (66.7 %); merge_share 0.25 is this project's fixed merge budget (docs/methods.md).
    "mustdrop": {
        "layer": None,
        "merge_share": 0.25,
        "window": 3,
        "key_share": 0.08,
        "global_thr": 0.001,
        "individual_thr": 0.001,
    },  # fmt: skip
    # UniPruneBench methods/Random_IntraLLM.py with layer_prune.DEFAULT_GENERIC_PRUNE_LAYER = 2 (variant "study":
    # its int() count).
    "random_intra": {"layer": 2, "variant": "authors"},
}


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_default_parameters(name):
    assert get(name).params() == DEFAULTS[name]


def stages(name, n=576, ratio=0.778, layers=32, **params):
    return [(s.layer, s.n_keep) for s in get(name, **params).plan(n, ratio, layers)]


RESOLVED = [
    # FastV: one stage at K = 2, round(576 * 0.222) = 128; the study: int() = 127.
    ("fastv", {}, [(2, 128)]),
    ("fastv", {"variant": "study"}, [(2, 127)]),
    # DART: exactly 128; adaptive: 4 + 8 * (128 // 8) = 132 (the authors' over-keep); study: 10 + 15 * (127 // 15).
    ("dart", {}, [(2, 128)]),
    ("dart", {"budget": "adaptive"}, [(2, 132)]),
    ("dart", {"variant": "study"}, [(2, 130)]),
    # PDrop: [8, 16, 24] on 32 layers; lam 0.5: int(576 * 0.5 ** j) = 288 / 144 / 72.
    ("pdrop", {"lam": 0.5}, [(8, 288), (16, 144), (24, 72)]),
    # FitPrune study: one shot at layer 2, int(576 * 0.222) = 127 (the LOWEST scores).
    ("fitprune", {"variant": "study"}, [(2, 127)]),
    # VTW: K = round(32 * 0.222) = 7 from the ratio; the authors' K = 15 on request.
    ("vtw", {}, [(7, 0)]),
    ("vtw", {"layer": 15}, [(15, 0)]),
    ("random_intra", {}, [(2, 128)]),
    ("random_intra", {"variant": "study"}, [(2, 127)]),
]


@pytest.mark.parametrize(("name", "params", "expected"), RESOLVED)
def test_resolved_defaults_on_a_32_layer_model(name, params, expected):
    assert stages(name, **params) == expected


def test_resolved_layers_by_depth():
    assert [k for k, _ in stages("pdrop")] == [8, 16, 24]
    assert [k for k, _ in stages("pdrop", layers=28)] == [7, 14, 21]
    assert [k for k, _ in stages("pdrop", layers=28, variant="study")] == [6, 12, 18]
    assert [k for k, _ in stages("fitprune")] == list(range(1, 32))
    assert [k for k, _ in stages("sparsevlm")] == [3, 7, 16]  # pruned after layers 2, 6, 15
    assert [k for k, _ in stages("mustdrop")] == [None, 3]  # filtered after layer 2
    assert get("dart").pivots() == (4, 4) and get("dart", variant="study").pivots() == (10, 5)
    assert get("fitprune").first_layer() == 1 and get("fitprune", variant="study").first_layer() == 2


def test_study_count_is_int_of_the_studys_keep_ratio():
    """The study sets KEEP_RATIO = 0.333 / 0.222 / 0.111 and keeps int(N * KEEP_RATIO): 333 of 1000 tokens at
    66.7 %, where int(1000 * (1 - 0.667)) would give 332 (float 0.33299999999999996)."""
    from unipb_core.pruning.study import study_count

    assert [study_count(1000, r) for r in (0.667, 0.778, 0.889)] == [333, 222, 111]
    assert [study_count(144, r) for r in (0.667, 0.778, 0.889)] == [47, 31, 15]
    assert stages("fastv", n=1000, ratio=0.667, variant="study") == [(2, 333)]
    assert stages("random_intra", n=500, ratio=0.778, variant="study") == [(2, 111)]
