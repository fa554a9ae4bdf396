"""The field mapping worksheet, generated from the configs (seed 000), never kept by hand.

One row per source config: entity, source system, collection cadence, destination
table, owner, primary key, the fields seen in the target table (the contract), the health
check the scheduler runs (``health:``), the quality checks of the config and its detail
fan-out (``detail:``: the detail endpoint, id field, concurrency and mode). Fields seen
in payloads but outside the contract (kept in ``_rescued_data``, or reported as schema
changes in the audit table), and contract fields that a load's records all lacked
(``schema_drift`` rows of the quality results), are flagged: that is schema drift to review.

Pure logic: the caller gathers what the tables hold (:class:`Observed`) with Spark.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional

from framework.config import SourceConfig
from framework.schema import column_name
from framework.untrusted import printable, spreadsheet_text

COLUMNS = ("Entity", "Source system", "Collection cadence", "Destination table", "Owner",
           "Config id", "Primary key", "Fields", "Health check", "Unmapped fields (flagged)",
           "Removed fields (flagged)", "Quality checks", "Detail fan-out")
_EVERY = {"hourly": "Hourly", "daily": "Daily", "weekly": "Weekly", "monthly": "Monthly",
          "once": "Once"}


@dataclass(frozen=True)
class Observed:
    """What the target table of one config shows.

    Attributes:
        columns: data columns holding values of this source.
        rescued: keys found in this source's ``_rescued_data``.
        drift: fields the audit reported as schema changes for this config after its
            first successful load (which set its contract).
        removed: contract fields that the latest load with schema drift lacked in every
            record (from ``api_quality_results``).
    """

    columns: tuple[str, ...] = ()
    rescued: tuple[str, ...] = ()
    drift: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


@dataclass(frozen=True)
class WorksheetRow:
    entity: str
    source_system: str
    cadence: str
    destination: str
    owner: str
    config_id: str
    primary_key: tuple[str, ...]
    fields: tuple[str, ...]
    unmapped: tuple[str, ...] = field(default=())
    health: str = ""
    quality: tuple[str, ...] = field(default=())
    removed: tuple[str, ...] = field(default=())
    detail: str = "None"

    def cells(self) -> list[str]:
        return [self.entity, self.source_system, self.cadence, self.destination, self.owner,
                self.config_id, ", ".join(self.primary_key), ", ".join(self.fields),
                self.health, ", ".join(self.unmapped), ", ".join(self.removed),
                "; ".join(self.quality), self.detail]


def cadence(frequency: str, time: str = "00:00") -> str:
    """A schedule as people say it: ``PT15M`` -> ``Every 15 min``, ``daily`` -> ``Daily at 02:00``."""
    low = frequency.lower()
    if low in _EVERY:
        return f"{_EVERY[low]} at {time}" if low in ("daily", "weekly", "monthly") else _EVERY[low]
    text = frequency.upper()
    for suffix, unit in (("M", "min"), ("H", "h"), ("S", "s")):
        if text.startswith("PT") and text.endswith(suffix) and text[2:-1].isdigit():
            n = int(text[2:-1])
            return "Hourly" if (unit, n) in (("h", 1), ("min", 60)) else f"Every {n} {unit}"
    return frequency


def health_check(cfg: SourceConfig) -> str:
    """The scheduler's probe of a source as people say it: ``Every 1 min, expects 200, 204``."""
    check = cfg.health_check
    if not check.enabled or not cfg.enabled:
        return "Off"
    expects = ", ".join(map(str, check.expected_status)) if check.expected_status else "2xx"
    timeout = check.timeout_s or cfg.limits.timeout_s
    return f"{cadence(check.interval)}, expects {expects}, timeout {timeout:g} s"


def detail_fan_out(cfg: SourceConfig) -> str:
    """A source's ``detail:`` as people say it: ``GET https://…/items/{id} (id field id,
    8 concurrent, merge of data path $, 404: fail)``; ``None`` without one."""
    d = cfg.detail
    if d is None:
        return "None"
    return (f"GET {d.endpoint} (id field {d.id_field}, {d.concurrency} concurrent, "
            f"{d.mode} of data path {d.data_path}, 404: {d.on_404})")


def declared_fields(cfg: SourceConfig) -> set[str]:
    """Fields the config itself names (primary key, required fields, cursor field), as
    the columns they land in."""
    return {column_name(f) for f in (*cfg.primary_key, *cfg.required_fields,
                                     *([cfg.cursor_field] if cfg.cursor_field else []))}


def contract_fields(cfg: SourceConfig, seen: Observed) -> set[str]:
    """The contract of a source: the fields its target holds for it (minus those that
    only arrived as drift) plus the declared ones. Schema drift is judged against it."""
    return (set(seen.columns) - set(seen.drift)) | declared_fields(cfg)


def build(configs: Iterable[SourceConfig], observed: Optional[Mapping[str, Observed]] = None
          ) -> list[WorksheetRow]:
    """One worksheet row per config, sorted by destination table then source system."""
    from framework.ops.quality import describe

    observed = observed or {}
    rows = []
    for cfg in configs:
        seen = observed.get(cfg.config_id, Observed())
        contract = contract_fields(cfg, seen)
        # each rescued payload key (what the API sends; "ü" and "é" are two fields though
        # both would take the column "_"), and the columns the audit reported that no
        # rescued key stands for
        rescued_cols = {column_name(key) for key in seen.rescued}
        unmapped = sorted({key for key in seen.rescued if column_name(key) not in contract}
                          | {col for col in seen.drift
                             if col not in rescued_cols and column_name(col) not in contract})
        rows.append(WorksheetRow(
            entity=cfg.description or cfg.api_name, source_system=cfg.system,
            cadence=cadence(cfg.schedule.frequency, cfg.schedule.time),
            destination=cfg.target.name, owner=cfg.owner or "", config_id=cfg.config_id,
            primary_key=tuple(cfg.primary_key), fields=tuple(sorted(contract)),
            unmapped=tuple(unmapped), health=health_check(cfg),
            quality=tuple(describe(cfg.quality)),
            removed=tuple(sorted(set(seen.removed) & contract)), detail=detail_fan_out(cfg)))
    return sorted(rows, key=lambda r: (r.destination, r.source_system, r.config_id))


def _md_cell(text: str) -> str:
    return printable(text, newlines=False).replace("|", "\\|")


def _md_code(text: str) -> str:
    """A field name (from a payload) as inline code; a backquote in it cannot end the span."""
    return "`" + _md_cell(text).replace("`", "'") + "`"


def to_markdown(rows: list[WorksheetRow]) -> str:
    """The worksheet as a Markdown table, then a list of flagged fields per config."""
    out = ["# Field mapping worksheet", "",
           "Generated by `restlake worksheet` from the source configs; do not edit by hand.", "",
           "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(_md_cell(c) for c in r.cells()) + " |" for r in rows]
    flagged = [r for r in rows if r.unmapped]
    out.append("")
    if flagged:
        out += ["## Flagged: fields seen in payloads but not in the contract", ""]
        out += [f"- `{r.config_id}` ({r.destination}): " + ", ".join(_md_code(f) for f in r.unmapped)
                for r in flagged]
    else:
        out.append("No field outside the contract was seen.")
    gone = [r for r in rows if r.removed]
    if gone:
        out += ["", "## Flagged: contract fields missing from every record of the latest drifted "
                "load", ""]
        out += [f"- `{r.config_id}` ({r.destination}): " + ", ".join(_md_code(f) for f in r.removed)
                for r in gone]
    return "\n".join(out) + "\n"


def to_csv(rows: list[WorksheetRow]) -> str:
    """The worksheet as CSV (one header row). Field names come from API payloads: every
    cell is printable text and a formula-like one starts with an apostrophe (OWASP)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(COLUMNS)
    writer.writerows([spreadsheet_text(c) for c in r.cells()] for r in rows)
    return buf.getvalue()
