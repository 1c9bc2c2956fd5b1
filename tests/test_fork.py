"""`state.fork(at_step=k)`: a new run whose history ends just before the model turn of step k.

The fork keeps what came before (history, steps, counters, usage), gets a new run id and
names its parent; continued with a changed model or prompt, its steps can be compared with
the original's, which stays untouched.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from doubles import as_text, batch, done, greeting_tools

from looplet import ConfigError, DefaultState, MockLLMBackend, StopReason, Usage

SCRIPT = [as_text("greet", name="a"), batch(("greet", {"name": "b"}), ("greet", {"name": "c"})), done("abc")]
USAGE = Usage(input_tokens=10, output_tokens=2)


def finished_run(drive: Any) -> DefaultState:
    tools, _ = greeting_tools()
    state = DefaultState(task="greet everyone")
    _, result = drive(MockLLMBackend(SCRIPT, usage=USAGE), tools=tools, state=state)
    assert result.stop_reason == StopReason.DONE and len(state.steps) == 4
    return state


def test_a_fork_ends_just_before_the_turn_of_its_step_and_names_its_parent(drive: Any) -> None:
    original = finished_run(drive)
    before = json.dumps(original.to_dict())
    fork = original.fork(at_step=2)
    assert fork.run_id != original.run_id and fork.parent_run_id == original.run_id and fork.forked_at == 2
    assert [s.number for s in fork.steps] == [1]
    assert fork.turns == 1 and fork.llm_calls == 1 and fork.steps_charged == 1
    assert fork.usage.to_dict() == USAGE.to_dict(), "the usage of the kept turn only"
    roles = [m.role for m in fork.history]
    assert roles == ["user", "assistant", "tool"], "ends before the second model turn"
    assert fork.stop_reason is None and fork.final_answer is None and fork.elapsed_s == 0.0
    assert json.dumps(original.to_dict()) == before, "the original is untouched"


def test_forking_at_the_second_call_of_a_batch_redoes_the_whole_turn(drive: Any) -> None:
    original = finished_run(drive)
    fork = original.fork(at_step=3)  # step 3 is "c", the second call of turn 2
    assert [s.number for s in fork.steps] == [1]
    assert fork.to_dict()["history"] == original.fork(at_step=2).to_dict()["history"]


def test_a_fork_continues_with_a_changed_model_and_its_steps_can_be_compared(drive: Any) -> None:
    original = finished_run(drive)
    fork = original.fork(at_step=2)
    tools, greeted = greeting_tools()
    llm = MockLLMBackend([as_text("greet", name="zed"), done("a and zed")], usage=USAGE)
    steps, result = drive(llm, tools=tools, state=fork, system_prompt="Greet people, briefly.")
    assert result.stop_reason == StopReason.DONE and result.final_answer == {"answer": "a and zed"}
    assert greeted == ["zed"], "the kept step is not run again"
    assert [s.number for s in steps] == [2, 3] and len(llm.calls) == 2
    assert [s.tool_call.args for s in fork.steps[:1]] == [s.tool_call.args for s in original.steps[:1]]
    assert fork.steps[1].tool_call.args != original.steps[1].tool_call.args
    assert result.llm_calls == 3 and result.usage.input_tokens == 30


def test_a_fork_survives_json_and_continues_in_the_other_loop(drive: Any) -> None:
    original = finished_run(drive)
    fork = DefaultState.from_dict(json.loads(json.dumps(original.fork(at_step=4).to_dict())))
    assert fork.parent_run_id == original.run_id and fork.forked_at == 4
    tools, _ = greeting_tools()
    _, result = drive(MockLLMBackend([done("again")]), tools=tools, state=fork)
    assert result.stop_reason == StopReason.DONE and [s.number for s in result.steps] == [1, 2, 3, 4]


@pytest.mark.parametrize("at_step", [0, 5, -1, "2", None])
def test_forking_at_a_step_the_run_does_not_have_is_refused(drive: Any, at_step: Any) -> None:
    original = finished_run(drive)
    with pytest.raises(ConfigError, match="has steps 1..4"):
        original.fork(at_step=at_step)


def test_forking_a_turn_that_compaction_removed_is_refused_with_the_reason(drive: Any) -> None:
    original = finished_run(drive)
    original.history.replace([original.history[0]])
    with pytest.raises(ConfigError, match="compacted"):
        original.fork(at_step=2)


def test_a_fork_of_a_subclass_keeps_its_own_fields(drive: Any) -> None:
    from dataclasses import dataclass, field

    @dataclass
    class Notes(DefaultState):
        seen: list[str] = field(default_factory=list)

    tools, _ = greeting_tools()
    state = Notes(task="t", seen=["x"])
    drive(MockLLMBackend(SCRIPT), tools=tools, state=state)
    fork = state.fork(at_step=2)
    assert isinstance(fork, Notes) and fork.seen == ["x"]
    fork.seen.append("y")
    assert state.seen == ["x"], "a copy, not shared"
