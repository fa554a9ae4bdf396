"""``restlake worksheet``: the field mapping worksheet from the configs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

EXAMPLES = {
    "worksheet": "restlake worksheet --config conf/monitoring/*.yaml --out docs/\n"
                 "  restlake worksheet --config conf/monitoring/*.yaml --no-tables",
}

WORKSHEET_NAME = "field_mapping_worksheet"


def add_commands(sub: Any, add: Callable[[str, str], argparse.ArgumentParser]
                 ) -> dict[str, Callable[[argparse.Namespace], int]]:
    p = add("worksheet", "write the field mapping worksheet (Markdown + CSV) from the configs; "
                         "fields seen in payloads but outside the contract are flagged")
    p.add_argument("--config", nargs="+", required=True, metavar="FILE")
    p.add_argument("--out", metavar="DIR", default=".", help="where to write the files (default .)")
    p.add_argument("--no-tables", action="store_true",
                   help="configs only: do not read the target and audit tables")
    return {"worksheet": cmd_worksheet}


def observe(queries: Any, configs: list[Any]) -> dict[str, Any]:
    """What each config's target table and audit rows show (fields, rescued keys, drift).

    Read with delta-rs and DuckDB (no JVM); each target is scanned once, for the non-null
    count of every column and the keys found in ``_rescued_data``.
    """
    from framework.lake.tables import TableRef
    from framework.ops.worksheet import Observed
    from framework.schema import RESERVED

    reader = queries.reader
    # The first successful load of a config sets its contract (in a shared table its
    # fields arrive as schema changes); changes reported after it are drift.
    drift: dict[str, set[str]] = {}
    audit = reader.table(queries.audit_ref, ["ConfigId", "SchemaChanges", "LoggedAt", "LoadStatus"])
    if audit is not None:
        for r in reader.query("SELECT ConfigId, SchemaChanges FROM audit WHERE LoadStatus = 'SUCCESS' "
                              "ORDER BY LoggedAt", {"audit": audit}):
            if r["ConfigId"] not in drift:
                drift[r["ConfigId"]] = set()
            elif r["SchemaChanges"]:
                drift[r["ConfigId"]].update(json.loads(r["SchemaChanges"]))
    out = {}
    for cfg in configs:
        ref = TableRef(cfg.target.catalog, cfg.target.schema_, cfg.target.table)
        names = reader.schema_names(ref)
        columns: list[str] = []
        rescued: list[str] = []
        if names:
            data = reader.dataset(ref)
            where, params = ("WHERE source_system = $system", {"system": cfg.system}) \
                if "source_system" in names else ("", {})
            fields = [c for c in names if c not in RESERVED]
            if fields:
                counts = ", ".join(f"count({quote(c)}) AS {quote(c)}" for c in fields)
                [row] = reader.query(f"SELECT {counts} FROM target {where}", {"target": data}, params)
                columns = [c for c in fields if row[c]]
            if "_rescued_data" in names:
                cond = f"{where} AND" if where else "WHERE"
                rescued = [r["k"] for r in reader.query(
                    f"SELECT DISTINCT unnest(json_keys(_rescued_data)) AS k FROM target "
                    f"{cond} _rescued_data IS NOT NULL", {"target": data}, params)]
        out[cfg.config_id] = Observed(tuple(columns), tuple(rescued),
                                      tuple(sorted(drift.get(cfg.config_id, ()))))
    return out


def quote(name: str) -> str:
    """A column name as a DuckDB identifier (double quotes, doubled inside)."""
    return '"' + name.replace('"', '""') + '"'


def cmd_worksheet(args: argparse.Namespace) -> int:
    from framework.ops import worksheet
    from framework.cli.console import console, open_queries, safe
    from framework.config import load_files

    configs = load_files(args.config)
    observed = None
    if not args.no_tables:
        queries = open_queries(args)
        observed = observe(queries, configs) if queries.is_initialized() else None
    rows = worksheet.build(configs, observed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    md, csv_path = out / f"{WORKSHEET_NAME}.md", out / f"{WORKSHEET_NAME}.csv"
    md.write_text(worksheet.to_markdown(rows), encoding="utf-8")
    csv_path.write_text(worksheet.to_csv(rows), encoding="utf-8")
    console.print(f"wrote {safe(md)} and {safe(csv_path)} ({len(rows)} sources)", soft_wrap=True)
    for r in rows:
        if r.unmapped:
            console.print(f"[yellow]flagged[/yellow] {safe(r.config_id)} ({safe(r.destination)}): "
                          f"fields outside the contract: {safe(', '.join(r.unmapped))}",
                          soft_wrap=True)
    return 0
