"""`ApprovalHook` (issue 8 item 2): the calls that need a person's yes pause the run durably
(``Ask`` → ``approval_pending``) or are answered on the spot by a handler; approval fails
closed; an edited approval runs with the edited arguments; every handler answer is audited
in the run record."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from doubles import as_text, batch, done, greeting_tools

from looplet import Allow, ConfigError, DefaultState, Deny, MockLLMBackend, ToolCall
from looplet.approval import ApprovalHook

REPO = Path(__file__).resolve().parents[1]


def greet_twice() -> MockLLMBackend:
    return MockLLMBackend([batch(("greet", {"name": "Ann"}), ("greet", {"name": "Bob"})), done("both")])


@pytest.mark.parametrize(
    "hook",
    [
        ApprovalHook(["greet"]),
        ApprovalHook(when=lambda call: call.tool == "greet"),
    ],
    ids=["by-name", "by-predicate"],
)
def test_a_call_that_needs_approval_pauses_the_run_until_a_person_decides(drive: Any, hook: Any) -> None:
    tools, greeted = greeting_tools()
    state = DefaultState(task="greet Ann and Bob")
    llm = greet_twice()
    _, paused = drive(llm, tools=tools, hooks=[hook], state=state)
    assert paused.stop_reason == "approval_pending" and greeted == []
    assert [p.reason for p in paused.pending] == ["approve greet(name='Ann')?", "approve greet(name='Bob')?"]
    ann, bob = (p.call_id for p in state.pending)
    state.approve(ann)
    state.reject(bob, "Bob asked not to be greeted")
    steps, result = drive(llm, tools=tools, hooks=[hook], state=state)
    assert greeted == ["Ann"], "the approved call ran once, the rejected one never"
    assert [s.tool_result.error_kind for s in steps] == [None, "denied", None]
    assert "Bob asked not to be greeted" in steps[1].tool_result.error
    assert result.stop_reason == "done" and len(llm.calls) == 2


def test_calls_that_do_not_need_approval_run_without_asking(drive: Any) -> None:
    tools, greeted = greeting_tools()
    llm = MockLLMBackend([as_text("greet", name="Ann"), done()])
    _, result = drive(llm, tools=tools, hooks=[ApprovalHook(["delete_everything"])])
    assert result.stop_reason == "done" and greeted == ["Ann"]


def test_an_approval_with_edited_arguments_runs_the_edited_call(drive: Any) -> None:
    tools, greeted = greeting_tools()
    state = DefaultState(task="greet")
    llm = MockLLMBackend([as_text("greet", name="Anne-Marie Smith"), done()])
    hook = ApprovalHook(["greet"], reason=lambda call: f"greet {call.args['name']}?")
    _, paused = drive(llm, tools=tools, hooks=[hook], state=state)
    assert paused.pending[0].reason == "greet Anne-Marie Smith?"
    state.approve(paused.pending[0].call_id, args={"name": "Anne"})
    steps, _ = drive(llm, tools=tools, hooks=[hook], state=state)
    assert greeted == ["Anne"] and steps[0].tool_call.args == {"name": "Anne"}
    assert steps[0].metadata["original_args"] == {"name": "Anne-Marie Smith"}


class Terminal:
    """A handler that answers from a script, recording what it was asked."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, str]] = []

    def __call__(self, call: ToolCall, reason: str) -> Any:
        self.asked.append((call.args.get("name", ""), reason))
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


@pytest.mark.parametrize(
    ("answer", "runs", "why"),
    [
        (True, ["Ann"], None),
        (Allow(), ["Ann"], None),
        (Allow(updated_args={"name": "Annie"}), ["Annie"], None),
        (False, [], "the person said no"),
        (None, [], "the person said no"),
        ("yes", [], "answered str"),
        (1, [], "answered int"),
        (Deny("not today"), [], "not today"),
        (RuntimeError("terminal closed"), [], "raised RuntimeError: terminal closed"),
    ],
    ids=["true", "allow", "edited", "false", "none", "yes-string", "one", "deny", "raises"],
)
def test_a_handler_answers_on_the_spot_and_only_true_or_allow_approves(
    drive: Any, answer: Any, runs: list[str], why: str | None
) -> None:
    tools, greeted = greeting_tools()
    terminal = Terminal(answer)
    state = DefaultState(task="greet")
    llm = MockLLMBackend([as_text("greet", name="Ann"), done()])
    steps, result = drive(llm, tools=tools, hooks=[ApprovalHook(["greet"], handler=terminal)], state=state)
    assert greeted == runs and terminal.asked == [("Ann", "approve greet(name='Ann')?")]
    assert result.stop_reason == "done", "a handler never pauses the run"
    audit = state.metadata["approval_audit"]
    assert (
        len(audit) == 1 and audit[0]["by"] == "handler" and audit[0]["call_id"] == steps[0].tool_call.call_id
    )
    if why is None:
        assert audit[0]["decision"] == "approved" and steps[0].tool_result.ok
    else:
        assert audit[0]["decision"] == "refused" and why in audit[0]["reason"]
        assert steps[0].tool_result.error_kind == "denied" and why in steps[0].tool_result.error
    json.dumps(state.to_dict())  # the audit is part of the saveable record


def test_an_async_handler_refuses_rather_than_approving_unawaited(drive: Any) -> None:
    tools, greeted = greeting_tools()

    async def handler(call: ToolCall, reason: str) -> bool:
        return True

    llm = MockLLMBackend([as_text("greet", name="Ann"), done()])
    steps, _ = drive(llm, tools=tools, hooks=[ApprovalHook(["greet"], handler=handler)])
    assert greeted == [] and "is async" in str(steps[0].tool_result.error)


def test_permission_ask_rules_mark_the_calls_that_need_approval(drive: Any) -> None:
    class AskForBob:  # anything with decide(tool, args) -> .effect, as a PermissionEngine
        def decide(self, tool: str, args: dict[str, Any]) -> Any:
            effect = "ask" if args.get("name") == "Bob" else "allow"
            return type("Decision", (), {"effect": effect})()

    tools, greeted = greeting_tools()
    _, paused = drive(greet_twice(), tools=tools, hooks=[ApprovalHook(permissions=AskForBob())])
    assert greeted == ["Ann"] and [p.args for p in paused.pending] == [{"name": "Bob"}]


def test_a_predicate_that_raises_stops_the_run_before_the_call_runs(drive: Any) -> None:
    tools, greeted = greeting_tools()

    def broken(call: ToolCall) -> bool:
        raise ValueError("rule table missing")

    llm = MockLLMBackend([as_text("greet", name="Ann"), done()])
    _, result = drive(llm, tools=tools, hooks=[ApprovalHook(when=broken)])
    assert greeted == [] and result.stop_reason == "hook_error"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs tools=, when= or permissions="),
        ({"tools": "greet"}, "not the string"),
        ({"tools": ["greet"], "handler": "yes"}, "handler must be callable"),
        ({"when": 3}, "when must be a function"),
        ({"permissions": object()}, "decide"),
    ],
)
def test_a_hook_that_could_never_ask_or_answer_is_refused_when_built(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        ApprovalHook(**kwargs)


CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from looplet import DefaultState
    record = Path(sys.argv[1])
    state = DefaultState.from_dict(json.loads(record.read_text()))
    assert state.stop_reason == "approval_pending", state.stop_reason
    state.approve(state.pending[0].call_id)
    record.write_text(json.dumps(state.to_dict()))
    """
)


def test_a_paused_run_is_decided_in_another_process_and_finished_here(drive: Any, tmp_path: Path) -> None:
    tools, greeted = greeting_tools()
    hook = ApprovalHook(["greet"])
    state = DefaultState(task="greet Ann")
    llm = MockLLMBackend([as_text("greet", name="Ann"), done("greeted")])
    drive(llm, tools=tools, hooks=[hook], state=state)
    record = tmp_path / "run.json"
    record.write_text(json.dumps(state.to_dict()))
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", CHILD, str(record)], check=True, env=env, timeout=60)
    decided = DefaultState.from_dict(json.loads(record.read_text()))
    steps, result = drive(llm, tools=tools, hooks=[hook], state=decided)
    assert (
        greeted == ["Ann"] and result.stop_reason == "done" and result.final_answer == {"answer": "greeted"}
    )
    assert steps[0].metadata["approval"]["decision"] == "approved"


def test_a_permission_engines_ask_rules_pick_the_calls_to_approve(drive: Any) -> None:
    from looplet import PermissionEngine

    engine = PermissionEngine(default="allow").ask("greet", arg_matcher=lambda args: args["name"] == "Bob")
    tools, greeted = greeting_tools()
    _, paused = drive(greet_twice(), tools=tools, hooks=[ApprovalHook(permissions=engine)])
    assert greeted == ["Ann"] and [p.args for p in paused.pending] == [{"name": "Bob"}]


def test_always_from_a_handler_approves_later_calls_of_that_tool_only(drive: Any) -> None:
    from looplet.approval import ALWAYS

    tools, greeted = greeting_tools()

    @tools.tool
    def wave(name: str) -> str:
        """Wave at someone."""
        greeted.append(f"wave {name}")
        return "waved"

    terminal = Terminal(ALWAYS, False)
    state = DefaultState(task="greet")
    script = [
        as_text("greet", name="Ann"),
        as_text("greet", name="Bob"),
        as_text("wave", name="Cy"),
        done(),
    ]
    hook = ApprovalHook(["greet", "wave"], handler=terminal)
    drive(MockLLMBackend(script), tools=tools, hooks=[hook], state=state)
    assert greeted == ["Ann", "Bob"], "greet approved always; wave still asked, and refused"
    assert [name for name, _ in terminal.asked] == ["Ann", "Cy"]
    assert state.metadata["approval_always"] == ["greet"]
    assert state.metadata["approval_audit"][0]["always"] is True


def test_always_from_a_person_on_a_paused_run_is_kept_in_the_record(drive: Any) -> None:
    tools, greeted = greeting_tools()
    hook = ApprovalHook(["greet"])
    state = DefaultState(task="greet")
    llm = MockLLMBackend([as_text("greet", name="Ann"), as_text("greet", name="Bob"), done()])
    drive(llm, tools=tools, hooks=[hook], state=state)
    state.approve(state.pending[0].call_id, always=True)
    state = DefaultState.from_dict(json.loads(json.dumps(state.to_dict())))
    _, result = drive(llm, tools=tools, hooks=[ApprovalHook(["greet"])], state=state)
    assert greeted == ["Ann", "Bob"] and result.stop_reason == "done", "Bob was not asked about"
    assert state.metadata["approval_always"] == ["greet"]
