"""The results database: one row per (config hash, sample id), in SQLite.

A cell (one model x method x ratio x seed x dataset configuration) is registered once with its config and
environment; each evaluated sample then becomes one record, written in its own transaction as soon as it is
done, so a killed run loses at most the sample in flight and resumes by skipping ``done_ids``.

Write semantics (what a second write of the same (cell, sample) does):

* a successful record (``error`` is None) is final: later writes of that sample are ignored, so a resumed
  or duplicated run never duplicates or silently rewrites a result;
* a failed record (``error`` set) is replaced by the next write, success or failure, so a retry after a fix
  (an OOM, a corrupt download) lands and the store shows the latest attempt. ``done_ids`` leaves failed
  samples out by default so that resuming retries them.

Concurrency: several processes (e.g. Ray workers) may write one store. WAL mode lets readers run beside the
writer, ``busy_timeout`` makes a second writer wait instead of failing, and every write takes the write lock
up front (``BEGIN IMMEDIATE``): a transaction that upgrades from read to write can fail with "database is
locked" without waiting at all. WAL needs shared memory between processes, so on network filesystems
(NFS, SMB) pass ``journal_mode="DELETE"``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unipb_core.confighash import canonical_json, normalise
from unipb_core.confighash import config_hash as hash_of

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    config_hash TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    environment TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    config_hash TEXT NOT NULL REFERENCES cells(config_hash),
    sample_id TEXT NOT NULL,
    prediction TEXT, correct REAL, parsed INTEGER, extracted TEXT, score_json TEXT, kept_json TEXT,
    tokens_generated INTEGER, n_visual INTEGER, n_text INTEGER, timings_json TEXT,
    t_total REAL, t_prefill REAL, t_llm_prefill REAL, t_method REAL, t_decode REAL, t_vision REAL,
    peak_mem_bytes INTEGER, flops REAL, error TEXT, created REAL NOT NULL,
    PRIMARY KEY (config_hash, sample_id)
);
"""

# Record keys accepted by ``write``: plain columns, then the three dict fields stored as JSON text.
PLAIN_FIELDS = (
    "prediction", "correct", "parsed", "extracted", "tokens_generated", "n_visual", "n_text",
    "peak_mem_bytes", "flops", "error",
)  # fmt: skip
JSON_FIELDS = ("score", "kept", "timings")
TIMED = ("total", "prefill", "llm_prefill", "method", "decode", "vision")  # copied to t_<name> columns
COLUMNS = ("sample_id", *PLAIN_FIELDS, *(f"{f}_json" for f in JSON_FIELDS), *(f"t_{t}" for t in TIMED), "created")

_UPSERT = f"""
INSERT INTO records (config_hash, {", ".join(COLUMNS)}) VALUES (?, {", ".join("?" * len(COLUMNS))})
ON CONFLICT (config_hash, sample_id) DO UPDATE SET {", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:])}
WHERE records.error IS NOT NULL
"""
_CHUNK = 500  # bound on SQL parameters per query (old SQLite builds allow 999)
# Config fields analysis groups by come first in frames, in this order; other scalar fields follow sorted.
LEADING_CONFIG_FIELDS = ("model", "method", "category", "ratio", "seed", "dataset", "split", "dimension")
_MISSING = object()


def _to_json(value: Any, what: str) -> str | None:
    """JSON text for a record field; numpy / torch values become plain Python (``.tolist()``)."""
    if value is None:
        return None

    def plain(obj: Any) -> Any:
        if hasattr(obj, "tolist"):
            return obj.tolist()
        raise TypeError(f"record field {what!r} holds a {type(obj).__name__}, which is not JSON-serialisable")

    return json.dumps(value, default=plain, sort_keys=True, allow_nan=True)


def _sql_value(value: Any, what: str) -> Any:
    """A value SQLite can bind: numpy / torch scalars become Python numbers (``.item()``)."""
    if value is None or isinstance(value, (str, int, float)):
        return value
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"record field {what!r} holds a {type(value).__name__}; expected a str or a number")


def _from_json(text: str | None) -> Any:
    # pandas reads a NULL in a text column as None or NaN depending on the other rows.
    return json.loads(text) if isinstance(text, str) else None


def _scalar_fields(config: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level config fields with a scalar value: the columns analysis groups by (model, method, ratio...)."""
    return {k: v for k, v in config.items() if v is None or isinstance(v, (str, int, float, bool))}


class ResultStore:
    """Records of evaluated samples, keyed by (config hash, sample id), in one SQLite file.

    Parameters
    ----------
    path : str or os.PathLike
        Database file; its parent directory is created. An in-memory database is refused, because every
        process (and every unpickled copy) opens its own connection to the same file.
    journal_mode : str
        ``"WAL"`` (default) or ``"DELETE"`` for filesystems without shared memory.
    busy_timeout_s : float
        How long a writer waits for another one before "database is locked".

    Notes
    -----
    The object pickles to its arguments and reconnects lazily, so it can be handed to Ray workers or
    ``multiprocessing``; a connection is never shared across processes (SQLite forbids it after fork).
    """

    def __init__(self, path: str | os.PathLike, journal_mode: str = "WAL", busy_timeout_s: float = 30.0) -> None:
        if str(path) in ("", ":memory:") or str(path).startswith("file::memory:"):
            raise ValueError("ResultStore needs a file path; an in-memory database cannot be shared by processes")
        self.path = Path(path)
        self.journal_mode = journal_mode.upper()
        self.busy_timeout_s = float(busy_timeout_s)
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "journal_mode": self.journal_mode, "busy_timeout_s": self.busy_timeout_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def __repr__(self) -> str:
        return f"ResultStore({str(self.path)!r}, journal_mode={self.journal_mode!r})"

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # timeout= is SQLite's busy_timeout. isolation_level=None: no implicit transactions; every write below
        # says BEGIN IMMEDIATE itself.
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False)
        self._set_journal_mode(conn)
        conn.execute("PRAGMA synchronous = NORMAL")  # with WAL: safe against crashes of the process
        conn.execute("PRAGMA foreign_keys = ON")  # a record must belong to a registered cell
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise RuntimeError(f"{self.path} has schema version {version}; this code reads {SCHEMA_VERSION}")
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _set_journal_mode(self, conn: sqlite3.Connection) -> None:
        """Switch the file's journal mode (persistent in the file for WAL), retrying while others hold it.

        Changing the mode needs an exclusive lock and SQLite reports "database is locked" at once instead of
        calling the busy handler, so processes opening a fresh store together must retry here themselves.
        """
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if mode.upper() != self.journal_mode:
                    mode = conn.execute(f"PRAGMA journal_mode = {self.journal_mode}").fetchone()[0]
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    conn.close()
                    raise
                time.sleep(0.01)
        if mode.upper() != self.journal_mode:
            conn.close()
            raise RuntimeError(f"{self.path}: could not set journal_mode={self.journal_mode} (got {mode})")

    def _write(self, sql: str, params: Iterable[Any]) -> int:
        """Run one write statement in its own immediate transaction; return the number of rows changed."""
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                changed = conn.execute(sql, tuple(params)).rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return changed

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._connect().execute(sql, tuple(params)).fetchall()

    def close(self) -> None:
        """Close this process's connection (it reopens on next use)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = self._pid = None

    def register_cell(self, config_hash: str, config: Mapping[str, Any], environment: Mapping[str, Any]) -> bool:
        """Record a cell's config and environment; return False if it was already registered (kept as is).

        The first registration's environment is kept: a resumed cell may run on another host, but its
        records are keyed by the config alone. Raises ValueError when ``config_hash`` is not the hash of
        ``config``, which would make the stored config lie about its records.
        """
        expected = hash_of(config)
        if config_hash != expected:
            raise ValueError(f"config_hash {config_hash!r} does not match the config (its hash is {expected!r})")
        env = json.dumps(normalise(environment, "environment"), sort_keys=True)
        sql = "INSERT OR IGNORE INTO cells (config_hash, config, environment, created) VALUES (?, ?, ?, ?)"
        return self._write(sql, (config_hash, canonical_json(config), env, time.time())) == 1

    def done_ids(self, config_hash: str, include_errors: bool = False) -> set[str]:
        """Sample ids of a cell that have a record; failed ones only with ``include_errors``."""
        where = "" if include_errors else " AND error IS NULL"
        rows = self._read(f"SELECT sample_id FROM records WHERE config_hash = ?{where}", (config_hash,))
        return {r[0] for r in rows}

    def write(self, config_hash: str, record: Mapping[str, Any]) -> bool:
        """Store one sample's record; return True if it was written (see the module docstring for duplicates).

        ``record`` needs ``sample_id`` and may hold the plain fields in ``PLAIN_FIELDS`` and the dict fields
        ``score`` (extra score fields), ``kept`` (kept visual tokens per stage / layer) and ``timings``
        (seconds per interval, e.g. ``SampleTimer.result()``). Timings named in ``TIMED`` are also copied to
        ``t_<name>`` columns for fast SQL. Unknown keys raise ValueError: a typo must not lose a field.
        """
        unknown = set(record) - {"sample_id", *PLAIN_FIELDS, *JSON_FIELDS}
        if unknown:
            raise ValueError(
                f"unknown record fields {sorted(unknown)}; accepted: sample_id, {', '.join(PLAIN_FIELDS + JSON_FIELDS)}"
            )
        if record.get("sample_id") is None:
            raise ValueError("record has no sample_id")
        timings = record.get("timings") or {}
        values = {
            "sample_id": str(record["sample_id"]),
            **{f: _sql_value(record.get(f), f) for f in PLAIN_FIELDS},
            **{f"{f}_json": _to_json(record.get(f), f) for f in JSON_FIELDS},
            **{f"t_{t}": _sql_value(timings.get(t), f"timings.{t}") for t in TIMED},
            "created": time.time(),
        }
        if values["parsed"] is not None:
            values["parsed"] = int(bool(values["parsed"]))
        try:
            return self._write(_UPSERT, (config_hash, *(values[c] for c in COLUMNS))) == 1
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"cannot write to cell {config_hash!r}: register_cell it first ({exc})") from exc

    def _configs(self) -> list[tuple[str, dict, dict, float]]:
        rows = self._read("SELECT config_hash, config, environment, created FROM cells ORDER BY created")
        return [(h, json.loads(c), json.loads(e), t) for h, c, e, t in rows]

    def cells(self) -> pd.DataFrame:
        """One row per cell: ``config_hash``, scalar config fields, ``n_records``, ``n_errors``, ``created``,
        and the full ``config`` and ``environment`` as dicts."""
        import pandas as pd

        counts = {
            h: (n, e)
            for h, n, e in self._read(
                "SELECT config_hash, COUNT(*), SUM(error IS NOT NULL) FROM records GROUP BY config_hash"
            )
        }
        rows = []
        for h, config, env, created in self._configs():
            n, errors = counts.get(h, (0, 0))
            rows.append({"config_hash": h, **_scalar_fields(config), "n_records": n, "n_errors": errors,
                         "created": created, "config": config, "environment": env})  # fmt: skip
        return pd.DataFrame(rows, columns=None if rows else ["config_hash", "n_records", "n_errors", "created"])

    def cell_frame(self, config_hash: str) -> pd.DataFrame:
        """A cell's records, one row each, with JSON fields decoded and the scalar config fields as columns."""
        rows = self._read("SELECT config FROM cells WHERE config_hash = ?", (config_hash,))
        if not rows:
            raise ValueError(f"no cell {config_hash!r} in {self.path}; see cells() for the registered ones")
        return self._frame({config_hash: json.loads(rows[0][0])})

    def frame(self, **filters: Any) -> pd.DataFrame:
        """All records as one tidy frame, optionally only cells whose config matches ``filters``.

        Each filter is ``field=value`` or ``field=[values...]`` on a top-level config field (or
        ``config_hash``); values are compared after the same normalisation as the config hash, so
        ``ratio=0.889`` matches a stored ``0.8890000001``. A field no cell has raises ValueError.
        """
        configs = {h: c for h, c, _, _ in self._configs()}
        known = {"config_hash"}.union(*(c.keys() for c in configs.values()))
        unknown = set(filters) - known
        if unknown:
            raise ValueError(f"unknown filter fields {sorted(unknown)}; config fields in this store: {sorted(known)}")
        wanted = {
            key: [normalise(v) for v in (value if isinstance(value, (list, tuple, set)) else [value])]
            for key, value in filters.items()
        }
        selected = {
            h: c
            for h, c in configs.items()
            if all(({"config_hash": h, **c}.get(key, _MISSING)) in vals for key, vals in wanted.items())
        }
        return self._frame(selected)

    def _frame(self, configs: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
        import pandas as pd

        record_cols = ("config_hash", *COLUMNS)
        hashes = list(configs)
        rows = []
        for i in range(0, len(hashes), _CHUNK):
            chunk = hashes[i : i + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            sql = f"SELECT {', '.join(record_cols)} FROM records WHERE config_hash IN ({marks}) ORDER BY rowid"
            rows.extend(self._read(sql, chunk))
        frame = pd.DataFrame(rows, columns=list(record_cols))
        for field in JSON_FIELDS:
            frame[field] = [_from_json(text) for text in frame.pop(f"{field}_json")]
        frame["parsed"] = frame["parsed"].astype("boolean")
        scalars = {h: _scalar_fields(c) for h, c in configs.items()}
        present = {k for s in scalars.values() for k in s}
        keys = [k for k in LEADING_CONFIG_FIELDS if k in present] + sorted(present - set(LEADING_CONFIG_FIELDS))
        for key in reversed(keys):  # each insert goes right after config_hash, so insert the last one first
            # A config field that shadows a record column (e.g. "error") keeps its value under "config_<name>".
            column = f"config_{key}" if key in frame.columns else key
            frame.insert(1, column, [scalars[h].get(key) for h in frame["config_hash"]])
        return frame
