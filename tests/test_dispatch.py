"""Running tools: exceptions, time limits, orphaned threads, concurrency, ToolContext (rows B1-B8)."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from dataclasses import dataclass
from typing import Any

import pytest
from doubles import as_text, batch, done, native

from looplet import (
    BaseToolRegistry,
    CancelToken,
    ErrorKind,
    LoopConfig,
    MockLLMBackend,
    StopReason,
    ToolCall,
    ToolContext,
    composable_loop,
    register_done_tool,
    tool,
)
from looplet.tools.dispatch import run_async, run_sync


@dataclass
class Window:
    start: int
    end: int

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError("end before start")


def with_done(tools: BaseToolRegistry) -> BaseToolRegistry:
    register_done_tool(tools)
    return tools


# -- B1: exceptions ----------------------------------------------------------------------------


def test_tool_exception_is_an_execution_step_with_type_and_message(drive: Any) -> None:
    tools = BaseToolRegistry()

    @tools.tool
    def divide(a: int, b: int) -> float:
        """Divide."""
        return a / b

    llm = MockLLMBackend([as_text("divide", a=1, b=0), done()])
    steps, result = drive(llm, tools=with_done(tools))
    res = steps[0].tool_result
    assert res.error_kind == ErrorKind.EXECUTION and not res.retriable
    assert res.error == "ZeroDivisionError: division by zero"
    assert res.metadata["exception"] == "ZeroDivisionError"
    assert (
        "Error (execution): ZeroDivisionError: division by zero"
        in llm.calls[1].messages[-1].content
    )
    assert result.stop_reason == "done"


def test_secrets_in_a_tool_exception_are_redacted_everywhere(
    drive: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # B1 with canaries: a key-shaped token and the value of a *_API_KEY env var
    env_secret = "canary-env-value-7f3a9c"
    token = "sk-proj-abcdefghijklmnop1234567890"
    monkeypatch.setenv("ACME_API_KEY", env_secret)
    tools = BaseToolRegistry()

    @tools.tool
    def connect(dsn: str) -> str:
        """Connect."""
        raise ConnectionError(
            f"auth failed with {token} and {env_secret} for postgres://u:hunter2@db/x"
        )

    caplog.set_level(logging.INFO, logger="looplet.tools")
    llm = MockLLMBackend([as_text("connect", dsn="x"), done()])
    steps, _ = drive(llm, tools=with_done(tools))
    error = steps[0].tool_result.error or ""
    assert error.startswith("ConnectionError: auth failed with [REDACTED]")
    sinks = [
        error,
        steps[0].pretty(),
        llm.calls[1].messages[-1].content,
        llm.last_prompt,
        caplog.text,
    ]
    for sink in sinks:
        for secret in (token, env_secret, "hunter2"):
            assert secret not in sink
    assert "Traceback" in caplog.text and "Traceback" not in llm.last_prompt


def test_long_exception_messages_are_cut(drive: Any) -> None:
    tools = BaseToolRegistry()

    @tools.tool
    def noisy() -> None:
        """Fail loudly."""
        raise ValueError("x" * 10_000)

    steps, _ = drive(MockLLMBackend([as_text("noisy"), done()]), tools=with_done(tools))
    error = steps[0].tool_result.error or ""
    assert error.startswith("ValueError: xxx") and len(error) <= 4000 and error.endswith("…")


def test_exception_without_a_message_shows_the_type(drive: Any) -> None:
    tools = BaseToolRegistry()

    @tools.tool
    def quiet() -> None:
        """Fail quietly."""
        raise KeyError

    steps, _ = drive(MockLLMBackend([as_text("quiet"), done()]), tools=with_done(tools))
    assert steps[0].tool_result.error == "KeyError"


# -- B2: exceptions that must not become errors, and one that must ------------------------------


def test_system_exit_from_a_tool_is_an_execution_error(drive: Any) -> None:
    tools = BaseToolRegistry()

    @tools.tool
    def quit_app() -> None:
        """Exit."""
        sys.exit(3)

    steps, result = drive(MockLLMBackend([as_text("quit_app"), done()]), tools=with_done(tools))
    res = steps[0].tool_result
    assert res.error_kind == ErrorKind.EXECUTION and "SystemExit" in (res.error or "")
    assert "exit(3)" in (res.error or "") and result.stop_reason == "done"


def test_generator_exit_from_a_tool_is_an_execution_error(drive: Any) -> None:
    tools = BaseToolRegistry()

    @tools.tool
    def odd() -> None:
        """Raise GeneratorExit."""
        raise GeneratorExit

    steps, result = drive(MockLLMBackend([as_text("odd"), done()]), tools=with_done(tools))
    assert steps[0].tool_result.error_kind == ErrorKind.EXECUTION and result.stop_reason == "done"


@pytest.mark.parametrize("timeout_s", [None, 5.0])
def test_generator_exit_or_system_exit_from_an_async_tool_is_an_execution_error(
    drive: Any, timeout_s: Any
) -> None:
    tools = BaseToolRegistry()

    @tools.tool(timeout_s=timeout_s)
    async def agen_exit() -> None:
        """Raise GeneratorExit."""
        await asyncio.sleep(0)
        raise GeneratorExit

    @tools.tool(timeout_s=timeout_s)
    async def aexit() -> None:
        """Exit."""
        raise SystemExit(2)

    script = [as_text("agen_exit"), as_text("aexit"), done()]
    steps, result = drive(MockLLMBackend(script), tools=with_done(tools))
    assert [s.tool_result.error_kind for s in steps[:2]] == [ErrorKind.EXECUTION] * 2
    assert result.stop_reason == "done"


def test_a_failing_argument_conversion_is_an_execution_error(drive: Any) -> None:
    tools = BaseToolRegistry()

    @tools.tool
    def plot(window: Window) -> int:
        """Plot a window."""
        return window.end - window.start

    @tools.tool(timeout_s=10)
    def plot_timed(window: Window) -> int:
        """Plot a window, with a limit."""
        return window.end - window.start

    bad = {"start": 5, "end": 1}
    script = [as_text("plot", window=bad), as_text("plot_timed", window=bad), done()]
    steps, _ = drive(MockLLMBackend(script), tools=with_done(tools))
    for step in steps[:2]:
        assert step.tool_result.error == "ValueError: end before start"


@pytest.mark.parametrize("timeout_s", [None, 5.0])
def test_keyboard_interrupt_from_a_tool_propagates_after_cleanup(
    drive: Any, timeout_s: Any
) -> None:
    tools = BaseToolRegistry()

    @tools.tool(timeout_s=timeout_s)
    def interrupt() -> None:
        """Ctrl-C."""
        raise KeyboardInterrupt

    ended: list[str | None] = []

    class End:
        def on_loop_end(self, state: Any, *args: Any) -> None:
            ended.append(state.stop_reason)

    with pytest.raises(KeyboardInterrupt):
        drive(MockLLMBackend([as_text("interrupt"), done()]), tools=with_done(tools), hooks=[End()])
    assert ended == ["cancelled"]


def test_keyboard_interrupt_from_the_backend_propagates_and_nothing_is_recorded(drive: Any) -> None:
    # D1 (in-process): no partial step; on_loop_end ran once
    tools = with_done(BaseToolRegistry())
    ended: list[Any] = []

    class End:
        def on_loop_end(self, state: Any, *args: Any) -> None:
            ended.append(list(state.steps))

    with pytest.raises(KeyboardInterrupt):
        drive(MockLLMBackend([KeyboardInterrupt()]), tools=tools, hooks=[End()])
    assert ended == [[]]


def test_cancelled_error_from_an_async_tool_propagates() -> None:
    from looplet import arun_loop

    tools = BaseToolRegistry()

    @tools.tool
    async def cancel_me() -> None:
        """Raise CancelledError."""
        raise asyncio.CancelledError

    ended: list[Any] = []

    class End:
        def on_loop_end(self, state: Any, *args: Any) -> None:
            ended.append(state.stop_reason)

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(arun_loop(MockLLMBackend([as_text("cancel_me")]), tools=tools, hooks=[End()], task="t"))
    assert ended == ["cancelled"]


# -- B3: time limits ---------------------------------------------------------------------------


def test_sync_tool_past_its_limit_is_orphaned_and_refuses_new_calls_until_it_ends(
    drive: Any,
) -> None:
    release = threading.Event()
    finished = threading.Event()
    tools = BaseToolRegistry()

    @tools.tool(timeout_s=0.05)
    def stuck(n: int) -> int:
        """Block until released."""
        if n == 0:
            release.wait(30)
            finished.set()
        return n

    def free_it() -> Any:
        release.set()
        assert finished.wait(10)
        spec = tools.get("stuck")
        assert spec is not None
        for _ in range(1000):  # the worker decrements the count just after the tool returns
            if spec.orphans == 0:
                break
            threading.Event().wait(0.005)
        return as_text("stuck", n=2)

    script = iter([as_text("stuck", n=0), as_text("stuck", n=1), None, done()])

    def answer(request: Any) -> Any:
        item = next(script)
        return free_it() if item is None else item

    from looplet import FunctionBackend

    steps, _ = drive(FunctionBackend(answer), tools=with_done(tools))
    first, second, third = (s.tool_result for s in steps[:3])
    assert first.error_kind == ErrorKind.TIMEOUT and first.metadata["orphaned"] is True
    assert first.retriable and "may still be running" in (first.error or "")
    assert second.error_kind == ErrorKind.BUSY and second.retriable
    assert third.ok and third.data == {"result": 2}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_async_tool_past_its_limit_is_really_cancelled(mode: str) -> None:
    # B3: the marker the tool would write after its deadline never appears
    events: list[str] = []
    tools = BaseToolRegistry()

    @tools.tool(timeout_s=0.05)
    async def slow() -> str:
        """Wait for a long time."""
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        events.append("marker")
        return "late"

    llm = MockLLMBackend([as_text("slow"), done()])
    if mode == "sync":
        steps = list(composable_loop(llm, tools=with_done(tools), task="t"))
    else:
        from looplet import async_composable_loop

        async def main() -> list[Any]:
            return [s async for s in async_composable_loop(llm, tools=with_done(tools), task="t")]

        steps = asyncio.run(main())
    res = steps[0].tool_result
    assert res.error_kind == ErrorKind.TIMEOUT and res.metadata["orphaned"] is False
    assert "was cancelled" in (res.error or "")
    assert events == ["cancelled"]


def test_default_tool_timeout_comes_from_the_config_and_the_tools_own_wins(drive: Any) -> None:
    release = threading.Event()
    tools = BaseToolRegistry()

    @tools.tool
    def waits() -> str:
        """Block."""
        release.wait(30)
        return "x"

    @tools.tool(timeout_s=30)
    def patient() -> str:
        """Slower than the run's default limit, well within its own."""
        threading.Event().wait(0.3)  # 6x the config's 0.05 s: only its own limit lets it finish
        return "ok"

    llm = MockLLMBackend([as_text("waits"), as_text("patient"), done()])
    try:
        steps, _ = drive(llm, tools=with_done(tools), config=LoopConfig(tool_timeout_s=0.05))
    finally:
        release.set()
    assert steps[0].tool_result.error_kind == ErrorKind.TIMEOUT and "0.05s" in (
        steps[0].tool_result.error or ""
    )
    assert steps[1].tool_result.ok, steps[1].tool_result.error  # its own 30 s limit won over 0.05 s


def test_a_tools_own_timeout_error_is_an_execution_error_not_a_time_limit(drive: Any) -> None:
    tools = BaseToolRegistry()

    @tools.tool
    def fetch() -> str:
        """Fetch something."""
        raise TimeoutError("upstream timed out after 30s")

    @tools.tool
    async def afetch() -> str:
        """Fetch something, async."""
        raise TimeoutError("upstream timed out")

    @tools.tool(timeout_s=10)
    async def afetch_limited() -> str:
        """Fetch something, async, with a limit."""
        raise TimeoutError("upstream timed out")

    script = [as_text("fetch"), as_text("afetch"), as_text("afetch_limited"), done()]
    steps, _ = drive(MockLLMBackend(script), tools=with_done(tools))
    for step in steps[:3]:
        assert step.tool_result.error_kind == ErrorKind.EXECUTION, step.tool_result.error
        assert (step.tool_result.error or "").startswith("TimeoutError: upstream timed out")


def test_timed_tool_that_finishes_in_time_returns_normally(drive: Any) -> None:
    tools = BaseToolRegistry()

    @tools.tool(timeout_s=30)
    def quick(x: int) -> int:
        """Return x."""
        return x

    @tools.tool(timeout_s=30)
    def broken() -> int:
        """Raise."""
        raise ValueError("bad")

    steps, _ = drive(
        MockLLMBackend([as_text("quick", x=4), as_text("broken"), done()]), tools=with_done(tools)
    )
    assert steps[0].tool_result.data == {"result": 4}
    assert steps[1].tool_result.error == "ValueError: bad"


# -- concurrency and B8 --------------------------------------------------------------------------


def test_concurrent_safe_calls_in_one_turn_overlap_and_come_back_in_order(drive: Any) -> None:
    # If the three calls ran one after another, the barrier would break and each call would fail.
    barrier = threading.Barrier(3, timeout=10)
    tools = BaseToolRegistry()

    @tools.tool(concurrent_safe=True)
    def fetch(url: str) -> str:
        """Fetch a URL."""
        barrier.wait()
        return f"page {url}"

    reply = batch(("fetch", {"url": "a"}), ("fetch", {"url": "b"}), ("fetch", {"url": "c"}))
    steps, _ = drive(MockLLMBackend([reply, done()]), tools=with_done(tools))
    assert [s.tool_result.data for s in steps[:3]] == [{"result": f"page {u}"} for u in "abc"]
    tool_msgs = [m for m in drive.loop.history if m.role == "tool"]
    assert [m.content for m in tool_msgs[:3]] == [
        '{"result":"page a"}',
        '{"result":"page b"}',
        '{"result":"page c"}',
    ]


def test_concurrent_async_tools_overlap(drive: Any) -> None:
    barrier = threading.Barrier(2, timeout=10)
    tools = BaseToolRegistry()

    @tools.tool(concurrent_safe=True)
    async def afetch(url: str) -> str:
        """Fetch a URL."""
        await asyncio.to_thread(barrier.wait)
        return url

    reply = batch(("afetch", {"url": "a"}), ("afetch", {"url": "b"}))
    steps, _ = drive(MockLLMBackend([reply, done()]), tools=with_done(tools))
    assert [s.tool_result.data for s in steps[:2]] == [{"result": "a"}, {"result": "b"}]


def test_tools_not_marked_concurrent_safe_run_one_at_a_time(drive: Any) -> None:
    active = {"now": 0, "max": 0}
    lock = threading.Lock()
    tools = BaseToolRegistry()

    entered = threading.Event()

    @tools.tool
    def write(n: int) -> int:
        """Write; lingers so that a concurrent sibling would be seen."""
        with lock:
            active["now"] += 1
            active["max"] = max(active["max"], active["now"])
        entered.set()
        threading.Event().wait(0.05)  # a sibling started at the same time would overlap here
        with lock:
            active["now"] -= 1
        return n

    reply = [native("write", n=i) for i in range(5)]
    drive(MockLLMBackend([reply, done()]), tools=with_done(tools))
    assert active["max"] == 1


def test_one_failing_or_hanging_call_in_a_parallel_batch_keeps_its_siblings(drive: Any) -> None:
    # B8
    release = threading.Event()
    tools = BaseToolRegistry()

    @tools.tool(concurrent_safe=True)
    def ok(x: int) -> int:
        """Fine."""
        return x

    @tools.tool(concurrent_safe=True)
    def fails() -> int:
        """Raise."""
        raise RuntimeError("boom")

    @tools.tool(concurrent_safe=True, timeout_s=0.05)
    def hangs() -> int:
        """Hang."""
        release.wait(30)
        return 0

    reply = batch(("ok", {"x": 1}), ("fails", {}), ("hangs", {}), ("ok", {"x": 2}))
    try:
        steps, _ = drive(MockLLMBackend([reply, done()]), tools=with_done(tools))
    finally:
        release.set()
    kinds = [s.tool_result.error_kind for s in steps[:4]]
    assert kinds == [None, ErrorKind.EXECUTION, ErrorKind.TIMEOUT, None]
    assert [s.tool_result.data for s in (steps[0], steps[3])] == [{"result": 1}, {"result": 2}]
    ids = [s.tool_call.call_id for s in steps[:4]]
    assert [s.tool_result.call_id for s in steps[:4]] == ids


# -- async tools, ToolContext ----------------------------------------------------------------------


def test_async_tools_work_in_both_loops(drive: Any) -> None:
    tools = BaseToolRegistry()

    @tools.tool
    async def add(a: int, b: int) -> int:
        """Add."""
        await asyncio.sleep(0)
        return a + b

    steps, _ = drive(MockLLMBackend([as_text("add", a=2, b=3), done()]), tools=with_done(tools))
    assert steps[0].tool_result.data == {"result": 5}


def test_async_tool_in_the_sync_loop_inside_a_running_event_loop() -> None:
    tools = BaseToolRegistry()

    @tools.tool
    async def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    async def main() -> Any:
        # a sync loop driven from async code: the tool gets its own event loop in a thread
        return composable_loop(
            MockLLMBackend([as_text("add", a=1, b=1), done()]), tools=with_done(tools), task="t"
        ).run()

    result = asyncio.run(main())
    assert result.steps[0].tool_result.data == {"result": 2}


def test_tool_context_is_injected_and_warn_reaches_the_result(drive: Any) -> None:
    tools = BaseToolRegistry()
    seen: list[ToolContext] = []

    @tools.tool
    def careful(path: str, ctx: ToolContext) -> str:
        """Read carefully."""
        seen.append(ctx)
        ctx.warn("file is large; showing the head")
        ctx.report_progress("reading", 0.5)
        ctx.metadata["touched"] = path
        return "head"

    llm = MockLLMBackend([as_text("careful", path="a.txt"), done()])
    steps, _ = drive(llm, tools=with_done(tools), task="t")
    res = steps[0].tool_result
    assert res.warnings == ["file is large; showing the head"]
    assert "Warnings: file is large; showing the head" in llm.calls[1].messages[-1].content
    ctx = seen[0]
    assert ctx.llm is llm and ctx.tool == "careful" and ctx.step == 1
    assert ctx.call_id == steps[0].tool_call.call_id and ctx.progress == [("reading", 0.5)]
    assert res.metadata["progress"] == [["reading", 0.5]]  # kept in the step, JSON-safe
    assert drive.loop.state.metadata["touched"] == "a.txt"
    assert "ctx" not in tools.get("careful").parameters["properties"]  # type: ignore[union-attr]


def test_warnings_survive_a_failing_tool(drive: Any) -> None:
    tools = BaseToolRegistry()

    @tools.tool
    def shaky(ctx: ToolContext) -> str:
        """Warn, then fail."""
        ctx.warn("retrying once")
        raise OSError("disk full")

    steps, _ = drive(MockLLMBackend([as_text("shaky"), done()]), tools=with_done(tools))
    assert steps[0].tool_result.warnings == ["retrying once"]


def test_context_parameter_found_by_annotation_under_any_name(drive: Any) -> None:
    tools = BaseToolRegistry()

    @tools.tool
    def named(x: int, context: ToolContext) -> int:
        """Use the context."""
        return context.step + x

    steps, _ = drive(MockLLMBackend([as_text("named", x=10), done()]), tools=with_done(tools))
    assert steps[0].tool_result.data == {"result": 11}


def test_the_loops_approver_answers_tools(drive: Any) -> None:
    tools = BaseToolRegistry()
    asked: list[str] = []

    @tools.tool
    def delete(path: str, ctx: ToolContext) -> dict[str, Any]:
        """Delete a file, if a human agrees."""
        return {"deleted": ctx.approve(f"delete {path}?")}

    def approver(question: str) -> bool:
        asked.append(question)
        return question.endswith("tmp.txt?")

    llm = MockLLMBackend([as_text("delete", path="tmp.txt"), as_text("delete", path="notes.md"), done()])
    steps, _ = drive(llm, tools=with_done(tools), task="t", approver=approver)
    assert [s.tool_result.data for s in steps[:2]] == [{"deleted": True}, {"deleted": False}]
    assert asked == ["delete tmp.txt?", "delete notes.md?"]


def test_tool_context_approve_fails_closed() -> None:
    ctx = ToolContext()
    assert ctx.approve("delete?") is False and "no approver" in ctx.warnings[0]
    ctx = ToolContext(approver=lambda q: True)
    assert ctx.approve("ok?") is True

    def broken(question: str) -> bool:
        raise RuntimeError("ui gone")

    ctx = ToolContext(approver=broken)
    assert ctx.approve("ok?") is False and "treated as a refusal" in ctx.warnings[0]
    got: list[Any] = []
    ctx = ToolContext(on_progress=lambda m, f: got.append((m, f)))
    ctx.report_progress("half", 0.5)
    assert got == [("half", 0.5)]


def test_cancel_token_stops_the_run_between_steps(drive: Any) -> None:
    token = CancelToken()
    tools = BaseToolRegistry()

    @tools.tool
    def stop_soon(ctx: ToolContext) -> str:
        """Cancel the run from inside."""
        ctx.cancel_token.cancel("user pressed stop")
        return "ok"

    script = [as_text("stop_soon"), done()]
    steps, result = drive(MockLLMBackend(script), tools=with_done(tools), cancel_token=token)
    assert len(steps) == 1 and steps[0].tool_result.ok
    assert result.stop_reason == StopReason.CANCELLED and result.detail == "user pressed stop"
    # the run's token is linked below yours: the run stopping does not cancel your token
    assert not token.cancelled and "cancelled=False" in repr(token)


def test_your_cancel_token_cancels_the_run_and_what_its_tools_see(drive: Any) -> None:
    token = CancelToken()
    tools = BaseToolRegistry()
    seen: list[bool] = []

    @tools.tool
    def check(ctx: ToolContext) -> str:
        """Cancel from outside, then look at the token the tool holds."""
        token.cancel("user pressed stop")
        seen.append(ctx.cancel_token.cancelled and ctx.cancel_token.wait(0))
        return "ok"

    llm = MockLLMBackend([as_text("check"), done()])
    steps, result = drive(llm, tools=with_done(tools), cancel_token=token)
    assert seen == [True] and len(steps) == 1
    assert result.stop_reason == StopReason.CANCELLED and result.detail == "user pressed stop"


def test_cancel_token_drops_the_rest_of_a_batch(drive: Any) -> None:
    token = CancelToken()
    tools = BaseToolRegistry()
    ran: list[int] = []

    @tools.tool
    def step(n: int) -> int:
        """Run and cancel."""
        ran.append(n)
        token.cancel()
        return n

    reply = [native("step", n=1), native("step", n=2)]
    steps, result = drive(MockLLMBackend([reply]), tools=with_done(tools), cancel_token=token)
    assert ran == [1] and result.stop_reason == "cancelled"
    assert [c.args for c in result.dropped_calls] == [{"n": 2}]


def test_cancel_before_the_start_makes_no_llm_call(drive: Any) -> None:
    token = CancelToken()
    token.cancel()
    llm = MockLLMBackend([])
    _, result = drive(llm, tools=with_done(BaseToolRegistry()), cancel_token=token)
    assert llm.calls == [] and result.stop_reason == "cancelled" and result.detail == "cancelled"


# -- B7 aliasing ----------------------------------------------------------------------------------


def test_tool_mutating_its_args_does_not_change_the_recorded_call(drive: Any) -> None:
    tools = BaseToolRegistry()
    shared = {"items": [1, 2]}

    @tools.tool
    def mutate(data: dict, items: list[int]) -> dict:
        """Mutate everything."""
        data["added"] = True
        items.append(99)
        return shared

    call = '{"tool": "mutate", "args": {"data": {"a": 1}, "items": [1]}}'
    steps, _ = drive(MockLLMBackend([call, done()]), tools=with_done(tools))
    assert steps[0].tool_call.args == {"data": {"a": 1}, "items": [1]}
    shared["items"].append(3)
    assert steps[0].tool_result.data == {"items": [1, 2]}, "the result is a snapshot"


# -- the runners on their own -------------------------------------------------------------------------


def test_run_sync_and_run_async_agree() -> None:
    @tool
    def double(x: int) -> int:
        """Double x."""
        return 2 * x

    tools = BaseToolRegistry([double])
    prepared = tools.prepare(ToolCall("double", {"x": 4}, call_id="c"))
    assert not hasattr(prepared, "error")
    a = run_sync(prepared, None)  # type: ignore[arg-type]
    b = asyncio.run(run_async(prepared, None))  # type: ignore[arg-type]
    assert a.data == b.data == {"result": 8} and a.call_id == b.call_id == "c"
    assert a.args_summary == "x=4"


# -- the run's deadline, cancellation, orphans, ContextVars, scratch --------------------------------


def test_the_run_deadline_bounds_a_slow_tool_even_without_a_time_limit(drive: Any) -> None:
    release = threading.Event()
    tools = BaseToolRegistry()

    @tools.tool
    async def slow() -> str:
        """Longer than the whole run may take."""
        await asyncio.sleep(30)
        return "late"

    try:
        steps, result = drive(
            MockLLMBackend([as_text("slow"), done()]),
            tools=with_done(tools),
            config=LoopConfig(deadline_s=0.3),
        )
    finally:
        release.set()
    assert steps[0].tool_result.error_kind == ErrorKind.TIMEOUT
    assert result.stop_reason == StopReason.DEADLINE


def test_the_request_carries_the_runs_deadline_for_the_backends_retry_waits(drive: Any) -> None:
    import time

    llm = MockLLMBackend([done()])
    before = time.monotonic()
    drive(llm, tools=with_done(BaseToolRegistry()), config=LoopConfig(deadline_s=50))
    deadline = llm.calls[0].deadline
    assert deadline is not None and before + 49 < deadline < time.monotonic() + 50
    llm = MockLLMBackend([done()])
    drive(llm, tools=with_done(BaseToolRegistry()))
    assert llm.calls[0].deadline is None


def test_cancelling_the_async_loop_fires_the_token_the_backend_and_tools_hold() -> None:
    seen: list[CancelToken] = []
    started = threading.Event()

    class Waiting:
        def complete(self, request: Any) -> Any:
            seen.append(request.cancel_token)
            started.set()
            request.cancel_token.wait(10)  # like a backend waiting out a 429
            from looplet import LLMError

            raise LLMError("rate limited", kind="rate_limit")

    async def main() -> None:
        from looplet import async_composable_loop

        loop = async_composable_loop(Waiting(), tools=with_done(BaseToolRegistry()), task="t")

        async def consume() -> None:
            async for _ in loop:
                pass

        task = asyncio.create_task(consume())
        await asyncio.to_thread(started.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert seen and seen[0].cancelled


def test_breaking_out_of_the_sync_loop_fires_the_token_a_tool_thread_holds() -> None:
    tokens: list[CancelToken] = []
    tools = BaseToolRegistry()

    @tools.tool
    def hold(ctx: ToolContext) -> str:
        """Keep the token."""
        tokens.append(ctx.cancel_token)
        return "ok"

    loop = composable_loop(MockLLMBackend([as_text("hold")] * 3), tools=tools, task="t")
    for _ in loop:
        break
    assert not tokens[0].cancelled
    loop.close()
    assert tokens[0].cancelled


def test_a_timed_out_call_does_not_make_its_batch_siblings_busy(drive: Any) -> None:
    release = threading.Event()
    tools = BaseToolRegistry()
    ran: list[int] = []

    @tools.tool(timeout_s=0.05, concurrent_safe=True)
    def fetch(n: int) -> int:
        """The first call hangs; the others are quick."""
        if n == 0:
            release.wait(30)
        ran.append(n)
        return n

    reply = [native("fetch", n=i) for i in range(4)]
    try:
        steps, _ = drive(
            MockLLMBackend([reply, done()]), tools=with_done(tools), config=LoopConfig(max_concurrency=1)
        )
    finally:
        release.set()
    kinds = [s.tool_result.error_kind for s in steps[:4]]
    assert kinds == [ErrorKind.TIMEOUT, None, None, None]
    assert sorted(ran[:3]) == [1, 2, 3]


def test_a_later_run_sharing_the_registry_is_warned_not_refused_about_an_orphan(drive: Any) -> None:
    release = threading.Event()
    tools = BaseToolRegistry()

    @tools.tool(timeout_s=0.05)
    def stuck(n: int) -> int:
        """Hangs when n is 0."""
        if n == 0:
            release.wait(30)
        return n

    registry = with_done(tools)
    try:
        first, _ = drive(MockLLMBackend([as_text("stuck", n=0), done()]), tools=registry)
        second, _ = drive(MockLLMBackend([as_text("stuck", n=1), done()]), tools=registry)
    finally:
        release.set()
    assert first[0].tool_result.metadata["orphaned"] is True
    assert second[0].tool_result.ok and second[0].tool_result.data == {"result": 1}
    assert any("in another run" in w for w in second[0].tool_result.warnings)


def test_tools_of_a_concurrent_batch_see_the_callers_context_variables(drive: Any) -> None:
    import contextvars

    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")
    tools = BaseToolRegistry()

    @tools.tool(concurrent_safe=True)
    def which(n: int) -> str:
        """Report the caller's request id."""
        return request_id.get()

    token = request_id.set("req-42")
    try:
        llm = MockLLMBackend([[native("which", n=i) for i in range(3)], done()])
        steps, _ = drive(llm, tools=with_done(tools))
    finally:
        request_id.reset(token)
    assert [s.tool_result.data for s in steps[:3]] == [{"result": "req-42"}] * 3


def test_each_call_of_a_concurrent_batch_has_its_own_scratch(drive: Any) -> None:
    tools = BaseToolRegistry()

    @tools.tool(concurrent_safe=True)
    def fetch(url: str) -> str:
        """Fetch."""
        return url

    seen: list[tuple[str, Any]] = []

    class Stamp:
        def pre_dispatch(self, state: Any, log: Any, call: ToolCall, step: int) -> None:
            assert state.scratch == {}, "a call starts with an empty scratch"
            state.scratch["url"] = call.args["url"]

        def post_dispatch(self, state: Any, log: Any, call: ToolCall, result: Any, step: int) -> None:
            seen.append((call.args["url"], state.scratch.get("url")))

    reply = batch(("fetch", {"url": "a"}), ("fetch", {"url": "b"}), ("fetch", {"url": "c"}))
    drive(MockLLMBackend([reply, done()]), tools=with_done(tools), hooks=[Stamp()])
    assert seen[:3] == [("a", "a"), ("b", "b"), ("c", "c")]


def test_a_cancel_token_shared_by_many_runs_does_not_keep_their_tokens(drive: Any) -> None:
    token = CancelToken()
    for _ in range(5):
        drive(MockLLMBackend([done()]), tools=with_done(BaseToolRegistry()), cancel_token=token)
    assert token._children == [] and not token.cancelled
