"""``restlake worksheet``: the field mapping worksheet from the configs."""

from __future__ import annotations

import argparse
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
    """What each config's target table, audit and quality rows show (fields, rescued keys,
    drift, removed fields), read without a JVM:
    :meth:`framework.ops.queries.Queries.observe_contract`."""
    return queries.observe_contract(configs)


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
