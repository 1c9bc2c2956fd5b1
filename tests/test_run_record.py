"""The run record: everything a run did lives in its state, and `to_dict` / `from_dict` round-trip it
through versioned, strict JSON (the groundwork of pausing, saving and continuing a run)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from doubles import Driver, as_text, batch, done, greeting_tools
from hypothesis import event, given
from hypothesis import strategies as st

from looplet import DefaultState, MockLLMBackend
from looplet.errors import ConfigError
from looplet.state import SCHEMA_VERSION

#: one model reply each: a call, a failing call, a batch, chatter, a broken call, done
REPLIES = st.sampled_from(
    [
        as_text("greet", name="Ann"),
        as_text("greet", nme="typo"),
        as_text("nope"),
        batch(("greet", {"name": "B"}), ("greet", {"name": "C"})),
        "let me think about it",
        '{"tool": "greet", "args": {"name": ',
        done("all greeted"),
    ]
)


def _round_trip(state: DefaultState) -> DefaultState:
    text = json.dumps(state.to_dict(), allow_nan=False)  # strict JSON, no NaN
    return DefaultState.from_dict(json.loads(text))


@given(script=st.lists(REPLIES, min_size=1, max_size=8), mode=st.sampled_from(["sync", "async"]))
def test_any_run_survives_a_round_trip_through_json_unchanged(script: list[str], mode: str) -> None:
    tools, _ = greeting_tools()
    state = DefaultState()
    llm = MockLLMBackend(script)
    _, result = Driver(mode)(llm, tools=tools, task={"goal": "greet"}, state=state, max_steps=5)
    event(f"stop={result.stop_reason}")
    back = _round_trip(state)
    assert back == state
    assert back.history.to_list() == state.history.to_list()
    assert back.to_dict() == state.to_dict()


def test_the_record_holds_the_outcome_and_every_counter(drive: Any) -> None:
    tools, _ = greeting_tools()
    state = DefaultState()
    script = ["hmm", batch(("greet", {"name": "A"}), ("greet", {"name": "B"})), done("ok")]
    _, result = drive(MockLLMBackend(script), tools=tools, task="t", state=state, max_steps=2)
    assert state.stop_reason == result.stop_reason == "max_steps"
    assert state.detail == result.detail and state.final_answer == result.final_answer
    assert state.dropped_calls == result.dropped_calls == []
    assert state.turns == 2 and state.llm_calls == 2 and state.no_call_streak == 0
    assert state.steps_charged == 2 and state.elapsed_s == result.elapsed_s > 0
    assert state.run_id.startswith("run_") and len(state.run_id) == 20
    saved = state.to_dict()
    assert saved["schema_version"] == SCHEMA_VERSION and saved["history"][0]["content"] == "t"


def test_a_done_run_keeps_its_final_answer_and_dropped_calls_in_the_record(drive: Any) -> None:
    tools, _ = greeting_tools()
    state = DefaultState()
    reply = batch(("done", {"answer": "first"}), ("done", {"answer": "second"}))
    _, result = drive(MockLLMBackend([reply]), tools=tools, task="t", state=state)
    back = _round_trip(state)
    assert back.final_answer == {"answer": "first"} and back.stop_reason == "done"
    assert [c.args for c in back.dropped_calls] == [{"answer": "second"}]


@dataclass
class TicketState(DefaultState):
    ticket: str = ""
    seen: list[str] = field(default_factory=list)


def test_a_subclass_keeps_its_own_fields_through_a_round_trip(drive: Any) -> None:
    tools, _ = greeting_tools()
    state = TicketState(ticket="T-42", seen=["a"])
    drive(MockLLMBackend([done()]), tools=tools, task="t", state=state)
    data = json.loads(json.dumps(state.to_dict()))
    assert data["extra"] == {"ticket": "T-42", "seen": ["a"]}
    back = TicketState.from_dict(data)
    assert isinstance(back, TicketState) and back == state
    with pytest.raises(ConfigError, match=r"fields \['seen', 'ticket'\] that DefaultState does not declare"):
        DefaultState.from_dict(data)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d.update(schema_version=SCHEMA_VERSION + 1), "saved by a newer looplet"),
        (lambda d: d.pop("schema_version"), "no schema_version"),
        (lambda d: d.update(schema_version="1"), "no schema_version"),
        (lambda d: d.update(surprise=1), r"unknown fields \['surprise'\]"),
        (lambda d: d.pop("run_id"), "not a readable saved run"),
        (lambda d: d.update(steps=[{"number": "x"}]), "not a readable saved run"),
        (lambda d: d.update(history=[{"content": "no role"}]), "not a readable saved run"),
    ],
    ids=["newer", "no-version", "string-version", "unknown-field", "no-run-id", "bad-step", "bad-history"],
)
def test_a_damaged_or_foreign_record_is_refused_with_a_clear_error(change: Any, words: str) -> None:
    tools, _ = greeting_tools()
    state = DefaultState()
    Driver("sync")(MockLLMBackend([as_text("greet", name="A"), done()]), tools=tools, task="t", state=state)
    data = state.to_dict()
    change(data)
    with pytest.raises(ConfigError, match=words):
        DefaultState.from_dict(data)


@pytest.mark.parametrize("data", [None, [], "run", 3])
def test_something_that_is_not_a_record_at_all_is_refused(data: Any) -> None:
    with pytest.raises(ConfigError, match="a saved run is a JSON object"):
        DefaultState.from_dict(data)


def test_a_history_passed_to_the_loop_becomes_the_states_history(drive: Any) -> None:
    from looplet import History, Message

    tools, _ = greeting_tools()
    history = History([Message("user", "earlier task")])
    state = DefaultState()
    drive(MockLLMBackend([done()]), tools=tools, history=history, state=state)
    assert state.history is history and history[0].content == "earlier task"


def test_a_run_continued_with_other_tools_or_settings_warns_at_the_callers_line() -> None:
    import warnings

    from looplet import BaseToolRegistry, MockLLMBackend, composable_loop, register_done_tool

    def build(extra_tool: bool) -> BaseToolRegistry:
        tools = BaseToolRegistry()
        register_done_tool(tools)

        @tools.tool
        def greet(name: str) -> str:
            """Greet someone."""
            return f"hi {name}"

        if extra_tool:

            @tools.tool
            def wave(name: str) -> str:
                """Wave at someone."""
                return f"*waves at {name}*"

        return tools

    state = DefaultState(task="greet")
    step = '{"tool": "greet", "args": {"name": "a"}}'
    composable_loop(MockLLMBackend([step]), tools=build(False), state=state, max_steps=1).run()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        composable_loop(MockLLMBackend([step]), tools=build(False), state=state, max_steps=2).run()
    assert not [w for w in caught if "continued with other" in str(w.message)], "same tools: no warning"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loop = composable_loop(MockLLMBackend([step]), tools=build(True), state=state, max_steps=3)
        loop.run()
    found = [w for w in caught if "continued with other tools" in str(w.message)]
    assert len(found) == 1 and found[0].category is RuntimeWarning
    assert found[0].filename == __file__, "the warning points at the caller's line"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        composable_loop(
            MockLLMBackend([step]), tools=build(True), state=state, max_steps=4, system_prompt="Be brief."
        ).run()
    assert any("continued with other config" in str(w.message) for w in caught)
