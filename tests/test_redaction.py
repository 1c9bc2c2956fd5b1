"""Redaction (RELIABILITY I1, I2): one mechanism for every boundary, over values before encoding."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from looplet import redaction
from looplet.redaction import (
    REDACTED,
    redact_env_values,
    redact_text,
    redact_value,
    register_secret,
    unregister_secret,
)

# A secret with every character that escaping changes: backslash, both quotes, slash, %, +, space, é.
AWKWARD = 'ab\\cd"ef\'gh/ij%kl+mn op-é9'


def escaped_forms(secret: str) -> list[str]:
    """How `secret` looks once escaped by JSON, repr or URL encoding."""
    once = json.dumps(secret)[1:-1]
    return [
        secret,
        once,
        json.dumps(secret, ensure_ascii=False)[1:-1],
        json.dumps(once)[1:-1],
        repr(secret)[1:-1],
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
    ]


@pytest.fixture
def env_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ACME_DB_PASSWORD", AWKWARD)
    return AWKWARD


@pytest.fixture
def registered() -> Iterator[str]:
    secret = "vault-literal-Q7X2Z9"
    register_secret(secret)
    yield secret
    unregister_secret(secret)


# -- literal secrets in every encoding ------------------------------------------------------


@pytest.mark.parametrize("form", range(8))
def test_a_secret_env_value_is_masked_in_each_escaped_form(env_secret: str, form: int) -> None:
    # item 12: a secret with a backslash showed in its JSON-escaped form
    shown = escaped_forms(env_secret)[form]
    for mask in (redact_text, redact_env_values):
        out = mask(f"before {shown} after")
        assert out == f"before {REDACTED} after", (form, out)


def test_escaped_forms_are_masked_inside_encoded_documents(env_secret: str) -> None:
    # the escaped form appears when a value holding the secret is encoded by someone else
    document = json.dumps({"args": {"dsn": f"x {env_secret} y"}, "nested": json.dumps([env_secret])})
    assert env_secret not in redact_text(document)
    for form in escaped_forms(env_secret):
        assert form not in redact_text(document)
        assert form not in redact_text(repr({"k": [env_secret, "it's"]}))


def test_base64_of_a_secret_is_masked_in_basic_and_bearer_shapes(env_secret: str) -> None:
    basic = base64.b64encode(f"svc:{env_secret}".encode()).decode()
    bearer = base64.b64encode(env_secret.encode()).decode()
    urlsafe = base64.urlsafe_b64encode(b"x" + env_secret.encode()).decode()
    for text in (f"Authorization: Basic {basic}", f"Basic {basic}", f"Bearer {bearer}", f"tok {urlsafe}"):
        for mask in (redact_text, redact_env_values):
            out = mask(text)
            assert basic not in out and bearer not in out and urlsafe not in out, out
            assert REDACTED in out
    # the provider boundary masks the whole base64 token, not just the secret's aligned middle
    assert redact_env_values(f"Basic {basic}") == f"Basic {REDACTED}"


def test_registered_secrets_are_masked_like_env_values(registered: str) -> None:
    for form in escaped_forms(registered):
        assert redact_text(f"[{form}]") == f"[{REDACTED}]"
        assert redact_env_values(f"[{form}]") == f"[{REDACTED}]"
    assert redact_value({registered: [registered]}) == {REDACTED: [REDACTED]}
    unregister_secret(registered)
    assert redact_text(registered) == registered
    unregister_secret(registered)  # twice is harmless


@pytest.mark.parametrize("bad", ["", "abc", "   x  ", 12345678])
def test_registering_a_blank_short_or_non_string_secret_is_refused(bad: Any) -> None:
    with pytest.raises(TypeError if not isinstance(bad, str) else ValueError):
        register_secret(bad)


def test_env_values_are_masked_only_when_named_secret_and_long_enough(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SERVICE_CREDENTIAL", "cred-value-123")
    monkeypatch.setenv("MY_PASSWD", "passwd-value-99")
    monkeypatch.setenv("SHORT_TOKEN", "abc1234")
    monkeypatch.setenv("HOME_DIRECTORY_NAME", "ordinary-value-5")
    out = redact_text("cred-value-123 passwd-value-99 abc1234 ordinary-value-5")
    assert out == f"{REDACTED} {REDACTED} abc1234 ordinary-value-5"


def test_a_changed_environment_is_seen_on_the_next_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTATING_API_KEY", "first-value-0001")
    assert redact_text("first-value-0001") == REDACTED
    monkeypatch.setenv("ROTATING_API_KEY", "second-value-0002")
    assert redact_text("first-value-0001 second-value-0002") == f"first-value-0001 {REDACTED}"
    monkeypatch.delenv("ROTATING_API_KEY")
    assert redact_text("second-value-0002") == "second-value-0002"


def test_the_environment_scan_is_built_once_while_nothing_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STABLE_SECRET", "stable-value-777")
    first = redaction._literal_scan()
    for _ in range(3):
        redact_text("x")
        redact_value({"a": ["b"]})
    assert redaction._literal_scan() is first
    register_secret("one-more-secret")
    try:
        assert redaction._literal_scan() is not first
    finally:
        unregister_secret("one-more-secret")


# -- known shapes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, secret, kept",
    [
        ("redis://:pw-123@cache:6379/0", "pw-123", "redis://:"),
        ("postgresql://app:s3cr3t@db/prod", "s3cr3t", "postgresql://app:"),
        ("host=db password=hunter2 user=app", "hunter2", "user=app"),
        ("host=db password='two words' user=app", "two words", "user=app"),
        ("Server=db;Pwd=hunter2;Uid=app", "hunter2", "Uid=app"),
        ("https://x.io/cb?password=hunter2&page=2", "hunter2", "page=2"),
        ("https://x.io/cb?page=2&token=tok-998877&x=1", "tok-998877", "x=1"),
        ("GET /v1?api_key=k-554433 HTTP/1.1", "k-554433", "HTTP/1.1"),
        ("curl -H 'Authorization: Basic dXNlcjpodW50ZXIy' x", "dXNlcjpodW50ZXIy", "curl"),
        ("Authorization: Bearer abc.def.ghi", "abc.def.ghi", "Authorization"),
        ("use Bearer zyxwvutsrqponm for it", "zyxwvutsrqponm", "for it"),
        ("creds Basic dXNlcjpodW50ZXIy here", "dXNlcjpodW50ZXIy", "here"),
        ('{"password": "hu\\"nter2", "user": "app"}', "nter2", '"user": "app"'),
        ("{'db_password': 'x\\'y-secret', 'n': 1}", "y-secret", "'n': 1"),
        ("key sk-ant-api03-abcdefgh!", "api03", "!"),
        ("key sk-proj-abcdefghijklmnop1234", "abcdefghijklmnop", "key"),
        ("aws AKIAABCDEFGHIJKLMNOP", "ABCDEFGHIJKLMNOP", "aws"),
        ("gh ghp_" + "a1" * 15, "a1a1a1", "gh "),
        ("slack xoxb-1234567890-abc", "1234567890", "slack"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig_nature", "eyJzdWIi", "jwt"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\nok", "MIIEow", "ok"),
        ("cut -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk", "b3BlbnNzaC1rZXk", "cut"),
    ],
)
def test_connection_strings_headers_and_token_shapes_are_masked(
    text: str, secret: str, kept: str
) -> None:
    out = redact_text(text)
    assert secret not in out and REDACTED in out and kept in out, out


@pytest.mark.parametrize(
    "text",
    [
        "max_tokens=100 and input_tokens: 5",
        "a task-management-and-planning-tool",
        "see http://host:8080/path and mail me at a@b.example",
        "Basic instructions, basic understanding",
        "the bearer of news",
        '{"token": "hello", "pwd": "/home/app"}',
        "author=Ann sort_key=name",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact_text(text) == text


def test_user_data_shaped_like_a_key_reaches_the_provider_unchanged(
    env_secret: str,
) -> None:
    # I2: only env (and registered) values are masked before the provider
    text = f"my key is sk-proj-abcdefghijklmnop1234 and password=hunter2; env {env_secret}"
    out = redact_env_values(text)
    assert out == f"my key is sk-proj-abcdefghijklmnop1234 and password=hunter2; env {REDACTED}"


# -- structured values ---------------------------------------------------------------------


def test_redact_value_masks_keys_values_and_nested_strings_before_encoding(env_secret: str) -> None:
    value = {
        "args": [1, 2.5, None, True, (f"a {env_secret}", {env_secret: "v"})],
        "set": {f"x{env_secret}"},
        "frozen": frozenset({env_secret}),
        "token": "sk-ant-api03-abcdefgh",
    }
    out = redact_value(value)
    assert out == {
        "args": [1, 2.5, None, True, (f"a {REDACTED}", {REDACTED: "v"})],
        "set": {f"x{REDACTED}"},
        "frozen": frozenset({REDACTED}),
        "token": REDACTED,
    }
    assert value["args"][4][0] == f"a {env_secret}", "the input is not changed"
    for form in escaped_forms(env_secret):
        assert form not in json.dumps(out, default=list)
        assert form not in repr(out)


def test_values_under_secret_named_keys_are_masked_whole() -> None:
    value = {
        "password": "hunter2",
        "DB_PASSWORD": 1234,
        "api-key": "k",
        "access_token": "t",
        "client_secret": "s",
        "nested": {"private_key": "pk"},
        "token": "hello",
        "tokens": 12,
        "pwd": "/home/app",
        "secret": None,
        "is_secret": True,
        "credentials": {"user": "app"},
    }
    assert redact_value(value) == {
        "password": REDACTED,
        "DB_PASSWORD": REDACTED,
        "api-key": REDACTED,
        "access_token": REDACTED,
        "client_secret": REDACTED,
        "nested": {"private_key": REDACTED},
        "token": "hello",
        "tokens": 12,
        "pwd": "/home/app",
        "secret": None,
        "is_secret": True,
        "credentials": {"user": "app"},
    }


def test_keys_that_mask_to_the_same_text_keep_every_value(registered: str) -> None:
    out = redact_value({registered: 1, REDACTED: 2, f"{registered} ": 3, f"{REDACTED} ": 4})
    assert out == {REDACTED: 1, f"{REDACTED}#2": 2, f"{REDACTED} ": 3, f"{REDACTED} #2": 4}


def test_redact_value_survives_cycles_depth_and_odd_objects() -> None:
    loop: dict[str, Any] = {"name": "sk-ant-api03-abcdefgh"}
    loop["self"] = loop
    assert redact_value(loop) == {"name": REDACTED, "self": "$circular"}
    deep: Any = "sk-ant-api03-abcdefgh"
    for _ in range(5000):
        deep = [deep]
    text = json.dumps(redact_value(deep))
    assert "$too_deep" in text and "api03" not in text
    marker = object()
    assert redact_value([marker, b"raw", 3])[0] is marker


def test_importing_looplet_compiles_no_redaction_pattern() -> None:
    code = "import looplet, looplet.redaction as r; print(r._Compiled.shapes is None, r._scan_cache)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "[]"]


def test_an_env_secret_with_undecodable_bytes_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(os.environb, b"ODD_SECRET_TOKEN", b"abc\xff\xfedefgh-123")
    secret = os.environ["ODD_SECRET_TOKEN"]
    encoded = quote(secret.encode("utf-8", "surrogateescape"), safe="")
    assert redact_text(f"x {secret} {encoded}") == f"x {REDACTED} {REDACTED}"
