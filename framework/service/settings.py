"""The service config (``--service-config FILE``): how the scheduler runs, the daily report,
the notifications. Validated once, errors naming the file and the field::

    scheduler: {poll: PT1M, parallel: 2, probe_workers: 64}   # lease_minutes: each row's limits.lease_s
    report: {time: "06:00", out: ./ops, days: 7}
    notifications:                 # the block `restlake notify --config` reads
      webhook: {url: env:SLACK_WEBHOOK_URL}

Every block is optional: without ``report:`` no report is written, without
``notifications:`` nothing is sent. Sources are not configured here: they are the control
rows (``restlake generate --config``, ``POST /api/v1/sources``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from framework.config import Schedule
from framework.errors import ConfigError
from framework.timeutil import parse_duration


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SchedulerBlock(_Model):
    poll: str = "PT1M"
    parallel: int = Field(default=2, ge=1, le=32)
    probe_workers: int = Field(default=64, ge=1, le=256)
    # None: each source's limits.lease_s (like `restlake run` without --lease-minutes); at
    # least 30 s as both of those
    lease_minutes: Optional[float] = Field(default=None, ge=0.5, le=24 * 60)

    @field_validator("poll")
    @classmethod
    def _poll(cls, v: str) -> str:
        try:
            step = parse_duration(v.upper())
        except ValueError:
            raise ValueError(f"{v!r} is not an ISO-8601 duration (e.g. PT1M)") from None
        if not isinstance(step, dt.timedelta) or step < dt.timedelta(seconds=1):
            raise ValueError(f"{v!r} is not a fixed duration of at least PT1S")
        return v.upper()


class ReportBlock(_Model):
    time: str
    out: str = Field(min_length=1)
    days: int = Field(default=7, ge=1, le=366)

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, v: Any) -> str:
        try:
            return Schedule.model_validate({"time": v}).time  # the schedule's HH:MM rule
        except ValidationError as exc:
            raise ValueError(str(exc.errors()[0]["msg"]).removeprefix("Value error, ")) from None


class ServiceConfig(_Model):
    scheduler: SchedulerBlock = Field(default_factory=SchedulerBlock)
    report: Optional[ReportBlock] = None
    notifications: Optional[dict[str, Any]] = None


def load_settings(path: Optional[Union[str, Path]]) -> Any:
    """The :class:`framework.service.scheduler.SchedulerSettings` of a service config file
    (``None``: the defaults).

    Raises:
        ConfigError: the file cannot be read or a value is invalid (file and field named).
    """
    from framework.ops.notify import parse_notifications
    from framework.service.scheduler import SchedulerSettings

    if path is None:
        return SchedulerSettings()
    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror}", file=str(p)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {getattr(exc, 'problem', exc)}", file=str(p)) from None
    if not isinstance(doc, dict):
        raise ConfigError("expected a mapping with scheduler:, report: and notifications:",
                          file=str(p))
    try:
        cfg = ServiceConfig.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in err.get("loc", ())) or None
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            message = "unknown key"
        elif err.get("type") == "missing":
            message = "is required"
        raise ConfigError(message, file=str(p), field=where) from None
    poll = parse_duration(cfg.scheduler.poll)
    assert isinstance(poll, dt.timedelta)
    return SchedulerSettings(
        poll=poll, parallel=cfg.scheduler.parallel, probe_workers=cfg.scheduler.probe_workers,
        lease=(dt.timedelta(minutes=cfg.scheduler.lease_minutes)
               if cfg.scheduler.lease_minutes is not None else None),
        report_time=cfg.report.time if cfg.report else None,
        report_out=cfg.report.out if cfg.report else None,
        report_days=cfg.report.days if cfg.report else 7,
        notifications=parse_notifications(doc, file=str(p)))
