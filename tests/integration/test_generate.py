"""One generate, one meaning: the CLI, the wheel task and the notebook plan the same rows.

"Add an API by adding a control row": a row inserted by hand (here with the DataFrame
API, as a user would with SQL ``INSERT``) gets its next load planned by ``generate --due``
from every front end, next to the configs of the files given; a hand-added row that does
not validate is reported with its column named and does not stop the others.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from control.schemas import CONTROL_SCHEMA
from control.store import ControlStore
from framework.cli import jobs
from framework.cli.app import main
from framework.lake.tables import Warehouse
from tests.local_dbutils import LocalDbutils, run_notebook

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[2]
UTC = dt.timezone.utc
START, LOADED = dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 2, 1, tzinfo=UTC)


def _insert_by_hand(spark, store: ControlStore, config_id: str, **columns) -> None:
    """``INSERT INTO main.metadata.api_control_table (...) VALUES (...)``, as a user writes it:
    a source whose first (full) load ran, so its next, incremental, load is due."""
    row = {"ConfigId": config_id, "APIName": "Hand", "APIEndpoint": "https://api.example.com/items",
           "LoadType": "INCREMENTAL", "LoadStatus": "SUCCESS", "LoadStartTime": START,
           "LoadEndTime": LOADED, "LastLoadTime": LOADED, "TargetCatalog": "raw",
           "TargetSchema": "hand", "TargetTable": config_id,
           "PaginationConfig": '{"style": "offset", "page_size": 50}', "DataPath": "data",
           "PrimaryColumn": "id", "DeltaColumn": True, "TriggerScheduleTime": "02:00",
           "TriggerFrequency": "daily", "Enabled": True, **columns}
    df = spark.createDataFrame([tuple(row.get(f.name) for f in CONTROL_SCHEMA.fields)],
                               CONTROL_SCHEMA)
    store.warehouse.save(df.write.format("delta").mode("append"), store.control_ref)


@pytest.mark.parametrize("front_end", ["cli", "wheel", "notebook"])
def test_every_front_end_plans_hand_added_rows_and_reports_a_bad_one(spark, tmp_path, front_end,
                                                                    capsys):
    wh = tmp_path / "wh"
    store = ControlStore(spark, Warehouse(wh))
    store.init()
    _insert_by_hand(spark, store, "by_hand")
    _insert_by_hand(spark, store, "bad_hand", PaginationConfig='{"style": "links"}')
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "file.yaml").write_text(yaml.safe_dump({
        "config_id": "from_file", "api_name": "File", "endpoint": "https://api.example.com/f",
        "load_start": "2024-01-01T00:00:00Z", "primary_key": ["id"],
        "target": {"catalog": "raw", "schema": "hand", "table": "from_file"}}))

    reported: str = ""
    if front_end == "cli":
        code = main(["--warehouse", str(wh), "generate", "--due", "--conf-dir", str(conf)])
        reported = capsys.readouterr().err
        assert "by_hand: enabled in the control table but no config file" in " ".join(
            reported.split())
    elif front_end == "wheel":
        try:
            code = jobs.generate_main(["--conf-dir", str(conf), "--due", "--warehouse", str(wh)])
        except SystemExit as exited:
            code = exited.code
        captured = capsys.readouterr()
        reported = "\n".join(line for line in captured.out.splitlines()
                             if line.startswith("bad_hand:"))
        # the rows no file of the folder defines are noted, as by `restlake generate`
        assert "note: by_hand: enabled in the control table but no config file" in captured.err
    else:
        # the bundle's notebook job: config_path set, due_only left at its default (true)
        dbutils = LocalDbutils(widgets={"config_path": str(conf), "warehouse": str(wh),
                                        "control_catalog": "main"})
        env: dict = {}
        try:
            run_notebook(ROOT / "notebooks/01_generate.py", spark, dbutils, env)
            code = 0
        except ValueError as raised:  # the notebook (and its job task) fails, after planning
            code, reported = 1, str(raised)
        assert {(r.config_id, r.action) for r in env["results"]} == {
            ("bad_hand", "invalid"), ("by_hand", "pending"), ("from_file", "created")}

    # the same outcome from every front end: the hand-added row's next load is planned...
    planned = {r["ConfigId"]: (r["LoadType"], r["LoadStatus"], r["LoadStartTime"])
               for r in store.rows()}
    assert planned == {"by_hand": ("INCREMENTAL", "PENDING", LOADED),  # the next window
                       "from_file": ("FULL_LOAD", "PENDING", START),
                       "bad_hand": ("INCREMENTAL", "SUCCESS", START)}  # left as inserted
    # ...and the bad one is reported with its column named, and fails the step
    assert "bad_hand" in reported and "control row column PaginationConfig" in reported
    assert code == 1


def test_two_sources_writing_one_table_as_one_source_system_are_refused(spark, tmp_path, capsys):
    # a full load replaces its source_system's rows of the table: of two such sources, each
    # full load would delete the other's rows
    wh = tmp_path / "wh"
    store = ControlStore(spark, Warehouse(wh))
    store.init()

    def write(name: str, **extra) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({
            "config_id": name, "api_name": "Shop", "source_system": "shop",
            "endpoint": f"https://api.example.com/{name}", "load_start": "2024-01-01T00:00:00Z",
            "primary_key": ["id"], "target": {"catalog": "raw", "schema": "shop", "table": "orders"},
            **extra}))
        return path

    first, second = write("orders_eu"), write("orders_us")
    other_system = write("orders_legacy", source_system="legacy")
    capsys.readouterr()
    assert main(["validate", str(first), str(second), str(other_system)]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert f"{second}: source 'orders_us': target: target raw.shop.orders with source_system " \
           "'shop' is also written by config orders_eu" in err
    assert "orders_legacy" not in err

    assert main(["--warehouse", str(wh), "generate", "--config", str(first),
                 str(other_system)]) == 0
    capsys.readouterr()
    # the second, generated later from its own file, clashes with the first's control row
    assert main(["--warehouse", str(wh), "generate", "--config", str(second)]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "orders_us: target raw.shop.orders with source_system 'shop' is also written by " \
           "config orders_eu" in err
    assert sorted(r["ConfigId"] for r in store.rows()) == ["orders_eu", "orders_legacy"]


def test_a_source_moved_to_a_new_table_gets_a_full_load_there_and_the_old_table_is_kept(
        spark, warehouse, store):
    # An incremental row re-pointed at a table that does not exist yet would load only the
    # next increment into it: the history stays behind in the old table, and the new one
    # looks complete to every reader.
    from control.generate import generate
    from framework.config import parse_source
    from tests.integration.helpers import read_target, run_loads, target_ref
    from tests.unit._httpd import FakeApi, Reply

    def config(url: str, table: str):
        return parse_source({
            "config_id": "moved", "api_name": "Moved", "source_system": "moved", "endpoint": url,
            "data_path": "data", "primary_key": ["id"], "delta_column": True,
            "load_start": "2024-01-01T00:00:00Z", "load_end": "2024-01-02T00:00:00Z",
            "window": "none", "target": {"catalog": "raw", "schema": "moved", "table": table},
            "schedule": {"time": "02:00", "frequency": "daily"},
            "limits": {"timeout_s": 5, "max_retries": 0}})

    with FakeApi() as api:
        api.route("/items", Reply(200, {"data": [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]}))
        old = config(api.url("/items"), "items")
        [first] = run_loads(spark, warehouse, store, [old])
        assert first.status == "SUCCESS" and store.get("moved")["LoadType"] == "INCREMENTAL"

        new = config(api.url("/items"), "items_v2")
        # planned though its schedule has not fired: the new table is empty until it loads
        [result] = generate(store, configs=[new], due=True,
                            now=dt.datetime(2024, 1, 2, 0, 30, tzinfo=UTC))
        assert result.action == "pending", result
        assert result.detail == ("FULL_LOAD 2024-01-01T00:00:00Z..2024-01-02T00:00:00Z (target "
                                 "changed from raw.moved.items to raw.moved.items_v2, a table that "
                                 "does not exist yet: full load; raw.moved.items is left as it is)")
        row = store.get("moved")
        assert (row["LoadType"], row["LoadStatus"], row["TargetTable"]) == (
            "FULL_LOAD", "PENDING", "items_v2")
        [moved] = run_loads(spark, warehouse, store, [new], generate=False)
        assert moved.status == "SUCCESS", moved.error
    assert sorted((r["id"], r["v"]) for r in read_target(spark, warehouse, new).collect()) == [
        (1, "a"), (2, "b")]
    assert read_target(spark, warehouse, old).count() == 2
    assert store.get("moved")["LoadType"] == "INCREMENTAL"  # delta_column: incremental from here

    # re-pointed at a table that exists (e.g. one renamed or copied by the user): incremental
    again = config("https://api.example.com/items", "items")
    [result] = generate(store, configs=[again], now=dt.datetime(2024, 1, 3, tzinfo=UTC))
    assert result.detail == "INCREMENTAL 2024-01-02T00:00:00Z..2024-01-03T00:00:00Z"
    assert target_ref(again).table == "items"

    # moved while a load runs into the old table: the move waits for the next generate
    claim = store.claim("moved", "runner-a", "run-a", now=dt.datetime(2024, 1, 3, tzinfo=UTC))
    [result] = generate(store, configs=[config("https://api.example.com/items", "items_v3")],
                        now=dt.datetime(2024, 1, 3, 0, 1, tzinfo=UTC))
    assert (result.action, result.detail) == (
        "unchanged", "already RUNNING into raw.moved.items: the move to raw.moved.items_v3 "
        "waits for the next generate")
    assert store.get("moved")["TargetTable"] == "items"
    assert store.release(claim)
    [result] = generate(store, configs=[config("https://api.example.com/items", "items_v3")],
                        now=dt.datetime(2024, 1, 3, 0, 2, tzinfo=UTC))
    assert result.detail.startswith("FULL_LOAD 2024-01-01T00:00:00Z..2024-01-02T00:00:00Z")
    assert store.get("moved")["TargetTable"] == "items_v3"


def test_a_target_renamed_in_case_only_is_a_move_where_names_are_case_sensitive(spark, warehouse,
                                                                                store):
    # the local warehouse keeps tables in folders: raw.hand.Moved_Case is another folder
    # than raw.hand.moved_case, so it holds none of the history
    from control.generate import generate
    from framework.config import parse_source

    _insert_by_hand(spark, store, "moved_case")
    cfg = parse_source({
        "config_id": "moved_case", "api_name": "Hand", "endpoint": "https://api.example.com/items",
        "load_start": "2024-01-01T00:00:00Z", "load_end": "2024-02-01T00:00:00Z",
        "primary_key": ["id"], "delta_column": True, "data_path": "data",
        "target": {"catalog": "raw", "schema": "hand", "table": "Moved_Case"}})
    [result] = generate(store, configs=[cfg], now=dt.datetime(2024, 2, 2, tzinfo=UTC))
    assert result.detail.startswith("FULL_LOAD 2024-01-01T00:00:00Z..2024-02-01T00:00:00Z (target "
                                    "changed from raw.hand.moved_case to raw.hand.Moved_Case"), result


def test_a_hand_edited_state_column_is_reported_with_its_column_and_the_others_still_go(
        spark, warehouse, store):
    # UPDATE ... SET LoadType = 'INCREMENTALL' on one row stopped generate, run and retry for
    # every row with "ValueError: 'INCREMENTALL' is not a valid LoadType"
    from control.generate import generate

    _insert_by_hand(spark, store, "typo_type", LoadType="INCREMENTALL")
    _insert_by_hand(spark, store, "typo_status", LoadStatus="DONE")
    _insert_by_hand(spark, store, "lower_case", LoadType="incremental", LoadStatus="success")
    _insert_by_hand(spark, store, "fine")
    results = {r.config_id: r for r in generate(store, due=True,
                                                now=dt.datetime(2024, 2, 2, 3, tzinfo=UTC))}
    assert (results["typo_type"].action, results["typo_type"].detail) == (
        "invalid", "source 'typo_type': control row column LoadType: 'INCREMENTALL' is not one "
        "of FULL_LOAD, INCREMENTAL, PUSH")
    assert (results["typo_status"].action, results["typo_status"].detail) == (
        "invalid", "source 'typo_status': control row column LoadStatus: 'DONE' is not one of "
        "PENDING, RUNNING, SUCCESS, FAILED")
    assert results["fine"].action == results["lower_case"].action == "pending"
    assert store.get("lower_case")["LoadType"] == "INCREMENTAL"

    assert sorted(store.claimable_ids()) == ["fine", "lower_case"]
    claims, why = store.claim_many(["typo_type", "fine"], "runner-a", "run-a")
    assert [c.config_id for c in claims] == ["fine"]
    assert why["typo_type"] == "invalid control row: " + results["typo_type"].detail


def test_a_new_primary_key_for_a_loaded_incremental_target_is_refused(spark, warehouse, store):
    # MERGE on a new key updates every target row sharing its value: rows (1, "u0") and
    # (2, "u0"), loaded by id, would both become the next record of uid "u0"
    from control.generate import generate
    from framework.config import parse_source
    from framework.lake.tables import TableRef

    _insert_by_hand(spark, store, "rekeyed", PrimaryColumn="id")
    ref = TableRef("raw", "hand", "rekeyed")
    df = spark.createDataFrame([(1, "u0"), (2, "u0")], "id long, uid string")
    warehouse.save(df.write.format("delta"), ref)

    def config(*key: str):
        return parse_source({
            "config_id": "rekeyed", "api_name": "Hand", "endpoint": "https://api.example.com/items",
            "load_start": "2024-01-01T00:00:00Z", "primary_key": list(key), "delta_column": True,
            "data_path": "data", "target": {"catalog": "raw", "schema": "hand", "table": "rekeyed"}})

    now = dt.datetime(2024, 2, 2, 3, tzinfo=UTC)
    [result] = generate(store, configs=[config("uid")], now=now)
    assert (result.action, result.detail) == (
        "invalid", "source 'rekeyed': primary_key: changed from id to uid while raw.hand.rekeyed "
        "holds rows merged on id: a MERGE on uid would update every row sharing a uid value "
        "(point the source at a new target table, which gets a full load)")
    assert store.get("rekeyed")["PrimaryColumn"] == "id"  # nothing upserted
    # the same key spelled as its column is no change
    [result] = generate(store, configs=[config("ID")], now=now)
    assert result.action == "pending", result


def test_a_new_source_system_for_a_loaded_target_is_refused(spark, warehouse, store):
    # every write is scoped to the source's system: a full load as "crm2" replaced only
    # crm2's rows, and the rows loaded as "crm" stayed beside the same records again
    from framework.config import parse_source
    from framework.lake.tables import TableRef

    _insert_by_hand(spark, store, "renamed", LoadType="FULL_LOAD", SourceSystem="crm")
    ref = TableRef("raw", "hand", "renamed")
    df = spark.createDataFrame([(1, "crm"), (2, "crm")], "id long, source_system string")
    warehouse.save(df.write.format("delta"), ref)

    def config(system: str):
        return parse_source({
            "config_id": "renamed", "api_name": "Hand", "source_system": system,
            "endpoint": "https://api.example.com/items", "load_start": "2024-01-01T00:00:00Z",
            "primary_key": ["id"], "data_path": "data",
            "target": {"catalog": "raw", "schema": "hand", "table": "renamed"}})

    _refused_then_planned(
        store, config("crm2"), config("crm"), ("SourceSystem", "crm"),
        "source 'renamed': source_system: changed from crm to crm2 while raw.hand.renamed "
        "holds the source's rows as crm: every record would be written again beside them as "
        "crm2 (point the source at a new target table, which gets a full load, or keep crm)")


def _refused_then_planned(store, changed, kept, column: tuple[str, object], detail: str) -> None:
    """generate refuses ``changed`` with ``detail`` and leaves the row as it is (``column``
    keeps its value), then plans the row again from ``kept``."""
    from control.generate import generate

    now = dt.datetime(2024, 2, 6, 3, tzinfo=UTC)
    [result] = generate(store, configs=[changed], now=now)
    assert (result.action, result.detail) == ("invalid", detail)
    assert store.get(changed.config_id)[column[0]] == column[1]  # nothing upserted
    [result] = generate(store, configs=[kept], now=now)
    assert result.action != "invalid", result


def test_new_windows_wait_for_an_unfinished_keyless_load_with_committed_windows(
        spark, warehouse, store):
    # its rerun skips the windows the log marks committed and appends under versions made of
    # window indices: on another grid no committed window matched (their records appended
    # again) and spent versions could skip the new batches
    from framework.config import parse_source

    start = dt.datetime(2024, 2, 1, tzinfo=UTC)
    _insert_by_hand(spark, store, "keyless", PrimaryColumn=None, DeltaColumn=False,
                    LoadStatus="FAILED", LoadStartTime=start, LoadEndTime=start + dt.timedelta(days=4),
                    LoadId="L-unfinished", Attempt=1, WindowStrategy="daily")
    store.append_window_log([{
        "ConfigId": "keyless", "LoadId": "L-unfinished", "RunId": "r1", "WindowStart": start,
        "WindowEnd": start + dt.timedelta(days=1), "Status": "SUCCESS", "Rows": 5,
        "LoggedAt": start}])

    def config(window: str, **limits):
        return parse_source({
            "config_id": "keyless", "api_name": "Hand", "endpoint": "https://api.example.com/items",
            "load_start": "2024-01-01T00:00:00Z", "window": window, "data_path": "data",
            "limits": limits, "target": {"catalog": "raw", "schema": "hand", "table": "keyless"}})

    _refused_then_planned(
        store, config("PT12H", windows_per_commit=4), config("daily"), ("WindowStrategy", "daily"),
        "source 'keyless': window: window daily -> PT12H, limits.windows_per_commit 8 -> 4 "
        "while load L-unfinished of this source without a primary_key has committed windows: "
        "its rerun would append their records again and could skip the rest (let the load "
        "finish on its windows, or retry it, then change them)")
    # the same windows: re-planned as before, same range and LoadId
    assert store.get("keyless")["LoadId"] == "L-unfinished"
