"""Downsample: one vision pass over the resized images, equal to the two-pass path it replaced and to slow
transcriptions of the stock vision path; placement by hand; refusals (the contract is in test_pruning_contract.py,
batches in test_pruning_batch.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import draw_image, tiny_model
from pruning_invariants import PROMPT, logits

from unipb_core.instrument import instrument
from unipb_core.models.resized import Downsampled, run_means
from unipb_core.pruning import PruningEngine, PruningError, get
from unipb_core.pruning.base import PruningMethod, Selection
from unipb_core.pruning.downsample import Downsample, nearest_tokens
from unipb_core.timing import SampleTimer

RATIOS = (0.667, 0.778, 0.889)

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run faster on one thread


@pytest.fixture
def inputs(model, image):
    return model.build_inputs([image], PROMPT)


class Recorded(Downsample):
    """Downsample, keeping every selection it returns."""

    def __init__(self):
        self.selections: list[Selection] = []

    def select(self, ctx):
        selection = super().select(ctx)
        self.selections.append(selection)
        return selection


def run(model, method, ratio, inputs):
    with PruningEngine(model, method, ratio, seed=0) as engine:
        with torch.no_grad():
            out = model.model(**inputs)
    return engine.summary(), out


# ---------------------------------------------------------------------------- the two-pass path (the reference)
def resize(pixels, height, width):
    if tuple(pixels.shape[-2:]) == (height, width):
        return pixels
    return F.interpolate(pixels.float(), size=(height, width), mode="bicubic", antialias=True, align_corners=False)


def reencode_unit(model, inputs, unit, gh, gw):
    """The stock ``get_image_features`` on unit ``unit`` of the processed input alone, resized to a ``gh x gw``
    token grid (the removed ``_reencode`` of each family)."""
    cfg, inner = model.config, model.model.model
    if model.family == "qwen2_5_vl":
        vc = cfg.vision_config
        p, m, tp, ch = vc.patch_size, vc.spatial_merge_size, vc.temporal_patch_size, vc.in_channels
        flat, grid_thw = inputs["pixel_values"], inputs["image_grid_thw"]
        sizes = grid_thw.prod(dim=-1).tolist()
        _, h, w = grid_thw[unit].tolist()
        patches = flat[sum(sizes[:unit]) : sum(sizes[:unit]) + h * w]
        image = patches.view(h // m, w // m, m, m, ch, tp, p, p).float().mean(dim=5)
        image = image.permute(4, 0, 2, 5, 1, 3, 6).reshape(1, ch, h * p, w * p)
        image = resize(image, gh * m * p, gw * m * p)[0]
        new = image.reshape(ch, gh, m, p, gw, m, p).permute(1, 4, 2, 5, 0, 3, 6).unsqueeze(5)
        new = new.expand(gh, gw, m, m, ch, tp, p, p).reshape(gh * gw * m * m, ch * tp * p * p)
        return inner.get_image_features(new, torch.tensor([[1, gh * m, gw * m]])).pooler_output[0]
    size = 14 if model.family == "llava" else 28
    extra = {"interpolate_pos_encoding": True} if model.family == "llava" else {}
    out = inner.get_image_features(
        pixel_values=resize(inputs["pixel_values"][unit : unit + 1], gh * size, gw * size),
        vision_feature_layer=cfg.vision_feature_layer,
        vision_feature_select_strategy=cfg.vision_feature_select_strategy, **extra,
    )  # fmt: skip
    return out.pooler_output[0]


def two_pass(model, inputs, n_keep):
    """Features ``[n_keep, D]`` and anchors as the two-pass path computed them (``downsampled_features`` before
    the one-pass change): each unit re-encoded on its own after the full-size pass, runs averaged one by one."""
    if model.family == "qwen2_5_vl":
        grids = [(h // 2, w // 2) for _, h, w in inputs["image_grid_thw"].tolist()]
    else:
        pixels, size = inputs["pixel_values"], 14 if model.family == "llava" else 28
        grids = [(pixels.shape[-2] // size, pixels.shape[-1] // size)] * pixels.shape[0]
    sizes = [r * c for r, c in grids]
    exact = [n_keep * n / sum(sizes) for n in sizes]
    budgets = [int(e) for e in exact]
    for i in sorted(range(len(sizes)), key=lambda i: (-(exact[i] - budgets[i]), i))[: n_keep - sum(budgets)]:
        budgets[i] += 1
    feats, units, centres = [], [], []
    with torch.no_grad():
        for unit, ((rows, cols), k) in enumerate(zip(grids, budgets, strict=True)):
            if model.family == "internvl":
                gh = gw = math.ceil(math.sqrt(k))
            else:
                gh = max(1, math.floor(math.sqrt(k * rows / cols) + 0.5))
                gw = math.ceil(k / gh)
            coarse = reencode_unit(model, inputs, unit, gh, gw)
            ii, jj = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
            cells = torch.stack([(ii + 0.5) * rows / gh - 0.5, (jj + 0.5) * cols / gw - 0.5], -1).reshape(-1, 2)
            edges = [o * gh * gw // k for o in range(k + 1)]
            feats += [coarse[a:b].float().mean(0) for a, b in zip(edges[:-1], edges[1:], strict=True)]
            centres += [cells[a:b].mean(0) for a, b in zip(edges[:-1], edges[1:], strict=True)]
            units += [unit] * k
    return torch.stack(feats), nearest_tokens(Downsampled(torch.tensor(units), torch.stack(centres), grids))


class TwoPass(PruningMethod):
    """The two-pass path as a method: the stock forward encodes the full-size images, ``select`` encodes again."""

    name, category, stage_kind, merges = "downsample_two_pass", "baseline", "pre", True

    def __init__(self, model, inputs):
        self.model, self.inputs, self.selections = model, inputs, []

    def select(self, ctx):
        features, anchors = two_pass(self.model, self.inputs, ctx.stage.n_keep)
        keep, order = torch.sort(anchors)
        self.selections.append(Selection(keep, features.to(ctx.visual.dtype)[order]))
        return self.selections[-1]


def two_image_inputs(model):
    a, b = draw_image(1), draw_image(2)
    if model.family == "qwen2_5_vl":  # dynamic resolution: two grids (144 and 192 tokens), unequal budgets
        b = b.resize((448, 336))
    return model.build_inputs([a, b], PROMPT)


def check_one_pass_equals_two_passes(model, inputs, ratio):
    one, two = Recorded(), TwoPass(model, inputs)
    answers, kept = [], []
    for method in (one, two):
        with PruningEngine(model, method, ratio, seed=0) as engine:
            answers.append(model.generate(inputs, max_new_tokens=8).text)
            kept.append(engine.summary()["stages"][0]["kept"])
    assert one.selections[0].keep.tolist() == two.selections[0].keep.tolist()
    assert kept[0] == kept[1]
    torch.testing.assert_close(one.selections[0].merged, two.selections[0].merged)  # float32 tolerance
    assert answers[0] == answers[1]


@pytest.mark.parametrize("ratio", RATIOS)
def test_one_pass_equals_two_passes(model, inputs, ratio):
    check_one_pass_equals_two_passes(model, inputs, ratio)


def test_one_pass_equals_two_passes_on_two_images(model):
    check_one_pass_equals_two_passes(model, two_image_inputs(model), 0.889)


@pytest.mark.parametrize("path", ["forward", "generate"])
def test_the_vision_tower_runs_once_on_the_resized_images(model, inputs, path):
    """One vision pass, over the resized image only (16 tokens, a 4 x 4 grid, at 88.9 % of 144), timed once as
    ``vision``; ``generate`` encodes before the prefill's forward, the forward itself otherwise."""
    calls, timer = [], SampleTimer()
    hook = lambda module, args, kwargs: calls.append((args, kwargs))  # noqa: E731
    handle = model.vision_modules[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with PruningEngine(model, get("downsample"), 0.889, seed=0) as engine, torch.no_grad():
            engine.begin_sample("s", timer=timer)
            with instrument(model, timer):
                model.generate(inputs, max_new_tokens=2) if path == "generate" else model.model(**inputs)
    finally:
        handle.remove()
    assert len(calls) == 1
    assert timer.counts["vision"] == timer.counts["method"] == 1
    args, kwargs = calls[0]
    pixels = args[0] if args else kwargs.get("pixel_values", kwargs.get("hidden_states"))
    if model.family == "qwen2_5_vl":
        assert pixels.shape[0] == 16 * 4  # 4 x 4 merged tokens of 2 x 2 patches
    else:
        assert tuple(pixels.shape[-2:]) == ((56, 56) if model.family == "llava" else (112, 112))


def test_the_stock_encoding_is_back_after_the_engine(model, inputs):
    inner = model.model.model
    with pytest.raises(PruningError), PruningEngine(model, get("downsample"), 0.889, seed=0):
        assert "get_image_features" in vars(inner)  # routed while the engine is on ...
        raise PruningError("leave the engine by an error")
    assert "get_image_features" not in vars(inner)  # ... and the class's method again after it


# ---------------------------------------------------------------------------- run averaging
@pytest.mark.parametrize(("m", "k"), [(36, 32), (49, 48), (16, 16), (12, 5), (14, 2), (100, 7), (144, 143)])
def test_run_means_equals_the_per_run_means(m, k):
    x = torch.randn(m, 6, generator=torch.Generator().manual_seed(m * k))
    edges = [o * m // k for o in range(k + 1)]
    expected = torch.stack([x[a:b].mean(0) for a, b in zip(edges[:-1], edges[1:], strict=True)])
    assert torch.equal(run_means(x, k), expected)  # to the bit: the centres decide ties between anchors


# ---------------------------------------------------------------------------- against the stock vision path
def test_at_the_full_size_is_the_stock_model(model, inputs):
    """Encoding at the original size goes through the stock vision path (Qwen: patchify undone and redone).
    Ratio 0.001 keeps all 144 tokens but still resizes (at ratio 0 the engine applies no stage at all)."""
    summary, out = run(model, get("downsample"), 0.001, inputs)
    assert summary["stages"][0]["kept"] == list(range(144))
    torch.testing.assert_close(out.logits, logits(model, inputs), rtol=0, atol=1e-6)


def test_ratio_zero_encodes_the_full_size_images(model, inputs):
    summary, out = run(model, get("downsample"), 0.0, inputs)
    assert summary["stages"][0]["kept"] == list(range(144))
    torch.testing.assert_close(out.logits, logits(model, inputs), rtol=0, atol=0)


def qwen_image(model, inputs):
    """Python-loop transcription of the Qwen processor's patch layout back to a [C, H, W] image."""
    vc = model.config.vision_config
    p, m, tp = vc.patch_size, vc.spatial_merge_size, vc.temporal_patch_size
    flat = inputs["pixel_values"]
    _, h, w = inputs["image_grid_thw"][0].tolist()
    image = torch.zeros(3, h * p, w * p)
    row = 0
    for a in range(h // m):
        for b in range(w // m):
            for mh in range(m):
                for mw in range(m):
                    patch = flat[row].view(3, tp, p, p)[:, 0]
                    r, c = (a * m + mh) * p, (b * m + mw) * p
                    image[:, r : r + p, c : c + p] = patch
                    row += 1
    return image


def slow_coarse_tokens(model, inputs, side):
    """The stock vision path on the image resized to a ``side x side`` token grid, written out per family."""
    cfg, inner = model.config, model.model.model
    pixels = inputs["pixel_values"]

    def resize_square(x, size):
        return F.interpolate(x.float(), size=(size, size), mode="bicubic", antialias=True, align_corners=False)

    with torch.no_grad():
        if model.family == "llava":
            out = inner.vision_tower(
                resize_square(pixels, side * 14), output_hidden_states=True, interpolate_pos_encoding=True
            )
            return inner.multi_modal_projector(out.hidden_states[cfg.vision_feature_layer][0, 1:])
        if model.family == "internvl":
            hidden = inner.vision_tower(pixel_values=resize_square(pixels, side * 28)).last_hidden_state[:, 1:]
            shuffled = inner.pixel_shuffle(hidden.reshape(1, 2 * side, 2 * side, -1), 0.5)
            return inner.multi_modal_projector(shuffled.reshape(side * side, -1))
        image = resize_square(qwen_image(model, inputs)[None], side * 28)[0].numpy()
        flat, gh, gw = model.processor.image_processor.patchify(image, 14, 2, 2)
        thw = torch.tensor([[1, gh, gw]])
        return inner.get_image_features(torch.from_numpy(np.ascontiguousarray(flat)), thw).pooler_output[0]


def test_matches_slow_transcription(model, inputs):
    ratio, n_keep, side = 0.778, 32, 6  # 32 tokens: a 6 x 6 encoding, four raster runs of two averaged
    coarse = slow_coarse_tokens(model, inputs, side)
    edges = [o * side * side // n_keep for o in range(n_keep + 1)]
    runs = [list(range(a, b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    assert sum(len(r) == 2 for r in runs) == 4
    centre = [((i // side + 0.5) * 2 - 0.5, (i % side + 0.5) * 2 - 0.5) for i in range(side * side)]
    taken, anchors = set(), []
    for run_ in runs:
        r = sum(centre[i][0] for i in run_) / len(run_)
        c = sum(centre[i][1] for i in run_) / len(run_)
        best = min((t for t in range(144) if t not in taken), key=lambda t: ((t // 12 - r) ** 2 + (t % 12 - c) ** 2, t))
        taken.add(best)
        anchors.append(best)
    features = torch.stack([coarse[run_].mean(0) for run_ in runs])
    method = Recorded()
    summary, _ = run(model, method, ratio, inputs)
    keep, merged = method.selections[0].keep, method.selections[0].merged
    assert summary["stages"][0]["kept"] == keep.tolist() == sorted(anchors)
    order = sorted(range(n_keep), key=lambda i: anchors[i])
    torch.testing.assert_close(merged, features[order], rtol=1e-4, atol=1e-5)


def test_nearest_tokens_by_hand():
    # A 2 x 2 coarse grid on a 4 x 4 unit: centres (0.5, 0.5) ... equidistant from four tokens -> lowest index.
    centres = torch.tensor([[0.5, 0.5], [0.5, 2.5], [2.5, 0.5], [2.5, 2.5]])
    ds = Downsampled(torch.zeros(4, dtype=torch.long), centres, [(4, 4)])
    assert nearest_tokens(ds).tolist() == [0, 2, 8, 10]
    # Two units; a collision: the second token takes the next nearest free one.
    ds = Downsampled(torch.tensor([0, 0, 1]), torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 1.0]]), [(2, 2), (1, 3)])
    assert nearest_tokens(ds).tolist() == [0, 2, 5]


def greedy_in_full(ds):
    """The placement as one loop over every token and every cell (float32 squared distances, as the rule's)."""
    anchors, offset = [], 0
    for unit, (rows, cols) in enumerate(ds.unit_grids):
        grid = torch.tensor([[t // cols, t % cols] for t in range(rows * cols)], dtype=torch.float32)
        taken = set()
        for centre in ds.centres[ds.units == unit]:
            dist = (centre - grid).pow(2).sum(-1).tolist()
            cell = min((t for t in range(rows * cols) if t not in taken), key=lambda t: (dist[t], t))  # noqa: B023
            taken.add(cell)
            anchors.append(offset + cell)
        offset += rows * cols
    return anchors


@pytest.mark.parametrize("seed", range(6))
def test_nearest_tokens_matches_the_greedy_in_full(seed):
    """Coarse-grid centres, random quarter-cell centres (ties and collisions: the greedy in full) and distinct
    half-cell ones (ties, no collision: the 2 x 2 search)."""
    g = torch.Generator().manual_seed(seed)
    rows, cols = (int(v) for v in torch.randint(1, 20, (2,), generator=g))
    k = int(torch.randint(1, rows * cols + 1, (1,), generator=g))
    gh = max(1, math.floor(math.sqrt(k * rows / cols) + 0.5))
    gw = math.ceil(k / gh)
    ii, jj = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    cells = torch.stack([(ii + 0.5) * rows / gh - 0.5, (jj + 0.5) * cols / gw - 0.5], -1).reshape(-1, 2)
    quarters = torch.stack([torch.randint(0, 4 * n - 3, (k,), generator=g) for n in (rows, cols)], 1) / 4
    # Distinct even cells moved by 0, 1/4 or 1/2 (ties) in each axis: no collision, so the 2 x 2 search decides.
    even = torch.cartesian_prod(torch.arange(0, rows, 2), torch.arange(0, cols, 2)).float()
    even = even[torch.randperm(len(even), generator=g)] + torch.randint(0, 3, even.shape, generator=g) / 4
    for centres in (run_means(cells, k), quarters, even.clamp(max=torch.tensor([rows - 1.0, cols - 1.0]))):
        ds = Downsampled(torch.zeros(len(centres), dtype=torch.long), centres, [(rows, cols)])
        assert nearest_tokens(ds).tolist() == greedy_in_full(ds)


# ---------------------------------------------------------------------------- refusals
def test_refusal_names_the_family(image):
    model = tiny_model("llava")
    inputs = model.build_inputs([image], PROMPT)
    model.config.vision_feature_select_strategy = "full"  # [CLS] would be a visual token: no place on a grid
    try:
        with pytest.raises(PruningError, match="downsample cannot run on llava: .*'full'"):
            run(model, get("downsample"), 0.889, inputs)
    finally:
        model.config.vision_feature_select_strategy = "default"


def test_precomputed_image_features_are_refused(model, inputs):
    with torch.no_grad():
        features = model.model.model.get_image_features(
            **{k: v for k, v in inputs.items() if k in ("pixel_values", "image_grid_thw")}, return_dict=True
        )
    stock = {k: v for k, v in inputs.items() if k != "pixel_values"}
    with pytest.raises(PruningError, match="did not run in this forward"):
        run(model, get("downsample"), 0.889, stock | {"mm_encoder_outputs": {"image": features}})
