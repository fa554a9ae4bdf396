"""Quality checks, schema drift and SLAs: the pure logic (no Spark), and their config."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from framework.config import parse_source
from framework.errors import ConfigError
from framework.ops import drift, quality as q
from framework.ops.sla import assess_sla, deadline_at

UTC = dt.timezone.utc
BASE = {"config_id": "things", "api_name": "Things", "endpoint": "https://api.example.com/things",
        "load_start": "2024-01-01T00:00:00Z", "window": "daily",
        "target": {"catalog": "main", "schema": "raw", "table": "things"}}


def quality(**block):
    return parse_source({**BASE, "quality": block}).quality


def config_error(**changes) -> str:
    with pytest.raises(ConfigError) as info:
        parse_source({**BASE, **changes})
    return str(info.value)


# ------------------------------------------------------------------- config
def test_short_and_long_forms_and_the_default_severity():
    block = quality(min_rows=5, max_row_drop_pct={"severity": "fail"},
                    max_null_pct={"email": 5}, accepted_values={"value": {"state": ["open"]},
                                                                "severity": "fail"},
                    not_null=["id"], unique=["id", "kind"], freshness_sla=180)
    assert block.min_rows.value == 5 and block.max_row_drop_pct.value == 10.0  # seed's 10 %
    assert block.max_null_pct.value == {"email": 5.0} and block.freshness_sla.value == "03:00"
    assert [(n, s) for n, _, s in block.checks(q.Quality.BEFORE_COMMIT)] == [
        ("min_rows", "warn"), ("max_row_drop_pct", "fail"), ("max_null_pct", "warn"),
        ("not_null", "warn"), ("accepted_values", "fail")]
    assert quality(severity="fail", min_rows=1).checks(["min_rows"])[0][2] == "fail"
    assert block.gates_commit and not quality(unique=["id"], freshness_sla="03:00").gates_commit


@pytest.mark.parametrize("block, field, words", [
    ({"min_rows": -1}, "quality.min_rows.value", "greater than or equal to 0"),
    ({"min_rows": {"value": 1, "sevrity": "fail"}}, "quality.min_rows.sevrity", "did you mean 'severity'"),
    ({"mn_rows": 1}, "quality.mn_rows", "did you mean 'min_rows'"),
    ({"max_null_pct": {"severity": "fail"}}, "quality.max_null_pct", "under 'value:'"),
    ({"max_null_pct": {"email": 101}}, "quality.max_null_pct.value.email", "less than or equal to 100"),
    ({"not_null": ["bad\nname"]}, "quality.not_null.value", "not a valid field name"),
    ({"not_null": []}, "quality.not_null.value", "at least 1"),
    ({"freshness_sla": "25:00"}, "quality.freshness_sla.value", "not a HH:MM time"),
    ({"severity": "error"}, "quality.severity", "'error' is not one of warn or fail"),
    ({"accepted_values": {"state": []}}, "quality.accepted_values.value.state", "at least 1"),
])
def test_bad_quality_blocks_name_the_field(block, field, words):
    text = config_error(quality=block)
    assert f"{field}:" in text and words in text


def test_checks_that_cannot_work_are_refused_before_any_io():
    text = config_error(quality={"min_rows": 1}, limits={"pages_per_commit": 10})
    assert "limits.pages_per_commit" in text and "min_rows" in text
    assert parse_source({**BASE, "quality": {"unique": ["id"]}, "limits": {"pages_per_commit": 10}})
    text = config_error(quality={"max_spike_pct": 50}, window="none")
    assert "quality.max_spike_pct.baseline" in text and "baseline: loads" in text
    assert parse_source({**BASE, "window": "none", "quality": {
        "max_spike_pct": {"value": 50, "baseline": "loads"}}})


def test_the_block_travels_in_the_control_row_and_names_the_column_when_edited():
    from control.mapping import config_to_row, row_to_config

    cfg = parse_source({**BASE, "quality": {"min_rows": 5, "not_null": ["id"]}})
    row = config_to_row(cfg)
    assert json.loads(row["Options"])["quality"] == {
        "severity": "warn", "min_rows": {"value": 5}, "not_null": {"value": ["id"]}}
    assert row_to_config(row).quality == cfg.quality
    row["Options"] = json.dumps({"quality": {"min_rows": {"value": "many"}}})
    with pytest.raises(ConfigError, match=r"control row column Options \(quality.min_rows.value\)"):
        row_to_config(row)


# ------------------------------------------------------------------- checks
def test_min_rows():
    assert q.check_min_rows(10, 10, "fail").passed
    low = q.check_min_rows(9, 10, "fail")
    assert low.blocks and low.observed == 9 and low.threshold == 10 and "fewer than the 10" in low.message


def test_row_drop_against_the_previous_load():
    assert q.check_row_drop(60, None, 10, "fail", "FULL_LOAD").passed  # nothing to compare with
    drop = q.check_row_drop(60, 100, 10, "fail", "FULL_LOAD")
    assert drop.blocks and drop.observed == 40.0 and "100 -> 60" in drop.message
    assert q.check_row_drop(91, 100, 10, "fail", "FULL_LOAD").passed  # 9 %
    assert q.check_row_drop(150, 100, 10, "fail", "FULL_LOAD").observed == 0.0  # growth is no drop


def test_spike_against_the_median_window_or_the_last_loads():
    assert q.check_spike_windows([10, 500], 100, "warn").passed  # two windows prove nothing
    spike = q.check_spike_windows([10, 12, 40, 11], 100, "warn")
    assert not spike.passed and spike.observed == pytest.approx(100 * (40 - 11.5) / 11.5, abs=1e-3)
    assert "window (#3)" in spike.message and not spike.blocks
    assert q.check_spike_windows([10, 12, 20, 11], 100, "warn").passed
    assert q.check_spike_windows([0, 0, 5], 100, "warn").observed == 500.0  # zero median: 1 row
    assert q.check_spike_loads(300, [], 100, "fail", "INCREMENTAL").passed
    assert q.check_spike_loads(300, [100, 90, 110], 100, "fail", "INCREMENTAL").blocks
    assert q.check_spike_loads(150, [100, 90, 110], 100, "fail", "INCREMENTAL").passed


def test_nulls_and_accepted_values():
    assert q.check_null_pct("email", 5, 100, 5, "warn").passed
    over = q.check_null_pct("email", 6, 100, 5, "warn")
    assert not over.passed and over.observed == 6.0 and over.field == "email"
    gone = q.check_not_null("state", 100, 100, "fail", missing=True)
    assert gone.blocks and "in no row" in gone.message
    assert q.check_not_null("id", 0, 0, "fail").passed  # no rows: nothing is null
    bad = q.check_accepted("state", 3, 10, ["open"], "warn", sample=["<b>x</b>", "closed"])
    assert not bad.passed and bad.observed == 3
    # what the API sent stays out of the message (it reaches notifications)
    assert "<b>" not in bad.message and bad.detail["sample"] == ["<b>x</b>", "closed"]


def test_a_limit_is_judged_on_the_exact_share_not_a_rounded_one():
    # 1 null in a million rows is over max_null_pct 0; 1 row fewer of a million is a drop
    one_null = q.check_null_pct("email", 1, 1_000_000, 0, "fail")
    assert one_null.blocks and one_null.observed == pytest.approx(1e-4)
    assert q.check_row_drop(999_999, 1_000_000, 0, "fail", "FULL_LOAD").blocks
    over = q.check_row_drop(899_999, 1_000_000, 10, "fail", "FULL_LOAD")
    assert over.blocks and over.message.startswith("10.0001% fewer rows")  # not "10%"
    assert one_null.message.startswith("0.0001% of 1000000 rows")
    assert q.check_row_drop(900_000, 1_000_000, 10, "fail", "FULL_LOAD").passed  # 10 % is allowed
    assert q.check_spike_loads(1_100_001, [1_000_000], 10, "fail", "FULL_LOAD").blocks
    assert q.check_spike_windows([1_000_000, 1_000_000, 1_100_001], 10, "fail").blocks
    assert q.check_null_pct("email", 5, 100, 5, "fail").passed


def test_accepted_values_of_a_field_in_no_row_do_not_pass():
    # a misspelt field, or one the API stopped sending: no value could be judged
    block = quality(accepted_values={"value": {"stat": ["open"]}, "severity": "fail"})
    [r] = q.evaluate_before(block, q.RowsObserved("FULL_LOAD", rows=10,
                                                  missing=frozenset({"stat"})))
    assert r.blocks and r.observed is None and "stat is in no row" in r.message
    assert q.check_accepted("state", 0, 0, ["open"], "fail").passed  # no rows: nothing to judge


def test_a_long_api_value_is_cut_in_the_sample():
    # a 5,000-character value would fill the results table, the terminal and the report
    long = "L" * 5000
    bad = q.check_accepted("state", 2, 2, ["open"], "warn", sample=[long, "closed"])
    assert bad.detail["sample"] == ["L" * 200 + "…", "closed"]
    dup = q.check_unique(["k"], 1, 2, "fail", sample=[json.dumps([long])])
    [key] = dup.detail["sample"]
    assert len(key) == 201 and key.endswith("…") and key.startswith('["LLL')


def test_a_spike_over_a_median_of_no_rows_grows_with_the_rows():
    # the last loads wrote nothing, this one a million rows: not "100 % above"
    burst = q.check_spike_loads(1_000_000, [0, 0, 0], 100, "fail", "INCREMENTAL")
    assert burst.blocks and burst.observed == 100_000_000.0
    assert q.check_spike_windows([0, 0, 5000], 100, "fail").blocks
    assert q.check_spike_windows([0, 0, 1], 100, "fail").passed  # one row: 100 % above one
    assert q.check_spike_loads(0, [0, 0], 100, "fail", "INCREMENTAL").observed == 0.0


def test_unique():
    assert q.check_unique(["id"], 0, 0, "fail").passed
    dup = q.check_unique(["a", "b"], 2, 5, "fail", sample=['[1,"x"]'])
    assert dup.blocks and dup.field == "a,b" and dup.phase == q.AFTER_COMMIT and dup.observed == 2
    lost = q.check_unique(["id"], None, 0, "fail", missing=["id"])
    assert lost.blocks and "no column id" in lost.message


def test_evaluate_before_judges_every_configured_check():
    block = quality(min_rows={"value": 1, "severity": "fail"}, max_row_drop_pct={"severity": "fail"},
                    max_spike_pct=100, max_null_pct={"email": 10}, not_null=["id", "gone"],
                    accepted_values={"state": ["open", "closed"]})
    seen = q.RowsObserved("FULL_LOAD", rows=60, window_rows=(20, 20, 20),
                          nulls={"email": 12, "id": 0}, outside={"state": 1},
                          previous_rows=100, recent_rows=(100,), missing=frozenset({"gone"}))
    results = q.evaluate_before(block, seen)
    got = {(r.check, r.field): r for r in results}
    assert list(got) == [("min_rows", None), ("max_row_drop_pct", None), ("max_spike_pct", None),
                         ("max_null_pct", "email"), ("not_null", "id"), ("not_null", "gone"),
                         ("accepted_values", "state")]
    assert [k for k, r in got.items() if not r.passed] == [
        ("max_row_drop_pct", None), ("max_null_pct", "email"), ("not_null", "gone"),
        ("accepted_values", "state")]
    assert got[("not_null", "gone")].observed == 60  # a field in no row is null in every row
    assert q.verdict(results) == q.FAILED
    text = q.failure_text(results, q.BEFORE_COMMIT)
    assert text.startswith("quality checks failed before the commit (nothing was written): ")
    assert "max_row_drop_pct" in text and "email" not in text  # only the fail checks
    assert q.verdict([r for r in results if not r.blocks]) == q.WARNED
    assert q.verdict([results[0]]) == q.PASSED


def test_result_rows_and_descriptions():
    r = q.check_accepted("state", 1, 2, ["open"], "warn", sample=["x"])
    at = dt.datetime(2024, 1, 1, tzinfo=UTC)
    row = r.as_row(config_id="c", load_id="L1", run_id="r1", load_type="FULL_LOAD", checked_at=at)
    assert row["CheckName"] == "accepted_values" and row["Passed"] is False and row["Threshold"] == 0.0
    assert json.loads(row["Detail"]) == {"accepted": ["open"], "sample": ["x"]}
    assert row["CheckedAt"] == at and row["Phase"] == "before_commit"
    block = quality(min_rows=5, max_spike_pct={"value": 50, "baseline": "loads", "loads": 3},
                    unique=["id"], freshness_sla="03:00", severity="fail")
    assert q.describe(block) == ["min_rows >= 5 (fail)",
                                 "max_spike_pct <= 50% vs median of last 3 loads (fail)",
                                 "unique (id) (fail)", "freshness_sla 03:00 UTC (fail)"]
    assert q.describe(None) == []


def test_baselines_and_null_fields():
    assert q.baseline_loads(quality(min_rows=1)) == 0
    assert q.baseline_loads(quality(max_row_drop_pct=10)) == 1
    assert q.baseline_loads(quality(max_spike_pct={"value": 5, "baseline": "loads", "loads": 7})) == 7
    assert q.null_fields(quality(max_null_pct={"a": 1, "b": 2}, not_null=["b", "c"])) == ["a", "b", "c"]


# ------------------------------------------------------------------- drift
def test_drift_new_retyped_and_removed_against_the_contract():
    absent = drift.absent_fields(["id", "title", "state", "old"], {"id"}, ["id", "state", "extra"])
    assert absent == {"title", "old"}
    found = drift.detect(new=["extra"], retyped={"state": ("string", "long")}, absent=absent,
                         contract={"id", "title", "state"})  # 'old' never held this source's values
    assert found.removed == ("title",) and found.new == ("extra",)
    assert [(r.field, r.detail["change"]) for r in found.results()] == [
        ("title", "removed"), ("state", "retyped"), ("extra", "new")]
    assert all(r.severity == "warn" and not r.passed and not r.blocks for r in found.results())
    assert not drift.detect(new=[], retyped={}, absent=set(), contract={"id"})
    assert drift.no_drift(3).passed and drift.no_drift(3).field is None


def test_a_new_fields_detail_names_the_payload_keys_its_column_stands_for():
    # the column "_" means nothing to whoever reads _rescued_data: it holds "é" and "ü"
    found = drift.detect(new=["_", "Has_Space", "priority"], retyped={}, absent=set(),
                         contract=set(), sent_as={"_": {"ü", "é"}, "Has_Space": {"Has Space"},
                                                  "priority": {"priority"}})
    assert {r.field: r.detail for r in found.results()} == {
        "_": {"change": "new", "sent_as": ["é", "ü"]},
        "Has_Space": {"change": "new", "sent_as": ["Has Space"]},
        "priority": {"change": "new"}}
    assert all("é" not in r.message for r in found.results())  # API text stays in Detail


def test_a_field_declared_in_another_case_than_its_column_is_not_absent():
    # cursor_field updated_at, the API sends Updated_At: one column, as Delta and the load see it
    assert drift.absent_fields(["id", "Updated_At"], {"updated_at", "ID"},
                               ["id", "Updated_At"]) == set()
    assert drift.absent_fields(["id", "Title"], {"title"}, ["id"]) == {"Title"}


def test_absent_fields_ignore_the_contract_columns():
    assert drift.absent_fields(["id", "_rescued_data", "payload_hash"], (), ["id"]) == set()


# --------------------------------------------------------------------- SLA
def test_sla_deadline_and_verdict_with_an_injected_clock():
    day = dt.datetime(2024, 3, 10, tzinfo=UTC)
    assert deadline_at("03:00", day.replace(hour=2, minute=59)) == day.replace(day=9, hour=3)
    assert deadline_at("03:00", day.replace(hour=3)) == day.replace(hour=3)
    loaded = day.replace(hour=2, minute=30)
    first = day - dt.timedelta(days=30)
    met = assess_sla("gh", "03:00", [loaded], first, day.replace(hour=9))
    assert met.met and met.last_success == loaded and "loaded by 03:00 UTC" in met.message
    late = assess_sla("gh", "03:00", [day.replace(hour=3, minute=5)], first, day.replace(hour=9))
    assert not late.met and "not loaded by 03:00 UTC on 2024-03-10" in late.message
    nextday = assess_sla("gh", "03:00", [loaded], first, day + dt.timedelta(days=1, hours=4))
    assert not nextday.met and nextday.deadline == day.replace(day=11, hour=3)
    # not in service before the deadline: not judged
    assert assess_sla("gh", "03:00", [], day.replace(hour=5), day.replace(hour=9)) is None
    assert assess_sla("gh", "03:00", [], None, day.replace(hour=9)) is None
    assert not assess_sla("gh", "03:00", [], first, day.replace(hour=9)).met


def test_summary_per_source():
    at = dt.datetime(2024, 1, 1, tzinfo=UTC)

    def row(check, field, passed, severity):
        return {"ConfigId": "a", "RunId": "r", "CheckName": check, "Field": field, "Passed": passed,
                "Severity": severity, "CheckedAt": at}

    missed = assess_sla("b", "03:00", [], at - dt.timedelta(days=3), at + dt.timedelta(hours=5),
                        severity="fail")
    states = q.summarize([row("min_rows", None, True, "fail"), row("not_null", "x", False, "warn"),
                          row("unique", "id", False, "fail")], [missed])
    assert states["a"].state == q.FAILED and states["a"].failed == ("unique id",)
    assert states["a"].warned == ("not_null x",) and states["a"].text == "FAILED: unique id"
    assert states["b"].state == "" and states["b"].text == "SLA 03:00 missed"
    assert states["b"].level == "bad" and states["a"].level == "bad"
    assert q.summarize([row("min_rows", None, True, "fail")])["a"].level == "ok"
