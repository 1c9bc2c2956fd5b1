"""A real tool-calling exchange, through the real SDKs and the loop, for every backend and mode."""

from __future__ import annotations

from typing import Any

import pytest
from backend_kit import MODES, PROVIDERS, Greeter, backend, fault_url, reply, run
from loopback_faults import Canned, anthropic_message, openai_completion

from looplet import LoopConfig
from looplet.backends.pricing import ModelPrice
from looplet.config import DEFAULT_SYSTEM_PROMPT


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_two_turn_exchange_with_parallel_calls(
    llm_server: Any, provider: str, mode: str, stream: bool
) -> None:
    llm_server.script(
        reply(("greet", {"name": "Alice"}), ("greet", {"name": "Bob"})),
        reply(("done", {"answer": "Greeted both."}), text="All greeted."),
    )
    deltas: list[str] = []
    llm = backend(
        provider,
        llm_server.base_url(provider),
        is_async=mode == "async",
        stream=stream,
        on_text_delta=deltas.append,
    )
    kit = Greeter()
    steps, result = run(llm, is_async=mode == "async", tools=kit.tools, task="Greet Alice and Bob.")

    assert result.stop_reason == "done", result.detail
    assert kit.greeted == ["Alice", "Bob"]
    assert result.final_answer == {"answer": "Greeted both."}
    assert [s.turn for s in steps] == [1, 1, 2]
    assert result.llm_calls == 2 and llm_server.attempts == 2
    assert result.usage.input_tokens > 0 and result.usage.output_tokens > 0
    per_turn = {s.turn: s.usage for s in steps}
    assert result.usage.input_tokens == sum(u.input_tokens for u in per_turn.values())
    assert result.usage.output_tokens == sum(u.output_tokens for u in per_turn.values())
    assert "".join(deltas) == ("All greeted." if stream else "")

    first, second = llm_server.bodies()
    assert first.get("stream", False) is stream
    if provider == "openai":
        _check_openai_wire(first, second)
    else:
        _check_anthropic_wire(first, second)


def _check_openai_wire(first: dict[str, Any], second: dict[str, Any]) -> None:
    assert first["messages"] == [
        {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
        {"role": "user", "content": "Greet Alice and Bob."},
    ]
    names = [t["function"]["name"] for t in first["tools"]]
    assert names == ["greet", "done"]
    greet = first["tools"][0]["function"]
    assert greet["parameters"]["properties"]["name"]["type"] == "string"
    assert greet["parameters"]["required"] == ["name"]
    assistant, *results = second["messages"][2:]
    assert assistant["role"] == "assistant" and len(assistant["tool_calls"]) == 2
    ids = [c["id"] for c in assistant["tool_calls"]]
    assert [c["function"]["name"] for c in assistant["tool_calls"]] == ["greet", "greet"]
    assert [r["role"] for r in results] == ["tool", "tool"]
    assert [r["tool_call_id"] for r in results] == ids
    assert "Hello, Alice!" in results[0]["content"] and "Hello, Bob!" in results[1]["content"]


def _check_anthropic_wire(first: dict[str, Any], second: dict[str, Any]) -> None:
    assert first["system"] == DEFAULT_SYSTEM_PROMPT
    assert first["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Greet Alice and Bob."}]}
    ]
    assert [t["name"] for t in first["tools"]] == ["greet", "done"]
    assert first["tools"][0]["input_schema"]["required"] == ["name"]
    user, assistant, results = second["messages"]
    assert [user["role"], assistant["role"], results["role"]] == ["user", "assistant", "user"]
    uses = [b for b in assistant["content"] if b["type"] == "tool_use"]
    assert [b["input"] for b in uses] == [{"name": "Alice"}, {"name": "Bob"}]
    assert [b["type"] for b in results["content"]] == ["tool_result", "tool_result"]
    assert [b["tool_use_id"] for b in results["content"]] == [b["id"] for b in uses]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_text_answer_goes_through_the_json_in_text_path(llm_server: Any, provider: str) -> None:
    llm_server.script(
        reply(text='{"tool": "greet", "args": {"name": "Ada"}, "reasoning": "say hi"}'),
        reply(("done", {"answer": "ok"})),
    )
    kit = Greeter()
    steps, result = run(
        backend(provider, llm_server.base_url(provider)), is_async=False, tools=kit.tools, task="Greet Ada."
    )
    assert kit.greeted == ["Ada"] and result.stop_reason == "done"
    assert steps[0].tool_call.reasoning == "say hi"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_injected_context_is_sent_as_a_final_user_turn(llm_server: Any, provider: str, mode: str) -> None:
    class Reminder:
        def pre_prompt(self, state: Any, log: Any, ctx: Any, step: int) -> str | None:
            return "Reminder: be brief." if step > 1 else None

    llm_server.script(reply(("greet", {"name": "Alice"})), reply(("done", {"answer": "ok"})))
    kit = Greeter()
    _, result = run(
        backend(provider, llm_server.base_url(provider), is_async=mode == "async"),
        is_async=mode == "async",
        tools=kit.tools,
        task="Greet Alice.",
        hooks=[Reminder()],
    )
    assert result.stop_reason == "done"
    last = llm_server.bodies()[1]["messages"][-1]
    if provider == "openai":
        assert last == {"role": "user", "content": "Reminder: be brief."}
    else:  # one user turn: the tool result first, then the reminder
        assert last["role"] == "user"
        assert [b["type"] for b in last["content"]] == ["tool_result", "text"]
        assert last["content"][1]["text"] == "Reminder: be brief."


@pytest.mark.parametrize("provider", PROVIDERS)
def test_generation_settings_and_options_reach_the_wire(llm_server: Any, provider: str) -> None:
    llm_server.script(reply(("done", {"answer": "ok"})))
    option = {"top_p": 0.5} if provider == "openai" else {"stop_sequences": ["END"]}
    config = LoopConfig(max_tokens=64, temperature=0.25, llm_options=option)
    _, result = run(
        backend(provider, llm_server.base_url(provider)),
        is_async=False,
        tools=Greeter().tools,
        task="t",
        config=config,
    )
    assert result.stop_reason == "done"
    (body,) = llm_server.bodies()
    assert body["max_tokens"] == 64 and body["temperature"] == 0.25
    for key, value in option.items():
        assert body[key] == value


@pytest.mark.parametrize("provider", PROVIDERS)
def test_prices_turn_usage_into_cost(llm_server: Any, provider: str) -> None:
    llm_server.script(reply(("done", {"answer": "ok"})))
    model = "gpt-4o-2024-08-06" if provider == "openai" else "claude-test-1"
    prices = {"gpt-4o": ModelPrice(2.5, 10.0), "claude-test": (3.0, 15.0)}
    llm = backend(provider, llm_server.base_url(provider), model=model, prices=prices)
    _, result = run(llm, is_async=False, tools=Greeter().tools, task="t")
    usage = result.usage
    price = (2.5, 10.0) if provider == "openai" else (3.0, 15.0)
    expected = (usage.input_tokens * price[0] + usage.output_tokens * price[1]) / 1e6
    assert usage.cost == pytest.approx(expected) and usage.cost > 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_cached_tokens_are_counted_and_priced(fault_server: Any, provider: str, mode: str) -> None:
    if provider == "openai":
        usage = {
            "prompt_tokens": 1000,
            "completion_tokens": 10,
            "total_tokens": 1010,
            "prompt_tokens_details": {"cached_tokens": 800},
        }
        body = openai_completion(calls=[("c1", "done", {"answer": "ok"})], finish="tool_calls", usage=usage)
    else:
        usage = {
            "input_tokens": 200,
            "output_tokens": 10,
            "cache_read_input_tokens": 800,
            "cache_creation_input_tokens": 0,
        }
        body = anthropic_message(calls=[("c1", "done", {"answer": "ok"})], stop="tool_use", usage=usage)
    fault_server.queue(Canned(body=body))
    prices = {"fault-model": ModelPrice(input=1.0, output=2.0, cached_input=0.5)}
    llm = backend(provider, fault_url(provider, fault_server.url), is_async=mode == "async", prices=prices)
    _, result = run(llm, is_async=mode == "async", tools=Greeter().tools, task="t")
    assert result.stop_reason == "done"
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.cached_tokens) == (
        1000,
        10,
        800,
    )
    assert result.usage.cost == pytest.approx((200 * 1.0 + 800 * 0.5 + 10 * 2.0) / 1e6)
