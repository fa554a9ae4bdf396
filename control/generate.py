"""Generation, one meaning for every front end: upsert the given configs, then plan.

``restlake generate`` (CLI), ``restlake-generate`` (wheel task), notebook
``01_generate`` and the scheduler all call :func:`generate`:

* config files (or folders of them) are validated and upserted into their control rows;
* then loads are planned (``PENDING`` with the window range to load):

  - ``config_ids``: those rows;
  - ``due`` without ids: every row of the control table, the rows added by hand with SQL
    included ("add an API by adding a control row"), together with the given files;
  - files without ``due``: the configs in those files;
  - nothing given: every row, as with ``due``.

  With ``due`` only rows whose schedule fired since their last generation (and new
  rows) are planned; without it the named rows are planned now.

A control row that does not validate is reported as a :class:`GenerateResult` with
action ``invalid`` and the error naming its column; the other rows are still planned.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Optional, Sequence

from control.mapping import row_to_config
from control.store import INVALID, ControlStore, GenerateResult
from framework.config import SourceConfig, config_files, load_files, shared_targets
from framework.errors import ConfigError


def generate(store: ControlStore, *, config_paths: Sequence[Any] = (),
             configs: Iterable[SourceConfig] = (), config_ids: Sequence[str] = (),
             due: bool = False, now: Optional[dt.datetime] = None) -> list[GenerateResult]:
    """Upsert the given configs into the control table, then plan loads (see the module).

    Args:
        store: the control store (its tables exist).
        config_paths: YAML files or folders (comma-separated lists allowed).
        configs: configs already validated (e.g. built in code).
        config_ids: plan these control rows.
        due: plan only rows whose schedule fired; without ids, every row of the table.
        now: the planning time (default: now).

    Returns:
        one result per config or row, sorted by ConfigId; bad rows have action ``invalid``.

    Raises:
        ConfigError: a config file is invalid, a named ConfigId has no row, or both
            files and ids were given.
    """
    given = load_files(config_files(config_paths)) + list(configs)
    if given and config_ids:
        raise ConfigError("give config files or config ids, not both")
    wanted: dict[str, SourceConfig] = {c.config_id: c for c in given}
    invalid: list[GenerateResult] = []
    table = {r["ConfigId"]: r for r in store.rows()}  # the others are checked against them
    if config_ids or due or not given:
        ids = list(dict.fromkeys(config_ids)) or None
        rows = [table[i] for i in ids if i in table] if ids else list(table.values())
        missing = sorted(set(ids or ()) - {r["ConfigId"] for r in rows})
        if missing:
            raise ConfigError(f"no control row with ConfigId {', '.join(missing)}; generate it "
                              "from its config file first")
        due = due or not ids
        for row in rows:
            if row["ConfigId"] in wanted:
                continue  # the file's config replaces the row
            try:
                wanted[row["ConfigId"]] = row_to_config(row)
            except ConfigError as exc:
                invalid.append(GenerateResult(row["ConfigId"], INVALID, str(exc)))
    clashes = target_clashes(wanted.values(), table.values())
    for cid, why in clashes.items():  # neither upserted nor planned
        del wanted[cid]
        invalid.append(GenerateResult(cid, INVALID, why))
    results = store.generate(list(wanted.values()), now=now, due_only=due)
    return sorted(results + invalid, key=lambda r: r.config_id)


def target_clashes(configs: Iterable[SourceConfig], rows: Iterable[dict[str, Any]]
                   ) -> dict[str, str]:
    """For each of ``configs`` that would write the rows of another source (one target
    table, one ``source_system``), given or in ``rows`` (the control table), why. A
    disabled source writes nothing: it clashes with no one (``enable`` checks it again).
    Every upsert checks this: ``generate`` and the service's ``POST /api/v1/sources``."""
    configs = list(configs)
    ids = {c.config_id for c in configs}
    return shared_targets([c for c in configs if c.enabled], _valid_configs(
        r for r in rows if r["ConfigId"] not in ids and r.get("Enabled") is not False))


def rows_without_config(rows: Iterable[dict[str, Any]], configs: Iterable[SourceConfig]
                        ) -> list[str]:
    """ConfigIds of the enabled ``rows`` that none of ``configs`` defines, sorted: after a
    generate from a folder, the rows added by hand or whose file was removed from it. They
    are still planned by ``generate --due`` and loaded by ``run --all`` until disabled."""
    defined = {c.config_id for c in configs}
    return sorted(r["ConfigId"] for r in rows
                  if r.get("Enabled") is not False and r["ConfigId"] not in defined)


def _valid_configs(rows: Iterable[dict[str, Any]]) -> list[SourceConfig]:
    """The configs of ``rows`` that validate (an invalid row is reported when it is planned)."""
    out = []
    for row in rows:
        try:
            out.append(row_to_config(row))
        except ConfigError:
            continue
    return out
