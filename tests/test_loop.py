"""The loop's life cycle and outcome: laziness, tasks, shorthands, stop reasons, usage, the result."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from doubles import Recorder, as_text, batch, done, greeting_tools, native

from looplet import (
    AsyncFunctionBackend,
    DefaultState,
    ErrorKind,
    FunctionBackend,
    History,
    LLMError,
    LLMRequest,
    LLMResponse,
    LoopConfig,
    Message,
    MockLLMBackend,
    ScriptExhaustedError,
    StopReason,
    ToolCall,
    ToolResult,
    Usage,
    arun_loop,
    async_composable_loop,
    composable_loop,
    register_done_tool,
    run_loop,
)
from looplet.errors import ConfigError

# -- laziness and closing --------------------------------------------------------------


def test_nothing_runs_until_the_loop_is_iterated() -> None:
    tools, greeted = greeting_tools()
    hook = Recorder()
    llm = MockLLMBackend([as_text("greet", name="A"), done()])
    loop = composable_loop(llm, tools=tools, task="t", hooks=[hook])
    assert llm.calls == [] and hook.events == [] and greeted == []
    assert loop.result is None
    assert next(loop).tool_call.tool == "greet"
    assert len(llm.calls) == 1


def test_async_loop_is_lazy_too() -> None:
    tools, _ = greeting_tools()
    llm = MockLLMBackend([done()])

    async def main() -> None:
        loop = async_composable_loop(llm, tools=tools, task="t")
        await asyncio.sleep(0)
        assert llm.calls == []
        assert (await loop.run()).stop_reason == "done"

    asyncio.run(main())


def test_close_after_a_step_runs_on_loop_end_once_and_reports_cancelled(drive: Any) -> None:
    tools, _ = greeting_tools()
    hook = Recorder()
    llm = MockLLMBackend([as_text("greet", name="A"), as_text("greet", name="B"), done()])
    steps, result = drive.take(llm, 1, tools=tools, task="t", hooks=[hook])
    assert len(steps) == 1
    assert result.stop_reason == StopReason.CANCELLED
    assert hook.events.count(("on_loop_end", "cancelled")) == 1
    assert hook.count("on_loop_end") == 1
    assert len(llm.calls) == 1


def test_break_in_a_for_statement_finishes_the_run_when_the_loop_is_dropped() -> None:
    tools, _ = greeting_tools()
    hook = Recorder()
    llm = MockLLMBackend([as_text("greet", name="A"), as_text("greet", name="B")])
    for _step in composable_loop(llm, tools=tools, task="t", hooks=[hook]):
        break
    assert hook.events[-1] == ("on_loop_end", "cancelled")


def test_closing_twice_and_running_after_close_are_harmless() -> None:
    tools, _ = greeting_tools()
    hook = Recorder()
    loop = composable_loop(
        MockLLMBackend([as_text("greet", name="A"), done()]), tools=tools, hooks=[hook], task="t"
    )
    next(loop)
    loop.close()
    loop.close()
    assert loop.run().stop_reason == "cancelled"
    assert hook.count("on_loop_end") == 1


def test_close_after_break_ends_the_run_and_returns_its_result() -> None:
    tools, _ = greeting_tools()
    hook = Recorder()
    loop = composable_loop(
        MockLLMBackend([as_text("greet", name="A"), as_text("greet", name="B")]),
        tools=tools,
        task="t",
        hooks=[hook],
    )
    for _step in loop:
        break
    result = loop.close()
    assert result is loop.result is not None
    assert result.stop_reason == "cancelled" and len(result.steps) == 1
    assert hook.count("on_loop_end") == 1


def test_reading_the_result_after_a_break_ends_the_run_and_gives_its_outcome() -> None:
    # the seed's idiom: break out of the for loop, then read the outcome; no close() needed
    tools, _ = greeting_tools()
    hook = Recorder()
    loop = composable_loop(
        MockLLMBackend([as_text("nope"), as_text("greet", name="B")]), tools=tools, task="t", hooks=[hook]
    )
    for step in loop:
        if step.tool_result.error:
            break
    result = loop.result
    assert result is not None and result.stop_reason == "cancelled"
    assert [s.tool_call.tool for s in result.steps] == ["nope"]
    assert hook.count("on_loop_end") == 1 and loop.result is result


def test_close_before_iterating_runs_nothing() -> None:
    hook = Recorder()
    llm = MockLLMBackend([done()])
    loop = composable_loop(llm, tools=greeting_tools()[0], task="t", hooks=[hook])
    assert loop.close() is None
    assert llm.calls == [] and hook.events == []


def test_with_block_ends_the_run_on_break() -> None:
    tools, _ = greeting_tools()
    hook = Recorder()
    llm = MockLLMBackend([as_text("greet", name="A"), as_text("greet", name="B")])
    with composable_loop(llm, tools=tools, task="t", hooks=[hook]) as loop:
        for _step in loop:
            break
    assert loop.result is not None and loop.result.stop_reason == "cancelled"
    assert hook.count("on_loop_end") == 1


def test_async_with_block_ends_the_run_on_break() -> None:
    tools, _ = greeting_tools()
    hook = Recorder()

    async def main() -> Any:
        llm = MockLLMBackend([as_text("greet", name="A"), as_text("greet", name="B")])
        async with async_composable_loop(llm, tools=tools, task="t", hooks=[hook]) as loop:
            async for _step in loop:
                break
        return loop.result

    result = asyncio.run(main())
    assert result is not None and result.stop_reason == "cancelled"
    assert hook.count("on_loop_end") == 1


def test_a_finished_run_is_refused_with_a_pointer_to_fork(drive: Any) -> None:
    tools, _ = greeting_tools()
    state = DefaultState()
    drive(MockLLMBackend([done("first")]), tools=tools, task="t", state=state)
    assert state.stop_reason == "done"
    with pytest.raises(ConfigError, match="ended done: it is finished.*state.fork"):
        drive(MockLLMBackend([done("second")]), tools=tools, state=state)
    assert len(state.steps) == 1 and state.stop_reason == "done"  # untouched


def test_a_continued_run_keeps_its_own_task(drive: Any) -> None:
    tools, _ = greeting_tools()
    state = DefaultState()
    drive(MockLLMBackend([as_text("greet", name="a")]), tools=tools, task="t", state=state, max_steps=1)
    with pytest.raises(ConfigError, match="continued with its own task"):
        drive(MockLLMBackend([done()]), tools=tools, task="another", state=state, max_steps=3)
    _, result = drive(MockLLMBackend([done()]), tools=tools, task="t", state=state, max_steps=3)
    assert result.stop_reason == "done" and [s.number for s in result.steps] == [1, 2]


def test_breaking_on_the_accepted_done_step_still_reports_done(drive: Any) -> None:
    tools, _ = greeting_tools()
    steps, result = drive.take(MockLLMBackend([done("42")]), 1, tools=tools, task="t")
    assert [s.tool_call.tool for s in steps] == ["done"]
    assert result.stop_reason == StopReason.DONE
    assert result.final_answer == {"answer": "42"}


# -- task and shorthands ----------------------------------------------------------------


def test_string_task_is_the_first_message(drive: Any) -> None:
    tools, _ = greeting_tools()
    llm = MockLLMBackend([done()])
    drive(llm, tools=tools, task="Say hi")
    assert llm.calls[0].messages[0] == Message("user", "Say hi")


def test_dict_task_renders_every_value_nested_ones_included(drive: Any) -> None:
    tools, _ = greeting_tools()
    llm = MockLLMBackend([done()])
    task = {
        "goal": "greet",
        "people": ["Alice", {"name": "Bob", "tags": ["x"]}],
        "limits": {"max": 3},
    }
    drive(llm, tools=tools, task=task)
    text = llm.calls[0].messages[0].content
    for fragment in ("goal: greet", "people:", "- Alice", "name: Bob", "- x", "limits:", "max: 3"):
        assert fragment in text


def test_max_steps_and_system_prompt_shorthands_override_the_config(drive: Any) -> None:
    tools, _ = greeting_tools()
    llm = MockLLMBackend([as_text("greet", name="A")] * 5)
    config = LoopConfig(max_steps=10, system_prompt="from config")
    steps, result = drive(
        llm, tools=tools, task="t", config=config, max_steps=2, system_prompt="short"
    )
    assert len(steps) == 2 and result.stop_reason == StopReason.MAX_STEPS
    assert llm.calls[0].system == "short"
    assert config.max_steps == 10, "the caller's config is not modified"
    assert drive.loop.state.config.max_steps == 2
    assert drive.loop.state.budget_remaining == 0


def test_default_system_prompt_is_used_when_none_is_given(drive: Any) -> None:
    tools, _ = greeting_tools()
    llm = MockLLMBackend([done()])
    drive(llm, tools=tools, task="t")
    assert "done" in llm.calls[0].system


def test_an_existing_history_is_continued_and_the_task_not_repeated(drive: Any) -> None:
    tools, _ = greeting_tools()
    history = History([Message("user", "earlier task"), Message("assistant", "earlier reply")])
    llm = MockLLMBackend([done()])
    drive(llm, tools=tools, task="ignored", history=history)
    assert [m.content for m in llm.calls[0].messages] == ["earlier task", "earlier reply"]
    assert drive.loop.history is history


# -- stop reasons ---------------------------------------------------------------------


def test_done_call_ends_the_run_with_its_arguments_as_final_answer(drive: Any) -> None:
    tools, greeted = greeting_tools()
    llm = MockLLMBackend([as_text("greet", name="Alice"), done("all greeted")])
    steps, result = drive(llm, tools=tools, task="t")
    assert result.stop_reason == "done" and result.ok
    assert result.final_answer == {"answer": "all greeted"}
    assert greeted == ["Alice"]
    assert result.steps == steps and result.llm_calls == 2
    assert result.elapsed_s >= 0
    assert "done was called and accepted" in result.detail


def test_text_reply_without_a_done_tool_is_the_final_answer(drive: Any) -> None:
    tools, _ = greeting_tools(with_done=False)
    steps, result = drive(MockLLMBackend(["The answer is 42."]), tools=tools, task="t")
    assert steps == []
    assert result.stop_reason == StopReason.DONE
    assert result.final_answer == {"answer": "The answer is 42."}


def test_text_replies_with_a_done_tool_are_nudged_then_stop(drive: Any) -> None:
    tools, _ = greeting_tools()
    llm = MockLLMBackend(["hmm", "let me think", "still thinking", "unused"])
    steps, result = drive(llm, tools=tools, task="t", config=LoopConfig(max_no_tool_calls=2))
    assert [s.tool_result.error_kind for s in steps] == [ErrorKind.NO_TOOL_CALL] * 2
    assert "call done" in steps[0].tool_result.error
    assert result.stop_reason == StopReason.NO_TOOL_CALL
    assert len(llm.calls) == 3
    # the model saw the nudge
    assert "no tool call" in llm.calls[1].messages[-1].content


def test_a_tool_call_resets_the_no_tool_call_streak(drive: Any) -> None:
    tools, _ = greeting_tools()
    script = ["talk", as_text("greet", name="A"), "talk", "talk", done()]
    steps, result = drive(
        MockLLMBackend(script), tools=tools, task="t", config=LoopConfig(max_no_tool_calls=2)
    )
    assert result.stop_reason == StopReason.DONE
    assert len(steps) == 5


def test_empty_reply_without_a_done_tool_is_a_no_tool_call_error(drive: Any) -> None:
    tools, _ = greeting_tools(with_done=False)
    steps, result = drive(
        MockLLMBackend(["", "  "]), tools=tools, task="t", config=LoopConfig(max_no_tool_calls=1)
    )
    assert [s.tool_result.error_kind for s in steps] == [ErrorKind.NO_TOOL_CALL]
    assert result.stop_reason == StopReason.NO_TOOL_CALL


def test_malformed_json_is_a_parse_error_step_and_the_loop_goes_on(drive: Any) -> None:
    # A1: the budget is charged and the model is shown the expected format
    tools, greeted = greeting_tools()
    llm = MockLLMBackend(
        ['{"tool": "greet", "args": {"name": "A"', as_text("greet", name="B"), done()]
    )
    steps, result = drive(llm, tools=tools, task="t")
    assert steps[0].tool_result.error_kind == ErrorKind.PARSE
    assert "cut off" in steps[0].tool_result.error
    assert '{"tool": "<name>"' in llm.calls[1].messages[-1].content
    assert steps[0].free is True and drive.loop.state.steps_charged == 2
    assert greeted == ["B"] and result.stop_reason == "done"


def test_max_steps_stop(drive: Any) -> None:
    tools, _ = greeting_tools()
    steps, result = drive(
        MockLLMBackend([as_text("greet", name="A")] * 3), tools=tools, max_steps=3
    )
    assert len(steps) == 3 and result.stop_reason == StopReason.MAX_STEPS
    assert "max_steps=3" in result.detail


def test_max_steps_zero_makes_no_llm_call(drive: Any) -> None:
    # L2
    llm = MockLLMBackend([])
    steps, result = drive(llm, tools=greeting_tools()[0], task="t", max_steps=0)
    assert steps == [] and llm.calls == [] and result.stop_reason == StopReason.MAX_STEPS


def test_llm_exception_stops_with_llm_error_not_budget(drive: Any) -> None:
    tools, _ = greeting_tools()
    boom = RuntimeError("socket closed")
    steps, result = drive(MockLLMBackend([as_text("greet", name="A"), boom]), tools=tools, task="t")
    assert len(steps) == 1
    assert result.stop_reason == StopReason.LLM_ERROR
    assert isinstance(result.error, LLMError) and result.error.__cause__ is boom
    assert "socket closed" in result.detail


def test_typed_llm_error_is_kept_as_is(drive: Any) -> None:
    tools, _ = greeting_tools()
    error = LLMError("rate limited", kind="rate_limit", status=429, retriable=True)
    _, result = drive(MockLLMBackend([error]), tools=tools, task="t")
    assert result.stop_reason == "llm_error" and result.error is error


def test_script_exhausted_is_an_llm_error_never_a_cycle(drive: Any) -> None:
    tools, greeted = greeting_tools()
    _, result = drive(MockLLMBackend([as_text("greet", name="A")]), tools=tools, task="t")
    assert greeted == ["A"]
    assert result.stop_reason == StopReason.LLM_ERROR
    assert (
        isinstance(result.error, ScriptExhaustedError) and result.error.kind == "script_exhausted"
    )


class _Compactor:
    """Keeps only the task when told the prompt overflowed."""

    def __init__(self) -> None:
        self.seen: list[bool] = []

    def pre_prompt(self, state: Any, log: Any, ctx: Any, step: int) -> None:
        self.seen.append(ctx.overflow)
        if ctx.overflow:
            ctx.messages = [ctx.messages[0]]


def test_context_length_error_rebuilds_the_prompt_once_then_overflows(drive: Any) -> None:
    tools, _ = greeting_tools()
    overflow = LLMError("too long", kind="context_length")
    compactor = _Compactor()
    llm = MockLLMBackend([as_text("greet", name="A"), overflow, overflow])
    _, result = drive(llm, tools=tools, task="t", hooks=[compactor])
    assert compactor.seen == [False, False, True]
    assert result.stop_reason == StopReason.CONTEXT_OVERFLOW
    assert len(llm.calls) == 3 and len(llm.calls[2].messages) == 1


def test_context_length_error_is_not_retried_with_the_same_prompt(drive: Any) -> None:
    tools, _ = greeting_tools()
    llm = MockLLMBackend([LLMError("too long", kind="context_length"), done()])
    _, result = drive(llm, tools=tools, task="t")  # no hook compacts anything
    assert result.stop_reason == StopReason.CONTEXT_OVERFLOW and result.llm_calls == 1
    assert "no hook made the prompt smaller" in str(result.error)


def test_context_length_error_then_success_goes_on(drive: Any) -> None:
    tools, _ = greeting_tools()
    llm = MockLLMBackend([as_text("greet", name="A"), LLMError("too long", kind="context_length"), done()])
    _, result = drive(llm, tools=tools, task="t", hooks=[_Compactor()])
    assert result.stop_reason == "done" and result.llm_calls == 3


def test_a_refusal_stops_the_run_as_refused(drive: Any) -> None:
    tools, _ = greeting_tools()
    refusal = LLMError("I can't help with that", kind="refused")
    _, result = drive(MockLLMBackend([refusal]), tools=tools, task="t")
    assert result.stop_reason == StopReason.REFUSED and result.error is refusal


def test_backend_returning_the_wrong_type_is_an_llm_error(drive: Any) -> None:
    tools, _ = greeting_tools()

    class Broken:
        def complete(self, request: LLMRequest) -> Any:
            return {"tool": "done"}

    _, result = drive(Broken(), tools=tools, task="t")
    assert result.stop_reason == "llm_error"
    assert isinstance(result.error, LLMError) and result.error.kind == "bad_response"


def test_deadline_stops_the_run(drive: Any) -> None:
    tools, _ = greeting_tools()
    clock = {"now": 0.0}

    def fake_monotonic() -> float:
        return clock["now"]

    class Advance:
        def post_dispatch(self, *args: Any) -> None:
            clock["now"] += 10.0

    import looplet.engine as engine_module

    original = engine_module.time.monotonic
    engine_module.time.monotonic = fake_monotonic  # type: ignore[assignment]
    try:
        steps, result = drive(
            MockLLMBackend([as_text("greet", name="A")] * 3),
            tools=tools,
            task="t",
            hooks=[Advance()],
            config=LoopConfig(deadline_s=5),
        )
    finally:
        engine_module.time.monotonic = original  # type: ignore[assignment]
    assert len(steps) == 1 and result.stop_reason == StopReason.DEADLINE


# -- usage and records -----------------------------------------------------------------


def test_usage_reaches_step_state_and_result(drive: Any) -> None:
    tools, _ = greeting_tools()
    script = [
        LLMResponse(
            tool_calls=[native("greet", name="A"), native("greet", name="B")], usage=Usage(10, 2)
        ),
        LLMResponse(text=done(), usage=Usage(20, 3, cached_tokens=5, cost=0.5)),
    ]
    steps, result = drive(MockLLMBackend(script), tools=tools, task="t")
    assert [s.usage for s in steps] == [Usage(10, 2), Usage(10, 2), Usage(20, 3, 5, 0.5)]
    assert [s.turn for s in steps] == [1, 1, 2]
    assert result.usage == Usage(30, 5, 5, 0.5) and result.usage.total_tokens == 35
    assert drive.loop.state.usage == result.usage


def test_mock_usage_option_applies_to_each_response(drive: Any) -> None:
    tools, _ = greeting_tools()
    llm = MockLLMBackend([as_text("greet", name="A"), done()], usage=Usage(1, 1))
    _, result = drive(llm, tools=tools, task="t")
    assert result.usage == Usage(2, 2)


def test_step_numbers_timing_and_state(drive: Any) -> None:
    tools, _ = greeting_tools()
    state = DefaultState()
    steps, _ = drive(
        MockLLMBackend([as_text("greet", name="A"), done()]), tools=tools, task="t", state=state
    )
    assert [s.number for s in steps] == [1, 2]
    assert all(s.started_at > 0 and s.llm_ms >= 0 for s in steps)
    assert state.steps == steps and state.step_count == 2 and state.stop_reason == "done"
    assert state.task == "t" and state.last_error is None


def test_last_error_is_the_error_of_the_most_recent_step(drive: Any) -> None:
    tools, _ = greeting_tools()
    seen: list[Any] = []

    class Watch:
        def should_stop(self, state: DefaultState, step: int) -> None:
            seen.append(state.last_error)

    script = [as_text("nope"), as_text("greet", name="A"), done()]
    drive(MockLLMBackend(script), tools=tools, task="t", hooks=[Watch()])
    assert seen[0] and "unknown tool" in seen[0]
    assert seen[1:] == [None], "should_stop is not asked after an accepted done"
    assert DefaultState().last_error is None and DefaultState().budget_remaining is None


def test_history_records_the_whole_conversation(drive: Any) -> None:
    tools, _ = greeting_tools()
    drive(MockLLMBackend([as_text("greet", name="A"), done()]), tools=tools, task="t")
    roles = [m.role for m in drive.loop.history]
    assert roles == ["user", "assistant", "tool", "assistant", "tool"]
    greet_result = drive.loop.history[2]
    assert greet_result.name == "greet" and '"greeting":"Hello, A!"' in greet_result.content


def test_native_tool_calls_keep_their_ids(drive: Any) -> None:
    tools, _ = greeting_tools()
    script = [
        [native("greet", "c1", name="A"), native("greet", "c1", name="B")],
        [native("done", answer="x")],
    ]
    steps, _ = drive(MockLLMBackend(script), tools=tools, task="t")
    ids = [s.tool_call.call_id for s in steps]
    assert ids[0] == "c1" and ids[1] != "c1", "duplicate ids are renumbered"
    assert len(set(ids)) == 3 and all(ids)
    assert [m.call_id for m in drive.loop.history if m.role == "tool"] == ids


# -- backends of every shape ------------------------------------------------------------


class GenerateOnly:
    """A user object with nothing but ``generate(prompt) -> str``."""

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)
        self.prompts: list[str] = []

    def generate(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.replies.pop(0)


class AsyncGenerateOnly(GenerateOnly):
    async def generate(self, prompt: str) -> str:  # type: ignore[override]
        await asyncio.sleep(0)
        return super().generate(prompt)


def test_object_with_only_generate_works(drive: Any) -> None:
    tools, greeted = greeting_tools()
    llm = GenerateOnly([as_text("greet", name="Alice"), done()])
    steps, result = drive(llm, tools=tools, task="Greet Alice")
    assert result.stop_reason == "done" and greeted == ["Alice"]
    assert "Greet Alice" in llm.prompts[0] and "greet" in llm.prompts[0]
    assert "Hello, Alice!" in llm.prompts[1]


def test_object_with_async_generate_works_in_the_async_loop() -> None:
    tools, greeted = greeting_tools()
    llm = AsyncGenerateOnly([as_text("greet", name="Alice"), done()])
    result = asyncio.run(arun_loop(llm, tools=tools, task="t"))
    assert result.stop_reason == "done" and greeted == ["Alice"]


def test_async_backend_in_the_sync_loop_is_a_config_error() -> None:
    async def answer(request: LLMRequest) -> str:
        return done()

    with pytest.raises(ConfigError, match="async_composable_loop"):
        composable_loop(AsyncFunctionBackend(answer), task="t")
    with pytest.raises(ConfigError, match="async_composable_loop"):
        composable_loop(AsyncGenerateOnly([]), task="t")


def test_object_that_is_no_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a backend"):
        composable_loop(object(), task="t")


def test_tools_must_be_a_registry() -> None:
    with pytest.raises(ConfigError, match="BaseToolRegistry"):
        composable_loop(MockLLMBackend([]), tools=[lambda: None], task="t")  # type: ignore[arg-type]


def test_function_backend_reads_the_last_result_to_decide(drive: Any) -> None:
    tools, greeted = greeting_tools()

    def decide(request: LLMRequest) -> Any:
        last = request.messages[-1]
        if last.role == "tool" and "Hello" in last.content:
            return done("greeted")
        return native("greet", name="Ada")

    llm = FunctionBackend(decide)
    _, result = drive(llm, tools=tools, task="t")
    assert result.final_answer == {"answer": "greeted"} and greeted == ["Ada"]
    assert len(llm.calls) == 2 and "Ada" in llm.last_prompt


def test_async_function_backend_in_the_async_loop() -> None:
    tools, _ = greeting_tools()

    async def decide(request: LLMRequest) -> Any:
        await asyncio.sleep(0)
        return done("x") if len(request.messages) > 1 else as_text("greet", name="A")

    llm = AsyncFunctionBackend(decide)
    result = asyncio.run(arun_loop(llm, tools=tools, task="t"))
    assert result.stop_reason == "done" and len(llm.calls) == 2 and llm.last_prompt


def test_run_helpers_drain_and_return_the_result() -> None:
    tools, _ = greeting_tools()
    assert run_loop(MockLLMBackend([done("a")]), tools=tools, task="t").final_answer == {
        "answer": "a"
    }
    tools, _ = greeting_tools()
    result = asyncio.run(arun_loop(MockLLMBackend([done("b")]), tools=tools, task="t"))
    assert result.final_answer == {"answer": "b"}


def test_result_to_dict_is_json_safe(drive: Any) -> None:
    import json

    tools, _ = greeting_tools()
    _, result = drive(
        MockLLMBackend([batch(("greet", {"name": "A"})), RuntimeError("x")]), tools=tools, task="t"
    )
    data = json.loads(json.dumps(result.to_dict()))
    assert data["stop_reason"] == "llm_error" and data["error"].startswith("LLMError")
    assert len(data["steps"]) == 1


def test_a_call_id_reused_in_a_later_turn_is_renumbered(drive: Any) -> None:
    # A10: every tool result in the history answers exactly one call
    tools, _ = greeting_tools()
    script = [[native("greet", "same", name="A")], [native("greet", "same", name="B")], done()]
    steps, _ = drive(MockLLMBackend(script), tools=tools, task="t")
    assert [s.tool_call.call_id for s in steps[:2]] == ["same", "same~2"]
    answered = [m.call_id for m in drive.loop.history if m.role == "tool"]
    assert len(answered) == len(set(answered)) == 3


# -- what a run reports: final answer, done vetoes, stop reasons --------------------------------


def test_final_answer_holds_the_arguments_the_done_tool_received_after_validation(drive: Any) -> None:
    from looplet import BaseToolRegistry

    tools = BaseToolRegistry()
    register_done_tool(
        tools,
        parameters={
            "type": "object",
            "properties": {
                "count": {"type": "integer"},
                "items": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["count", "items"],
        },
    )
    reply = json.dumps({"tool": "done", "args": {"count": 5.0, "items": '["a", "b"]'}})
    _, result = drive(MockLLMBackend([reply]), tools=tools)
    assert result.stop_reason == "done"
    assert result.final_answer == {"count": 5, "items": ["a", "b"]}
    assert type(result.final_answer["count"]) is int


def test_a_post_dispatch_veto_of_the_done_call_keeps_the_run_going(drive: Any) -> None:
    tools, greeted = greeting_tools()
    vetoed: list[int] = []

    class Veto:
        def post_dispatch(self, state: Any, log: Any, call: ToolCall, result: Any, step: int) -> Any:
            if call.tool == "done" and not vetoed:
                vetoed.append(step)
                return ToolResult(call.tool, error="not yet: greet Bob first", error_kind="blocked")
            return None

    llm = MockLLMBackend([done("too early"), as_text("greet", name="Bob"), done("now")])
    steps, result = drive(llm, tools=tools, hooks=[Veto()])
    assert vetoed == [1] and steps[0].tool_result.error == "not yet: greet Bob first"
    assert greeted == ["Bob"] and result.stop_reason == "done"
    assert result.final_answer == {"answer": "now"}


def test_a_context_length_error_on_the_last_allowed_call_is_reported_as_overflow_not_budget(
    drive: Any,
) -> None:
    from looplet import LLMError

    tools, _ = greeting_tools()
    calls = {"n": 0}

    def answer(request: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            return as_text("greet", name="A")
        raise LLMError("prompt is too long", kind="context_length", status=400)

    from looplet import FunctionBackend

    _, result = drive(FunctionBackend(answer), tools=tools, config=LoopConfig(max_steps=5, max_llm_calls=2))
    assert calls["n"] == 2 and result.stop_reason == "context_overflow"


def test_a_task_given_only_through_the_state_reaches_the_model(drive: Any) -> None:
    tools, _ = greeting_tools()
    llm = MockLLMBackend([done()])
    state = DefaultState(task="Say hi")
    drive(llm, tools=tools, state=state)
    assert llm.calls[0].messages[0].content == "Say hi" and state.task == "Say hi"


def test_a_loop_with_no_task_at_all_is_refused_with_a_clear_error() -> None:
    tools, _ = greeting_tools()
    with pytest.raises(ConfigError, match="no task: pass task="):
        composable_loop(MockLLMBackend([done()]), tools=tools)


# -- a model that answers in text ---------------------------------------------------------------


def test_a_text_answer_is_kept_in_the_step_and_shown_by_pretty(drive: Any) -> None:
    tools, _ = greeting_tools()
    steps, _ = drive(MockLLMBackend(["I think we are done here.", done()]), tools=tools)
    assert steps[0].tool_call.reasoning == "I think we are done here."
    assert "I think we are done here." in steps[0].pretty()


def test_a_native_backend_is_not_told_to_reply_with_json(drive: Any) -> None:
    from looplet import LLMResponse

    tools, _ = greeting_tools()
    seen: list[str] = []
    replies = iter([LLMResponse(text="Sure, hello!"), LLMResponse(tool_calls=[native("done", answer="x")])])

    class Native:
        native_tool_calls = True

        def complete(self, request: Any) -> Any:
            seen.append(request.messages[-1].content)
            return next(replies)

    drive(Native(), tools=tools)
    assert "no tool call" in seen[1] and "Reply with JSON only" not in seen[1]


def test_the_text_beside_a_native_call_is_its_reasoning(drive: Any) -> None:
    from looplet import LLMResponse

    tools, _ = greeting_tools()
    replies = iter(
        [
            LLMResponse(text="Greeting Alice first.", tool_calls=[native("greet", name="Alice")]),
            LLMResponse(tool_calls=[native("done", answer="x")]),
        ]
    )

    class Native:
        def complete(self, request: Any) -> Any:
            return next(replies)

    steps, _ = drive(Native(), tools=tools)
    assert steps[0].tool_call.reasoning == "Greeting Alice first."


def test_a_plain_text_answer_with_brackets_is_the_answer_when_there_is_no_done_tool(drive: Any) -> None:
    tools, _ = greeting_tools(with_done=False)
    text = "See [the docs](https://example.com) and use `{key: value}` maps [1]."
    steps, result = drive(MockLLMBackend([text]), tools=tools)
    assert result.stop_reason == "done" and result.final_answer == {"answer": text}


def test_the_models_name_request_id_and_finish_reason_are_kept_on_the_step(drive: Any) -> None:
    from looplet import LLMResponse

    tools, _ = greeting_tools()

    class Native:
        def complete(self, request: Any) -> Any:
            return LLMResponse(
                tool_calls=[native("done", answer="x")],
                model="m-1",
                request_id="req_9",
                response_id="chatcmpl-1",
                stop_reason="tool_calls",
            )

    steps, _ = drive(Native(), tools=tools)
    assert steps[0].metadata["llm"] == {
        "model": "m-1",
        "request_id": "req_9",
        "response_id": "chatcmpl-1",
        "finish_reason": "tool_calls",
    }


def test_a_hooks_denial_is_not_last_error_so_retry_flaky_tool_lets_the_retry_through(drive: Any) -> None:
    from looplet import BaseToolRegistry, Deny

    tools = BaseToolRegistry()
    attempts: list[int] = []

    @tools.tool
    def web_search(query: str) -> str:
        """Flaky the first time."""
        attempts.append(1)
        if len(attempts) == 1:
            raise TimeoutError("upstream timed out")
        return "results"

    @tools.tool
    def note(text: str) -> str:
        """Write a note."""
        return text

    register_done_tool(tools)

    class RetryFlakyTool:  # as the README shows it
        def pre_dispatch(self, state: Any, log: Any, tc: ToolCall, step: int) -> Any:
            if tc.tool == "web_search" and state.last_error:
                return Deny("retry with backoff", retry=True)
            return None

    script = [as_text("web_search", query="q")] * 3 + [done()]
    steps, _ = drive(MockLLMBackend(script), tools=tools, hooks=[RetryFlakyTool()])
    kinds = [s.tool_result.error_kind for s in steps]
    assert kinds == ["execution", "denied", None, None]  # one retry held back, then let through
    assert len(attempts) == 2 and steps[2].tool_result.ok


def test_misspelled_hook_warning_from_run_loop_points_at_the_callers_line() -> None:
    import warnings

    from looplet import run_loop

    class Typo:
        def pre_promt(self, *args: Any) -> None: ...

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_loop(MockLLMBackend([done()]), tools=greeting_tools()[0], task="t", hooks=[Typo()])
    assert caught and all(w.filename == __file__ for w in caught), [w.filename for w in caught]


def test_a_backend_giving_up_for_the_runs_deadline_stops_the_run_as_deadline(drive: Any) -> None:
    from looplet.errors import DeadlineReached

    tools, _ = greeting_tools()

    def answer(request: Any) -> Any:
        raise DeadlineReached("the next attempt could not start before the run's deadline", status=429)

    _, result = drive(FunctionBackend(answer), tools=tools, config=LoopConfig(deadline_s=30))
    assert result.stop_reason == StopReason.DEADLINE and "deadline came first" in result.detail
    assert isinstance(result.error, LLMError) and result.error.kind == "timeout"
