"""The one conversation record, task rendering, the mock backend and redaction."""

from __future__ import annotations

import pytest

from looplet import (
    History,
    LLMRequest,
    LLMResponse,
    Message,
    MockLLMBackend,
    ScriptExhaustedError,
    ToolCall,
    Usage,
)
from looplet.backends.mock import to_response
from looplet.history import MessagesView, render_task
from looplet.redaction import REDACTED, redact_text


def test_messages_round_trip_and_history_replace_bumps_the_revision() -> None:
    msgs = [
        Message("user", "hi"),
        Message("assistant", "", (ToolCall("a", {"x": 1}, call_id="c"),)),
        Message("tool", "ok", call_id="c", name="a", error=True),
    ]
    history = History(msgs)
    assert History.from_list(history.to_list()).to_list() == history.to_list()
    assert history.to_list()[2] == {
        "role": "tool",
        "content": "ok",
        "call_id": "c",
        "name": "a",
        "error": True,
    }
    assert len(history) == 3 and history[0].content == "hi" and list(history) == msgs
    assert history.chars() == 4 and repr(history) == "History(3 messages)"
    history.replace(msgs[:1])
    assert history.revision == 1 and len(history) == 1


def test_messages_view_is_a_read_only_snapshot() -> None:
    history = History([Message("user", "a")])
    view = history.messages
    history.append(Message("user", "b"))
    assert len(view) == 1 and view[-1].content == "a" and view[0:5] == [Message("user", "a")]
    assert len(history.messages) == 2 and repr(view) == "MessagesView(1 messages)"
    with pytest.raises(IndexError):
        view[1]
    assert view == [Message("user", "a")] and view != [] and (view == 3) is False
    assert not hasattr(view, "append")
    assert isinstance(view, MessagesView)


def test_render_task_shapes() -> None:
    assert render_task(None) == "" and render_task("plain") == "plain"
    text = render_task({"goal": "g", "notes": "line1\nline2", "steps": [["a"], 1], "tags": ("x",)})
    assert text.splitlines() == [
        "goal: g",
        "notes:",
        "  line1",
        "  line2",
        "steps:",
        "  -",
        "    - a",
        "  - 1",
        "tags:",
        "  - x",
    ]
    assert render_task(["a", "b"]) == "- a\n- b"
    assert render_task(42) == "42"


def test_mock_backend_records_calls_and_raises_when_exhausted() -> None:
    llm = MockLLMBackend(["a"])
    assert llm.last_prompt == "" and llm.remaining == 1
    request = LLMRequest(messages=[Message("user", "task")], system="sys")
    assert llm.complete(request).text == "a"
    assert llm.calls == [request] and llm.remaining == 0 and "task" in llm.last_prompt
    assert repr(llm) == "MockLLMBackend(1/1 responses used)"
    with pytest.raises(ScriptExhaustedError, match="asked for response 2"):
        llm.complete(request)


def test_script_entries_of_every_shape() -> None:
    call = ToolCall("a", {})
    assert to_response(call).tool_calls == [call]
    assert to_response([call, call]).tool_calls == [call, call]
    assert to_response({"tool": "a"}).text == '{"tool": "a"}'
    response = LLMResponse(text="x", usage=Usage(1, 2))
    assert to_response(response) is response
    with pytest.raises(TypeError, match="cannot use a int"):
        to_response(3)


def test_mock_usage_does_not_override_reported_usage() -> None:
    llm = MockLLMBackend([LLMResponse(text="x", usage=Usage(5, 5))], usage=Usage(1, 1))
    assert llm.complete(LLMRequest(messages=[])).usage == Usage(5, 5)


def test_redaction_masks_known_shapes_and_secret_env_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MY_SERVICE_TOKEN", "s3cr3t-value-123")
    monkeypatch.setenv("SHORT_KEY", "abc")  # too short to be masked safely
    text = (
        "key sk-ant-api03-abcdefgh and AKIAABCDEFGHIJKLMNOP, ghp_" + "a" * 30 + ", "
        "Bearer abcdefghijklmnop, url https://user:pw@host/x, s3cr3t-value-123, extra-literal"
    )
    out = redact_text(text, extra=["extra-literal"])
    for secret in (
        "sk-ant-api03",
        "AKIAABCD",
        "ghp_",
        "abcdefghijklmnop",
        "user:pw",
        "s3cr3t",
        "extra-literal",
    ):
        assert secret not in out
    assert out.count(REDACTED) >= 7 and "abc" in redact_text("abc")
