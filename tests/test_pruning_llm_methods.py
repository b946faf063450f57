"""LLM-side methods (FastV, PDrop, FitPrune, VTW, DART): layer-averaged schedules, plans, and SDPA == eager
selections. The contract is in test_pruning_contract.py, fidelity to the authors' code in test_fidelity_llm.py."""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import tiny_model
from pruning_invariants import PROMPT, check_cached_equals_teacher_forced, logits

from unipb_core.pruning import PruningEngine, get
from unipb_core.pruning.schedule import geometric_counts, layer_mean, reachable_mean

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
@pytest.mark.parametrize("method_name", SCHEDULED)
def test_layer_averaged_budget(model, inputs, method_name, ratio):
    """Schedules hit the layer-averaged target (the contract matrix checks the per-stage counts)."""
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
    pdrop = get("pdrop")  # the authors' [8, 16, 24] of 32
    assert [s.layer for s in pdrop.plan(576, 0.5, 32)] == [8, 16, 24]
    assert [s.layer for s in pdrop.plan(576, 0.5, 28)] == [7, 14, 21]
    assert [s.layer for s in pdrop.plan(144, 0.5, 8)] == [2, 4, 6]
    study = get("pdrop", variant="study")  # the study's (6, 12, 18) of 28
    assert [s.layer for s in study.plan(576, 0.5, 28)] == [6, 12, 18]
    assert [s.layer for s in study.plan(144, 0.5, 8)] == [2, 3, 5]


def test_pdrop_counts_authors_lam_and_study_chain():
    # lam=0.5: the authors' int(N * 0.5 ** j) from the original N, whatever the ratio.
    assert [s.n_keep for s in get("pdrop", lam=0.5).plan(576, 0.889, 32)] == [288, 144, 72]
    # The study chains int(n * keep_ratio) on the tokens left: 576 -> 191 -> 63 -> 20 at 66.7 %.
    assert [s.n_keep for s in get("pdrop", variant="study").plan(576, 0.667, 28)] == [191, 63, 20]


def test_fitprune_plans():
    assert [s.layer for s in get("fitprune").plan(144, 0.5, 8)] == list(range(1, 8))  # from layer 0's output on
    study = get("fitprune", variant="study").plan(144, 0.667, 8)
    assert [(s.layer, s.n_keep) for s in study] == [(2, 47)]  # one shot at layer 2, int(144 * 0.333)


def test_vtw_fixed_layer():
    vtw = get("vtw", layer=15)  # the authors' K on LLaVA-1.5-7B
    assert [(s.layer, s.n_keep) for s in vtw.plan(576, 0.778, 32)] == [(15, 0)]
    assert [(s.layer, s.n_keep) for s in vtw.plan(576, 0.0, 32)] == [(31, 576)]  # ratio 0 stays a no-op
    with pytest.raises(ValueError, match="vtw: layers"):
        get("vtw", layer=40).plan(576, 0.5, 32)


def test_vtw_layer_from_ratio():
    vtw = get("vtw")
    assert [(s.layer, s.n_keep) for s in vtw.plan(576, 0.889, 32)] == [(4, 0)]  # round(32 * 0.111)
    assert [(s.layer, s.n_keep) for s in vtw.plan(576, 0.667, 32)] == [(11, 0)]
    assert [(s.layer, s.n_keep) for s in vtw.plan(576, 0.99, 32)] == [(1, 0)]  # clamped
    assert [(s.layer, s.n_keep) for s in vtw.plan(576, 0.0, 32)] == [(31, 576)]  # no-op


# ---------------------------------------------------------------- SDPA == eager


@pytest.mark.parametrize("variant", ["authors", "study"])
@pytest.mark.parametrize("method_name", ATTENTION_SCORED)
def test_same_selection_under_sdpa_and_eager(family, image, method_name, variant):
    """Same kept tokens and the same logits under SDPA (no mask: causal in sequence order) and eager (a 4-D mask
    gathered by the engine), also when the study's variants hand layer K the tokens in score order."""
    sdpa, eager = tiny_model(family), tiny_model(family, attn_implementation="eager")
    inputs = sdpa.build_inputs([image], PROMPT)
    kept, out = [], []
    for m in (sdpa, eager):
        with PruningEngine(m, get(method_name, variant=variant), 0.667, seed=0) as engine:
            out.append(logits(m, inputs))
        kept.append([s["kept"] for s in engine.summary()["stages"]])
    assert kept[0] == kept[1]
    torch.testing.assert_close(out[0], out[1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("method_name", ["fastv", "pdrop", "fitprune"])
@pytest.mark.parametrize("family_name", ["llava", "internvl"])
def test_study_order_with_contiguous_positions_decodes_exactly(family_name, image, method_name):
    """The study's InternVL setting: tokens enter layer K in score order AND positions are renumbered; cached
    decoding still equals one teacher-forced forward over the same selection."""
    model = tiny_model(family_name)
    inputs = model.build_inputs([image], PROMPT)
    check_cached_equals_teacher_forced(
        model, method_name, 0.778, inputs, params={"variant": "study"}, positions="contiguous"
    )
