"""Hooks: what each slot may return, how hooks compose, and what happens when one fails (D5, D8)."""

from __future__ import annotations

import asyncio
import dataclasses
import warnings
from typing import Any

import pytest
from doubles import Recorder, as_text, batch, done, greeting_tools

from looplet import (
    Allow,
    Block,
    Continue,
    Deny,
    ErrorKind,
    HookError,
    InjectContext,
    LoopConfig,
    MockLLMBackend,
    PromptContext,
    Stop,
    StopReason,
    ToolResult,
    composable_loop,
)
from looplet.hooks import HOOK_METHODS, HookSlots

# -- order -----------------------------------------------------------------------------


def test_slots_are_called_in_turn_order(drive: Any) -> None:
    tools, _ = greeting_tools()
    hook = Recorder()
    drive(MockLLMBackend([as_text("greet", name="A"), done()]), tools=tools, task="t", hooks=[hook])
    assert [name for name, _ in hook.events] == [
        "pre_loop",
        "pre_prompt",
        "pre_dispatch",
        "post_dispatch",
        "after_step",
        "should_stop",
        "pre_prompt",
        "pre_dispatch",
        "check_done",
        "post_dispatch",
        "after_step",
        "on_loop_end",
    ]


def test_hooks_run_in_list_order(drive: Any) -> None:
    tools, _ = greeting_tools()
    order: list[str] = []

    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

        def pre_dispatch(self, *args: Any) -> None:
            order.append(self.name)

    drive(MockLLMBackend([done()]), tools=tools, hooks=[Named("a"), Named("b"), Named("c")])
    assert order == ["a", "b", "c"]


# -- pre_prompt --------------------------------------------------------------------------


def test_pre_prompt_text_and_inject_context_reach_this_call_only(drive: Any) -> None:
    tools, _ = greeting_tools()
    calls = {"n": 0}

    class Inject:
        def pre_prompt(self, state: Any, log: Any, ctx: Any, step: int) -> Any:
            calls["n"] += 1
            return "remember the budget" if calls["n"] == 1 else None

    class InjectMore:
        def pre_prompt(self, state: Any, log: Any, ctx: Any, step: int) -> Any:
            return InjectContext(f"step {step}")

    llm = MockLLMBackend([as_text("greet", name="A"), done()])
    drive(llm, tools=tools, task="t", hooks=[Inject(), InjectMore()])
    assert llm.calls[0].extra == ("remember the budget", "step 1")
    assert llm.calls[1].extra == ("step 2",)
    assert all("remember the budget" not in m.content for m in drive.loop.history)
    assert llm.calls[0].conversation()[-1].content == "remember the budget\n\nstep 1"
    # injected texts are for one call only: the last prompt has this step's text, not the first's
    assert "step 2" in llm.last_prompt and "remember the budget" not in llm.last_prompt


def test_pre_prompt_returning_a_changed_context_changes_what_the_backend_gets(drive: Any) -> None:
    tools, _ = greeting_tools()

    class Rewrite:
        def pre_prompt(self, state: Any, log: Any, ctx: PromptContext, step: int) -> Any:
            return dataclasses.replace(ctx, system="custom system", messages=list(ctx.messages)[:1])

    llm = MockLLMBackend([as_text("greet", name="A"), done()])
    drive(llm, tools=tools, task="t", hooks=[Rewrite()])
    assert llm.calls[1].system == "custom system"
    assert len(llm.calls[1].messages) == 1 and len(drive.loop.history) == 5


def test_pre_prompt_may_change_the_context_in_place(drive: Any) -> None:
    tools, _ = greeting_tools()

    class InPlace:
        def pre_prompt(self, state: Any, log: Any, ctx: PromptContext, step: int) -> None:
            ctx.system = "in place"

    llm = MockLLMBackend([done()])
    drive(llm, tools=tools, hooks=[InPlace(), Recorder({"pre_prompt": Continue()})])
    assert llm.calls[0].system == "in place"


def test_pre_prompt_sees_the_users_context_value(drive: Any) -> None:
    tools, _ = greeting_tools()
    seen: list[Any] = []

    class Look:
        def pre_prompt(self, state: Any, log: Any, ctx: PromptContext, step: int) -> None:
            seen.append((ctx.context, ctx.step, [t["name"] for t in ctx.tools]))

    drive(MockLLMBackend([done()]), tools=tools, context={"db": "x"}, hooks=[Look()])
    assert seen == [({"db": "x"}, 1, ["greet", "done"])]


# -- pre_dispatch ---------------------------------------------------------------------------


def test_allow_with_updated_args_rewrites_and_later_hooks_see_it(drive: Any) -> None:
    tools, greeted = greeting_tools()
    seen: list[dict[str, Any]] = []

    class Rewrite:
        def pre_dispatch(self, state: Any, log: Any, call: Any, step: int) -> Any:
            if call.tool == "greet":
                return Allow(updated_args={"name": call.args["name"].upper()})
            return Allow()

    class Look:
        def pre_dispatch(self, state: Any, log: Any, call: Any, step: int) -> None:
            seen.append(dict(call.args))

    steps, _ = drive(
        MockLLMBackend([as_text("greet", name="ada"), done()]),
        tools=tools,
        hooks=[Rewrite(), Look()],
    )
    assert greeted == ["ADA"] and seen[0] == {"name": "ADA"}
    assert steps[0].tool_call.args == {"name": "ADA"}
    assert steps[0].metadata["original_args"] == {"name": "ada"}
    assert "original_args" not in steps[1].metadata


def test_allow_with_invalid_updated_args_is_revalidated_and_never_runs(drive: Any) -> None:
    # INV-4: a failed validation means the tool body does not run
    tools, greeted = greeting_tools()

    class Rewrite:
        def pre_dispatch(self, *args: Any) -> Any:
            return Allow(updated_args={"name": 5})

    steps, _ = drive(
        MockLLMBackend([as_text("greet", name="ada"), done()]), tools=tools, hooks=[Rewrite()]
    )
    assert greeted == []
    assert steps[0].tool_result.error_kind == ErrorKind.VALIDATION
    assert steps[0].tool_result.metadata["rewritten_by"] == "Rewrite"


@pytest.mark.parametrize("retry", [False, True])
def test_deny_never_runs_the_tool_and_says_whether_to_retry(drive: Any, retry: bool) -> None:
    tools, greeted = greeting_tools()

    class Gate:
        def pre_dispatch(self, state: Any, log: Any, call: Any, step: int) -> Any:
            return Deny("not today", retry=retry) if call.tool == "greet" else None

    llm = MockLLMBackend([as_text("greet", name="A"), done()])
    steps, _ = drive(llm, tools=tools, hooks=[Gate()])
    res = steps[0].tool_result
    assert greeted == [] and res.error_kind == ErrorKind.DENIED and res.retriable is retry
    assert "not today" in res.error and res.metadata["denied_by"] == "Gate"
    phrase = "may retry this call later" if retry else "Do not retry this call"
    assert phrase in res.error and phrase in llm.calls[1].messages[-1].content


def test_first_deny_wins_and_later_hooks_are_not_asked(drive: Any) -> None:
    tools, _ = greeting_tools()
    later = Recorder()

    class Gate:
        def pre_dispatch(self, *args: Any) -> Any:
            return Deny("no")

    steps, _ = drive(
        MockLLMBackend([as_text("greet", name="A"), "x"]), tools=tools, hooks=[Gate(), later]
    )
    assert later.count("pre_dispatch") == 0 and later.count("post_dispatch") == 1


def test_pre_dispatch_tool_result_replaces_the_run(drive: Any) -> None:
    tools, greeted = greeting_tools()

    class Cache:
        def pre_dispatch(self, state: Any, log: Any, call: Any, step: int) -> Any:
            if call.tool == "greet":
                return ToolResult(tool="greet", data={"greeting": "cached"})
            return None

    steps, _ = drive(
        MockLLMBackend([as_text("greet", name="A"), done()]), tools=tools, hooks=[Cache()]
    )
    assert greeted == [] and steps[0].tool_result.data == {"greeting": "cached"}
    assert steps[0].tool_result.metadata["replaced_by"] == "Cache"
    assert steps[0].tool_result.call_id == steps[0].tool_call.call_id


def test_pre_dispatch_is_not_asked_about_invalid_calls(drive: Any) -> None:
    tools, _ = greeting_tools()
    hook = Recorder()
    drive(MockLLMBackend([as_text("greet"), done()]), tools=tools, hooks=[hook])
    assert [d for n, d in hook.events if n == "pre_dispatch"] == ["done"]


# -- post_dispatch ---------------------------------------------------------------------------


def test_post_dispatch_text_is_a_note_the_model_sees(drive: Any) -> None:
    tools, _ = greeting_tools()

    class Note:
        def post_dispatch(self, state: Any, log: Any, call: Any, result: Any, step: int) -> Any:
            return "be brief" if call.tool == "greet" else InjectContext("unused")

    llm = MockLLMBackend([as_text("greet", name="A"), done()])
    steps, _ = drive(llm, tools=tools, hooks=[Note(), Note()])
    assert steps[0].metadata["notes"] == ["be brief", "be brief"]
    assert llm.calls[1].messages[-1].content.endswith("Note: be brief\nNote: be brief")


def test_post_dispatch_result_replacement_is_seen_by_later_hooks(drive: Any) -> None:
    tools, _ = greeting_tools()
    seen: list[Any] = []

    class Replace:
        def post_dispatch(self, state: Any, log: Any, call: Any, result: Any, step: int) -> Any:
            if call.tool == "greet":
                return ToolResult(tool="greet", data={"greeting": "replaced"})
            return None

    class Look:
        def post_dispatch(self, state: Any, log: Any, call: Any, result: Any, step: int) -> None:
            seen.append(result.data)

    steps, _ = drive(
        MockLLMBackend([as_text("greet", name="A"), done()]), tools=tools, hooks=[Replace(), Look()]
    )
    assert steps[0].tool_result.data == {"greeting": "replaced"}
    assert seen[0] == {"greeting": "replaced"}


def test_post_dispatch_stop_ends_the_run_with_the_hooks_words(drive: Any) -> None:
    tools, _ = greeting_tools()

    class Halt:
        def post_dispatch(self, *args: Any) -> Any:
            return Stop("enough greeting")

    steps, result = drive(
        MockLLMBackend([as_text("greet", name="A"), done()]), tools=tools, hooks=[Halt()]
    )
    assert len(steps) == 1 and result.stop_reason == "hook_stop:enough greeting"


def test_post_dispatch_sees_errors_too(drive: Any) -> None:
    tools, _ = greeting_tools()
    seen: list[Any] = []

    class Look:
        def post_dispatch(self, state: Any, log: Any, call: Any, result: Any, step: int) -> None:
            seen.append(result.error_kind)

    drive(MockLLMBackend([as_text("nope"), done()]), tools=tools, hooks=[Look()])
    assert seen == [ErrorKind.VALIDATION, None]


# -- check_done and should_stop -----------------------------------------------------------------


@pytest.mark.parametrize("verdict", ["tests still fail", Block("tests still fail")])
def test_check_done_rejection_is_a_blocked_step_and_the_loop_goes_on(
    drive: Any, verdict: Any
) -> None:
    tools, _ = greeting_tools()
    answers = iter([verdict, None])

    class Judge:
        def check_done(self, *args: Any) -> Any:
            return next(answers)

    llm = MockLLMBackend([done("early"), done("late")])
    steps, result = drive(llm, tools=tools, hooks=[Judge()])
    first = steps[0].tool_result
    assert first.error_kind == ErrorKind.BLOCKED and first.retriable
    assert (
        "tests still fail" in first.error
        and "tests still fail" in llm.calls[1].messages[-1].content
    )
    assert result.stop_reason == "done" and result.final_answer == {"answer": "late"}


def test_check_done_rejected_forever_still_terminates(drive: Any) -> None:
    tools, _ = greeting_tools()

    class Never:
        def check_done(self, *args: Any) -> Any:
            return Block("no")

    steps, result = drive(MockLLMBackend([done()] * 10), tools=tools, hooks=[Never()], max_steps=4)
    assert (
        len(steps) == 4
        and result.stop_reason == StopReason.MAX_STEPS
        and result.final_answer is None
    )


@pytest.mark.parametrize(
    "answer, reason", [(True, "hook_stop:Stopper"), (Stop("quota"), "hook_stop:quota")]
)
def test_should_stop_true_or_stop(drive: Any, answer: Any, reason: str) -> None:
    tools, _ = greeting_tools()

    class Stopper:
        def should_stop(self, state: Any, step: int) -> Any:
            return answer

    steps, result = drive(
        MockLLMBackend([as_text("greet", name="A"), done()]), tools=tools, hooks=[Stopper()]
    )
    assert len(steps) == 1 and result.stop_reason == reason


@pytest.mark.parametrize("answer", [None, False, Continue()])
def test_should_stop_no_decision_goes_on(drive: Any, answer: Any) -> None:
    tools, _ = greeting_tools()
    _, result = drive(
        MockLLMBackend([as_text("greet", name="A"), done()]),
        tools=tools,
        hooks=[Recorder({"should_stop": lambda: answer})],
    )
    assert result.stop_reason == "done"


def test_scratch_is_cleared_before_each_step(drive: Any) -> None:
    tools, _ = greeting_tools()
    seen: list[dict[str, Any]] = []

    class Share:
        def pre_dispatch(self, state: Any, log: Any, call: Any, step: int) -> None:
            seen.append(dict(state.scratch))
            state.scratch["mark"] = step

    drive(MockLLMBackend([as_text("greet", name="A"), done()]), tools=tools, hooks=[Share()])
    assert seen == [{}, {}]


# -- failures (D5) ------------------------------------------------------------------------------


class Boom(Exception):
    pass


JUNK = object()


def _hook_for(slot: str, mode: str) -> Any:
    """A hook whose `slot` method raises (mode "raise") or returns junk (mode "junk")."""

    def method(self: Any, *args: Any) -> Any:
        if mode == "raise":
            raise Boom(f"{slot} failed")
        return JUNK

    return type("Faulty", (), {slot: method})()


GATES = ("pre_dispatch", "check_done")
JUNK_IGNORED = ("pre_loop", "on_loop_end")  # documented to return nothing; the value is ignored


@pytest.mark.parametrize("mode", ["raise", "junk"])
@pytest.mark.parametrize("slot", [m for m in HOOK_METHODS if m != "on_loop_end"])
def test_a_failing_hook_stops_the_run_with_hook_error_naming_it(
    drive: Any, slot: str, mode: str
) -> None:
    # D5: every slot x {raise, return junk}; gates fail closed
    tools, greeted = greeting_tools()
    ended = Recorder()
    llm = MockLLMBackend([as_text("greet", name="A"), done(), done()])
    steps, result = drive(llm, tools=tools, task="t", hooks=[_hook_for(slot, mode), ended])
    if mode == "junk" and slot in JUNK_IGNORED:
        assert result.stop_reason == "done"
        return
    assert result.stop_reason == StopReason.HOOK_ERROR
    assert isinstance(result.error, HookError)
    assert result.error.hook_name == "Faulty" and result.error.method == slot
    assert f"Faulty.{slot}" in str(result.error) and f"Faulty.{slot}" in result.detail
    if mode == "raise":
        assert isinstance(result.error.error, Boom)
    else:
        assert isinstance(result.error.error, TypeError)
    assert ended.count("on_loop_end") == 1
    assert result.final_answer is None, "a failed gate never accepts done"
    if slot == "pre_dispatch":
        assert greeted == [], "fail closed: the tool never runs"
        assert steps[-1].tool_result.error_kind == ErrorKind.HOOK_ERROR
    if slot in ("post_dispatch", "should_stop"):
        assert greeted == ["A"] and len(steps) == 1, "the step in flight is recorded"
    if slot == "check_done":
        assert steps[-1].tool_call.tool == "done" and not steps[-1].tool_result.ok


@pytest.mark.parametrize("mode", ["raise", "junk"])
def test_pre_dispatch_failure_in_a_concurrent_group_runs_none_of_it(drive: Any, mode: str) -> None:
    from looplet import BaseToolRegistry

    tools = BaseToolRegistry()
    ran: list[str] = []

    @tools.tool(concurrent_safe=True)
    def fetch(url: str) -> str:
        """Fetch a page."""
        ran.append(url)
        return url

    count = {"n": 0}

    class FailSecond:
        def pre_dispatch(self, *args: Any) -> Any:
            count["n"] += 1
            if count["n"] == 2:
                if mode == "raise":
                    raise Boom("second")
                return JUNK
            return None

    reply = batch(("fetch", {"url": "a"}), ("fetch", {"url": "b"}), ("fetch", {"url": "c"}))
    steps, result = drive(MockLLMBackend([reply]), tools=tools, hooks=[FailSecond()])
    assert result.stop_reason == "hook_error" and ran == []
    # One rule for calls that never ran: no Step, uncharged, listed, left open for a continued run.
    assert [s.tool_result.error_kind for s in steps] == [ErrorKind.HOOK_ERROR]
    assert [s.tool_call.args["url"] for s in steps] == ["b"]
    assert [c.args["url"] for c in result.dropped_calls] == ["a", "c"]
    assert drive.loop.state.steps_charged == 1
    assert [c.args["url"] for c in drive.loop.state.open_calls] == ["a", "c"]
    assert [m.call_id for m in drive.loop.history if m.role == "tool"] == ["call_1_2"]


def test_pre_dispatch_failure_after_a_finished_sequential_call_keeps_that_call(drive: Any) -> None:
    tools, greeted = greeting_tools()
    count = {"n": 0}

    class FailSecond:
        def pre_dispatch(self, *args: Any) -> None:
            count["n"] += 1
            if count["n"] == 2:
                raise Boom("second")

    reply = batch(("greet", {"name": "A"}), ("greet", {"name": "B"}), ("greet", {"name": "C"}))
    steps, result = drive(MockLLMBackend([reply]), tools=tools, hooks=[FailSecond()])
    assert greeted == ["A"] and steps[0].tool_result.ok
    assert steps[1].tool_result.error_kind == ErrorKind.HOOK_ERROR and len(steps) == 2
    assert result.stop_reason == "hook_error"


def test_on_loop_end_failure_is_reported_and_other_hooks_still_run(drive: Any) -> None:
    tools, _ = greeting_tools()
    after = Recorder()

    class Broken:
        def on_loop_end(self, *args: Any) -> None:
            raise Boom("flush failed")

    _, result = drive(MockLLMBackend([done()]), tools=tools, hooks=[Broken(), after])
    assert result.stop_reason == "done"
    assert "Broken.on_loop_end raised Boom: flush failed" in result.detail
    assert after.count("on_loop_end") == 1


def test_hook_error_keeps_steps_done_before_it(drive: Any) -> None:
    tools, greeted = greeting_tools()
    n = {"calls": 0}

    class FailLater:
        def pre_prompt(self, *args: Any) -> None:
            n["calls"] += 1
            if n["calls"] == 3:
                raise Boom("late")

    script = [as_text("greet", name="A"), as_text("greet", name="B"), done()]
    steps, result = drive(MockLLMBackend(script), tools=tools, hooks=[FailLater()])
    assert greeted == ["A", "B"] and len(steps) == 2 and drive.loop.state.steps == steps
    assert result.stop_reason == "hook_error"


# -- async hooks --------------------------------------------------------------------------------


class AsyncHooks:
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def pre_prompt(self, state: Any, log: Any, ctx: Any, step: int) -> Any:
        await asyncio.sleep(0)
        self.seen.append("pre_prompt")
        return "async note"

    async def pre_dispatch(self, state: Any, log: Any, call: Any, step: int) -> Any:
        await asyncio.sleep(0)
        return Deny("async gate") if call.tool == "greet" else None

    async def on_loop_end(self, *args: Any) -> None:
        await asyncio.sleep(0)
        self.seen.append("on_loop_end")


def test_async_hooks_are_awaited_in_the_async_loop() -> None:
    from looplet import arun_loop

    tools, greeted = greeting_tools()
    hook = AsyncHooks()
    llm = MockLLMBackend([as_text("greet", name="A"), done()])
    result = asyncio.run(arun_loop(llm, tools=tools, hooks=[hook], task="t"))
    assert result.stop_reason == "done" and greeted == []
    assert llm.calls[0].extra == ("async note",)
    assert result.steps[0].tool_result.error_kind == ErrorKind.DENIED
    assert hook.seen == ["pre_prompt", "pre_prompt", "on_loop_end"]


def test_async_hook_in_the_sync_loop_is_a_hook_error_that_says_why() -> None:
    tools, _ = greeting_tools()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "coroutine was never awaited"
        loop = composable_loop(MockLLMBackend([done()]), tools=tools, hooks=[AsyncHooks()], task="t")
        result = loop.run()
    assert result.stop_reason == "hook_error"
    assert "is async; use async_composable_loop" in str(result.error)


# -- hook discovery -----------------------------------------------------------------------------


def test_misspelled_hook_method_warns_with_a_suggestion() -> None:
    class Typo:
        def pre_promt(self, *args: Any) -> None: ...

    with pytest.warns(UserWarning) as record:
        HookSlots([Typo()])
    texts = [str(w.message) for w in record]
    assert any("did you mean 'pre_prompt'" in t for t in texts)
    assert any("none of the hook methods" in t for t in texts)


def test_misspelled_hook_warning_points_at_the_callers_line() -> None:
    class Typo:
        def pre_promt(self, *args: Any) -> None: ...

    with pytest.warns(UserWarning) as record:
        composable_loop(MockLLMBackend([]), hooks=[Typo()], task="t")
    assert {w.filename for w in record} == {__file__}


def test_object_with_no_hook_method_warns() -> None:
    class Nothing:
        def helper(self) -> None: ...

    with pytest.warns(UserWarning, match="none of the hook methods"):
        HookSlots([Nothing()])


def test_well_formed_hook_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        slots = HookSlots([Recorder()])
    assert all(len(getattr(slots, name)) == 1 for name in HOOK_METHODS)


def test_decisions_are_immutable_values() -> None:
    assert Deny("x", retry=True) == Deny("x", True) and Deny("x") != Deny("x", retry=True)
    assert hash(Stop("a")) == hash(Stop("a")) and Stop("a") != Block("a")
    assert repr(Allow({"a": 1})) == "Allow(updated_args={'a': 1})"
    with pytest.raises(AttributeError):
        Stop("a").reason = "b"  # type: ignore[misc]
    assert Continue() == Continue()


# -- re-entrancy (D8) -----------------------------------------------------------------------------


def test_hook_advancing_its_own_loop_gets_a_runtime_error() -> None:
    tools, _ = greeting_tools()
    caught: list[BaseException] = []
    holder: dict[str, Any] = {}

    class Reenter:
        def pre_dispatch(self, *args: Any) -> None:
            try:
                next(holder["loop"])
            except RuntimeError as exc:
                caught.append(exc)

        def on_loop_end(self, *args: Any) -> None:
            try:
                holder["loop"].close()
            except RuntimeError as exc:
                caught.append(exc)

    loop = composable_loop(MockLLMBackend([done()]), tools=tools, hooks=[Reenter()], task="t")
    holder["loop"] = loop
    result = loop.run()
    assert result.stop_reason == "done"
    assert [str(e).startswith("loop is already running") for e in caught] == [True, True]


def test_tool_advancing_its_own_loop_is_an_execution_error(drive: Any) -> None:
    from looplet import BaseToolRegistry, register_done_tool

    holder: dict[str, Any] = {}
    tools = BaseToolRegistry()

    @tools.tool
    def recurse() -> str:
        """Advance the loop that runs this tool."""
        loop = holder["loop"]
        if drive.is_async:
            return asyncio.run(loop.__anext__())  # type: ignore[no-any-return]
        return next(loop)  # type: ignore[no-any-return]

    register_done_tool(tools)

    class Keep:
        def pre_loop(self, *args: Any) -> None:
            holder["loop"] = drive.loop

    steps, _ = drive(MockLLMBackend([as_text("recurse"), done()]), tools=tools, hooks=[Keep()])
    assert steps[0].tool_result.error_kind == ErrorKind.EXECUTION
    assert "loop is already running" in steps[0].tool_result.error


def test_async_hook_advancing_its_own_loop_gets_a_runtime_error() -> None:
    from looplet import async_composable_loop

    tools, _ = greeting_tools()
    caught: list[BaseException] = []
    holder: dict[str, Any] = {}

    class Reenter:
        async def pre_dispatch(self, *args: Any) -> None:
            try:
                await holder["loop"].__anext__()
            except RuntimeError as exc:
                caught.append(exc)

    async def main() -> Any:
        loop = async_composable_loop(MockLLMBackend([done()]), tools=tools, hooks=[Reenter()], task="t")
        holder["loop"] = loop
        return await loop.run()

    assert asyncio.run(main()).stop_reason == "done"
    assert len(caught) == 1 and "loop is already running" in str(caught[0])


def test_no_hook_config_fields_leak_between_runs() -> None:
    # one setting in one place: the loop reads the config it was given (as a copy it keeps)
    tools, _ = greeting_tools()
    config = LoopConfig(max_steps=1)
    loop = composable_loop(MockLLMBackend([as_text("greet", name="A")]), tools=tools, config=config, task="t")
    assert loop.run().stop_reason == "max_steps"
    assert loop.state.config == config


def test_a_hook_cannot_raise_the_step_budget_by_changing_the_config(drive: Any) -> None:
    class Greedy:
        def pre_dispatch(self, state: Any, log: Any, call: Any, step: int) -> None:
            state.config.max_steps = 50
            state.config.max_llm_calls = 500

    tools, _ = greeting_tools()
    config = LoopConfig(max_steps=3)
    llm = MockLLMBackend([as_text("greet", name=str(i)) for i in range(12)])
    steps, result = drive(llm, tools=tools, config=config, task="t", hooks=[Greedy()])
    assert len(steps) == 3 and result.stop_reason == "max_steps"
    assert config.max_steps == 3  # the caller's own object is never changed either


def test_a_hook_method_of_the_original_looplet_is_reported_with_its_replacement() -> None:
    import warnings

    class Gate:
        def check_permission(self, *args: Any) -> bool:
            return False

        def post_dispatch(self, *args: Any) -> None:  # a real slot too: still warned
            return None

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        composable_loop(MockLLMBackend([]), hooks=[Gate()], task="t")
    texts = [str(w.message) for w in caught]
    assert any("'check_permission'" in t and "pre_dispatch returning Deny" in t for t in texts), texts
    assert all(w.filename == __file__ for w in caught)


def test_loop_hook_is_runtime_checkable_for_a_hook_with_every_method() -> None:
    from looplet import LoopHook

    assert isinstance(Recorder(), LoopHook)
    assert not isinstance(object(), LoopHook)


def test_after_step_sees_each_step_recorded_before_the_caller_does(drive: Any) -> None:
    tools, _ = greeting_tools()
    seen: list[tuple[int, bool, bool]] = []
    yielded: list[int] = []

    class Durable:
        def after_step(self, state: Any, log: Any, step: Any) -> None:
            answered = any(m.role == "tool" and m.call_id == step.tool_call.call_id for m in log)
            in_state = state.steps[-1] is step
            seen.append((step.number, in_state, answered or step.tool_call.tool == ""))
            assert step.number not in yielded  # before the consumer gets it

    script = ["thinking aloud", as_text("greet", name="A"), as_text("nope"), done()]
    steps, result = drive(MockLLMBackend(script), tools=tools, task="t", hooks=[Durable()])
    yielded.extend(s.number for s in steps)
    assert seen == [(1, True, True), (2, True, True), (3, True, True), (4, True, True)]
    assert result.stop_reason == "done"


def test_a_failing_after_step_stops_the_run_and_its_step_is_recorded_but_not_yielded(drive: Any) -> None:
    # INV-2: a yielded step is one every after_step hook (a checkpoint among them) took in.
    tools, greeted = greeting_tools()

    class DiskFull:
        def after_step(self, state: Any, log: Any, step: Any) -> None:
            raise OSError(28, "No space left on device")

    llm = MockLLMBackend([as_text("greet", name="A"), as_text("greet", name="B")])
    steps, result = drive(llm, tools=tools, task="t", hooks=[DiskFull()])
    assert steps == [] and greeted == ["A"]
    assert [s.tool_call.args for s in result.steps] == [{"name": "A"}]
    assert result.stop_reason == "hook_error" and "DiskFull.after_step raised OSError" in str(result.error)
