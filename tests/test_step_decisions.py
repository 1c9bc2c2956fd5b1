"""Every hook decision about a call is on its step, as ``step.metadata["decisions"]``.

Provenance and audits read what allowed, rewrote, denied, replaced or blocked
a call from the step alone; a hook that returns None leaves no entry.
"""

from __future__ import annotations

from typing import Any

from doubles import Driver, as_text, done, greeting_tools

from looplet import Allow, Block, Deny, MockLLMBackend, Stop, ToolResult


class Gate:
    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def pre_dispatch(self, state: Any, log: Any, tool_call: Any, step: int) -> Any:
        return self.answer if tool_call.tool == "greet" else None


class After:
    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def post_dispatch(self, state: Any, log: Any, tool_call: Any, tool_result: Any, step: int) -> Any:
        return self.answer if tool_call.tool == "greet" else None


class Quiet:
    def pre_dispatch(self, state: Any, log: Any, tool_call: Any, step: int) -> None:
        return None


def _first_step(driver: Driver, hooks: list[Any]) -> Any:
    tools, _ = greeting_tools()
    steps, _ = driver(MockLLMBackend([as_text("greet", name="Ada"), done()]), tools=tools, hooks=hooks)
    return steps[0]


def test_a_rewrite_is_recorded_with_the_arguments_before_and_after(drive: Driver) -> None:
    step = _first_step(drive, [Quiet(), Gate(Allow(updated_args={"name": "Bob"}))])
    assert step.metadata["decisions"] == [
        {
            "hook": "Gate",
            "slot": "pre_dispatch",
            "decision": "rewrite",
            "before": {"name": "Ada"},
            "after": {"name": "Bob"},
        }
    ]
    assert step.tool_call.args == {"name": "Bob"}


def test_an_allow_and_a_note_are_recorded_in_hook_order(drive: Driver) -> None:
    step = _first_step(drive, [Gate(Allow()), After("checked")])
    assert [(d["slot"], d["decision"]) for d in step.metadata["decisions"]] == [
        ("pre_dispatch", "allow"),
        ("post_dispatch", "inject"),
    ]
    assert step.metadata["decisions"][1]["reason"] == "checked"


def test_a_denial_is_recorded_with_its_reason(drive: Driver) -> None:
    step = _first_step(drive, [Gate(Deny("no greeting today"))])
    assert step.tool_result.error_kind == "denied"
    assert step.metadata["decisions"] == [
        {"hook": "Gate", "slot": "pre_dispatch", "decision": "deny", "reason": "no greeting today"}
    ]


def test_a_result_given_instead_of_running_and_a_replaced_result_are_told_apart(drive: Driver) -> None:
    canned = ToolResult(tool="greet", data={"greeting": "cached"})
    fixed = ToolResult(tool="greet", data={"greeting": "fixed"})
    step = _first_step(drive, [Gate(canned), After(fixed)])
    assert [d["decision"] for d in step.metadata["decisions"]] == ["result", "replace"]
    assert step.tool_result.data == {"greeting": "fixed"}


def test_a_stop_is_recorded_on_the_step_it_came_from(drive: Driver) -> None:
    step = _first_step(drive, [After(Stop("enough"))])
    assert step.metadata["decisions"] == [
        {"hook": "After", "slot": "post_dispatch", "decision": "stop", "reason": "enough"}
    ]


def test_a_blocked_done_records_the_block_on_the_done_step(drive: Driver) -> None:
    class NotYet:
        def __init__(self) -> None:
            self.asked = 0

        def check_done(self, state: Any, log: Any, ctx: Any, step: int) -> Any:
            self.asked += 1
            return Block("tests fail") if self.asked == 1 else ("not" if self.asked == 2 else None)

    tools, _ = greeting_tools()
    steps, result = drive(MockLLMBackend([done(), done(), done()]), tools=tools, hooks=[NotYet()])
    assert [s.metadata.get("decisions") for s in steps] == [
        [{"hook": "NotYet", "slot": "check_done", "decision": "block", "reason": "tests fail"}],
        [{"hook": "NotYet", "slot": "check_done", "decision": "block", "reason": "not"}],
        None,
    ]
    assert result.stop_reason == "done"


def test_hooks_that_return_nothing_leave_no_decisions(drive: Driver) -> None:
    step = _first_step(drive, [Quiet()])
    assert "decisions" not in step.metadata


def test_a_hook_that_says_continue_leaves_no_decision(drive: Driver) -> None:
    from looplet import Continue

    step = _first_step(drive, [Gate(Continue())])
    assert "decisions" not in step.metadata
