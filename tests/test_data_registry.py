"""The registry, the dimension map, the spec attributes, subset selection and the dataset table in the docs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from unipb_core import data
from unipb_core.data.select import select

# The ten datasets of the study; the tests below run over whatever the registry holds (REAL), so a new
# dataset needs no edit here.
STUDY = (
    "mme",
    "mmbench",
    "mathvista",
    "mathvision",
    "seedbench2plus",
    "ocrbench",
    "miabench",
    "scienceqa",
    "pope",
    "hallusionbench",
)
REAL = tuple(name for name in data.available() if name != "synthetic")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "datasets.md"


def test_dimension_map_is_derived_from_the_specs() -> None:
    assert data.DIMENSIONS == ("comprehensive", "ocr", "multidisciplinary", "hallucination", "math", "instruction")
    # The map is the specs' own dimensions: nothing to keep in sync when a dataset is added.
    assert data.DATASET_DIMENSION == {name: data.get(name).dimension for name in REAL}
    assert set(data.DATASET_DIMENSION.values()) == set(data.DIMENSIONS)
    assert data.DATASET_DIMENSION["ocrbench"] == "ocr" and data.DATASET_DIMENSION["pope"] == "hallucination"
    assert set(STUDY) <= set(REAL) and "synthetic" in data.available()
    assert "synthetic" not in data.DATASET_DIMENSION  # it spans all six; each of its samples names its own


def test_register_rejects_an_unknown_dimension() -> None:
    from unipb_core.data.registry import register
    from unipb_core.data.spec import DatasetSpec

    class Broken(DatasetSpec):
        name = "broken_dimension_probe"
        dimension = "vision"

    with pytest.raises(ValueError, match="declares dimension 'vision'; expected one of comprehensive"):
        register(Broken)
    assert "broken_dimension_probe" not in data.available()


@pytest.mark.parametrize("name", REAL)
def test_spec_attributes(name: str) -> None:
    spec = data.get(name)
    assert spec.name == name and spec.dimension == data.DATASET_DIMENSION[name]
    assert "/" in spec.hub_id and spec.split
    assert spec.version == f"{name}/v{spec.VERSION}"
    assert 16 <= spec.max_new_tokens <= 128
    with pytest.raises(AttributeError, match="immutable"):
        spec.split = "train"


def test_hub_ids_are_the_harness_ids() -> None:
    ids = {name: (data.get(name).hub_id, data.get(name).config, data.get(name).split) for name in REAL}
    assert ids["mme"] == ("lmms-lab/MME", None, "test")
    assert ids["mmbench"] == ("lmms-lab/MMBench", "en", "dev")
    assert ids["mathvista"] == ("AI4Math/MathVista", None, "testmini")
    assert ids["ocrbench"] == ("echo840/OCRBench", None, "test")
    assert ids["scienceqa"] == ("lmms-lab/ScienceQA", "ScienceQA-IMG", "test")
    assert ids["hallusionbench"] == ("lmms-lab/HallusionBench", None, "image")


def test_select_first_n_and_whole_groups() -> None:
    groups = ["a", "a", "b", "c", "c", "c", "d"]
    assert select(groups, None) == list(range(7))
    assert select(groups, 3) == [0, 1, 2]
    assert select(groups, 10, subsample=True) == list(range(7))
    for seed in range(20):
        kept = select(groups, 3, seed=seed, subsample=True)
        assert kept == sorted(kept) and len(kept) >= 3
        for key in {groups[i] for i in kept}:  # every member of a kept group is kept
            assert all(i in kept for i, g in enumerate(groups) if g == key)
        assert len(kept) - 3 < 3  # overshoot is less than the largest group
    assert select(groups, 3, seed=5, subsample=True) == select(groups, 3, seed=5, subsample=True)
    with pytest.raises(ValueError, match="limit must be >= 0"):
        select(groups, -1)


def test_docs_table_lists_every_dataset() -> None:
    rows = [line for line in DOCS.read_text().splitlines() if re.match(r"\| `[a-z0-9]+` \|", line)]
    keys = [re.match(r"\| `([a-z0-9]+)`", line).group(1) for line in rows]
    assert sorted(keys) == sorted([*REAL, "synthetic"])
    for line, key in zip(rows, keys, strict=True):
        spec = data.get(key)
        assert f"`{spec.headline_metric}`" in line  # the headline metric is named
        if key != "synthetic":
            assert f"`{spec.hub_id}`" in line and spec.dimension in line and f"`{spec.split}`" in line


def test_docs_list_every_scoring_deviation() -> None:
    text = DOCS.read_text()
    for key in data.available():
        for rule, (default, _) in data.get(key).RULES.items():
            assert f"| `{rule}={not default!r}` |" in text, (key, rule)
