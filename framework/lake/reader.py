"""The JVM-free read path: Delta tables as Arrow, cached by their Delta version.

Local warehouse tables are read with delta-rs (``deltalake``) into ``pyarrow`` tables, and
aggregations run in DuckDB over them, so ``status``, ``audit``, the report's data and the
service's answers start no JVM. Each table is read once per Delta version: the latest
version is found by looking for the next commit file (a couple of ``stat`` calls), and an
append-only table that grew is read incrementally (only the files added since). Answers
computed from tables are cached too, keyed by the versions they read.

Without a local root (Unity Catalog on Databricks) the same calls read through Spark
(``spark_factory``), so callers never choose a path.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Optional, Sequence

from framework.lake.tables import TableRef, Warehouse

log = logging.getLogger(__name__)

#: How many answers :class:`TableReader` keeps (least recently used go first).
ANSWER_CACHE_SIZE = 512


@dataclass
class _Loaded:
    version: int
    files: frozenset[str]
    table: Any  # pyarrow.Table
    append_only: bool


@dataclass
class _Answer:
    versions: tuple
    value: Any
    at: float
    hits: int = field(default=0)


class TableReader:
    """Reads warehouse tables without a JVM and caches what it read by Delta version.

    Args:
        warehouse: where tables live.
        spark_factory: returns a SparkSession; used only when the warehouse has no local
            root (Unity Catalog), never for a local warehouse.
        clock: seconds, to evict the least recently stored answer (``time.monotonic``).
    """

    def __init__(self, warehouse: Warehouse, spark_factory: Optional[Callable[[], Any]] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.warehouse = warehouse
        self._spark_factory = spark_factory
        self._clock = clock
        self._lock = threading.RLock()
        self._tables: dict[tuple, _Loaded] = {}
        self._table_locks: dict[tuple, threading.Lock] = {}
        self._refreshing: set[Hashable] = set()
        self._pool: Any = None
        self._versions: dict[str, int] = {}
        self._answers: dict[Hashable, _Answer] = {}
        self.reads = 0  # table reads done (not served from the cache): for tests and benches
        self.files_read = 0  # data files those reads opened

    def __repr__(self) -> str:
        return f"TableReader({self.warehouse!r}, {len(self._tables)} tables cached)"

    # ----------------------------------------------------------------- versions
    def version(self, ref: TableRef) -> Optional[int]:
        """The latest committed version of ``ref`` (None: no such table)."""
        if not self.warehouse.is_local:
            return self.warehouse.version(self._spark(), ref)
        log_dir = Path(self.warehouse.path(ref), "_delta_log")
        key = str(log_dir)
        known = self._versions.get(key)
        if known is not None and (log_dir / f"{known:020d}.json").exists():
            v = known
            while (log_dir / f"{v + 1:020d}.json").exists():
                v += 1
        else:  # first look, or the table was dropped and created again
            versions = [int(p.name[:-5]) for p in log_dir.glob("*.json") if p.name[:-5].isdigit()]
            if not versions:
                self._versions.pop(key, None)
                return None
            v = max(versions)
        self._versions[key] = v
        return v

    def exists(self, ref: TableRef) -> bool:
        return self.version(ref) is not None

    def versions(self, refs: Iterable[TableRef]) -> tuple:
        return tuple(self.version(r) for r in refs)

    # ------------------------------------------------------------------- tables
    def table(self, ref: TableRef, columns: Optional[Sequence[str]] = None) -> Any:
        """``ref`` as a ``pyarrow.Table`` (only ``columns`` when given), or None when missing.

        Read once per Delta version; when an append-only table grew, only its new files
        are read and appended to what is cached.
        """
        version = self.version(ref)
        if version is None:
            return None
        key = (ref.name, tuple(columns) if columns else None)
        with self._lock:
            lock = self._table_locks.setdefault(key, threading.Lock())
        with lock:  # one reader per table; other tables are read meanwhile
            cached = self._tables.get(key)
            if cached is not None and cached.version == version:
                return cached.table
            loaded = self._load(ref, version, columns, cached)
            self._tables[key] = loaded
            return loaded.table

    def dataset(self, ref: TableRef) -> Any:
        """A lazy ``pyarrow.dataset.Dataset`` of ``ref`` (local), for scans of large targets;
        None when missing. Without a local root: the table as Arrow (read through Spark)."""
        if self.version(ref) is None:
            return None
        if not self.warehouse.is_local:
            return self.table(ref)
        return delta_dataset(self.warehouse.path(ref))

    def schema_names(self, ref: TableRef) -> list[str]:
        """Column names of ``ref`` (empty when missing)."""
        if self.version(ref) is None:
            return []
        if not self.warehouse.is_local:
            return list(self.table(ref).column_names)
        from deltalake import DeltaTable

        return [f.name for f in DeltaTable(self.warehouse.path(ref)).schema().fields]

    def file_stats(self, ref: TableRef) -> Any:
        """The add actions of ``ref``'s files with their statistics (``pyarrow.Table``,
        flattened: ``num_records``, ``min.<col>``, ``max.<col>``, ``null_count.<col>``);
        None when missing or not local."""
        if not self.warehouse.is_local or self.version(ref) is None:
            return None
        import pyarrow as pa
        from deltalake import DeltaTable

        return pa.table(DeltaTable(self.warehouse.path(ref)).get_add_actions(flatten=True))

    def _spark(self) -> Any:
        if self._spark_factory is None:
            from framework.lake.spark import get_spark

            self._spark_factory = get_spark
        return self._spark_factory()

    def _load(self, ref: TableRef, version: int, columns: Optional[Sequence[str]],
              cached: Optional[_Loaded]) -> _Loaded:
        self.reads += 1
        cols = list(columns) if columns else None
        if not self.warehouse.is_local:
            df = self.warehouse.read(self._spark(), ref)
            table = (df.select(*cols) if cols else df).toArrow()
            return _Loaded(version, frozenset(), table, False)
        import pyarrow as pa
        import pyarrow.dataset as pds
        from deltalake import DeltaTable

        dt = DeltaTable(self.warehouse.path(ref), version=version)
        append_only = str(dt.metadata().configuration.get("delta.appendOnly", "")).lower() == "true"
        ds = delta_dataset(self.warehouse.path(ref), dt)
        fragments = list(ds.get_fragments())
        files = frozenset(f.path for f in fragments)
        if cached is not None and cached.append_only and append_only and cached.files <= files:
            new = [f for f in fragments if f.path not in cached.files]
            if not new:
                return _Loaded(version, files, cached.table, True)
            self.files_read += len(new)
            part = pds.FileSystemDataset(new, ds.schema, ds.format, ds.filesystem).to_table(columns=cols)
            table = pa.concat_tables([cached.table, part.cast(cached.table.schema)])
            log.debug("%s: read %d new files at version %d", ref.name, len(new), version)
            return _Loaded(version, files, table, True)
        self.files_read += len(fragments)
        table = ds.to_table(columns=cols)
        return _Loaded(version, files, table, append_only)

    # ------------------------------------------------------------------ answers
    def cached(self, key: Hashable, refs: Sequence[TableRef], compute: Callable[[], Any], *,
               slot: Optional[int] = None, background: bool = False) -> Any:
        """An answer computed from ``refs``, recomputed only when one of their versions moved.

        Args:
            key: names the question and its arguments.
            refs: the tables the answer reads.
            compute: computes the answer.
            slot: for an answer that also depends on the time, the current time slot: a new
                slot recomputes it like a new version.
            background: when an older answer exists, return it at once and recompute in a
                background thread (one at a time per key), so no caller waits for an
                expensive recomputation; the first answer is always computed in the call.
        """
        versions = self.versions(refs) + ((slot,) if slot is not None else ())
        now = self._clock()
        with self._lock:
            hit = self._answers.get(key)
            if hit is not None and hit.versions == versions:
                hit.hits += 1
                return hit.value
            if hit is not None and background:
                if key not in self._refreshing:
                    self._refreshing.add(key)
                    self._executor().submit(self._refresh, key, versions, compute)
                return hit.value
        value = compute()
        self._store(key, versions, value, now)
        return value

    def _store(self, key: Hashable, versions: tuple, value: Any, now: float) -> None:
        with self._lock:
            if key not in self._answers and len(self._answers) >= ANSWER_CACHE_SIZE:
                oldest = min(self._answers, key=lambda k: self._answers[k].at)
                del self._answers[oldest]
            self._answers[key] = _Answer(versions, value, now)

    def _refresh(self, key: Hashable, versions: tuple, compute: Callable[[], Any]) -> None:
        try:
            self._store(key, versions, compute(), self._clock())
        except Exception as exc:  # noqa: BLE001 - the older answer stays; the next call retries
            from framework.secrets import redact

            log.warning("refreshing %s failed: %s", key, redact(f"{type(exc).__name__}: {exc}")[:500])
        finally:
            with self._lock:
                self._refreshing.discard(key)

    def _executor(self) -> Any:
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="restlake-refresh")
        return self._pool

    def query(self, sql: str, tables: dict[str, Any], params: Optional[dict[str, Any]] = None
              ) -> list[dict[str, Any]]:
        """Run DuckDB ``sql`` over Arrow ``tables`` (name -> table); rows as dicts.

        ``sql`` holds only constant text and validated identifiers; values are ``$name``
        parameters.
        """
        con = _duckdb().cursor()
        try:
            for name, table in tables.items():
                con.register(name, table)
            return rows_of(con.sql(sql, params=params or None).to_arrow_table())
        finally:
            con.close()


def delta_dataset(path: str, table: Any = None) -> Any:
    """The local Delta table at ``path`` as a ``pyarrow.dataset`` (of ``table``, the
    ``deltalake.DeltaTable`` of ``path`` at the version to read, when one is open).

    Its files are read through Arrow's own local filesystem, not delta-rs's default
    Python-backed one: with that one, Arrow's I/O threads finish read-ahead work by taking
    the GIL, and a process that exits while one does aborts in the interpreter's shutdown
    ("terminate called without an active exception", exit code 134) after its work is
    done.
    """
    from deltalake import DeltaTable
    from pyarrow import fs

    table = DeltaTable(path) if table is None else table
    return table.to_pyarrow_dataset(filesystem=fs.SubTreeFileSystem(
        str(Path(path).resolve()), fs.LocalFileSystem()))


def rows_of(table: Any) -> list[dict[str, Any]]:
    """An Arrow table's rows as dicts, datetimes in UTC (``datetime.timezone.utc``)."""
    import datetime as dt

    from framework.timeutil import to_utc

    rows = table.to_pylist()
    for row in rows:
        for key, value in row.items():
            if isinstance(value, dt.datetime):
                row[key] = to_utc(value)
    return rows


_DUCK: Any = None
_DUCK_LOCK = threading.Lock()


def _duckdb() -> Any:
    """One in-memory DuckDB database per process (queries use a cursor each), UTC."""
    global _DUCK
    with _DUCK_LOCK:
        if _DUCK is None:
            import duckdb

            con = duckdb.connect(":memory:")
            con.execute("SET TimeZone = 'UTC'")
            con.execute("SET threads = 2")
            # An open connection at interpreter shutdown can abort the process (duckdb
            # issue 13904): close it first.
            atexit.register(_close_duckdb)
            _DUCK = con
        return _DUCK


def _close_duckdb() -> None:
    global _DUCK
    with _DUCK_LOCK:
        if _DUCK is not None:
            _DUCK.close()
            _DUCK = None
