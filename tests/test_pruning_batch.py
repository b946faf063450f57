"""The pruning contract at batch size B: each sample's output in a batch equals its batch-1 output.

Every registered method (each variant) x the three tiny families, at B = 3 with unequal prompt lengths (so the
batch is left-padded) and unequal visual-token counts: LLaVA and InternVL get one sample with two images (288
visual tokens next to 144), Qwen2.5-VL gets three aspect ratios (dynamic resolution: 144, 130 and 135 tokens).
Compared: the greedy answer (``generate_batch``), the logits at the answer position and the kept tokens of every
stage. The stock model itself is not bit-exact at batch size B on CPU: a left-padded row differs from its
batch-1 run by up to ~5e-5 in the logits (about 1e-5 of their scale; eager attention too), so logits are
compared within 2e-4 and selections, counts and texts exactly.
"""

from __future__ import annotations

import pytest
import torch
from conftest import FAMILY_NAMES, draw_image, tiny_model

from unipb_core.pruning import PruningEngine, available, get, method_class
from unipb_core.pruning.base import AUTHORS

RATIO = 0.778
ATOL = 2e-4
_ITEMS: dict = {}
_SINGLE: dict = {}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run faster on one thread


def batch_items(family: str) -> list:
    """Three samples with unequal prompts and unequal visual-token counts."""
    if family not in _ITEMS:
        a, b, c = draw_image(1), draw_image(2), draw_image(3)
        if family == "qwen2_5_vl":
            second, third = [b.resize((336, 448))], [c.resize((448, 280))]
        else:
            second, third = [b, c], [c]
        _ITEMS[family] = [
            ([a], "What colour is the largest circle?"),
            (second, "How many?"),
            (third, "Describe the picture in one short sentence, please."),
        ]
    return _ITEMS[family]


def answer_logits(model, inputs) -> torch.Tensor:
    """Logits at the answer position; positions from the mask, as ``generate`` sets them."""
    kwargs = dict(inputs)
    if model.position_scheme == "rope1d":
        kwargs["position_ids"] = (inputs["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        return model.model(**kwargs).logits[:, -1]


def run(model, method_name, params, items, keys):
    inputs = model.build_batch(items)
    grids = model.batch_grids(inputs)
    if method_name is None:
        return model.generate_batch(inputs, max_new_tokens=4), answer_logits(model, inputs), None
    with PruningEngine(model, get(method_name, **params), RATIO, seed=0) as engine:
        engine.begin_batch(keys, grids=grids)
        generations = model.generate_batch(inputs, max_new_tokens=4)
        summaries = engine.summaries()
        engine.begin_batch(keys, grids=grids)
        logits = answer_logits(model, inputs)
        assert engine.summaries() == summaries
    return generations, logits, summaries


def cases() -> list:
    out = [pytest.param(None, AUTHORS, id="stock")]
    out += [pytest.param(n, v, id=f"{n}-{v}") for n in available() for v in method_class(n).variants]
    return out


@pytest.mark.parametrize("family_name", FAMILY_NAMES)
@pytest.mark.parametrize(("method_name", "variant"), cases())
def test_batch_equals_batch_one(tiny_cache, family_name, method_name, variant):
    model = tiny_model(family_name)
    params = {} if variant == AUTHORS else {"variant": variant}
    items = batch_items(family_name)
    keys = [f"sample-{i}" for i in range(len(items))]
    batched = run(model, method_name, params, items, keys)
    counts = set()
    for i, item in enumerate(items):
        key = (family_name, method_name, variant, i)
        if key not in _SINGLE:
            _SINGLE[key] = run(model, method_name, params, [item], [keys[i]])
        generation, logits, summaries = _SINGLE[key]
        assert batched[0][i] == generation[0], f"sample {i}: the batch answered differently"
        torch.testing.assert_close(batched[1][i], logits[0], atol=ATOL, rtol=0)
        if summaries is not None:
            assert batched[2][i] == summaries[0], f"sample {i}: the batch kept other tokens"
        counts.add(generation[0].n_visual)
    assert len(counts) > 1, "the batch must mix visual-token counts"


def unpadded_items(model) -> list:
    """Two samples of equal token length but unequal visual-token counts: the batch has no padding (the stock
    model then runs without a mask) until a stage keeps different counts."""
    if ("unpadded", model.family) not in _ITEMS:
        if model.family == "qwen2_5_vl":
            first, second = [draw_image(1)], [draw_image(2).resize((336, 448))]
        else:
            first, second = [draw_image(1), draw_image(2)], [draw_image(3)]
        text = "What colour is the largest circle?"
        target = model.build_inputs(first, text)["input_ids"].shape[1]
        padded = text
        while model.build_inputs(second, padded)["input_ids"].shape[1] < target:
            padded += " red"
        assert model.build_inputs(second, padded)["input_ids"].shape[1] == target
        _ITEMS[("unpadded", model.family)] = [(first, text), (second, padded)]
    return _ITEMS[("unpadded", model.family)]


@pytest.mark.parametrize("family_name", FAMILY_NAMES)
@pytest.mark.parametrize("method_name", available())
def test_an_unpadded_batch_with_unequal_visual_counts(tiny_cache, family_name, method_name):
    model = tiny_model(family_name)
    items = unpadded_items(model)
    keys = ["first", "second"]
    inputs = model.build_batch(items)
    assert bool(inputs["attention_mask"].all()), "the batch must need no padding"
    batched = run(model, method_name, {}, items, keys)
    for i, item in enumerate(items):
        generation, logits, summaries = run(model, method_name, {}, [item], [keys[i]])
        assert batched[0][i] == generation[0]
        torch.testing.assert_close(batched[1][i], logits[0], atol=ATOL, rtol=0)
        assert batched[2][i] == summaries[0]
    assert batched[0][0].n_visual != batched[0][1].n_visual


def test_batch_of_one_is_the_single_sample_path(image):
    """``build_batch`` of one sample is ``build_inputs``; ``generate`` refuses a batch (use ``generate_batch``)."""
    model = tiny_model("llava")
    one = model.build_batch([([image], "Why?")])
    assert torch.equal(one["input_ids"], model.build_inputs([image], "Why?")["input_ids"])
    two = model.build_batch([([image], "Why?"), ([image], "What is the colour of the big circle?")])
    assert two["attention_mask"][0, 0] == 0, "batches are left-padded"
    with pytest.raises(ValueError, match="generate_batch"):
        model.generate(two)
