"""Guards: StagnationHook, PerToolLimitHook and BudgetWarningHook, in both loops and across a resume."""

from __future__ import annotations

import json
from typing import Any

import pytest
from doubles import as_text, batch, done, greeting_tools

from looplet import (
    BaseToolRegistry,
    ConfigError,
    DefaultState,
    Deny,
    ErrorKind,
    MockLLMBackend,
    Step,
    ToolCall,
    register_done_tool,
)
from looplet.guards import BudgetWarningHook, PerToolLimitHook, StagnationHook


def kit(*, concurrent_safe: bool = False) -> tuple[BaseToolRegistry, list[str]]:
    """`greet` and `look`, each recording its body's runs in one list, and `done`."""
    tools, ran = greeting_tools(with_done=False, concurrent_safe=concurrent_safe)

    @tools.tool
    def look(topic: str, depth: int = 1) -> dict[str, Any]:
        """Look a topic up."""
        ran.append(f"look:{topic}")
        return {"topic": topic, "depth": depth}

    register_done_tool(tools)
    return tools, ran


def notes(steps: list[Step]) -> list[list[str]]:
    return [s.metadata.get("notes", []) for s in steps]


def tool_messages(drive: Any) -> list[str]:
    return [m.content for m in drive.loop.state.history if m.role == "tool"]


# -- StagnationHook --------------------------------------------------------------------


def test_the_same_call_is_nudged_at_the_kth_repeat_and_stopped_after_patience(drive: Any) -> None:
    tools, ran = kit()
    llm = MockLLMBackend([as_text("greet", name="A")] * 6)
    steps, result = drive(llm, tools=tools, hooks=[StagnationHook(repeats=3, patience=2)])
    assert result.stop_reason == "hook_stop:stagnation"
    assert len(steps) == 5 and len(llm.calls) == 5
    assert ran == ["A"] * 5
    shown = notes(steps)
    assert shown[:2] == [[], []]
    assert len(shown[2]) == 1 and "called greet with the same arguments 3 times" in shown[2][0]
    assert len(shown[3]) == 1 and "4 times" in shown[3][0]
    assert shown[4] == []
    seen = tool_messages(drive)
    assert "Note: you have called greet with the same arguments 3 times" in seen[2]
    assert "the result will not change" in seen[2]
    assert "Note:" not in seen[0] and "Note:" not in seen[1]


def test_a_different_call_resets_the_streak(drive: Any) -> None:
    tools, _ = kit()
    a, b = as_text("greet", name="A"), as_text("greet", name="B")
    other_tool = as_text("look", topic="A")
    script = [a, a, b, a, a, other_tool, a, a, a, done()]
    steps, result = drive(MockLLMBackend(script), tools=tools, hooks=[StagnationHook(repeats=3)])
    assert result.stop_reason == "done"
    flagged = [s.number for s in steps if s.metadata.get("notes")]
    assert flagged == [9]  # only the third A in a row, after the look


def test_replies_without_a_call_neither_count_nor_break_a_streak(drive: Any) -> None:
    tools, _ = kit()
    a = as_text("greet", name="A")
    script = [a, "let me try that once more", a, "hmm", a, done()]
    steps, result = drive(MockLLMBackend(script), tools=tools, hooks=[StagnationHook(repeats=3)])
    assert result.stop_reason == "done"
    assert [s.tool_call.tool for s in steps] == ["greet", "", "greet", "", "greet", "done"]
    assert [s.number for s in steps if s.metadata.get("notes")] == [5]
    assert "3 times" in steps[4].metadata["notes"][0]


def test_arguments_are_compared_as_canonical_json(drive: Any) -> None:
    tools, _ = kit()
    one = json.dumps({"tool": "look", "args": {"topic": "x", "depth": 2}})
    same_reordered = json.dumps({"tool": "look", "args": {"depth": 2, "topic": "x"}})
    deeper = json.dumps({"tool": "look", "args": {"topic": "x", "depth": 3}})
    script = [one, same_reordered, deeper, deeper, one, same_reordered, done()]
    steps, _ = drive(MockLLMBackend(script), tools=tools, hooks=[StagnationHook(repeats=2, patience=5)])
    assert [bool(s.metadata.get("notes")) for s in steps] == [False, True, False, True, False, True, False]


def test_denied_repeats_count_toward_stagnation(drive: Any) -> None:
    tools, ran = kit()

    class NoGreeting:
        def pre_dispatch(self, state: Any, log: Any, tool_call: ToolCall, step: int) -> Any:
            return Deny("no greetings today") if tool_call.tool == "greet" else None

    script = [as_text("greet", name="A")] * 4
    steps, result = drive(
        MockLLMBackend(script), tools=tools, hooks=[NoGreeting(), StagnationHook(repeats=2, patience=2)]
    )
    assert ran == []
    assert [s.tool_result.error_kind for s in steps] == [ErrorKind.DENIED] * 4
    assert [len(n) for n in notes(steps)] == [0, 1, 1, 0]
    assert result.stop_reason == "hook_stop:stagnation"


def test_patience_zero_stops_at_the_kth_call_without_a_note(drive: Any) -> None:
    tools, _ = kit()
    steps, result = drive(
        MockLLMBackend([as_text("greet", name="A")] * 3), tools=tools, hooks=[StagnationHook(2, 0)]
    )
    assert result.stop_reason == "hook_stop:stagnation"
    assert len(steps) == 2 and notes(steps) == [[], []]


def test_exempt_tools_may_repeat(drive: Any) -> None:
    tools, _ = kit()
    script = [as_text("look", topic="job")] * 5 + [done()]
    hook = StagnationHook(repeats=2, patience=1, exempt=["look"])
    steps, result = drive(MockLLMBackend(script), tools=tools, hooks=[hook])
    assert result.stop_reason == "done" and len(steps) == 6
    assert all(not n for n in notes(steps))


def test_a_batch_of_identical_calls_is_a_streak(drive: Any) -> None:
    tools, ran = kit()
    three = batch(("greet", {"name": "A"}), ("greet", {"name": "A"}), ("greet", {"name": "A"}))
    steps, result = drive(MockLLMBackend([three, done()]), tools=tools, hooks=[StagnationHook(3)])
    assert [len(n) for n in notes(steps)] == [0, 0, 1, 0]
    assert result.stop_reason == "done" and ran == ["A"] * 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"repeats": 1},
        {"repeats": 0},
        {"repeats": 2.0},
        {"repeats": True},
        {"patience": -1},
        {"patience": "2"},
        {"exempt": "look"},
    ],
)
def test_stagnation_settings_are_checked(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        StagnationHook(**kwargs)


# -- PerToolLimitHook ------------------------------------------------------------------


def test_the_call_past_a_tools_limit_is_denied_and_its_body_does_not_run(drive: Any) -> None:
    tools, ran = kit()
    script = [as_text("greet", name=n) for n in "ABC"] + [as_text("look", topic="t"), done()]
    steps, result = drive(MockLLMBackend(script), tools=tools, hooks=[PerToolLimitHook({"greet": 2})])
    assert ran == ["A", "B", "look:t"]
    assert [s.tool_result.error_kind for s in steps] == [None, None, ErrorKind.DENIED, None, None]
    error = steps[2].tool_result.error
    assert error is not None and "greet may make at most 2 calls in a run" in error
    assert "this run has made 2" in error
    assert "denied: greet may make at most 2 calls" in tool_messages(drive)[2]  # the model is told
    assert steps[2].tool_result.metadata["denied_by"] == "PerToolLimitHook"
    assert result.stop_reason == "done"


def test_a_limit_of_zero_denies_every_call(drive: Any) -> None:
    tools, ran = kit()
    script = [as_text("greet", name="A"), done()]
    steps, _ = drive(MockLLMBackend(script), tools=tools, hooks=[PerToolLimitHook({"greet": 0})])
    assert ran == [] and steps[0].tool_result.error_kind == ErrorKind.DENIED
    assert "at most 0 calls" in (steps[0].tool_result.error or "")


def test_denied_and_invalid_calls_do_not_count_toward_a_limit(drive: Any) -> None:
    tools, ran = kit()

    class NoBob:
        def pre_dispatch(self, state: Any, log: Any, tool_call: ToolCall, step: int) -> Any:
            return Deny("not Bob") if tool_call.args.get("name") == "Bob" else None

    script = [
        as_text("greet", name="Bob"),
        as_text("greet"),  # missing argument: a validation error, never gated
        as_text("greet", name="A"),
        as_text("greet", name="C"),
        done(),
    ]
    hooks = [NoBob(), PerToolLimitHook({"greet": 1})]
    steps, _ = drive(MockLLMBackend(script), tools=tools, hooks=hooks)
    kinds = [s.tool_result.error_kind for s in steps]
    assert kinds == [ErrorKind.DENIED, ErrorKind.VALIDATION, None, ErrorKind.DENIED, None]
    assert steps[0].tool_result.metadata["denied_by"] == "NoBob"
    assert steps[3].tool_result.metadata["denied_by"] == "PerToolLimitHook"
    assert ran == ["A"]


def test_a_failing_call_counts_toward_a_limit(drive: Any) -> None:
    tools = BaseToolRegistry()
    runs: list[int] = []

    @tools.tool
    def flaky() -> str:
        """Always fails."""
        runs.append(1)
        raise RuntimeError("down")

    register_done_tool(tools)
    script = [as_text("flaky")] * 3 + [done()]
    steps, _ = drive(MockLLMBackend(script), tools=tools, hooks=[PerToolLimitHook({"flaky": 2})])
    kinds = [s.tool_result.error_kind for s in steps]
    assert kinds == [ErrorKind.EXECUTION, ErrorKind.EXECUTION, ErrorKind.DENIED, None]
    assert len(runs) == 2


@pytest.mark.parametrize("concurrent_safe", [False, True])
def test_a_batch_past_the_limit_runs_only_the_limit(drive: Any, concurrent_safe: bool) -> None:
    tools, ran = kit(concurrent_safe=concurrent_safe)
    four = batch(*(("greet", {"name": n}) for n in "ABCD"))
    steps, _ = drive(MockLLMBackend([four, done()]), tools=tools, hooks=[PerToolLimitHook({"greet": 2})])
    assert sorted(ran) == ["A", "B"]
    kinds = [s.tool_result.error_kind for s in steps]
    assert kinds == [None, None, ErrorKind.DENIED, ErrorKind.DENIED, None]


def test_the_default_limit_covers_tools_not_named(drive: Any) -> None:
    tools, ran = kit()
    script = [
        as_text("look", topic="a"),
        as_text("look", topic="b"),
        as_text("greet", name="A"),
        as_text("greet", name="B"),
        as_text("greet", name="C"),
        done(),
    ]
    hook = PerToolLimitHook({"greet": 2}, default=1)
    assert hook.limit_of("look") == 1 and hook.limit_of("greet") == 2
    steps, result = drive(MockLLMBackend(script), tools=tools, hooks=[hook])
    assert ran == ["look:a", "A", "B"]
    assert [s.tool_result.ok for s in steps] == [True, False, True, True, False, True]
    assert result.stop_reason == "done"


def test_a_tool_without_a_limit_is_never_denied(drive: Any) -> None:
    tools, ran = kit()
    script = [as_text("look", topic=str(i)) for i in range(4)] + [done()]
    steps, _ = drive(MockLLMBackend(script), tools=tools, hooks=[PerToolLimitHook({"greet": 1})])
    assert all(s.tool_result.ok for s in steps) and len(ran) == 4


@pytest.mark.parametrize(
    ("limits", "default"),
    [
        ({"greet": -1}, None),
        ({"greet": 1.5}, None),
        ({"greet": True}, None),
        ({"greet": "2"}, None),
        ({"": 1}, None),
        ({1: 1}, None),
        ([("greet", 1)], None),
        ({"greet": 1}, -1),
        ({"greet": 1}, "3"),
        ({"greet": 1}, False),
    ],
)
def test_tool_limits_are_checked(limits: Any, default: Any) -> None:
    with pytest.raises(ConfigError):
        PerToolLimitHook(limits, default=default)


# -- BudgetWarningHook -----------------------------------------------------------------


def test_the_budget_warning_appears_only_in_the_last_prompts(drive: Any) -> None:
    tools, _ = kit()
    script = [as_text("greet", name=str(i)) for i in range(5)] + [done()]
    llm = MockLLMBackend(script)
    _, result = drive(llm, tools=tools, hooks=[BudgetWarningHook(at=3)], max_steps=6)
    assert result.stop_reason == "done" and len(llm.calls) == 6
    assert [c.extra for c in llm.calls] == [
        (),
        (),
        (),
        ("3 tool steps remain in this run. Call done with your answer before they run out.",),
        ("2 tool steps remain in this run. Call done with your answer before they run out.",),
        ("1 tool step remains in this run. Call done with your answer now.",),
    ]
    history = drive.loop.state.history
    assert not any("remain" in m.content for m in history)  # never kept in the record


def test_the_budget_warning_names_no_done_tool_when_there_is_none(drive: Any) -> None:
    tools, _ = greeting_tools(with_done=False)
    llm = MockLLMBackend([as_text("greet", name="A"), "All greeted."])
    _, result = drive(llm, tools=tools, hooks=[BudgetWarningHook(at=5)], max_steps=2)
    assert result.stop_reason == "done"
    assert [c.extra for c in llm.calls] == [
        ("2 tool steps remain in this run.",),
        ("1 tool step remains in this run.",),
    ]


def test_the_budget_warning_counts_only_steps_that_spend_budget(drive: Any) -> None:
    tools, _ = kit()
    script = ["thinking aloud", as_text("greet", name="A"), done()]
    llm = MockLLMBackend(script)
    drive(llm, tools=tools, hooks=[BudgetWarningHook(at=2)], max_steps=2)
    expected = "2 tool steps remain in this run. Call done with your answer before they run out."
    assert [len(c.extra) for c in llm.calls] == [1, 1, 1]
    assert llm.calls[0].extra == llm.calls[1].extra == (expected,)  # the text reply was free


@pytest.mark.parametrize("kwargs", [{"at": 0}, {"at": -2}, {"at": True}, {"at": "3"}, {"done_tool": None}])
def test_budget_warning_settings_are_checked(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        BudgetWarningHook(**kwargs)


# -- a stopped and continued run is guarded as an uninterrupted one --------------------

GUARDED_SCRIPT = [
    as_text("greet", name="A"),
    as_text("greet", name="A"),  # a repeat: noted
    as_text("greet", name="B"),  # greet's third and last call
    as_text("greet", name="C"),  # denied: over the limit
    as_text("greet", name="C"),  # denied, repeated: noted
    as_text("greet", name="C"),  # noted again; the budget warning starts (4 steps left)
    as_text("greet", name="C"),  # stagnation stops the run
]


def guards() -> list[object]:
    return [
        PerToolLimitHook({"greet": 3}),
        StagnationHook(repeats=2, patience=2),
        BudgetWarningHook(at=4),
    ]


def outline(steps: list[Step]) -> list[tuple[Any, ...]]:
    return [
        (s.number, s.tool_call.tool, s.tool_call.args, s.tool_result.error_kind, s.metadata.get("notes"))
        for s in steps
    ]


def test_guards_act_the_same_on_a_run_stopped_and_continued_with_fresh_hooks(drive: Any) -> None:
    tools, ran = kit()
    whole = DefaultState()
    llm = MockLLMBackend(GUARDED_SCRIPT)
    drive(llm, tools=tools, state=whole, task="greet", hooks=guards(), max_steps=8)
    assert whole.stop_reason == "hook_stop:stagnation"
    assert ran == ["A", "A", "B"]
    expected_steps = outline(whole.steps)
    expected_prompts = [c.extra for c in llm.calls]
    assert [k for k, *_ in expected_steps if _[2] == ErrorKind.DENIED] == [4, 5, 6, 7]
    assert [bool(p) for p in expected_prompts] == [False] * 4 + [True] * 3

    for k in range(1, len(GUARDED_SCRIPT)):
        tools, ran = kit()
        state = DefaultState()
        first = MockLLMBackend(GUARDED_SCRIPT)
        drive.take(first, k, tools=tools, state=state, task="greet", hooks=guards(), max_steps=8)
        assert state.stop_reason == "cancelled" and len(state.steps) == k
        saved = DefaultState.from_dict(json.loads(json.dumps(state.to_dict())))
        rest = MockLLMBackend(GUARDED_SCRIPT[len(first.calls) :])
        drive(rest, tools=tools, state=saved, hooks=guards(), max_steps=8)
        assert saved.stop_reason == "hook_stop:stagnation", k
        assert outline(saved.steps) == expected_steps, k
        assert [c.extra for c in first.calls + rest.calls] == expected_prompts, k
        assert ran == ["A", "A", "B"], k


def test_a_limit_counts_calls_made_before_a_batch_was_cut_off(drive: Any) -> None:
    tools, ran = kit(concurrent_safe=False)
    three = batch(("greet", {"name": "A"}), ("greet", {"name": "B"}), ("greet", {"name": "C"}))
    state = DefaultState()
    drive.take(
        MockLLMBackend([three]), 1, tools=tools, state=state, task="t", hooks=[PerToolLimitHook({"greet": 2})]
    )
    assert ran == ["A"] and len(state.open_calls) == 2
    saved = DefaultState.from_dict(json.loads(json.dumps(state.to_dict())))
    steps, result = drive(
        MockLLMBackend([done()]), tools=tools, state=saved, hooks=[PerToolLimitHook({"greet": 2})]
    )
    assert ran == ["A", "B"]
    assert [s.tool_result.error_kind for s in saved.steps] == [None, None, ErrorKind.DENIED, None]
    assert result.stop_reason == "done"
