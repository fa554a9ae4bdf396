"""framework.service.settings: the --service-config file (scheduler, report, notifications)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from framework.errors import ConfigError
from framework.service.scheduler import SchedulerSettings
from framework.service.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_service_config_loads():
    settings = load_settings(ROOT / "conf" / "service.yaml")
    assert settings.poll == dt.timedelta(minutes=1) and settings.parallel == 2
    assert settings.probe_workers == 64 and settings.lease is None  # each source's lease_s
    assert (settings.report_time, settings.report_out, settings.report_days) == ("06:00", "./ops", 7)
    assert settings.notifications.down_after == 2 and settings.notifications.webhook is not None


def test_lease_minutes_overrides_every_sources_lease(tmp_path):
    conf = tmp_path / "service.yaml"
    conf.write_text("scheduler: {lease_minutes: 5}")
    assert load_settings(conf).lease == dt.timedelta(minutes=5)


def test_no_file_and_an_empty_file_mean_the_defaults(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_settings(None) == load_settings(empty) == SchedulerSettings()
    assert SchedulerSettings().report_time is None and SchedulerSettings().notifications is None


@pytest.mark.parametrize("text,field,message", [
    ("scheduler: {poll: P1M}", "scheduler.poll", "'P1M' is not a fixed duration of at least PT1S"),
    ("scheduler: {parallel: 0}", "scheduler.parallel", "greater than or equal to 1"),
    # a lease of a few seconds (a claim lost at every slow commit) was taken as given, where
    # `run --lease-minutes` and limits.lease_s ask for 30 s at least
    ("scheduler: {lease_minutes: 0.05}", "scheduler.lease_minutes", "greater than or equal to 0.5"),
    ("report: {time: '25:00', out: x}", "report.time", "'25:00' is not a HH:MM time"),
    ("report: {out: x}", "report.time", "is required"),
    ("schedular: {}", "schedular", "unknown key"),
    ("notifications: {webhook: {url: nope}}", "notifications.webhook.url",
     "must be an http(s) URL or a secret reference"),
])
def test_errors_name_the_file_and_the_field(tmp_path, text, field, message):
    path = tmp_path / "svc.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.field == field and message in str(info.value)
    assert str(path) in str(info.value)


def test_report_time_written_unquoted_is_read_as_hh_mm(tmp_path):
    path = tmp_path / "svc.yaml"
    path.write_text("report: {time: 06:30, out: ops}")  # YAML 1.1 reads 06:30 as 390
    assert load_settings(path).report_time == "06:30"
