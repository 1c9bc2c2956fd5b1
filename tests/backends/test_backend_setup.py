"""RELIABILITY row C12 and configuration: lazy SDK imports, ``from_env``, a safe repr, given clients."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from backend_kit import FAST, PROVIDERS, Greeter, backend, fault_url, reply, run
from loopback_faults import Canned, anthropic_message, openai_completion

from looplet import ConfigError, LoopConfig
from looplet.backends.anthropic import AnthropicBackend, AsyncAnthropicBackend
from looplet.backends.env import PLACEHOLDER_KEY, display_url, read_env
from looplet.backends.openai import AsyncOpenAIBackend, OpenAIBackend

SRC = Path(__file__).resolve().parents[2] / "src"
CLASSES = {"openai": OpenAIBackend, "anthropic": AnthropicBackend}


def _python(code: str, *, isolated: bool = False) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter; `isolated` hides site-packages (so no SDK is installed)."""
    flags = ["-I", "-S"] if isolated else []
    prelude = f"import sys; sys.path.insert(0, {str(SRC)!r});" if isolated else ""
    return subprocess.run(
        [sys.executable, *flags, "-c", prelude + code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_importing_looplet_imports_no_sdk() -> None:
    code = (
        "import sys, looplet, looplet.backends, looplet.testing;"
        "from looplet import composable_loop, LLMError;"
        "print(sorted(m for m in ('openai', 'anthropic', 'httpx', 'httpx2') if m in sys.modules))"
    )
    out = _python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_missing_sdk_is_one_config_error_naming_the_extra(provider: str) -> None:
    cls = "OpenAIBackend" if provider == "openai" else "AnthropicBackend"
    code = (
        "import looplet\n"
        "from looplet import ConfigError\n"
        "try:\n"
        f"    getattr(looplet, {cls!r})('m', api_key='k')\n"
        "except ConfigError as exc:\n"
        "    print('ConfigError:', exc)\n"
    )
    out = _python(code, isolated=True)
    assert out.returncode == 0, out.stderr
    assert f'pip install "looplet[{provider}]"' in out.stdout


@pytest.mark.parametrize("provider", PROVIDERS)
def test_from_env_with_nothing_set_names_the_variables(provider: str) -> None:
    prefix = provider.upper()
    with pytest.raises(ConfigError) as caught:
        CLASSES[provider].from_env(model="m")
    assert f"{prefix}_API_KEY" in str(caught.value) and f"{prefix}_BASE_URL" in str(caught.value)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_from_env_without_a_model_names_the_model_variable(
    provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"{provider.upper()}_API_KEY", "k")
    with pytest.raises(ConfigError) as caught:
        CLASSES[provider].from_env()
    assert f"{provider.upper()}_MODEL" in str(caught.value)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_environment_model_wins_over_the_code_default(
    provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = provider.upper()
    monkeypatch.setenv(f"{prefix}_API_KEY", "k")
    assert CLASSES[provider].from_env(model="default-model").model == "default-model"
    monkeypatch.setenv(f"{prefix}_MODEL", "env-model")
    assert CLASSES[provider].from_env(model="default-model").model == "env-model"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_base_url_without_a_key_sends_a_placeholder(
    fault_server: Any, provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = provider.upper()
    monkeypatch.setenv(f"{prefix}_BASE_URL", fault_url(provider, fault_server.url))
    monkeypatch.setenv(f"{prefix}_MODEL", "local-model")
    body = (
        openai_completion(calls=[("c", "done", {"answer": "ok"})], finish="tool_calls")
        if provider == "openai"
        else anthropic_message(calls=[("c", "done", {"answer": "ok"})], stop="tool_use")
    )
    fault_server.queue(Canned(body=body))
    llm = CLASSES[provider].from_env()
    _, result = run(llm, is_async=False, tools=Greeter().tools, task="t")
    assert result.stop_reason == "done"
    headers = fault_server.seen[0].headers
    assert PLACEHOLDER_KEY in headers.get("authorization", "") + headers.get("x-api-key", "")
    assert fault_server.seen[0].body["model"] == "local-model"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_overrides_win_over_the_environment(
    llm_server: Any, provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = provider.upper()
    monkeypatch.setenv(f"{prefix}_API_KEY", "k")
    monkeypatch.setenv(f"{prefix}_BASE_URL", "http://127.0.0.1:9/nowhere")
    llm_server.script(reply(("done", {"answer": "ok"})))
    llm = CLASSES[provider].from_env(model="m", base_url=llm_server.base_url(provider))
    _, result = run(llm, is_async=False, tools=Greeter().tools, task="t")
    assert result.stop_reason == "done" and llm_server.attempts == 1


def test_repr_shows_model_and_url_never_the_key_or_a_url_password() -> None:
    llm = OpenAIBackend(
        "gpt-4o", api_key="sk-secret-0123456789abcdef", base_url="http://user:pw@127.0.0.1:9/v1"
    )
    text = repr(llm)
    assert "gpt-4o" in text and "127.0.0.1:9" in text
    assert "sk-secret" not in text and "pw@" not in text
    assert "sk-secret" not in repr(llm.__dict__.get("_provider"))
    env = read_env("OPENAI", {"OPENAI_API_KEY": "sk-secret-0123456789abcdef", "OPENAI_MODEL": " "})
    assert "sk-secret" not in repr(env) and env.model is None
    assert display_url("https://a:b@host/x") == "https://***@host/x" and display_url(None) is None


@pytest.mark.parametrize(
    ("cls", "sdk_client"),
    [
        (OpenAIBackend, "OpenAI"),
        (AsyncOpenAIBackend, "AsyncOpenAI"),
        (AnthropicBackend, "Anthropic"),
        (AsyncAnthropicBackend, "AsyncAnthropic"),
    ],
)
def test_a_given_client_is_used_with_its_retries_off(llm_server: Any, cls: Any, sdk_client: str) -> None:
    import importlib

    provider = "openai" if "OpenAI" in sdk_client else "anthropic"
    sdk = importlib.import_module(provider)
    client = getattr(sdk, sdk_client)(api_key="k", base_url=llm_server.base_url(provider), max_retries=5)
    llm = cls("m", client=client, retry=FAST)
    assert llm._client.max_retries == 0 and client.max_retries == 5
    llm_server.script({"type": "fail", "status": 500, "times": None})
    _, result = run(llm, is_async=cls.__name__.startswith("Async"), tools=Greeter().tools, task="t")
    assert result.stop_reason == "llm_error"
    assert llm_server.attempts == llm.retry.max_retries + 1  # our layer only: 4, not 4 x 6


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_bad_text_callback_or_model_is_a_config_error(llm_server: Any, provider: str) -> None:
    with pytest.raises(ConfigError):
        CLASSES[provider]("", api_key="k")
    llm = backend(provider, llm_server.base_url(provider))
    config = LoopConfig(llm_options={"on_text_delta": "not callable"})
    _, result = run(llm, is_async=False, tools=Greeter().tools, task="t", config=config)
    assert result.stop_reason == "llm_error" and "on_text_delta" in result.detail


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_failing_text_callback_is_not_retried(llm_server: Any, provider: str) -> None:
    llm_server.script(reply(("done", {"answer": "ok"}), text="Some words first."))

    def broken(delta: str) -> None:
        raise RuntimeError("display crashed")

    llm = backend(provider, llm_server.base_url(provider), stream=True, on_text_delta=broken)
    _, result = run(llm, is_async=False, tools=Greeter().tools, task="t")
    assert result.stop_reason == "llm_error" and "display crashed" in result.detail
    assert llm_server.attempts == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_async_text_callback_is_awaited(llm_server: Any, provider: str) -> None:
    llm_server.script(reply(("done", {"answer": "ok"}), text="Hello there."))
    seen: list[str] = []

    async def show(delta: str) -> None:
        seen.append(delta)

    llm = backend(provider, llm_server.base_url(provider), is_async=True, stream=True, on_text_delta=show)
    _, result = run(llm, is_async=True, tools=Greeter().tools, task="t")
    assert result.stop_reason == "done" and "".join(seen) == "Hello there."


@pytest.mark.parametrize("provider", PROVIDERS)
def test_backends_close_their_connections(llm_server: Any, provider: str) -> None:
    import asyncio

    llm_server.script(reply(("done", {"answer": "ok"}), times=None))
    with backend(provider, llm_server.base_url(provider)) as llm:
        _, result = run(llm, is_async=False, tools=Greeter().tools, task="t")
        assert result.stop_reason == "done"
    assert llm._client.is_closed()

    async def main() -> Any:
        async with backend(provider, llm_server.base_url(provider), is_async=True) as alm:
            await alm.complete(_request())
        return alm

    assert asyncio.run(main())._client.is_closed()


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_response_carries_the_provider_request_id(fault_server: Any, provider: str, stream: bool) -> None:
    from loopback_faults import anthropic_tool_stream, openai_tool_stream

    header = "x-request-id" if provider == "openai" else "request-id"
    if stream:
        make = openai_tool_stream if provider == "openai" else anthropic_tool_stream
        fault_server.queue(Canned(headers={header: "req_ok"}, chunks=make("c", "done", {"answer": "ok"})))
    else:
        body = (
            openai_completion(calls=[("c", "done", {"answer": "ok"})], finish="tool_calls")
            if provider == "openai"
            else anthropic_message(calls=[("c", "done", {"answer": "ok"})], stop="tool_use")
        )
        fault_server.queue(Canned(headers={header: "req_ok"}, body=body))
    response = backend(provider, fault_url(provider, fault_server.url), stream=stream).complete(_request())
    assert response.request_id == "req_ok" and response.model == "fault-model"
    assert [c.tool for c in response.tool_calls] == ["done"] and response.tool_calls[0].args == {
        "answer": "ok"
    }


def _request() -> Any:
    from looplet import LLMRequest, Message

    return LLMRequest(messages=[Message("user", "hi")])


@pytest.mark.parametrize("given", ["argument", "environment"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_malformed_base_url_is_a_config_error_naming_where_it_came_from(
    provider: str, given: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = provider.upper()
    for url, reason in [
        ("not-a-url", "it has no scheme"),
        ("ftp://127.0.0.1/v1", "the scheme 'ftp' is not supported"),
        ("http://:8080/v1", "it names no host"),
    ]:
        if given == "environment":
            monkeypatch.setenv(f"{prefix}_BASE_URL", url)
            with pytest.raises(ConfigError) as caught:
                CLASSES[provider].from_env(model="m")
            where = f"{prefix}_BASE_URL="
        else:
            with pytest.raises(ConfigError) as caught:
                CLASSES[provider]("m", base_url=url)
            where = "base_url="
        assert where in str(caught.value) and reason in str(caught.value)


def test_the_sdk_backends_say_they_call_tools_natively() -> None:
    # the loop then never tells their models to "reply with JSON only"
    from looplet.backends.anthropic import AnthropicBackend, AsyncAnthropicBackend
    from looplet.backends.openai import AsyncOpenAIBackend, OpenAIBackend

    assert all(
        cls.native_tool_calls is True
        for cls in (OpenAIBackend, AsyncOpenAIBackend, AnthropicBackend, AsyncAnthropicBackend)
    )
