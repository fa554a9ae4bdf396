"""Staging: each window's rows stream to JSON-lines files on disk (bounded memory).

Layout: ``<staging>/<config_id>/<run_id>/w<index>/part-<n>.jsonl`` plus
``quarantine.jsonl`` for rejected records. A window's folder is complete only when
:meth:`WindowStage.close` wrote its ``_DONE`` marker; the writer reads only complete
windows. Nothing here imports Spark.
"""

from __future__ import annotations

import json
import re
import shutil
from array import array

import orjson
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from framework.schema import SchemaTracker, canonical_json

ROWS_PER_FILE = 50_000
WRITE_BUFFER = 1 << 20  # pages reach the disk in blocks of this size, not one write each
_SEGMENT = re.compile(r"^(?!\.)[A-Za-z0-9_.-]{1,255}$")  # one folder name, never . or ..


@dataclass
class WindowStage:
    """The staged rows of one window."""

    index: int
    folder: Path
    rows: int = 0
    rejected: int = 0
    files: list[Path] = field(default_factory=list)
    tracker: SchemaTracker = field(default_factory=SchemaTracker)
    #: ``hash(entity_key)`` of each staged row while every row's keys were staged exactly
    #: (:attr:`framework.schema.ShapedPage.keys`); ``None`` once one was not, or for a
    #: window staged elsewhere. The writer skips its one-row-per-key pass when these are
    #: distinct.
    key_hashes: Any = field(default_factory=lambda: array("q"))
    _handle: Any = None
    _quarantine: Any = None
    _in_file: int = 0

    def __post_init__(self) -> None:
        if self.folder.exists():
            shutil.rmtree(self.folder)  # a leftover of a crashed attempt
        self.folder.mkdir(parents=True)

    @classmethod
    def completed(cls, index: int, folder: Path, files: list[Path], *, rows: int, rejected: int,
                  tracker: SchemaTracker) -> "WindowStage":
        """A window staged elsewhere (e.g. by a Spark task), attached without touching it."""
        stage = cls.__new__(cls)
        stage.index, stage.folder, stage.files = index, folder, list(files)
        stage.rows, stage.rejected, stage.tracker = rows, rejected, tracker
        stage.key_hashes = None  # not known here: the writer dedupes
        stage._handle = stage._quarantine = None
        stage._in_file = 0
        return stage

    def write(self, row: dict[str, Any]) -> None:
        """Append one shaped row."""
        self.write_lines([orjson.dumps(row, default=str, option=orjson.OPT_APPEND_NEWLINE)],
                         [(row, None)])

    def write_lines(self, lines: list[bytes], observed: list[tuple[dict[str, Any], Any]],
                    keys: Optional[list[int]] = None) -> None:
        """Append shaped rows already encoded (one page's, :class:`~framework.schema.ShapedPage`).

        Args:
            lines: one JSON object and newline per row.
            observed: per row, its data fields and their signature, for the window's
                schema tracker.
            keys: per row, ``hash(entity_key)`` (``ShapedPage.keys``); ``None`` when the
                rows' keys were not staged exactly.
        """
        self.tracker.observe_all(observed)
        if self.key_hashes is not None:
            if keys is None or len(keys) != len(lines):
                self.key_hashes = None
            else:
                self.key_hashes.extend(keys)
        done = 0
        while done < len(lines):
            if self._handle is None or self._in_file >= ROWS_PER_FILE:
                self._roll()
            chunk = lines[done:done + ROWS_PER_FILE - self._in_file]
            self._handle.write(b"".join(chunk))
            self._in_file += len(chunk)
            self.rows += len(chunk)
            done += len(chunk)

    def reject(self, reason: str, record: Any, **context: Any) -> None:
        """Keep a rejected record for the quarantine table."""
        if self._quarantine is None:
            self._quarantine = (self.folder / "quarantine.jsonl").open("w", encoding="utf-8")
        self._quarantine.write(json.dumps({"reason": reason, "raw_payload": canonical_json(record),
                                           **context}, default=str) + "\n")
        self.rejected += 1

    def _roll(self) -> None:
        if self._handle is not None:
            self._handle.close()
        path = self.folder / f"part-{len(self.files):05d}.jsonl"
        self._handle = path.open("wb", buffering=WRITE_BUFFER)
        self.files.append(path)
        self._in_file = 0

    def close(self) -> None:
        """Flush and mark the window complete."""
        for handle in (self._handle, self._quarantine):
            if handle is not None:
                handle.close()
        self._handle = self._quarantine = None
        (self.folder / "_DONE").write_text(str(self.rows))

    def abort(self) -> None:
        """Drop what was staged (the window failed)."""
        for handle in (self._handle, self._quarantine):
            if handle is not None:
                handle.close()
        self._handle = self._quarantine = None
        shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def quarantine_file(self) -> Path | None:
        path = self.folder / "quarantine.jsonl"
        return path if path.exists() else None

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def __repr__(self) -> str:
        return f"WindowStage(w{self.index} rows={self.rows} rejected={self.rejected})"


def keys_distinct(stages: list[WindowStage]) -> bool:
    """True when the rows staged in ``stages`` are known to have distinct primary keys
    (each stage's :attr:`WindowStage.key_hashes` known, and no hash twice among them)."""
    if not stages or any(s.key_hashes is None or len(s.key_hashes) != s.rows for s in stages):
        return False
    total = sum(s.rows for s in stages)
    if total < 2:
        return True
    import pyarrow as pa
    import pyarrow.compute as pc

    hashes = pa.chunked_array([pa.Array.from_buffers(pa.int64(), len(s.key_hashes),
                                                     [None, pa.py_buffer(s.key_hashes)])
                               for s in stages if s.rows], type=pa.int64())
    return pc.count_distinct(hashes, mode="all").as_py() == total


class RunStaging:
    """The staging folder of one run of one config."""

    def __init__(self, root: str | Path, config_id: str, run_id: str) -> None:
        for name in (config_id, run_id):  # each one folder below root: cleanup removes it
            if not isinstance(name, str) or not _SEGMENT.match(name):
                raise ValueError(f"{str(name)[:80]!r} cannot name a staging folder")
        self.folder = Path(root) / config_id / run_id
        self.folder.mkdir(parents=True, exist_ok=True)

    def window(self, index: int) -> WindowStage:
        return WindowStage(index, self.folder / f"w{index:06d}")

    def segment(self, index: int, segment: int) -> WindowStage:
        """The stage of one page batch of window ``index`` (``limits.pages_per_commit``)."""
        return WindowStage(index, self.folder / f"w{index:06d}-s{segment:05d}")

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        try:
            self.folder.parent.rmdir()
        except OSError:
            pass

    def __repr__(self) -> str:
        return f"RunStaging({self.folder})"
