"""Reading a dataset's rows from the hub, a local copy (``save_to_disk`` or parquet) or a VLMEvalKit TSV.

Rows come back as plain dicts with images left *undecoded*, so that selecting a subset of a 9000-row
benchmark decodes only the images it keeps.
"""

from __future__ import annotations

import re
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


DEFAULT_CONFIG = "default"
# A file name that states its split: any name in the hub's sharded layout ("testmini-00000-of-00001.parquet"),
# or a split keyword alone or before a number ("test.parquet", "dev_0.parquet"). Kept literally ("dev" stays
# "dev"; ``datasets`` would rename it "validation").
_SHARDED = re.compile(r"^(\w+?)-\d{5}-of-\d{5}")
_KEYWORD = re.compile(
    r"^(train|training|test|testing|testmini|validation|valid|val|dev|eval|evaluation)(?:[-._]\d.*)?$"
)
# A directory that only holds data files in the hub layout ("data/test-0000.parquet"); not a split or config.
_DATA_DIR = "data"


def read_table(
    dataset: str,
    path: str | Path | None,
    *,
    hub_id: str,
    config: str | None,
    split: str,
    revision: str | None,
    config_given: bool = False,
) -> Table:
    """Read one split of ``dataset`` from ``path`` if given, else from the hub at ``revision``.

    ``config_given`` says the caller chose ``config`` explicitly (rather than the spec's default): only then is
    a single-config local copy that does not name it an error.
    """
    if path is None:
        return _check_rows(dataset, _read_hub(dataset, hub_id, config, split, revision))
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{dataset}: path {str(path)!r} does not exist")
    if path.is_file() and path.suffix.lower() in TSV_SUFFIXES:
        return _check_rows(dataset, _read_tsv(dataset, path))
    if path.is_file() and path.suffix.lower() == ".parquet":
        return _check_rows(dataset, _read_parquet([path], str(path)))
    if path.is_dir():
        if any((path / marker).exists() for marker in ("dataset_info.json", "dataset_dict.json", "state.json")):
            return _check_rows(dataset, _read_saved(dataset, path, split))
        files = _parquet_files(dataset, path, config, split, config_given)
        source = f"{path} (config {config!r}, split {split!r})" if config else f"{path} (split {split!r})"
        return _check_rows(dataset, _read_parquet(files, source))
    raise ValueError(
        f"{dataset}: cannot read {str(path)!r}; expected a .parquet file, a VLMEvalKit .tsv file, "
        "or a directory written by datasets.save_to_disk or holding parquet files"
    )


def _check_rows(dataset: str, table: Table) -> Table:
    if not table.rows:
        raise ValueError(f"{dataset}: {table.source} has no rows (columns: {table.columns})")
    return table


def _readme_configs(root: Path) -> list[dict[str, Any]]:
    """The ``configs:`` list of a hub repo's README.md YAML header (``[]`` when there is none)."""
    readme = root / "README.md"
    if not readme.is_file():
        return []
    text = readme.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return []
    header = text.split("---", 2)[1] if text.count("---") >= 2 else ""
    import yaml

    try:
        meta = yaml.safe_load(header) or {}
    except yaml.YAMLError:
        return []
    configs = meta.get("configs") if isinstance(meta, dict) else None
    return [c for c in configs if isinstance(c, dict) and "config_name" in c] if isinstance(configs, list) else []


def _config_splits(root: Path, entry: dict[str, Any]) -> dict[str, list[Path]]:
    """``{split: files}`` of one README config entry (``data_files`` as a list of {split, path} or one glob)."""
    data_files = entry.get("data_files", [])
    if isinstance(data_files, dict):  # {split: pattern(s)}
        data_files = [{"split": k, "path": v} for k, v in data_files.items()]
    elif isinstance(data_files, str) or (data_files and not isinstance(data_files[0], dict)):
        data_files = [{"split": "train", "path": data_files}]  # bare patterns: one "train" split
    splits: dict[str, list[Path]] = {}
    for item in data_files:
        patterns = item.get("path", [])
        for pattern in [patterns] if isinstance(patterns, str) else patterns:
            splits.setdefault(str(item.get("split", "train")), []).extend(sorted(root.glob(pattern)))
    return splits


def _inferred_layout(root: Path, files: list[Path]) -> dict[str, dict[str, list[Path]]]:
    """``{config: {split: files}}`` from the file layout alone: first-level directories (other than ``data`` and
    split names) are configs when every file lies in one (``en/dev-0000.parquet``), else there is one config,
    ``default``. A
    file's split is its directory below the config (``testmini/x.parquet``) or the name it starts with
    (``test-00000-of-00001.parquet``); files that name no split are ``train``, as ``datasets`` reads them."""
    parts = [f.relative_to(root).parts for f in files]
    by_dir = all(len(p) > 1 and p[0] != _DATA_DIR and not _KEYWORD.match(p[0]) for p in parts)
    layout: dict[str, dict[str, list[Path]]] = {}
    for f, p in zip(files, parts, strict=True):
        config, rest = (p[0], p[1:]) if by_dir else (DEFAULT_CONFIG, p)
        dirs = [d for d in rest[:-1] if d != _DATA_DIR]
        stem = rest[-1][: -len(".parquet")]
        named = _SHARDED.match(stem) or _KEYWORD.match(stem)
        split = dirs[-1] if dirs else named.group(1) if named else "train"
        layout.setdefault(config, {}).setdefault(split, []).append(f)
    return layout


def _parquet_files(dataset: str, root: Path, config: str | None, split: str, config_given: bool) -> list[Path]:
    """The parquet files of ``config`` / ``split`` in a local copy of a hub repo, chosen as
    ``datasets.load_dataset`` does: the README's ``configs`` when it declares them, else the file layout.
    An unknown config or split is an error naming the ones that exist; two splits are never merged."""
    files = sorted(root.rglob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"{dataset}: no parquet files under {str(root)!r}")
    declared = _readme_configs(root)
    if declared:
        layout = {str(c["config_name"]): _config_splits(root, c) for c in declared}
        defaults = [str(c["config_name"]) for c in declared if c.get("default")]
    else:
        layout = _inferred_layout(root, files)
        defaults = [DEFAULT_CONFIG] if DEFAULT_CONFIG in layout else []
    if config is None or (config not in layout and not config_given and len(layout) == 1):
        # No config asked for (or only the spec's default, and the copy holds a single one): take the
        # default config, or the only one.
        candidates = defaults or (list(layout) if len(layout) == 1 else [])
        if not candidates:
            raise ValueError(f"{dataset}: {str(root)!r} holds configs {sorted(layout)}; pass config= to choose one")
        config = candidates[0]
    if config not in layout:
        raise ValueError(f"{dataset}: config {config!r} not in {str(root)!r}; it has {sorted(layout)}")
    splits = layout[config]
    if split not in splits:
        raise ValueError(
            f"{dataset}: split {split!r} not in {str(root)!r} (config {config!r}); it has {sorted(splits)}"
        )
    chosen = [f for f in splits[split] if f.suffix.lower() == ".parquet"]
    if not chosen:
        raise FileNotFoundError(f"{dataset}: no parquet files for config {config!r} split {split!r} in {str(root)!r}")
    return chosen


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


def _read_tsv(dataset: str, path: Path) -> Table:
    import pandas as pd

    # Everything as text: VLMEvalKit writes "nan" for empty options and stringified lists; parsing those is
    # the adapter's job, not pandas' guesswork (which would turn "1" answers into ints and "NA" into NaN).
    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{dataset}: {path} is empty (no header, no rows); expected a VLMEvalKit TSV") from None
    if frame.empty:
        raise ValueError(f"{dataset}: {path} has a header but no rows (columns: {list(frame.columns)})")
    rows = frame.to_dict("records")
    if "image" in frame.columns and "index" in frame.columns:
        by_index = {row["index"]: row["image"] for row in rows}
        for row in rows:
            ref = row["image"]
            if len(ref) <= _IMAGE_REFERENCE_MAX and ref in by_index and len(by_index[ref]) > _IMAGE_REFERENCE_MAX:
                row["image"] = by_index[ref]
    return Table(rows, list(frame.columns), str(path), "tsv")
