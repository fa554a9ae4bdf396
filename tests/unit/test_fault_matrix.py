"""Fault matrix at the window level (no Spark): every pagination style x every fault.

Windows are fetched by the load's fetch stack (:class:`~framework.load.fetch.WindowFetcher`),
the one the threaded runtime and the Spark tasks of ``run --distributed`` both run.

Transient faults within the retry budget end with exactly the source's records staged;
faults that are not transient (or exceed the budget) fail the window with a clear error
and leave nothing staged, so nothing of the window can reach the target.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets as pysecrets

import pytest

from framework.demoapi import DemoApi
from framework.errors import WindowError
from framework.load.fetch import WindowFetcher
from framework.load.staging import RunStaging
from framework.windows import Window
from tests.integration.helpers import STYLE_SOURCES, source

UTC = dt.timezone.utc
WINDOW = Window(dt.datetime(2024, 1, 2, tzinfo=UTC), dt.datetime(2024, 1, 4, tzinfo=UTC))
CLIENT_ID = "matrix-client"
SECRET = "matrix-" + pysecrets.token_hex(8)

TRANSIENT = {
    "429": dict(kind="429", times=2, retry_after=0),
    "5xx_burst": dict(kind="503", times=2),
    "timeout": dict(kind="timeout", times=1, delay_s=1.5),
    "reset": dict(kind="reset", times=1),
    "truncated": dict(kind="truncated", times=1),
    # each byte within timeout_s, the whole body beyond body_timeout_s
    "drip": dict(kind="drip", times=1, delay_s=0.2),
    "expired_token": dict(kind="token_expired", times=1),
}
FATAL = {
    "error_body": (dict(kind="error_body", times=1), "error"),
    "5xx_beyond_budget": (dict(kind="502", times=None), "502"),
    "bad_json_beyond_budget": (dict(kind="bad_json", times=None), "JSON"),
}


@pytest.fixture(scope="module")
def api():
    os.environ["RESTLAKE_MATRIX_SECRET"] = SECRET
    with DemoApi(seed=5, records_per_resource=240, max_page_size=20,
                 end=dt.datetime(2024, 1, 8, tzinfo=UTC),
                 auth={"method": "oauth2", "client_id": CLIENT_ID, "client_secret": SECRET,
                       "token_ttl_s": 3600}) as server:
        yield server


def _cfg(api, style):
    return source(api.base_url, style, f"m_{style}",
                  auth={"method": "oauth2_client_credentials", "token_url": api.token_url,
                        "client_id": CLIENT_ID, "client_secret": "env:RESTLAKE_MATRIX_SECRET"},
                  limits={"timeout_s": 0.5, "body_timeout_s": 1.5, "max_retries": 3,
                          "backoff_base_s": 0.001, "backoff_max_s": 0.01})


def _fetch(api, style, tmp_path):
    cfg = _cfg(api, style)
    with WindowFetcher(cfg, "run-1", RunStaging(tmp_path, cfg.config_id, "run-1"), None,
                       None) as fetch:
        result = fetch(0, WINDOW)
    return result, result.stage, result.telemetry


def _staged_ids(stage):
    rows = []
    for path in stage.files:
        with path.open() as fh:
            rows += [json.loads(line) for line in fh]
    return sorted((r["id"], r["updated_at"]) for r in rows)


def _expected(api):
    return sorted((r["id"], r["updated_at"]) for r in
                  api.dataset.records_in(WINDOW.start, WINDOW.end))


def _inject(api, style, spec):
    spec = dict(spec)
    kind = spec.pop("kind")
    # mid-pagination (the 2nd request of the window) where the style has several pages
    after = 0 if style == "none" else 1
    api.faults.add(kind, path=STYLE_SOURCES[style]["path"], after=after, **spec)


@pytest.mark.parametrize("fault", sorted(TRANSIENT))
@pytest.mark.parametrize("style", sorted(STYLE_SOURCES))
def test_transient_fault_within_budget_stages_exactly_the_source(api, tmp_path, style, fault):
    api.faults.clear()
    api.revoke_tokens() if fault == "expired_token" else None
    _inject(api, style, TRANSIENT[fault])
    result, stage, telemetry = _fetch(api, style, tmp_path)
    api.faults.clear()
    assert _staged_ids(stage) == _expected(api)
    assert len({i for i, _ in _staged_ids(stage)}) == result.records
    tel = telemetry.as_dict()
    if fault == "expired_token":
        # every request on the wire with the revoked token gets its 401: one on a walk of
        # one page at a time; with concurrent pages (offset and page styles report their
        # totals) at most limits.concurrency. They share one token refresh.
        rejected = tel["status_counts"].get("401", 0)
        assert tel["token_refreshes"] == 1
        assert rejected == 1 or (style in ("offset", "page")
                                 and 1 < rejected <= _cfg(api, style).limits.concurrency)
    else:
        assert tel["retries"] >= 1


@pytest.mark.parametrize("fault", sorted(FATAL))
@pytest.mark.parametrize("style", sorted(STYLE_SOURCES))
def test_fatal_fault_fails_the_window_and_stages_nothing(api, tmp_path, style, fault):
    api.faults.clear()
    spec, needle = FATAL[fault]
    _inject(api, style, spec)
    with pytest.raises(WindowError) as info:
        _fetch(api, style, tmp_path)
    api.faults.clear()
    assert needle.lower() in str(info.value).lower()
    assert SECRET not in str(info.value)
    assert not any(p.is_dir() and any(p.iterdir()) for p in (tmp_path / f"m_{style}" / "run-1").glob("w*"))


def _fetch_with(api, style, tmp_path, **limits):
    cfg = _cfg(api, style)
    cfg = cfg.model_copy(update={"limits": cfg.limits.model_copy(update=limits)})
    with WindowFetcher(cfg, "run-1", RunStaging(tmp_path, cfg.config_id, "run-1"), None,
                       None) as fetch:
        return fetch(0, WINDOW)


def test_the_longest_retry_after_waited_for_is_a_limits_setting(api, tmp_path):
    from framework.config import SourceConfig

    # a source whose API asks for long pauses: limits.retry_after_max_s raises the wait
    # restlake accepts above which the window fails at once
    assert SourceConfig.model_validate(
        {**_cfg(api, "offset").model_dump(exclude_none=True),
         "limits": {"retry_after_max_s": 900}}).limits.retry_after_max_s == 900
    api.faults.clear()
    _inject(api, "offset", dict(kind="429", times=1, retry_after=2))
    with pytest.raises(WindowError) as info:
        _fetch_with(api, "offset", tmp_path / "short", retry_after_max_s=1)
    api.faults.clear()
    assert "limits.retry_after_max_s" in str(info.value) and "2 s" in str(info.value)
    _inject(api, "offset", dict(kind="429", times=1, retry_after=1))
    result = _fetch_with(api, "offset", tmp_path / "long", retry_after_max_s=1)
    api.faults.clear()
    assert _staged_ids(result.stage) == _expected(api)
