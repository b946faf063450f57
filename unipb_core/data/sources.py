"""Reading a dataset's rows from the hub, a local copy (``save_to_disk`` or parquet) or a VLMEvalKit TSV.

Rows come back as plain dicts with images left *undecoded*, so that selecting a subset of a 9000-row
benchmark decodes only the images it keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

TSV_SUFFIXES = (".tsv",)
# VLMEvalKit stores a repeated image once; later rows hold the index of the row that has it (<= 64 chars).
_IMAGE_REFERENCE_MAX = 64


@dataclass
class Table:
    """Rows of one split plus where they came from (for error messages) and their format."""

    rows: list[dict[str, Any]]
    columns: list[str]
    source: str
    fmt: str  # "hf" (Hugging Face column schema) or "tsv" (VLMEvalKit schema)


def read_table(
    dataset: str,
    path: str | Path | None,
    *,
    hub_id: str,
    config: str | None,
    split: str,
    revision: str | None,
) -> Table:
    """Read one split of ``dataset`` from ``path`` if given, else from the hub at ``revision``."""
    if path is None:
        return _read_hub(dataset, hub_id, config, split, revision)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{dataset}: path {str(path)!r} does not exist")
    if path.is_file() and path.suffix.lower() in TSV_SUFFIXES:
        return _read_tsv(path)
    if path.is_file() and path.suffix.lower() == ".parquet":
        return _read_parquet([path], str(path))
    if path.is_dir():
        if any((path / marker).exists() for marker in ("dataset_info.json", "dataset_dict.json", "state.json")):
            return _read_saved(dataset, path, split)
        return _read_parquet(_parquet_files(dataset, path, config, split), str(path))
    raise ValueError(
        f"{dataset}: cannot read {str(path)!r}; expected a .parquet file, a VLMEvalKit .tsv file, "
        "or a directory written by datasets.save_to_disk or holding parquet files"
    )


def _parquet_files(dataset: str, root: Path, config: str | None, split: str) -> list[Path]:
    """Parquet files of ``split`` under ``root``, following the hub layouts (``data/test-0000.parquet``,
    ``en/dev-0000.parquet``, ``testmini/...``). A directory whose files name no split is one table."""
    files = sorted(root.rglob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"{dataset}: no parquet files under {str(root)!r}")
    if config and any(config in f.relative_to(root).parts[:-1] for f in files):
        files = [f for f in files if config in f.relative_to(root).parts[:-1]]
    named = [f for f in files if f.name.startswith((f"{split}-", f"{split}.", f"{split}_")) or f.parent.name == split]
    return named or files


def _read_parquet(files: list[Path], source: str) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")
    return Table(table.to_pylist(), table.column_names, source, "hf")


def _undecoded_rows(ds: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of a ``datasets.Dataset`` with Image columns kept as ``{"bytes", "path"}`` structs."""
    from datasets import Image as HFImage

    for name, feature in ds.features.items():
        if isinstance(feature, HFImage):
            ds = ds.cast_column(name, HFImage(decode=False))
    return ds.to_list(), list(ds.column_names)


def _read_saved(dataset: str, path: Path, split: str) -> Table:
    from datasets import DatasetDict, load_from_disk

    ds = load_from_disk(str(path))
    if isinstance(ds, DatasetDict):
        if split not in ds:
            raise ValueError(f"{dataset}: split {split!r} not in {str(path)!r}; it has {sorted(ds)}")
        ds = ds[split]
    rows, columns = _undecoded_rows(ds)
    return Table(rows, columns, str(path), "hf")


def _read_hub(dataset: str, hub_id: str, config: str | None, split: str, revision: str | None) -> Table:
    from datasets import load_dataset

    where = f"{hub_id}" + (f" (config {config!r})" if config else "") + f" split {split!r} revision {revision!r}"
    try:
        ds = load_dataset(hub_id, config, split=split, revision=revision)
    except Exception as err:  # network, auth and missing-revision errors all land here
        raise RuntimeError(
            f"{dataset}: could not load {where} from the Hugging Face hub ({type(err).__name__}: {err}). "
            "Offline? Download it once and pass path= (a save_to_disk directory, parquet files or a VLMEvalKit TSV)."
        ) from err
    rows, columns = _undecoded_rows(ds)
    return Table(rows, columns, f"hub:{where}", "hf")


def _read_tsv(path: Path) -> Table:
    import pandas as pd

    # Everything as text: VLMEvalKit writes "nan" for empty options and stringified lists; parsing those is
    # the adapter's job, not pandas' guesswork (which would turn "1" answers into ints and "NA" into NaN).
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    rows = frame.to_dict("records")
    if "image" in frame.columns and "index" in frame.columns:
        by_index = {row["index"]: row["image"] for row in rows}
        for row in rows:
            ref = row["image"]
            if len(ref) <= _IMAGE_REFERENCE_MAX and ref in by_index and len(by_index[ref]) > _IMAGE_REFERENCE_MAX:
                row["image"] = by_index[ref]
    return Table(rows, list(frame.columns), str(path), "tsv")
