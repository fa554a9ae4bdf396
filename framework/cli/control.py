"""Commands on the control plane: ``init``, ``validate``, ``generate``, ``status``, ``audit``,
``retry``, ``disable``, ``enable``."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any, Callable

from rich.markup import escape
from rich.table import Table

from framework.cli.options import LIMIT
from framework.cli.console import (cell, console, error, fmt, note, open_queries, open_store,
                                  print_error, require_init, safe, table)
from framework.errors import ConfigError
from framework.load.audit import PHASE_COLUMNS

EXAMPLES = {
    "init": "restlake --warehouse ./wh init",
    "validate": "restlake validate conf/*.yaml",
    "generate": "restlake generate --config conf/github_issues.yaml\n"
                "  restlake generate --config-id gh_issues\n  restlake generate --due",
    "status": "restlake status\n  restlake status --config-id gh_issues\n  restlake status --stale",
    "audit": "restlake audit --config-id gh_issues --limit 5\n  restlake audit --phases",
    "retry": "restlake retry --config-id gh_issues",
    "disable": "restlake disable --config-id gh_issues",
    "enable": "restlake enable --config-id gh_issues",
}


def add_commands(sub: Any, add: Callable[[str, str], argparse.ArgumentParser]
                 ) -> dict[str, Callable[[argparse.Namespace], int]]:
    add("init", "create the control, audit, window-log and quality-results tables (idempotent)")
    p = add("validate", "check config files (no Spark): every file, and what they share (a config_id, a target "
                        "table and source_system); exit 1 on any error")
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="config files, or folders (their *.yaml / *.yml files, as generate reads them)")
    p = add("generate", "upsert control rows from configs and mark due loads PENDING")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--config", nargs="+", metavar="FILE", help="config files")
    g.add_argument("--config-id", nargs="+", metavar="ID", help="plan these existing rows now")
    g.add_argument("--due", action="store_true", help="plan every row whose schedule fired")
    p.add_argument("--conf-dir", metavar="DIR", help="also upsert the configs in DIR (with --due: "
                                                     "then every due row is planned, hand-added "
                                                     "rows included; with --config: beside the "
                                                     "files)")
    p = add("status", "show the control rows (no Spark)")
    p.add_argument("--config-id", nargs="+", metavar="ID")
    p.add_argument("--stale", action="store_true",
                   help="only sources whose newest data is older than their cadence allows "
                        "(exit 1 when any)")
    p = add("audit", "show recent audit rows (no Spark)")
    p.add_argument("--config-id", metavar="ID")
    p.add_argument("--limit", type=LIMIT, default=20, help="rows to show (default 20)")
    p.add_argument("--phases", action="store_true",
                   help="where each load's time went (seconds of claim, fetch, stage, target "
                        "write and bookkeeping) in place of its counts")
    p = add("retry", "set FAILED rows back to PENDING with the same range")
    p.add_argument("--config-id", nargs="+", metavar="ID", required=True)
    p = add("disable", "stop planning, claiming and probing sources (a load already running "
                       "finishes); their rows, tables and history are kept; no Spark")
    p.add_argument("--config-id", nargs="+", metavar="ID", required=True)
    p = add("enable", "plan, claim and probe disabled sources again; no Spark")
    p.add_argument("--config-id", nargs="+", metavar="ID", required=True)
    return {"init": cmd_init, "validate": cmd_validate, "generate": cmd_generate,
            "status": cmd_status, "audit": cmd_audit, "retry": cmd_retry,
            "disable": cmd_disable, "enable": cmd_enable}


def cmd_validate(args: argparse.Namespace) -> int:
    from framework.config import config_files, load_file, shared_targets

    failed = 0
    paths: list[Any] = []
    for given in args.files:  # a folder as generate reads it: its *.yaml / *.yml files
        try:
            paths += config_files([given]) if Path(given).is_dir() else [given]
        except ConfigError as exc:  # a folder without any
            print_error(exc)
            failed += 1
    once: dict[Path, Any] = {}  # a file given twice (a folder and a glob over it) is one
    for path in paths:
        once.setdefault(Path(path).resolve(), path)
    paths = list(once.values())
    valid: list[tuple[str, Any]] = []  # (file, config) of every file that validates alone
    for path in paths:
        try:
            configs = load_file(path)
        except ConfigError as exc:
            print_error(exc)  # one line per invalid field
            failed += 1
            continue
        for cfg in configs:  # a config_id of two files: generate refuses them together
            first = next((f for f, c in valid if c.config_id == cfg.config_id), None)
            if first is not None:
                error(str(ConfigError(f"config_id is also defined in {first}", file=str(path),
                                      source=cfg.config_id, field="config_id")))
                failed += 1
        valid += [(str(path), c) for c in configs]
        ids = ", ".join(c.config_id for c in configs)
        console.print(f"[green]ok[/green] {escape(f'{path}: {ids}')}", soft_wrap=True)
    # what no file shows alone: sources of different files that clash
    # (a disabled source writes nothing: it clashes with no one, as in generate)
    clashes = shared_targets(c for _, c in valid if c.enabled)
    for path, cfg in valid:
        if cfg.config_id in clashes:
            error(str(ConfigError(clashes[cfg.config_id], file=path, source=cfg.config_id,
                                  field="target")))
    return 1 if failed or clashes else 0


def cmd_init(args: argparse.Namespace) -> int:
    q = open_queries(args)
    refs = (q.control_ref, q.audit_ref, q.window_ref, q.quality_ref, q.health_ref)
    if q.reader.warehouse.is_local and all(q.reader.exists(r) for r in refs) \
            and not _lacking_columns(q.reader.warehouse, refs[:4]):
        # Nothing to create: answered from the folder, without starting Spark.
        for ref in refs[:4]:
            console.print(f"exists   {ref.name}  [dim]{q.reader.warehouse.path(ref)}[/dim]")
        from framework.ops.uptime import VIEW_NAMES

        console.print(f"views    {', '.join(VIEW_NAMES)} (temporary views: each Spark session "
                      "registers them over api_health_log)")
        return 0
    if q.reader.warehouse.is_local:
        _make_folder(q.reader.warehouse.root)
    spark, warehouse, store = open_store(args)
    created = store.init()
    for name in (store.control_ref, store.audit_ref, store.window_ref, store.quality_ref):
        state = "created" if name.name in created else "exists"
        where = warehouse.path(name) if warehouse.is_local else name.name
        console.print(f"{state:8} {name.name}  [dim]{where}[/dim]")
        if name.name in store.added:
            console.print(f"added    {name.name} columns: {', '.join(store.added[name.name])}")
    from framework.ops.health_store import register_views

    console.print(f"views    {', '.join(register_views(spark, warehouse, args.control_catalog))}")
    return 0


def _lacking_columns(warehouse: Any, refs: Any) -> bool:
    """Whether a table of ``refs`` lacks a column of its schema (read from the Delta log)."""
    from deltalake import DeltaTable

    from control.schemas import AUDIT_SCHEMA, CONTROL_SCHEMA, QUALITY_SCHEMA, WINDOW_LOG_SCHEMA

    for ref, schema in zip(refs, (CONTROL_SCHEMA, AUDIT_SCHEMA, WINDOW_LOG_SCHEMA, QUALITY_SCHEMA)):
        present = {f.name.lower() for f in DeltaTable(warehouse.path(ref)).schema().fields}
        if any(f.name.lower() not in present for f in schema.fields):
            return True
    return False


def _make_folder(root: Any) -> None:
    """The local warehouse folder, made (with its parents) before Spark starts, or a
    :class:`ConfigError` naming it and why it cannot be."""
    import os

    try:
        Path(root).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the warehouse folder {root}: "
                          f"{exc.strerror or exc}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot create the warehouse folder {root}: it is not writable")


def cmd_generate(args: argparse.Namespace) -> int:
    from control.generate import INVALID, generate
    from framework.config import config_files, load_files

    # files are validated before Spark starts
    # --conf-dir adds its folder to the files given (with --config-id: refused, not both)
    paths = [*(args.config or ()), *([args.conf_dir] if args.conf_dir else [])]
    configs = load_files(config_files(paths))
    _, _, store = open_store(args, lazy=True)
    store.init()
    results = generate(store, configs=configs, config_ids=args.config_id or (), due=bool(args.due))
    out = Table(title="generate")
    for col in ("ConfigId", "action", "detail"):
        out.add_column(col)
    for r in results:
        action = cell(r.action)
        if r.action == INVALID:
            action.stylize("red")
        out.add_row(cell(r.config_id), action, cell(r.detail))
    console.print(out)
    bad = [r for r in results if r.action == INVALID]
    for r in bad:
        error(f"{r.config_id}: {r.detail}")
    _note_rows_without_config(store, paths, configs)
    return 1 if bad else 0


def _note_rows_without_config(store: Any, paths: list[str], configs: list[Any]) -> None:
    """After a generate from a folder, a note for each enabled row that no file given
    defines (added by hand, or its file was removed): it is still planned and loaded, and
    only ``disable`` stops it. Files named one by one say nothing of the others."""
    from control.generate import rows_without_config

    folders = [p for raw in paths for p in str(raw).split(",") if p.strip() and
               Path(p.strip()).is_dir()]
    if not folders:
        return
    where = ", ".join(str(Path(f.strip())) for f in folders)
    for cid in rows_without_config(store.rows(), configs):
        note(f"{cid}: enabled in the control table but no config file in {where} defines it "
             "(added by hand, or its file was removed): generate --due still plans it and run "
             f"--all loads it; restlake disable --config-id {cid} stops it")


STATUS_COLUMNS = ("ConfigId", "LoadType", "LoadStatus", "LoadStartTime", "LoadEndTime",
                  "LastLoadTime", "Attempt", "LastJobRunId", "Quality", "ErrorMessage")


def cmd_status(args: argparse.Namespace) -> int:
    q = require_init(open_queries(args))
    rows = q.control_rows(args.config_id)
    unknown = sorted(set(args.config_id or ()) - {r["ConfigId"] for r in rows})
    if unknown:
        error(f"no control row with ConfigId {', '.join(unknown)}")
        return 1
    if not rows:
        console.print("no sources yet: the control table is empty (restlake generate --config "
                      "FILE)")
        return 0
    if getattr(args, "stale", False):
        from framework.cli.ops import print_stale

        return print_stale(q, rows)
    states = q.quality_states(args.config_id)
    shown = [dict(r, Quality=states[r["ConfigId"]].text if r["ConfigId"] in states else None)
             for r in rows]
    console.print(table(f"control table {q.control_ref.name}", STATUS_COLUMNS, shown))
    print_waits(rows, q.clock())
    return 0


def print_waits(rows: list[dict[str, Any]], now: dt.datetime) -> None:
    """Below ``status``'s table, one line per row that no run loads now and why: a disabled
    row, a RUNNING row's holder and lease (a killed runner's row waits for its lease)."""
    from control.mapping import row_to_state
    from control.states import claim_note

    for row in rows:
        notes = [f"disabled: not planned, claimed or probed (restlake enable --config-id "
                 f"{row['ConfigId']})"] if row.get("Enabled") is False else []
        try:
            running = claim_note(row_to_state(row), now)
        except ConfigError as exc:  # a state column edited by hand: shown as it is, named
            text = str(exc)
            running = text.split(": ", 1)[1] if text.startswith("source '") else text
            running += " (no run claims it; fix the column, or generate reports it)"
        except ValueError:  # an unknown status or load type: the table shows it as it is
            running = None
        notes += [running] if running else []
        if notes:
            console.print(f"{safe(row['ConfigId'])}: {safe('; '.join(notes))}", soft_wrap=True)


AUDIT_COLUMNS = ("LoggedAt", "ConfigId", "LoadType", "LoadStatus", "SourceRowCount",
                 "TargetRowCount", "TargetTotalRowCount", "WindowsLoaded", "Requests", "Retries",
                 "RunDuration", "ErrorMessage")
#: ``audit --phases``: the split of ``RunDuration`` (README, "Tables")
AUDIT_PHASE_COLUMNS = ("LoggedAt", "ConfigId", "LoadType", "LoadStatus", "TargetRowCount",
                       "RunDuration", *PHASE_COLUMNS.values())


def cmd_audit(args: argparse.Namespace) -> int:
    q = require_init(open_queries(args))
    rows = q.audit_rows(args.config_id, args.limit)
    if args.config_id and not rows and not q.control_rows([args.config_id]):
        error(f"no control row or audit row with ConfigId {args.config_id}")
        return 1
    columns = AUDIT_PHASE_COLUMNS if args.phases else AUDIT_COLUMNS
    console.print(table(f"audit table {q.audit_ref.name}", columns, rows))
    return 0


def cmd_disable(args: argparse.Namespace) -> int:
    return _set_enabled(args, False)


def cmd_enable(args: argparse.Namespace) -> int:
    return _set_enabled(args, True)


def _set_enabled(args: argparse.Namespace, enabled: bool) -> int:
    """``disable`` / ``enable``: the store's one ``set_enabled``, as the service's
    ``POST /api/v1/sources/{id}/disable`` and ``/enable``; exit 1 when an id has no row
    (named; the others are still changed)."""
    _, _, store = open_store(args, lazy=True)
    code = 0
    for cid in dict.fromkeys(args.config_id):
        try:
            known = store.set_enabled(cid, enabled)
        except ConfigError as exc:  # another source writes its target now
            print_error(exc)
            code = 1
            continue
        if not known:
            error(f"no control row with ConfigId {cid}")
            code = 1
        elif enabled:
            console.print(f"{safe(cid)}: enabled: {_next_after_enable(store.get(cid) or {})}",
                          soft_wrap=True)
        else:
            console.print(f"{safe(cid)}: disabled: not planned, claimed or probed (a load "
                          f"already running finishes); restlake enable --config-id {safe(cid)} "
                          "undoes it, and so does a generate from its file unless the file "
                          "says enabled: false", soft_wrap=True)
    return code


def _next_after_enable(row: dict[str, Any]) -> str:
    """What happens to an enabled row next, by its state."""
    cid = safe(row.get("ConfigId"))
    status, kind = row.get("LoadStatus"), row.get("LoadType")
    if status == "PENDING":
        return f"the next run loads its PENDING {kind} ({fmt(row.get('LoadStartTime'))} .. " \
               f"{fmt(row.get('LoadEndTime'))})"
    if status == "FAILED" and kind == "FULL_LOAD":
        return f"its FAILED full load waits for restlake retry --config-id {cid}"
    return (f"planned on its schedule (restlake generate --config-id {cid} plans it now)")


def cmd_retry(args: argparse.Namespace) -> int:
    from control.states import InvalidTransition

    _, _, store = open_store(args, lazy=True)
    code = 0
    for cid in dict.fromkeys(args.config_id):
        try:
            state = store.retry(cid)
            row = store.get(cid) or {}
            off = ("; it is disabled: no run claims it until restlake enable --config-id "
                   f"{safe(cid)}") if row.get("Enabled") is False else ""
            console.print(f"{safe(cid)}: PENDING again ({state.load_type.value} "
                          f"{fmt(state.load_start)} .. {fmt(state.load_end)}){off}",
                          soft_wrap=True)
        except InvalidTransition as exc:
            error(f"{cid}: {exc}")
            code = 1
        except ConfigError as exc:  # no such row, or a hand-edited state column: the others go on
            print_error(exc)
            code = 1
    return code
