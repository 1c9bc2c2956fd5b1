"""Interruption and life cycle: break at every step, throw, async cancellation (rows D3, D4, D6, D9)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from doubles import Recorder, as_text, batch, done

from looplet import (
    AsyncFunctionBackend,
    BaseToolRegistry,
    LLMRequest,
    MockLLMBackend,
    async_composable_loop,
    composable_loop,
    register_done_tool,
)


def counting_tools() -> tuple[BaseToolRegistry, list[int]]:
    tools = BaseToolRegistry()
    ran: list[int] = []

    @tools.tool
    def side_effect(n: int) -> int:
        """Write something somewhere."""
        ran.append(n)
        return n

    register_done_tool(tools)
    return tools, ran


SCRIPT = [
    as_text("side_effect", n=1),
    batch(("side_effect", {"n": 2}), ("side_effect", {"n": 3}), ("side_effect", {"n": 4})),
    as_text("side_effect", n=5),
    done(),
]


@pytest.mark.parametrize("k", range(0, 7))
def test_break_after_every_step_runs_nothing_more_and_ends_once(drive: Any, k: int) -> None:
    # D3: each yielded step is already in the state; nothing after it runs; on_loop_end once
    tools, ran = counting_tools()
    hook = Recorder()
    steps, result = drive.take(MockLLMBackend(SCRIPT), k if k else None, tools=tools, hooks=[hook])
    if k == 0 or k >= 6:
        assert result.stop_reason == "done" and ran == [1, 2, 3, 4, 5]
    else:
        assert len(steps) == k and ran == list(range(1, k + 1))
        assert result.stop_reason == "cancelled"
    assert drive.loop.state.steps == steps
    assert hook.count("on_loop_end") == 1


def test_throw_into_the_loop_propagates_after_cleanup() -> None:
    # D4
    tools, ran = counting_tools()
    hook = Recorder()
    loop = composable_loop(MockLLMBackend(SCRIPT), tools=tools, hooks=[hook], task="t")
    next(loop)
    with pytest.raises(ValueError, match="consumer gave up"):
        loop.throw(ValueError("consumer gave up"))
    assert ran == [1] and hook.count("on_loop_end") == 1
    assert loop.result is not None and loop.result.stop_reason == "cancelled"
    assert isinstance(loop.result.error, ValueError)
    with pytest.raises(StopIteration):
        next(loop)


def test_athrow_into_the_async_loop_propagates_after_cleanup() -> None:
    tools, ran = counting_tools()
    hook = Recorder()

    async def main() -> Any:
        loop = async_composable_loop(MockLLMBackend(SCRIPT), tools=tools, hooks=[hook], task="t")
        await loop.__anext__()
        with pytest.raises(ValueError):
            await loop.athrow(ValueError("stop"))
        return loop

    loop = asyncio.run(main())
    assert ran == [1] and hook.count("on_loop_end") == 1
    assert loop.result.stop_reason == "cancelled"


def test_send_none_advances_like_next() -> None:
    tools, _ = counting_tools()
    loop = composable_loop(MockLLMBackend(SCRIPT), tools=tools, task="t")
    assert loop.send(None).number == 1
    loop.close()


def test_closing_a_loop_that_never_started_runs_nothing() -> None:
    tools, ran = counting_tools()
    hook = Recorder()
    llm = MockLLMBackend(SCRIPT)
    loop = composable_loop(llm, tools=tools, hooks=[hook], task="t")
    loop.close()
    assert llm.calls == [] and hook.events == [] and ran == []


# -- D6: async cancellation at every await point ------------------------------------------------


class Ticks:
    """An async backend, tool and hooks that each pass through several await points."""

    def __init__(self) -> None:
        self.tool_events: list[str] = []
        self.ended = 0
        script = list(SCRIPT)

        async def answer(request: LLMRequest) -> Any:
            for _ in range(3):
                await asyncio.sleep(0)
            return script[len(self.backend.calls) - 1]

        self.backend = AsyncFunctionBackend(answer)
        self.tools = BaseToolRegistry()
        register_done_tool(self.tools)

        @self.tools.tool(concurrent_safe=True)
        async def side_effect(n: int) -> int:
            """Write, slowly."""
            self.tool_events.append(f"start {n}")
            try:
                for _ in range(3):
                    await asyncio.sleep(0)
            except asyncio.CancelledError:
                self.tool_events.append(f"cancelled {n}")
                raise
            self.tool_events.append(f"end {n}")
            return n

    async def pre_prompt(self, *args: Any) -> None:
        await asyncio.sleep(0)

    async def post_dispatch(self, *args: Any) -> None:
        await asyncio.sleep(0)

    async def on_loop_end(self, *args: Any) -> None:
        self.ended += 1
        await asyncio.sleep(0)


@pytest.mark.parametrize("ticks", range(1, 51))
def test_cancelling_the_task_at_any_await_point_propagates_and_cleans_up(ticks: int) -> None:
    env = Ticks()
    yielded: list[Any] = []
    holder: dict[str, Any] = {}

    async def consume() -> None:
        loop = async_composable_loop(env.backend, tools=env.tools, hooks=[env], task="t")
        holder["loop"] = loop
        async for step in loop:
            yielded.append(step)

    async def main() -> bool:
        task = asyncio.create_task(consume())
        for _ in range(ticks):
            await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False

    cancelled = asyncio.run(main())
    loop = holder["loop"]
    assert env.ended == 1
    # every yielded step is recorded; a tool that ran but whose step the cancellation cut
    # off before its yield is recorded too (nothing that happened is lost), and marked
    assert loop.state.steps[: len(yielded)] == yielded
    extra = loop.state.steps[len(yielded) :]
    assert all("unconcluded" in s.metadata for s in extra), extra
    assert loop.result is not None, "the result is built even when cancelled during clean-up"
    if not cancelled:
        assert loop.result.stop_reason == "done"
    elif loop.result.stop_reason == "cancelled":
        assert isinstance(loop.result.error, asyncio.CancelledError)
    else:  # cancelled inside on_loop_end, after the run had finished
        assert loop.result.stop_reason == "done"
        assert "interrupted by CancelledError" in loop.result.detail
    started = {e.split()[1] for e in env.tool_events if e.startswith("start")}
    settled = {e.split()[1] for e in env.tool_events if not e.startswith("start")}
    assert started == settled, f"a tool was left running: {env.tool_events}"
    finished = {
        str(s.tool_result.data["result"]) for s in yielded if s.tool_call.tool == "side_effect"
    }
    assert finished <= {e.split()[1] for e in env.tool_events if e.startswith("end")}


def test_interrupt_inside_on_loop_end_still_builds_the_result_and_runs_the_others(
    drive: Any,
) -> None:
    tools, _ = counting_tools()
    after = Recorder()

    class CtrlC:
        def on_loop_end(self, *args: Any) -> None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        drive(MockLLMBackend([done()]), tools=tools, hooks=[CtrlC(), after])
    assert after.count("on_loop_end") == 1
    result = drive.loop.result
    assert result is not None and result.stop_reason == "done"
    assert (
        "CtrlC.on_loop_end raised RuntimeError: interrupted by KeyboardInterrupt" in result.detail
    )
