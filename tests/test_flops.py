"""The analytic FLOPs model: a hand-computed value, monotonicity under pruning, ideal speed-ups."""

from __future__ import annotations

import pytest
from transformers import LlamaConfig, Qwen2Config

from unipb_core.flops import LMDims, decode_flops, ideal_speedup, prefill_flops

TINY = LMDims(hidden=8, intermediate=16, n_layers=2, n_heads=2, n_kv_heads=1, head_dim=4, vocab=10)
# Llama-2-7B / LLaVA-1.5-7B text model.
LLAMA7B = LMDims(hidden=4096, intermediate=11008, n_layers=32, n_heads=32, n_kv_heads=32, head_dim=128, vocab=32000)


def test_prefill_flops_by_hand():
    # Per layer with n tokens (h=8, q out 2*4=8, kv out 1*4=4, I=16):
    #   q 2*n*8*8=128n, k 2*n*8*4=64n, v 64n, o 128n          -> 384n
    #   scores 2*2*n*n*4=16n^2, values 16n^2                 -> 32n^2
    #   MLP 3 * 2*n*8*16                                     -> 768n
    # n=5: 1152*5 + 32*25 = 6560; n=3: 1152*3 + 32*9 = 3744; lm_head, last token: 2*8*10 = 160.
    assert prefill_flops(TINY, [5, 3]) == 6560 + 3744 + 160


def test_decode_flops_by_hand():
    # One query attending to c+1 keys: 1152 (linear terms, n=1) + 2*2*2*4*(c+1) = 1152 + 32*(c+1).
    assert decode_flops(TINY, [4, 2]) == (1152 + 32 * 5) + (1152 + 32 * 3) + 160


def test_pruning_never_adds_flops():
    base = [600] * LLAMA7B.n_layers
    fastv = [600] * 2 + [200] * 30  # intra-LLM pruning from layer 2
    pre = [200] * LLAMA7B.n_layers  # pre-LLM pruning
    assert prefill_flops(LLAMA7B, pre) < prefill_flops(LLAMA7B, fastv) < prefill_flops(LLAMA7B, base)
    costs = [prefill_flops(TINY, [n, n]) for n in range(0, 50)]
    assert costs == sorted(costs) and len(set(costs)) == len(costs)


def test_uniform_halving_is_about_2x_when_mlp_dominates():
    mlp_heavy = LMDims(hidden=64, intermediate=4096, n_layers=4, n_heads=4, n_kv_heads=4, head_dim=16, vocab=100)
    assert ideal_speedup(mlp_heavy, [64] * 4, [32] * 4) == pytest.approx(2.0, abs=0.02)
    # At real sizes the quadratic attention term pushes it a little above 2.
    speedup = ideal_speedup(LLAMA7B, [1200] * 32, [600] * 32)
    assert 2.0 < speedup < 2.1


def test_bad_counts_are_rejected():
    with pytest.raises(ValueError, match="one per decoder layer"):
        prefill_flops(TINY, [5])
    with pytest.raises(ValueError, match="negative"):
        prefill_flops(TINY, [5, -1])


def test_dims_from_transformers_configs():
    llama = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                        num_key_value_heads=2, vocab_size=1000)  # fmt: skip
    assert LMDims.from_config(llama) == LMDims(64, 128, 3, 4, 2, 16, 1000)
    qwen = Qwen2Config(hidden_size=96, intermediate_size=256, num_hidden_layers=2, num_attention_heads=6,
                       num_key_value_heads=2, vocab_size=500)  # fmt: skip
    assert LMDims.from_config(qwen) == LMDims(96, 256, 2, 6, 2, 16, 500)


def test_dims_from_multimodal_configs_use_their_text_part():
    from transformers import LlavaConfig, Qwen2_5_VLConfig

    text = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4,
            "vocab_size": 152000}  # fmt: skip
    # LLaVA's Llama text config: kv heads default to the heads, head_dim to hidden / heads.
    assert LMDims.from_config(LlavaConfig(text_config=text)) == LMDims(64, 128, 3, 4, 4, 16, 152000)
    qwen = Qwen2_5_VLConfig(text_config={**text, "num_key_value_heads": 2})
    assert LMDims.from_config(qwen) == LMDims.from_config(qwen.text_config) == LMDims(64, 128, 3, 4, 2, 16, 152000)
