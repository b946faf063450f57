"""Shared fixtures: tiny models of the three families, built once per test session, offline."""

from __future__ import annotations

import os

import pytest
from PIL import Image, ImageDraw

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FAMILY_NAMES = ("llava", "internvl", "qwen2_5_vl")


@pytest.fixture(scope="session", autouse=True)
def tiny_cache(tmp_path_factory):
    """Build tiny models into a per-session cache, so tests never depend on a developer's cache."""
    path = tmp_path_factory.mktemp("unipb-cache")
    old = os.environ.get("UNIPB_CACHE")
    os.environ["UNIPB_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("UNIPB_CACHE", None)
    else:
        os.environ["UNIPB_CACHE"] = old


_loaded: dict = {}


def tiny_model(family: str, attn_implementation: str = "sdpa"):
    """A session-cached adapter of the random tiny ``family`` model (do not mutate its weights).

    ``tiny-random:``, not the trained ``tiny:``: tests compare against ``FAMILIES[family].build_tiny(0)``
    (the save/load round trip) and must not depend on the shipped weights.
    """
    from unipb_core.models import load_model

    key = (family, attn_implementation)
    if key not in _loaded:
        _loaded[key] = load_model(f"tiny-random:{family}", attn_implementation=attn_implementation)
    return _loaded[key]


@pytest.fixture(scope="module")
def one_thread():
    """The tiny models gain nothing from intra-op threads; on a shared 2-core machine under load, threads make
    each small matmul wait for a descheduled worker (test_pruning_extra_methods, measured: 175 s with 2 threads,
    12-28 s with 1). A module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(params=FAMILY_NAMES)
def family(request) -> str:
    return request.param


@pytest.fixture
def model(family, tiny_cache):
    return tiny_model(family)


def draw_image(seed: int = 0, size: int = 336) -> Image.Image:
    """A small deterministic picture with a few shapes (so visual tokens differ from each other)."""
    import random

    rng = random.Random(seed)
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y, r = rng.randrange(size), rng.randrange(size), rng.randrange(10, size // 4)
        color = tuple(rng.randrange(256) for _ in range(3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=color)
    return image


@pytest.fixture
def image() -> Image.Image:
    return draw_image()
