"""ResultStore: roundtrip, resume semantics, duplicate and retry rules, crash safety, concurrent writers."""

from __future__ import annotations

import os
import pickle
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from unipb_core.confighash import config_hash
from unipb_core.store import ResultStore

REPO = Path(__file__).resolve().parents[1]
WRITER = Path(__file__).with_name("helpers_store_writer.py")

CONFIG = {"model": "tiny:llava", "method": "fastv", "category": "llm", "ratio": 0.889, "seed": 1,
          "dataset": "pope", "split": "test", "generation": {"max_new_tokens": 8}}  # fmt: skip
HASH = config_hash(CONFIG)


def record(sample_id: str, **fields) -> dict:
    base = {
        "sample_id": sample_id,
        "prediction": "yes",
        "correct": 1.0,
        "parsed": True,
        "extracted": "yes",
        "score": {"f1_part": "tp"},
        "kept": {"layer_2": 64},
        "timings": {"total": 0.5, "prefill": 0.2, "method": 0.01, "decode": 0.25, "preprocess": 0.03},
        "tokens_generated": 3,
        "n_visual": 576,
        "n_text": 40,
        "peak_mem_bytes": 123456,
        "flops": 2.5e12,
    }
    return {**base, **fields}


@pytest.fixture
def store(tmp_path) -> ResultStore:
    s = ResultStore(tmp_path / "results.sqlite")
    s.register_cell(HASH, CONFIG, {"device": "cpu"})
    return s


def test_roundtrip_decodes_json_and_adds_config_columns(store):
    assert store.write(HASH, record("a"))
    row = store.cell_frame(HASH).iloc[0]
    assert row["sample_id"] == "a" and row["prediction"] == "yes" and row["correct"] == 1.0
    assert bool(row["parsed"]) is True
    assert row["score"] == {"f1_part": "tp"} and row["kept"] == {"layer_2": 64}
    assert row["timings"]["preprocess"] == 0.03
    assert (row["t_total"], row["t_prefill"], row["t_method"], row["t_decode"]) == (0.5, 0.2, 0.01, 0.25)
    assert row["t_vision"] is None or np.isnan(row["t_vision"])  # not measured stays missing, not 0
    assert (row["model"], row["method"], row["ratio"], row["seed"], row["dataset"]) == (
        "tiny:llava", "fastv", 0.889, 1, "pope",
    )  # fmt: skip
    assert row["error"] is None
    assert "generation" not in row  # nested config values live in cells(), not as columns


def test_done_ids_and_duplicates_are_ignored(store):
    assert store.done_ids(HASH) == set()
    store.write(HASH, record("a"))
    store.write(HASH, record("b"))
    assert not store.write(HASH, record("a", prediction="changed"))
    frame = store.cell_frame(HASH)
    assert sorted(frame["sample_id"]) == ["a", "b"]
    assert frame.set_index("sample_id").loc["a", "prediction"] == "yes"  # a success is final
    assert store.done_ids(HASH) == {"a", "b"}


def test_failed_record_is_retried_and_replaced(store):
    store.write(HASH, {"sample_id": "x", "error": "CUDA out of memory"})
    assert store.done_ids(HASH) == set()
    assert store.done_ids(HASH, include_errors=True) == {"x"}
    assert store.write(HASH, {"sample_id": "x", "error": "second failure"})
    assert store.write(HASH, record("x"))
    assert not store.write(HASH, {"sample_id": "x", "error": "late failure"})
    frame = store.cell_frame(HASH)
    assert len(frame) == 1 and frame["error"].iloc[0] is None and store.done_ids(HASH) == {"x"}


def test_numpy_values_are_stored_as_python_numbers(store):
    store.write(HASH, record("n", tokens_generated=np.int64(5), correct=np.float32(0.5), kept={"idx": np.arange(3)}))
    row = store.cell_frame(HASH).iloc[0]
    assert row["tokens_generated"] == 5 and row["correct"] == 0.5 and row["kept"] == {"idx": [0, 1, 2]}


def test_bad_input_fails_early(store, tmp_path):
    with pytest.raises(ValueError, match="unknown record fields.*'acc'"):
        store.write(HASH, {"sample_id": "a", "acc": 1.0})
    with pytest.raises(ValueError, match="register_cell"):
        store.write("0" * 16, record("a"))
    with pytest.raises(ValueError, match="does not match"):
        store.register_cell("0" * 16, CONFIG, {})
    with pytest.raises(ValueError, match="no cell"):
        store.cell_frame("0" * 16)
    with pytest.raises(TypeError, match="timings.total"):
        store.write(HASH, record("t", timings={"total": {"median": 1.0}}))
    with pytest.raises(ValueError, match="file path"):
        ResultStore(":memory:")
    assert not store.register_cell(HASH, CONFIG, {"device": "elsewhere"})  # first registration kept
    assert store.cells()["environment"].iloc[0] == {"device": "cpu"}


def test_frame_filters_and_cells(store):
    other = {**CONFIG, "method": "random", "ratio": 0.667, "seed": 2}
    store.register_cell(config_hash(other), other, {"device": "cpu"})
    store.write(HASH, record("a"))
    store.write(config_hash(other), record("a"))
    store.write(config_hash(other), record("b"))
    assert len(store.frame()) == 3
    assert set(store.frame(method="random")["sample_id"]) == {"a", "b"}
    assert len(store.frame(ratio=0.8890000001)) == 1  # same normalisation as the config hash
    assert len(store.frame(method=["random", "fastv"], seed=[1, 2])) == 3
    assert store.frame(method="nothing").empty
    with pytest.raises(ValueError, match="unknown filter fields"):
        store.frame(modle="tiny:llava")
    cells = store.cells().set_index("config_hash")
    assert cells.loc[HASH, "n_records"] == 1 and cells.loc[config_hash(other), "n_records"] == 2
    assert cells.loc[HASH, "config"]["generation"] == {"max_new_tokens": 8}


def test_pickled_store_reconnects(store):
    store.write(HASH, record("a"))
    clone = pickle.loads(pickle.dumps(store))
    clone.write(HASH, record("b"))
    assert store.done_ids(HASH) == clone.done_ids(HASH) == {"a", "b"}


def test_journal_mode_can_be_disabled(tmp_path):
    s = ResultStore(tmp_path / "nfs.sqlite", journal_mode="DELETE")
    s.register_cell(HASH, CONFIG, {})
    s.write(HASH, record("a"))
    assert s._read("PRAGMA journal_mode")[0][0] == "delete"
    assert ResultStore(tmp_path / "r.sqlite").create()._read("PRAGMA journal_mode")[0][0] == "wal"


# --- crash safety and concurrency, with real processes -------------------------------------------------------


def _writer(path: Path, first: int, last: int, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, str(WRITER), str(path), str(first), str(last), *args]
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    return subprocess.Popen(cmd, text=True, env=env, cwd=REPO, **pipes)


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=60)  # also closes stdin
    assert proc.returncode == 0, err


def _rows(path: Path):
    s = ResultStore(path)
    (cell,) = s.cells()["config_hash"]
    frame = s.cell_frame(cell).drop(columns=["created"])
    return frame.sort_values("sample_id").reset_index(drop=True)


def _check_consistent(path: Path, n: int) -> None:
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ids = [r[0] for r in conn.execute("SELECT sample_id FROM records")]
    assert sorted(ids) == [f"s{i:03d}" for i in range(n)]  # every id exactly once


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Rows of an uninterrupted single-process run over 300 samples."""
    path = tmp_path_factory.mktemp("ref") / "ref.sqlite"
    _finish(_writer(path, 0, 300))
    return _rows(path)


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path, reference):
    n, rng = 40, random.Random(0)
    left_partial = []
    for trial in range(3):
        path = tmp_path / f"killed{trial}.sqlite"
        for _ in range(2):
            proc = _writer(path, 0, n, "--sleep", "0.01")
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.0, 0.3))
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            left_partial.append(len(_rows(path)))
        _finish(_writer(path, 0, n))
        _check_consistent(path, n)
        assert _rows(path).to_dict("records") == reference.iloc[:n].to_dict("records")
    assert any(0 < k < n for k in left_partial), left_partial  # at least one kill landed mid-run


def test_concurrent_writers_leave_a_consistent_store(tmp_path, reference):
    path = tmp_path / "shared.sqlite"
    ResultStore(path).create()  # create the file, so both writers race on records, not on creation
    writers = [_writer(path, 0, 200, "--wait"), _writer(path, 100, 300, "--reverse", "--wait")]
    for proc in writers:  # the ids overlap on 100..199, where the writers meet head-on
        assert proc.stdout.readline().strip() == "ready"
    for proc in writers:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in writers:
        _finish(proc)
    _check_consistent(path, 300)
    assert _rows(path).to_dict("records") == reference.to_dict("records")


def test_concurrent_first_open_creates_schema_once(tmp_path):
    path = tmp_path / "fresh.sqlite"
    writers = [_writer(path, 0, 50), _writer(path, 25, 75)]
    for proc in writers:
        _finish(proc)
    _check_consistent(path, 75)


# --- reading never creates; write-path checks -----------------------------------------------------------------


def test_reads_never_create_a_store(tmp_path):
    from unipb_core.store import StoreError

    missing = tmp_path / "sub" / "typo.sqlite"
    for read in (lambda s: s.frame(), lambda s: s.cells(), lambda s: s.done_ids(HASH)):
        with pytest.raises(StoreError, match=r"no results store at .*typo\.sqlite"):
            read(ResultStore(missing))
    assert ResultStore(missing).completed(["k"]) == {}
    assert not missing.parent.exists()
    with pytest.raises(StoreError, match="is a directory"):
        ResultStore.open(tmp_path)
    (tmp_path / "notes.txt").write_text("not a database")
    with pytest.raises(StoreError, match="not an SQLite database"):
        ResultStore.open(tmp_path / "notes.txt")
    with sqlite3.connect(tmp_path / "other.sqlite") as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="not a results store"):
        ResultStore.open(tmp_path / "other.sqlite")
    assert (tmp_path / "notes.txt").read_text() == "not a database"


def test_check_writable_names_the_problem_and_writes_nothing(tmp_path):
    from unipb_core.store import StoreError, check_writable

    check_writable(tmp_path / "new" / "deeper" / "s.sqlite")  # folders are created by the first write
    (tmp_path / "file").write_text("x")
    (tmp_path / "text.sqlite").write_text("hello")
    for path, message in [
        (tmp_path, "is a directory"),
        (tmp_path / "file" / "s.sqlite", "which is a file"),
        (tmp_path / "text.sqlite", "not an SQLite database"),
        (":memory:", "needs a file path"),
    ]:
        with pytest.raises(StoreError, match=message):
            check_writable(path)
        with pytest.raises(StoreError, match=message):
            ResultStore(path).register_cell(HASH, CONFIG, {}) if str(path) != ":memory:" else ResultStore(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "text.sqlite"]


# --- leases and completion marks ------------------------------------------------------------------------------


def test_claims_leave_a_sample_to_its_live_owner_until_the_lease_ends(store):
    assert store.claim(HASH, "a", owner="hostA:1:x") == "claimed"
    assert store.claim(HASH, "a", owner="hostB:2:y") == "busy"  # another host: its lease counts until expiry
    assert store.claim(HASH, "a", owner="hostA:1:x") == "claimed"  # the owner may renew
    assert store.claim(HASH, "b", owner="hostA:1:x", ttl_s=-1) == "claimed"
    assert store.claim(HASH, "b", owner="hostB:2:y") == "claimed"  # expired: taken over
    store.write(HASH, record("a"))  # writing the record releases the lease
    assert store._read("SELECT sample_id FROM leases") == [("b",)]
    assert store.claim(HASH, "a", owner="hostB:2:y") == "done"
    store.write(HASH, record("c", error="boom"))
    assert store.claim(HASH, "c", owner="hostB:2:y") == "claimed"  # a failed sample is claimed again (retried)
    assert store.release(HASH, owner="hostB:2:y") == 2
    assert store._read("SELECT COUNT(*) FROM leases")[0][0] == 0


def test_a_dead_process_lease_on_this_host_is_taken_over_at_once(store):
    import socket

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = f"{socket.gethostname()}:{int(proc.stdout)}:gone"
    alive = f"{socket.gethostname()}:{os.getpid()}:other-token"
    assert store.claim(HASH, "a", owner=dead) == "claimed"
    assert store.claim(HASH, "a") == "claimed"  # pid not running: its lease is void
    assert store.claim(HASH, "b", owner=alive) == "claimed"
    assert store.claim(HASH, "b", owner="elsewhere:1:z") == "busy"


def test_completion_marks_count_only_while_the_records_are_there(store):
    store.write(HASH, record("a"))
    store.write(HASH, record("b", error="boom"))
    store.mark_complete("key1", HASH, 1)
    store.mark_complete("key2", HASH, 2)  # two successful records needed, only one there
    assert store.completed(["key1", "key2", "key3"]) == {"key1": (HASH, 1)}


def test_an_empty_file_is_a_new_store_and_another_apps_database_is_refused(tmp_path):
    from unipb_core.store import StoreError

    empty = tmp_path / "touched.sqlite"
    empty.touch()
    assert ResultStore(empty).completed(["k"]) == {}
    assert ResultStore(empty).register_cell(HASH, CONFIG, {})
    with sqlite3.connect(tmp_path / "app.sqlite") as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="not a results store"):
        ResultStore(tmp_path / "app.sqlite").completed(["k"])
    with pytest.raises(StoreError, match="not a results store"):
        ResultStore(tmp_path / "app.sqlite").register_cell(HASH, CONFIG, {})
    with sqlite3.connect(tmp_path / "app.sqlite") as conn:  # untouched: same tables, same journal mode
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["t"]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
