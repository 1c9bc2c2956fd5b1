"""Prompt caching over the real SDKs against the loopback fault server: the markers in the request body,
the prefix they mark staying the same from call to call, and the cached usage read back into the steps,
the run's totals and the cost."""

from __future__ import annotations

import json
from typing import Any

import pytest
from backend_kit import MODES, Greeter, backend, fault_url, run
from loopback_faults import Canned, anthropic_message, openai_chunk, openai_completion, sse

from looplet import LoopConfig
from looplet.backends.anthropic import anthropic_body
from looplet.backends.pricing import ModelPrice, cost_of
from looplet.backends.protocol import LLMRequest
from looplet.caching import MAX_BREAKPOINTS, CachePolicy
from looplet.errors import ConfigError
from looplet.history import Message
from looplet.types import ToolCall, Usage

PRICES = {
    "fault-model": ModelPrice(input=1.0, output=2.0, cached_input=0.1, cache_write=1.25, cache_write_1h=2.0)
}
GREET = ("c1", "greet", {"name": "Ada"})
DONE = ("c2", "done", {"answer": "ok"})


class Reminder:
    """Adds a text to every prompt: it changes per call, so it must sit after every breakpoint."""

    def __init__(self) -> None:
        self.n = 0

    def pre_prompt(self, state: Any, log: Any, ctx: Any, step: int) -> str:
        self.n += 1
        return f"reminder {self.n}"


def _markers(data: Any) -> list[Any]:
    """Every ``cache_control`` value anywhere in a request body, in document order."""
    if isinstance(data, dict):
        found = [data["cache_control"]] if "cache_control" in data else []
        return found + [m for k, v in data.items() if k != "cache_control" for m in _markers(v)]
    if isinstance(data, list):
        return [m for item in data for m in _markers(item)]
    return []


def _unmarked(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _unmarked(v) for k, v in data.items() if k != "cache_control"}
    if isinstance(data, list):
        return [_unmarked(v) for v in data]
    return data


def _marked_prefix(messages: list[dict[str, Any]]) -> list[Any]:
    """The message blocks up to and including the last marked one, without the markers."""
    blocks = [(turn["role"], block) for turn in messages for block in turn["content"]]
    last = max(i for i, (_, block) in enumerate(blocks) if "cache_control" in block)
    return _unmarked(blocks[: last + 1])


# -- Anthropic: breakpoints ------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_anthropic_marks_tools_system_and_the_last_stable_messages(fault_server: Any, mode: str) -> None:
    first = {"input_tokens": 50, "output_tokens": 10, "cache_creation_input_tokens": 1000}
    second = {
        "input_tokens": 30,
        "output_tokens": 5,
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 200,
    }
    fault_server.queue(
        Canned(body=anthropic_message(calls=[GREET], stop="tool_use", usage=first)),
        Canned(body=anthropic_message(calls=[DONE], stop="tool_use", usage=second)),
    )
    is_async = mode == "async"
    llm = backend("anthropic", fault_server.url, is_async=is_async, cache=CachePolicy(), prices=PRICES)
    steps, result = run(
        llm,
        is_async=is_async,
        tools=Greeter().tools,
        task="greet Ada",
        hooks=[Reminder()],
        config=LoopConfig(system_prompt="You greet people."),
    )
    assert result.stop_reason == "done"
    one, two = (seen.body for seen in fault_server.seen)
    ephemeral = {"type": "ephemeral"}
    for body in (one, two):
        assert body["system"] == [{"type": "text", "text": "You greet people.", "cache_control": ephemeral}]
        assert [t["name"] for t in body["tools"]] == ["done", "greet"]  # by name, not as registered
        assert "cache_control" not in body["tools"][0] and body["tools"][-1]["cache_control"] == ephemeral
        assert len(_markers(body)) <= MAX_BREAKPOINTS
        last = body["messages"][-1]["content"][-1]
        assert last["type"] == "text" and last["text"].startswith("reminder") and "cache_control" not in last
    # the first call marks the task; the second marks the task again (the end of the turn before) and
    # the greet result, the last message of the history
    assert one["messages"][0]["content"][0]["cache_control"] == ephemeral
    assert len(_markers(one)) == 3 and len(_markers(two)) == 4
    results = [b for b in two["messages"][-1]["content"] if b["type"] == "tool_result"]
    assert results[-1]["cache_control"] == ephemeral
    assert two["messages"][0]["content"][0]["cache_control"] == ephemeral
    # what the first call marked is, byte for byte, where the second call starts
    assert _unmarked(one["tools"]) == _unmarked(two["tools"]) and _unmarked(one["system"]) == _unmarked(
        two["system"]
    )
    assert _marked_prefix(two["messages"])[: len(_marked_prefix(one["messages"]))] == _marked_prefix(
        one["messages"]
    )
    # usage: reads and writes are input, reads are the cached count, each priced at its own rate
    assert [(s.usage.input_tokens, s.usage.cached_tokens, s.usage.output_tokens) for s in steps] == [
        (1050, 0, 10),
        (1230, 1000, 5),
    ]
    assert steps[0].usage.cost == pytest.approx((50 * 1.0 + 1000 * 1.25 + 10 * 2.0) / 1e6)
    assert steps[1].usage.cost == pytest.approx((30 * 1.0 + 1000 * 0.1 + 200 * 1.25 + 5 * 2.0) / 1e6)
    totals = result.usage
    assert (totals.input_tokens, totals.cached_tokens, totals.output_tokens) == (2280, 1000, 15)
    assert totals.cost == pytest.approx(steps[0].usage.cost + steps[1].usage.cost)
    # the writes themselves reach the steps and the totals, so hooks price them as writes too
    assert [s.usage.cache_write_tokens for s in steps] == [1000, 200] and totals.cache_write_tokens == 1200


@pytest.mark.parametrize("mode", MODES)
def test_anthropic_one_hour_writes_are_marked_and_priced_as_such(fault_server: Any, mode: str) -> None:
    usage = {
        "input_tokens": 10,
        "output_tokens": 4,
        "cache_creation_input_tokens": 900,
        "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 800},
    }
    fault_server.queue(Canned(body=anthropic_message(calls=[DONE], stop="tool_use", usage=usage)))
    is_async = mode == "async"
    policy = CachePolicy(ttl="1h")
    llm = backend("anthropic", fault_server.url, is_async=is_async, cache=policy, prices=PRICES)
    steps, result = run(llm, is_async=is_async, tools=Greeter().tools, task="t")
    body = fault_server.seen[0].body
    assert _markers(body) and all(m == {"type": "ephemeral", "ttl": "1h"} for m in _markers(body))
    assert result.usage.input_tokens == 910 and result.usage.cached_tokens == 0
    assert steps[0].usage.cost == pytest.approx((10 * 1.0 + 100 * 1.25 + 800 * 2.0 + 4 * 2.0) / 1e6)


def _anthropic_stream(start_usage: dict[str, Any], end_usage: dict[str, Any]) -> list[bytes]:
    raw = json.dumps(DONE[2])
    message = {
        "id": "msg_fault",
        "type": "message",
        "role": "assistant",
        "model": "fault-model",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    block = {"type": "tool_use", "id": DONE[0], "name": DONE[1], "input": {}}
    return [
        sse({"type": "message_start", "message": message}, "message_start"),
        sse({"type": "content_block_start", "index": 0, "content_block": block}, "content_block_start"),
        sse(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": raw},
            },
            "content_block_delta",
        ),
        sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": end_usage,
            },
            "message_delta",
        ),
        sse({"type": "message_stop"}, "message_stop"),
    ]


_CACHE_COUNTS = {"input_tokens": 30, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 200}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("start", "end"),
    [
        ({"input_tokens": 30, "output_tokens": 1}, {"output_tokens": 5, **_CACHE_COUNTS}),
        ({"output_tokens": 1, **_CACHE_COUNTS}, {"output_tokens": 5, **_CACHE_COUNTS}),
        ({"output_tokens": 1, **_CACHE_COUNTS}, {"output_tokens": 5}),
    ],
    ids=["only-at-the-end", "at-both-ends", "only-at-the-start"],
)
def test_streamed_cache_counts_are_read_once_wherever_they_come(
    fault_server: Any, mode: str, start: dict[str, Any], end: dict[str, Any]
) -> None:
    fault_server.queue(Canned(chunks=_anthropic_stream(start, end)))
    is_async = mode == "async"
    llm = backend(
        "anthropic", fault_server.url, is_async=is_async, stream=True, cache=CachePolicy(), prices=PRICES
    )
    steps, result = run(llm, is_async=is_async, tools=Greeter().tools, task="t")
    assert fault_server.seen[0].body["stream"] is True and _markers(fault_server.seen[0].body)
    usage = steps[0].usage
    assert (usage.input_tokens, usage.cached_tokens, usage.output_tokens) == (1230, 1000, 5)
    assert usage.cost == pytest.approx((30 * 1.0 + 1000 * 0.1 + 200 * 1.25 + 5 * 2.0) / 1e6)
    assert result.usage.input_tokens == 1230 and result.usage.cached_tokens == 1000


@pytest.mark.parametrize("mode", MODES)
def test_anthropic_without_a_policy_sends_no_markers(fault_server: Any, mode: str) -> None:
    fault_server.queue(Canned(body=anthropic_message(calls=[DONE], stop="tool_use")))
    is_async = mode == "async"
    llm = backend("anthropic", fault_server.url, is_async=is_async)
    run(llm, is_async=is_async, tools=Greeter().tools, task="t", config=LoopConfig(system_prompt="S."))
    body = fault_server.seen[0].body
    assert _markers(body) == [] and body["system"] == "S."
    assert [t["name"] for t in body["tools"]] == ["greet", "done"]  # as registered


# -- OpenAI: automatic caching, a stable prefix, the cached count --------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_openai_keeps_tools_in_name_order_and_counts_cached_tokens(fault_server: Any, mode: str) -> None:
    def usage(prompt: int, cached: int) -> dict[str, Any]:
        details = {"cached_tokens": cached}
        return {
            "prompt_tokens": prompt,
            "completion_tokens": 3,
            "total_tokens": prompt + 3,
            "prompt_tokens_details": details,
        }

    fault_server.queue(
        Canned(body=openai_completion(calls=[GREET], finish="tool_calls", usage=usage(1200, 0))),
        Canned(body=openai_completion(calls=[DONE], finish="tool_calls", usage=usage(1300, 1152))),
    )
    is_async = mode == "async"
    policy = CachePolicy(key="greeter-agent")
    llm = backend(
        "openai", fault_url("openai", fault_server.url), is_async=is_async, cache=policy, prices=PRICES
    )
    steps, result = run(llm, is_async=is_async, tools=Greeter().tools, task="greet Ada", hooks=[Reminder()])
    assert result.stop_reason == "done"
    one, two = (seen.body for seen in fault_server.seen)
    for body in (one, two):
        assert [t["function"]["name"] for t in body["tools"]] == ["done", "greet"]
        assert body["prompt_cache_key"] == "greeter-agent" and _markers(body) == []
    assert one["tools"] == two["tools"] and one["messages"][0] == two["messages"][0]  # the same prefix
    assert [(s.usage.input_tokens, s.usage.cached_tokens) for s in steps] == [(1200, 0), (1300, 1152)]
    assert steps[1].usage.cost == pytest.approx(((1300 - 1152) * 1.0 + 1152 * 0.1 + 3 * 2.0) / 1e6)
    assert (result.usage.input_tokens, result.usage.cached_tokens) == (2500, 1152)
    assert result.usage.cost == pytest.approx(steps[0].usage.cost + steps[1].usage.cost)


@pytest.mark.parametrize("mode", MODES)
def test_openai_streamed_cached_tokens_reach_the_totals(fault_server: Any, mode: str) -> None:
    start = {"index": 0, "id": DONE[0], "type": "function", "function": {"name": DONE[1], "arguments": ""}}
    tail = {"index": 0, "function": {"arguments": json.dumps(DONE[2])}}
    usage = {
        "prompt_tokens": 2048,
        "completion_tokens": 7,
        "total_tokens": 2055,
        "prompt_tokens_details": {"cached_tokens": 1920},
    }
    usage_chunk = {
        "id": "chatcmpl-fault",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "fault-model",
        "choices": [],
        "usage": usage,
    }
    chunks = [
        openai_chunk({"role": "assistant", "content": None}),
        openai_chunk({"tool_calls": [start]}),
        openai_chunk({"tool_calls": [tail]}),
        openai_chunk({}, "tool_calls"),
        sse(usage_chunk),
        sse("[DONE]"),
    ]
    fault_server.queue(Canned(chunks=chunks))
    is_async = mode == "async"
    url = fault_url("openai", fault_server.url)
    llm = backend("openai", url, is_async=is_async, stream=True, cache=CachePolicy(), prices=PRICES)
    steps, result = run(llm, is_async=is_async, tools=Greeter().tools, task="t")
    body = fault_server.seen[0].body
    assert body["stream_options"] == {"include_usage": True} and "prompt_cache_key" not in body
    assert (steps[0].usage.input_tokens, steps[0].usage.cached_tokens) == (2048, 1920)
    assert (result.usage.input_tokens, result.usage.cached_tokens) == (2048, 1920)
    assert result.usage.cost == pytest.approx((128 * 1.0 + 1920 * 0.1 + 7 * 2.0) / 1e6)


# -- the policy and the price, without a server ---------------------------------------------------


def test_a_batch_turn_counts_its_usage_once_in_the_totals(fault_server: Any) -> None:
    usage = {"input_tokens": 20, "output_tokens": 6, "cache_read_input_tokens": 500}
    batch = [("b1", "greet", {"name": "Ada"}), ("b2", "greet", {"name": "Bob"})]
    fault_server.queue(
        Canned(body=anthropic_message(calls=batch, stop="tool_use", usage=usage)),
        Canned(body=anthropic_message(calls=[DONE], stop="tool_use", usage=usage)),
    )
    llm = backend("anthropic", fault_server.url, cache=CachePolicy(), prices=PRICES)
    steps, result = run(llm, is_async=False, tools=Greeter().tools, task="greet both")
    assert len(steps) == 3 and steps[0].usage is steps[1].usage  # a batch shares its turn's usage
    assert (result.usage.input_tokens, result.usage.cached_tokens) == (
        1040,
        1000,
    )  # two turns, not three steps


def test_the_history_breakpoints_skip_the_texts_added_for_one_call() -> None:
    call = ToolCall("greet", {"name": "Ada"}, call_id="c1")
    history = [
        Message("user", "task"),
        Message("assistant", "", (call,)),
        Message("tool", "hi Ada", call_id="c1", name="greet"),
    ]
    request = LLMRequest(messages=history, system="S", tools=[{"name": "greet"}], extra=("note",))
    body = anthropic_body(request, CachePolicy(messages=1))
    last_turn = body["messages"][-1]["content"]
    assert [b["type"] for b in last_turn] == ["tool_result", "text"]
    assert "cache_control" in last_turn[0] and "cache_control" not in last_turn[1]
    assert len(_markers(body)) == 3  # tools, system, one message
    assert _markers(anthropic_body(request, CachePolicy(tools=False, system=False, messages=0))) == []


@pytest.mark.parametrize(
    "bad", [{"messages": 3}, {"messages": -1}, {"messages": True}, {"ttl": "2h"}, {"key": ""}]
)
def test_a_policy_outside_the_api_rules_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        CachePolicy(**bad)


def test_no_policy_asks_for_more_breakpoints_than_the_api_takes() -> None:
    combos = [CachePolicy(tools=t, system=s, messages=m) for t in (0, 1) for s in (0, 1) for m in (0, 1, 2)]
    assert max(p.breakpoints for p in combos) == MAX_BREAKPOINTS


def test_cache_writes_are_priced_at_write_prices_and_never_twice() -> None:
    usage = Usage(input_tokens=1000, output_tokens=0, cached_tokens=600)
    assert cost_of(usage, "fault-model", PRICES, cache_writes=300, cache_writes_1h=100) == pytest.approx(
        (100 * 1.0 + 600 * 0.1 + 200 * 1.25 + 100 * 2.0) / 1e6
    )
    # more writes reported than input left: bounded, so no token is charged twice or below zero
    assert cost_of(usage, "fault-model", PRICES, cache_writes=5000) == pytest.approx(
        (600 * 0.1 + 400 * 1.25) / 1e6
    )
    plain = {"m": ModelPrice(input=1.0, output=2.0)}  # no write price given: writes cost the input price
    assert cost_of(usage, "m", plain, cache_writes=300) == pytest.approx(1000 * 1.0 / 1e6)
