"""Decode modes (``models.decoding``): a static cache and the compiled decode step answer as the eager path does.

For every family: the stock model, a pre-LLM method (``random_pre``: a shorter sequence reaches the LLM), an
intra-LLM one (``fastv``: layers >= K cache only the kept tokens) and one with both (``sparsevlm``: a pre-LLM
stage and several intra-LLM levels), at batch size 1 and in a left-padded batch. Compared with the eager
(``DynamicCache``) generation: the tokens, and the logits of every step within ``atol``; on CPU (float32) a static
cache moves them by ~2e-5 (its attention runs over the whole fixed-width buffer, masked).

``graphs`` compiles the decode step (on CPU: inductor's C++ backend; on CUDA: CUDA graphs, what a GPU session of
this file exercises, since the tiny models load on the GPU there). It runs the stock model first: a step compiled
without hooks must not be replayed once the engine's hooks are installed. Each hook structure compiles its own
step (10-100 s here with a cold compile cache, under 20 s warm), so LLaVA runs all four and the other families
the stock model and ``sparsevlm``.
"""

from __future__ import annotations

import pytest
import torch
from conftest import FAMILY_NAMES, draw_image, tiny_model

from unipb_core.models.decoding import BUCKET, cache_width, check_mode, decoding
from unipb_core.pruning import PruningEngine, PruningError, get

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run faster on one thread

RATIO = 0.778
METHODS = (None, "random_pre", "fastv", "sparsevlm")
COMPILED = {"llava": METHODS, "internvl": (None, "sparsevlm"), "qwen2_5_vl": (None, "sparsevlm")}
NEW_TOKENS = 5


def tolerance(model) -> float:
    return 1e-4 if model.dtype == torch.float32 else 5e-2  # bf16 on a GPU: ~3 significant digits


def items(batch: int) -> list:
    prompts = ["What colour is the largest circle?", "How many?", "Describe the picture in one short sentence."]
    return [([draw_image(i + 1)], prompts[i]) for i in range(batch)]


def decode(model, method: str | None, inputs, grids, mode: str):
    """Greedy generation in decode ``mode``: ``(tokens [B, new], logits per step)``."""
    with decoding(mode, inputs["input_ids"].shape[1], NEW_TOKENS, model.device) as extra:
        kwargs = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, num_beams=1,
                      pad_token_id=model.tokenizer.pad_token_id, suppress_tokens=[model.image_token_id],
                      return_dict_in_generate=True, output_logits=True, **extra)  # fmt: skip
        with torch.inference_mode():
            if method is None:
                out = model.model.generate(**inputs, **kwargs)
            else:
                with PruningEngine(model, get(method), RATIO, seed=0) as engine:
                    engine.begin_batch([f"sample-{i}" for i in range(len(grids))], grids=grids)
                    out = model.model.generate(**inputs, **kwargs)
    return out.sequences[:, inputs["input_ids"].shape[1] :], torch.stack(out.logits, dim=1)


def assert_same_decoding(reference, other, atol: float) -> None:
    """Same tokens and logits within ``atol``, per sample, up to the first step whose top two logits of the
    reference are closer than ``2 atol`` (beyond a near-tie the two runs may rightly continue differently)."""
    (ref_tokens, ref_logits), (tokens, logits) = reference, other
    top2 = ref_logits.float().topk(2, dim=-1).values
    for b in range(ref_tokens.shape[0]):
        steps = next((t + 1 for t in range(ref_tokens.shape[1]) if top2[b, t, 0] - top2[b, t, 1] < 2 * atol),
                     ref_tokens.shape[1])  # fmt: skip
        assert torch.equal(tokens[b, :steps], ref_tokens[b, :steps]), f"sample {b}: the answer differs"
        torch.testing.assert_close(logits[b, :steps].float(), ref_logits[b, :steps].float(), atol=atol, rtol=0)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("family_name", FAMILY_NAMES)
def test_static_cache_decodes_as_the_eager_path(tiny_cache, family_name, batch):
    model = tiny_model(family_name)
    inputs = model.build_batch(items(batch))
    grids = model.batch_grids(inputs)
    for method in METHODS:
        eager = decode(model, method, inputs, grids, "eager")
        assert_same_decoding(eager, decode(model, method, inputs, grids, "static"), tolerance(model))


@pytest.mark.parametrize("family_name", FAMILY_NAMES)
def test_compiled_decode_step_decodes_as_the_eager_path(tiny_cache, family_name):
    model = tiny_model(family_name)
    inputs = model.build_batch(items(1))
    grids = model.batch_grids(inputs)
    for method in COMPILED[family_name]:  # the stock model first: its compiled step must not serve the engine's
        eager = decode(model, method, inputs, grids, "eager")
        assert_same_decoding(eager, decode(model, method, inputs, grids, "graphs"), tolerance(model))


def test_adapter_generate_takes_the_decode_mode(tiny_cache):
    model = tiny_model("llava")
    inputs = model.build_inputs([draw_image(1)], "What colour is the largest circle?")
    with PruningEngine(model, get("fastv"), RATIO, seed=0) as engine:
        engine.begin_sample("a")
        eager = model.generate(inputs, max_new_tokens=NEW_TOKENS)
        engine.begin_sample("a")
        assert model.generate(inputs, max_new_tokens=NEW_TOKENS, decode="static") == eager


def test_flash_attention_with_a_static_cache_is_refused(tiny_cache, monkeypatch):
    model = tiny_model("llava")
    inputs = model.build_inputs([draw_image(1)], "Why?")
    monkeypatch.setattr(model.language_model.config, "_attn_implementation", "flash_attention_2")
    with PruningEngine(model, get("fastv"), RATIO, seed=0), pytest.raises(PruningError, match="'fastv'.*static"):
        model.generate(inputs, max_new_tokens=2, decode="static")


def test_cache_width_is_bucketed():
    assert cache_width(1, 0) == BUCKET
    assert cache_width(BUCKET - 4, 4) == BUCKET
    assert cache_width(BUCKET - 4, 5) == 2 * BUCKET
    assert cache_width(600, 16, bucket=100) == 700


def test_unknown_decode_mode_lists_the_modes():
    with pytest.raises(ValueError, match="eager, static, graphs"):
        check_mode("cuda-graphs")
