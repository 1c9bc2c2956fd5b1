"""What a model call reports about itself: the attempts that failed before it, and the completion's id.

Provenance records every retry and its cause (RELIABILITY F6), and tracing
names the completion (``gen_ai.response.id``), so both travel on the reply
(`LLMResponse.retries`, `LLMResponse.response_id`) or, when the call gives
up, on the `LLMError`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from backend_kit import MODES, PROVIDERS, backend, complete, fail, fault_url, reply
from loopback_faults import (
    Canned,
    anthropic_message,
    anthropic_tool_stream,
    openai_completion,
    openai_tool_stream,
)

from looplet import LLMError, Message
from looplet.backends.protocol import LLMRequest

DONE = reply(("done", {"answer": "ok"}))


def _request(**options: Any) -> LLMRequest:
    return LLMRequest(messages=[Message("user", "hi")], options=options)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_reply_after_failed_attempts_lists_them_with_their_causes(
    llm_server: Any, provider: str, mode: str
) -> None:
    llm_server.script(fail(503, times=1), fail(429, retry_after=0.01, times=1), DONE)
    llm = backend(provider, llm_server.base_url(provider), is_async=mode == "async")
    response = complete(llm, _request(), is_async=mode == "async")
    assert [r["attempt"] for r in response.retries] == [1, 2]
    causes = [r["cause"] for r in response.retries]
    assert causes[0].endswith(" 503") and causes[1] == "rate_limit 429", causes
    assert all(isinstance(r["wait_s"], float) and r["wait_s"] >= 0 for r in response.retries)
    assert all(r["error"] for r in response.retries)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_reply_at_the_first_attempt_lists_no_retries(llm_server: Any, provider: str, mode: str) -> None:
    llm_server.script(DONE)
    llm = backend(provider, llm_server.base_url(provider), is_async=mode == "async")
    assert complete(llm, _request(), is_async=mode == "async").retries == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_call_that_gives_up_carries_every_attempt_on_its_error(
    llm_server: Any, provider: str, mode: str
) -> None:
    llm_server.script(fail(500, times=3))  # FAST allows 2 retries: three attempts in all
    llm = backend(provider, llm_server.base_url(provider), is_async=mode == "async")
    with pytest.raises(LLMError) as caught:
        complete(llm, _request(), is_async=mode == "async")
    attempts = caught.value.retries
    assert [r["attempt"] for r in attempts] == [1, 2, 3]
    assert [r["wait_s"] is None for r in attempts] == [False, False, True]  # no wait after the last


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_completion_id_is_on_the_reply(fault_server: Any, provider: str, mode: str, stream: bool) -> None:
    call = ("c1", "done", {"answer": "ok"})
    expected = "chatcmpl-fault" if provider == "openai" else "msg_fault"
    if stream:
        chunks = openai_tool_stream(*call) if provider == "openai" else anthropic_tool_stream(*call)
        fault_server.queue(Canned(chunks=chunks))
    elif provider == "openai":
        fault_server.queue(Canned(200, {}, openai_completion(calls=[call], finish="tool_calls")))
    else:
        fault_server.queue(Canned(200, {}, anthropic_message(calls=[call], stop="tool_use")))
    llm = backend(provider, fault_url(provider, fault_server.url), is_async=mode == "async")
    response = complete(llm, _request(stream=stream), is_async=mode == "async")
    assert response.response_id == expected
    assert [c.tool for c in response.tool_calls] == ["done"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_plain_reply_keeps_the_providers_body_as_data(fault_server: Any, provider: str, mode: str) -> None:
    call = ("c1", "done", {"answer": "ok"})
    if provider == "openai":
        fault_server.queue(Canned(200, {}, openai_completion(calls=[call], finish="tool_calls")))
    else:
        fault_server.queue(Canned(200, {}, anthropic_message(calls=[call], stop="tool_use")))
    llm = backend(provider, fault_url(provider, fault_server.url), is_async=mode == "async")
    raw = complete(llm, _request(), is_async=mode == "async").raw
    assert raw["id"] == ("chatcmpl-fault" if provider == "openai" else "msg_fault")
    json.dumps(raw)  # JSON data, ready to record
    if provider == "openai":
        assert raw["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "done"
    else:
        assert raw["content"][0]["name"] == "done"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_streamed_reply_has_no_single_body(fault_server: Any, provider: str) -> None:
    call = ("c1", "done", {"answer": "ok"})
    chunks = openai_tool_stream(*call) if provider == "openai" else anthropic_tool_stream(*call)
    fault_server.queue(Canned(chunks=chunks))
    llm = backend(provider, fault_url(provider, fault_server.url))
    assert complete(llm, _request(stream=True), is_async=False).raw is None
