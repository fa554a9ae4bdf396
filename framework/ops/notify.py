"""Notifications: failed loads, stale sources, outages, quality failures, drift and SLAs.

Configured under the top-level ``notifications:`` key of a YAML file (a sources file may
carry it next to ``sources:``)::

    notifications:
      events: [load_failed, stale, down, up]      # default: every kind (EVENT_KINDS)
      down_after: 2                               # consecutive failed checks before "down"
      digest_after: 10                            # more new incidents in one run: one digest
      webhook: {url: env:SLACK_WEBHOOK_URL, retries: 3, timeout_s: 10}
      email: {host: smtp.example.com, port: 587, tls: starttls, username: alerts,
              password: env:SMTP_PASSWORD, sender: restlake@example.com, to: [oncall@example.com]}
      telegram: {bot_token: env:TELEGRAM_BOT_TOKEN, chat_id: "-100123",
                 api_base: https://api.telegram.org}

Secrets are references (``env:``, ``file:``, ``databricks:``) resolved at send time by
:func:`framework.secrets.resolve`, which also registers them for masking: every message
and every error text passes through :func:`framework.secrets.redact`.

One message per incident, not per retry: each event has a stable key (a load failure is
keyed by its ``LoadId``, so the attempts of one failing range are one incident; a stale
source by its newest ``collected_at_utc``; an outage by its first failed check; a
quality failure by its ``LoadId``; warnings and schema drift by the load where they
started, so a condition that persists over many loads is one message; a missed SLA by
its deadline). Keys
already sent are remembered in a small JSON state file in the warehouse
(``<warehouse>/_ops/notifications_state.json``, locked while a notifier checks, sends and
marks); a key is remembered only once at least one channel took the message, so a channel
outage means a later resend, not a loss.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import smtplib
import ssl
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Optional, Union

import requests
import tenacity
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from framework.errors import ConfigError, RestlakeError
from framework.secrets import is_reference, redact, resolve
from framework.timeutil import iso, parse_iso, to_utc
from framework.untrusted import printable

log = logging.getLogger(__name__)

EVENT_KINDS = ("load_failed", "stale", "down", "up", "quality_failed", "quality_warned",
               "schema_drift", "sla_missed")
EventKind = Literal["load_failed", "stale", "down", "up", "quality_failed", "quality_warned",
                    "schema_drift", "sla_missed"]
STATE_FILE = "_ops/notifications_state.json"
TEXT_LIMIT = 3500  # Telegram caps a message at 4096 characters


class NotifyError(RestlakeError):
    """A channel could not deliver a message (the text is redacted)."""


# ------------------------------------------------------------------- config
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _ref(value: Any) -> str:
    if not isinstance(value, str) or not is_reference(value):
        raise ValueError("must be a secret reference (env:NAME, file:PATH or databricks:SCOPE/KEY)")
    return value


class WebhookConfig(_Model):
    url: str  # a reference (webhook URLs embed a credential) or a literal http(s) URL
    retries: int = Field(default=3, ge=0, le=10)
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    backoff_s: float = Field(default=1.0, ge=0, le=60)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if is_reference(v) or v.startswith(("http://", "https://")):
            return v
        raise ValueError("must be an http(s) URL or a secret reference such as env:SLACK_WEBHOOK_URL")


class EmailConfig(_Model):
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    tls: Literal["starttls", "ssl", "none"] = "starttls"
    username: Optional[str] = None
    password: Optional[str] = None
    sender: str
    to: list[str] = Field(min_length=1)
    timeout_s: float = Field(default=15.0, gt=0, le=120)

    @field_validator("password", mode="before")
    @classmethod
    def _password(cls, v: Any) -> Any:
        return None if v is None else _ref(v)


class TelegramConfig(_Model):
    bot_token: str
    chat_id: Union[str, int]
    api_base: str = "https://api.telegram.org"
    retries: int = Field(default=3, ge=0, le=10)
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    backoff_s: float = Field(default=1.0, ge=0, le=60)

    @field_validator("bot_token", mode="before")
    @classmethod
    def _token(cls, v: Any) -> str:
        return _ref(v)


class NotificationConfig(_Model):
    events: list[EventKind] = Field(default_factory=lambda: list(EVENT_KINDS))
    down_after: int = Field(default=2, ge=1, le=100)
    # more new incidents than this in one run: one digest message instead of one each
    digest_after: int = Field(default=10, ge=1, le=10_000)
    webhook: Optional[WebhookConfig] = None
    email: Optional[EmailConfig] = None
    telegram: Optional[TelegramConfig] = None

    @property
    def channels(self) -> list[str]:
        return [n for n in ("webhook", "email", "telegram") if getattr(self, n) is not None]


def parse_notifications(doc: Any, *, file: str = "<text>") -> Optional[NotificationConfig]:
    """The ``notifications:`` block of a parsed YAML document (None when absent).

    Raises:
        ConfigError: naming the file and the field.
    """
    if not isinstance(doc, dict) or doc.get("notifications") is None:
        return None
    try:
        return NotificationConfig.model_validate(doc["notifications"])
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in ("notifications", *err.get("loc", ())))
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        raise ConfigError(message, file=file, field=where) from None


def load_notifications(path: str | os.PathLike[str]) -> Optional[NotificationConfig]:
    """Read the ``notifications:`` block of a YAML file."""
    from framework.config import safe_yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror}", file=str(p)) from None
    return parse_notifications(safe_yaml(text, file=str(p)), file=str(p))


# -------------------------------------------------------------------- events
@dataclass(frozen=True)
class Event:
    """Something on-call must hear about once.

    Attributes:
        kind: one of :data:`EVENT_KINDS`.
        config_id: the source.
        key: the incident key (one message per key).
        detail: what happened (sanitized when the message is built).
        at: when it happened.
        requires: a key that must have been sent before (an ``up`` needs its ``down``).
    """

    kind: str
    config_id: str
    key: str
    detail: str
    at: Optional[dt.datetime] = None
    requires: Optional[str] = None


_TITLES = {"load_failed": "load FAILED", "stale": "data is STALE", "down": "source is DOWN",
           "up": "source is back UP", "quality_failed": "quality check FAILED",
           "quality_warned": "quality WARNING", "schema_drift": "schema DRIFT",
           "sla_missed": "SLA MISSED"}


def build_message(event: Event) -> tuple[str, str]:
    """``(subject, text)`` of one event; redacted, control characters written as ``\\xNN``
    (the subject is one line), never longer than :data:`TEXT_LIMIT`."""
    subject = printable(redact(f"[restlake] {event.config_id}: "
                               f"{_TITLES.get(event.kind, event.kind)}"), newlines=False)
    when = f" at {iso(event.at)}" if event.at else ""
    text = printable(redact(f"{subject}{when}\n{event.detail}".strip()))
    if len(text) > TEXT_LIMIT:
        text = text[:TEXT_LIMIT] + "..."
    return subject, text


def events_from_audit(rows: Iterable[dict[str, Any]]) -> list[Event]:
    """A FAILED or PARTIAL load per (ConfigId, LoadId): one incident across its retries."""
    out: dict[str, Event] = {}
    for r in sorted(rows, key=lambda r: to_utc(r["LoggedAt"]) if r.get("LoggedAt") else dt.datetime.min.replace(tzinfo=dt.timezone.utc)):
        if r.get("LoadStatus") not in ("FAILED", "PARTIAL"):
            continue
        incident = r.get("LoadId") or r.get("RunId") or "unknown"
        key = f"load_failed:{r['ConfigId']}:{incident}"
        detail = (f"{r.get('LoadType') or ''} load {r.get('LoadStatus')} (run {r.get('RunId')}, "
                  f"retries {r.get('Retries') or 0}): {r.get('ErrorMessage') or 'no error text'}")
        out.setdefault(key, Event("load_failed", r["ConfigId"], key, detail, r.get("LoggedAt")))
    return list(out.values())


def _evaluations(rows: Iterable[dict[str, Any]]) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """Quality rows grouped per checked run: ``(config_id, load_id, rows)``, oldest first."""
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        runs.setdefault((r["ConfigId"], r.get("RunId") or ""), []).append(r)
    ordered = sorted(runs.items(), key=lambda kv: min(to_utc(r["CheckedAt"]) for r in kv[1]))
    return [(cid, group[0].get("LoadId") or run, group) for (cid, run), group in ordered]


def _line(r: dict[str, Any]) -> str:
    return f"- {r['CheckName']}" + (f" {r['Field']}" if r.get("Field") else "") + f": {r['Message']}"


def _change(r: dict[str, Any]) -> str:
    return (json.loads(r.get("Detail") or "{}").get("change") or "") + ":" + str(r.get("Field"))


def events_from_quality(rows: Iterable[dict[str, Any]]) -> list[Event]:
    """Quality failures, warnings and schema drift from ``api_quality_results`` rows.

    * ``quality_failed``: a run with a failed ``fail`` check, keyed by its ``LoadId`` (the
      retries of a refused load are one incident);
    * ``quality_warned`` / ``schema_drift``: a run whose failed ``warn`` checks (drift) are
      not all failing in the source's previous checked run: a condition that persists
      over many loads is one incident, one that ends and comes back is a new one.
    """
    out: dict[str, Event] = {}
    previous: dict[tuple[str, str], set[str]] = {}
    for cid, load_id, group in _evaluations(rows):
        at = max(to_utc(r["CheckedAt"]) for r in group)
        failed = [r for r in group if not r["Passed"] and r["Severity"] == "fail"]
        if failed:
            key = f"quality_failed:{cid}:{load_id}"
            out.setdefault(key, Event("quality_failed", cid, key, "\n".join(
                [f"{group[0].get('LoadType') or ''} load {load_id}: the load is FAILED_QUALITY"]
                + [_line(r) for r in failed]), at))
        for kind, pick in (("quality_warned", lambda r: r["CheckName"] != "schema_drift"),
                           ("schema_drift", lambda r: r["CheckName"] == "schema_drift")):
            if not any(pick(r) for r in group):
                continue  # this run did not judge it: the previous state stands
            hits = [r for r in group if pick(r) and not r["Passed"] and r["Severity"] != "fail"]
            now = {_change(r) if kind == "schema_drift" else f"{r['CheckName']}:{r.get('Field')}"
                   for r in hits}
            if now - previous.get((kind, cid), set()):
                key = f"{kind}:{cid}:{load_id}"
                out.setdefault(key, Event(kind, cid, key, "\n".join(
                    [f"{group[0].get('LoadType') or ''} load {load_id}:"]
                    + [_line(r) for r in hits]), at))
            previous[(kind, cid)] = now
    return list(out.values())


def events_from_sla(statuses: Iterable[Any]) -> list[Event]:
    """A missed SLA, once per source and deadline."""
    return [Event("sla_missed", s.config_id, f"sla_missed:{s.config_id}:{iso(s.deadline)}",
                  s.message, s.deadline) for s in statuses if not s.met]


def events_from_freshness(items: Iterable[Any]) -> list[Event]:
    """A stale source, keyed by its newest row: one message until new data lands."""
    out = []
    for f in items:
        if not f.stale:
            continue
        key = f"stale:{f.config_id}:{iso(f.newest) if f.newest else 'never'}"
        out.append(Event("stale", f.config_id, key, f"{f.target}: {f.reason}"))
    return out


def events_from_incidents(incidents: Iterable[Any], down_after: int = 2) -> list[Event]:
    """Down (an outage of at least ``down_after`` failed checks) and up (its end)."""
    out = []
    for i in incidents:
        if i.failed_checks < down_after:
            continue
        down_key = f"down:{i.config_id}:{iso(i.started_at)}"
        out.append(Event("down", i.config_id, down_key,
                         f"{i.failed_checks} consecutive failed checks since {iso(i.started_at)}; "
                         f"last error: {i.last_error or 'n/a'}", i.started_at))
        if i.ended_at is not None:
            minutes = (i.ended_at - i.started_at).total_seconds() / 60
            out.append(Event("up", i.config_id, f"up:{i.config_id}:{iso(i.started_at)}",
                             f"answering again after {minutes:.1f} min ({i.failed_checks} failed "
                             "checks)", i.ended_at, requires=down_key))
    return out


def collect_events(queries: Any, config: NotificationConfig, now: dt.datetime,
                   days: int = 1) -> list[Event]:
    """Every event ``restlake notify`` judges at ``now``: failed loads and quality events of
    the last ``days``, stale sources, missed SLAs and outages."""
    now = to_utc(now)
    events = events_from_audit(queries.audit_since(now - dt.timedelta(days=days)))
    events += events_from_freshness(queries.freshness(now=now))
    events += outage_events(queries, now, config.down_after)
    events += quality_events(queries, now, days=days)
    return events


#: ``restlake notify`` forgets a key sent longer ago than this once no event of the run has
#: it (every event it can still tell is judged in each run: failed loads of the last days,
#: stale sources, outages that ended within :data:`OUTAGE_NEWS`).
FORGET_AFTER = dt.timedelta(days=90)

#: How long after its end an outage is still told (its "down", when that was never sent,
#: and its "up"): an outage that ended before is history, not news.
OUTAGE_NEWS = dt.timedelta(days=30)


def outage_events(queries: Any, now: dt.datetime, down_after: int = 2,
                  config_ids: Optional[list[str]] = None) -> list[Event]:
    """Down and up events of the sources' outages as of ``now`` (``restlake notify`` and the
    scheduler): :meth:`framework.ops.queries.Queries.incidents`, so an outage's key stays
    its first failed check however long it lasts, and a check after ``now`` (a clock behind
    the log's) does not end it. Outages that ended more than :data:`OUTAGE_NEWS` ago are
    left out."""
    now = to_utc(now)
    recent = [i for i in queries.incidents(config_ids, now=now)
              if i.ended_at is None or i.ended_at >= now - OUTAGE_NEWS]
    return events_from_incidents(recent, down_after)


# ------------------------------------------------------------------ channels
def _retrying(retries: int, backoff_s: float) -> tenacity.Retrying:
    return tenacity.Retrying(stop=tenacity.stop_after_attempt(retries + 1),
                             wait=tenacity.wait_exponential(multiplier=backoff_s, max=30),
                             retry=tenacity.retry_if_exception_type(_Retry), reraise=True)


class _Retry(Exception):
    pass


def _post_json(url: str, payload: dict[str, Any], timeout_s: float, retries: int,
               backoff_s: float, what: str) -> None:
    def attempt() -> None:
        try:
            resp = requests.post(url, json=payload, timeout=timeout_s)
        except requests.RequestException as exc:
            raise _Retry(f"{type(exc).__name__}") from None
        if resp.status_code == 429 or resp.status_code >= 500:
            raise _Retry(f"HTTP {resp.status_code}")
        if resp.status_code >= 400:
            raise NotifyError(f"{what} refused the message: HTTP {resp.status_code} "
                              f"{redact(resp.text[:200])}")

    try:
        _retrying(retries, backoff_s)(attempt)
    except _Retry as exc:
        raise NotifyError(f"{what} failed after {retries + 1} attempts: {redact(exc)}") from None


def send_webhook(cfg: WebhookConfig, subject: str, text: str) -> None:
    """Slack-compatible incoming webhook: ``{"text": ...}`` (Mattermost, Teams' Slack mode...)."""
    url = resolve(cfg.url, field="notifications.webhook.url") if is_reference(cfg.url) else cfg.url
    _post_json(url, {"text": slack_escape(text), "username": "restlake"}, cfg.timeout_s,
               cfg.retries, cfg.backoff_s, "webhook")


def slack_escape(text: str) -> str:
    """Slack's escaping of message text: ``&``, ``<`` and ``>`` as entities, so API text
    cannot form a link (``<https://...|click>``) or a mention (``<!channel>``)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def send_telegram(cfg: TelegramConfig, subject: str, text: str) -> None:
    """Telegram Bot API ``sendMessage`` (``api_base`` may point at a local stand-in)."""
    token = resolve(cfg.bot_token, field="notifications.telegram.bot_token")
    url = f"{cfg.api_base.rstrip('/')}/bot{token}/sendMessage"
    _post_json(url, {"chat_id": cfg.chat_id, "text": text, "disable_web_page_preview": True},
               cfg.timeout_s, cfg.retries, cfg.backoff_s, "telegram")


def send_email(cfg: EmailConfig, subject: str, text: str) -> None:
    """SMTP, with STARTTLS (default), implicit TLS (``tls: ssl``) or none (local relays)."""
    msg = EmailMessage()
    msg["Subject"], msg["From"], msg["To"] = subject, cfg.sender, ", ".join(cfg.to)
    msg.set_content(text)
    context = ssl.create_default_context()
    try:
        if cfg.tls == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_s,
                                                  context=context)
        else:
            smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s)
        with smtp:
            if cfg.tls == "starttls":
                smtp.starttls(context=context)
            if cfg.username and cfg.password:
                smtp.login(cfg.username, resolve(cfg.password, field="notifications.email.password"))
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise NotifyError(f"email via {cfg.host}:{cfg.port} failed: {type(exc).__name__}: "
                          f"{redact(exc)[:200]}") from None


# --------------------------------------------------------------------- state
class NotificationState:
    """Keys of incidents already notified, in a small JSON file (atomic rewrite).

    Notifiers that run at once (the loads of one run finishing together, ``restlake
    notify`` next to ``restlake run``) share the file: :meth:`held` serializes them.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.sent: dict[str, str] = self._read()

    def _read(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        try:
            return dict(json.loads(self.path.read_text(encoding="utf-8")).get("sent", {}))
        except (ValueError, AttributeError):
            log.warning("notification state %s is unreadable; starting afresh", self.path)
            return {}

    def __contains__(self, key: str) -> bool:
        return key in self.sent

    def mark(self, key: str, at: dt.datetime) -> None:
        self.sent[key] = iso(at) or ""

    def forget(self, before: dt.datetime, keep: set[str]) -> None:
        """Drop the keys sent before ``before``, but those in ``keep`` (still told)."""
        for key, at in list(self.sent.items()):
            try:
                when = parse_iso(at) if at else None
            except ValueError:
                when = None
            if key not in keep and (when is None or when < before):
                del self.sent[key]

    @contextmanager
    def held(self) -> Iterator["NotificationState"]:
        """Hold the file's lock (another holder, thread or process, waits), with the keys
        it holds now, and save on the way out: a notifier that read the file before
        another one sent would send that incident again, and its save would drop the
        other's keys."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:  # a file system without locks: notify, unguarded
                log.warning("%s cannot be locked (%s): notifiers running at once may send an "
                            "incident twice", self.path, exc)
            self.sent.update(self._read())
            yield self
            self.save()
        finally:
            os.close(fd)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".state-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"sent": self.sent}, fh, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    def __repr__(self) -> str:
        return f"NotificationState({self.path}: {len(self.sent)} incidents)"


@dataclass
class Delivery:
    """What happened to one event."""

    event: Event
    channels: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: str = ""


class Notifier:
    """Sends each new incident once to every configured channel."""

    def __init__(self, config: NotificationConfig, state: NotificationState) -> None:
        self.config, self.state = config, state

    def notify(self, events: Iterable[Event], now: Optional[dt.datetime] = None, *,
               forget_after: Optional[dt.timedelta] = None) -> list[Delivery]:
        """Send the events not sent before: one message each, or one digest when more than
        ``digest_after`` are new.

        Args:
            forget_after: ``events`` are every event that can still be told (``restlake
                notify``): keys sent longer ago than this that are not among them are
                dropped from the state file, which otherwise grows for ever.
        """
        now = now or dt.datetime.now(dt.timezone.utc)
        out = []
        with self.state.held():
            due: list[Delivery] = []
            due_keys: set[str] = set()
            for event in events:
                d = Delivery(event)
                out.append(d)
                if event.kind not in self.config.events:
                    d.skipped = "event kind not enabled"
                    continue
                if event.key in self.state:
                    d.skipped = "already notified"
                    continue
                if event.requires and event.requires not in self.state \
                        and event.requires not in due_keys:
                    d.skipped = f"{event.requires} was never notified"
                    continue
                due.append(d)
                due_keys.add(event.key)
            if len(due) > self.config.digest_after:
                self._send_digest(due, now)
            else:
                for d in due:
                    event = d.event
                    if event.requires and event.requires not in self.state:  # its down failed
                        d.skipped = f"{event.requires} was never notified"
                        continue
                    d.channels, d.errors = self._send(*build_message(event), event.key)
                    if d.channels:
                        self.state.mark(event.key, now)
            if forget_after is not None:
                told = {e.key for e in (d.event for d in out)}
                self.state.forget(now - forget_after, keep=told)
        return out

    def _send(self, subject: str, text: str, what: str) -> tuple[list[str], list[str]]:
        senders = {"webhook": send_webhook, "email": send_email, "telegram": send_telegram}
        channels, errors = [], []
        for name in self.config.channels:
            try:
                senders[name](getattr(self.config, name), subject, text)
                channels.append(name)
            except RestlakeError as exc:  # NotifyError, SecretError
                errors.append(f"{name}: {exc}")
                log.warning("notification %s via %s failed: %s", what, name, exc)
        return channels, errors

    def _send_digest(self, due: list[Delivery], now: dt.datetime) -> None:
        subject, text = build_digest([d.event for d in due])
        channels, errors = self._send(subject, text, f"digest of {len(due)} incidents")
        for d in due:
            d.channels, d.errors = list(channels), list(errors)
            if channels:
                self.state.mark(d.event.key, now)


def build_digest(events: list[Event]) -> tuple[str, str]:
    """``(subject, text)`` of one message telling many incidents: how many of each kind,
    then one line each, as many as :data:`TEXT_LIMIT` holds."""
    kinds: dict[str, int] = {}
    for e in events:
        kinds[e.kind] = kinds.get(e.kind, 0) + 1
    counts = ", ".join(f"{n} {_TITLES.get(k, k)}" for k, n in sorted(kinds.items(),
                                                                    key=lambda kv: -kv[1]))
    subject = printable(f"[restlake] {len(events)} incidents: {counts}", newlines=False)
    lines = [subject]
    size = len(subject)
    for i, e in enumerate(events):
        first = (e.detail or "").strip().split("\n", 1)[0]
        line = printable(redact(f"- {e.config_id}: {_TITLES.get(e.kind, e.kind)}: {first}"),
                         newlines=False)[:200]
        if size + len(line) + 1 > TEXT_LIMIT - 80:
            lines.append(f"... and {len(events) - i} more (restlake notify --dry-run lists them)")
            break
        lines.append(line)
        size += len(line) + 1
    return subject, "\n".join(lines)


# ------------------------------------------------------------------- wiring
NOTIFICATIONS_ENV = "RESTLAKE_NOTIFICATIONS"
STATE_ENV = "RESTLAKE_NOTIFY_STATE"


def state_path(warehouse: Any) -> Path:
    """``RESTLAKE_NOTIFY_STATE``, else ``<warehouse>/_ops/...``, else ``~/.restlake/...``."""
    explicit = os.environ.get(STATE_ENV)
    if explicit:
        return Path(explicit)
    root = getattr(warehouse, "root", None)
    return (Path(root) if root is not None else Path.home() / ".restlake") / STATE_FILE


def _configured() -> Optional[NotificationConfig]:
    path = os.environ.get(NOTIFICATIONS_ENV)
    return load_notifications(path) if path else None


def quality_events(queries: Any, now: Optional[dt.datetime] = None, days: int = 1,
                   history_days: int = 30, config_ids: Optional[list[str]] = None,
                   checks: bool = True, sla: bool = True) -> list[Event]:
    """Events of the last ``days`` from the warehouse: quality failures, warnings, drift,
    missed SLAs (read through :class:`framework.ops.queries.Queries`, no JVM).

    Warnings and drift are judged against ``history_days`` of results, so a condition
    that began before the window and still holds is not a new incident.

    Args:
        config_ids: only these sources (default: all).
        checks: the events of the checks' results (failures, warnings, drift).
        sla: the sources' ``freshness_sla`` judged at ``now``.
    """
    now = to_utc(now or dt.datetime.now(dt.timezone.utc))
    events: list[Event] = []
    if checks:
        rows = queries.quality_results(config_ids,
                                       since=now - dt.timedelta(days=max(days, history_days)))
        since = now - dt.timedelta(days=days)
        events += [e for e in events_from_quality(rows) if e.at is None or to_utc(e.at) >= since]
    if sla:
        rows = queries.control_rows(config_ids)
        events += events_from_sla(queries.sla_statuses(rows, now))
    return events


def notify_quality(warehouse: Any, catalog: str, config_id: str,
                   spark_factory: Optional[Any] = None) -> list[Delivery]:
    """Tell on-call about a load's quality failures, new warnings and drift at once.

    A no-op unless ``RESTLAKE_NOTIFICATIONS`` names a YAML file with a ``notifications:``
    block. Reads the source's recent quality rows (a warning that persists since an
    earlier load was already notified). Never raises.
    """
    try:
        config = _configured()
        if config is None:
            return []
        from framework.lake.reader import TableReader
        from framework.ops.queries import Queries

        queries = Queries(TableReader(warehouse, spark_factory=spark_factory), catalog)
        return Notifier(config, NotificationState(state_path(warehouse))).notify(
            quality_events(queries, config_ids=[config_id], days=1, sla=False))
    except Exception as exc:  # noqa: BLE001
        log.warning("could not send the quality notification: %s",
                    redact(f"{type(exc).__name__}: {exc}"))
        return []


def notify_load_finished(warehouse: Any, audit: dict[str, Any]) -> list[Delivery]:
    """Tell on-call about a FAILED/PARTIAL load as soon as it finishes.

    A no-op unless ``RESTLAKE_NOTIFICATIONS`` names a YAML file with a ``notifications:``
    block. Never raises: a notification problem must not change a load's result.
    """
    path = os.environ.get(NOTIFICATIONS_ENV)
    if not path or audit.get("LoadStatus") not in ("FAILED", "PARTIAL"):
        return []
    try:
        config = load_notifications(path)
        if config is None:
            return []
        return Notifier(config, NotificationState(state_path(warehouse))).notify(
            events_from_audit([audit]))
    except Exception as exc:  # noqa: BLE001
        log.warning("could not send the load notification: %s", redact(f"{type(exc).__name__}: {exc}"))
        return []
