"""The conversation in each provider's shape, for histories the loop itself would never build."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from looplet import Message, ToolCall, Usage
from looplet.backends.anthropic import anthropic_messages
from looplet.backends.openai import openai_messages
from looplet.backends.pairing import MISSING_RESULT, pair_tool_results
from looplet.backends.pricing import ModelPrice, cost_of, price_for
from looplet.errors import ConfigError


def _turn(*ids: str) -> Message:
    return Message("assistant", "", tuple(ToolCall("greet", {"name": i}, call_id=i) for i in ids))


def _result(call_id: str, text: str = "ok") -> Message:
    return Message("tool", text, call_id=call_id, name="greet")


def test_an_unanswered_call_gets_a_placeholder_result() -> None:
    out = pair_tool_results([Message("user", "t"), _turn("a", "b"), _result("a")])
    assert [(m.role, m.call_id) for m in out] == [
        ("user", ""),
        ("assistant", ""),
        ("tool", "a"),
        ("tool", "b"),
    ]
    assert out[-1].content == MISSING_RESULT and out[-1].error


def test_stray_results_become_user_text() -> None:
    out = pair_tool_results(
        [Message("user", "t"), _result("x", "lost"), _turn("a"), _result("a"), _result("zz")]
    )
    assert [m.role for m in out] == ["user", "user", "assistant", "tool", "user"]
    assert "lost" in out[1].content and "(x)" in out[1].content
    assert "(zz)" in out[-1].content


def test_a_result_after_a_user_turn_is_stray_and_the_call_is_answered() -> None:
    out = pair_tool_results([_turn("a"), Message("user", "hm"), _result("a")])
    assert [m.role for m in out] == ["assistant", "tool", "user", "user"]
    assert out[1].content == MISSING_RESULT


def test_anthropic_turns_alternate_and_start_with_the_user() -> None:
    history = [
        Message("assistant", "I start"),
        Message("user", "one"),
        Message("user", "two"),
        Message("assistant", ""),  # empty: left out
        Message("assistant", "", (ToolCall("greet", {"name": "A"}, call_id="call_1~2"),)),
        Message("user", "note first"),
    ]
    out = anthropic_messages(history)
    roles = [t["role"] for t in out]
    assert roles[0] == "user"
    assert all(a != b for a, b in zip(roles, roles[1:], strict=False))
    last = out[-1]["content"]
    assert [b["type"] for b in last] == ["tool_result", "text"]  # results first, then the text
    use = out[-2]["content"][-1]
    assert use["id"] == "call_1_2" == last[0]["tool_use_id"]


def test_anthropic_marks_error_results_and_never_sends_empty_text() -> None:
    history = [Message("user", "t"), _turn("a"), Message("tool", "", call_id="a", name="greet", error=True)]
    out = anthropic_messages(history)
    block = out[-1]["content"][0]
    assert block == {"type": "tool_result", "tool_use_id": "a", "content": "(empty)", "is_error": True}


def test_openai_sends_tool_arguments_as_json_and_empty_assistant_text_as_a_string() -> None:
    out = openai_messages("sys", [Message("user", "t"), Message("assistant", ""), _turn("a"), _result("a")])
    assert out[0] == {"role": "system", "content": "sys"}
    assert out[2] == {"role": "assistant", "content": ""}
    assert out[3]["content"] is None
    assert out[3]["tool_calls"][0]["function"] == {"name": "greet", "arguments": '{"name":"a"}'}


_roles = st.sampled_from(["user", "assistant", "tool"])
_ids = st.sampled_from(["a", "b", "c", ""])


@st.composite
def _histories(draw: Any) -> list[Message]:
    out = []
    for _ in range(draw(st.integers(0, 12))):
        role = draw(_roles)
        if role == "assistant":
            ids = draw(st.lists(_ids, max_size=3, unique=True))
            out.append(
                Message(
                    "assistant",
                    draw(st.sampled_from(["", "x"])),
                    tuple(ToolCall("t", {}, call_id=i) for i in ids),
                )
            )
        elif role == "tool":
            out.append(Message("tool", "r", call_id=draw(_ids), name="t"))
        else:
            out.append(Message("user", draw(st.sampled_from(["", "u"]))))
    return out


@given(_histories())
def test_every_call_is_answered_right_after_its_turn(history: list[Message]) -> None:
    out = pair_tool_results(history)
    for i, message in enumerate(out):
        if message.role == "tool":  # a result always follows its call's turn
            j = i - 1
            while out[j].role == "tool":
                j -= 1
            assert message.call_id in [c.call_id for c in out[j].tool_calls]
        if message.role == "assistant" and message.tool_calls:
            answered = []
            for later in out[i + 1 :]:
                if later.role != "tool":
                    break
                answered.append(later.call_id)
            assert sorted(answered) == sorted(c.call_id for c in message.tool_calls)


@given(_histories())
def test_anthropic_turns_always_alternate(history: list[Message]) -> None:
    out = anthropic_messages(history)
    roles = [t["role"] for t in out]
    assert roles and roles[0] == "user"
    assert all(a != b for a, b in zip(roles, roles[1:], strict=False))
    for turn in out:
        assert turn["content"]
        assert all(b.get("text", "x").strip() for b in turn["content"])


def test_price_lookup_uses_the_longest_prefix() -> None:
    table = {"gpt-4o": (2.5, 10.0), "gpt-4o-mini": ModelPrice(0.15, 0.6, 0.075)}
    assert price_for("gpt-4o-mini-2024-07-18", table) == ModelPrice(0.15, 0.6, 0.075)
    assert price_for("gpt-4o-2024-08-06", table) == ModelPrice(2.5, 10.0)
    assert price_for("claude", table) is None
    assert cost_of(Usage(1_000_000, 0), "claude", table) == 0.0
    assert cost_of(Usage(1_000_000, 1_000_000, 500_000), "gpt-4o-mini", table) == pytest.approx(
        0.5 * 0.15 + 0.5 * 0.075 + 0.6
    )
    assert cost_of(Usage(10, 10), "gpt-4o", None) == 0.0
    with pytest.raises(ConfigError):
        ModelPrice(-1.0, 1.0)
