"""Choosing what to load: config and split of a local hub copy, empty inputs, prompts of VLMEvalKit TSVs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from unipb_core import data

FIXTURES = Path(__file__).parent / "fixtures" / "datasets"
MMBENCH_DEV = FIXTURES / "mmbench" / "en" / "dev-00000-of-00001.parquet"
README = """---
dataset_info:
  features: []
configs:
- config_name: cn
  data_files:
  - split: dev
    path: cn/dev-*
- config_name: en
  data_files:
  - split: dev
    path: en/dev-*
  - split: test
    path: en/test-*
---
# MMBench (a local copy of the hub repo)
"""


@pytest.fixture
def mmbench_repo(tmp_path: Path) -> Path:
    """A local copy of a multi-config hub repo: configs en (dev 6 rows, test 2 rows) and cn (dev 3 rows)."""
    table = pq.read_table(MMBENCH_DEV)
    for rel, rows in (("en/dev-00000-of-00001.parquet", 6), ("en/test-00000-of-00001.parquet", 2),
                      ("cn/dev-00000-of-00001.parquet", 3)):  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.slice(0, rows), tmp_path / rel)
    (tmp_path / "README.md").write_text(README)
    return tmp_path


def test_readme_configs_choose_config_and_split(mmbench_repo: Path) -> None:
    assert len(data.load("mmbench", path=mmbench_repo)) == 6  # the spec's config "en" and split "dev"
    assert len(data.load("mmbench", path=mmbench_repo, split="test")) == 2  # never merged with dev
    assert len(data.load("mmbench", path=mmbench_repo, config="cn")) == 3


def test_unknown_config_or_split_names_the_existing_ones(mmbench_repo: Path) -> None:
    with pytest.raises(ValueError, match=r"mmbench: config 'fr' not in .*; it has \['cn', 'en'\]"):
        data.load("mmbench", path=mmbench_repo, config="fr")
    with pytest.raises(
        ValueError, match=r"mmbench: split 'validation' not in .*\(config 'en'\); it has \['dev', 'test'\]"
    ):
        data.load("mmbench", path=mmbench_repo, split="validation")
    with pytest.raises(ValueError, match=r"split 'test' not in .*\(config 'cn'\); it has \['dev'\]"):
        data.load("mmbench", path=mmbench_repo, config="cn", split="test")


def test_layout_without_readme(mmbench_repo: Path, tmp_path: Path) -> None:
    (mmbench_repo / "README.md").unlink()  # configs now come from the first-level folders
    assert len(data.load("mmbench", path=mmbench_repo, config="cn")) == 3
    with pytest.raises(ValueError, match=r"config 'fr' not in .*; it has \['cn', 'en'\]"):
        data.load("mmbench", path=mmbench_repo, config="fr")
    # The push_to_hub layout of one config: data/<split>-NNNNN-of-NNNNN.parquet, any split name.
    flat = tmp_path / "pope_repo"
    (flat / "data").mkdir(parents=True)
    table = pq.read_table(FIXTURES / "pope.parquet")
    pq.write_table(table, flat / "data" / "test-00000-of-00001.parquet")
    pq.write_table(table.slice(0, 2), flat / "data" / "validation-00000-of-00001.parquet")
    assert len(data.load("pope", path=flat)) == 6
    assert len(data.load("pope", path=flat, split="validation")) == 2
    with pytest.raises(ValueError, match=r"pope: split 'train' not in .*; it has \['test', 'validation'\]"):
        data.load("pope", path=flat, split="train")
    with pytest.raises(ValueError, match=r"pope: config 'Full' not in .*; it has \['default'\]"):
        data.load("pope", path=flat, config="Full")


def test_split_folders(tmp_path: Path) -> None:
    for split, rows in (("test", 6), ("testmini", 2)):
        (tmp_path / split).mkdir()
        pq.write_table(pq.read_table(FIXTURES / "pope.parquet").slice(0, rows), tmp_path / split / "part.parquet")
    assert len(data.load("pope", path=tmp_path)) == 6
    assert len(data.load("pope", path=tmp_path, split="testmini")) == 2


def test_files_that_name_no_split_are_train_not_any_split(tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    folder.mkdir()
    shutil.copy(FIXTURES / "pope.parquet", folder / "pope.parquet")
    with pytest.raises(ValueError, match=r"pope: split 'test' not in .*; it has \['train'\]"):
        data.load("pope", path=folder)
    assert len(data.load("pope", path=folder, split="train")) == 6


def test_empty_inputs_name_dataset_and_file(tmp_path: Path) -> None:
    empty_parquet = tmp_path / "pope.parquet"
    pq.write_table(pq.read_table(FIXTURES / "pope.parquet").slice(0, 0), empty_parquet)
    with pytest.raises(ValueError, match=r"pope: .*pope\.parquet has no rows"):
        data.load("pope", path=empty_parquet)
    (tmp_path / "empty.tsv").write_text("")
    with pytest.raises(ValueError, match=r"pope: .*empty\.tsv is empty \(no header, no rows\)"):
        data.load("pope", path=tmp_path / "empty.tsv")
    (tmp_path / "header.tsv").write_text("index\timage\tquestion\tanswer\tcategory\n")
    with pytest.raises(ValueError, match=r"pope: .*header\.tsv has a header but no rows"):
        data.load("pope", path=tmp_path / "header.tsv")


def _tsv_with(tmp_path: Path, name: str, **columns: list[str]) -> Path:
    frame = pd.read_csv(FIXTURES / f"{name}.tsv", sep="\t", dtype=str, keep_default_na=False)
    for column, values in columns.items():
        frame[column] = values
    path = tmp_path / f"{name}.tsv"
    frame.to_csv(path, sep="\t", index=False)
    return path


def test_tsv_question_that_lists_its_choices_is_not_listed_twice(tmp_path: Path) -> None:
    questions = ["What is the highest value?\nA. 10\nB. 20\nC. 30\nD. 40", "Which city is north?", "Title?"]
    path = _tsv_with(tmp_path, "seedbench2plus", question=questions)
    spec = data.get("seedbench2plus")
    first, second = (spec.to_prompt(s) for s in data.load("seedbench2plus", path=path)[:2])
    assert first.count("B. 20") == 1 and first.endswith(
        "Answer with the option's letter from the given choices directly."
    )
    assert "A. Oslo" in second  # a question without its choices still gets them
    frame = pd.read_csv(FIXTURES / "mathvision.tsv", sep="\t", dtype=str, keep_default_na=False)
    frame.loc[0, "question"] += "\n(A) 3 (B) 4 (C) 5 (D) 6 (E) 8"
    frame.to_csv(tmp_path / "mathvision.tsv", sep="\t", index=False)
    prompt = data.get("mathvision").to_prompt(data.load("mathvision", path=tmp_path / "mathvision.tsv")[0])
    assert prompt.count("5") == 1 and "Choices:" not in prompt


def test_scienceqa_tsv_keeps_its_subject(tmp_path: Path) -> None:
    # A TSV whose "category" is the fine skill category and whose subject has a column of its own.
    path = _tsv_with(tmp_path, "scienceqa", category=["Geography", "Materials", "Rhyming"],
                     subject=["social science", "natural science", "language science"])  # fmt: skip
    samples = data.load("scienceqa", path=path)
    assert [s.category for s in samples] == ["social science", "natural science", "language science"]
    spec = data.get("scienceqa")
    agg = spec.aggregate(samples, [spec.score(s, s.answer) for s in samples])
    assert agg["category/social science"] == 100.0 and "category/Geography" not in agg
