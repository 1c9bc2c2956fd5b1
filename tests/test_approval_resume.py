"""Pausing a call for a human and continuing the run (issue 7, items 3-5), in both loops.

A ``pre_dispatch`` hook returns ``Ask(reason)``: the call waits, unrun and unanswered, while
the turn's other calls run; the run stops ``approval_pending``. ``state.approve`` /
``state.reject`` record the decision in the run record (in any process, through JSON), and
passing the state back continues the same run: each tool body runs once, nothing is counted
twice. Every stop but ``done`` may be continued; a finished run points to fork.

Tool bodies are counted by the tools themselves (a list, or a file for other processes), and
the model is a script that fails the run if it is called once more than the test expects.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from doubles import Driver, greeting_tools, native

from looplet import (
    Allow,
    Ask,
    AsyncFunctionBackend,
    BaseToolRegistry,
    DecisionError,
    DefaultState,
    Deny,
    FunctionBackend,
    LLMRequest,
    LoopConfig,
    MockLLMBackend,
    PendingCall,
    Stop,
    ToolCall,
    ToolContext,
    Usage,
    async_composable_loop,
    composable_loop,
    register_done_tool,
)
from looplet.errors import ConfigError
from looplet.types import args_hash

TASK = "greet everyone on the list"
USAGE = Usage(input_tokens=100, output_tokens=10)
HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"


def _turn(*names: str) -> list[ToolCall]:
    """One model reply greeting each name, the call id being the name in lower case."""
    return [native("greet", name.lower(), name=name) for name in names]


def _finish() -> ToolCall:
    return native("done", "fin", answer="everyone greeted")


class AskFor:
    """A pre_dispatch gate that pauses greetings of its names; counts the calls put to it, per id."""

    def __init__(self, *names: str) -> None:
        self.names = set(names)
        self.asked: Counter[str] = Counter()
        self.steps: dict[str, int] = {}

    def pre_dispatch(self, state: Any, log: Any, call: ToolCall, step: int) -> Any:
        self.asked[call.call_id] += 1
        self.steps[call.call_id] = step
        if call.tool == "greet" and call.args.get("name") in self.names:
            return Ask(f"may I greet {call.args['name']}?")
        return None


class AsyncAskFor:
    """`AskFor` as an async hook (for the async loop)."""

    def __init__(self, *names: str) -> None:
        self.names = set(names)
        self.asked: Counter[str] = Counter()

    async def pre_dispatch(self, state: Any, log: Any, call: ToolCall, step: int) -> Any:
        await asyncio.sleep(0)
        self.asked[call.call_id] += 1
        if call.tool == "greet" and call.args.get("name") in self.names:
            return Ask(f"may I greet {call.args['name']}?")
        return None


def _shape(steps: list[Any]) -> list[tuple[Any, ...]]:
    """What two runs of the same script must agree on, step by step (not timings or approvals)."""
    return [
        (
            s.number,
            s.turn,
            s.tool_call.call_id,
            s.tool_call.tool,
            s.tool_call.args,
            s.tool_result.data,
            s.tool_result.error,
            s.usage,
            s.free,
        )
        for s in steps
    ]


def _answered(state: DefaultState) -> list[str]:
    """The call ids that have a tool result in the history, in order."""
    return [m.call_id for m in state.history if m.role == "tool"]


def _tool_message(request: LLMRequest, call_id: str) -> str:
    """What the model was shown as the result of `call_id` in `request`."""
    found = [m.content for m in request.messages if m.role == "tool" and m.call_id == call_id]
    assert len(found) == 1, f"{len(found)} results for {call_id} in the request"
    return str(found[0])


def _paused_at_b(drive: Driver) -> tuple[BaseToolRegistry, list[str], AskFor, MockLLMBackend, DefaultState]:
    """A run whose first turn greets A and asks before greeting B, stopped ``approval_pending``."""
    tools, greeted = greeting_tools()
    gate = AskFor("B")
    llm = MockLLMBackend([_turn("A", "B"), _finish()], usage=USAGE)
    state = DefaultState(task=TASK)
    _, result = drive(llm, tools=tools, hooks=[gate], state=state)
    assert result.stop_reason == "approval_pending" and greeted == ["A"]
    return tools, greeted, gate, llm, state


# -- item 3: pause before a tool runs --------------------------------------------------


@pytest.mark.parametrize("concurrent_safe", [False, True], ids=["one-by-one", "concurrent"])
def test_an_asked_call_waits_unrun_while_its_turns_allowed_calls_run_and_the_run_stops_approval_pending(
    drive: Driver, concurrent_safe: bool
) -> None:
    tools, greeted = greeting_tools(concurrent_safe=concurrent_safe)
    gate = AskFor("B", "D")
    llm = MockLLMBackend([_turn("A", "B", "C", "D")], usage=USAGE)  # a second model call would fail the run
    state = DefaultState(task=TASK)

    steps, result = drive(llm, tools=tools, hooks=[gate], state=state)

    assert greeted == ["A", "C"]
    assert [s.tool_call.call_id for s in steps] == ["a", "c"]
    assert result.stop_reason == state.stop_reason == "approval_pending"
    expected = [
        PendingCall("b", "greet", {"name": "B"}, args_hash({"name": "B"}), "may I greet B?"),
        PendingCall("d", "greet", {"name": "D"}, args_hash({"name": "D"}), "may I greet D?"),
    ]
    assert result.pending == expected
    assert state.pending == expected
    assert all(p.decision is None for p in state.pending)
    # nothing of the paused calls is in the history: they stay open, unanswered
    assert _answered(state) == ["a", "c"]
    assert [m.role for m in state.history] == ["user", "assistant", "tool", "tool"]
    assert [c.call_id for c in state.open_calls] == ["b", "d"]
    # paused calls are neither run, nor charged, nor dropped; the model was called once
    assert len(llm.calls) == state.llm_calls == result.llm_calls == 1
    assert state.steps_charged == 2
    assert result.dropped_calls == [] and state.dropped_calls == []
    assert "b" in result.detail and "d" in result.detail and "approve" in result.detail


def test_paused_calls_each_get_their_own_id_even_when_the_model_repeats_or_omits_ids(drive: Driver) -> None:
    tools, greeted = greeting_tools()
    gate = AskFor("B", "D", "E")
    reply = [native("greet", "x", name="B"), native("greet", "x", name="D"), native("greet", "", name="E")]
    llm = MockLLMBackend([reply, _finish()])
    state = DefaultState(task=TASK)

    _, first = drive(llm, tools=tools, hooks=[gate], state=state)

    ids = {p.args["name"]: p.call_id for p in first.pending}
    assert sorted(ids) == ["B", "D", "E"]
    assert len(set(ids.values())) == 3 and all(ids.values())
    # each decision reaches its own call: approving B's id does not approve D's
    state.approve(ids["B"])
    state.reject(ids["D"], "D is away")
    state.approve(ids["E"])
    steps, result = drive(llm, tools=tools, hooks=[gate], state=state)
    assert greeted == ["B", "E"]
    by_id = {s.tool_call.call_id: s for s in steps}
    assert by_id[ids["B"]].tool_call.args == {"name": "B"} and by_id[ids["B"]].tool_result.ok
    assert by_id[ids["D"]].tool_result.error_kind == "denied"
    assert by_id[ids["E"]].tool_call.args == {"name": "E"} and by_id[ids["E"]].tool_result.ok
    assert result.stop_reason == "done"


def test_calls_after_a_paused_call_in_a_concurrent_batch_see_the_step_number_they_are_recorded_as(
    drive: Driver,
) -> None:
    tools = BaseToolRegistry()
    told: dict[str, int] = {}

    @tools.tool(concurrent_safe=True)
    def greet(name: str, ctx: ToolContext) -> str:
        """Greet someone by name."""
        told[ctx.call_id] = ctx.step
        return f"Hello, {name}!"

    register_done_tool(tools)
    gate = AskFor("B")
    llm = MockLLMBackend([_turn("B", "A"), _finish()])
    steps, _ = drive(llm, tools=tools, hooks=[gate], state=DefaultState(task=TASK))

    assert [(s.tool_call.call_id, s.number) for s in steps] == [("a", 1)]
    assert gate.steps["a"] == 1  # what pre_dispatch was told
    assert told["a"] == 1  # what the tool's ctx.step said


# -- item 4: decide and continue ---------------------------------------------------------


def test_an_approved_call_runs_once_with_its_args_without_the_gates_and_nothing_is_counted_twice(
    drive: Driver,
) -> None:
    plain_tools, plain_greeted = greeting_tools()
    plain_state = DefaultState(task=TASK)
    plain_llm = MockLLMBackend([_turn("A", "B"), _finish()], usage=USAGE)
    _, plain = drive(plain_llm, tools=plain_tools, state=plain_state)
    assert plain.stop_reason == "done"

    tools, greeted = greeting_tools()
    gate = AskFor("B")
    llm = MockLLMBackend([_turn("A", "B"), _finish()], usage=USAGE)
    state = DefaultState(task=TASK)
    first, paused = drive(llm, tools=tools, hooks=[gate], state=state)
    assert paused.stop_reason == "approval_pending"
    assert paused.usage == USAGE and paused.llm_calls == 1
    state.approve("b")
    rest, result = drive(llm, tools=tools, hooks=[gate], state=state)

    assert greeted == plain_greeted == ["A", "B"]
    assert gate.asked == {"a": 1, "b": 1, "fin": 1}  # b was put to the gate once: when it asked
    approved = rest[0]
    assert approved.tool_call.call_id == "b" and approved.tool_call.args == {"name": "B"}
    assert approved.tool_result.data == {"greeting": "Hello, B!"}
    assert approved.metadata["approval"] == {"decision": "approved", "reason": "may I greet B?"}
    assert "original_args" not in approved.metadata
    # the continued run is the uninterrupted one: steps, counters and usage carry on
    assert result.stop_reason == "done" and result.final_answer == plain.final_answer
    assert _shape(first + rest) == _shape(plain.steps) == _shape(state.steps)
    assert result.usage == plain.usage == Usage(input_tokens=200, output_tokens=20)
    assert result.llm_calls == plain.llm_calls == state.llm_calls == len(llm.calls) == 2
    assert state.steps_charged == plain_state.steps_charged == 3
    assert state.turns == plain_state.turns == 2
    assert state.history.to_list() == plain_state.history.to_list()
    assert result.pending == [] and state.pending == []
    # the model's second call saw B's real result
    assert "Hello, B!" in _tool_message(llm.calls[1], "b")


def test_a_gate_listed_after_the_one_that_asked_still_decides_an_approved_call(drive: Driver) -> None:
    class NeverB:
        def __init__(self) -> None:
            self.seen: list[str] = []

        def pre_dispatch(self, state: Any, log: Any, call: ToolCall, step: int) -> Any:
            self.seen.append(call.call_id)
            return Deny("B is on the do-not-greet list") if call.args.get("name") == "B" else None

    tools, greeted = greeting_tools()
    asker, never_b = AskFor("B"), NeverB()
    llm = MockLLMBackend([_turn("B"), _finish()])
    state = DefaultState(task=TASK)
    drive(llm, tools=tools, hooks=[asker, never_b], state=state)
    assert never_b.seen == []  # the pause came first
    state.approve("b")

    steps, _ = drive(llm, tools=tools, hooks=[asker, never_b], state=state)

    assert asker.asked["b"] == 1  # the gate that asked is answered by the human
    assert never_b.seen.count("b") == 1  # the gates after it still have their say
    assert greeted == []
    assert steps[0].tool_result.error_kind == "denied"


def test_approved_edited_args_are_validated_again_and_the_edit_is_recorded_on_the_step(drive: Driver) -> None:
    tools, greeted, gate, llm, state = _paused_at_b(drive)

    state.approve("b", args={"nme": "Bea"})
    with pytest.raises(DecisionError) as refused:
        drive(llm, tools=tools, hooks=[gate], state=state)
    message = str(refused.value)
    assert "'b'" in message and "name" in message and "nme" in message and "args=" in message
    assert greeted == ["A"] and len(llm.calls) == 1 and len(state.steps) == 1

    state.approve("b", args={"name": "Bea"})  # a decision may be taken again until it is carried out
    steps, result = drive(llm, tools=tools, hooks=[gate], state=state)

    assert greeted == ["A", "Bea"]
    edited = steps[0]
    assert edited.tool_call.call_id == "b" and edited.tool_call.args == {"name": "Bea"}
    assert edited.tool_result.data == {"greeting": "Hello, Bea!"}
    assert edited.metadata["original_args"] == {"name": "B"}
    assert edited.metadata["approval"]["decision"] == "approved"
    assert gate.asked["b"] == 1
    assert result.stop_reason == "done"


def test_approve_with_args_that_are_not_a_dict_is_refused_at_once(drive: Driver) -> None:
    _, _, _, _, state = _paused_at_b(drive)
    with pytest.raises(DecisionError, match="dict"):
        state.approve("b", args=["Bea"])  # type: ignore[arg-type]
    assert state.pending[0].decision is None


@pytest.mark.parametrize("bad", [Path("Bea"), float("nan")], ids=["path", "nan"])
def test_approve_refuses_edited_args_the_record_could_not_save(drive: Driver, bad: Any) -> None:
    _, _, _, _, state = _paused_at_b(drive)
    with pytest.raises(DecisionError, match="name"):
        state.approve("b", args={"name": bad})
    json.dumps(state.to_dict(), allow_nan=False)  # the run can still be saved


def test_a_refused_decision_leaves_the_run_record_as_it_was(drive: Driver) -> None:
    tools, _, gate, llm, state = _paused_at_b(drive)
    state.approve("b", args={"nme": "Bea"})
    before = state.to_dict()

    with pytest.raises(DecisionError):
        drive(llm, tools=tools, hooks=[gate], state=state)

    after = state.to_dict()
    assert after["stop_reason"] == "approval_pending"
    assert after == before


def test_a_hook_rewrite_before_the_pause_is_recorded_on_the_approved_step(drive: Driver) -> None:
    class Capitalise:
        def pre_dispatch(self, state: Any, log: Any, call: ToolCall, step: int) -> Any:
            if call.tool == "greet":
                return Allow(updated_args={"name": str(call.args["name"]).upper()})
            return None

    tools, greeted = greeting_tools()
    hooks = [Capitalise(), AskFor("B")]
    llm = MockLLMBackend([[native("greet", "b", name="b")], _finish()])
    state = DefaultState(task=TASK)
    drive(llm, tools=tools, hooks=hooks, state=state)
    assert state.pending[0].args == {"name": "B"}
    state.approve("b")
    steps, _ = drive(llm, tools=tools, hooks=hooks, state=state)

    assert greeted == ["B"]
    assert steps[0].tool_call.args == {"name": "B"}
    assert steps[0].metadata.get("original_args") == {"name": "b"}


def test_a_rejected_call_never_runs_and_the_model_is_told_it_was_denied_and_why(drive: Driver) -> None:
    tools, greeted, gate, llm, state = _paused_at_b(drive)

    state.reject("b", "B asked not to be greeted")
    steps, result = drive(llm, tools=tools, hooks=[gate], state=state)

    assert greeted == ["A"]
    denied = steps[0]
    assert denied.tool_call.call_id == "b"
    assert denied.tool_result.error_kind == "denied"
    assert denied.metadata["approval"] == {
        "decision": "rejected",
        "reason": "may I greet B?",
        "note": "B asked not to be greeted",
    }
    assert "denied: B asked not to be greeted" in _tool_message(llm.calls[1], "b")
    assert gate.asked["b"] == 1
    assert [s.tool_call.call_id for s in steps] == ["b", "fin"]
    assert result.stop_reason == "done" and len(llm.calls) == 2


def test_three_paused_calls_of_one_turn_are_decided_and_concluded_separately(drive: Driver) -> None:
    tools, greeted = greeting_tools()
    gate = AskFor("A", "B", "C")
    llm = MockLLMBackend([_turn("A", "B", "C"), _finish()], usage=USAGE)
    state = DefaultState(task=TASK)

    first, r1 = drive(llm, tools=tools, hooks=[gate], state=state)
    assert first == [] and greeted == []
    assert [p.call_id for p in r1.pending] == ["a", "b", "c"]

    state.approve("a")
    state.reject("b", "not B")
    second, r2 = drive(llm, tools=tools, hooks=[gate], state=state)
    assert greeted == ["A"]
    assert [s.tool_call.call_id for s in second] == ["a", "b"]
    assert second[1].tool_result.error_kind == "denied"
    assert r2.stop_reason == "approval_pending"
    assert [p.call_id for p in r2.pending] == ["c"] and state.pending[0].decision is None
    assert len(llm.calls) == 1  # stopped again without asking the model
    assert _answered(state) == ["a", "b"]

    state.approve("c")
    third, r3 = drive(llm, tools=tools, hooks=[gate], state=state)
    assert greeted == ["A", "C"]
    assert [s.tool_call.call_id for s in third] == ["c", "fin"]
    assert r3.stop_reason == "done" and len(llm.calls) == 2
    assert [s.number for s in state.steps] == [1, 2, 3, 4]
    assert gate.asked == {"a": 1, "b": 1, "c": 1, "fin": 1}
    assert r3.usage == Usage(input_tokens=200, output_tokens=20)


@pytest.mark.parametrize("done_first", [False, True], ids=["done-last", "done-first"])
def test_a_done_call_waits_while_a_call_of_its_turn_waits_for_a_decision(
    drive: Driver, done_first: bool
) -> None:
    tools, greeted = greeting_tools()
    gate = AskFor("B")
    reply = [_finish(), *_turn("B")] if done_first else [*_turn("B"), _finish()]
    llm = MockLLMBackend([reply])  # one reply: the done of that turn must end the run
    state = DefaultState(task=TASK)

    steps, paused = drive(llm, tools=tools, hooks=[gate], state=state)

    assert steps == [] and greeted == []
    assert paused.stop_reason == "approval_pending" and paused.final_answer is None
    assert [c.call_id for c in state.open_calls] == ["b", "fin"]  # a done call is put after the others
    assert _answered(state) == []
    assert "fin" not in gate.asked  # not even put to the gates while it waits

    state.approve("b")
    steps, result = drive(llm, tools=tools, hooks=[gate], state=state)

    assert greeted == ["B"]
    assert [s.tool_call.call_id for s in steps] == ["b", "fin"]
    assert result.stop_reason == "done" and result.final_answer == {"answer": "everyone greeted"}
    assert len(llm.calls) == 1


class AskBeforeDone:
    def pre_dispatch(self, state: Any, log: Any, call: ToolCall, step: int) -> Any:
        return Ask("is the work really done?") if call.tool == "done" else None


def test_a_paused_done_call_ends_the_run_when_approved(drive: Driver) -> None:
    tools, greeted = greeting_tools()
    llm = MockLLMBackend([[*_turn("A"), _finish()]])
    state = DefaultState(task=TASK)
    _, paused = drive(llm, tools=tools, hooks=[AskBeforeDone()], state=state)
    assert paused.stop_reason == "approval_pending" and greeted == ["A"] and paused.final_answer is None

    state.approve("fin")
    steps, result = drive(llm, tools=tools, hooks=[AskBeforeDone()], state=state)

    assert [s.tool_call.call_id for s in steps] == ["fin"]
    assert result.stop_reason == "done" and result.final_answer == {"answer": "everyone greeted"}
    assert len(llm.calls) == 1


def test_a_rejected_done_call_sends_the_model_back_to_work(drive: Driver) -> None:
    tools, greeted = greeting_tools()
    llm = MockLLMBackend([[*_turn("A"), _finish()], _turn("B"), native("done", "fin2", answer="now")])
    state = DefaultState(task=TASK)
    hooks = [AskBeforeDone()]
    drive(llm, tools=tools, hooks=hooks, state=state)

    state.reject("fin", "B is not greeted yet")
    steps, result = drive(llm, tools=tools, hooks=hooks, state=state)
    assert [s.tool_call.call_id for s in steps] == ["fin", "b"]
    assert steps[0].tool_result.error_kind == "denied"
    assert "B is not greeted yet" in _tool_message(llm.calls[1], "fin")
    assert result.stop_reason == "approval_pending" and [p.call_id for p in result.pending] == ["fin2"]

    state.approve("fin2")
    _, result = drive(llm, tools=tools, hooks=hooks, state=state)
    assert result.stop_reason == "done" and result.final_answer == {"answer": "now"}
    assert greeted == ["A", "B"] and len(llm.calls) == 3


# -- decisions that cannot be carried out ----------------------------------------------------


def test_a_decision_for_an_unknown_call_is_refused_and_names_the_waiting_calls(drive: Driver) -> None:
    tools, _ = greeting_tools()
    llm = MockLLMBackend([_turn("A", "B", "D")])
    state = DefaultState(task=TASK)
    drive(llm, tools=tools, hooks=[AskFor("B", "D")], state=state)

    with pytest.raises(DecisionError) as approving:
        state.approve("nope")
    with pytest.raises(DecisionError) as rejecting:
        state.reject("a", "too late")  # a call that already ran is not waiting
    for refused, name in ((approving, "'nope'"), (rejecting, "'a'")):
        message = str(refused.value)
        assert name in message and "b, d" in message
    assert all(p.decision is None for p in state.pending)


def test_a_decision_bound_to_other_arguments_is_refused(drive: Driver) -> None:
    _, _, _, _, state = _paused_at_b(drive)
    seen = state.pending[0].args_hash

    with pytest.raises(DecisionError, match="not the"):
        state.approve("b", args_hash=args_hash({"name": "Eve"}))
    with pytest.raises(DecisionError, match="not the"):
        state.reject("b", "no", args_hash="sha256:" + "0" * 64)
    assert state.pending[0].decision is None

    state.approve("b", args_hash=seen)
    assert state.pending[0].decision == "approved"


def _edit_args(data: dict[str, Any]) -> None:
    data["pending"][0]["args"]["name"] = "Mallory"


def _edit_decision(data: dict[str, Any]) -> None:
    data["pending"][0]["decision"] = "maybe"


def _edit_call_id(data: dict[str, Any]) -> None:
    data["pending"][0]["call_id"] = "zzz"


@pytest.mark.parametrize(
    ("edit", "words"),
    [(_edit_args, "changed"), (_edit_decision, "unknown decision"), (_edit_call_id, "not an open call")],
    ids=["args", "decision", "call-id"],
)
@pytest.mark.parametrize("decided", [False, True], ids=["undecided", "approved"])
def test_a_saved_run_whose_pending_call_was_edited_by_hand_is_refused_when_the_loop_is_built(
    drive: Driver, edit: Any, words: str, decided: bool
) -> None:
    tools, greeted, gate, llm, state = _paused_at_b(drive)
    if decided:
        state.approve("b")
    data = json.loads(json.dumps(state.to_dict()))
    edit(data)
    loaded = DefaultState.from_dict(data)

    with pytest.raises(DecisionError, match=words):
        drive(llm, tools=tools, hooks=[gate], state=loaded)

    assert greeted == ["A"] and len(llm.calls) == 1 and len(loaded.steps) == 1


def test_deciding_on_a_call_whose_saved_args_were_edited_is_refused(drive: Driver) -> None:
    _, _, _, _, state = _paused_at_b(drive)
    data = state.to_dict()
    _edit_args(data)
    loaded = DefaultState.from_dict(json.loads(json.dumps(data)))
    with pytest.raises(DecisionError, match="changed"):
        loaded.approve("b")
    with pytest.raises(DecisionError, match="changed"):
        loaded.reject("b", "no")


# -- continuing twice ---------------------------------------------------------------------


def test_a_finished_approved_run_passed_back_is_refused_with_a_pointer_to_fork(drive: Driver) -> None:
    tools, greeted, gate, llm, state = _paused_at_b(drive)
    state.approve("b")
    _, result = drive(llm, tools=tools, hooks=[gate], state=state)
    assert result.stop_reason == "done"

    with pytest.raises(ConfigError, match="fork"):
        drive(llm, tools=tools, hooks=[gate], state=state)
    saved = DefaultState.from_dict(json.loads(json.dumps(state.to_dict())))
    with pytest.raises(ConfigError, match="fork"):
        drive(llm, tools=tools, hooks=[gate], state=saved)

    assert greeted == ["A", "B"] and len(llm.calls) == 2 and len(state.steps) == 3


def test_continuing_a_run_that_still_waits_runs_nothing_twice(drive: Driver) -> None:
    tools, greeted = greeting_tools()
    gate = AskFor("B", "C")
    llm = MockLLMBackend([_turn("A", "B", "C"), _finish()])
    state = DefaultState(task=TASK)
    drive(llm, tools=tools, hooks=[gate], state=state)

    for _ in range(2):  # nothing decided: nothing runs, the model is not asked
        steps, result = drive(llm, tools=tools, hooks=[gate], state=state)
        assert steps == [] and result.stop_reason == "approval_pending"
        assert [p.call_id for p in result.pending] == ["b", "c"]
    assert greeted == ["A"] and len(llm.calls) == 1

    state.approve("b")
    for expected in (["b"], []):  # B runs on the first of these, never on the second
        steps, result = drive(llm, tools=tools, hooks=[gate], state=state)
        assert [s.tool_call.call_id for s in steps] == expected
        assert result.stop_reason == "approval_pending" and [p.call_id for p in result.pending] == ["c"]
    assert greeted == ["A", "B"] and len(llm.calls) == 1

    state.approve("c")
    _, result = drive(llm, tools=tools, hooks=[gate], state=state)
    assert result.stop_reason == "done"
    assert greeted == ["A", "B", "C"]
    assert Counter(s.tool_call.call_id for s in state.steps) == {"a": 1, "b": 1, "c": 1, "fin": 1}
    assert gate.asked == {"a": 1, "b": 1, "c": 1, "fin": 1}


# -- through JSON, in three processes -------------------------------------------------------


def logged_kit(log: Path) -> BaseToolRegistry:
    """The tools of the cross-process run: `greet` appends each name it greets to `log`."""
    tools = BaseToolRegistry()

    @tools.tool
    def greet(name: str) -> dict[str, str]:
        """Greet someone by name."""
        with log.open("a", encoding="utf-8") as out:
            out.write(name + "\n")
        return {"greeting": f"Hello, {name}!"}

    register_done_tool(tools)
    return tools


def pause_and_save(record: Path, log: Path) -> None:
    """Process 1: run until the gate asks about B, then save the record as JSON."""
    state = DefaultState(task=TASK)
    loop = composable_loop(
        MockLLMBackend([_turn("A", "B")], usage=USAGE),
        tools=logged_kit(log),
        hooks=[AskFor("B")],
        state=state,
    )
    for _ in loop:
        pass
    record.write_text(json.dumps(state.to_dict()), encoding="utf-8")


def approve_saved(record: Path, call_id: str) -> None:
    """Process 2: load the saved run, approve one call, save it again (no tools, no model here)."""
    state = DefaultState.from_dict(json.loads(record.read_text(encoding="utf-8")))
    state.approve(call_id)
    record.write_text(json.dumps(state.to_dict()), encoding="utf-8")


def _in_another_process(call: str, *args: str) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(HERE)]))
    code = f"import sys; from pathlib import Path; import test_approval_resume as t; {call}"
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_a_run_paused_in_one_process_is_approved_in_a_second_and_finished_in_a_third(
    drive: Driver, tmp_path: Path
) -> None:
    record, log = tmp_path / "run.json", tmp_path / "greeted.log"

    _in_another_process("t.pause_and_save(Path(sys.argv[1]), Path(sys.argv[2]))", str(record), str(log))
    saved = json.loads(record.read_text(encoding="utf-8"))
    assert saved["stop_reason"] == "approval_pending"
    assert [(p["call_id"], p.get("decision")) for p in saved["pending"]] == [("b", None)]
    assert log.read_text(encoding="utf-8").splitlines() == ["A"]

    _in_another_process("t.approve_saved(Path(sys.argv[1]), sys.argv[2])", str(record), "b")
    decided = json.loads(record.read_text(encoding="utf-8"))
    assert decided["pending"][0]["decision"] == "approved"
    assert decided["run_id"] == saved["run_id"]

    state = DefaultState.from_dict(decided)
    gate = AskFor("B")
    llm = MockLLMBackend([_finish()], usage=USAGE)  # this process makes only the run's second model call
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same tools and settings: no "continued with other tools" warning
        steps, result = drive(llm, tools=logged_kit(log), hooks=[gate], state=state)

    assert log.read_text(encoding="utf-8").splitlines() == ["A", "B"]
    assert [(s.number, s.tool_call.call_id) for s in steps] == [(2, "b"), (3, "fin")]
    assert steps[0].metadata["approval"]["decision"] == "approved"
    assert gate.asked == {"fin": 1}
    assert result.stop_reason == "done" and result.final_answer == {"answer": "everyone greeted"}
    assert state.run_id == saved["run_id"]
    assert result.llm_calls == 2 and len(llm.calls) == 1
    assert result.usage == Usage(input_tokens=200, output_tokens=20)
    assert [s.number for s in state.steps] == [1, 2, 3] and state.steps_charged == 3


# -- item 5: which runs may continue ----------------------------------------------------------


def test_a_run_stopped_by_break_continues_with_the_calls_it_left_open(drive: Driver) -> None:
    plain_tools, _ = greeting_tools()
    _, plain = drive(MockLLMBackend([_turn("A", "B"), _finish()], usage=USAGE), tools=plain_tools, task=TASK)

    tools, greeted = greeting_tools()
    llm = MockLLMBackend([_turn("A", "B"), _finish()], usage=USAGE)
    state = DefaultState(task=TASK)
    first, stopped = drive.take(llm, 1, tools=tools, state=state)
    assert stopped.stop_reason == "cancelled" and greeted == ["A"]
    assert [c.call_id for c in state.open_calls] == ["b"]

    rest, result = drive(llm, tools=tools, state=state)

    assert greeted == ["A", "B"]
    assert result.stop_reason == "done"
    assert _shape(first + rest) == _shape(plain.steps)
    assert result.llm_calls == len(llm.calls) == 2 and result.usage == plain.usage


def test_a_run_stopped_on_its_step_budget_continues_only_with_a_larger_one(drive: Driver) -> None:
    tools, greeted = greeting_tools()
    llm = MockLLMBackend([_turn("A", "B"), _finish()])
    state = DefaultState(task=TASK)
    _, first = drive(llm, tools=tools, state=state, max_steps=1)
    assert first.stop_reason == "max_steps" and greeted == ["A"]

    steps, again = drive(llm, tools=tools, state=state, max_steps=1)
    assert again.stop_reason == "max_steps" and steps == [] and greeted == ["A"] and len(llm.calls) == 1

    steps, result = drive(llm, tools=tools, state=state, max_steps=5)
    assert result.stop_reason == "done"
    assert greeted == ["A", "B"]
    assert [s.tool_call.call_id for s in steps] == ["b", "fin"]
    assert state.steps_charged == 3 and len(llm.calls) == 2


def test_a_run_past_its_deadline_continues_only_with_a_later_one(drive: Driver) -> None:
    def reply(request: LLMRequest) -> Any:
        if any(m.role == "tool" for m in request.messages):
            return _finish()
        time.sleep(0.25)  # the first reply comes after the run's deadline
        return _turn("A", "B")

    tools, greeted = greeting_tools()
    llm = FunctionBackend(reply)
    state = DefaultState(task=TASK)
    _, first = drive(llm, tools=tools, state=state, config=LoopConfig(deadline_s=0.2))
    assert first.stop_reason == "deadline" and greeted == []
    assert [c.call_id for c in state.open_calls] == ["a", "b"]

    # the deadline counts the time the run already spent, so the same one is still past
    steps, again = drive(llm, tools=tools, state=state, config=LoopConfig(deadline_s=0.2))
    assert again.stop_reason == "deadline" and steps == [] and len(llm.calls) == 1

    steps, result = drive(llm, tools=tools, state=state, config=LoopConfig(deadline_s=60))
    assert result.stop_reason == "done"
    assert greeted == ["A", "B"]
    assert [s.tool_call.call_id for s in steps] == ["a", "b", "fin"]
    assert [s.turn for s in steps] == [1, 1, 2]
    assert len(llm.calls) == state.llm_calls == 2


def test_a_run_stopped_by_a_failed_model_call_continues(drive: Driver) -> None:
    tools, greeted = greeting_tools()
    llm = MockLLMBackend([_turn("A"), RuntimeError("the provider hiccuped"), _finish()], usage=USAGE)
    state = DefaultState(task=TASK)
    _, first = drive(llm, tools=tools, state=state)
    assert first.stop_reason == "llm_error" and "hiccuped" in first.detail

    steps, result = drive(llm, tools=tools, state=state)

    assert result.stop_reason == "done" and greeted == ["A"]
    assert [s.tool_call.call_id for s in steps] == ["fin"]
    assert [s.number for s in state.steps] == [1, 2]
    assert state.llm_calls == 3 and state.turns == 2  # the failed call counts as a call, not a turn
    assert result.usage == Usage(input_tokens=200, output_tokens=20)


def test_a_run_stopped_by_a_hook_continues(drive: Driver) -> None:
    class StopOnce:
        def __init__(self) -> None:
            self.asked = 0

        def should_stop(self, state: Any, step: int) -> Any:
            self.asked += 1
            return Stop("look at it first") if self.asked == 1 else None

    tools, greeted = greeting_tools()
    hook = StopOnce()
    llm = MockLLMBackend([_turn("A"), _finish()])
    state = DefaultState(task=TASK)
    _, first = drive(llm, tools=tools, hooks=[hook], state=state)
    assert first.stop_reason == "hook_stop:look at it first"

    steps, result = drive(llm, tools=tools, hooks=[hook], state=state)

    assert result.stop_reason == "done" and greeted == ["A"]
    assert [s.number for s in steps] == [2] and len(llm.calls) == 2


def test_a_run_that_ended_done_is_refused_with_an_error_pointing_to_fork(drive: Driver) -> None:
    tools, greeted = greeting_tools()
    llm = MockLLMBackend([_turn("A"), _finish()])
    state = DefaultState(task=TASK)
    _, result = drive(llm, tools=tools, state=state)
    assert result.stop_reason == "done"

    with pytest.raises(ConfigError, match=r"state\.fork\(at_step=k\)") as refused:
        drive(llm, tools=tools, state=state)

    assert state.run_id in str(refused.value) and "done" in str(refused.value)
    assert greeted == ["A"] and len(llm.calls) == 2 and state.stop_reason == "done"


# -- the async loop with an async gate ----------------------------------------------------------


def test_an_async_pre_dispatch_hook_pauses_a_call_in_the_async_loop() -> None:
    tools, greeted = greeting_tools()
    gate = AsyncAskFor("B")
    script = [_turn("A", "B"), _finish()]

    async def reply(request: LLMRequest) -> Any:
        return script[len(llm.calls) - 1]

    llm = AsyncFunctionBackend(reply)
    state = DefaultState(task=TASK)

    async def run() -> tuple[list[Any], Any]:
        loop = async_composable_loop(llm, tools=tools, hooks=[gate], state=state)
        steps = [step async for step in loop]
        return steps, loop.result

    first, paused = asyncio.run(run())
    assert [s.tool_call.call_id for s in first] == ["a"] and greeted == ["A"]
    assert paused.stop_reason == "approval_pending"
    assert [(p.call_id, p.reason) for p in paused.pending] == [("b", "may I greet B?")]

    state.approve("b")
    rest, result = asyncio.run(run())

    assert greeted == ["A", "B"]
    assert [s.tool_call.call_id for s in rest] == ["b", "fin"]
    assert rest[0].metadata["approval"]["decision"] == "approved"
    assert result.stop_reason == "done" and len(llm.calls) == 2
    assert gate.asked == {"a": 1, "b": 1, "fin": 1}
