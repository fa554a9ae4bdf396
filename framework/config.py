"""Source configs: the YAML contract of restlake, validated once into typed objects.

A YAML file holds one source (a mapping) or several (``sources: [...]``). Keys map
1:1 to control-table columns (see :mod:`control.mapping`). Validation does no I/O
beyond reading the file and the environment (``${ENV}`` must be set), never resolves
a secret, and reports every problem as one line naming the file, the source and the
field::

    conf/gh.yaml: source 'gh_issues': pagination.style: 'links' is not one of none, offset, ...
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Iterable, Literal, Optional, Union

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo,
                      field_validator, model_validator)

from framework import jsonpath, windows
from framework.errors import ConfigError, ConfigErrors, CrossOriginError, config_errors
from framework.http.origins import OriginPolicy, check_https
from framework.secrets import is_reference, reference_problem
from framework.timeutil import parse_duration, to_utc

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
CONFIG_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
#: A run id: ``run-YYYYMMDDTHHMMSS-xxxxxx``, a Databricks job run id, or ``RESTLAKE_RUN_ID``;
#: letters, digits, ``_`` and ``-`` only, so it is always one path segment under staging.
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
#: Characters no field name holds (the rest of Unicode is the API's to choose).
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")

LOAD_TYPES = ("FULL_LOAD", "INCREMENTAL")
SCHEMA_MODES = ("rescue", "evolve", "fail")
FREQUENCIES = ("once", "hourly", "daily", "weekly", "monthly")
READ_ONLY_METHODS = ("GET", "POST")
MIN_HEALTH_INTERVAL = dt.timedelta(seconds=10)
#: Bounds on config files: a YAML file larger than this, or whose aliases expand to more
#: elements than this, is refused before validation.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_CONFIG_ELEMENTS = 100_000
MAX_BODY_BYTES_CEILING = 1024 ** 3  # limits.max_body_bytes: at most 1 GiB per response
#: A header name is an RFC 9110 token; a value holds no CR, LF or other control character.
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
#: Words that make a header or query parameter name hold a credential (they go in ``auth``),
#: and words that make such a name a paging or ordering value instead (``nextPageKey``).
CREDENTIAL_WORDS = frozenset({
    "authorization", "auth", "token", "key", "apikey", "secret", "password", "passwd", "pwd",
    "signature", "sig", "credential", "credentials", "cookie", "session", "bearer"})
NOT_CREDENTIAL_WORDS = frozenset({
    "page", "next", "cursor", "continuation", "sort", "partition", "primary", "idempotency",
    "cache", "group", "foreign"})

Scalar = Union[str, int, float, bool, None]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def _secret_ref(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a secret reference, got {type(value).__name__}")
    if not is_reference(value):
        raise ValueError("literal secrets are not allowed; use a reference env:NAME, "
                         "file:PATH or databricks:SCOPE/KEY")
    problem = reference_problem(value)
    if problem:
        raise ValueError(problem)
    return value


SecretRef = Annotated[str, Field(min_length=5)]


def _check_secret(value: str | None) -> str | None:
    return None if value is None else _secret_ref(value)


# --------------------------------------------------------------------------- auth
class AuthNone(_Model):
    method: Literal["none"]


class _KeyedAuth(_Model):
    secret: Optional[str] = None
    secrets: Optional[list[str]] = Field(default=None, min_length=1)

    # mode="before": a literal of the wrong type (a numeric token) must not reach a type
    # error, whose message would echo the value.
    @field_validator("secret", mode="before")
    @classmethod
    def _ref(cls, v: Any) -> str | None:
        return _check_secret(v)

    @field_validator("secrets", mode="before")
    @classmethod
    def _refs(cls, v: Any) -> list[str] | None:
        if v is not None and not isinstance(v, list):
            raise ValueError(f"expected a list of secret references, got {type(v).__name__}")
        return None if v is None else [_secret_ref(x) for x in v]

    @model_validator(mode="after")
    def _one_of(self) -> "_KeyedAuth":
        if (self.secret is None) == (self.secrets is None):
            raise ValueError("give exactly one of 'secret' or 'secrets' (a list for key rotation)")
        return self


class AuthBearer(_KeyedAuth):
    method: Literal["bearer"]


class AuthApiKey(_KeyedAuth):
    method: Literal["api_key"]
    header: Optional[str] = None
    query: Optional[str] = None

    @field_validator("header")
    @classmethod
    def _header(cls, v: str | None) -> str | None:
        return None if v is None else _header_name(v)

    @model_validator(mode="after")
    def _where(self) -> "AuthApiKey":
        if self.header and self.query:
            raise ValueError("give 'header' or 'query', not both")
        return self


class AuthApiToken(_KeyedAuth):
    method: Literal["api_token"]
    header: str = "Authorization"
    prefix: str = "Api-Token"

    @field_validator("header")
    @classmethod
    def _header(cls, v: str) -> str:
        return _header_name(v)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return _header_value(v)


class AuthBasic(_Model):
    method: Literal["basic"]
    username: str = Field(min_length=1)
    password: str

    @field_validator("password", mode="before")
    @classmethod
    def _ref(cls, v: Any) -> str:
        return _secret_ref(v)


class AuthOAuth2(_Model):
    method: Literal["oauth2_client_credentials"]
    token_url: str
    client_id: str = Field(min_length=1)
    client_secret: str
    scopes: list[str] = Field(default_factory=list)
    audience: Optional[str] = None
    client_auth: Literal["body", "basic"] = "body"

    @field_validator("client_secret", mode="before")
    @classmethod
    def _ref(cls, v: Any) -> str:
        return _secret_ref(v)

    @field_validator("token_url")
    @classmethod
    def _url(cls, v: str) -> str:
        # The template is kept (the control row never holds ${ENV} values); its expansion
        # must be https, or http on a loopback host.
        windows.check_placeholders(v)
        try:
            check_https(_check_url(_expand(v)), field="auth.token_url")
        except ConfigError as exc:
            raise ValueError(exc.message.removeprefix("auth.token_url: ")) from None
        return v


AuthConfig = Annotated[
    Union[AuthNone, AuthBearer, AuthApiKey, AuthApiToken, AuthBasic, AuthOAuth2],
    Field(discriminator="method"),
]
AUTH_METHODS = ("none", "bearer", "api_key", "api_token", "basic", "oauth2_client_credentials")


# --------------------------------------------------------------------- pagination
def _path(v: str | None) -> str | None:
    if v is not None:
        jsonpath.compile_path(v)
    return v


class _Paging(_Model):
    max_pages: Optional[int] = Field(default=None, ge=1)
    #: the options naming a query parameter the style sets on the requests it sends
    param_options: ClassVar[tuple[str, ...]] = ()

    def query_params(self) -> dict[str, str]:
        """The query parameters the style sets, by name -> the option that names them."""
        names = ((getattr(self, option), option) for option in self.param_options)
        return {name: option for name, option in names if name}

    @model_validator(mode="after")
    def _paths(self) -> "_Paging":
        for name in type(self).model_fields:
            if name.endswith("_path"):
                try:
                    _path(getattr(self, name))
                except jsonpath.PathError as exc:
                    raise _FieldError(f"pagination.{name}", str(exc)) from None
        return self


class PagingNone(_Paging):
    style: Literal["none"]


class PagingOffset(_Paging):
    style: Literal["offset"]
    param_options: ClassVar[tuple[str, ...]] = ("offset_param", "limit_param")
    offset_param: str = "offset"
    limit_param: str = "limit"
    page_size: int = Field(default=100, ge=1, le=100_000)
    total_path: Optional[str] = None


class PagingPage(_Paging):
    style: Literal["page"]
    param_options: ClassVar[tuple[str, ...]] = ("page_param", "size_param")
    page_param: str = "page"
    size_param: Optional[str] = None
    page_size: Optional[int] = Field(default=None, ge=1, le=100_000)
    start: int = Field(default=1, ge=0)
    total_pages_path: Optional[str] = None


class PagingCursor(_Paging):
    style: Literal["cursor"]
    param_options: ClassVar[tuple[str, ...]] = ("cursor_param",)
    cursor_param: str = "cursor"
    cursor_path: str = "next_cursor"


class PagingNextKey(_Paging):
    style: Literal["next_key"]
    param_options: ClassVar[tuple[str, ...]] = ("key_param",)
    key_param: str = "nextPageKey"
    key_path: str = "nextPageKey"
    exclusive: bool = True


class PagingLinkHeader(_Paging):
    style: Literal["link_header"]


class PagingHasMore(_Paging):
    style: Literal["has_more"]
    param_options: ClassVar[tuple[str, ...]] = ("cursor_param",)
    has_more_path: str = "has_more"
    cursor_param: str = "starting_after"
    id_field: str = "id"


class PagingBodyToken(_Paging):
    style: Literal["body_token"]
    token_path: str
    body_field: str


PaginationConfig = Annotated[
    Union[PagingNone, PagingOffset, PagingPage, PagingCursor, PagingNextKey, PagingLinkHeader,
          PagingHasMore, PagingBodyToken],
    Field(discriminator="style"),
]
PAGINATION_STYLES = ("none", "offset", "page", "cursor", "next_key", "link_header", "has_more",
                     "body_token")


# ------------------------------------------------------------------- webhooks
SIGNATURE_SCHEMES = ("github", "stripe", "hmac_sha256")
#: The header each signature scheme reads unless ``webhook.header`` names another.
SIGNATURE_HEADERS = {"github": "X-Hub-Signature-256", "stripe": "Stripe-Signature",
                     "hmac_sha256": "X-Signature"}


class Webhook(_Model):
    """A push source: events are POSTed to ``/hooks/<config_id>`` and verified by signature.

    Defaults live here: the signature header of the scheme, Stripe's 300 s tolerance,
    a 1 MiB body limit, a flush every 1,000 events or 5 seconds, and room for 50,000
    spooled events waiting for the flusher before senders are asked to retry (503).
    """

    signature: Literal["github", "stripe", "hmac_sha256"]
    secret: str
    previous_secret: Optional[str] = None  # rotation: accepted too, until previous_secret_until
    previous_secret_until: Optional[dt.datetime] = None
    header: Optional[str] = None
    tolerance_s: int = Field(default=300, ge=1, le=86_400)
    event_id_path: Optional[str] = None
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    batch_events: int = Field(default=1000, ge=1, le=1_000_000)
    batch_seconds: float = Field(default=5.0, gt=0, le=3600)
    queue_events: int = Field(default=50_000, ge=1, le=10_000_000)

    @field_validator("secret", mode="before")
    @classmethod
    def _ref(cls, v: Any) -> str:
        return _secret_ref(v)

    @field_validator("previous_secret", mode="before")
    @classmethod
    def _previous_ref(cls, v: Any) -> str | None:
        return None if v is None else _secret_ref(v)

    @field_validator("previous_secret_until", mode="before")
    @classmethod
    def _until(cls, v: Any) -> Any:
        return None if v is None else to_utc(v)

    @model_validator(mode="after")
    def _rotation(self) -> "Webhook":
        if self.previous_secret_until is not None and self.previous_secret is None:
            raise _FieldError("webhook.previous_secret_until", "needs previous_secret (the secret it "
                              "ends the overlap of)")
        if self.previous_secret is not None and self.previous_secret == self.secret:
            raise _FieldError("webhook.previous_secret", "is the same reference as secret; name where "
                              "the previous value is kept (e.g. env:HOOK_SECRET_OLD)")
        return self

    @field_validator("header")
    @classmethod
    def _header(cls, v: str | None) -> str | None:
        return None if v is None else _header_name(v)

    @field_validator("event_id_path")
    @classmethod
    def _event_path(cls, v: str | None) -> str | None:
        return _path(v)

    @property
    def signature_header(self) -> str:
        """The header that carries the signature."""
        return self.header or SIGNATURE_HEADERS[self.signature]


# ------------------------------------------------------------------- detail fan-out
#: The placeholder of a detail endpoint that each record's id replaces.
DETAIL_ID = "{id}"


class Detail(_Model):
    """Detail fan-out: each listed record is completed by ``GET endpoint`` with its id.

    Same auth, retry policy, rate budget and origin rules as the list requests; at most
    ``concurrency`` detail requests of one window are in flight at once.
    """

    endpoint: str
    id_field: str = "id"
    concurrency: int = Field(default=8, ge=1, le=64)
    data_path: str = "$"
    mode: Literal["merge", "replace"] = "merge"
    on_404: Literal["fail", "quarantine"] = "fail"

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if v.count(DETAIL_ID) != 1:
            raise ValueError(f"must hold the placeholder {DETAIL_ID} exactly once (where each "
                             f"record's id goes), e.g. https://api.example.com/items/{DETAIL_ID}")
        rest = v.replace(DETAIL_ID, "0")
        windows.check_placeholders(rest)
        _check_url(_expand(windows.render(rest, None)))
        _no_literal_credentials_in_url(rest)
        return v

    @field_validator("id_field")
    @classmethod
    def _id_field(cls, v: str) -> str:
        return field_name(v)

    @field_validator("data_path")
    @classmethod
    def _data_path(cls, v: str) -> str:
        jsonpath.compile_path(v)
        return v


# ------------------------------------------------------------------- the rest
class Target(_Model):
    catalog: str
    schema_: str = Field(alias="schema")
    table: str

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("catalog", "schema_", "table")
    @classmethod
    def _ident(cls, v: str) -> str:
        return check_identifier(v)

    @property
    def name(self) -> str:
        """``catalog.schema.table``."""
        return f"{self.catalog}.{self.schema_}.{self.table}"


def hhmm(v: Any) -> str:
    """A ``HH:MM`` time of day (UTC), as YAML may give it.

    Raises:
        ValueError: ``v`` is not a ``HH:MM`` time.
    """
    if isinstance(v, int) and not isinstance(v, bool):  # YAML 1.1 reads 02:00 as base-60 int
        v = f"{v // 60:02d}:{v % 60:02d}"
    if not isinstance(v, str) or not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", v.strip()):
        raise ValueError(f"{v!r} is not a HH:MM time (e.g. '02:00')")
    return v.strip()


class Schedule(_Model):
    time: str = "00:00"
    frequency: str = "daily"

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, v: Any) -> str:
        return hhmm(v)

    @field_validator("frequency")
    @classmethod
    def _freq(cls, v: str) -> str:
        low = v.lower()
        if low in FREQUENCIES:
            return low
        try:
            windows.parse_window(v.upper())
        except ValueError:
            raise ValueError(f"{v!r} is not one of {', '.join(FREQUENCIES)} or an ISO-8601 "
                             "duration (e.g. PT15M)") from None
        return v.upper()


class HealthCheck(_Model):
    """How the scheduler probes a source (``health:``); absent means these defaults.

    ``interval`` is an ISO-8601 duration of fixed length (``PT1M``, ``PT30S``, at least
    ``PT10S``); ``expected_status`` lists the statuses that mean up (default: any 2xx);
    ``timeout_s`` defaults to the source's ``limits.timeout_s``.
    """

    interval: str = "PT5M"
    expected_status: Optional[list[int]] = Field(default=None, min_length=1)
    timeout_s: Optional[float] = Field(default=None, gt=0, le=600)
    enabled: bool = True

    @field_validator("interval")
    @classmethod
    def _interval(cls, v: str) -> str:
        try:
            step = parse_duration(v.upper())
        except ValueError:
            raise ValueError(f"{v!r} is not an ISO-8601 duration (e.g. PT1M, PT30S)") from None
        if not isinstance(step, dt.timedelta):
            raise ValueError(f"{v!r} is not a fixed-length duration (use PT…/P…D, not months or "
                             "years)")
        if step < MIN_HEALTH_INTERVAL:
            raise ValueError(f"{v!r} is shorter than PT10S")
        return v.upper()

    @field_validator("expected_status")
    @classmethod
    def _statuses(cls, v: Optional[list[int]]) -> Optional[list[int]]:
        if v is None:
            return v
        for status in v:
            if not 100 <= status <= 599:
                raise ValueError(f"{status} is not an HTTP status (100-599)")
        return sorted(set(v))

    @property
    def every(self) -> dt.timedelta:
        """``interval`` as a timedelta."""
        step = parse_duration(self.interval)
        assert isinstance(step, dt.timedelta)
        return step


class Limits(_Model):
    timeout_s: float = Field(default=30.0, gt=0, le=3600)
    # A response's head, and its body, as a whole (timeout_s bounds each read): a slower one
    # is retried.
    body_timeout_s: float = Field(default=300.0, gt=0, le=86400)
    max_retries: int = Field(default=5, ge=0, le=50)
    requests_per_second: Optional[float] = Field(default=None, gt=0)
    concurrency: int = Field(default=4, ge=1, le=64)
    max_body_bytes: int = Field(default=100 * 1024 * 1024, ge=1024, le=MAX_BODY_BYTES_CEILING)
    backoff_base_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=30.0, ge=0)
    # The longest Retry-After (429/503) waited for; a longer one fails the window at once.
    retry_after_max_s: float = Field(default=300.0, ge=0, le=86400)
    lease_s: int = Field(default=3600, ge=30)
    windows_per_commit: int = Field(default=8, ge=1, le=1000)
    # Long windows of incremental loads: commit every N pages with a checkpoint (None: whole windows).
    pages_per_commit: Optional[int] = Field(default=None, ge=1, le=1_000_000)
    # offset/page styles with a reported total: fetch a window's remaining pages concurrently
    concurrent_pages: bool = True

    @model_validator(mode="after")
    def _backoff(self) -> "Limits":
        if self.backoff_base_s > self.backoff_max_s:
            raise _FieldError("limits.backoff_base_s", f"{self.backoff_base_s:g} is above "
                              f"backoff_max_s {self.backoff_max_s:g}")
        return self


# -------------------------------------------------------------------- quality
SEVERITIES = ("warn", "fail")
Severity = Literal["warn", "fail"]


class _Check(_Model):
    """One quality check: its ``value`` (threshold, fields...) and, optionally, its severity.

    ``min_rows: 100`` is short for ``min_rows: {value: 100}``; the long form can set
    ``severity`` (else the block's ``severity`` applies).
    """

    DICT_VALUED: ClassVar[bool] = False  # value is a mapping: a bare mapping is the short form
    severity: Optional[Severity] = None

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, v: Any) -> Any:
        if not isinstance(v, dict) or "value" in v:
            return v if isinstance(v, dict) else {"value": v}
        if not cls.DICT_VALUED:
            return v
        if "severity" in v:
            raise ValueError("with 'severity:', give the fields under 'value:' "
                             "(e.g. {value: {email: 5}, severity: fail})")
        return {"value": v}


def field_name(name: Any) -> str:
    """``name`` as a record field's name: any text of 1-255 characters (spaces, commas,
    dots, symbols and letters of any script included), none of them a control character.

    Raises:
        ValueError: why it is not one, quoting it.
    """
    why = ("not text" if not isinstance(name, str) else "empty" if not name.strip() else
           "longer than 255 characters" if len(name) > 255 else
           "a control character" if _CONTROL_CHARS.search(name) else None)
    if why:
        raise ValueError(f"{name!r} is not a valid field name ({why})")
    return name


def _field_names(names: Any) -> Any:
    for name in names or ():
        field_name(name)
    return names


def field_list(value: Any) -> Any:
    """The field names of a ``primary_key`` / ``required_fields`` value: a list as it is,
    or a text: comma-separated names (``id, first name``, each stripped), or the bracket
    form, a JSON list (``["last, first", "id"]``) for names holding a comma, a double quote
    or spaces at either end. The control row's ``PrimaryColumn`` and ``RequiredFields``
    hold the same text (:func:`field_list_text`). Anything else is returned as it is, for
    the model to report.

    Raises:
        ValueError: a text starting with ``[`` that is not a JSON list of texts.
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as exc:
            names, why = None, f"{exc.msg} at character {exc.pos}"
        else:
            why = "expected texts in brackets"
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{value!r} is not a bracket list of field names ({why}); write "
                             'e.g. ["last, first", "id"], each name in double quotes')
        return names
    return [p.strip() for p in text.split(",") if p.strip()]


def field_list_text(names: Iterable[str]) -> Optional[str]:
    """``names`` as one text that :func:`field_list` reads back: comma-separated where no
    name needs quoting (as the control columns always held them), else the bracket form;
    ``None`` for no names."""
    names = list(names)
    if not names:
        return None
    plain = all("," not in n and '"' not in n and n == n.strip() and not n.startswith("[")
                for n in names)
    return ",".join(names) if plain else json.dumps(names, ensure_ascii=False,
                                                      separators=(",", ":"))


def _own_columns(names: Iterable[str]) -> None:
    """Each of ``names`` (record fields that a load looks up) takes a column of its own:
    not one restlake writes itself (the record's field would go to ``_rescued_data`` and
    the load would read restlake's column), nor one another name of the list takes (Delta's
    column names ignore case; ``a.b`` and ``a_b`` are one column).

    Raises:
        ValueError: naming both names, or the name and the column.
    """
    from framework.schema import RESERVED, column_name

    reserved = {c.lower() for c in RESERVED}
    seen: dict[str, str] = {}
    for name in names:
        col = column_name(name)
        if col.lower() in reserved:
            raise ValueError(f"{name!r} would be column {col}, which restlake writes itself "
                             "(the record's own field goes to _rescued_data)")
        first = seen.setdefault(col.lower(), name)
        if first != name:
            raise ValueError(f"{first!r} and {name!r} are one column ({column_name(first)}): "
                             "name each field once")


class MinRows(_Check):
    value: int = Field(default=1, ge=0)


class MaxRowDropPct(_Check):
    value: float = Field(default=10.0, ge=0, le=100)


class MaxSpikePct(_Check):
    value: float = Field(default=100.0, gt=0)
    baseline: Literal["windows", "loads"] = "windows"
    loads: int = Field(default=5, ge=1, le=100)  # baseline loads: the last N successful loads


class FieldList(_Check):
    value: list[str] = Field(min_length=1)

    @field_validator("value")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        return _field_names(v)


class NullPct(_Check):
    DICT_VALUED: ClassVar[bool] = True
    value: dict[str, Annotated[float, Field(ge=0, le=100)]] = Field(min_length=1)

    @field_validator("value")
    @classmethod
    def _names(cls, v: dict[str, float]) -> dict[str, float]:
        _field_names(list(v))
        return v


class AcceptedValues(_Check):
    DICT_VALUED: ClassVar[bool] = True
    value: dict[str, Annotated[list[Scalar], Field(min_length=1)]] = Field(min_length=1)

    @field_validator("value")
    @classmethod
    def _names(cls, v: dict[str, list[Scalar]]) -> dict[str, list[Scalar]]:
        _field_names(list(v))
        return v


class FreshnessSla(_Check):
    value: str

    @field_validator("value", mode="before")
    @classmethod
    def _time(cls, v: Any) -> str:
        return hhmm(v)


class Quality(_Model):
    """The ``quality:`` block of a source: checks and their default severity.

    Checks on the rows about to be written run before the target commit (a failing
    ``fail`` check refuses the commit); ``unique`` runs on the target after it;
    ``freshness_sla`` is judged by the clock, outside loads.
    """

    severity: Severity = "warn"
    min_rows: Optional[MinRows] = None
    max_row_drop_pct: Optional[MaxRowDropPct] = None
    max_spike_pct: Optional[MaxSpikePct] = None
    max_null_pct: Optional[NullPct] = None
    not_null: Optional[FieldList] = None
    accepted_values: Optional[AcceptedValues] = None
    unique: Optional[FieldList] = None
    freshness_sla: Optional[FreshnessSla] = None

    BEFORE_COMMIT: ClassVar[tuple[str, ...]] = ("min_rows", "max_row_drop_pct", "max_spike_pct",
                                                "max_null_pct", "not_null", "accepted_values")
    AFTER_COMMIT: ClassVar[tuple[str, ...]] = ("unique",)

    def checks(self, names: Iterable[str]) -> list[tuple[str, Any, str]]:
        """``(name, check, severity)`` of the configured checks among ``names``, in that order."""
        out = []
        for name in names:
            check = getattr(self, name)
            if check is not None:
                out.append((name, check, check.severity or self.severity))
        return out

    @property
    def gates_commit(self) -> bool:
        """True when a check must see the load's rows before they are committed."""
        return bool(self.checks(self.BEFORE_COMMIT))


QUALITY_CHECKS: dict[str, type[BaseModel]] = {
    "min_rows": MinRows, "max_row_drop_pct": MaxRowDropPct, "max_spike_pct": MaxSpikePct,
    "max_null_pct": NullPct, "not_null": FieldList, "accepted_values": AcceptedValues,
    "unique": FieldList, "freshness_sla": FreshnessSla,
}


class SourceConfig(_Model):
    """One source, as written in YAML. Defaults live here and nowhere else."""

    config_id: str
    api_name: str = Field(min_length=1)
    source_system: Optional[str] = None
    endpoint: Optional[str] = None  # required, except for a push source (webhook)
    allowed_hosts: list[str] = Field(default_factory=list)
    method: str = "GET"
    allow_post: bool = False
    params: dict[str, Union[Scalar, list[Scalar]]] = Field(default_factory=dict)
    body: Optional[Union[dict[str, Any], list[Any]]] = None
    headers: dict[str, str] = Field(default_factory=dict)
    auth: AuthConfig = Field(default_factory=lambda: AuthNone(method="none"))
    pagination: PaginationConfig = Field(default_factory=lambda: PagingNone(style="none"))
    data_path: str = "$"
    parser: str = "records"
    parser_options: dict[str, Any] = Field(default_factory=dict)
    primary_key: list[str] = Field(default_factory=list)
    delta_column: bool = False
    cursor_field: Optional[str] = None
    load_start: Optional[dt.datetime] = None  # required, except for a push source
    load_end: Optional[dt.datetime] = None
    window: str = "none"
    lookback: str = "PT0S"
    target: Target
    schedule: Schedule = Field(default_factory=Schedule)
    limits: Limits = Field(default_factory=Limits)
    required_fields: list[str] = Field(default_factory=list)
    schema_mode: Literal["rescue", "evolve", "fail"] = "rescue"
    owner: Optional[str] = None
    enabled: bool = True
    archive: bool = False
    completeness: Literal["off", "record", "strict"] = "record"
    description: Optional[str] = None
    health: Optional[HealthCheck] = None  # None: HealthCheck's defaults
    webhook: Optional[Webhook] = None
    quality: Optional[Quality] = None
    detail: Optional[Detail] = None

    @field_validator("config_id")
    @classmethod
    def _cid(cls, v: str) -> str:
        if not CONFIG_ID.match(v):
            raise ValueError(f"{v!r} may only hold letters, digits, '_' and '-' (1-128 chars)")
        return v

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is None:
            return v
        # Kept as written: ${ENV} is expanded at request time (framework.secrets.expand_env),
        # so the control row and the audit hold the template, never the value.
        windows.check_placeholders(v)
        _check_url(_expand(windows.render(v, None)))
        _no_literal_credentials_in_url(v)
        return v

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        up = v.upper()
        if up not in READ_ONLY_METHODS:
            raise ValueError(f"{v!r} is not allowed: restlake is read-only (GET, or POST with "
                             "allow_post: true)")
        return up

    @field_validator("params", "body", "headers")
    @classmethod
    def _placeholders(cls, v: Any) -> Any:
        windows.check_placeholders(v)
        if _env_anywhere(v):
            raise ValueError("${ENV} is expanded only in endpoint and auth.token_url; "
                             "credentials go in auth")
        return v

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            _header_name(name)
            try:
                _header_value(value)
            except ValueError as exc:
                raise _FieldError(f"headers.{name}", str(exc)) from None
            if _is_credential_name(name):
                raise _FieldError(f"headers.{name}", _CREDENTIAL_HINT)
        return v

    @field_validator("params")
    @classmethod
    def _params(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name in v:
            if _is_credential_name(name):
                raise _FieldError(f"params.{name}", _CREDENTIAL_HINT)
        return v

    @field_validator("data_path")
    @classmethod
    def _data_path(cls, v: str) -> str:
        jsonpath.compile_path(v)
        return v

    @field_validator("parser")
    @classmethod
    def _parser(cls, v: str) -> str:
        known = _known_parsers()
        if v not in known:
            raise ValueError(f"{v!r} is not one of {', '.join(known)}"
                             + _did_you_mean(v, known))
        return v

    @field_validator("primary_key", "required_fields", mode="before")
    @classmethod
    def _names(cls, v: Any, info: ValidationInfo) -> Any:
        v = field_list(v)
        if isinstance(v, list):
            _field_names(v)
            if info.field_name == "primary_key":  # the MERGE joins on their columns
                _own_columns(v)
        return v

    @field_validator("cursor_field")
    @classmethod
    def _cursor(cls, v: str | None) -> str | None:
        if v is not None:
            _own_columns([field_name(v)])
        return v

    @field_validator("load_start", "load_end", mode="before")
    @classmethod
    def _ts(cls, v: Any) -> Any:
        if v is None:
            return v
        return to_utc(v)

    @field_validator("window")
    @classmethod
    def _window(cls, v: str) -> str:
        windows.parse_window(v)
        return v

    @field_validator("lookback")
    @classmethod
    def _lookback(cls, v: str) -> str:
        parse_duration(v)
        return v

    @model_validator(mode="after")
    def _cross(self) -> "SourceConfig":
        if self.webhook is not None:
            return self._push_source()
        for name in ("endpoint", "load_start"):
            if getattr(self, name) is None:
                raise _FieldError(name, "is required (only a push source, with webhook:, has "
                                  "none)")
        if self.load_end is not None and self.load_end <= self.load_start:
            raise _FieldError("load_end", f"{self.load_end.isoformat()} is not after load_start "
                              f"{self.load_start.isoformat()}")
        if self.method == "POST" and not self.allow_post:
            raise _FieldError("method", "POST needs allow_post: true (read-only policy: only "
                              "search endpoints that read with POST)")
        if self.body is not None and self.method != "POST":
            raise _FieldError("body", "a body is only sent with method: POST")
        if self.pagination.style == "body_token" and self.method != "POST":
            raise _FieldError("pagination.style", "body_token needs method: POST")
        owned = self.pagination.query_params()
        for name in _query_names(self.endpoint):
            if name in owned:
                # sent twice (the endpoint's and the page's): the API reads one of them
                raise _FieldError("endpoint", f"its query sets {name!r}, which pagination style "
                                  f"{self.pagination.style} sets on every page "
                                  f"(pagination.{owned[name]}): remove it from the endpoint")
        if self.detail is not None and self.archive:
            raise _FieldError("detail", "cannot be combined with archive: true (the archive "
                              "keeps the list pages, and a replay would rebuild the rows "
                              "without their details)")
        if self.limits.pages_per_commit and self.archive:
            raise _FieldError("limits.pages_per_commit", "cannot be combined with archive: true "
                              "(archived pages are written per whole window)")
        try:
            policy = OriginPolicy(_expand(windows.render(self.endpoint, None)), self.allowed_hosts)
        except ConfigError as exc:
            raise _FieldError(exc.field or "allowed_hosts",
                              exc.message.removeprefix(f"{exc.field}: ")) from None
        if self.detail is not None:
            try:
                policy.check(_expand(windows.render(self.detail.endpoint.replace(DETAIL_ID, "0"),
                                                    None)), via="detail request")
            except CrossOriginError as exc:
                raise _FieldError("detail.endpoint", str(exc)) from None
        if self.quality is not None and self.quality.gates_commit and self.limits.pages_per_commit:
            raise _FieldError("limits.pages_per_commit", "cannot be combined with quality checks "
                              "that run before the commit (" + ", ".join(
                                  n for n, _, _ in self.quality.checks(Quality.BEFORE_COMMIT))
                              + "): they need every row of the load before its one commit")
        spike = self.quality.max_spike_pct if self.quality is not None else None
        if spike is not None and spike.baseline == "windows" and windows.parse_window(self.window) is None:
            raise _FieldError("quality.max_spike_pct.baseline", "'windows' compares the windows of "
                              "a load, but window is 'none' (one window per load); use "
                              "baseline: loads")
        if self.delta_column and not self.primary_key:
            raise _FieldError("primary_key", "is required when delta_column is true "
                              "(incremental loads MERGE on it)")
        return self

    def _push_source(self) -> "SourceConfig":
        """A push source is loaded by the receiver: the keys that drive pulling mean nothing."""
        pull_only = ("endpoint", "method", "allow_post", "params", "body", "headers", "auth",
                     "pagination", "load_start", "load_end", "window", "lookback", "schedule",
                     "delta_column", "completeness", "archive", "health", "quality", "detail")
        fields = type(self).model_fields
        for name in pull_only:
            # A control row carries every column, so a default value is not a mistake.
            if getattr(self, name) != fields[name].get_default(call_default_factory=True):
                raise _FieldError(name, "is not used by a push source (webhook:): events are "
                                  "POSTed to /hooks/<config_id>; remove it")
        return self

    @property
    def is_push(self) -> bool:
        """True for a push source (``webhook:``): loaded by the receiver, never by ``run``."""
        return self.webhook is not None

    # ------------------------------------------------------------ derived views
    @property
    def health_check(self) -> HealthCheck:
        """The ``health:`` block, or its defaults when the config has none."""
        return self.health or HealthCheck()

    @property
    def system(self) -> str:
        """``source_system``, defaulting to the lower-cased ``api_name``."""
        return self.source_system or re.sub(r"[^a-z0-9_]+", "_", self.api_name.lower()).strip("_")

    def origin_policy(self) -> OriginPolicy:
        """Where this source's credentials may go: its endpoint's origin and ``allowed_hosts``
        (``${ENV}`` expanded now)."""
        from framework.secrets import expand_env

        return OriginPolicy(expand_env(windows.render(self.endpoint, None)), self.allowed_hosts)

    def __repr__(self) -> str:
        return f"SourceConfig({self.config_id} -> {self.target.name})"


class _FieldError(ValueError):
    """A cross-field error that names its field (turned into a ConfigError)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


# ------------------------------------------------------------------- helpers
def check_identifier(name: Any) -> str:
    """Validate a catalog/schema/table/column identifier.

    Raises:
        ValueError: ``name`` is not ``[A-Za-z_][A-Za-z0-9_]*``.
    """
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a valid identifier (letters, digits and _, not "
                         "starting with a digit)")
    return name


def check_run_id(value: Any, *, field: str = "run_id") -> str:
    """Validate a run id (``restlake replay --run-id``, ``RESTLAKE_RUN_ID``).

    Raises:
        ConfigError: naming ``field``: not letters, digits, ``_`` and ``-`` (no ``/``, no
            ``..``), or longer than 128 characters.
    """
    if not isinstance(value, str) or not RUN_ID.match(value):
        raise ConfigError(f"{str(value)[:80]!r} is not a run id (letters, digits, '_' and '-', "
                          "starting with a letter or digit, at most 128 characters; e.g. "
                          "run-20240105T020000-1a2b3c)", field=field)
    return value


def quote_identifier(name: str) -> str:
    """Back-quote a validated identifier for use in SQL text."""
    return f"`{check_identifier(name)}`"


def _expand(text: str) -> str:
    # an empty value is taken as none: an endpoint or token URL built from it is no URL,
    # and the error should name the variable (a deployment that passes it unset)
    try:
        return windows.expand_env(text, {k: v for k, v in os.environ.items() if v})
    except KeyError as exc:
        raise ValueError(f"environment variable {exc.args[0]} is not set or empty "
                         f"(used as ${{{exc.args[0]}}})") from None


def _check_url(url: str) -> str:
    if not re.match(r"^https?://[^/\s]+", url):
        raise ValueError(f"{url!r} is not an http(s) URL")
    if _CONTROL.search(url):
        raise ValueError("holds a control character (CR, LF, NUL, ...)")
    return url


_CREDENTIAL_HINT = ("looks like a credential, and a literal value here would be stored in the "
                    "control table and sent wherever the request goes: use auth instead "
                    "(bearer, api_key with header or query, api_token with header and prefix, "
                    "basic, oauth2_client_credentials), whose secrets are references")


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]


def _is_credential_name(name: str) -> bool:
    """True for header/parameter names that carry credentials (``X-API-Key``, ``access_token``,
    ``Authorization``), false for paging ones (``nextPageKey``, ``page_token``)."""
    words = _words(str(name))
    joined = "".join(words)
    if not set(words) & NOT_CREDENTIAL_WORDS and (set(words) & CREDENTIAL_WORDS or joined in (
            "apikey", "xapikey", "accesstoken", "xapitoken", "authtoken", "clientsecret")):
        return True
    return False


def _env_anywhere(value: Any) -> bool:
    if isinstance(value, str):
        return bool(windows.env_names(value))
    if isinstance(value, dict):
        return any(_env_anywhere(k) or _env_anywhere(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_env_anywhere(v) for v in value)
    return False


def _query_names(url: str) -> list[str]:
    """The (decoded) names of the query parameters of ``url``."""
    from urllib.parse import parse_qsl, urlsplit

    return [name for name, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)]


def _no_literal_credentials_in_url(url: str) -> None:
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError("holds user info (user:password@): credentials go in auth (method: "
                         "basic), never in the URL")
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if _is_credential_name(name) and not windows.env_names(value):
            raise ValueError(f"query parameter {name!r} {_CREDENTIAL_HINT} (or ${{ENV}}, which "
                             "is expanded at request time and masked)")


def _header_name(name: str) -> str:
    if not isinstance(name, str) or not HEADER_NAME.match(name):
        raise ValueError(f"{name!r} is not a valid header name (letters, digits and "
                         "!#$%&'*+.^_`|~- only; no spaces, CR or LF)")
    return name


def _header_value(value: str) -> str:
    if isinstance(value, str) and _CONTROL.search(value):
        raise ValueError("holds a control character (CR, LF, NUL, ...): a header value is "
                         "one line")
    return value


def _known_parsers() -> list[str]:
    try:
        from parsers import known_parsers
    except ImportError:  # parsers not importable: validate against the built-ins
        return ["records", "flatten"]
    return list(known_parsers())


def _did_you_mean(word: str, options: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


_DISCRIMINATED = {"auth": ("method", AUTH_METHODS), "pagination": ("style", PAGINATION_STYLES)}
_UNION_MODELS: dict[str, dict[str, type[BaseModel]]] = {
    "auth": {"none": AuthNone, "bearer": AuthBearer, "api_key": AuthApiKey,
             "api_token": AuthApiToken, "basic": AuthBasic,
             "oauth2_client_credentials": AuthOAuth2},
    "pagination": {"none": PagingNone, "offset": PagingOffset, "page": PagingPage,
                   "cursor": PagingCursor, "next_key": PagingNextKey,
                   "link_header": PagingLinkHeader, "has_more": PagingHasMore,
                   "body_token": PagingBodyToken},
}
_NESTED = {"target": Target, "schedule": Schedule, "limits": Limits, "health": HealthCheck,
           "webhook": Webhook, "quality": Quality, "detail": Detail}


def _fields_of(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _format_error(err: dict[str, Any]) -> tuple[str, str]:
    """Turn one pydantic error into (dotted field, message)."""
    loc = [str(p) for p in err.get("loc", ())]
    kind = err.get("type", "")
    # Discriminated unions put the tag in the location: drop it from the field path.
    if len(loc) >= 2 and loc[0] in _DISCRIMINATED and loc[1] in _UNION_MODELS[loc[0]]:
        tag = loc[1]
        loc = [loc[0]] + loc[2:]
        parent: type[BaseModel] | None = _UNION_MODELS[loc[0]][tag]
    elif loc and loc[0] == "quality" and len(loc) > 2 and loc[1] in QUALITY_CHECKS:
        parent = QUALITY_CHECKS[loc[1]]
    elif loc and loc[0] in _NESTED:
        parent = _NESTED[loc[0]]
    else:
        parent = SourceConfig
    field = ".".join(p if p != "schema_" else "schema" for p in loc) or "(source)"
    value = err.get("input")
    if kind == "extra_forbidden":
        options = _fields_of(parent) if parent else []
        return field, f"unknown key{_did_you_mean(loc[-1], options)}"
    if kind == "missing":
        return field, "is required"
    if kind == "union_tag_invalid":
        key, options = _DISCRIMINATED.get(loc[0], ("", ()))
        tag = err.get("ctx", {}).get("tag", value)
        return f"{field}.{key}", f"'{tag}' is not one of {', '.join(options)}" + _did_you_mean(
            tag, options)
    if kind == "union_tag_not_found":
        key, options = _DISCRIMINATED.get(loc[0], ("", ()))
        return f"{field}.{key}", f"is required (one of {', '.join(options)})"
    if loc[0] == "params" and len(loc) > 2:
        # A union of scalar types: pydantic adds a type label (e.g. 'constrained-str') per member.
        shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
        return (f"params.{loc[1]}", f"expected text, a number, a boolean or null, or a list of "
                f"them (got {shown})")
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return field, f"{value!r} is not one of {expected.replace(chr(39), '')}"
    message = str(err.get("msg", "invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix):]
    if kind in ("string_type", "int_type", "int_parsing", "float_type", "float_parsing",
                "bool_type", "bool_parsing", "dict_type", "list_type", "datetime_type",
                "model_type"):
        shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
        message = f"{message} (got {shown})"
    return field, message


def _errors_of(exc: ValidationError, *, file: str | None, source: str | None) -> list[ConfigError]:
    """One :class:`ConfigError` per invalid field of ``exc`` (field-specific ones first; a
    field pydantic reports twice, as for a union, once)."""
    errors = exc.errors(include_url=False)
    # Prefer a field-specific error over the model-level ones.
    errors.sort(key=lambda e: 0 if e.get("loc") else 1)
    out: dict[Any, ConfigError] = {}
    for err in errors:
        ctx_error = err.get("ctx", {}).get("error")
        if isinstance(ctx_error, _FieldError):
            field, message = ctx_error.field, str(ctx_error)
        else:
            field, message = _format_error(err)
        out.setdefault(field, ConfigError(message, file=file, source=source, field=field))
    return list(out.values())


def _raise_all(errors: list[ConfigError]) -> None:
    if len(errors) == 1:
        raise errors[0] from None
    raise ConfigErrors(errors) from None


def parse_source(raw: Any, *, file: str | None = None, index: int | None = None) -> SourceConfig:
    """Validate one source mapping.

    Raises:
        ConfigError: naming the file, the source and the field.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping of config keys, got {type(raw).__name__}",
                          file=file, source=f"#{index}" if index is not None else None)
    cid = raw.get("config_id")
    source = str(cid) if cid is not None else (f"#{index}" if index is not None else None)
    try:
        return SourceConfig.model_validate(raw)
    except ValidationError as exc:
        _raise_all(_errors_of(exc, file=file, source=source))
        raise  # pragma: no cover - _raise_all always raises


def safe_yaml(text: str, *, file: str = "<text>") -> Any:
    """Parse a YAML config document within bounds.

    Refuses text above :data:`MAX_CONFIG_BYTES`, and documents whose aliases expand to
    more than :data:`MAX_CONFIG_ELEMENTS` elements (a few hundred bytes of nested
    aliases can stand for millions of elements, which validation and JSON would expand).

    Raises:
        ConfigError: naming the file.
    """
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"file is {size} bytes; a config file holds at most "
                          f"{MAX_CONFIG_BYTES} bytes (split it)", file=file)
    try:
        doc = yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        field = _field_at(text, mark) if isinstance(exc, (_BadScalar, _DuplicateKey)) else None
        note = f" ({exc.note})" if isinstance(exc, _DuplicateKey) else ""
        raise ConfigError(f"{problem}{where}{note}", file=file, field=field) from None
    if _elements(doc, MAX_CONFIG_ELEMENTS) > MAX_CONFIG_ELEMENTS:
        raise ConfigError(f"the YAML expands to more than {MAX_CONFIG_ELEMENTS} elements "
                          "(aliases repeated inside aliases?); refusing it", file=file)
    return doc


class _BadScalar(yaml.constructor.ConstructorError):
    """A scalar YAML resolved to a type whose value it cannot hold (``2024-13-01``)."""


class _DuplicateKey(yaml.constructor.ConstructorError):
    """A mapping writes one key twice (PyYAML would keep the last value, silently)."""


class _ConfigLoader(yaml.SafeLoader):
    """The safe loader, whose out-of-range dates are YAML errors with their position
    (PyYAML's own raise a bare ``ValueError``: no file, line or field), and which refuses
    a key written twice in one mapping: PyYAML keeps the last value, so an edit that adds
    a second ``table:`` below the first would load into another table without a word. A
    merge key (``<<: *defaults``) may still be overridden by the mapping's own keys."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._keys_checked: set[int] = set()

    def flatten_mapping(self, node: Any) -> None:
        # Checked before the first flattening, which puts the merged keys into the node.
        if id(node) not in self._keys_checked:
            self._keys_checked.add(id(node))
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(
                        key_node, yaml.ScalarNode):
                    continue
                key = self.construct_object(key_node)
                first = seen.setdefault(key, key_node)
                if first is not key_node:
                    raise _DuplicateKey(
                        None, None, f"duplicate key {key_node.value!r}",
                        key_node.start_mark,
                        f"also at line {first.start_mark.line + 1}: each key is written once")
        super().flatten_mapping(node)

    def construct_yaml_timestamp(self, node: Any) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except (ValueError, OverflowError) as exc:
            raise _BadScalar(None, None, f"invalid date or time {node.value!r}: {exc}",
                             node.start_mark) from None


_ConfigLoader.add_constructor("tag:yaml.org,2002:timestamp", _ConfigLoader.construct_yaml_timestamp)


def _field_at(text: str, mark: Any) -> Optional[str]:
    """The key path (``load_start``, ``sources[1].load_end``) of the value, or the key,
    at ``mark``."""
    if mark is None:
        return None

    def walk(node: Any, path: str) -> Optional[str]:
        if node.start_mark.index == mark.index and isinstance(node, yaml.ScalarNode):
            return path or None
        if isinstance(node, yaml.MappingNode):
            items = [(f"{path}.{k.value}" if path else str(k.value), v) for k, v in node.value]
            for (sub, _), (key, _) in zip(items, node.value):
                if key.start_mark.index == mark.index:
                    return sub
        elif isinstance(node, yaml.SequenceNode):
            items = [(f"{path}[{i}]", v) for i, v in enumerate(node.value)]
        else:
            return None
        for sub, child in items:
            found = walk(child, sub)
            if found:
                return found
        return None

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    return walk(root, "") if root is not None else None


def _elements(doc: Any, limit: int) -> int:
    """Elements of ``doc`` counted as expanded (a shared alias counts each time it is
    used); stops counting past ``limit``."""
    count, stack = 0, [doc]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return count


def load_text(text: str, *, file: str = "<text>") -> list[SourceConfig]:
    """Parse YAML text holding one source or ``sources: [...]``.

    Raises:
        ConfigError: the YAML is malformed or a source is invalid.
    """
    doc = safe_yaml(text, file=file)
    return parse_document(doc, file=file)


def parse_document(doc: Any, *, file: str = "<text>") -> list[SourceConfig]:
    """Validate a parsed document (YAML or JSON) holding one source or ``sources: [...]``.

    Raises:
        ConfigError: a source is invalid, naming ``file``, the source and the field.
    """
    if doc is None:
        raise ConfigError("file is empty", file=file)
    if isinstance(doc, dict) and "sources" in doc:
        extra = sorted(set(doc) - {"sources", "notifications"})
        if extra:
            raise ConfigError(f"unknown top-level key '{extra[0]}' (a file holds one source or "
                              "'sources:')", file=file)
        items = doc["sources"]
        if not isinstance(items, list) or not items:
            raise ConfigError("sources: expected a non-empty list of sources", file=file)
    else:
        items = [doc]
    out, errors = [], []
    for i, item in enumerate(items):  # every invalid source is reported, not only the first
        try:
            out.append(parse_source(item, file=file, index=i))
        except ConfigError as exc:
            errors += config_errors(exc)
    if errors:
        _raise_all(errors)
    seen: set[str] = set()
    for cfg in out:
        if cfg.config_id in seen:
            raise ConfigError("config_id is used twice in this file", file=file,
                              source=cfg.config_id, field="config_id")
        seen.add(cfg.config_id)
    return out


def load_file(path: str | Path) -> list[SourceConfig]:
    """Read and validate one YAML config file (see :func:`load_text`)."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_CONFIG_BYTES:  # before reading it
            raise ConfigError(f"file is {size} bytes; a config file holds at most "
                              f"{MAX_CONFIG_BYTES} bytes (split it)", file=str(path))
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror}", file=str(path)) from None
    return load_text(text, file=str(path))


def config_files(paths: Any) -> list[Path]:
    """The YAML files named by ``paths``: files, folders (their ``*.yaml`` / ``*.yml``, sorted;
    subfolders are not read), or comma-separated lists of either (one widget or task
    parameter can name several).

    A file named twice (a folder and a glob over it) is read once, where it came first.

    Raises:
        ConfigError: a folder holds no config file (a wrong ``--conf-dir`` would otherwise
            upsert nothing and succeed).
    """
    out: list[Path] = []
    seen: set[Path] = set()

    def add(files: list[Path]) -> None:
        for f in files:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                out.append(f)

    for raw in paths:
        for part in (p.strip() for p in str(raw).split(",")):
            if not part:
                continue
            path = Path(part)
            if path.is_dir():
                found = sorted(p for p in path.iterdir()
                               if p.suffix.lower() in (".yaml", ".yml") and not p.is_dir())
                if not found:
                    raise ConfigError("no config files (*.yaml, *.yml) in this folder",
                                      file=str(path))
                add(found)
            else:
                add([path])
    return out


def shared_targets(configs: Iterable[SourceConfig], others: Iterable[SourceConfig] = ()
                   ) -> dict[str, str]:
    """Sources that would write the same rows: one target table and one ``source_system``.

    A full load replaces its ``source_system``'s rows of its target (the others' are kept),
    so of two such sources each full load deletes the other's rows.

    Args:
        configs: the sources to judge.
        others: sources they must not clash with (e.g. the control table's other rows);
            one with the ConfigId of one of ``configs`` is that config's older version.

    Returns:
        for each config of ``configs`` that clashes, why (naming the others and the table).
    """
    configs = list(configs)
    ids = {c.config_id for c in configs}
    writers: dict[tuple[str, str], list[str]] = {}
    for cfg in configs + [o for o in others if o.config_id not in ids]:
        key = (cfg.target.name.lower(), cfg.system)
        if cfg.config_id not in writers.setdefault(key, []):
            writers[key].append(cfg.config_id)
    out: dict[str, str] = {}
    for cfg in configs:
        rest = [c for c in writers[(cfg.target.name.lower(), cfg.system)] if c != cfg.config_id]
        if rest:
            out[cfg.config_id] = (
                f"target {cfg.target.name} with source_system '{cfg.system}' is also written by "
                f"config {', '.join(rest)}: a full load of one would delete the other's rows "
                "(give each its own target table or source_system)")
    return out


def load_files(paths: list[str | Path]) -> list[SourceConfig]:
    """Validate several files; a config_id used in two files is an error."""
    out: list[SourceConfig] = []
    where: dict[str, str] = {}
    for path in paths:
        for cfg in load_file(path):
            if cfg.config_id in where:
                raise ConfigError(f"config_id is also defined in {where[cfg.config_id]}",
                                  file=str(path), source=cfg.config_id, field="config_id")
            where[cfg.config_id] = str(path)
            out.append(cfg)
    return out
