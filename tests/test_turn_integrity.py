"""A turn's integrity: every call of a turn is answered exactly once, whatever ends it (a
failing hook, the budget, a break mid-batch): a call the stop left out stays open in the record
and a continued run settles it before calling the model again; a tool that ran is never lost
nor run twice; what a hook hands the prompt is checked; a run's token, ContextVars and orphans
stay its own."""

from __future__ import annotations

import contextvars
import gc
from typing import Any

from doubles import Driver, batch, done, greeting_tools

from looplet import (
    BaseToolRegistry,
    CancelToken,
    FunctionBackend,
    LLMError,
    LLMRequest,
    Message,
    MockLLMBackend,
    StopReason,
    ToolCall,
    composable_loop,
    register_done_tool,
)


def unanswered_calls(driver: Driver) -> list[str]:
    """Call ids the model made that no tool message in the history answers."""
    assert driver.loop is not None
    messages = list(driver.loop.history)
    asked = [c.call_id for m in messages if m.role == "assistant" for c in m.tool_calls]
    answered = {m.call_id for m in messages if m.role == "tool"}
    return [cid for cid in asked if cid not in answered]


class FailingShouldStop:
    """A should_stop hook that raises on the first step."""

    def should_stop(self, state: Any, step: int) -> Any:
        raise RuntimeError("should_stop broke")


# -- 1. a should_stop failure mid-batch loses the rest of the batch -------------------------


def test_a_should_stop_failure_mid_concurrent_batch_still_records_the_calls_that_ran(drive: Any) -> None:
    tools, greeted = greeting_tools(concurrent_safe=True)
    llm = MockLLMBackend([batch(("greet", {"name": "a"}), ("greet", {"name": "b"})), done()])
    steps, result = drive(llm, tools=tools, hooks=[FailingShouldStop()])
    assert result.stop_reason == StopReason.HOOK_ERROR
    assert sorted(greeted) == ["a", "b"]  # both ran (one batch)
    assert [s.tool_call.args["name"] for s in result.steps] == ["a", "b"], "a call that ran has a Step"
    assert unanswered_calls(drive) == []


def test_a_should_stop_failure_mid_sequential_batch_leaves_the_rest_open_for_a_continued_run(
    drive: Any,
) -> None:
    tools, greeted = greeting_tools()
    llm = MockLLMBackend([batch(("greet", {"name": "a"}), ("greet", {"name": "b"})), done()])
    _, result = drive(llm, tools=tools, hooks=[FailingShouldStop()])
    assert result.stop_reason == StopReason.HOOK_ERROR
    assert greeted == ["a"]
    assert [c.args["name"] for c in result.dropped_calls] == ["b"], "a call not run is listed"
    assert unanswered_calls(drive) == ["call_1_2"], "and stays open in the record"
    state = drive.loop.state
    _, again = drive(llm, tools=tools, state=state)
    assert greeted == ["a", "b"] and again.stop_reason == StopReason.DONE
    assert len(llm.calls) == 2, "the open call ran before the model was asked again"
    assert unanswered_calls(drive) == []


# -- 2. a pre_prompt hook that hands back messages of the wrong type ---------------------------


class DictMessages:
    """A pre_prompt hook making a common mistake: messages as OpenAI-style dicts."""

    def pre_prompt(self, state: Any, log: Any, ctx: Any, step: int) -> Any:
        ctx.messages = [{"role": "user", "content": "hi"}]
        return ctx


def test_a_pre_prompt_hook_giving_messages_of_the_wrong_type_stops_with_hook_error(drive: Any) -> None:
    tools, _ = greeting_tools()
    _, result = drive(MockLLMBackend([done()]), tools=tools, hooks=[DictMessages()])
    assert result.stop_reason == StopReason.HOOK_ERROR
    assert "messages" in (result.detail or "")


# -- 3. compaction by log.replace(...) on overflow ------------------------------------------------


class ReplaceCompactor:
    """Compacts the documented way (docs/hooks.md, docs/migrating.md): edit `log` on overflow."""

    def __init__(self) -> None:
        self.asked = 0

    def pre_prompt(self, state: Any, log: Any, ctx: Any, step: int) -> None:
        if ctx.overflow:
            self.asked += 1
            log.replace([Message("user", "short task")])


def test_a_compaction_by_replacing_the_log_on_overflow_reaches_the_retried_call(drive: Any) -> None:
    sizes: list[int] = []

    def window(request: LLMRequest) -> ToolCall:
        size = sum(len(m.content) for m in request.messages)
        sizes.append(size)
        if size > 100:
            raise LLMError("prompt is too long", kind="context_length")
        return ToolCall("done", {"answer": "fits"})

    tools = BaseToolRegistry()
    register_done_tool(tools)
    hook = ReplaceCompactor()
    _, result = drive(FunctionBackend(window), tools=tools, task="x" * 500, hooks=[hook])
    assert hook.asked == 1
    assert result.stop_reason == StopReason.DONE, result.detail
    assert sizes[1] <= 100


# -- 4. break in the middle of a batch ------------------------------------------------------------


def test_breaking_after_the_first_step_of_a_batch_continues_with_the_call_not_run(drive: Any) -> None:
    tools, greeted = greeting_tools()
    llm = MockLLMBackend([batch(("greet", {"name": "a"}), ("greet", {"name": "b"})), done()])
    steps, result = drive.take(llm, 1, tools=tools)
    assert len(steps) == 1 and greeted == ["a"]
    assert result.stop_reason == StopReason.CANCELLED
    assert [c.args["name"] for c in result.dropped_calls] == ["b"], "a call not run is listed"
    assert unanswered_calls(drive) == ["call_1_2"]
    more, again = drive(llm, tools=tools, state=drive.loop.state)
    assert [s.tool_call.args.get("name") for s in more] == ["b", None]
    assert greeted == ["a", "b"] and again.stop_reason == StopReason.DONE and len(llm.calls) == 2
    assert [s.number for s in again.steps] == [1, 2, 3] and again.llm_calls == 2


def test_breaking_after_the_first_step_of_a_concurrent_batch_keeps_the_sibling_that_ran(drive: Any) -> None:
    tools, greeted = greeting_tools(concurrent_safe=True)
    llm = MockLLMBackend([batch(("greet", {"name": "a"}), ("greet", {"name": "b"})), done()])
    steps, result = drive.take(llm, 1, tools=tools)
    assert sorted(greeted) == ["a", "b"]
    state = drive.loop.state
    assert state.in_flight["call_1_2"].result is not None, "the sibling's result is in the record"
    more, again = drive(llm, tools=tools, state=state)
    assert sorted(greeted) == ["a", "b"], "a call that ran is concluded, not run again"
    assert [s.tool_call.args.get("name") for s in more] == ["b", None]
    assert state.in_flight == {} and unanswered_calls(drive) == []


def test_a_ran_sibling_is_concluded_through_after_step_when_the_run_continues(drive: Any) -> None:
    tools, greeted = greeting_tools(concurrent_safe=True)
    durable: list[str] = []

    class Journal:
        def after_step(self, state: Any, log: Any, step: Any) -> None:
            durable.append(step.tool_call.args.get("name", "done"))

    llm = MockLLMBackend([batch(("greet", {"name": "a"}), ("greet", {"name": "b"})), done()])
    steps, result = drive.take(llm, 1, tools=tools, hooks=[Journal()])
    assert [s.tool_call.args["name"] for s in steps] == ["a"] and durable == ["a"]
    drive(llm, tools=tools, hooks=[Journal()], state=drive.loop.state)
    assert durable == ["a", "b", "done"] and sorted(greeted) == ["a", "b"]


# -- 5. budget cut: answers in call order ----------------------------------------------------------


def test_calls_cut_by_the_step_budget_run_when_the_run_continues_with_a_larger_one(drive: Any) -> None:
    tools, greeted = greeting_tools()
    llm = MockLLMBackend([batch(("greet", {"name": "a"}), ("greet", {"name": "b"})), done()])
    _, result = drive(llm, tools=tools, max_steps=1)
    assert greeted == ["a"] and [c.args["name"] for c in result.dropped_calls] == ["b"]
    state = drive.loop.state
    _, same = drive(llm, tools=tools, max_steps=1, state=state)
    assert same.stop_reason == StopReason.MAX_STEPS and greeted == ["a"] and len(llm.calls) == 1
    _, more = drive(llm, tools=tools, max_steps=5, state=state)
    assert greeted == ["a", "b"] and more.stop_reason == StopReason.DONE
    tool_messages = [m.call_id for m in drive.loop.history if m.role == "tool"]
    call_order = [c.call_id for m in drive.loop.history if m.role == "assistant" for c in m.tool_calls]
    assert tool_messages == call_order, "answers come in call order"


# -- 6. a tool's ContextVar changes do not leak into the caller --------------------------------------

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("review_var", default="caller")


def test_a_tool_setting_a_contextvar_leaves_the_callers_context_unchanged(
    drive: Any,
) -> None:
    tools = BaseToolRegistry()

    @tools.tool
    def set_var(value: str) -> dict[str, str]:
        """Set the variable."""
        VAR.set(value)
        return {"set": value}

    register_done_tool(tools)
    token = VAR.set("caller")
    try:
        llm = MockLLMBackend(['{"tool": "set_var", "args": {"value": "tool"}}', done()])
        _, result = drive(llm, tools=tools)
        assert result.stop_reason == StopReason.DONE
        assert VAR.get() == "caller"
    finally:
        VAR.reset(token)


# -- 7. a loop never iterated keeps its token linked under yours ----------------------------------


def test_a_loop_closed_before_it_ran_does_not_stay_linked_to_the_callers_token() -> None:
    tools, _ = greeting_tools()
    mine = CancelToken()
    loop = composable_loop(MockLLMBackend([done()]), task="t", tools=tools, cancel_token=mine)
    run_token = loop.engine.cancel_token
    assert loop.close() is None
    del loop
    gc.collect()
    holders = [r for r in gc.get_referrers(run_token) if isinstance(r, list)]
    assert holders == [], "the caller's token still holds the token of a loop that never ran"


# -- 8. orphan accounting across runs ----------------------------------------------------------------


def test_a_run_whose_own_orphan_ended_is_not_refused_for_another_runs_orphan() -> None:
    import threading

    release = {key: threading.Event() for key in ("a", "b", "c")}
    release["c"].set()
    tools = BaseToolRegistry()

    @tools.tool(timeout_s=0.05)
    def slow(key: str) -> dict[str, str]:
        """Wait until released."""
        release[key].wait(30)
        return {"done": key}

    register_done_tool(tools)

    def call(key: str) -> str:
        return f'{{"tool": "slow", "args": {{"key": "{key}"}}}}'

    def join_workers() -> None:
        for thread in threading.enumerate():
            if thread.name == "looplet-tool-slow":
                thread.join(30)

    run_a = composable_loop(MockLLMBackend([call("a"), call("c"), done()]), task="a", tools=tools)
    run_b = composable_loop(MockLLMBackend([call("b"), done()]), task="b", tools=tools)
    try:
        assert next(run_a).tool_result.metadata.get("orphaned") is True
        release["a"].set()
        join_workers()  # run A's own orphan has ended
        assert next(run_b).tool_result.metadata.get("orphaned") is True  # run B's is still running
        second = next(run_a)
        assert second.tool_result.error_kind != "busy", second.tool_result.error
        assert second.tool_result.data == {"done": "c"}
    finally:
        release["b"].set()
        run_a.close()
        run_b.close()
        join_workers()


def test_a_done_call_answered_by_a_hook_keeps_the_validated_arguments_as_the_final_answer(
    drive: Any,
) -> None:
    from looplet import ToolResult

    tools = BaseToolRegistry()
    register_done_tool(
        tools,
        parameters={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
    )

    class Cached:
        def pre_dispatch(self, state: Any, log: Any, call: ToolCall, step: int) -> Any:
            return ToolResult(call.tool, data={"cached": True})

    _, result = drive(MockLLMBackend(['{"tool": "done", "args": {"n": 4.0}}']), tools=tools, hooks=[Cached()])
    assert result.stop_reason == "done" and result.final_answer == {"n": 4}
    assert type(result.final_answer["n"]) is int


def test_a_hook_result_with_an_absurd_duration_is_a_hook_error(drive: Any) -> None:
    from looplet import ToolResult

    tools, _ = greeting_tools()

    class Slow:
        def post_dispatch(self, state: Any, log: Any, call: ToolCall, result: Any, step: int) -> Any:
            return ToolResult(call.tool, data={"x": 1}, duration_ms=10**400)

    steps, result = drive(MockLLMBackend([batch(("greet", {"name": "A"}))]), tools=tools, hooks=[Slow()])
    assert result.stop_reason == "hook_error" and "duration_ms" in str(result.error)
