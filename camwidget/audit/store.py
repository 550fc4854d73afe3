"""The audit's store: one embedded SQLite file (standard library), written batch by batch.

Layout (schema version 2)::

    meta(key TEXT PRIMARY KEY, value TEXT)      JSON values: "settings", "schema", "image_size",
                                                "embedding" (where the embeddings come from), ...
    results(idx INTEGER PRIMARY KEY,            the dataset index; one row per image, never two
            label, predicted, probability, correct, error, path, object_box,
            map BLOB, map_h, map_w, map_scale,  the signed raw map of the PREDICTED class at feature
                                                resolution, float16 (times map_scale)
            true_map BLOB, true_map_scale,      misclassified images only: the map of the TRUE class
                                                (label), same layout; NULL where label == prediction
            embedding BLOB, embedding_scale,    the penultimate embedding (the input of the model's last
                                                linear layer), float16 (times embedding_scale)
            logits BLOB,                        the full logit vector, float32
            thumb BLOB,                         a small JPEG of the input, for galleries
            object_energy, insertion_auc, deletion_auc,
            eu_true_path BLOB, eu_true_insertion BLOB,            error understanding of misclassified
            eu_predicted_path BLOB, eu_predicted_insertion BLOB,  images (float32 curves, see
                                                camwidget.metrics.error_understanding), when audited
            "region_<name>" ...)                one REAL column per named region
    derived(key TEXT PRIMARY KEY,               results computed from the rows and kept (the 2-D
            rows TEXT, value BLOB)              embedding map), with a digest of the rows they used

Schema 1 stores (before embeddings and logits were recorded) are refused with a message saying to
start the audit in a new store.

Durability: the database runs in WAL mode with ``synchronous=NORMAL``; each batch (or chunk) of results
is one transaction. A crash, a killed kernel or Ctrl-C therefore loses at most the work in flight, and
the file stays consistent (SQLite's guarantee against application crashes; an OS crash or power cut may
also lose the last few committed batches, never corrupt the file). Reruns skip the indices already stored.

Settings: the first writer records the audit's settings, everything that changes a row's values
(method, layer, model fingerprint, the data's and the transform's fingerprints, regions, metrics).
A later writer with other settings is refused before anything is written (:class:`SettingsMismatch`,
whose message says what differs), so one table never mixes two audits.

Several writers: two audits with the same settings may write one store at once (two notebooks, a
rerun started while the first still runs). Settings are recorded in one ``BEGIN IMMEDIATE``
transaction, and rows already written by the other writer are skipped, never an ``IntegrityError``.

Shards: ``torchrun`` ranks write ``<stem>.rank<r>-of-<n><suffix>`` next to the target
(:func:`shard_path`); :func:`merge_stores` folds them in. A store opened for reading also reads the shard
files an interrupted ``torchrun`` audit left next to it (``AuditStore(path, readonly=True, shards=...)``).

Unusable paths (a folder, a file where a folder should be, a read-only file or folder, a damaged file)
raise :class:`UnusableStore` with the path and what to do instead.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "SCHEMA_VERSION",
    "AuditStore",
    "ReadOnlyStore",
    "SettingsMismatch",
    "UnusableStore",
    "merge_stores",
    "region_column",
    "shard_path",
    "shard_stores",
]

SCHEMA_VERSION = 2

_BASE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("idx", "INTEGER PRIMARY KEY"),
    ("label", "INTEGER"),
    ("predicted", "INTEGER"),
    ("probability", "REAL"),
    ("correct", "INTEGER"),
    ("error", "TEXT"),
    ("path", "TEXT"),
    ("object_box", "TEXT"),
    ("map", "BLOB"),
    ("map_h", "INTEGER"),
    ("map_w", "INTEGER"),
    ("map_scale", "REAL"),
    ("true_map", "BLOB"),
    ("true_map_scale", "REAL"),
    ("embedding", "BLOB"),
    ("embedding_scale", "REAL"),
    ("logits", "BLOB"),
    ("thumb", "BLOB"),
    ("object_energy", "REAL"),
    ("insertion_auc", "REAL"),
    ("deletion_auc", "REAL"),
    ("eu_true_path", "BLOB"),
    ("eu_true_insertion", "BLOB"),
    ("eu_predicted_path", "BLOB"),
    ("eu_predicted_insertion", "BLOB"),
)

_REGION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SettingsMismatch(ValueError):
    """The store holds an audit made with other settings; nothing was written to it."""


class UnusableStore(ValueError):
    """The store path cannot be used (a folder, read-only, damaged, ...); the message says what to do."""


class ReadOnlyStore(UnusableStore):
    """The store (or the folder it would be created in) cannot be written."""


def region_column(name: str) -> str:
    """The results column holding the energy share inside region ``name``: ``"region_<name>"``."""
    if not isinstance(name, str) or not _REGION_NAME.match(name):
        raise ValueError(
            f"region name {name!r} must be an identifier (letters, digits, underscores, not starting "
            "with a digit), e.g. 'top_left_corner'"
        )
    return f"region_{name}"


def shard_path(store: str | os.PathLike[str], rank: int, world_size: int) -> Path:
    """Where rank ``rank`` of ``world_size`` writes its shard: ``<stem>.rank<r>-of-<n><suffix>``."""
    p = Path(store)
    return p.with_name(f"{p.stem}.rank{rank}-of-{world_size}{p.suffix or '.sqlite'}")


def shard_stores(store: str | os.PathLike[str]) -> list[Path]:
    """Shard stores of ``store`` left in its folder, for any world size (see :func:`shard_path`)."""
    p = Path(store)
    return sorted(p.parent.glob(f"{glob.escape(p.stem)}.rank*-of-*{p.suffix or '.sqlite'}"))


_F = TypeVar("_F", bound=Callable[..., Any])


def _locked(method: _F) -> _F:
    """Run ``method`` holding the store's lock: one connection, usable from any thread (a notebook's
    comm messages may arrive on another thread than the cell that opened the store), one at a time."""

    @functools.wraps(method)
    def wrapper(self: AuditStore, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _describe_difference(stored: dict[str, Any], wanted: dict[str, Any]) -> str:
    from camwidget.audit.fingerprint import describe_mismatch

    return describe_mismatch(stored, wanted)


def check_store_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path if it can name an audit store file; :class:`UnusableStore` says why not.

    Refused: an empty path, a folder, a path below a file, a name with a NUL character.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"store must be a file path (str or Path) or ':memory:', got {type(path).__name__}")
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not text.strip():
        raise UnusableStore("store is empty; pass a file path such as 'audit.sqlite', or ':memory:'")
    if "\x00" in text:
        raise UnusableStore(f"store {text!r} contains a NUL character; pass a plain file path")
    p = Path(text)
    if p.is_dir() or text.endswith(("/", os.sep)):
        raise UnusableStore(
            f"store {text!r} is a folder; pass a file path inside it, e.g. {str(p / 'audit.sqlite')!r}"
        )
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UnusableStore(
                    f"store {text!r} cannot be created: {str(parent)!r} is a file, not a folder. Pass "
                    "store= a path in a folder"
                )
            break
    return p


class AuditStore:
    """An open audit database.

    Args:
        path: the SQLite file (created if missing), or ``":memory:"`` for a throwaway store.
        readonly: open without writing (the file, or one of ``shards``, must exist). Default False.
            A store on read-only media (a read-only folder, a mounted snapshot) opens too.
        shards: read-only only: shard stores of an interrupted ``torchrun`` audit to read together
            with ``path`` (see :func:`shard_stores`); rows already in ``path`` win. Default none.

    Raises:
        UnusableStore: a folder, a path below a file, a damaged or non-audit file;
            :class:`ReadOnlyStore` when writing was asked for and the file or its folder is read-only.
        FileNotFoundError: ``readonly`` and nothing to read.
        SettingsMismatch: ``shards`` holding another audit than ``path``.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        readonly: bool = False,
        shards: Sequence[str | os.PathLike[str]] = (),
    ) -> None:
        self.readonly = readonly
        self.shards: list[str] = []
        self._lock = threading.RLock()
        if str(path) == ":memory:":
            if readonly:
                raise FileNotFoundError("no audit store at ':memory:'; run camwidget.audit(...) first")
            self.path = ":memory:"
            self.conn = sqlite3.connect(":memory:", timeout=30.0, check_same_thread=False)
        else:
            p = check_store_path(path)
            self.path = str(p)
            if readonly:
                self.conn = self._open_readonly(p, [Path(s) for s in shards])
            else:
                self.conn = self._open_writable(p)
        try:
            self._check_is_audit()
            if not readonly:
                try:
                    self.conn.execute("PRAGMA journal_mode=WAL")
                    self.conn.execute("PRAGMA synchronous=NORMAL")
                    self._create()
                except sqlite3.OperationalError as exc:
                    if "readonly" in str(exc) or "read-only" in str(exc):
                        raise ReadOnlyStore(self._read_only_message()) from exc
                    raise
            if self.shards:
                self._attach_shards()
        except Exception:
            self.conn.close()
            raise

    # -- opening ------------------------------------------------------------------------------------------
    def _read_only_message(self) -> str:
        return (
            f"the audit store {self.path!r} is read-only (the file or its folder cannot be written). To "
            f"read a finished audit use AuditReport.load({self.path!r}); to continue it, copy the file to a "
            "writable folder and pass that path as store="
        )

    def _open_writable(self, p: Path) -> sqlite3.Connection:
        folder = p.parent
        if not folder.exists():
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UnusableStore(
                    f"cannot create the folder {str(folder)!r} for the audit store {str(p)!r} "
                    f"({exc.strerror or exc}); pass store= a path in a folder you can write"
                ) from exc
        if p.exists():
            # WAL mode writes <store>-wal and -shm next to the file: the folder must be writable too
            if not os.access(p, os.W_OK) or not os.access(folder, os.W_OK):
                raise ReadOnlyStore(self._read_only_message())
        elif not os.access(folder, os.W_OK):
            raise ReadOnlyStore(
                f"cannot create the audit store {str(p)!r}: its folder {str(folder)!r} is read-only. Pass "
                "store= a path in a writable folder"
            )
        try:
            return sqlite3.connect(str(p), timeout=30.0, check_same_thread=False)
        except sqlite3.Error as exc:
            raise UnusableStore(
                f"cannot open the audit store {str(p)!r} ({exc}); pass another store= path"
            ) from exc

    def _open_readonly(self, p: Path, shards: list[Path]) -> sqlite3.Connection:
        present = [s for s in shards if s.exists() and s.resolve() != p.resolve()]
        if not p.exists():
            if not present:
                raise FileNotFoundError(f"no audit store at {str(p)!r}; run camwidget.audit(...) first")
            p, present = present[0], present[1:]  # only shards: read the first as the main store
            self.path = str(p)
        self.shards = [str(s) for s in present]
        return self._connect_readonly(p)

    @staticmethod
    def _connect_readonly(p: Path) -> sqlite3.Connection:
        """A read-only connection; on read-only media (no -shm can be made) an immutable one."""
        uri = p.resolve().as_uri()
        for flags in ("?mode=ro", "?mode=ro&immutable=1"):
            conn = sqlite3.connect(uri + flags, uri=True, timeout=30.0, check_same_thread=False)
            try:
                conn.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
                return conn
            except sqlite3.OperationalError as exc:  # "unable to open database file" (cannot make -shm)
                conn.close()
                error = exc
            except sqlite3.DatabaseError:
                return conn  # damaged: _check_is_audit says so
        raise UnusableStore(f"cannot read the audit store {str(p)!r} ({error}); check its permissions")

    def _attach_shards(self) -> None:
        """Read the shard stores with this one: a temporary view ``results`` over all of them."""
        settings = self.settings
        names = []
        for k, shard in enumerate(self.shards):
            alias = f"shard{k}"
            uri = Path(shard).resolve().as_uri()
            try:
                self.conn.execute("ATTACH DATABASE ? AS " + alias, (uri + "?mode=ro",))
                self.conn.execute(f"SELECT COUNT(*) FROM {alias}.sqlite_master").fetchone()
            except sqlite3.OperationalError:  # read-only media: no -shm can be made next to the shard
                if alias in self._schemas():
                    self.conn.execute("DETACH DATABASE " + alias)
                self.conn.execute("ATTACH DATABASE ? AS " + alias, (uri + "?mode=ro&immutable=1",))
            row = self.conn.execute(f"SELECT value FROM {alias}.meta WHERE key='settings'").fetchone()
            if row is None:
                continue  # an empty shard: its rank had not written anything yet
            theirs = json.loads(row[0])
            if settings is not None and theirs != settings:
                raise SettingsMismatch(
                    f"the shard store {shard!r} holds another audit than {self.path!r} "
                    f"({_describe_difference(settings, theirs)}); move it away"
                )
            names.append(alias)
        if not names:
            return
        cols = ", ".join(_quote(c) for c in self._table_columns("main"))
        parts = [f"SELECT {cols} FROM main.results"]
        seen = ["SELECT idx FROM main.results"]
        for alias in names:
            parts.append(f"SELECT {cols} FROM {alias}.results WHERE idx NOT IN ({' UNION '.join(seen)})")
            seen.append(f"SELECT idx FROM {alias}.results")
        self.conn.execute(f"CREATE TEMP VIEW results AS {' UNION ALL '.join(parts)}")

    def _schemas(self) -> set[str]:
        return {r[1] for r in self.conn.execute("PRAGMA database_list")}

    def _table_columns(self, schema: str) -> list[str]:
        return [r[1] for r in self.conn.execute(f"PRAGMA {schema}.table_info(results)")]

    # -- lifecycle ------------------------------------------------------------------------------------
    @_locked
    def close(self) -> None:
        """Close the connection (idempotent)."""
        try:
            self.conn.close()
        except sqlite3.Error:  # pragma: no cover - closing twice
            pass

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_is_audit(self) -> None:
        try:
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            row = (
                self.conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
                if "meta" in tables
                else None
            )
            if "results" in tables:
                self.conn.execute("SELECT idx FROM results LIMIT 1").fetchall()
        except sqlite3.DatabaseError as exc:
            raise UnusableStore(
                f"{self.path!r} is not an SQLite audit store, or it is damaged ({exc}); pass another store= "
                "path (or delete the file to start the audit over)"
            ) from exc
        if tables and not {"meta", "results"} <= tables:
            raise UnusableStore(
                f"{self.path!r} is an SQLite database but not a camwidget audit store (tables: "
                f"{', '.join(sorted(tables))}); pass another store= path"
            )
        if row is not None and json.loads(row[0]) != SCHEMA_VERSION:
            why = (
                " (schema 1 records no penultimate embeddings, logits or true-class maps, which slices, "
                "the embedding map and error understanding need)"
                if json.loads(row[0]) == 1
                else ""
            )
            raise UnusableStore(
                f"{self.path!r} was written with audit store schema {row[0]}; this camwidget reads "
                f"schema {SCHEMA_VERSION}{why}. Audit again into a new store= path (or pass "
                "overwrite=True to replace this one)"
            )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction that takes the write lock at once (``BEGIN IMMEDIATE``): what it
        reads cannot change under it (another writer waits, up to the 30 s busy timeout)."""
        if self.conn.in_transaction:
            self.conn.commit()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()

    def _create(self) -> None:
        with self._write() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            columns = ", ".join(f"{name} {kind}" for name, kind in _BASE_COLUMNS)
            conn.execute(f"CREATE TABLE IF NOT EXISTS results ({columns})")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS derived (key TEXT PRIMARY KEY, rows TEXT NOT NULL, value BLOB)"
            )
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)", (json.dumps(SCHEMA_VERSION),)
            )

    # -- meta -----------------------------------------------------------------------------------------
    @_locked
    def get_meta(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key``, or ``default``."""
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    @_locked
    def set_meta(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON-serialisable) under ``key``, in its own transaction."""
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                (key, json.dumps(value, sort_keys=True)),
            )

    @_locked
    def get_derived(self, key: str, rows: str) -> bytes | None:
        """The value kept under ``key`` if it was computed from the rows with digest ``rows``, else None."""
        if "derived" not in self._tables():
            return None
        row = self.conn.execute("SELECT rows, value FROM derived WHERE key=?", (key,)).fetchone()
        return None if row is None or row[0] != rows else bytes(row[1])

    @_locked
    def set_derived(self, key: str, rows: str, value: bytes) -> None:
        """Keep ``value`` under ``key``, computed from the rows with digest ``rows`` (replacing any)."""
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO derived (key, rows, value) VALUES (?, ?, ?)", (key, rows, value)
            )

    def _tables(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    @property
    def settings(self) -> dict[str, Any] | None:
        """The audit settings recorded by the first writer, or None for a new store."""
        return self.get_meta("settings")

    def check_settings(self, settings: dict[str, Any]) -> None:
        """Raise :class:`SettingsMismatch` if the store holds an audit with other ``settings``."""
        self._check(self.settings, settings)

    def _check(self, stored: dict[str, Any] | None, settings: dict[str, Any]) -> None:
        wanted = json.loads(json.dumps(settings, sort_keys=True))
        if stored is not None and stored != wanted:
            raise SettingsMismatch(
                f"the store {self.path!r} holds an audit made with other settings: "
                f"{_describe_difference(stored, wanted)}. Nothing was written. Pass another store= "
                "path, or overwrite=True (or delete the file) to start this audit over"
            )

    @_locked
    def init_settings(self, settings: dict[str, Any]) -> None:
        """Record ``settings`` on a new store (and add the region columns), or check them on an old one.

        Atomic: of two writers starting at once, one records and the other checks against it.
        """
        with self._write() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key='settings'").fetchone()
            stored = None if row is None else json.loads(row[0])
            self._check(stored, settings)
            if stored is None:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('settings', ?)",
                    (json.dumps(settings, sort_keys=True),),
                )
            present = set(self.columns())
            for name in settings.get("regions", {}):
                col = region_column(name)
                if col not in present:
                    conn.execute(f"ALTER TABLE results ADD COLUMN {_quote(col)} REAL")

    # -- rows -----------------------------------------------------------------------------------------
    @_locked
    def columns(self) -> list[str]:
        """Names of the results table's columns, in table order."""
        return [r[1] for r in self.conn.execute("PRAGMA table_info(results)")]

    @_locked
    def done_indices(self) -> set[int]:
        """Dataset indices that already have a row (a result or an error)."""
        return {r[0] for r in self.conn.execute("SELECT idx FROM results")}

    @_locked
    def stored_among(self, indices: Iterable[int]) -> set[int]:
        """Which of ``indices`` already have a row (written by this or by another writer)."""
        wanted = sorted({int(i) for i in indices})
        found: set[int] = set()
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            sql = f"SELECT idx FROM results WHERE idx IN ({', '.join('?' for _ in part)})"
            found |= {r[0] for r in self.conn.execute(sql, part)}
        return found

    @_locked
    def count(self) -> int:
        """Number of rows."""
        return int(self.conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    @_locked
    def write_rows(self, rows: Sequence[dict[str, Any]], *, skip_existing: bool = False) -> int:
        """Insert ``rows`` (dicts keyed by column name) in one transaction: all of them or none.

        Args:
            rows: the rows; keys are column names.
            skip_existing: keep the stored row when an ``idx`` is already there (another writer of the
                same audit got there first) instead of raising ``sqlite3.IntegrityError``.

        Returns:
            The number of rows inserted.
        """
        if not rows:
            return 0
        names = sorted({k for row in rows for k in row})
        unknown = set(names) - set(self.columns())
        if unknown:
            raise ValueError(f"unknown result column(s) {', '.join(sorted(unknown))}")
        verb = "INSERT OR IGNORE" if skip_existing else "INSERT"
        sql = (
            f"{verb} INTO results ({', '.join(_quote(n) for n in names)}) "
            f"VALUES ({', '.join('?' for _ in names)})"
        )
        with self._write() as conn:
            before = conn.total_changes
            conn.executemany(sql, [tuple(row.get(n) for n in names) for row in rows])
            return conn.total_changes - before

    @_locked
    def read(
        self, columns: Iterable[str] | None = None, where: str = "", params: Sequence[Any] = ()
    ) -> list[tuple]:
        """Rows as tuples of ``columns`` (default all), ordered by ``idx``."""
        cols = list(columns) if columns is not None else self.columns()
        sql = f"SELECT {', '.join(_quote(c) for c in cols)} FROM results {where} ORDER BY idx"
        return self.conn.execute(sql, tuple(params)).fetchall()

    @_locked
    def checkpoint(self) -> None:
        """Fold the write-ahead log into the main file (so a single file can be copied)."""
        if not self.readonly and self.path != ":memory:":
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _complete_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    """A dict-valued meta entry the target already has gains the keys only the source has (a shard whose
    rank measured what the other had not yet, e.g. the error-understanding path's pixel shares)."""
    theirs = json.loads(value)
    row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    ours = json.loads(row[0]) if row else None
    if isinstance(theirs, dict) and isinstance(ours, dict) and set(theirs) - set(ours):
        conn.execute(
            "UPDATE meta SET value=? WHERE key=?", (json.dumps({**theirs, **ours}, sort_keys=True), key)
        )


def merge_stores(
    target: str | os.PathLike[str], sources: Sequence[str | os.PathLike[str]], *, remove: bool = False
) -> int:
    """Merge the rows of shard stores ``sources`` into ``target`` (created if missing).

    All stores must hold the same audit settings (else :class:`SettingsMismatch`, nothing merged from
    the offending shard). Rows already in ``target`` are kept; each source is merged in one transaction,
    so an interrupted merge can simply be run again.

    Args:
        target: the merged store's path.
        sources: shard store paths (``torchrun`` ranks write ``<stem>.rank<r>-of-<n><suffix>``).
        remove: delete each source (and its -wal/-shm files) once merged.

    Returns:
        The number of rows added to ``target``.
    """
    added = 0
    with AuditStore(target) as out:
        for source in sources:
            src_path = Path(source)
            if src_path.resolve() == Path(target).resolve():
                continue
            with AuditStore(src_path, readonly=True) as src:
                settings = src.settings
                if settings is None:
                    continue  # an empty shard (its rank had nothing to do)
                out.init_settings(settings)
                other_meta = src.conn.execute(
                    "SELECT key, value FROM meta WHERE key NOT IN ('settings', 'schema')"
                )
                src_columns = src.columns()
                missing = set(src_columns) - set(out.columns())
                if missing:
                    raise SettingsMismatch(f"{source}: columns {sorted(missing)} are not in {target}")
                cols = ", ".join(_quote(c) for c in src_columns)
                before = out.count()
                meta_rows = other_meta.fetchall()
                rows = src.conn.execute(f"SELECT {cols} FROM results").fetchall()
            with out._write() as conn:
                for key, value in meta_rows:
                    conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, value))
                    _complete_meta(conn, key, value)
                conn.executemany(
                    f"INSERT OR IGNORE INTO results ({cols}) VALUES ({', '.join('?' for _ in src_columns)})",
                    rows,
                )
            added += out.count() - before
            if remove:
                for suffix in ("", "-wal", "-shm"):
                    Path(str(src_path) + suffix).unlink(missing_ok=True)
        out.checkpoint()
    return added
