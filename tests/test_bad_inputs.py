"""Every user mistake is one `error:` line naming the culprit, exit status 2, before any model loads, with
nothing written (no store, not even its folder)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from unipb_core import cli

FIXTURES = Path(__file__).parent / "fixtures" / "datasets"
GOOD = {
    "models": ["tiny:llava"],
    "datasets": ["synthetic"],
    "dimensions": ["ocr"],
    "methods": ["fastv"],
    "ratios": [0.889],
    "seeds": [0],
    "limit": 2,
}
POPE = {"datasets": ["pope"], "dimensions": []}


def _pope_without_category(tmp: Path) -> dict:
    table = pq.read_table(FIXTURES / "pope.parquet").drop_columns(["category"])
    pq.write_table(table, tmp / "pope.parquet")
    return {**POPE, "data_paths": {"pope": str(tmp / "pope.parquet")}}


def _pope_corrupt_image(tmp: Path) -> dict:
    frame = pd.read_csv(FIXTURES / "pope.tsv", sep="\t", dtype=str)
    frame.loc[0, "image"] = "not base64! " * 500  # long and not base64: must not be read as a file name
    frame.to_csv(tmp / "pope.tsv", sep="\t", index=False)
    return {**POPE, "data_paths": {"pope": str(tmp / "pope.tsv")}}


def _file(tmp: Path, name: str, text: str) -> str:
    (tmp / name).write_text(text)
    return str(tmp / name)


# (case id, params overrides -- or a callable(tmp) returning them --, regex the one error line must match)
CASES = [
    ("unknown-key", {"modles": ["tiny:llava"]}, r"'modles' is not accepted.*Did you mean: models"),
    ("unknown-model", {"models": ["tiny:lava"]}, r"'models': 'tiny:lava'.*Did you mean: tiny:llava"),
    ("no-models", {"models": []}, r"'models' and 'datasets' must each name"),
    ("unknown-dataset", {"datasets": ["popee"]}, r"'datasets': 'popee'.*Did you mean: pope"),
    ("unknown-dimension", {"dimensions": ["ocrr"]}, r"'dimensions': 'ocrr'.*Did you mean: ocr"),
    ("unknown-method", {"methods": ["fastvv"]}, r"'methods': 'fastvv'.*Did you mean: fastv"),
    ("filter-selects-nothing", {**POPE, "dimensions": ["ocr"]}, r"selects no cells.*\['pope'\].*\['ocr'\]"),
    ("ratios-empty", {"ratios": []}, r"'ratios' is empty"),
    ("ratios-bool", {"ratios": [False]}, r"'ratios': False is not accepted; expected numbers in \[0, 1\)"),
    ("ratios-out-of-range", {"ratios": [1.2]}, r"'ratios': 1.2 is not accepted"),
    ("ratios-string", {"ratios": ["half"]}, r"'ratios': 'half' is not accepted"),
    ("ratios-twice", {"ratios": [0.889, 0.889]}, r"'ratios': 0.889 is listed twice"),
    ("seeds-float", {"seeds": [1.5]}, r"'seeds': \[1.5\].*non-negative integers"),
    ("seeds-bool", {"seeds": [True]}, r"'seeds': \[True\]"),
    ("limit-zero", {"limit": 0}, r"'limit': 0.*positive integer"),
    ("limit-string", {"limit": "ten"}, r"'limit': 'ten'"),
    ("subsample-maybe", {"subsample": "maybe"}, r"'subsample': 'maybe'.*true or false"),
    ("max-new-tokens-string", {"max_new_tokens": "lots"}, r"'max_new_tokens': 'lots'.*positive integer"),
    ("max-new-tokens-negative", {"max_new_tokens": -5}, r"'max_new_tokens': -5"),
    ("dtype", {"dtype": "float13"}, r"'dtype': 'float13'.*Did you mean: float32, float16"),
    ("attn", {"attn_implementation": "flash"}, r"'attn_implementation': 'flash'.*flash_attention_2"),
    ("positions", {"positions": "diagonal"}, r"'positions': 'diagonal'.*original, contiguous"),
    ("executor", {"executor": "slurm"}, r"'executor': 'slurm'.*local, ray"),
    ("split-unknown", {"split": "bogus"}, r"dataset 'synthetic/ocr'.*unknown split 'bogus'"),
    ("data-paths-typo", {"data_paths": {"synthetik": "x"}}, r"'data_paths.synthetik'.*Did you mean: synthetic"),
    ("revisions-typo", {"revisions": {"popee": "main"}}, r"'revisions.popee'.*Accepted: synthetic"),
    ("data-paths-not-mapping", {"data_paths": ["x"]}, r"'data_paths': \['x'\].*mapping"),
    ("data-path-missing", {**POPE, "data_paths": {"pope": "/no/such/POPE.tsv"}}, r"'data_paths.pope'.*does not exist"),
    ("missing-column", _pope_without_category, r"dataset 'pope'.*no column\(s\) \['category'\]"),
    ("corrupt-image", _pope_corrupt_image, r"dataset 'pope'.*field 'image': cannot decode image.*not valid base64"),
    ("method-params-scalar", {"method_params": {"fastv": "last"}}, r"'method_params.fastv': 'last'.*mapping"),
    ("method-params-list", {"method_params": ["fastv"]}, r"'method_params': \['fastv'\].*mapping"),
    ("method-params-unknown-method", {"method_params": {"fastvv": {}}}, r"'method_params': 'fastvv'"),
    ("method-param-unknown", {"method_params": {"fastv": {"lyer": 3}}}, r"unknown parameter.*lyer; accepted: layer"),
    ("layer-float", {"method_params": {"fastv": {"layer": 2.5}}}, r"'fastv'.*'layer' = 2.5.*expected an integer"),
    ("layer-string", {"method_params": {"fastv": {"layer": "two"}}}, r"'layer' = 'two' \(str\)"),
    ("layer-bool", {"method_params": {"fastv": {"layer": True}}}, r"'layer' = True \(bool\)"),
    ("layer-outside-model", {"method_params": {"fastv": {"layer": 99}}}, r"layer 99.*tiny:llava.*8 layers.*0\.\.7"),
    ("method-own-check", {"method_params": {"fastv": {"queries": "first"}}}, r"fastv: queries must be"),
    (
        "positions-contiguous-on-mrope",
        {"models": ["tiny:qwen2_5_vl"], "positions": "contiguous"},
        r"'positions': 'contiguous' is defined for 1-D RoPE families; tiny:qwen2_5_vl",
    ),
    ("store-directory", lambda tmp: {"store": str(tmp)}, r"'store'.*is a directory"),
    ("store-under-file", lambda tmp: {"store": _file(tmp, "f.txt", "x") + "/s.sqlite"}, r"which is a file"),
    ("store-not-sqlite", lambda tmp: {"store": _file(tmp, "notes.sqlite", "hello")}, r"not an SQLite database"),
]


def _inputs(tmp_path: Path) -> set[Path]:
    return {p for p in tmp_path.rglob("*")}


@pytest.mark.parametrize("case,overrides,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, monkeypatch, capsys, case, overrides, message):
    monkeypatch.setattr("unipb_core.models.load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    monkeypatch.setattr("unipb_core.grid.execute", lambda *a, **k: pytest.fail("the grid started"))
    if callable(overrides):
        overrides = overrides(tmp_path)
    params = {**GOOD, "store": str(tmp_path / "out" / "store.sqlite"), **overrides}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    before = {p: p.stat().st_mtime_ns for p in _inputs(tmp_path)}
    assert cli.main(["run", "--quiet", str(path)]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(message, lines[0]), lines[0]
    assert out == ""
    assert {p: p.stat().st_mtime_ns for p in _inputs(tmp_path)} == before  # nothing created or changed


@pytest.mark.parametrize(
    "text,message",
    [
        ("", r"is empty"),
        ("- tiny:llava\n- synthetic\n", r"must be a mapping of keys to values, got a list"),
        ("just a string\n", r"must be a mapping of keys to values, got a str"),
        ("models: [tiny:llava\n", r"is not valid YAML"),
    ],
    ids=["empty", "list", "scalar", "broken-yaml"],
)
def test_bad_params_files(tmp_path, capsys, text, message):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    assert cli.main(["run", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(message, lines[0])
    assert sorted(tmp_path.iterdir()) == [path]


def test_cli_overrides_are_checked_too(tmp_path, capsys):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "store": str(tmp_path / "s.sqlite")}))
    assert cli.main(["run", str(path), "--limit", "0"]) == 2
    assert "'limit': 0" in capsys.readouterr().err
    assert cli.main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_known_hub_checkpoint_not_in_the_offline_cache(tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = tmp_path / "params.yaml"
    store = tmp_path / "out" / "s.sqlite"
    path.write_text(yaml.safe_dump({**GOOD, "models": ["llava-hf/llava-1.5-7b-hf"], "store": str(store)}))
    assert cli.main(["run", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "'llava-hf/llava-1.5-7b-hf' cannot be loaded" in lines[0], lines
    assert "Did you mean: llava-hf/llava-1.5-7b-hf" not in lines[0]
    assert not store.parent.exists()


def test_unwritable_store_folder(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "locked"
    folder.mkdir()
    real_access = os.access
    # chmod cannot lock root out, so the permission check is told the folder is read-only
    monkeypatch.setattr("unipb_core.store.os.access", lambda p, mode: Path(p) != folder and real_access(p, mode))
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "store": str(folder / "sub" / "s.sqlite")}))
    assert cli.main(["run", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and re.search(r"'store'.*directory '.*locked' is not writable", lines[0]), lines
    assert list(folder.iterdir()) == []


def test_reading_a_missing_store_creates_nothing(tmp_path, capsys):
    from unipb_core.store import ResultStore, StoreError

    typo = tmp_path / "typo.sqlite"
    with pytest.raises(StoreError, match="no results store at"):
        ResultStore(typo).frame()
    with pytest.raises(StoreError, match="no results store at"):
        ResultStore.open(typo)
    assert not typo.exists()


def test_a_real_process_prints_one_line_and_exits_2_and_debug_shows_the_traceback(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "dtype": "float13", "store": str(tmp_path / "s.sqlite")}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    plain = subprocess.run([sys.executable, "-m", "unipb_core.cli", "run", str(path)], capture_output=True,
                           text=True, env=env)  # fmt: skip
    assert plain.returncode == 2 and plain.stderr.strip().count("\n") == 0 and "Traceback" not in plain.stderr
    debug = subprocess.run([sys.executable, "-m", "unipb_core.cli", "--debug", "run", str(path)],
                           capture_output=True, text=True, env=env)  # fmt: skip
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "ParamsError" in debug.stderr
    assert not (tmp_path / "s.sqlite").exists()


def test_report_checks_the_grid_before_starting_a_notebook(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("unipb_core.report.run_report", lambda *a, **k: pytest.fail("a notebook started"))
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "method_params": {"fastv": {"layer": 99}}, "store": "x.sqlite"}))
    out = tmp_path / "reports"
    assert cli.main(["report", str(path), "--out", str(out), "--store", str(tmp_path / "s.sqlite")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "layer 99" in lines[0]
    assert sorted(tmp_path.iterdir()) == [path]


def test_method_parameters_are_checked_against_their_dataclass_field_types():
    from typing import Literal

    from unipb_core.pruning import get
    from unipb_core.pruning.registry import _conform

    assert get("pdrop", layers=[2, 4]).layers == (2, 4)  # a YAML list becomes the field's tuple
    assert get("pdrop", layers=None).layers is None
    assert get("mustdrop", merge_share=0).merge_share == 0.0 and isinstance(
        get("mustdrop", merge_share=0).merge_share, float
    )
    for name, params, expected in [
        ("pdrop", {"layers": [2, "x"]}, "a list of integers or null"),
        ("mustdrop", {"layer": 1.0}, "an integer or null"),
        ("mustdrop", {"merge_share": float("nan")}, "a finite number"),
        ("mustdrop", {"window": True}, "an integer"),
        ("fastv", {"queries": 1}, "a string"),
    ]:
        with pytest.raises(
            ValueError, match=rf"method '{name}': parameter '{next(iter(params))}'.*expected {expected}"
        ):
            get(name, **params)
    assert _conform("study", Literal["authors", "study"]) == (True, "study")
    assert _conform("paper", Literal["authors", "study"])[0] is False
    assert _conform(1, Literal[True])[0] is False  # 1 == True, but not the same type
