"""Every default parameter of the vision-side (pre-LLM) methods, pinned to its source.

A default that changes silently changes every number a run reports; each row names the released file
its values come from, so a change here is a deliberate, reviewable edit. (Intra-LLM and hybrid rows:
``test_method_defaults_llm.py``.)
"""

from __future__ import annotations

import pytest

from unipb_core.pruning import get

# name: (category, stage kind, default parameters, variants, kept at 144 tokens for ratios 66.7 / 77.8 / 88.9 %)
DEFAULTS = {
    # vbdi/divprune LLaVA/llava/model/llava_arch.py `DivPrune`: no parameter; int(round(ratio * N)) kept.
    "divprune": ("vit", "pre", {}, ("authors",), (48, 32, 16)),
    # TianfanPeng/VLMUniPruneBench methods/GPrune_PreLLM.py env defaults SIMILARITY=0.5, TEMPERATURE=0.03,
    # ITERATE_NUM=5 (no authors' repository found); the study keeps int(r N), the authors' variant round().
    "gprune": (
        "vit",
        "pre",
        {"similarity_threshold": 0.5, "temperature": 0.03, "steps": 5, "variant": "authors"},
        ("authors", "study"),
        (48, 32, 16),
    ),
    # 42Shawn/LLaVA-PruMerge llava/model/multimodal_encoder/clip_encoder.py `token_prune_merge_advanced`:
    # topk(..., k=int(32)) neighbours; fixed budget = the if_adaptive=False path (budget="adaptive": IQR count).
    "prumerge": ("vit", "pre", {"k": 32, "budget": "fixed"}, ("authors",), (48, 32, 16)),
    # Same file, `token_prune_merge_advanced_plus`: the same 32 neighbours and extra token, stride samples.
    "prumerge_plus": ("vit", "pre", {"k": 32, "budget": "fixed"}, ("authors",), (48, 32, 16)),
    # dvlab-research/VisionZip README: visionzip(model, dominant=54, contextual=10) for 64 tokens, as a share.
    "visionzip": ("vit", "pre", {"dominant_share": 54 / 64}, ("authors",), (48, 32, 16)),
    # Theia-4869/VisPruner llava/eval/model_vqa_loader.py --important_ratio 0.5; llava/model/llava_arch.py
    # `encode_images`: r = min(8, R - T_div) duplicates dropped per round.
    "vispruner": ("vit", "pre", {"important_ratio": 0.5, "step": 8}, ("authors",), (48, 32, 16)),
    # Baselines without an authors' repository (this project's own rules; see docs/methods.md).
    "pool": ("vit", "pre", {}, ("authors",), (48, 32, 16)),
    "downsample": ("baseline", "pre", {}, ("authors",), (48, 32, 16)),
    # The study's Random-Pre (torch.randperm after the projector); seeded by the engine's generator here.
    "random_pre": ("baseline", "pre", {}, ("authors",), (48, 32, 16)),
}


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_defaults_are_pinned(name):
    category, stage_kind, params, variants, kept = DEFAULTS[name]
    method = get(name)
    assert (method.category, method.stage_kind) == (category, stage_kind)
    assert method.params() == params
    assert tuple(method.variants) == variants
    assert tuple(method.plan(144, r, 8)[0].n_keep for r in (0.667, 0.778, 0.889)) == kept
    assert all(len(method.plan(144, r, 8)) == 1 for r in (0.667, 0.778, 0.889))
