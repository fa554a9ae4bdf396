"""One flush of a push source: spooled events -> parser -> staged rows -> Delta (Spark edge).

The same parts a pull load uses, in the same order: the source's parser turns each
event body into records, :func:`framework.load.fetch.stage_records` shapes them into a
staging folder, :class:`framework.load.writers.TargetWriter` MERGEs them into the target
and appends the rejected ones to ``<target>_quarantine``, and the raw events land in
``<target>_raw`` with the archive's columns (:func:`framework.load.archive.write_pages`;
``restlake replay`` can re-parse a flush's events). Its quality checks and schema drift
are judged by the pull loads' :class:`framework.load.quality.LoadQuality`.

Rows are keyed by ``primary_key``, or by the event id when the config has none. Every
row carries ``_event_id`` (which delivery wrote it). An event whose id was already
flushed (earlier in the batch, or by an earlier flush: its id is in ``<target>_raw``,
received within :data:`REDELIVERY_WINDOW`) is archived again and counted as a duplicate,
never applied again: a sender's redelivery of an old event must not undo a later one. A flush is idempotent: redone after a crash, its MERGE finds its rows
unchanged, and its quarantine and raw appends carry Delta's ``txnAppId``/``txnVersion``
(the spool's id and the flush's sequence number), so Delta skips what already committed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional


from framework.config import SourceConfig
from framework.errors import RestlakeError
from framework.http.client import parse_json
from framework.load.crashpoints import crashpoint

log = logging.getLogger(__name__)

EVENT_ID = "_event_id"
#: Request headers kept with each raw event (never credentials or signatures).
HEADERS_KEPT = ("content-type", "user-agent", "x-github-event", "x-github-delivery",
                "x-github-hook-id", "x-request-id", "idempotency-key")
# A UTF-16 surrogate escape (\ud800-\udfff): only a body holding one can decode to a
# string that is not Unicode text.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
# A number a double may not hold: an exponent of three digits or more, or 300 digits.
_HUGE_NUMBER = re.compile(rb"[0-9][eE]\+?[0-9]{3}|[0-9]{300}")


#: In a raw row's ``headers``: the flush did not apply the event (delivered again).
DELIVERED_AGAIN = "delivered-again"

#: How far back an event id counts as already flushed (from the batch's first receipt):
#: GitHub redelivers for 3 days, Stripe retries for 3 days and resends for 15.
REDELIVERY_WINDOW = dt.timedelta(days=30)


@dataclass
class FlushResult:
    """What one flush did (one audit row)."""

    config_id: str
    run_id: str
    seq: int
    events: int = 0
    records: int = 0
    stored: int = 0
    rejected: int = 0
    redelivered: int = 0
    rescued: int = 0
    schema_changes: set[str] = field(default_factory=set)
    version: Optional[int] = None
    total_rows: Optional[int] = None
    first_received: Optional[dt.datetime] = None
    last_received: Optional[dt.datetime] = None
    error: Optional[str] = None
    quality_error: Optional[str] = None  # an after-commit check of severity fail: rows stay

    @property
    def duplicates(self) -> int:
        """Records that changed nothing in the target: an event delivered again (not
        applied), or superseded by a later event of the same key in the same flush."""
        return max(0, self.records - self.rejected - self.stored)

    def __repr__(self) -> str:
        return (f"FlushResult({self.config_id} #{self.seq}: events={self.events} "
                f"stored={self.stored} duplicates={self.duplicates} rejected={self.rejected})")


def event_id(body: bytes, data: Any, path: Optional[str]) -> Optional[str]:
    """The event's id: the value at ``event_id_path`` in the body, else the body's sha256.

    Returns None when the path is configured and the body has no value there.
    """
    if path is None:
        return hashlib.sha256(body).hexdigest()
    from framework import jsonpath

    value = jsonpath.find(data, path)
    if value is None or isinstance(value, (dict, list)) or value == "":
        return None
    return str(value)


def body_problem(body: bytes, data: Any) -> Optional[str]:
    """Why a body that decoded as JSON still cannot be stored, or None.

    Python's JSON decoder accepts two things JSON does not have:

    * a lone UTF-16 surrogate escape (``"\\udc00"``): the string it yields is not
      Unicode text, and no UTF-8 file, Delta table or Spark string can hold it;
    * ``NaN``, ``Infinity`` and ``-Infinity``: they would be stored as null, the value
      lost with nothing rescued or counted;

    and reads a number beyond a double's range (``1e400``) as infinity, stored as null too.

    Only a body holding a surrogate escape, ``NaN``, ``Infinity`` or a number that may be
    that large is checked in full
    (an escaped emoji's valid pair, or the words inside a string, pass), so the check
    costs a byte scan for the rest.
    """
    surrogate = b"\\u" in body and _SURROGATE_ESCAPE.search(body) is not None
    if (not surrogate and b"NaN" not in body and b"Infinity" not in body
            and _HUGE_NUMBER.search(body) is None):
        return None
    try:
        json.dumps(data, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except ValueError as exc:  # UnicodeEncodeError is a ValueError too
        if not isinstance(exc, UnicodeEncodeError):
            if _overflows(data):
                return ("a number is beyond the range of a double (such as 1e400): it reads "
                        "as infinity (send it as a string)")
            return ("a number is NaN, Infinity or -Infinity, which JSON does not have "
                    "(send null, or the value as a string)")
        char = exc.object[exc.start] if isinstance(exc.object, str) else "?"
        return (f"a string holds a lone UTF-16 surrogate escape (\\u{ord(char):04x}), "
                "which is not Unicode text (JSON strings must be: escape a full surrogate "
                "pair, or send U+FFFD)")
    return None


def body_text(body: bytes) -> str:
    """The event's text, decoded as JSON decodes it (UTF-8, or UTF-16/32 told by its first
    bytes): the raw table keeps it, so a replay reads what the flush read. The signed bytes
    are the spool's; ``body_sha256`` and ``bytes`` are theirs."""
    return body.decode(json.detect_encoding(body), "replace")


def _overflows(data: Any) -> bool:
    """Whether ``data`` holds a JSON number read as infinity (a ``NonFinite`` is a token)."""
    from framework.schema import NonFinite

    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif (isinstance(value, float) and not isinstance(value, NonFinite)
              and math.isinf(value)):
            return True
    return False


def received_at(meta: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(meta["at"]) / 1e6, dt.timezone.utc)


def keyed(cfg: SourceConfig) -> SourceConfig:
    """The config the writer uses: keyed by ``_event_id`` when it has no primary key."""
    return cfg if cfg.primary_key else cfg.model_copy(update={"primary_key": [EVENT_ID]})


def flush_events(spark: Any, warehouse: Any, cfg: SourceConfig,
                 events: Callable[[], Iterable[Any]],
                 seq: int, spool_id: str, staging_root: Path, store: Any = None) -> FlushResult:
    """Write one batch of spooled events to the target, its quarantine and its raw table.

    Args:
        events: reads the batch's :class:`framework.push.spool.SpooledEvent` s, in spool
            order (called twice: the batch is never held in memory).
        seq: the flush's sequence number (the spool's intent).
        spool_id: the spool's id (with ``seq``, keys the idempotent appends).
        store: the control store: the flush's quality checks and schema drift are judged
            and recorded as a pull load's (:class:`framework.load.quality.LoadQuality`);
            None judges nothing.

    Raises:
        RestlakeError: the batch could not be written (nothing is lost: it stays spooled),
            e.g. a before-commit quality check of severity ``fail`` refused it.
    """
    from control.states import ControlState, LoadType
    from framework.errors import QualityError
    from framework.lake.tables import TableRef
    from framework.load.archive import PAGES_FILE, write_pages
    from framework.load.fetch import WindowResult, stage_records, take_schema_evidence
    from framework.load.quality import LoadQuality
    from framework.load.staging import RunStaging
    from framework.load.writers import TargetWriter
    from framework.schema import RowShaper
    from framework.windows import Window
    from parsers import get_parser

    run_id = f"push-{spool_id}-{seq:08d}"  # the same when the flush is redone
    out = FlushResult(cfg.config_id, run_id, seq)
    kcfg = keyed(cfg)
    ref = TableRef(cfg.target.catalog, cfg.target.schema_, cfg.target.table)
    writer = TargetWriter(spark, warehouse, kcfg, ref, run_id, cfg.config_id)
    columns = writer.current_columns()
    options = {k: v for k, v in cfg.parser_options.items() if k != "total_path"}
    parser = get_parser(cfg.parser, options, data_path=cfg.data_path)
    shaper = RowShaper(cfg.system, tuple(kcfg.primary_key), tuple(cfg.required_fields), columns,
                       cfg.schema_mode)
    quality = (None if store is None else
               LoadQuality(spark, store, kcfg, run_id, ControlState(load_type=LoadType.PUSH), writer))
    staging = RunStaging(staging_root, cfg.config_id, run_id)
    try:
        # Two reads of the spool, one event in memory at a time: the batch's ids and span
        # first (an event may be 1 MiB, a batch 1 000 of them).
        ids: set[Any] = set()
        for event in events():  # receipt times follow the host's clock, which can step back
            ids.add(event.meta.get("id"))
            at = received_at(event.meta)
            out.first_received = min(filter(None, (out.first_received, at)))
            out.last_received = max(filter(None, (out.last_received, at)))
        if out.first_received is None or out.last_received is None:
            return out
        start, end = out.first_received, out.last_received + dt.timedelta(microseconds=1)
        stage = staging.window(0)
        row_seq = 0
        seen = flushed_event_ids(spark, warehouse, ref, ids, run_id,
                                 since=start - REDELIVERY_WINDOW)
        with (stage.folder / PAGES_FILE).open("w", encoding="utf-8") as raw:
            for n, event in enumerate(events()):
                at = received_at(event.meta)
                again = event.meta.get("id") in seen
                raw.write(json.dumps(_raw_line(cfg, event, run_id, n, start, end, at, again),
                                     ensure_ascii=False) + "\n")
                out.events += 1
                if again:
                    out.records += event_record_count(cfg, parser, event.body)
                    out.redelivered += 1
                    continue
                seen.add(event.meta.get("id"))
                records = event_records(cfg, parser, event.meta.get("id"), event.body, stage,
                                        start, end, at)
                if records is None:
                    out.records += 1
                    continue
                out.records += len(records)
                row_seq = stage_records(records, shaper, stage, run_id=run_id, window_start=start,
                                        window_end=end, collected_at=at, seq=row_seq)
        stage.close()
        out.rejected = stage.rejected
        window = take_schema_evidence(WindowResult(0, Window(start, end), stage, out.records),
                                      shaper)
        out.rescued, out.schema_changes = window.rescued_rows, set(window.new_fields)
        if quality is not None:
            quality.before_commit([stage], [window], columns)
        crashpoint("push_before_commit")
        write = writer.merge([stage], columns, batch_version=seq)
        out.schema_changes |= set(write.schema_changes)
        out.rescued += write.rows_rescued
        crashpoint("push_after_commit")
        writer.quarantine([stage], txn=(f"restlake:push:{spool_id}:quarantine", seq))
        write_pages(spark, warehouse, ref, [str(stage.folder / PAGES_FILE)],
                    txn=(f"restlake:push:{spool_id}:raw", seq))
        out.stored, out.version = write.rows_written, write.version
        if not out.stored and stage.rows:
            out.stored = _stored_by_earlier_attempt(spark, warehouse, ref, run_id)
            if out.stored:
                log.warning("%s: flush #%d redone (its first attempt committed %d rows before "
                            "a crash): audited with those rows", cfg.config_id, seq, out.stored)
        out.total_rows = writer.total_rows()
        if quality is not None:
            try:
                quality.after_load()
            except QualityError as exc:  # the rows are committed: audited, not redone
                out.quality_error = str(exc)
        return out
    finally:
        staging.cleanup()


def _stored_by_earlier_attempt(spark: Any, warehouse: Any, ref: Any, run_id: str) -> int:
    """Rows of the target written by ``run_id``: a flush redone after a crash between its
    commit and its checkpoint changes nothing (its MERGE finds its rows as the first
    attempt left them), and is audited with the rows that attempt stored."""
    from pyspark.sql import functions as F

    return warehouse.read(spark, ref).where(F.col("_run_id") == F.lit(run_id)).count()


def flushed_event_ids(spark: Any, warehouse: Any, ref: Any, ids: set[str], run_id: str,
                      since: dt.datetime) -> set[str]:
    """Which of ``ids`` an earlier flush already wrote: their events are in
    ``<target>_raw`` (appended after the target's commit), received since ``since``.

    The rows of ``run_id`` itself (a flush redone after a crash) do not count: its events
    are applied again, idempotently. Only the raw table's files received since ``since``
    are read (Delta skips the others by their statistics).
    """
    from pyspark.sql import functions as F

    from framework.load.archive import RAW_SUFFIX

    raw = ref.suffixed(RAW_SUFFIX)
    if not ids or not warehouse.exists(spark, raw):
        return set()
    batch = spark.createDataFrame([(i,) for i in sorted(ids)], "id string")
    found = (warehouse.read(spark, raw)
             .where((F.col("fetched_at") >= F.lit(since)) & (F.col("run_id") != F.lit(run_id)))
             .select(F.get_json_object("headers", "$.event-id").alias("id"))
             .join(F.broadcast(batch), on="id", how="left_semi").distinct())
    return {row["id"] for row in found.toLocalIterator()}


def delivered_again(raw_headers: dict[str, Any], seen: set[Any]) -> bool:
    """Whether a replay of a flush skips this archived event, as the flush did: the flush
    marked it (its id was flushed before), or its id came earlier in the replayed flush
    (what an archive written before the mark shows). Adds the id to ``seen``."""
    eid = raw_headers.get("event-id")
    if raw_headers.get(DELIVERED_AGAIN) or eid in seen:
        return True
    seen.add(eid)
    return False


def event_records(cfg: SourceConfig, parser: Any, eid: Optional[str], body: bytes, stage: Any,
                  start: dt.datetime, end: dt.datetime, at: dt.datetime) -> Optional[list[Any]]:
    """One event's records, with ``_event_id``; None when the whole event was rejected
    (sent to ``stage``'s quarantine with its id and the reason). A flush and a replay of
    a flush (:func:`framework.load.archive.replay`) read each event with this."""
    records, reason, payload = _read_event(cfg, parser, eid, body)
    if records is None:
        stage.reject(reason, payload, window_start=start.isoformat(),
                     window_end=end.isoformat(), collected_at_utc=at.isoformat())
        return None
    return [{**r, EVENT_ID: eid} if isinstance(r, dict) else r for r in records]


def event_record_count(cfg: SourceConfig, parser: Any, body: bytes) -> int:
    """The records an event delivered again counts for (one when it would be rejected
    whole), as many as its first delivery counted: it is not applied, nor quarantined."""
    records, _, _ = _read_event(cfg, parser, None, body)
    return 1 if records is None else len(records)


def _read_event(cfg: SourceConfig, parser: Any, eid: Optional[str], body: bytes
                ) -> tuple[Optional[list[Any]], str, Any]:
    """(the event's records, "", None), or (None, why it is rejected whole, what to keep)."""
    try:
        data = parse_json(body)
        problem = body_problem(body, data)
        if problem is not None:
            raise ValueError(problem)
        records = parser.parse(data)
    except (ValueError, RestlakeError) as exc:  # a JSONDecodeError is a ValueError
        return None, f"event {eid}: {exc}", body_text(body)
    if not cfg.primary_key and len(records) > 1:
        return None, (f"event {eid} holds {len(records)} records; without primary_key each "
                      "event is keyed by its id, so it may hold one record"), records
    return records, "", None


def _raw_line(cfg: SourceConfig, event: Any, run_id: str, n: int, start: dt.datetime,
              end: dt.datetime, at: dt.datetime, again: bool) -> dict[str, Any]:
    """The event as a row of ``<target>_raw`` (the archive's columns); ``again``: the flush
    did not apply it (its id was flushed before), marked so that a replay does not either."""
    def ts(value: dt.datetime) -> str:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    return {
        "config_id": cfg.config_id, "run_id": run_id, "load_id": None, "window_index": 0,
        "window_start": ts(start), "window_end": ts(end), "page_no": n,
        "url": f"/hooks/{cfg.config_id}", "status": 202,
        "headers": json.dumps({**event.meta.get("h", {}), "event-id": event.meta.get("id"),
                               **({DELIVERED_AGAIN: True} if again else {})}, sort_keys=True),
        "body": body_text(event.body),
        "body_sha256": hashlib.sha256(event.body).hexdigest(), "bytes": len(event.body),
        "fetched_at": ts(at),
    }

