"""Every adapter on its fixtures, in both the Hugging Face schema and the VLMEvalKit TSV."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from unipb_core import data

FIXTURES = Path(__file__).parent / "fixtures" / "datasets"
ROWS = {  # fixture rows per dataset: (parquet, tsv)
    "mme": (8, 8),
    "mmbench": (6, 6),
    "mathvista": (5, 5),
    "mathvision": (3, 3),
    "seedbench2plus": (3, 3),
    "ocrbench": (4, 4),
    "miabench": (3, 3),
    "scienceqa": (3, 3),
    "pope": (6, 3),
    "hallusionbench": (6, 6),
}


def hf_path(name: str) -> Path:
    return FIXTURES / "mmbench" if name == "mmbench" else FIXTURES / f"{name}.parquet"


def gold_prediction(sample: data.Sample) -> str:
    """A response that is right by construction (MIA-Bench has no gold; any substantive text)."""
    if sample.dataset == "ocrbench":
        return sample.meta["answers"][0]
    return "Look at this." if sample.dataset == "miabench" else sample.answer


@pytest.mark.parametrize("fmt", ["hf", "tsv"])
@pytest.mark.parametrize("name", sorted(ROWS))
def test_adapter_loads_prompts_and_scores_its_fixture(name: str, fmt: str) -> None:
    path = hf_path(name) if fmt == "hf" else FIXTURES / f"{name}.tsv"
    spec = data.get(name)
    samples = data.load(name, path=path)
    assert len(samples) == ROWS[name][0 if fmt == "hf" else 1]
    assert len({s.id for s in samples}) == len(samples)
    for sample in samples:
        assert sample.dataset == name and sample.dimension == data.DATASET_DIMENSION[name]
        assert len(sample.images) == 1 and isinstance(sample.images[0], Image.Image)
        assert sample.images[0].mode == "RGB" and sample.images[0].size == (32, 32)
        assert "group" in sample.meta
        prompt = spec.to_prompt(sample)
        if sample.meta.get("is_query"):  # MathVista TSV: the official query, choices written "(A) ..."
            assert prompt == sample.question
            continue
        assert sample.question.split("\n")[0] in prompt
        for i, option in enumerate(sample.options):
            assert f"{'ABCDE'[i]}. {option}" in prompt
    scores = [spec.score(s, gold_prediction(s)) for s in samples]
    result = spec.aggregate(samples, scores)
    assert result["parse_failure_rate"] == 0.0 and result["n"] == len(samples)
    if name != "miabench":
        assert result["headline"] == 100.0


def test_mme_pairs_share_a_group_and_tsv_images_resolve_references() -> None:
    hf = data.load("mme", path=FIXTURES / "mme.parquet")
    assert hf[0].meta["group"] == hf[1].meta["group"] == "existence/existence/000000061418.jpg"
    assert hf[0].answer == "yes" and hf[1].answer == "no"
    tsv = data.load("mme", path=FIXTURES / "mme.tsv")
    # Row 1's image cell is the index "0": it must decode to row 0's picture.
    assert tsv[1].images[0].tobytes() == tsv[0].images[0].tobytes()
    assert tsv[1].images[0].tobytes() != tsv[2].images[0].tobytes()
    assert [s.meta["group"] for s in tsv] == [s.meta["group"] for s in hf]


def test_mmbench_copies_group_by_question_and_drop_missing_options() -> None:
    samples = data.load("mmbench", path=FIXTURES / "mmbench")
    assert [s.meta["group"] for s in samples] == ["0", "0", "0", "0", "1", "1"]
    assert [s.meta["circular_copy"] for s in samples[:2]] == [False, True]
    assert samples[4].options == ["yes", "no"]  # "nan" columns C and D are not options
    assert samples[4].meta["hint"] == ""
    assert samples[1].options == ["horse", "sheep", "goat", "cow"] and samples[1].answer == "A"
    assert data.get("mmbench").to_prompt(samples[0]).startswith("Hint: A photo from a farm.\nQuestion:")


def test_field_mapping_of_the_other_adapters() -> None:
    pope = data.load("pope", path=FIXTURES / "pope.tsv")
    assert pope[0].meta["splits"] == ["adversarial", "popular", "random"] and pope[0].answer == "yes"
    hb = data.load("hallusionbench", path=FIXTURES / "hallusionbench.parquet")
    assert hb[0].meta["figure"] == "VD_chart_0_0" and hb[0].meta["question_key"] == "VD_chart_0_0"
    assert hb[2].meta["figure"] == "VD_chart_0_1" and hb[2].meta["question_key"] == "VD_chart_0_0"
    hb_tsv = data.load("hallusionbench", path=FIXTURES / "hallusionbench.tsv")
    assert [s.meta["figure"] for s in hb_tsv] == [s.meta["figure"] for s in hb]
    sqa = data.load("scienceqa", path=FIXTURES / "scienceqa.parquet")
    assert sqa[0].answer == "B" and sqa[0].category == "social science"
    assert data.get("scienceqa").to_prompt(sqa[1]).startswith("Context: Look at the picture.\n")
    ocr = data.load("ocrbench", path=FIXTURES / "ocrbench.tsv")
    assert (
        ocr[1].meta["answers"] == ["Blue Cafe", "blue cafe shop"]
        and json.loads(ocr[1].answer) == ocr[1].meta["answers"]
    )
    assert ocr[2].meta["hme"] and not ocr[0].meta["hme"]
    vista = data.load("mathvista", path=FIXTURES / "mathvista.parquet")
    assert [s.answer for s in vista] == ["B", "7", "2.5", "[1,3]", "east"]
    assert vista[0].category == "figure QA"
    assert data.get("mathvista").to_prompt(vista[2]).endswith("with one decimal place.")
    vista_tsv = data.load("mathvista", path=FIXTURES / "mathvista.tsv")
    assert data.get("mathvista").to_prompt(vista_tsv[0]) == vista_tsv[0].question  # the official query, as is
    mia = data.load("miabench", path=FIXTURES / "miabench.tsv")
    assert mia[0].meta["weights"] == [4.0, 3.0, 3.0] and mia[0].category == "description"


def test_limit_keeps_the_first_rows() -> None:
    samples = data.load("pope", path=FIXTURES / "pope.parquet", limit=4)
    assert [s.id for s in samples] == ["0", "1", "2", "3"]


def test_subsample_keeps_groups_whole_and_is_seeded() -> None:
    path = FIXTURES / "hallusionbench.parquet"
    first = data.load("hallusionbench", path=path, limit=3, subsample=True, seed=1)
    again = data.load("hallusionbench", path=path, limit=3, subsample=True, seed=1)
    assert [s.id for s in first] == [s.id for s in again]
    groups = {s.meta["group"] for s in first}
    full = data.load("hallusionbench", path=path)
    assert len(first) == sum(s.meta["group"] in groups for s in full)  # every member of a kept set
    seeds = {
        tuple(s.id for s in data.load("mme", path=FIXTURES / "mme.tsv", limit=2, subsample=True, seed=k))
        for k in range(8)
    }
    assert len(seeds) > 1  # different seeds draw different pairs
    for ids in seeds:
        assert len(ids) == 2 and int(ids[0]) // 2 == int(ids[1]) // 2  # one whole MME pair


def test_dimension_filter() -> None:
    path = FIXTURES / "pope.parquet"
    assert len(data.load("pope", path=path, dimension="hallucination")) == 6
    assert data.load("pope", path=path, dimension="ocr") == []


def test_save_to_disk_directory_and_split_selection(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    table = Dataset.from_parquet(str(FIXTURES / "pope.parquet"))
    table.save_to_disk(str(tmp_path / "single"))
    assert len(data.load("pope", path=tmp_path / "single")) == 6
    DatasetDict({"test": table, "validation": table.select(range(2))}).save_to_disk(str(tmp_path / "dict"))
    assert len(data.load("pope", path=tmp_path / "dict", split="validation")) == 2
    with pytest.raises(ValueError, match=r"pope: split 'train' not in .* it has \['test', 'validation'\]"):
        data.load("pope", path=tmp_path / "dict", split="train")
