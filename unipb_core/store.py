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

Reading never creates a store: reads of a missing file, a directory or a file that is not a results store
raise ``StoreError`` (``ResultStore.open`` checks at once); the file and its tables are created by the first
write (``register_cell``, ``write``, ``claim``) or by ``create()``. ``check_writable`` tells, without writing
anything, whether a path can hold a store.

Leases: concurrent runs on one store claim a sample (``claim``) before computing it, so two processes do
not compute the same sample. A lease names its owner (host, pid) and expires after ``ttl_s``; a lease of a
process that is gone (same host, pid not running) is taken over at once, so a killed run never blocks a
rerun on its host, and one on another host frees its samples when the lease expires.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import uuid
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
CREATE TABLE IF NOT EXISTS leases (
    config_hash TEXT NOT NULL,
    sample_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (config_hash, sample_id)
);
CREATE TABLE IF NOT EXISTS completed (
    cell_key TEXT PRIMARY KEY,
    config_hash TEXT NOT NULL,
    n_samples INTEGER NOT NULL,
    created REAL NOT NULL
);
"""
SQLITE_MAGIC = b"SQLite format 3\x00"
DEFAULT_LEASE_S = 900.0  # a sample never takes this long; a lease of a crashed run on another host expires after it

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


class StoreError(ValueError):
    """A store path that cannot be read or written (one line naming the path and why)."""


def lease_owner() -> str:
    """This process as a lease owner: ``host:pid:token`` (the token tells apart a reused pid)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_TOKEN}"


_TOKEN = uuid.uuid4().hex[:8]


def _owner_alive(owner: str) -> bool:
    """False only for an owner on this host whose process is gone; other hosts' owners count as alive."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _check_sqlite_file(path: Path, shown: str) -> None:
    if path.stat().st_size == 0:  # SQLite treats an empty file as an empty database
        return
    with open(path, "rb") as fh:
        if fh.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            raise StoreError(f"store {shown!r} is not an SQLite database; give a new path or an existing results store")


def check_writable(path: str | os.PathLike) -> None:
    """Raise ``StoreError`` unless ``path`` can hold a results store (new or existing); writes nothing."""
    shown = str(path)
    if shown in ("", ":memory:") or shown.startswith("file::memory:"):
        raise StoreError(f"store {shown!r}: a results store needs a file path (an in-memory one cannot be shared)")
    target = Path(path).expanduser()
    if target.is_dir():
        raise StoreError(f"store {shown!r} is a directory; give a file path, e.g. {str(target / 'results.sqlite')!r}")
    if target.exists():
        _check_sqlite_file(target, shown)
        if not os.access(target, os.R_OK | os.W_OK):
            raise StoreError(f"store {shown!r} is not writable (check its permissions)")
        folder = target.parent
    else:
        folder = target.absolute().parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            raise StoreError(f"store {shown!r} is under {str(folder)!r}, which is a file, not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(f"store {shown!r}: directory {str(folder)!r} is not writable")


class ResultStore:
    """Records of evaluated samples, keyed by (config hash, sample id), in one SQLite file.

    Parameters
    ----------
    path : str or os.PathLike
        Database file. It (and its parent directory) is created by the first write, never by a read. An
        in-memory database is refused, because every process (and every unpickled copy) opens its own
        connection to the same file.
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
            raise StoreError("ResultStore needs a file path; an in-memory database cannot be shared by processes")
        self.path = Path(path)
        self.journal_mode = journal_mode.upper()
        self.busy_timeout_s = float(busy_timeout_s)
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._ready = False  # tables created / checked on this connection
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str | os.PathLike, **kwargs: Any) -> ResultStore:
        """An existing store, for reading: raises ``StoreError`` now if ``path`` is missing or not a store."""
        store = cls(path, **kwargs)
        with store._lock:
            store._connect(create=False)
        return store

    def create(self) -> ResultStore:
        """Create the file and its tables if missing (what the first write does); returns ``self``."""
        with self._lock:
            self._connect(create=True)
        return self

    def exists(self) -> bool:
        """Whether the store file exists (without opening it)."""
        return self.path.is_file()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "journal_mode": self.journal_mode, "busy_timeout_s": self.busy_timeout_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def __repr__(self) -> str:
        return f"ResultStore({str(self.path)!r}, journal_mode={self.journal_mode!r})"

    def _connect(self, create: bool = False) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            self._conn, self._pid, self._ready = None, None, False
            if create:
                check_writable(self.path)
                self.path.parent.mkdir(parents=True, exist_ok=True)
                uri = f"{self.path.absolute().as_uri()}?mode=rwc"
            else:
                self._check_readable()
                uri = f"{self.path.absolute().as_uri()}?mode=rw"  # never creates the file
            # timeout= is SQLite's busy_timeout. isolation_level=None: no implicit transactions; every write
            # below says BEGIN IMMEDIATE itself.
            conn = sqlite3.connect(uri, uri=True, timeout=self.busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)  # fmt: skip
            try:
                if not create:
                    self._check_tables(conn)
            except BaseException:
                conn.close()
                raise
            conn.execute("PRAGMA foreign_keys = ON")  # a record must belong to a registered cell
            self._conn, self._pid = conn, os.getpid()
        if create and not self._ready:
            self._init_schema(self._conn)
            self._ready = True
        return self._conn

    def _check_readable(self) -> None:
        shown = str(self.path)
        if self.path.is_dir():
            raise StoreError(f"store {shown!r} is a directory, not a results store file")
        if not self.path.is_file():
            raise StoreError(f"no results store at {shown!r} (`unipb run` creates one; check the path)")
        _check_sqlite_file(self.path, shown)

    def _check_tables(self, conn: sqlite3.Connection) -> None:
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"store {str(self.path)!r} cannot be read as SQLite ({exc})") from exc
        if not {"cells", "records"} <= tables:
            raise StoreError(f"{str(self.path)!r} is an SQLite file but not a results store (no cells/records tables)")
        if version not in (0, SCHEMA_VERSION):
            raise StoreError(f"store {str(self.path)!r} has schema version {version}; this code reads {SCHEMA_VERSION}")

    def _init_schema(self, conn: sqlite3.Connection) -> None:
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and "cells" not in tables:  # never touch another application's database
                self._drop_connection()
                raise StoreError(f"{str(self.path)!r} is an SQLite file but not a results store (no cells table)")
            self._set_journal_mode(conn)
            conn.execute("PRAGMA synchronous = NORMAL")  # with WAL: safe against crashes of the process
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            self._drop_connection()
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise
            raise StoreError(f"store {str(self.path)!r} cannot be written ({exc})") from exc
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise StoreError(f"{self.path} has schema version {version}; this code reads {SCHEMA_VERSION}")
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            self._drop_connection()
            raise

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn, self._pid, self._ready = None, None, False

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
                    raise
                time.sleep(0.01)
        if mode.upper() != self.journal_mode:
            raise StoreError(f"{self.path}: could not set journal_mode={self.journal_mode} (got {mode})")

    def _write(self, sql: str, params: Iterable[Any], *also: tuple[str, Iterable[Any]]) -> int:
        """Run write statements in one immediate transaction; return the rows the first one changed."""
        with self._lock:
            conn = self._connect(create=True)
            conn.execute("BEGIN IMMEDIATE")
            try:
                changed = conn.execute(sql, tuple(params)).rowcount
                for extra_sql, extra_params in also:
                    conn.execute(extra_sql, tuple(extra_params))
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
            self._ready = False

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

    def claim(self, config_hash: str, sample_id: str, owner: str | None = None, ttl_s: float = DEFAULT_LEASE_S) -> str:
        """Claim one sample before computing it; returns ``"claimed"``, ``"done"`` or ``"busy"``.

        ``"done"``: a successful record exists. ``"busy"``: another live owner holds an unexpired lease (its
        process is computing the sample). Otherwise the lease becomes ``owner``'s (default: this process)
        until ``ttl_s`` from now; ``write`` of the sample releases it.
        """
        owner = owner or lease_owner()
        now = time.time()
        with self._lock:
            conn = self._connect(create=True)
            conn.execute("BEGIN IMMEDIATE")
            try:
                key = (config_hash, str(sample_id))
                done = conn.execute(
                    "SELECT 1 FROM records WHERE config_hash = ? AND sample_id = ? AND error IS NULL", key
                ).fetchone()
                lease = conn.execute("SELECT owner, expires FROM leases WHERE config_hash = ? AND sample_id = ?", key)
                lease = lease.fetchone()
                if done:
                    status = "done"
                elif lease and lease[0] != owner and lease[1] > now and _owner_alive(lease[0]):
                    status = "busy"
                else:
                    conn.execute(
                        "INSERT INTO leases (config_hash, sample_id, owner, expires) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (config_hash, sample_id) DO UPDATE SET owner = excluded.owner, "
                        "expires = excluded.expires",
                        (*key, owner, now + ttl_s),
                    )
                    status = "claimed"
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return status

    def release(self, config_hash: str, owner: str | None = None) -> int:
        """Drop ``owner``'s (default: this process's) leases on a cell, e.g. after an interrupted loop."""
        sql = "DELETE FROM leases WHERE config_hash = ? AND owner = ?"
        return self._write(sql, (config_hash, owner or lease_owner()))

    def mark_complete(self, cell_key: str, config_hash: str, n_samples: int) -> None:
        """Remember that the cell with run key ``cell_key`` (settings known before a model loads; see
        ``runner.cell_key``) has every one of its ``n_samples`` samples recorded without error."""
        sql = "INSERT OR REPLACE INTO completed (cell_key, config_hash, n_samples, created) VALUES (?, ?, ?, ?)"
        self._write(sql, (cell_key, config_hash, int(n_samples), time.time()))

    def completed(self, cell_keys: Iterable[str]) -> dict[str, tuple[str, int]]:
        """``{cell_key: (config_hash, n_samples)}`` for the given run keys marked complete (and whose records
        are all still there); empty for a store not yet made."""
        keys = list(cell_keys)
        if not self.exists() or not keys or self.path.stat().st_size == 0:  # nothing stored yet
            return {}
        found: dict[str, tuple[str, int]] = {}
        try:
            for i in range(0, len(keys), _CHUNK):
                chunk = keys[i : i + _CHUNK]
                sql = (
                    "SELECT c.cell_key, c.config_hash, c.n_samples FROM completed c "
                    f"WHERE c.cell_key IN ({', '.join('?' * len(chunk))}) AND c.n_samples <= "
                    "(SELECT COUNT(*) FROM records r WHERE r.config_hash = c.config_hash AND r.error IS NULL)"
                )  # a mark counts only while its records are all there
                found.update({k: (h, n) for k, h, n in self._read(sql, chunk)})
        except sqlite3.OperationalError as exc:  # a store written before the table existed
            if "no such table" not in str(exc):
                raise
        return found

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
        release = ("DELETE FROM leases WHERE config_hash = ? AND sample_id = ?", (config_hash, values["sample_id"]))
        try:
            return self._write(_UPSERT, (config_hash, *(values[c] for c in COLUMNS)), release) == 1
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
