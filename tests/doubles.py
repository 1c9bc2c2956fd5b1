"""Test doubles shared by the suite: a driver for both loops, a recording hook, small tool kits."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from looplet import (
    AsyncLoop,
    BaseToolRegistry,
    Loop,
    RunResult,
    Step,
    ToolCall,
    async_composable_loop,
    composable_loop,
    register_done_tool,
)


class Driver:
    """Runs a loop to its end (or for `k` steps) with the sync or the async driver.

    `loop` is the last `Loop` / `AsyncLoop` built, for reading its history and state.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.loop: Loop | AsyncLoop | None = None

    @property
    def is_async(self) -> bool:
        return self.mode == "async"

    def __call__(self, llm: Any, **kwargs: Any) -> tuple[list[Step], RunResult]:
        return self.take(llm, None, **kwargs)

    def take(self, llm: Any, k: int | None, **kwargs: Any) -> tuple[list[Step], RunResult]:
        """Iterate at most `k` steps (all when None), then close the loop; returns (steps, result)."""
        if kwargs.get("task") is None and kwargs.get("state") is None and kwargs.get("history") is None:
            kwargs["task"] = "the task"
        if self.mode == "sync":
            loop = composable_loop(llm, **kwargs)
            self.loop = loop
            steps: list[Step] = []
            for step in loop:
                steps.append(step)
                if k is not None and len(steps) >= k:
                    break
            loop.close()
            assert loop.result is not None
            return steps, loop.result

        async def main() -> tuple[list[Step], RunResult]:
            aloop = async_composable_loop(llm, **kwargs)
            self.loop = aloop
            out: list[Step] = []
            async for step in aloop:
                out.append(step)
                if k is not None and len(out) >= k:
                    break
            await aloop.aclose()
            assert aloop.result is not None
            return out, aloop.result

        return asyncio.run(main())


def as_text(tool: str, **args: Any) -> str:
    """A tool call as the JSON text a model writes."""
    return json.dumps({"tool": tool, "args": args})


def batch(*calls: tuple[str, dict[str, Any]]) -> str:
    """Several calls in one reply, in the documented batch format."""
    return json.dumps({"tools": [{"tool": name, "args": args} for name, args in calls]})


def native(tool: str, call_id: str = "", **args: Any) -> ToolCall:
    return ToolCall(tool=tool, args=args, call_id=call_id)


def done(answer: str = "finished") -> str:
    return as_text("done", answer=answer)


class Recorder:
    """A hook with every method; records (method, detail) and returns what `answers` says."""

    def __init__(self, answers: dict[str, Any] | None = None) -> None:
        self.events: list[tuple[str, Any]] = []
        self.answers = answers or {}

    def _answer(self, method: str) -> Any:
        value = self.answers.get(method)
        return value() if callable(value) else value

    def pre_loop(self, state: Any, log: Any, ctx: Any) -> Any:
        self.events.append(("pre_loop", None))

    def pre_prompt(self, state: Any, log: Any, ctx: Any, step: int) -> Any:
        self.events.append(("pre_prompt", step))
        return self._answer("pre_prompt")

    def pre_dispatch(self, state: Any, log: Any, tool_call: ToolCall, step: int) -> Any:
        self.events.append(("pre_dispatch", tool_call.tool))
        return self._answer("pre_dispatch")

    def post_dispatch(
        self, state: Any, log: Any, tool_call: ToolCall, tool_result: Any, step: int
    ) -> Any:
        self.events.append(("post_dispatch", tool_call.tool))
        return self._answer("post_dispatch")

    def check_done(self, state: Any, log: Any, ctx: Any, step: int) -> Any:
        self.events.append(("check_done", step))
        return self._answer("check_done")

    def after_step(self, state: Any, log: Any, step: Any) -> Any:
        self.events.append(("after_step", step.number))
        return self._answer("after_step")

    def should_stop(self, state: Any, step: int) -> Any:
        self.events.append(("should_stop", step))
        return self._answer("should_stop")

    def on_loop_end(self, state: Any, log: Any, ctx: Any, llm: Any) -> Any:
        self.events.append(("on_loop_end", state.stop_reason))

    def count(self, method: str) -> int:
        return sum(1 for name, _ in self.events if name == method)


def greeting_tools(
    *, with_done: bool = True, concurrent_safe: bool = False
) -> tuple[BaseToolRegistry, list[str]]:
    """A registry with `greet` (records who it greeted) and, by default, `done`."""
    tools = BaseToolRegistry()
    greeted: list[str] = []

    @tools.tool(concurrent_safe=concurrent_safe)
    def greet(name: str) -> dict[str, str]:
        """Greet someone by name."""
        greeted.append(name)
        return {"greeting": f"Hello, {name}!"}

    if with_done:
        register_done_tool(tools)
    return tools, greeted
