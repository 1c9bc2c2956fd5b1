"""RELIABILITY rows C2, C8, C9 and C11: failures that are never retried, and context-length compaction.

Also INV-6 for the backends: a canary API key never shows up in an error,
a log line, a repr or the run result.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

import pytest
from backend_kit import FAST, MODES, PROVIDERS, Greeter, backend, fault_url, reply, run
from loopback_faults import Canned, anthropic_error, openai_completion, openai_error

from looplet import LLMError, Message
from looplet.backends.anthropic import AnthropicBackend
from looplet.backends.openai import OpenAIBackend

DONE = reply(("done", {"answer": "ok"}))
#: Not shaped like any known key, so only the backend's own masking can catch it.
CANARY = "lp-canary-7f3a9c1e5b2d4f60a8e1"


def _llm_error(result: Any, stop_reason: str = "llm_error") -> LLMError:
    assert result.stop_reason == stop_reason, result.detail
    assert isinstance(result.error, LLMError)
    return result.error


# -- C2: quota and billing ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "behavior"),
    [
        (
            "openai",
            {
                "type": "fail",
                "status": 429,
                "code": "insufficient_quota",
                "message": "You exceeded your quota",
            },
        ),
        ("openai", {"type": "fail", "status": 429, "code": "enforced_spend_limit_reached"}),
        ("openai", {"type": "fail", "status": 402}),
        ("anthropic", {"type": "fail", "status": 402}),
        (
            "anthropic",
            {"type": "fail", "status": 400, "code": "billing_error", "message": "credit balance too low"},
        ),
    ],
    ids=[
        "openai-429-insufficient_quota",
        "openai-429-spend-limit",
        "openai-402",
        "anthropic-402",
        "anthropic-400-billing",
    ],
)
def test_quota_and_billing_errors_are_not_retried(
    llm_server: Any, provider: str, behavior: dict[str, Any]
) -> None:
    llm_server.script(behavior)
    _, result = run(
        backend(provider, llm_server.base_url(provider)), is_async=False, tools=Greeter().tools, task="t"
    )
    error = _llm_error(result)
    assert llm_server.attempts == 1
    assert (error.kind, error.status, error.retriable) == ("quota", behavior["status"], False)
    assert "quota or over a spend limit" in str(error)


def test_an_anthropic_spend_limit_is_read_from_its_error_code(fault_server: Any) -> None:
    body = anthropic_error(
        "You have reached your specified spend limit",
        type="invalid_request_error",
        error_code="enforced_spend_limit_reached",
    )
    fault_server.queue(Canned(400, {"request-id": "req_spend"}, body))
    _, result = run(backend("anthropic", fault_server.url), is_async=False, tools=Greeter().tools, task="t")
    error = _llm_error(result)
    assert fault_server.attempts == 1
    assert (error.kind, error.status, error.request_id) == ("quota", 400, "req_spend")
    assert "enforced_spend_limit_reached" in str(error)


# -- C8: context length ---------------------------------------------------------------------

OVERFLOWS = {
    "openai-400-code": (
        "openai",
        {
            "type": "fail",
            "status": 400,
            "code": "context_length_exceeded",
            "message": "This model's maximum context length is 8 tokens.",
        },
    ),
    "openai-413": ("openai", {"type": "fail", "status": 413}),
    "anthropic-400-too-long": (
        "anthropic",
        {"type": "fail", "status": 400, "message": "prompt is too long: 300 tokens > 100 maximum"},
    ),
    "anthropic-413": ("anthropic", {"type": "fail", "status": 413}),
}


class Compactor:
    """Keeps only the task when the prompt overflows, and notes each overflow it saw."""

    def __init__(self) -> None:
        self.overflows = 0

    def pre_prompt(self, state: Any, log: Any, ctx: Any, step: int) -> None:
        if ctx.overflow:
            self.overflows += 1
            ctx.messages = [ctx.messages[0], Message("user", "(earlier steps were compacted)")]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", list(OVERFLOWS))
def test_a_context_overflow_compacts_once_then_retries(llm_server: Any, case: str, mode: str) -> None:
    provider, overflow = OVERFLOWS[case]

    class Overflow:  # make the second model call overflow, once
        def post_dispatch(self, *args: Any) -> None:
            llm_server.script(overflow)

    llm_server.script(reply(("greet", {"name": "Alice"})))
    compactor = Compactor()
    kit = Greeter()
    llm = backend(provider, llm_server.base_url(provider), is_async=mode == "async")
    _, result = run(
        llm,
        is_async=mode == "async",
        tools=kit.tools,
        task="Greet Alice.",
        hooks=[Overflow(), compactor],
        max_steps=2,
    )
    bodies = llm_server.bodies()
    assert compactor.overflows == 1
    assert [r["status"] for r in llm_server.records()] == [200, overflow["status"], 200]
    assert len(bodies[2]["messages"]) < len(bodies[1]["messages"])  # never the same prompt again
    assert result.llm_calls == 3


@pytest.mark.parametrize("case", list(OVERFLOWS))
def test_a_prompt_still_too_long_after_compaction_stops_with_context_overflow(
    llm_server: Any, case: str
) -> None:
    provider, overflow = OVERFLOWS[case]
    llm_server.script({**overflow, "times": 2})
    compactor = Compactor()
    _, result = run(
        backend(provider, llm_server.base_url(provider)),
        is_async=False,
        tools=Greeter().tools,
        task="t",
        hooks=[compactor],
    )
    assert result.stop_reason == "context_overflow"
    assert llm_server.attempts == 2 and compactor.overflows == 1
    assert isinstance(result.error, LLMError) and result.error.kind == "context_length"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_502_that_mentions_413_and_too_long_is_a_server_error(llm_server: Any, provider: str) -> None:
    llm_server.script({"type": "fail", "status": 502, "message": "upstream 413: prompt is too long"}, DONE)
    compactor = Compactor()
    _, result = run(
        backend(provider, llm_server.base_url(provider)),
        is_async=False,
        tools=Greeter().tools,
        task="t",
        hooks=[compactor],
    )
    assert result.stop_reason == "done"
    assert compactor.overflows == 0 and llm_server.attempts == 2


def test_a_400_without_the_context_code_is_a_bad_request(llm_server: Any) -> None:
    llm_server.script({"type": "fail", "status": 400, "message": "maximum context length is 8 tokens"})
    compactor = Compactor()
    _, result = run(
        backend("openai", llm_server.openai_url),
        is_async=False,
        tools=Greeter().tools,
        task="t",
        hooks=[compactor],
    )
    error = _llm_error(result)
    assert (error.kind, error.status) == ("bad_request", 400) and compactor.overflows == 0
    assert llm_server.attempts == 1


# -- C9: authentication --------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_auth_errors_stop_at_once_and_name_the_variable(llm_server: Any, provider: str, status: int) -> None:
    llm_server.script({"type": "fail", "status": status, "times": None})
    _, result = run(
        backend(provider, llm_server.base_url(provider)), is_async=False, tools=Greeter().tools, task="t"
    )
    error = _llm_error(result)
    assert llm_server.attempts == 1
    assert (error.kind, error.status, error.retriable) == ("auth", status, False)
    assert ("OPENAI_API_KEY" if provider == "openai" else "ANTHROPIC_API_KEY") in str(error)


@pytest.mark.parametrize("given", ["argument", "environment", "client"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_key_never_leaks_into_errors_logs_or_reprs(
    fault_server: Any,
    provider: str,
    given: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    echo = f"Incorrect API key provided: {CANARY}. You can find your API key at https://example.invalid."
    if provider == "openai":
        body = openai_error(echo, type="invalid_request_error", code="invalid_api_key")
    else:
        body = anthropic_error(echo, type="authentication_error")
    # one 429 first (retried and logged), then the 401 that quotes the key
    limited = openai_error(f"rate limited for key {CANARY}", type="rate_limit_error")
    fault_server.queue(Canned(429, {"retry-after-ms": "5"}, limited), Canned(401, {}, body))
    url = fault_url(provider, fault_server.url)
    prefix = provider.upper()
    cls = OpenAIBackend if provider == "openai" else AnthropicBackend
    if given == "environment":
        monkeypatch.setenv(f"{prefix}_API_KEY", CANARY)
        monkeypatch.setenv(f"{prefix}_BASE_URL", url)
        llm = cls.from_env(model="m", retry=FAST)
    elif given == "client":
        sdk = __import__(provider)
        client = (sdk.OpenAI if provider == "openai" else sdk.Anthropic)(api_key=CANARY, base_url=url)
        llm = cls("m", client=client, retry=FAST)
    else:
        llm = backend(provider, url, api_key=CANARY)
    caplog.set_level(logging.DEBUG)
    loop_steps, result = run(llm, is_async=False, tools=Greeter().tools, task="t")
    error = _llm_error(result)
    assert error.kind == "auth" and fault_server.attempts == 2
    seen = fault_server.seen[0].headers.get("authorization", "") + fault_server.seen[0].headers.get(
        "x-api-key", ""
    )
    assert CANARY in seen  # the key was really sent...
    sinks = [
        str(error),
        repr(error),
        "".join(traceback.format_exception(error)),
        result.detail,
        str(result.to_dict()),
        repr(llm),
        caplog.text,
        str(loop_steps),
    ]
    for sink in sinks:  # ...and shows up nowhere else
        assert CANARY not in sink
    assert "retry 1 of 2" in caplog.text  # the retry was logged, without the key


# -- C11: refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_content_filter_stop_is_a_refusal(llm_server: Any, provider: str, stream: bool) -> None:
    llm_server.script(reply(text="I can't help with that.", finish_reason="content_filter"))
    _, result = run(
        backend(provider, llm_server.base_url(provider), stream=stream),
        is_async=False,
        tools=Greeter().tools,
        task="t",
    )
    error = _llm_error(result, "refused")
    assert (error.kind, error.retriable) == ("refused", False)
    assert llm_server.attempts == 1


def test_an_openai_refusal_message_is_a_refusal(fault_server: Any) -> None:
    fault_server.queue(Canned(body=openai_completion(refusal="I'm sorry, I cannot do that.")))
    _, result = run(
        backend("openai", fault_url("openai", fault_server.url)),
        is_async=False,
        tools=Greeter().tools,
        task="t",
    )
    error = _llm_error(result, "refused")
    assert error.kind == "refused" and "cannot do that" in str(error)
