"""framework.secrets: reference resolution, and masking of secrets in text and logs."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from framework import secrets
from framework.errors import ConfigError, SecretError
from framework.secrets import MASK, is_reference, redact, register, resolve, set_dbutils_provider


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Each test starts with no registered secrets and no dbutils."""
    monkeypatch.setattr(secrets, "_secrets", set())
    yield
    set_dbutils_provider(None)


class FakeDbutils:
    def __init__(self, values: dict[tuple[str, str], str]) -> None:
        self.calls: list[tuple[str, str]] = []

        def get(scope: str, key: str) -> str:
            self.calls.append((scope, key))
            return values[(scope, key)]

        self.secrets = SimpleNamespace(get=get)


# ------------------------------------------------------------------ references
@pytest.mark.parametrize("value,ok", [
    ("env:TOKEN", True), ("file:/run/secrets/t", True), ("databricks:scope/key", True),
    (" env:TOKEN ", True), ("env:", False), ("abc123", False), ("vault:x", False), (None, False),
])
def test_is_reference(value: object, ok: bool) -> None:
    assert is_reference(value) is ok  # type: ignore[arg-type]


def test_env_reference_is_resolved_and_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RL_TEST_TOKEN", "tok-123456")

    assert resolve("env:RL_TEST_TOKEN") == "tok-123456"
    assert redact("sent tok-123456 to the API") == f"sent {MASK} to the API"


def test_file_reference_strips_the_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_text("file-secret-value\n", encoding="utf-8")

    assert resolve(f"file:{path}") == "file-secret-value"
    assert redact("x=file-secret-value") == f"x={MASK}"


def test_databricks_reference_uses_the_dbutils_provider() -> None:
    fake = FakeDbutils({("apis", "client_secret"): "dbx-secret-value"})
    set_dbutils_provider(lambda: fake)

    assert resolve("databricks:apis/client_secret") == "dbx-secret-value"
    assert fake.calls == [("apis", "client_secret")]
    assert MASK in redact("dbx-secret-value")


def test_databricks_failure_names_the_secret_not_the_value() -> None:
    set_dbutils_provider(lambda: FakeDbutils({}))
    with pytest.raises(SecretError, match=r"databricks secret apis/missing is unavailable: KeyError"):
        resolve("databricks:apis/missing", field="auth.client_secret")


def test_databricks_reference_needs_scope_and_key() -> None:
    set_dbutils_provider(lambda: FakeDbutils({}))
    with pytest.raises(SecretError, match="databricks:SCOPE/KEY"):
        resolve("databricks:onlyscope")


def test_missing_env_raises_secret_error_without_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RL_TEST_UNSET", raising=False)
    with pytest.raises(SecretError) as info:
        resolve("env:RL_TEST_UNSET", field="auth.secret")
    assert isinstance(info.value, ConfigError)
    assert info.value.field == "auth.secret"
    assert str(info.value) == "auth.secret: environment variable RL_TEST_UNSET is not set"


def test_malformed_reference_does_not_echo_the_literal() -> None:
    with pytest.raises(SecretError) as info:
        resolve("hunter2-literal")
    assert "hunter2-literal" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="cannot read secret file"):
        resolve(f"file:{tmp_path / 'nope'}")


def test_empty_value_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RL_TEST_EMPTY", "")
    with pytest.raises(SecretError, match="is empty"):
        resolve("env:RL_TEST_EMPTY")


def test_errors_mask_secrets_known_before(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RL_TEST_TOKEN", "tok-abcdef")
    resolve("env:RL_TEST_TOKEN")
    assert str(ConfigError("server said: bad token tok-abcdef")) == f"server said: bad token {MASK}"


# ------------------------------------------------------------------ redact
def test_longer_secrets_are_masked_first() -> None:
    register("abcd")
    register("abcdefgh")
    assert redact("abcdefgh abcd") == f"{MASK} {MASK}"


def test_a_secret_is_masked_as_a_url_carries_it_too() -> None:
    # a key with + / = (base64) travels percent-encoded in a query: ?appid=k%2By%2Fz%3D
    # was not masked in a response URL, a raw archive row or a page checkpoint
    register("sk+Live/Key=42 abc")
    for shown in ("sk%2BLive%2FKey%3D42+abc", "sk%2BLive%2FKey%3D42%20abc",
                  "sk%2bLive%2fKey%3d42%20abc", "sk+Live/Key=42%20abc"):
        text = f"https://api.example.com/x?appid={shown}&b=1"
        assert redact(text, known_only=True) == f"https://api.example.com/x?appid={MASK}&b=1"


def test_very_short_values_are_not_registered() -> None:
    register("abc")
    assert redact("abc") == "abc"


@pytest.mark.parametrize("text,leak", [
    ("GET https://api.example.com/v1/x?api_key=SEKRET1&page=2", "SEKRET1"),
    ("GET https://api.example.com/v1/x?page=2&apikey=SEKRET2", "SEKRET2"),
    ("https://api.example.com/cb?access_token=SEKRET3#frag", "SEKRET3"),
    ("https://svc_user:p4ssw0rd@api.example.com/x", "p4ssw0rd"),
    ("Authorization: Bearer eyJhbGciOi.JIUzI1.Ni", "eyJhbGciOi"),
    ("authorization=Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
    ("Authorization: Api-Token dt0c01.ABC", "dt0c01.ABC"),
    ("headers={'Authorization': 'Bearer tok-in-a-dict'}", "tok-in-a-dict"),
    ('{"Authorization": "Bearer tok-in-json"}', "tok-in-json"),
    ('{"access_token": "at-123", "expires_in": 3600}', "at-123"),
    ('{"client_secret":"cs-456"}', "cs-456"),
    # an API's pre-signed next link: a session token and signatures under prefixed names
    ("https://b.s3.amazonaws.com/k?X-Amz-Security-Token=IQoJb3JpZ2lu&X-Amz-Date=1", "IQoJb3JpZ2lu"),
    ("https://b.s3.amazonaws.com/k?X-Amz-Signature=9f0c1d2e&x=1", "9f0c1d2e"),
    ("https://storage.googleapis.com/b/o?X-Goog-Signature=abc123def", "abc123def"),
    ("https://api.example.com/x?page=2&auth_token=SEKRET4", "SEKRET4"),
])
def test_credential_shapes_are_masked(text: str, leak: str) -> None:
    out = redact(text)
    assert leak not in out and MASK in out


def test_redact_keeps_what_is_not_a_credential() -> None:
    text = "GET https://api.example.com/v1/x?page=2&per_page=100&monkey=1&keys=2 -> 200"
    assert redact(text) == text
    assert redact("https://svc_user:p4ssw0rd@api.example.com/x") == f"https://{MASK}@api.example.com/x"
    assert redact("Authorization: Bearer abc") == f"Authorization: Bearer {MASK}"
    assert redact(None) == ""


def test_log_filter_masks_messages_and_arguments() -> None:
    register("log-secret-42")
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "token %s used", ("log-secret-42",), None)

    assert secrets.RedactingFilter().filter(record)

    assert record.getMessage() == f"token {MASK} used"


def test_install_log_redaction_is_idempotent() -> None:
    logger = logging.getLogger("restlake.test.redaction")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    try:
        secrets.install_log_redaction(logger)
        secrets.install_log_redaction(logger)
        assert sum(isinstance(f, secrets.RedactingFilter) for f in handler.filters) == 1
    finally:
        logger.removeHandler(handler)
