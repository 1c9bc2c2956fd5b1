"""RELIABILITY rows C6, C7 and C10: broken streams and broken bodies never run a tool call."""

from __future__ import annotations

from typing import Any

import pytest
from backend_kit import FAST, MODES, PROVIDERS, TEST_KEY, Greeter, backend, fault_url, reply, run
from loopback_faults import (
    Canned,
    anthropic_message,
    anthropic_stream_start,
    anthropic_tool_stream,
    openai_chunk,
    openai_completion,
    openai_tool_stream,
    sse,
)

from looplet import LLMError
from looplet.backends.retry import RetryPolicy
from looplet.redaction import REDACTED

NO_RETRY = RetryPolicy(max_retries=0)
GREET = reply(("greet", {"name": "Alice"}))
DONE = reply(("done", {"answer": "ok"}))


def _fault(kind: str, after: int) -> dict[str, Any]:
    return {"type": "stream_fault", "kind": kind, "after_chunks": after}


# -- C6: a connection dropped mid-stream -------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_dropped_stream_is_retried_and_its_call_runs_once(
    llm_server: Any, provider: str, mode: str
) -> None:
    # the first attempt starts the call and loses the connection inside its arguments
    llm_server.script(GREET, _fault("disconnect", 4), GREET, DONE)
    kit = Greeter()
    llm = backend(provider, llm_server.base_url(provider), is_async=mode == "async", stream=True)
    _, result = run(llm, is_async=mode == "async", tools=kit.tools, task="Greet Alice.")
    assert result.stop_reason == "done"
    assert kit.greeted == ["Alice"]
    assert llm_server.attempts == 3


@pytest.mark.parametrize("kind", ["disconnect", "truncate", "malformed"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_partial_tool_call_is_never_run(llm_server: Any, provider: str, kind: str) -> None:
    llm_server.script(GREET, _fault(kind, 4))
    kit = Greeter()
    llm = backend(provider, llm_server.base_url(provider), stream=True, retry=NO_RETRY)
    steps, result = run(llm, is_async=False, tools=kit.tools, task="Greet Alice.")
    assert kit.greeted == [] and steps == []
    assert result.stop_reason == "llm_error"
    error = result.error
    assert isinstance(error, LLMError)
    assert error.kind == ("connection" if kind == "disconnect" else "bad_response")
    assert error.retriable  # nothing was shown yet; only the policy said no more attempts


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_connection_reset_mid_stream_is_typed_and_retried(
    fault_server: Any, provider: str, mode: str
) -> None:
    stream_of = openai_tool_stream if provider == "openai" else anthropic_tool_stream
    whole = stream_of("c1", "greet", {"name": "Alice"})
    fault_server.queue(
        Canned(chunks=whole[:3], end="rst"),  # RST (SO_LINGER 0) inside the arguments
        Canned(chunks=whole),
        Canned(chunks=stream_of("c2", "done", {"answer": "ok"})),
    )
    kit = Greeter()
    llm = backend(provider, fault_url(provider, fault_server.url), is_async=mode == "async", stream=True)
    _, result = run(llm, is_async=mode == "async", tools=kit.tools, task="Greet Alice.")
    assert result.stop_reason == "done", result.detail
    assert kit.greeted == ["Alice"] and fault_server.attempts == 3


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_reset_without_retries_left_is_a_connection_error(fault_server: Any, provider: str) -> None:
    whole = (openai_tool_stream if provider == "openai" else anthropic_tool_stream)(
        "c1", "greet", {"name": "A"}
    )
    fault_server.queue(Canned(chunks=whole[:3], end="rst"))
    kit = Greeter()
    llm = backend(provider, fault_url(provider, fault_server.url), stream=True, retry=NO_RETRY)
    _, result = run(llm, is_async=False, tools=kit.tools, task="t")
    assert kit.greeted == [] and result.stop_reason == "llm_error"
    assert isinstance(result.error, LLMError) and result.error.kind == "connection"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_stream_that_broke_after_text_was_shown_is_not_retried(
    llm_server: Any, provider: str, mode: str
) -> None:
    llm_server.script(
        reply(("greet", {"name": "Alice"}), text="Let me greet Alice for you now."),
        _fault("disconnect", 5),
        DONE,
    )
    shown: list[str] = []
    kit = Greeter()
    llm = backend(
        provider,
        llm_server.base_url(provider),
        is_async=mode == "async",
        stream=True,
        on_text_delta=shown.append,
    )
    _, result = run(llm, is_async=mode == "async", tools=kit.tools, task="Greet Alice.")
    assert shown and kit.greeted == []
    assert llm_server.attempts == 1
    error = result.error
    assert isinstance(error, LLMError) and not error.retriable and error.kind == "connection"
    assert "not retried" in str(error)


# -- C7: an error event after a 200, malformed events ------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_error_event_after_200_is_typed_and_retried(fault_server: Any, provider: str, mode: str) -> None:
    if provider == "openai":
        broken = [
            openai_chunk({"role": "assistant", "content": ""}),
            sse({"error": {"message": "The server had an error", "type": "server_error"}}),
        ]
        whole = openai_tool_stream("c1", "done", {"answer": "ok"})
    else:
        broken = anthropic_stream_start() + [
            sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error")
        ]
        whole = anthropic_tool_stream("c1", "done", {"answer": "ok"})
    fault_server.queue(Canned(chunks=broken), Canned(chunks=whole))
    llm = backend(provider, fault_url(provider, fault_server.url), is_async=mode == "async", stream=True)
    _, result = run(llm, is_async=mode == "async", tools=Greeter().tools, task="t")
    assert result.stop_reason == "done", result.detail
    assert fault_server.attempts == 2


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_error_event_without_retries_left_is_typed(fault_server: Any, provider: str) -> None:
    if provider == "openai":
        chunks = [sse({"error": {"message": "overloaded", "type": "server_error"}})]
    else:
        chunks = anthropic_stream_start() + [
            sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error")
        ]
    fault_server.queue(Canned(chunks=chunks))
    llm = backend(provider, fault_url(provider, fault_server.url), stream=True, retry=NO_RETRY)
    _, result = run(llm, is_async=False, tools=Greeter().tools, task="t")
    assert result.stop_reason == "llm_error"
    error = result.error
    assert isinstance(error, LLMError)
    assert error.kind == ("server" if provider == "openai" else "overloaded") and error.retriable


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_malformed_chunk_is_retried_when_nothing_was_shown(llm_server: Any, provider: str) -> None:
    llm_server.script(GREET, _fault("malformed", 3), GREET, DONE)
    kit = Greeter()
    llm = backend(provider, llm_server.base_url(provider), stream=True)
    _, result = run(llm, is_async=False, tools=kit.tools, task="Greet Alice.")
    assert result.stop_reason == "done" and kit.greeted == ["Alice"]


# -- C10: a 200 that is not a usable answer ------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_body_that_is_not_json_is_retried_then_typed(fault_server: Any, provider: str, mode: str) -> None:
    fault_server.queue(*[Canned(body=b'{"id": "x", "choi') for _ in range(3)])
    llm = backend(provider, fault_url(provider, fault_server.url), is_async=mode == "async")
    _, result = run(llm, is_async=mode == "async", tools=Greeter().tools, task="t")
    assert fault_server.attempts == 3
    assert result.stop_reason == "llm_error"
    assert isinstance(result.error, LLMError) and result.error.kind == "bad_response"


#: A web UI's page served at the base URL, quoting the key the client sent (it must never be echoed).
PAGE = (
    f'<!doctype html><html><head><title>Open WebUI</title><script>window.key="{TEST_KEY}"</script>'
    "</head><body>" + "<div>chat</div>" * 40 + "</body></html>"
).encode()
HTML = {"content-type": "text/html; charset=utf-8"}
TEXT = {"content-type": "text/plain"}

#: (provider, case) -> (the 200 answer, what the error must say it was, attempts made)
NOT_A_REPLY: dict[tuple[str, str], tuple[Canned, str, int]] = {
    ("openai", "html-page"): (Canned(200, HTML, PAGE), "an HTML page", 1),
    ("anthropic", "html-page"): (Canned(200, HTML, PAGE), "an HTML page", 1),
    ("openai", "plain-text"): (Canned(200, TEXT, b"Ollama is running"), "a body that is not JSON", 1),
    ("anthropic", "plain-text"): (Canned(200, TEXT, b"OK"), "a body that is not JSON", 1),
    ("openai", "no-choices"): (
        Canned(body={"id": "x", "object": "chat.completion"}),
        "JSON without `choices`",
        1,
    ),
    ("openai", "empty-choices"): (
        Canned(body={"id": "x", "object": "chat.completion", "choices": []}),
        "an empty `choices` list",
        1,
    ),
    ("anthropic", "no-content"): (Canned(body={"id": "x", "type": "message"}), "JSON without `content`", 1),
    ("openai", "json-array"): (Canned(body=[{"choices": []}]), "JSON that is not an object", 1),
    ("openai", "transient-error-object"): (
        Canned(body={"error": {"message": "upstream failed", "type": "server_error"}}),
        "an error object (server_error)",
        FAST.max_retries + 1,
    ),
    ("anthropic", "transient-error-object"): (
        Canned(body={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        "an error object (overloaded_error)",
        FAST.max_retries + 1,
    ),
    ("openai", "lasting-error-object"): (
        Canned(body={"error": {"message": "model not loaded", "type": "invalid_request_error"}}),
        "an error object (invalid_request_error)",
        1,
    ),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", list(NOT_A_REPLY), ids=lambda case: "-".join(case))
def test_a_200_that_is_not_a_reply_is_a_bad_response_that_says_what_came_back(
    fault_server: Any, case: tuple[str, str], mode: str
) -> None:
    provider, _ = case
    answer, what, attempts = NOT_A_REPLY[case]
    fault_server.queue(*[answer] * attempts)
    kit = Greeter()
    llm = backend(provider, fault_url(provider, fault_server.url), is_async=mode == "async")
    steps, result = run(llm, is_async=mode == "async", tools=kit.tools, task="t")
    assert (result.stop_reason, steps) == ("llm_error", [])  # never a silent model nudged to try again
    error = result.error
    assert isinstance(error, LLMError) and error.kind == "bad_response"
    message = str(error)
    assert "HTTP 200" in message and what in message
    assert f"content-type {answer.headers.get('content-type', 'application/json')}" in message
    assert fault_server.attempts == attempts
    assert error.retriable == (attempts > 1)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_web_page_at_the_base_url_is_quoted_masked_and_cut(
    fault_server: Any, provider: str, stream: bool
) -> None:
    fault_server.queue(Canned(200, HTML, PAGE))
    llm = backend(provider, fault_url(provider, fault_server.url), stream=stream)
    _, result = run(llm, is_async=False, tools=Greeter().tools, task="t")
    error = result.error
    assert isinstance(error, LLMError) and error.kind == "bad_response"
    message = str(error)
    assert "an HTML page" in message and "<title>Open WebUI</title>" in message
    assert TEST_KEY not in message and "sk-test" not in message and REDACTED in message
    assert "<div>chat</div>" in message and "</body>" not in message  # the start of the page, not all of it
    assert "base URL" in message
    assert fault_server.attempts == 1


@pytest.mark.parametrize(
    ("provider", "body"),
    [
        (
            "openai",
            openai_completion(text=""),
        ),
        ("anthropic", anthropic_message(text="")),
    ],
)
def test_an_empty_model_reply_is_a_step_without_a_tool_call(
    fault_server: Any, provider: str, body: dict[str, Any]
) -> None:
    done = (
        openai_completion(calls=[("c1", "done", {"answer": "ok"})], finish="tool_calls")
        if provider == "openai"
        else anthropic_message(calls=[("c1", "done", {"answer": "ok"})], stop="tool_use")
    )
    fault_server.queue(Canned(body=body), Canned(body=done))
    steps, result = run(
        backend(provider, fault_url(provider, fault_server.url)),
        is_async=False,
        tools=Greeter().tools,
        task="t",
    )
    assert result.stop_reason == "done"
    assert steps[0].tool_result.error_kind == "no_tool_call"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_call_cut_by_the_token_limit_is_never_run(llm_server: Any, provider: str, stream: bool) -> None:
    llm_server.script(reply(("greet", {"name": "Alice"}), finish_reason="length"), DONE)
    kit = Greeter()
    steps, result = run(
        backend(provider, llm_server.base_url(provider), stream=stream),
        is_async=False,
        tools=kit.tools,
        task="Greet Alice.",
    )
    assert kit.greeted == []
    assert steps[0].tool_result.error_kind == "parse"
    assert "token limit" in (steps[0].tool_result.error or "")
    assert result.stop_reason == "done"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_unreadable_tool_arguments_are_a_parse_step(llm_server: Any, provider: str, stream: bool) -> None:
    llm_server.script({"type": "tool_fault", "kind": "malformed_arguments"}, DONE)
    kit = Greeter()
    steps, result = run(
        backend(provider, llm_server.base_url(provider), stream=stream),
        is_async=False,
        tools=kit.tools,
        task="Greet Alice.",
    )
    assert kit.greeted == []
    if provider == "anthropic" and not stream:
        # a non-streamed tool_use carries an object, so llmock sends {}: a validation error
        assert steps[0].tool_result.error_kind == "validation"
    else:
        assert steps[0].tool_result.error_kind == "parse"
        assert steps[0].tool_call.args == {} and steps[0].tool_call.parse_error
    assert result.stop_reason == "done"
