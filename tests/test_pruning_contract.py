"""The pruning contract over the whole registry: every registered method x each of its variants x the three tiny
families x the study's ratios (and 0). A new method is covered by registering it.

Checks (``pruning_invariants.check_invariants``): ratio 0 gives logits identical to the stock model; each stage
keeps exactly its planned count, sorted unique visual indices, every text token; hooks leave nothing behind;
cached decoding equals a teacher-forced forward; the seed decides the selection. On top: a single-stage method
keeps exactly 48 / 32 / 16 of the 144 visual tokens at 66.7 / 77.8 / 88.9 % (its default variant).
"""

from __future__ import annotations

import pytest
from conftest import draw_image, tiny_model
from pruning_invariants import PROMPT, check_invariants

from unipb_core.pruning import available, get, method_class
from unipb_core.pruning.base import AUTHORS

RATIOS = (0.0, 0.667, 0.778, 0.889)
KEPT_OF_144 = {0.667: 48, 0.778: 32, 0.889: 16}  # round(144 * (1 - ratio)), the study's 192/128/64 of 576 scaled


def registry_cases() -> list:
    return [
        pytest.param(name, variant, id=f"{name}-{variant}")
        for name in available()
        for variant in method_class(name).variants
    ]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run faster on one thread


_INPUTS: dict = {}


def family_inputs(model):
    """The prompt's inputs, built once per family for the whole session (they are never mutated)."""
    if model.family not in _INPUTS:
        _INPUTS[model.family] = model.build_inputs([draw_image()], PROMPT)
    return _INPUTS[model.family]


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize(("method_name", "variant"), registry_cases())
def test_contract(family, tiny_cache, method_name, variant, ratio):
    model = tiny_model(family)
    params = {} if variant == AUTHORS else {"variant": variant}
    summary = check_invariants(model, method_name, ratio, family_inputs(model), params)
    assert summary["n_visual"] == 144
    stages = get(method_name, **params).plan(144, ratio, model.num_layers)
    if variant == AUTHORS and ratio > 0 and len(stages) == 1 and stages[0].n_keep > 0:
        assert [s["n_out"] for s in summary["stages"]] == [KEPT_OF_144[ratio]]


def test_every_variant_is_accepted_and_recorded():
    """Each declared variant builds, is a parameter (so it reaches the config hash), and unknown ones are refused."""
    for name in available():
        cls = method_class(name)
        assert cls.variants[0] == AUTHORS
        for variant in cls.variants[1:]:
            assert get(name, variant=variant).params()["variant"] == variant
        if len(cls.variants) > 1:
            with pytest.raises(ValueError, match=f"{name}.*variant must be one of"):
                get(name, variant="paper")


def test_the_count_pin_reaches_the_single_stage_methods():
    """The 48/32/16 pin above applies to every method whose default plan is one stage that keeps tokens; make sure
    that is not an empty set by accident (a pre-LLM, an intra-LLM and a baseline method at least)."""
    single = {
        name for name in available() if [s.n_keep > 0 for s in get(name).plan(144, 0.778, 8)] == [True]
    }  # fmt: skip
    assert {"divprune", "fastv", "dart", "random_pre", "random_intra"} <= single
