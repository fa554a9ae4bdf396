"""The collector's pace while windows are fetched (framework.load.gcpolicy)."""

from __future__ import annotations

import gc

import pytest

from framework.config import parse_source
from framework.load.fetch import WindowFetcher
from framework.load.gcpolicy import YOUNG_THRESHOLD
from framework.load.staging import RunStaging


@pytest.fixture
def threshold():
    """Restores the test process's thresholds after the test."""
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def _build_fetch_stack(tmp_path) -> None:
    cfg = parse_source({
        "config_id": "g", "api_name": "Demo", "endpoint": "http://127.0.0.1:9/api/issues",
        "pagination": {"style": "none"}, "data_path": "data",
        "load_start": "2024-01-01T00:00:00Z", "load_end": "2024-01-02T00:00:00Z",
        "window": "daily", "target": {"catalog": "raw", "schema": "t", "table": "g"},
    })
    with WindowFetcher(cfg, "r", RunStaging(tmp_path, cfg.config_id, "r"), None, None):
        pass


def test_a_fetch_stack_collects_young_objects_less_often_than_the_default(threshold, tmp_path):
    gc.set_threshold(700, 10, 10)  # CPython's default
    _build_fetch_stack(tmp_path)
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
    assert YOUNG_THRESHOLD > 700


def test_a_slower_pace_the_process_chose_is_kept(threshold, tmp_path):
    gc.set_threshold(50_000, 20, 30)
    _build_fetch_stack(tmp_path)
    assert gc.get_threshold() == (50_000, 20, 30)


def test_a_collector_the_process_turned_off_stays_off(threshold, tmp_path):
    gc.set_threshold(0, 10, 10)  # threshold 0 disables automatic collection
    _build_fetch_stack(tmp_path)
    assert gc.get_threshold() == (0, 10, 10)
