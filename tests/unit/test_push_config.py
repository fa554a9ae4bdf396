"""Push sources in the config contract: webhook: validated, carried by the control row."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from control import states
from control.mapping import config_to_row, row_to_config
from control.states import ControlState, LoadStatus, LoadType
from framework.config import load_text
from framework.errors import ConfigError

UTC = dt.timezone.utc
PUSH = """\
config_id: gh_push
api_name: GitHub
webhook: {signature: github, secret: env:GH_HOOK_SECRET, event_id_path: delivery.id,
          batch_events: 50, batch_seconds: 2}
primary_key: [id]
target: {catalog: raw, schema: hooks, table: gh_events}
"""


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_text(text)
    return str(info.value)


def test_a_push_source_needs_no_endpoint_and_gets_the_scheme_defaults():
    cfg = load_text(PUSH)[0]
    assert cfg.is_push and cfg.endpoint is None and cfg.load_start is None
    assert cfg.webhook.signature_header == "X-Hub-Signature-256"
    assert (cfg.webhook.tolerance_s, cfg.webhook.max_body_bytes) == (300, 1024 * 1024)
    stripe = load_text(PUSH.replace("signature: github", "signature: stripe"))[0]
    assert stripe.webhook.signature_header == "Stripe-Signature"
    plain = load_text(PUSH.replace("signature: github", "signature: hmac_sha256, header: X-Sig"))
    assert plain[0].webhook.signature_header == "X-Sig"


@pytest.mark.parametrize("change, expected", [
    ("secret: env:GH_HOOK_SECRET", "webhook.secret: literal secrets are not allowed"),
    ("signature: github", "webhook.signature: 'gitlab' is not one of github, stripe"),
    ("batch_events: 50", "webhook.batch_events: Input should be greater than or equal to 1"),
    ("event_id_path: delivery.id", "webhook.event_id_path:"),
])
def test_bad_webhook_keys_name_the_field(change, expected):
    bad = {"secret: env:GH_HOOK_SECRET": "secret: s3cr3t-value",
           "signature: github": "signature: gitlab", "batch_events: 50": "batch_events: 0",
           "event_id_path: delivery.id": "event_id_path: 'a..b'"}[change]
    message = error_of(PUSH.replace(change, bad))
    assert expected in message and "s3cr3t-value" not in message


@pytest.mark.parametrize("key", ["endpoint: https://api.example.com/x",
                                 "pagination: {style: cursor}", "load_start: 2024-01-01",
                                 "auth: {method: bearer, secret: env:T}", "window: daily"])
def test_pull_keys_on_a_push_source_are_refused(key):
    name = key.split(":")[0]
    assert f"{name}: is not used by a push source" in error_of(PUSH + key + "\n")


def test_pull_sources_still_need_endpoint_and_load_start():
    pull = ("config_id: p\napi_name: P\ntarget: {catalog: a, schema: b, table: c}\n")
    assert "endpoint: is required" in error_of(pull + "load_start: 2024-01-01\n")
    assert "load_start: is required" in error_of(pull + "endpoint: https://a.example/x\n")


def test_the_control_row_carries_the_webhook_in_options_and_round_trips():
    cfg = load_text(PUSH)[0]
    row = config_to_row(cfg)
    assert row["APIEndpoint"] is None and row["HistoryStartTime"] is None
    options = json.loads(row["Options"])
    assert options["webhook"]["secret"] == "env:GH_HOOK_SECRET" and "header" not in options["webhook"]
    back = row_to_config(row)
    assert back.webhook == cfg.webhook and back.system == cfg.system
    assert back.model_dump(exclude={"source_system"}) == cfg.model_dump(exclude={"source_system"})
    hand_edited = {**row, "Options": json.dumps({"webhook": {**options["webhook"],
                                                             "signature": "gitlab"}})}
    with pytest.raises(ConfigError) as info:
        row_to_config(hand_edited)
    assert "control row column Options (webhook.signature)" in str(info.value)


def test_a_push_row_is_push_success_and_never_planned_or_claimable():
    now = dt.datetime(2024, 5, 1, tzinfo=UTC)
    state = states.register_push(ControlState(), now)
    assert (state.load_type, state.load_status) == (LoadType.PUSH, LoadStatus.SUCCESS)
    assert states.register_push(state, now) is None
    assert not states.is_claimable(state, now)
    running = ControlState(LoadType.INCREMENTAL, LoadStatus.RUNNING)
    assert states.register_push(running, now) is None  # a pull load in flight finishes first
    # back to pulling: the next generate plans a full load
    policy = states.LoadPolicy(history_start=dt.datetime(2024, 1, 1, tzinfo=UTC))
    planned = states.plan_next(state, policy, now)
    assert (planned.load_type, planned.load_status) == (LoadType.FULL_LOAD, LoadStatus.PENDING)


def test_rotation_keys_are_validated_with_the_field_named_and_round_trip():
    rotating = PUSH.replace("secret: env:GH_HOOK_SECRET,", "secret: env:GH_HOOK_SECRET, "
                            "previous_secret: env:GH_HOOK_SECRET_OLD, "
                            "previous_secret_until: '2024-06-01T00:00:00Z',")
    cfg = load_text(rotating)[0]
    assert cfg.webhook.previous_secret == "env:GH_HOOK_SECRET_OLD"
    assert cfg.webhook.previous_secret_until == dt.datetime(2024, 6, 1, tzinfo=UTC)
    assert row_to_config(config_to_row(cfg)).webhook == cfg.webhook
    literal = error_of(rotating.replace("env:GH_HOOK_SECRET_OLD", "old-s3cr3t-value"))
    assert "webhook.previous_secret: literal secrets are not allowed" in literal
    assert "old-s3cr3t-value" not in literal
    same = error_of(rotating.replace("env:GH_HOOK_SECRET_OLD", "env:GH_HOOK_SECRET"))
    assert "webhook.previous_secret: is the same reference as secret" in same
    alone = error_of(PUSH.replace("batch_events: 50", "batch_events: 50, "
                                  "previous_secret_until: '2024-06-01T00:00:00Z'"))
    assert "webhook.previous_secret_until: needs previous_secret" in alone


def test_a_flush_audit_row_is_built_by_the_one_audit_builder(monkeypatch):
    """push_audit_row goes through framework.load.audit.audit_record: a flush's row has
    exactly the columns of a run's row, the push counts in their own columns."""
    from framework.load import audit
    from framework.push import receiver
    from framework.push.flush import FlushResult

    calls = []
    real = audit.audit_record
    monkeypatch.setattr(audit, "audit_record", lambda *a, **k: calls.append(k) or real(*a, **k))
    cfg = load_text(PUSH)[0]
    at = dt.datetime(2024, 5, 1, tzinfo=UTC)
    result = FlushResult("gh_push", "push-abc-00000001", 1, events=5, records=5, stored=3,
                         rejected=1, version=7, total_rows=30, first_received=at, last_received=at)
    row = receiver.push_audit_row(cfg, result, at, 1.5)
    assert [c["load_type"] for c in calls] == ["PUSH"]
    pull = real(config_to_row(cfg), load_type="INCREMENTAL", status="SUCCESS", error=None,
                run_id="r", load_id=None, attempt=None, load_start=at, load_end=at,
                started_at=at, duration_s=1.0, loaded_by="u", progress=audit.LoadProgress(),
                telemetry={}, total_rows=None)
    assert set(row) == set(pull) | {"EventsReceived", "DuplicateRows"}
    assert (row["LoadType"], row["EventsReceived"], row["TargetRowCount"], row["RejectedRows"],
            row["DuplicateRows"]) == ("PUSH", 5, 3, 1, 1)
