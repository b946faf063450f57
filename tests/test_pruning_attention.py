"""Attention rows recomputed from q/k equal the eager attention weights, on every family."""

from __future__ import annotations

import torch
from conftest import tiny_model
from pruning_invariants import PROMPT

from unipb_core.pruning.attention import attention_rows


def test_recomputed_rows_equal_eager_attention(family, image):
    model = tiny_model(family, attn_implementation="eager")
    inputs = model.build_inputs([image], PROMPT)
    layer_idx = 1
    captured = {}

    def grab(module, args, kwargs):
        captured.update(hidden=args[0] if args else kwargs["hidden_states"], **kwargs)

    handle = model.decoder_layers[layer_idx].register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            out = model.model(**inputs, output_attentions=True)
    finally:
        handle.remove()
    eager = out.attentions[layer_idx][0]  # [H, L, L]
    length = eager.shape[-1]
    rows = torch.tensor([0, length // 2, length - 1])
    args = (model.decoder_layers[layer_idx], captured["hidden"], captured["position_embeddings"])
    with torch.no_grad():
        ours = attention_rows(*args, rows, captured.get("attention_mask"))
        every = attention_rows(*args, None, captured.get("attention_mask"))  # None: all rows, no gather
    torch.testing.assert_close(ours, eager[:, rows].float(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(every, eager.float(), atol=1e-5, rtol=1e-4)
