"""EventHook: live events to a callback or a queue, in order; an observer that fails never breaks the run."""

from __future__ import annotations

import asyncio
import io
import logging
import queue
from typing import Any

import pytest
from doubles import Driver

from looplet import (
    BaseToolRegistry,
    LLMRequest,
    LLMResponse,
    LoopConfig,
    MockLLMBackend,
    ToolCall,
    Usage,
    async_composable_loop,
    composable_loop,
    register_done_tool,
)
from looplet.events import EVENT_TYPES, Event, EventHook, LiveDisplay

SECRET = "ghp_" + "A" * 36


def _tools() -> BaseToolRegistry:
    tools = BaseToolRegistry()

    @tools.tool
    def greet(name: str) -> str:
        """Greet someone."""
        return f"Hello, {name}"

    register_done_tool(tools)
    return tools


def _script() -> list[Any]:
    return [
        LLMResponse(
            text="Greeting first.",
            tool_calls=[
                ToolCall("greet", {"name": "Ada"}, call_id="c1"),
                ToolCall("greet", {"name": 3}, call_id="c2"),
            ],
            usage=Usage(50, 5, 20),
        ),
        ToolCall("done", {"answer": "greeted"}, call_id="c3"),
    ]


def test_events_arrive_in_run_order_with_documented_types(drive: Driver) -> None:
    events: list[Event] = []
    drive(MockLLMBackend(_script()), tools=_tools(), hooks=[EventHook(events.append)])
    assert [e.type for e in events] == [
        "run_start",
        "model_start",
        "text",
        "model_end",
        "tool_start",
        "tool_end",
        "step",
        "step",  # the invalid call never ran: a step, no tool_start
        "model_start",
        "model_end",
        "tool_start",
        "tool_end",
        "step",
        "stop",
    ]
    assert {e.type for e in events} == set(EVENT_TYPES)
    run_id = drive.loop.state.run_id  # type: ignore[union-attr]
    assert {e.run_id for e in events} == {run_id}
    text = next(e for e in events if e.type == "text")
    assert text.data == {"text": "Greeting first.", "streamed": False}
    end = next(e for e in events if e.type == "model_end")
    assert (end.data["input_tokens"], end.data["cached_tokens"]) == (50, 20)
    steps = [e.data for e in events if e.type == "step"]
    assert [(s["number"], s["ok"], s["error_kind"]) for s in steps] == [
        (1, True, None),
        (2, False, "validation"),
        (3, True, None),
    ]
    assert steps[0]["pretty"].startswith("#1 ✓ greet(name='Ada')")
    stop = events[-1].data
    assert stop["stop_reason"] == "done" and stop["ok"] is True and stop["steps"] == 3


def test_a_queue_receives_the_same_events() -> None:
    inbox: queue.Queue[Event] = queue.Queue()
    composable_loop(MockLLMBackend(_script()), tools=_tools(), task="t", hooks=[EventHook(inbox)]).run()
    types = []
    while not inbox.empty():
        types.append(inbox.get_nowait().type)
    assert types[0] == "run_start" and types[-1] == "stop" and len(types) == 14


def test_an_asyncio_queue_is_fed_from_worker_threads_safely() -> None:
    async def main() -> list[str]:
        inbox: asyncio.Queue[Event] = asyncio.Queue()
        hook = EventHook(inbox)
        await async_composable_loop(MockLLMBackend(_script()), tools=_tools(), task="t", hooks=[hook]).run()
        for _ in range(3):  # let callbacks handed over from threads run
            await asyncio.sleep(0)
        out = []
        while not inbox.empty():
            out.append(inbox.get_nowait().type)
        assert hook.failures == 0
        return out

    types = asyncio.run(main())
    assert types[0] == "run_start" and types[-1] == "stop" and len(types) == 14
    assert types.count("tool_start") == 2  # these came from interceptor threads


def test_a_raising_callback_is_logged_and_the_run_goes_on(
    drive: Driver, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    def flaky(event: Event) -> None:
        seen.append(event.type)
        if event.type in ("tool_start", "step"):
            raise RuntimeError(f"ui crashed with {SECRET}")

    hook = EventHook(flaky)
    with caplog.at_level(logging.WARNING, logger="looplet.events"):
        steps, result = drive(MockLLMBackend(_script()), tools=_tools(), hooks=[hook])
    assert result.stop_reason == "done" and len(steps) == 3
    assert hook.failures == 5 and hook.delivered == 9
    assert seen[-1] == "stop"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # the first failure, and the count at the end of the run
    assert "could not deliver a tool_start event (RuntimeError" in warnings[0]
    assert "5 event(s) could not be delivered" in warnings[1]
    assert SECRET not in caplog.text


def test_a_full_queue_drops_events_without_stopping_the_run() -> None:
    hook = EventHook(queue.Queue(maxsize=2))
    result = composable_loop(MockLLMBackend(_script()), tools=_tools(), task="t", hooks=[hook]).run()
    assert result.stop_reason == "done"
    assert (hook.delivered, hook.failures) == (2, 12)


def test_an_async_callback_is_refused_as_a_delivery_failure() -> None:
    async def callback(event: Event) -> None:
        raise AssertionError("never awaited")

    hook = EventHook(callback)
    result = composable_loop(MockLLMBackend(_script()), tools=_tools(), task="t", hooks=[hook]).run()
    assert result.ok and hook.failures == 14 and hook.delivered == 0


def test_tool_arguments_in_events_are_redacted() -> None:
    events: list[Event] = []
    script = [ToolCall("greet", {"name": SECRET}, call_id="c1"), ToolCall("done", {"answer": "x"})]
    composable_loop(
        MockLLMBackend(script), tools=_tools(), task=f"greet {SECRET}", hooks=[EventHook(events.append)]
    ).run()
    assert SECRET not in repr(events)
    start = next(e for e in events if e.type == "tool_start")
    assert start.data["args"] == {"name": "[REDACTED]"}


class Streaming:
    """A backend that streams its text through ``on_text_delta`` when asked to, as the SDK backends do."""

    def __init__(self) -> None:
        self.replies = [("Hel", "lo ", "there"), ()]

    def complete(self, request: LLMRequest) -> LLMResponse:
        pieces = self.replies.pop(0)
        if pieces:
            if request.options.get("stream"):
                for piece in pieces:
                    request.options["on_text_delta"](piece)
            return LLMResponse(text="".join(pieces), tool_calls=[ToolCall("greet", {"name": "x"})])
        return LLMResponse(tool_calls=[ToolCall("done", {"answer": "ok"})])


def test_streamed_text_arrives_piece_by_piece_and_the_callers_callback_still_runs(drive: Driver) -> None:
    events: list[Event] = []
    theirs: list[str] = []
    config = LoopConfig(llm_options={"stream": True, "on_text_delta": theirs.append})
    drive(Streaming(), tools=_tools(), hooks=[EventHook(events.append)], config=config)
    texts = [e.data for e in events if e.type == "text"]
    assert texts == [{"text": p, "streamed": True} for p in ("Hel", "lo ", "there")]
    assert theirs == ["Hel", "lo ", "there"]


def test_without_streaming_the_whole_text_is_one_event(drive: Driver) -> None:
    events: list[Event] = []
    drive(Streaming(), tools=_tools(), hooks=[EventHook(events.append)])
    assert [e.data for e in events if e.type == "text"] == [{"text": "Hello there", "streamed": False}]


def test_the_plain_display_prints_a_line_per_thing() -> None:
    out = io.StringIO()
    hook = EventHook(LiveDisplay(out, rich=False))
    composable_loop(MockLLMBackend(_script()), tools=_tools(), task="greet Ada", hooks=[hook]).run()
    lines = out.getvalue().splitlines()
    assert lines[0] == "▶ greet Ada"
    assert lines[1] == "Greeting first."
    assert lines[2] == "  → greet(name='Ada')"
    assert lines[3].startswith("  #1 ✓ greet(name='Ada') → ")
    assert lines[4].startswith("  #2 ✗ greet(name=3) → invalid arguments")
    assert lines[-1] == "■ done · 3 steps · 55 tokens (20 cached)"
    assert hook.failures == 0


def test_the_rich_display_styles_the_same_lines() -> None:
    pytest.importorskip("rich")
    from rich.console import Console

    out = io.StringIO()
    display = LiveDisplay(console=Console(file=out, force_terminal=True, color_system="standard", width=200))
    composable_loop(
        MockLLMBackend(_script()), tools=_tools(), task="greet Ada", hooks=[EventHook(display)]
    ).run()
    shown = out.getvalue()
    assert "\x1b[" in shown  # styled
    assert "greet Ada" in shown and "done · 3 steps" in shown


def test_runs_stepped_in_turn_in_one_thread_keep_their_own_run_id() -> None:
    events: list[Event] = []
    hook = EventHook(events.append)

    def loop(tag: str) -> Any:
        script = [ToolCall("greet", {"name": tag}, call_id=f"{tag}1"), ToolCall("done", {"answer": tag})]
        return composable_loop(MockLLMBackend(script), tools=_tools(), task=tag, hooks=[hook])

    a, b = loop("a"), loop("b")
    for each in (a, b, a, b):
        next(each)
    a.close()
    b.close()
    ids = {a.state.run_id, b.state.run_id}
    model_starts = [e.run_id for e in events if e.type == "model_start"]
    assert sorted(model_starts) == sorted(list(ids) * 2)
    # every tool event names the run its step event (from the run's own state) names
    steps = sorted((e.run_id, e.data["tool"]) for e in events if e.type == "step")
    for kind in ("tool_start", "tool_end"):
        assert sorted((e.run_id, e.data["tool"]) for e in events if e.type == kind) == steps
    assert len(steps) == 4


def test_the_display_masks_a_secret_and_neutralises_escapes_in_the_models_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DISPLAY_TEST_API_KEY", "sk-display-canary-0123456789")
    out = io.StringIO()
    said = "key sk-display-canary-0123456789 \x1b]0;owned\x07\x1b[2J done"
    script = [LLMResponse(text=said, tool_calls=[ToolCall("done", {"answer": "ok"})])]
    hook = EventHook(LiveDisplay(out, rich=False))
    composable_loop(MockLLMBackend(script), tools=_tools(), task="t", hooks=[hook]).run()
    shown = out.getvalue()
    assert "sk-display-canary" not in shown and "\x1b" not in shown and "\x07" not in shown
    assert "done" in shown
