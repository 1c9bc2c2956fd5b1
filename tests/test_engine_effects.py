"""The step engine driven by hand, as a third driver would: the exact sequence of effects it yields.

`Engine.run()` yields `CallHook`, `CallLLM` and `RunTools` effects and the
`Step`s, and is sent each effect's outcome (or thrown the exception that
carrying it out raised); `Engine.finish()` is the end-of-run flow and returns
the `RunResult`. Nothing here goes through `composable_loop`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest
from doubles import Recorder, greeting_tools

from looplet import (
    Ask,
    BaseToolRegistry,
    DefaultState,
    LLMError,
    LLMResponse,
    LoopConfig,
    RunResult,
    Step,
    ToolCall,
    ToolResult,
)
from looplet.engine import CallHook, CallLLM, Engine, Flow, RunTools
from looplet.hooks.slots import HookSlots
from looplet.tools.registry import PreparedCall
from looplet.types import args_hash


def _engine(tools: BaseToolRegistry, hooks: Iterable[object] = (), **config: Any) -> Engine:
    """An engine built from public parts, the way a driver of its own would build one."""
    return Engine(
        llm=None,
        tools=tools,
        hooks=HookSlots(hooks),
        config=LoopConfig(**config),
        state=DefaultState(),
        task="greet people",
    )


def _reply(*calls: tuple[str, str, dict[str, Any]]) -> LLMResponse:
    """A model reply with native calls given as (call id, tool, args)."""
    return LLMResponse(tool_calls=[ToolCall(tool, args, call_id=call_id) for call_id, tool, args in calls])


def _ran(call: PreparedCall) -> ToolResult:
    """The result a driver would report for `call` (built by hand: no tool body runs)."""
    if call.spec.done:
        return ToolResult(tool=call.spec.name, data=dict(call.args), call_id=call.call.call_id)
    greeting = {"greeting": f"Hello, {call.args['name']}!"}
    return ToolResult(tool=call.spec.name, data=greeting, call_id=call.call.call_id)


def _label(effect: Any) -> str:
    if isinstance(effect, CallHook):
        if effect.method in ("pre_dispatch", "post_dispatch"):
            return f"hook:{effect.method}:{effect.args[2].call_id}"
        return f"hook:{effect.method}"
    if isinstance(effect, CallLLM):
        return "llm"
    if isinstance(effect, RunTools):
        return "tools:" + ",".join(c.call.call_id for c in effect.calls)
    assert isinstance(effect, Step), f"the engine yielded a {type(effect).__name__}"
    return f"step:{effect.number}:{effect.tool_call.call_id}"


def _drain(
    flow: Flow,
    replies: Iterable[LLMResponse],
    answer: Callable[[CallHook], Any] | None = None,
    outcome: Any = None,
) -> tuple[list[str], Any]:
    """Run `flow` to its end as a driver: hooks called (or answered by `answer`), replies sent
    in order, each RunTools answered with `_ran`. Returns (the effects' labels, the flow's value).

    `outcome` is the first thing sent: the answer to an effect the test already took by hand.
    """
    replies = iter(replies)
    labels: list[str] = []
    error: Exception | None = None
    while True:
        try:
            effect = flow.throw(error) if error is not None else flow.send(outcome)
        except StopIteration as stop:
            return labels, stop.value
        labels.append(_label(effect))
        outcome = error = None
        if isinstance(effect, CallHook):
            try:  # a hook that raises is thrown back in, as the drivers do
                outcome = answer(effect) if answer is not None else effect.fn(*effect.args)
            except Exception as exc:
                error = exc
        elif isinstance(effect, CallLLM):
            outcome = next(replies)
        elif isinstance(effect, RunTools):
            outcome = [_ran(call) for call in effect.calls]


def _finish(engine: Engine) -> RunResult:
    labels, result = _drain(engine.finish(), [])
    assert labels == [] and isinstance(result, RunResult)
    return result


# -- the sequences -------------------------------------------------------------------------


def test_a_single_call_then_done_by_hand() -> None:
    tools, _ = greeting_tools()
    engine = _engine(tools)
    flow = engine.run()

    ask = next(flow)
    assert isinstance(ask, CallLLM) and ask.request.step == 1
    run = flow.send(_reply(("c1", "greet", {"name": "Ada"})))
    assert isinstance(run, RunTools) and [c.call.call_id for c in run.calls] == ["c1"]
    assert run.timeouts == [None]
    greeted = ToolResult(tool="greet", data={"greeting": "Hello, Ada!"}, call_id="c1")
    step = flow.send([greeted])
    assert isinstance(step, Step) and step.number == 1 and step.tool_result is greeted
    assert isinstance(flow.send(None), CallLLM)
    run = flow.send(_reply(("c2", "done", {"answer": "all greeted"})))
    assert isinstance(run, RunTools) and [c.call.call_id for c in run.calls] == ["c2"]
    step = flow.send([_ran(run.calls[0])])
    assert isinstance(step, Step) and step.number == 2
    with pytest.raises(StopIteration):
        flow.send(None)

    result = _finish(engine)
    assert result.stop_reason == "done" and result.final_answer == {"answer": "all greeted"}
    assert result.llm_calls == 2 and [s.tool_call.call_id for s in result.steps] == ["c1", "c2"]


def test_every_hook_point_of_a_run_is_an_effect_in_turn_order() -> None:
    tools, _ = greeting_tools()
    recorder = Recorder()
    engine = _engine(tools, [recorder])
    replies = [_reply(("c1", "greet", {"name": "Ada"})), _reply(("c2", "done", {"answer": "ok"}))]

    labels, _ = _drain(engine.run(), replies)

    assert labels == [
        "hook:pre_loop",
        "hook:pre_prompt",
        "llm",
        "hook:pre_dispatch:c1",
        "tools:c1",
        "hook:post_dispatch:c1",
        "hook:after_step",
        "step:1:c1",
        "hook:should_stop",
        "hook:pre_prompt",
        "llm",
        "hook:pre_dispatch:c2",
        "tools:c2",
        "hook:check_done",
        "hook:post_dispatch:c2",
        "hook:after_step",
        "step:2:c2",
    ]
    assert engine.state.stop_reason == "done"
    labels, result = _drain(engine.finish(), [])
    assert labels == ["hook:on_loop_end"] and result.stop_reason == "done"


def test_a_concurrent_batch_is_one_run_tools_effect_then_a_step_per_call_in_call_order() -> None:
    tools, _ = greeting_tools(concurrent_safe=True)
    engine = _engine(tools, tool_timeout_s=5.0)
    batch = _reply(
        ("a", "greet", {"name": "Ada"}), ("b", "greet", {"name": "Bo"}), ("c", "greet", {"name": "Cy"})
    )
    flow = engine.run()

    assert isinstance(next(flow), CallLLM)
    run = flow.send(batch)
    assert isinstance(run, RunTools)
    assert [c.call.call_id for c in run.calls] == ["a", "b", "c"] and run.timeouts == [5.0] * 3
    labels, _ = _drain(flow, [_reply(("d", "done", {"answer": "ok"}))], outcome=[_ran(c) for c in run.calls])

    assert labels == ["step:1:a", "step:2:b", "step:3:c", "llm", "tools:d", "step:4:d"]
    greetings = [s.tool_result.data["greeting"] for s in engine.state.steps[:3]]
    assert greetings == ["Hello, Ada!", "Hello, Bo!", "Hello, Cy!"]


class AsksAboutBo:
    """Pauses any greeting of Bo for a human."""

    def pre_dispatch(self, state: DefaultState, log: Any, tool_call: ToolCall, step: int) -> Any:
        return Ask("greeting Bo needs a human") if tool_call.args.get("name") == "Bo" else None


def test_a_call_a_hook_asks_about_gets_no_run_tools_and_the_run_stops_approval_pending() -> None:
    tools, _ = greeting_tools()
    engine = _engine(tools, [AsksAboutBo()])
    turn = _reply(
        ("a", "greet", {"name": "Ada"}), ("b", "greet", {"name": "Bo"}), ("c", "greet", {"name": "Cy"})
    )

    labels, _ = _drain(engine.run(), [turn])

    assert labels == [
        "llm",
        "hook:pre_dispatch:a",
        "tools:a",
        "step:1:a",
        "hook:pre_dispatch:b",
        "hook:pre_dispatch:c",
        "tools:c",
        "step:2:c",
    ]
    state = engine.state
    assert state.stop_reason == "approval_pending"
    assert [(p.call_id, p.tool, p.args, p.reason) for p in state.pending] == [
        ("b", "greet", {"name": "Bo"}, "greeting Bo needs a human")
    ]
    assert [m.call_id for m in engine.history if m.role == "tool"] == ["a", "c"]  # nothing for b
    result = _finish(engine)
    assert result.stop_reason == "approval_pending" and [p.call_id for p in result.pending] == ["b"]


def test_an_exception_thrown_in_at_the_model_call_stops_the_run_with_llm_error() -> None:
    tools, _ = greeting_tools()
    engine = _engine(tools)
    flow = engine.run()
    down = ConnectionError("the provider is down")

    assert isinstance(next(flow), CallLLM)
    with pytest.raises(StopIteration):
        flow.throw(down)

    result = _finish(engine)
    assert result.stop_reason == "llm_error" and result.steps == [] and result.llm_calls == 1
    assert isinstance(result.error, LLMError) and result.error.__cause__ is down
    assert "the provider is down" in result.detail


BATCH = _reply(
    ("a", "greet", {"name": "Ada"}), ("b", "greet", {"name": "Bo"}), ("c", "greet", {"name": "Cy"})
)
FINISH = _reply(("d", "done", {"answer": "ok"}))


def _at_batch(engine: Engine) -> tuple[Flow, RunTools]:
    """Start `engine`'s run and answer its first model call with `BATCH`: (the flow, its RunTools)."""
    flow = engine.run()
    assert isinstance(next(flow), CallLLM)
    run = flow.send(BATCH)
    assert isinstance(run, RunTools)
    return flow, run


def test_an_exception_thrown_in_at_run_tools_gives_each_call_an_execution_error_and_the_run_goes_on() -> None:
    tools, _ = greeting_tools(concurrent_safe=True)
    engine = _engine(tools)
    flow, _ = _at_batch(engine)

    first = flow.throw(RuntimeError("the worker pool died"))
    labels, _ = _drain(flow, [FINISH])

    assert [_label(first), *labels] == ["step:1:a", "step:2:b", "step:3:c", "llm", "tools:d", "step:4:d"]
    failed = [s.tool_result for s in engine.state.steps[:3]]
    assert [r.error_kind for r in failed] == ["execution"] * 3
    assert all(r.error is not None and "RuntimeError: the worker pool died" in r.error for r in failed)
    assert [r.call_id for r in failed] == ["a", "b", "c"]
    assert engine.state.stop_reason == "done"


@pytest.mark.parametrize("outcome", [None, "three results", [], ["one"] * 4], ids=repr)
def test_an_outcome_that_is_not_one_result_per_call_gives_each_call_an_execution_error(outcome: Any) -> None:
    tools, _ = greeting_tools(concurrent_safe=True)
    engine = _engine(tools)
    flow, _ = _at_batch(engine)

    labels, _ = _drain(flow, [FINISH], outcome=outcome)

    assert labels == ["step:1:a", "step:2:b", "step:3:c", "llm", "tools:d", "step:4:d"]
    failed = [s.tool_result for s in engine.state.steps[:3]]
    assert [r.error_kind for r in failed] == ["execution"] * 3
    assert all(r.error is not None and "the driver returned" in r.error for r in failed)


def test_an_outcome_with_an_item_that_is_not_a_tool_result_gives_that_call_an_execution_error() -> None:
    tools, _ = greeting_tools(concurrent_safe=True)
    engine = _engine(tools)
    flow, run = _at_batch(engine)
    outcome = [_ran(run.calls[0]), None, _ran(run.calls[2])]

    labels, _ = _drain(flow, [FINISH], outcome=outcome)

    assert labels == ["step:1:a", "step:2:b", "step:3:c", "llm", "tools:d", "step:4:d"]
    assert [s.tool_result.error_kind for s in engine.state.steps[:3]] == [None, "execution", None]


class Ends:
    """An on_loop_end hook that notes the result it was shown (or fails)."""

    def __init__(self, fails: bool = False) -> None:
        self.fails = fails
        self.shown: list[Any] = []

    def on_loop_end(self, state: DefaultState, log: Any, ctx: Any, llm: Any) -> None:
        self.shown.append(ctx.result)
        if self.fails:
            raise RuntimeError("the exporter is gone")


def test_finish_yields_the_on_loop_end_hooks_in_order_and_returns_the_run_result() -> None:
    tools, _ = greeting_tools()
    first, second = Ends(), Ends()
    engine = _engine(tools, [first, second])
    _drain(engine.run(), [_reply(("c1", "done", {"answer": "ok"}))])
    flow = engine.finish()

    effect = next(flow)
    assert isinstance(effect, CallHook) and (effect.hook, effect.method) == (first, "on_loop_end")
    result = effect.args[2].result  # the hook is shown the result it will return
    assert isinstance(result, RunResult) and result.stop_reason == "done"
    effect = flow.send(effect.fn(*effect.args))
    assert isinstance(effect, CallHook) and (effect.hook, effect.method) == (second, "on_loop_end")
    with pytest.raises(StopIteration) as stopped:
        flow.send(effect.fn(*effect.args))

    assert stopped.value.value is result and engine.result is result
    assert result is not None
    assert first.shown == [result] and second.shown == [result]
    assert result.final_answer == {"answer": "ok"} and result.llm_calls == 1


def test_an_on_loop_end_hook_that_fails_does_not_keep_the_next_one_from_running() -> None:
    tools, _ = greeting_tools()
    failing, after = Ends(fails=True), Ends()
    engine = _engine(tools, [failing, after])
    _drain(engine.run(), [_reply(("c1", "done", {"answer": "ok"}))])

    labels, result = _drain(engine.finish(), [])

    assert labels == ["hook:on_loop_end", "hook:on_loop_end"]
    assert after.shown == [result] and result.stop_reason == "done"
    assert "on_loop_end failed" in result.detail and "the exporter is gone" in result.detail


# -- the run record around RunTools ----------------------------------------------------------


def _until(flow: Flow, effect: Any, kind: type[Any]) -> Any:
    """Call the hooks `flow` yields, from `effect` on, until it yields a `kind` effect; return that."""
    while not isinstance(effect, kind):
        assert isinstance(effect, CallHook), f"{type(effect).__name__} before a {kind.__name__}"
        effect = flow.send(effect.fn(*effect.args))
    return effect


def test_each_calls_intent_is_recorded_before_run_tools_and_its_result_before_its_step() -> None:
    tools, _ = greeting_tools(concurrent_safe=True)
    recorder = Recorder()
    engine = _engine(tools, [recorder])
    state = engine.state
    flow = engine.run()
    _until(flow, next(flow), CallLLM)
    effect = _until(flow, flow.send(BATCH), RunTools)

    assert [(i.call_id, i.tool, i.args, i.result) for i in state.in_flight.values()] == [
        ("a", "greet", {"name": "Ada"}, None),
        ("b", "greet", {"name": "Bo"}, None),
        ("c", "greet", {"name": "Cy"}, None),
    ]
    results = {c.call.call_id: _ran(c) for c in effect.calls}
    effect = flow.send(list(results.values()))

    concluded: list[str] = []
    verified: set[str] = set()  # calls whose journaled result was checked before their step
    while len(concluded) < 3:
        if isinstance(effect, Step):
            call_id = effect.tool_call.call_id
            assert call_id not in state.in_flight and state.steps[-1] is effect  # the step concluded it
            concluded.append(call_id)
            effect = flow.send(None)
            continue
        assert isinstance(effect, CallHook)
        recorded = {s.tool_call.call_id for s in state.steps}
        for call_id in results.keys() - recorded:  # no step yet: the intent holds the result
            assert state.in_flight[call_id].result is results[call_id]
            verified.add(call_id)
        if effect.method == "after_step":  # the step is in the record and its answer in the history
            step = effect.args[2]
            assert state.steps[-1] is step and engine.history.messages[-1].call_id == step.tool_call.call_id
        effect = flow.send(effect.fn(*effect.args))
    assert concluded == ["a", "b", "c"] and verified == {"a", "b", "c"} and state.in_flight == {}


def test_an_intent_names_its_arguments_by_their_hash() -> None:
    tools, _ = greeting_tools(concurrent_safe=True)
    engine = _engine(tools)
    _, run = _at_batch(engine)

    hashes = [i.to_dict()["args_hash"] for i in engine.state.in_flight.values()]
    assert hashes == [args_hash(c.args) for c in run.calls]
