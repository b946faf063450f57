"""Model loading and the family adapters, on tiny offline models of the three families."""

from __future__ import annotations

import io
import json

import pytest
import torch
from conftest import FAMILY_NAMES, draw_image
from PIL import Image

from unipb_core.models import FAMILIES, ModelInputError, UnknownModelError, detect_family, load_model
from unipb_core.models.loading import ensure_tiny

VISUAL_TOKENS = 144  # tiny image sizes are chosen so that 66.7/77.8/88.9 % keep 48/32/16


def test_tiny_model_is_small_and_of_the_stock_class(model, family):
    assert type(model.model) is FAMILIES[family].model_class
    assert model.family == family
    n_params = sum(p.numel() for p in model.model.parameters())
    assert n_params < 20_000_000


def test_processor_expands_placeholder_to_what_the_model_consumes(model, image):
    inputs = model.build_inputs([image], "What colour is the largest circle?")
    n_placeholders = int(model.visual_mask(inputs["input_ids"]).sum())
    assert n_placeholders == VISUAL_TOKENS
    assert sum(end - start for start, end in model.visual_spans(inputs["input_ids"])) == VISUAL_TOKENS
    image_kwargs = {k: v for k, v in inputs.items() if k in ("pixel_values", "image_grid_thw")}
    with torch.no_grad():
        features = model.model.model.get_image_features(**image_kwargs).pooler_output
    assert sum(f.shape[0] for f in features) == n_placeholders


def test_generate_returns_text_and_counts(model, image):
    out = model.generate(model.build_inputs([image], "Is there a circle?"), max_new_tokens=5)
    assert 1 <= out.n_generated <= 5
    assert out.n_visual == VISUAL_TOKENS and out.n_text > 0
    assert isinstance(out.text, str)


def test_save_load_round_trip_gives_identical_logits(model, family, image, tmp_path):
    built, processor = FAMILIES[family].build_tiny(0)  # the same build the cache holds
    inputs = model.build_inputs([image], "Describe the image.")
    with torch.no_grad():
        expected = built.eval()(**inputs).logits
        loaded = model.model(**inputs).logits
    assert torch.equal(expected, loaded)


def test_same_seed_same_weights_other_seed_other_weights(family):
    a, _ = FAMILIES[family].build_tiny(3)
    b, _ = FAMILIES[family].build_tiny(3)
    c, _ = FAMILIES[family].build_tiny(4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_family_is_detected_from_the_config_not_the_name(name, tiny_cache, tmp_path):
    source = ensure_tiny(name)
    renamed = tmp_path / "some-checkpoint"  # the directory name says nothing about the family
    renamed.mkdir()
    (renamed / "config.json").write_text((source / "config.json").read_text())
    assert detect_family(str(renamed)).name == name


def test_local_directory_loads_through_from_pretrained(tiny_cache):
    adapter = load_model(str(ensure_tiny("qwen2_5_vl")))
    assert adapter.family == "qwen2_5_vl"
    assert adapter.generate(adapter.build_inputs([draw_image(1)], "Hi"), max_new_tokens=2).n_visual == VISUAL_TOKENS


def test_unknown_tiny_spec_lists_accepted():
    with pytest.raises(UnknownModelError, match=r"tiny:llava.*tiny:internvl.*tiny:qwen2_5_vl"):
        load_model("tiny:lava")


def test_unknown_hub_id_is_a_clear_error():
    with pytest.raises(UnknownModelError, match=r"(?s)'no-such/model'.*Accepted"):
        load_model("no-such/model")


def test_directory_of_unsupported_family(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(UnknownModelError, match=r"'bert' is not a supported family; accepted: llava, internvl"):
        load_model(str(tmp_path))


def test_directory_without_config(tmp_path):
    with pytest.raises(UnknownModelError, match="no config.json"):
        load_model(str(tmp_path))


def test_undecodable_image_is_named(tiny_cache):
    model = load_model("tiny:llava")
    buf = io.BytesIO()
    draw_image().save(buf, format="PNG")
    truncated = Image.open(io.BytesIO(buf.getvalue()[:200]))
    with pytest.raises(ModelInputError, match="image 0: the image cannot be decoded"):
        model.build_inputs([truncated], "What is this?")
    with pytest.raises(ModelInputError, match="expected a PIL.Image.Image, got str"):
        model.build_inputs(["photo.png"], "What is this?")
