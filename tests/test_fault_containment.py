"""INV-1: every fault in user code ends as an error step, a documented stop reason, or a looplet
exception; only Ctrl-C and task cancellation propagate (the rule in `looplet.errors`)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from doubles import as_text, done, greeting_tools

from looplet import (
    Allow,
    AsyncFunctionBackend,
    BaseToolRegistry,
    FunctionBackend,
    LLMResponse,
    MockLLMBackend,
    ToolCall,
    ToolContext,
    ToolResult,
    Usage,
    composable_loop,
    register_done_tool,
)
from looplet.hooks import HOOK_METHODS


class CustomBase(BaseException):
    """A BaseException subclass a library might define."""


CONTAINED = [
    pytest.param(lambda: SystemExit(3), id="SystemExit"),
    pytest.param(lambda: GeneratorExit(), id="GeneratorExit"),
    pytest.param(lambda: CustomBase("odd"), id="CustomBase"),
    pytest.param(lambda: StopIteration(), id="StopIteration"),
    pytest.param(lambda: ValueError("plain"), id="Exception"),
]


def _raising_hook(slot: str, make: Any) -> object:
    def method(*args: Any) -> Any:
        raise make()

    return type(f"Raises_{slot}", (), {slot: staticmethod(method)})()


@pytest.mark.parametrize("make", CONTAINED)
@pytest.mark.parametrize("slot", HOOK_METHODS)
def test_whatever_a_hook_raises_in_any_slot_is_contained_by_both_loops(
    drive: Any, slot: str, make: Any
) -> None:
    tools, greeted = greeting_tools()
    llm = MockLLMBackend([as_text("greet", name="A"), done()])
    steps, result = drive(llm, tools=tools, hooks=[_raising_hook(slot, make)])
    name = type(make()).__name__
    if slot == "on_loop_end":  # the run's outcome stands; the failure is noted
        assert result.stop_reason == "done" and f"on_loop_end raised {name}" in result.detail
    else:
        assert result.stop_reason == "hook_error", result.detail
        assert f"Raises_{slot}.{slot} raised {name}" in str(result.error)
    if slot in ("pre_loop", "pre_prompt", "pre_dispatch"):
        assert greeted == []  # gates fail closed


@pytest.mark.parametrize("exc", [KeyboardInterrupt, asyncio.CancelledError])
def test_ctrl_c_and_cancellation_from_a_hook_propagate_after_cleanup(drive: Any, exc: Any) -> None:
    tools, _ = greeting_tools()
    ended: list[str | None] = []

    class Interrupt:
        def pre_dispatch(self, *args: Any) -> Any:
            raise exc()

        def on_loop_end(self, state: Any, *args: Any) -> None:
            ended.append(state.stop_reason)

    with pytest.raises(exc):
        drive(MockLLMBackend([as_text("greet", name="A")]), tools=tools, hooks=[Interrupt()])
    assert ended == ["cancelled"]


@pytest.mark.parametrize("timeout_s", [None, 5.0], ids=["inline", "with-time-limit"])
@pytest.mark.parametrize("make", CONTAINED)
def test_whatever_a_tool_raises_is_an_execution_error_step_in_both_loops(
    drive: Any, make: Any, timeout_s: float | None
) -> None:
    tools = BaseToolRegistry()

    @tools.tool(timeout_s=timeout_s)
    def explode() -> str:
        """Raise."""
        raise make()

    register_done_tool(tools)
    steps, result = drive(MockLLMBackend([as_text("explode"), done()]), tools=tools)
    assert steps[0].tool_result.error_kind == "execution"
    assert type(make()).__name__ in (steps[0].tool_result.error or "")
    assert result.stop_reason == "done"


BAD_RESULTS = [
    pytest.param(lambda: ToolResult("x", metadata=None), "metadata", id="metadata=None"),  # type: ignore[arg-type]
    pytest.param(lambda: ToolResult("x", duration_ms="12ms"), "duration_ms", id="duration_ms=str"),  # type: ignore[arg-type]
    pytest.param(lambda: ToolResult("x", warnings="careful"), "warnings", id="warnings=str"),  # type: ignore[arg-type]
    pytest.param(lambda: ToolResult("x", error=5), "error", id="error=int"),  # type: ignore[arg-type]
    pytest.param(lambda: ToolResult("x", retriable="yes"), "retriable", id="retriable=str"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize("slot", ["pre_dispatch", "post_dispatch"])
@pytest.mark.parametrize(("make", "field"), BAD_RESULTS)
def test_a_hook_result_with_wrong_typed_fields_stops_the_run_with_hook_error_naming_the_field(
    drive: Any, slot: str, make: Any, field: str
) -> None:
    tools, _ = greeting_tools()
    hook = type("Replace", (), {slot: staticmethod(lambda *args: make())})()
    steps, result = drive(MockLLMBackend([as_text("greet", name="A"), done()]), tools=tools, hooks=[hook])
    assert result.stop_reason == "hook_error"
    assert f"Replace.{slot}" in str(result.error) and f"whose {field} is" in str(result.error)
    assert len(steps) == 1  # the call's step is still recorded


@pytest.mark.parametrize("updated", [5, "name=A", ["A"], None.__class__])
def test_allow_with_updated_args_that_are_not_a_dict_is_a_hook_error(drive: Any, updated: Any) -> None:
    tools, greeted = greeting_tools()

    class Rewrite:
        def pre_dispatch(self, *args: Any) -> Any:
            return Allow(updated_args=updated)

    steps, result = drive(MockLLMBackend([as_text("greet", name="A")]), tools=tools, hooks=[Rewrite()])
    assert result.stop_reason == "hook_error" and "updated_args must be a dict" in str(result.error)
    assert greeted == []


BAD_RESPONSES = [
    pytest.param(lambda: LLMResponse(text=None), "LLMResponse.text as NoneType", id="text=None"),  # type: ignore[arg-type]
    pytest.param(lambda: LLMResponse(usage=None), "LLMResponse.usage as NoneType", id="usage=None"),  # type: ignore[arg-type]
    pytest.param(
        lambda: LLMResponse(tool_calls=[{"tool": "greet", "args": {}}]),  # type: ignore[list-item]
        "tool_calls[0] as dict",
        id="dict-call",
    ),
    pytest.param(lambda: LLMResponse(tool_calls=None), "tool_calls as NoneType", id="calls=None"),  # type: ignore[arg-type]
    pytest.param(
        lambda: LLMResponse(tool_calls=[ToolCall("greet", args="A")]),  # type: ignore[arg-type]
        "args=str",
        id="args=str",
    ),
    pytest.param(lambda: "a plain string", "str, not an LLMResponse", id="str"),
]


@pytest.mark.parametrize(("make", "words"), BAD_RESPONSES)
def test_a_backend_reply_of_the_wrong_shape_stops_with_llm_error_saying_what_was_wrong(
    drive: Any, make: Any, words: str
) -> None:
    tools, greeted = greeting_tools()

    class HandWritten:
        def complete(self, request: Any) -> Any:
            return make()

    steps, result = drive(HandWritten(), tools=tools)
    assert result.stop_reason == "llm_error" and words in str(result.error)
    assert getattr(result.error, "kind", None) == "bad_response" and greeted == []


def test_a_sync_backend_raising_stop_iteration_ends_both_loops_with_llm_error(drive: Any) -> None:
    tools, _ = greeting_tools()
    script = iter([as_text("greet", name="A")])

    def answer(request: Any) -> Any:
        return next(script)  # the second call raises StopIteration

    steps, result = drive(FunctionBackend(answer), tools=tools)
    assert len(steps) == 1 and result.stop_reason == "llm_error"
    assert "StopIteration" in str(result.error)


def test_an_async_backend_raising_stop_async_iteration_ends_with_llm_error() -> None:
    tools, _ = greeting_tools()

    async def answer(request: Any) -> Any:
        raise StopAsyncIteration

    async def main() -> Any:
        from looplet import arun_loop

        return await arun_loop(AsyncFunctionBackend(answer), tools=tools, task="t")

    result = asyncio.run(main())
    assert result.stop_reason == "llm_error" and "StopAsyncIteration" in str(result.error)


def test_a_backend_raising_system_exit_does_not_end_the_host(drive: Any) -> None:
    tools, _ = greeting_tools()

    def answer(request: Any) -> Any:
        raise SystemExit(1)

    _, result = drive(FunctionBackend(answer), tools=tools)
    assert result.stop_reason == "llm_error" and "SystemExit" in str(result.error)


@dataclasses.dataclass
class Half:
    ready: bool = False
    cache: dict[str, Any] = dataclasses.field(init=False)


class WarnWith:
    """A tool that warns with an exception object instead of a string."""


def test_a_tool_that_ran_is_recorded_whatever_its_value_and_warnings_are(drive: Any) -> None:
    tools = BaseToolRegistry()
    effects: list[str] = []

    @tools.tool
    def big() -> int:
        """An int over 4,300 digits."""
        effects.append("big")
        return 10**5000

    @tools.tool
    def half() -> Half:
        """A dataclass with an unset init=False field."""
        effects.append("half")
        return Half()

    @tools.tool
    def warns(ctx: ToolContext) -> str:
        """Warn with an exception object."""
        effects.append("warns")
        ctx.warn(ValueError("disk nearly full"))  # type: ignore[arg-type]
        return "ok"

    register_done_tool(tools)
    script = [as_text("big"), as_text("half"), as_text("warns"), done()]
    steps, result = drive(MockLLMBackend(script), tools=tools)
    assert effects == ["big", "half", "warns"]  # each ran exactly once
    assert [s.tool_call.tool for s in steps] == ["big", "half", "warns", "done"]
    assert result.stop_reason == "done"
    assert steps[2].tool_result.warnings == ["ValueError: disk nearly full"]
    import json

    for step in steps:  # every record stays strict JSON
        json.dumps(step.to_dict(), allow_nan=False)
    for message in drive.loop.history:
        assert isinstance(message.content, str)


def test_a_hook_exception_whose_str_fails_is_still_reported(drive: Any) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    class Hook:
        def pre_prompt(self, *args: Any) -> Any:
            raise Unprintable()

    tools, _ = greeting_tools()
    _, result = drive(MockLLMBackend([done()]), tools=tools, hooks=[Hook()])
    assert result.stop_reason == "hook_error" and "Unprintable" in str(result.error)


def test_usage_of_the_wrong_type_inside_a_reply_never_reaches_the_totals(drive: Any) -> None:
    tools, _ = greeting_tools()
    _, result = drive(
        FunctionBackend(lambda r: LLMResponse(text=done(), usage={"input_tokens": 3})),  # type: ignore[arg-type]
        tools=tools,
    )
    assert result.stop_reason == "llm_error" and result.usage == Usage()


def test_a_closed_loop_is_not_confused_with_a_hook_raising_generator_exit() -> None:
    # the loop's own close() still ends the run as cancelled, cleanly
    tools, _ = greeting_tools()
    loop = composable_loop(MockLLMBackend([as_text("greet", name="A")] * 3), tools=tools, task="t")
    next(loop)
    result = loop.close()
    assert result is not None and result.stop_reason == "cancelled"
