"""Raw response archive (bronze) and replay (seed 004).

With ``archive: true`` every page a window reads is kept, as received, in the Delta
table ``<target>_raw``: body, URL, status, headers of interest, the run / load / window
it belongs to and the body's sha256. Secrets are masked in the URL and the headers (a
``Link`` header may echo a key); the body is kept as received (it is the data). The pages of a window are
staged next to its rows (:class:`PageRecorder`, no Spark) and appended when the
window's rows are committed, so the archive holds what the target was built from.

``restlake replay --config-id ID --run-id R`` re-parses the archived pages of run
``R`` with the config's current parser and MERGEs the rows into the target, without
calling the API: a parser fix is applied to past data without re-fetching.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from framework.secrets import redact
from framework.timeutil import to_utc, utcnow

log = logging.getLogger(__name__)

RAW_SUFFIX = "_raw"
PAGES_FILE = "raw_pages.jsonl"
HEADERS_KEPT = ("content-type", "date", "etag", "last-modified", "link", "retry-after",
                "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "x-request-id")


def archive_schema() -> Any:
    from pyspark.sql import types as T

    return T.StructType([
        T.StructField("config_id", T.StringType(), False),
        T.StructField("run_id", T.StringType(), False),
        T.StructField("load_id", T.StringType()),
        T.StructField("window_index", T.LongType()),
        T.StructField("window_start", T.TimestampType()),
        T.StructField("window_end", T.TimestampType()),
        T.StructField("page_no", T.LongType()),
        T.StructField("url", T.StringType()),
        T.StructField("status", T.LongType()),
        T.StructField("headers", T.StringType()),
        T.StructField("body", T.StringType()),
        T.StructField("body_sha256", T.StringType()),
        T.StructField("bytes", T.LongType()),
        T.StructField("fetched_at", T.TimestampType()),
    ])


def _ts(value: dt.datetime) -> str:
    return to_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class PageRecorder:
    """Stages the raw pages of one window as JSON lines (an ``on_response`` callback).

    Args:
        folder: the window's staging folder.
        config_id, run_id, load_id: lineage written with each page.
        index: the window's index in the load.
    """

    def __init__(self, folder: Path, config_id: str, run_id: str, load_id: Optional[str],
                 index: int) -> None:
        self.path = Path(folder) / PAGES_FILE
        self.config_id, self.run_id, self.load_id, self.index = config_id, run_id, load_id, index
        self.pages = 0

    def __call__(self, response: Any, window: Any, page_no: int) -> None:
        body: bytes = response.body or b""
        headers = {k.lower(): redact(v) for k, v in dict(response.headers or {}).items()
                   if k.lower() in HEADERS_KEPT}
        line = {
            "config_id": self.config_id, "run_id": self.run_id, "load_id": self.load_id,
            "window_index": self.index, "window_start": _ts(window.start),
            "window_end": _ts(window.end), "page_no": page_no, "url": redact(response.url),
            "status": response.status, "headers": json.dumps(headers, sort_keys=True),
            "body": body.decode("utf-8", "replace"),
            "body_sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body),
            "fetched_at": _ts(utcnow()),
        }
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
        self.pages += 1

    def __repr__(self) -> str:
        return f"PageRecorder({self.config_id} w{self.index} pages={self.pages})"


def staged_page_files(folders: list[Path]) -> list[str]:
    """The staged page files of committed windows (windows without pages are skipped)."""
    return [str(Path(f) / PAGES_FILE) for f in folders if (Path(f) / PAGES_FILE).exists()]


def write_pages(spark: Any, warehouse: Any, target: Any, files: list[str],
                txn: Optional[tuple[str, int]] = None) -> int:
    """Append staged pages to ``<target>_raw``; returns how many pages.

    Args:
        txn: ``(app id, version)`` makes the append idempotent (Delta ``txnAppId``/
            ``txnVersion``): a batch written again with a version already committed is skipped.
    """
    from framework.lake.commits import retry_conflicts

    if not files:
        return 0
    df = spark.read.schema(archive_schema()).option("mode", "FAILFAST").json(files).cache()
    try:
        count = df.count()
        writer = df.write.format("delta").mode("append")
        if txn is not None:
            writer = writer.option("txnAppId", txn[0]).option("txnVersion", txn[1])
        retry_conflicts(lambda: warehouse.save(writer, target.suffixed(RAW_SUFFIX)),
                        f"append raw pages of {target.name}")
    finally:
        df.unpersist()
    return count


@dataclass
class ReplayResult:
    """What a replay did."""

    config_id: str
    source_run_id: str
    run_id: str
    windows: int = 0
    pages: int = 0
    records: int = 0
    rows_written: int = 0
    version: Optional[int] = None

    def __repr__(self) -> str:
        return (f"ReplayResult({self.config_id} {self.source_run_id}: pages={self.pages} "
                f"records={self.records} rows={self.rows_written})")


def replay(spark: Any, store: Any, config_id: str, run_id: str, staging_root: Path,
           new_run_id: Optional[str] = None, loaded_by: Optional[str] = None) -> ReplayResult:
    """Re-parse the archived pages of ``run_id`` and MERGE their rows into the target.

    Appends one audit row (:func:`framework.load.audit.audit_record`, ``LoadType``
    ``REPLAY``) whatever happens once the control row is found: ``LoadId`` is the load
    the replayed run belonged to, ``Attempt`` 1 (a replay is a run of its own, not a
    retry of that load), ``Requests`` 0.

    Raises:
        ConfigError: ``run_id`` is not a run id, or no control row for ``config_id``.
        LoadError: the config has no primary key, or nothing was archived for the run.
    """
    import time

    from framework.config import check_run_id

    check_run_id(run_id, field="--run-id")

    from pyspark.sql import functions as F

    from control.mapping import row_to_config
    from framework import jsonpath
    from framework.errors import ConfigError, LoadError
    from framework.http.client import page_data
    from framework.http.telemetry import Telemetry
    from framework.lake.tables import TableRef
    from framework.load.audit import LoadProgress, audit_record, current_user
    from framework.load.fetch import stage_records, total_path_of
    from framework.load.runtime import sanitize_error
    from framework.load.staging import RunStaging
    from framework.load.writers import TargetWriter
    from framework.schema import RowShaper
    from parsers import get_parser

    row = store.get(config_id)
    if row is None:
        raise ConfigError(f"no control row with ConfigId '{config_id}'")
    started, t0 = utcnow(), time.monotonic()
    out = ReplayResult(config_id, run_id, new_run_id or f"replay-{run_id}-{started:%Y%m%dT%H%M%S}")
    progress, telemetry = LoadProgress(), Telemetry()
    span: dict[str, Any] = {"load_id": None, "start": None, "end": None}
    writer: Optional[Any] = None
    error: Optional[str] = None
    staging = RunStaging(staging_root, config_id, out.run_id)
    try:
        cfg = row_to_config(row)
        if not cfg.primary_key:
            raise LoadError(f"replay of {config_id} needs primary_key (rows are MERGEd, so a "
                            "replay never duplicates them)")
        target = TableRef(cfg.target.catalog, cfg.target.schema_, cfg.target.table)
        raw = target.suffixed(RAW_SUFFIX)
        if not store.warehouse.exists(spark, raw):
            raise LoadError(f"no raw archive {raw.name}: set archive: true in the config of "
                            f"{config_id}")
        pages = (store.warehouse.read(spark, raw)
                 .where((F.col("config_id") == F.lit(config_id)) & (F.col("run_id") == F.lit(run_id)))
                 .orderBy("window_index", "page_no"))
        writer = TargetWriter(spark, store.warehouse, cfg, target, out.run_id, config_id)
        columns = writer.current_columns()
        parser = get_parser(cfg.parser, {k: v for k, v in cfg.parser_options.items()
                                         if k != "total_path"}, data_path=cfg.data_path)
        shaper = RowShaper(cfg.system, tuple(cfg.primary_key), tuple(cfg.required_fields), columns,
                           cfg.schema_mode)
        total_path = total_path_of(cfg)
        stages: dict[int, Any] = {}
        events_seen: set[Any] = set()  # a push flush's event ids (one delivered again is skipped)
        reading = time.perf_counter()  # the archive stands in for the API: its read is "fetch"
        for page in pages.toLocalIterator():  # one page in driver memory at a time
            index = int(page["window_index"])
            stage = stages.get(index)
            if stage is None:
                stage = stages[index] = staging.window(index)
            window_start, window_end = to_utc(page["window_start"]), to_utc(page["window_end"])
            span["load_id"] = span["load_id"] or page["load_id"]
            span["start"] = min(filter(None, (span["start"], window_start)))
            span["end"] = max(filter(None, (span["end"], window_end)))
            collected = to_utc(page["fetched_at"])
            if cfg.is_push:  # a pushed event: read as its flush read it (bad ones quarantined,
                # one delivered again skipped)
                from framework.push.flush import (delivered_again, event_record_count,
                                                  event_records)

                headers, body = json.loads(page["headers"] or "{}"), page["body"].encode("utf-8")
                again = delivered_again(headers, events_seen)
                records = None if again else event_records(
                    cfg, parser, headers.get("event-id"), body, stage, window_start, window_end,
                    collected)
                if records is None:
                    out.records += event_record_count(cfg, parser, body) if again else 1
                    out.pages += 1
                    telemetry.count_page()
                    continue
            else:
                data = page_data(int(page["status"]), page["body"].encode("utf-8"))
                total = (jsonpath.find(data, total_path) if total_path and page["page_no"] == 0
                         else None)
                if isinstance(total, int) and not isinstance(total, bool):  # as the fetch reads it
                    progress.expected = (progress.expected or 0) + total
                records = parser.parse(data)
                shaper.check_keys(records)
            out.records += len(records)
            stage_records(records, shaper, stage, run_id=out.run_id, window_start=window_start,
                          window_end=window_end, collected_at=collected,
                          seq=index * 10 ** 9 + int(page["page_no"]) * 10 ** 5)
            out.pages += 1
            telemetry.count_page()
        if not stages:
            raise LoadError(f"no archived pages for run {run_id} of {config_id} in {raw.name}")
        for stage in stages.values():
            stage.close()
        ordered = [stages[i] for i in sorted(stages)]
        progress.add_time("fetch", time.perf_counter() - reading)
        progress.windows_total = len(ordered)
        progress.source_rows = out.records
        progress.rescued, progress.schema_changes = shaper.rescued_rows, set(shaper.new_fields)
        with progress.timed("write"):
            write = writer.merge(ordered, columns, batch_version=max(stages) + 1)
        progress.rows_written, progress.version = write.rows_written, write.version
        progress.rescued += write.rows_rescued
        progress.schema_changes |= set(write.schema_changes)
        progress.windows_loaded = len(ordered)
        progress.rejected = writer.quarantine(ordered)
        out.windows, out.rows_written, out.version = len(stages), write.rows_written, write.version
    except Exception as exc:
        error = sanitize_error(exc)
        raise
    finally:
        staging.cleanup()
        status = ("SUCCESS" if error is None else
                  "PARTIAL" if progress.rows_written else "FAILED")
        total = None
        if writer is not None:
            try:
                total = writer.total_rows()
            except Exception:  # noqa: BLE001 - a count failure must not hide the result
                total = None
        progress.settle_phases(time.monotonic() - t0)
        try:
            store.append_audit(audit_record(
                row, load_type="REPLAY", status=status, error=error, run_id=out.run_id,
                load_id=span["load_id"], attempt=1, load_start=span["start"],
                load_end=span["end"], started_at=started, duration_s=time.monotonic() - t0,
                loaded_by=loaded_by or current_user(), progress=progress,
                telemetry=telemetry.as_dict(), total_rows=total))
        except Exception as audit_exc:
            if error is None:
                raise
            # the replay's own failure is the one to report
            log.error("%s: could not append the audit row of the replay: %s", config_id,
                      sanitize_error(audit_exc))
    return out
