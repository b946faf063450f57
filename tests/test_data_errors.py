"""Bad input fails early with a message naming the dataset, the row and the field."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from unipb_core import data

FIXTURES = Path(__file__).parent / "fixtures" / "datasets"


def test_missing_column_names_dataset_column_and_row(tmp_path: Path) -> None:
    table = pq.read_table(FIXTURES / "pope.parquet").drop_columns(["category"])
    pq.write_table(table, tmp_path / "pope.parquet")
    with pytest.raises(ValueError, match=r"pope: .*pope\.parquet has no column\(s\) \['category'\] .*row 0"):
        data.load("pope", path=tmp_path / "pope.parquet")


def test_missing_tsv_column(tmp_path: Path) -> None:
    frame = pd.read_csv(FIXTURES / "mme.tsv", sep="\t", dtype=str).drop(columns=["image_path"])
    frame.to_csv(tmp_path / "mme.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match=r"mme: .* has no column\(s\) \['image_path'\].*VLMEvalKit TSV format"):
        data.load("mme", path=tmp_path / "mme.tsv")


def test_undecodable_image_names_row_and_field(tmp_path: Path) -> None:
    frame = pd.read_csv(FIXTURES / "pope.tsv", sep="\t", dtype=str)
    frame.loc[1, "image"] = "bm90IGFuIGltYWdl"  # valid base64 of "not an image"
    frame.to_csv(tmp_path / "pope.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match=r"pope: row '1': field 'image': cannot decode image"):
        data.load("pope", path=tmp_path / "pope.tsv")
    # Only kept rows are decoded: the first row alone still loads.
    assert len(data.load("pope", path=tmp_path / "pope.tsv", limit=1)) == 1


def test_undecodable_hf_image(tmp_path: Path) -> None:
    frame = pq.read_table(FIXTURES / "mathvision.parquet").to_pandas()
    frame.at[2, "decoded_image"] = {"bytes": b"\x89PNG broken", "path": None}
    frame.to_parquet(tmp_path / "mathvision.parquet")
    with pytest.raises(ValueError, match=r"mathvision: row '3': field 'decoded_image': cannot decode image"):
        data.load("mathvision", path=tmp_path / "mathvision.parquet")


def test_empty_required_value_names_row_and_field(tmp_path: Path) -> None:
    frame = pd.read_csv(FIXTURES / "mme.tsv", sep="\t", dtype=str, keep_default_na=False)
    frame.loc[3, "answer"] = ""
    frame.to_csv(tmp_path / "mme.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match=r"mme: row '3': field 'answer' is empty"):
        data.load("mme", path=tmp_path / "mme.tsv")


def test_invalid_values_are_rejected(tmp_path: Path) -> None:
    frame = pd.read_csv(FIXTURES / "mme.tsv", sep="\t", dtype=str)
    frame.loc[0, "category"] = "existance"
    frame.to_csv(tmp_path / "mme.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match=r"mme: row '0': field 'category' is 'existance'"):
        data.load("mme", path=tmp_path / "mme.tsv")
    frame = pd.read_csv(FIXTURES / "pope.tsv", sep="\t", dtype=str)
    frame.loc[2, "answer"] = "Maybe"
    frame.to_csv(tmp_path / "pope.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match=r"pope: row '2': field 'answer' is 'Maybe'; expected yes or no"):
        data.load("pope", path=tmp_path / "pope.tsv")


def test_duplicate_ids_are_rejected(tmp_path: Path) -> None:
    frame = pd.read_csv(FIXTURES / "pope.tsv", sep="\t", dtype=str)
    frame.loc[2, "index"] = "1"
    frame.to_csv(tmp_path / "pope.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match=r"pope: .* repeats sample ids \['1'\]"):
        data.load("pope", path=tmp_path / "pope.tsv")


def test_unparseable_answer_is_wrong_and_counted() -> None:
    spec = data.get("scienceqa")
    samples = data.load("scienceqa", path=FIXTURES / "scienceqa.parquet")
    scores = [spec.score(s, "I would need more context to answer this question properly.") for s in samples]
    assert all(s.correct == 0.0 and not s.parsed and s.extracted == "" for s in scores)
    result = spec.aggregate(samples, scores)
    assert result["parse_failure_rate"] == 1.0 and result["n"] == 3.0 and result["accuracy"] == 0.0


def test_unknown_names_list_valid_keys_and_close_matches() -> None:
    with pytest.raises(ValueError, match=r"unknown dataset 'popee'; valid keys: hallusionbench, .*Did you mean 'pope'"):
        data.get("popee")
    with pytest.raises(ValueError, match="unknown dimension 'vision'; expected one of comprehensive"):
        data.load("pope", path=FIXTURES / "pope.parquet", dimension="vision")
    with pytest.raises(ValueError, match="synthetic: unknown split 'validation'"):
        data.load("synthetic", split="validation")


def test_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="pope: path .* does not exist"):
        data.load("pope", path=tmp_path / "missing.parquet")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"pope: cannot read .*notes\.txt.*expected a \.parquet file"):
        data.load("pope", path=tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError, match="pope: no parquet files under"):
        data.load("pope", path=tmp_path)


def test_unreachable_hub_gives_an_offline_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(RuntimeError, match=r"pope: could not load lmms-lab/POPE split 'test' revision 'abc123'.*path="):
        data.load("pope", revision="abc123")


def test_malformed_cell_names_dataset_and_row(tmp_path: Path) -> None:
    frame = pd.read_csv(FIXTURES / "miabench.tsv", sep="\t", dtype=str)
    frame.loc[1, "component_weight"] = "[5, 5"
    frame.to_csv(tmp_path / "miabench.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match=r"miabench: row 1: ValueError: cannot read a list from '\[5, 5'"):
        data.load("miabench", path=tmp_path / "miabench.tsv")
