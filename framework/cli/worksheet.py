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
                   help="configs only: do not read the target and audit tables (no Spark)")
    return {"worksheet": cmd_worksheet}


def observe(spark: Any, store: Any, configs: list[Any]) -> dict[str, Any]:
    """What each config's target table and audit rows show (fields, rescued keys, drift)."""
    from pyspark.sql import functions as F

    from framework.schema import RESERVED
    from framework.lake.tables import TableRef
    from framework.ops.worksheet import Observed

    # The first successful load of a config sets its contract (in a shared table its
    # fields arrive as schema changes); changes reported after it are drift.
    audit = (store.warehouse.read(spark, store.audit_ref)
             .where(F.col("LoadStatus") == F.lit("SUCCESS"))
             .select("ConfigId", "SchemaChanges", "LoggedAt").orderBy("LoggedAt"))
    drift: dict[str, set[str]] = {}
    for r in audit.collect():
        if r["ConfigId"] not in drift:
            drift[r["ConfigId"]] = set()
        elif r["SchemaChanges"]:
            drift[r["ConfigId"]].update(json.loads(r["SchemaChanges"]))
    out = {}
    for cfg in configs:
        ref = TableRef(cfg.target.catalog, cfg.target.schema_, cfg.target.table)
        columns: list[str] = []
        rescued: list[str] = []
        if store.warehouse.exists(spark, ref):
            df = store.warehouse.read(spark, ref)
            if "source_system" in df.columns:
                df = df.where(F.col("source_system") == F.lit(cfg.system))
            data = [c for c in df.columns if c not in RESERVED]
            if data:
                counts = df.select([F.count(F.col(f"`{c}`")).alias(c) for c in data]).first()
                columns = [c for c in data if counts[c]]
            if "_rescued_data" in df.columns:
                keys = (df.where(F.col("_rescued_data").isNotNull())
                        .select(F.explode(F.json_object_keys("_rescued_data")).alias("k"))
                        .distinct().collect())
                rescued = [r["k"] for r in keys]
        out[cfg.config_id] = Observed(tuple(columns), tuple(rescued),
                                      tuple(sorted(drift.get(cfg.config_id, ()))))
    return out


def cmd_worksheet(args: argparse.Namespace) -> int:
    from framework.ops import worksheet
    from framework.cli.console import console, open_store, safe
    from framework.config import load_files

    configs = load_files(args.config)
    observed = None
    if not args.no_tables:
        spark, _, store = open_store(args)
        observed = observe(spark, store, configs) if store.is_initialized() else None
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
