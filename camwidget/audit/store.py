"""The audit's store: one embedded SQLite file (standard library), written batch by batch.

Layout (schema version 1)::

    meta(key TEXT PRIMARY KEY, value TEXT)      JSON values: "settings", "schema", "image_size", ...
    results(idx INTEGER PRIMARY KEY,            the dataset index; one row per image, never two
            label, predicted, probability, correct, error, path, object_box,
            map BLOB, map_h, map_w, map_scale,  the signed raw map at feature resolution, float16
            thumb BLOB,                         a small JPEG of the input, for galleries
            object_energy, insertion_auc, deletion_auc,
            "region_<name>" ...)                one REAL column per named region

Durability: the database runs in WAL mode with ``synchronous=NORMAL``; each batch of results is one
transaction. A crash, a killed kernel or Ctrl-C therefore loses at most the batch in flight, and the file
stays consistent (SQLite's guarantee against application crashes; an OS crash or power cut may also lose
the last few committed batches, never corrupt the file). Reruns skip the indices already stored.

Settings: the first writer records the audit's settings, everything that changes a row's values
(method, layer, model fingerprint, dataset length or folder, regions, metrics, number of classes).
A later writer with other settings is refused before anything is written (:class:`SettingsMismatch`),
so one table never mixes two audits.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA_VERSION", "AuditStore", "SettingsMismatch", "merge_stores", "region_column"]

SCHEMA_VERSION = 1

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
    ("thumb", "BLOB"),
    ("object_energy", "REAL"),
    ("insertion_auc", "REAL"),
    ("deletion_auc", "REAL"),
)

_REGION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SettingsMismatch(ValueError):
    """The store holds an audit made with other settings; nothing was written to it."""


def region_column(name: str) -> str:
    """The results column holding the energy share inside region ``name``: ``"region_<name>"``."""
    if not isinstance(name, str) or not _REGION_NAME.match(name):
        raise ValueError(
            f"region name {name!r} must be an identifier (letters, digits, underscores, not starting "
            "with a digit), e.g. 'top_left_corner'"
        )
    return f"region_{name}"


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _describe_difference(stored: dict[str, Any], wanted: dict[str, Any]) -> str:
    parts = []
    for key in sorted(set(stored) | set(wanted)):
        a, b = stored.get(key), wanted.get(key)
        if a != b:
            a_s, b_s = json.dumps(a, sort_keys=True), json.dumps(b, sort_keys=True)
            if len(a_s) > 120:
                a_s = a_s[:117] + "..."
            if len(b_s) > 120:
                b_s = b_s[:117] + "..."
            parts.append(f"{key}: stored {a_s}, now {b_s}")
    return "; ".join(parts)


class AuditStore:
    """An open audit database.

    Args:
        path: the SQLite file (created if missing), or ``":memory:"`` for a throwaway store.
        readonly: open without writing (the file must exist). Default False.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = str(path)
        self.readonly = readonly
        if readonly:
            if self.path == ":memory:" or not Path(self.path).exists():
                raise FileNotFoundError(f"no audit store at {self.path!r}; run camwidget.audit(...) first")
            uri = Path(self.path).resolve().as_uri() + "?mode=ro"
            self.conn = sqlite3.connect(uri, uri=True, timeout=30.0, check_same_thread=False)
        else:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=30.0)
        try:
            self._check_is_audit()
            if not readonly:
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self._create()
        except Exception:
            self.conn.close()
            raise

    # -- lifecycle ------------------------------------------------------------------------------------
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
        except sqlite3.DatabaseError as exc:
            raise ValueError(
                f"{self.path!r} is not an SQLite audit store ({exc}); pass another store= path"
            ) from exc
        if tables and not {"meta", "results"} <= tables:
            raise ValueError(
                f"{self.path!r} is an SQLite database but not a camwidget audit store (tables: "
                f"{', '.join(sorted(tables))}); pass another store= path"
            )
        if "meta" in tables:
            row = self.conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is not None and json.loads(row[0]) != SCHEMA_VERSION:
                raise ValueError(
                    f"{self.path!r} was written with audit store schema {row[0]}; this camwidget reads "
                    f"schema {SCHEMA_VERSION}. Use a new store= path"
                )

    def _create(self) -> None:
        with self.conn:
            self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            columns = ", ".join(f"{name} {kind}" for name, kind in _BASE_COLUMNS)
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS results ({columns})")
            self.conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)", (json.dumps(SCHEMA_VERSION),)
            )

    # -- meta -----------------------------------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key``, or ``default``."""
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON-serialisable) under ``key``, in its own transaction."""
        with self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                (key, json.dumps(value, sort_keys=True)),
            )

    @property
    def settings(self) -> dict[str, Any] | None:
        """The audit settings recorded by the first writer, or None for a new store."""
        return self.get_meta("settings")

    def check_settings(self, settings: dict[str, Any]) -> None:
        """Raise :class:`SettingsMismatch` if the store holds an audit with other ``settings``."""
        stored = self.settings
        wanted = json.loads(json.dumps(settings, sort_keys=True))
        if stored is not None and stored != wanted:
            raise SettingsMismatch(
                f"the store {self.path!r} holds an audit made with other settings "
                f"({_describe_difference(stored, wanted)}). Nothing was written. Pass another store= "
                "path, or delete the file to start this audit over"
            )

    def init_settings(self, settings: dict[str, Any]) -> None:
        """Record ``settings`` on a new store (and add the region columns), or check them on an old one."""
        self.check_settings(settings)
        if self.settings is None:
            with self.conn:
                self.conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('settings', ?)",
                    (json.dumps(settings, sort_keys=True),),
                )
                for name in settings.get("regions", {}):
                    col = region_column(name)
                    if col not in self.columns():
                        self.conn.execute(f"ALTER TABLE results ADD COLUMN {_quote(col)} REAL")

    # -- rows -----------------------------------------------------------------------------------------
    def columns(self) -> list[str]:
        """Names of the results table's columns, in table order."""
        return [r[1] for r in self.conn.execute("PRAGMA table_info(results)")]

    def done_indices(self) -> set[int]:
        """Dataset indices that already have a row (a result or an error)."""
        return {r[0] for r in self.conn.execute("SELECT idx FROM results")}

    def count(self) -> int:
        """Number of rows."""
        return int(self.conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def write_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert ``rows`` (dicts keyed by column name) in one transaction: all of them or none.

        A row whose ``idx`` is already stored raises ``sqlite3.IntegrityError`` and nothing is written.
        """
        if not rows:
            return
        names = sorted({k for row in rows for k in row})
        unknown = set(names) - set(self.columns())
        if unknown:
            raise ValueError(f"unknown result column(s) {', '.join(sorted(unknown))}")
        sql = (
            f"INSERT INTO results ({', '.join(_quote(n) for n in names)}) "
            f"VALUES ({', '.join('?' for _ in names)})"
        )
        with self.conn:
            self.conn.executemany(sql, [tuple(row.get(n) for n in names) for row in rows])

    def read(
        self, columns: Iterable[str] | None = None, where: str = "", params: Sequence[Any] = ()
    ) -> list[tuple]:
        """Rows as tuples of ``columns`` (default all), ordered by ``idx``."""
        cols = list(columns) if columns is not None else self.columns()
        sql = f"SELECT {', '.join(_quote(c) for c in cols)} FROM results {where} ORDER BY idx"
        return self.conn.execute(sql, tuple(params)).fetchall()

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the main file (so a single file can be copied)."""
        if not self.readonly:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


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
            with out.conn:
                for key, value in meta_rows:
                    out.conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, value))
                out.conn.executemany(
                    f"INSERT OR IGNORE INTO results ({cols}) VALUES ({', '.join('?' for _ in src_columns)})",
                    rows,
                )
            added += out.count() - before
            if remove:
                for suffix in ("", "-wal", "-shm"):
                    Path(str(src_path) + suffix).unlink(missing_ok=True)
        out.checkpoint()
    return added
