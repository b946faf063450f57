"""The vectorised pre-LLM paths against the straightforward loops they replaced.

Each ``loop_*`` below is the previous implementation (one device scalar per greedy step, a fresh even x odd
product per VisPruner round, one gather per Pool cell, Qwen's received attention head by head over full
``S x S`` matrices). Kept sets must be identical and scores equal within float32 rounding, on random inputs
of several sizes (odd ones included) and on inputs full of exact ties. Fidelity to the authors' rules is
``test_fidelity_vit.py``; this file pins that the speed-ups changed nothing.

Ties: duplicated tokens tie only up to rounding, and which way a float32 product of two equal vectors
rounds depends on where it sits in a matrix product, so a VisPruner round that multiplies a different block
can order them differently (neither order is the float64 rule's). The tie inputs therefore use axis
directions, whose cosines (0, 1, -1) every product computes exactly.
"""

from __future__ import annotations

import pytest
import torch
from conftest import draw_image, tiny_model
from pruning_invariants import PROMPT
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_rotary_pos_emb_vision

from unipb_core.models import vision_attention
from unipb_core.models.resized import shares
from unipb_core.pruning import PruningEngine, Stage, get
from unipb_core.pruning.context import PruneContext
from unipb_core.pruning.divprune import max_min_diverse
from unipb_core.pruning.gprune import gprune_scores
from unipb_core.pruning.pool import pooled_shape
from unipb_core.pruning.vispruner import remove_duplicates
from unipb_core.pruning.vit_common import cosine_matrix

SIZES = (2, 15, 257, 576, 1024)
KINDS = ("gauss", "clustered", "ties")


def tokens(n: int, kind: str, seed: int, d: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "gauss":
        return torch.randn(n, d, generator=g)
    if kind == "clustered":
        centres = torch.randn(12, d, generator=g)
        return centres[torch.randint(0, 12, (n,), generator=g)] + 0.3 * torch.randn(n, d, generator=g)
    axes = torch.cat([torch.eye(4), -torch.eye(4), torch.zeros(1, 4)])  # exact cosines; a zero row too
    x = torch.zeros(n, d)
    x[:, :4] = axes[torch.randint(0, 9, (n,), generator=g)] * torch.randint(1, 4, (n, 1), generator=g)
    return x


def budgets(n: int) -> list[int]:
    return sorted({1, max(1, n // 9), max(1, n // 3), n})


# ---------------------------------------------------------------------------- the loops they replaced
def loop_divprune(x, k):
    dist = 1.0 - cosine_matrix(x)
    if x.shape[0] == 1:
        return torch.zeros(1, dtype=torch.long)
    first = torch.argmax(torch.topk(dist, 2, dim=0, largest=False).values[1])
    chosen, nearest = [first], dist[first].clone()
    nearest[first] = -float("inf")
    for _ in range(min(k, x.shape[0]) - 1):
        nxt = torch.argmax(nearest)
        chosen.append(nxt)
        nearest = torch.minimum(nearest, dist[nxt])
        nearest[nxt] = -float("inf")
    return torch.sort(torch.stack(chosen)).values


def loop_remove_duplicates(features, residual, target, step):
    if target <= 0:
        return residual[:0]
    normed = torch.nn.functional.normalize(features.float(), dim=-1)
    while (r := min(step, residual.numel() - target)) > 0:
        even, odd = residual[0::2], residual[1::2]
        best = (normed[even] @ normed[odd].T).max(dim=1).values
        residual = torch.cat([even[torch.argsort(best, descending=True, stable=True)[r:]], odd])
    return residual


def loop_gprune(x, threshold, temperature, steps):
    sim = cosine_matrix(x)
    logits = torch.where(sim < threshold, torch.zeros_like(sim), sim) / temperature
    adjacency = torch.softmax(torch.where(logits.abs() < 1e-6, torch.full_like(logits, -5000.0), logits), dim=-1)
    state = x.float().norm(dim=-1)
    for _ in range(steps):
        state = state @ adjacency
    return state / (adjacency > 0).sum(dim=1)


def loop_pool(x, grids, n_keep):
    """Every cell's members gathered and averaged one by one (edges and centres as the module docstring)."""

    def edges(size, parts):
        return [((i * size) // parts, -((-(i + 1) * size) // parts)) for i in range(parts)]

    cells, start = [], 0
    for (rows, cols), k in zip(grids, shares([r * c for r, c in grids], n_keep), strict=True):
        grid = torch.arange(start, start + rows * cols).view(rows, cols)
        start += rows * cols
        shape = pooled_shape(rows, cols, k) if k else None
        if k and shape is None:
            flat = grid.reshape(-1)
            cells += [(int(flat[(s + e - 1) // 2]), flat[s:e]) for s, e in edges(flat.numel(), k)]
        elif k:
            for r0, r1 in edges(rows, shape[0]):
                for c0, c1 in edges(cols, shape[1]):
                    cells.append((int(grid[(r0 + r1 - 1) // 2, (c0 + c1 - 1) // 2]), grid[r0:r1, c0:c1].reshape(-1)))
    cells.sort(key=lambda c: c[0])
    merged = [x[m].mean(dim=0) for _, m in cells]
    return torch.tensor([c for c, _ in cells], dtype=torch.long), torch.stack(merged) if merged else x[:0]


def loop_received_attention(q, k, scale, cu_seqlens):
    out = torch.empty(q.shape[1])
    bounds = cu_seqlens.tolist()
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        total = torch.zeros(end - start)
        for h in range(q.shape[0]):
            total += torch.softmax((q[h, start:end] @ k[h, start:end].T) * scale, dim=-1).mean(dim=0)
        out[start:end] = total / q.shape[0]
    return out


# ---------------------------------------------------------------------------- kept sets and scores
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", SIZES + (4096,))
def test_divprune_keeps_the_loops_set(n, kind):
    x = tokens(n, kind, seed=n)
    for k in budgets(n) + [n + 3]:
        assert torch.equal(max_min_diverse(x, k), loop_divprune(x, k)), k


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", SIZES)
def test_vispruner_rounds_keep_the_loops_set(n, kind):
    x = tokens(n, kind, seed=n + 1)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    for keep in budgets(n):
        for step in (1, 2, 8) if n < 300 else (8,):  # the loop's rounds at step 1 cost minutes at n = 1024
            important = keep // 2
            residual, target = order[important:], keep - important
            fast = remove_duplicates(x, residual, target, step)
            assert torch.equal(fast, loop_remove_duplicates(x, residual, target, step)), (keep, step)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", SIZES)
def test_gprune_scores_are_the_loops_bit_for_bit(n, kind):
    x = tokens(n, kind, seed=n + 2)
    for params in ((0.5, 0.03, 5), (0.0, 0.03, 5), (-0.2, 1e5, 2), (0.9, 1.0, 0)):
        assert torch.equal(gprune_scores(x, *params), loop_gprune(x, *params)), params


@pytest.mark.parametrize(
    "grids", [[(1, 1)], [(2, 3)], [(5, 7)], [(24, 24)], [(32, 32)], [(3, 3), (1, 3)], [(12, 12), (10, 13), (9, 15)]]
)
def test_pool_keeps_the_loops_cells(grids):
    n = sum(r * c for r, c in grids)
    x = tokens(n, "gauss", seed=n)
    for k in sorted({0, 1, 2, 3, 5, 7, 13, n // 9, n // 3, n - 1, n} & set(range(n + 1))):
        ctx = PruneContext(
            stage=Stage("pre", None, k), family="llava", visual=x, text=x[:0], visual_positions=torch.arange(n),
            text_positions=torch.arange(0), visual_origin=torch.arange(n), grids=grids,
            generator=torch.Generator().manual_seed(0), num_layers=2,
        )  # fmt: skip
        sel = get("pool").select(ctx)
        keep, merged = loop_pool(x, grids, k)
        assert torch.equal(sel.keep, keep), k
        torch.testing.assert_close(sel.merged, merged, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------- Qwen2.5-VL received attention
@pytest.mark.parametrize("block", [1 << 18, 1000, 1])  # the default; uneven row blocks; one row at a time
def test_received_attention_equals_the_head_by_head_loop(monkeypatch, block):
    monkeypatch.setattr(vision_attention, "query_block_elements", lambda device: block)
    g = torch.Generator().manual_seed(0)
    heads, d = 3, 16
    for lengths in ((1,), (257,), (64, 130, 135), (1024,)):
        seq = sum(lengths)
        q, k = 2 * torch.randn(heads, seq, d, generator=g), 2 * torch.randn(heads, seq, d, generator=g)
        cu_seqlens = torch.tensor([0, *lengths]).cumsum(0).to(torch.int32)
        fast = vision_attention.mean_received_attention(q, k, d**-0.5, cu_seqlens)
        torch.testing.assert_close(fast, loop_received_attention(q, k, d**-0.5, cu_seqlens), rtol=1e-5, atol=1e-7)


def test_qwen_scores_from_the_captured_projection_equal_a_recompute():
    """Three images (three cu_seqlens segments): the hooks leave the tower's output bit for bit, and the scores
    read off the captured qkv equal the recompute from the block's input (its norm and projection again)."""
    model = tiny_model("qwen2_5_vl")
    images = [draw_image(1), draw_image(2).resize((336, 448)), draw_image(3).resize((448, 280))]
    inputs = model.build_inputs(images, PROMPT)
    visual = model.model.model.visual
    store: dict = {}
    with torch.no_grad():
        stock = visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"]).pooler_output
        handles = model.vision_attention_hooks(store)
        try:
            hooked = visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"]).pooler_output
        finally:
            for h in handles:
                h.remove()
        assert torch.equal(hooked, stock)
        got = model.vision_attention(store)
        block, args, kwargs = store["layer"]
        seq = args[0].shape[0]
        qkv = block.attn.qkv(block.norm1(args[0])).reshape(seq, 3, block.attn.num_heads, -1)
        q, k, _ = qkv.permute(1, 0, 2, 3).unbind(0)
        q_rot, k_rot = apply_rotary_pos_emb_vision(q, k, *kwargs["position_embeddings"])
        cu_seqlens = kwargs["cu_seqlens"]
        assert cu_seqlens.numel() == 4
        expected = loop_received_attention(q_rot.transpose(0, 1), k_rot.transpose(0, 1), block.attn.scaling, cu_seqlens)
    torch.testing.assert_close(got.patch_scores, expected, rtol=1e-5, atol=1e-8)
    assert torch.equal(got.patch_keys, k.reshape(seq, -1))


def test_qwen_projection_hook_only_while_a_method_reads_encoder_attention():
    model = tiny_model("qwen2_5_vl")
    visual = model.model.model.visual
    qkv = visual.blocks[visual.fullatt_block_indexes[-1]].attn.qkv
    with PruningEngine(model, get("divprune"), 0.5):
        assert not qkv._forward_hooks
    with PruningEngine(model, get("visionzip"), 0.5):
        assert len(qkv._forward_hooks) == 1
    assert not qkv._forward_hooks
