"""Budgets and batches: max_steps, free tools, the LLM-call cap, config validation (rows A10, A11, L2, L3)."""

from __future__ import annotations

from typing import Any

import pytest
from doubles import as_text, batch, done, greeting_tools, native

from looplet import (
    BaseToolRegistry,
    ConfigError,
    ErrorKind,
    LoopConfig,
    MockLLMBackend,
    StopReason,
    register_done_tool,
    register_think_tool,
)


def test_batch_past_the_budget_runs_only_what_fits_and_keeps_the_rest_open(drive: Any) -> None:
    # A10: calls past the remaining budget are not run and are listed in dropped_calls; they stay
    # open in the history, so a run continued with a larger budget runs them before the model.
    tools, greeted = greeting_tools()
    reply = batch(*[("greet", {"name": n}) for n in "ABCDE"])
    llm = MockLLMBackend([as_text("greet", name="0"), reply, as_text("greet", name="F")])
    steps, result = drive(llm, tools=tools, max_steps=3)
    assert greeted == ["0", "A", "B"]
    assert len(steps) == 3 and result.stop_reason == StopReason.MAX_STEPS
    assert [c.args["name"] for c in result.dropped_calls] == ["C", "D", "E"]
    answered = {m.call_id for m in drive.loop.history if m.role == "tool"}
    assert not answered & {c.call_id for c in result.dropped_calls}
    steps, result = drive(llm, tools=tools, max_steps=7, state=drive.loop.state)
    assert greeted == ["0", "A", "B", "C", "D", "E", "F"] and result.stop_reason == StopReason.MAX_STEPS
    assert result.llm_calls == 3 and drive.loop.state.steps_charged == 7


def test_free_tools_do_not_spend_the_budget(drive: Any) -> None:
    tools, greeted = greeting_tools()
    register_think_tool(tools)
    script = [
        as_text("think", thought="plan"),
        batch(("think", {"thought": "a"}), ("greet", {"name": "A"}), ("think", {"thought": "b"})),
        as_text("greet", name="B"),
    ]
    steps, result = drive(MockLLMBackend(script), tools=tools, max_steps=2)
    assert [s.free for s in steps] == [True, True, False, True, False]
    assert greeted == ["A", "B"] and result.stop_reason == StopReason.MAX_STEPS
    assert drive.loop.state.steps_charged == 2 and len(drive.loop.state.steps) == 5


def test_the_cut_is_a_prefix_everything_after_the_first_call_that_does_not_fit_is_dropped(
    drive: Any,
) -> None:
    tools, greeted = greeting_tools()
    register_think_tool(tools)
    reply = batch(
        ("think", {"thought": "before"}),
        ("greet", {"name": "A"}),
        ("greet", {"name": "B"}),
        ("think", {"thought": "after"}),
    )
    steps, result = drive(MockLLMBackend([reply]), tools=tools, max_steps=1)
    assert greeted == ["A"]
    assert [s.tool_call.tool for s in steps] == ["think", "greet"]
    assert [c.args for c in result.dropped_calls] == [{"name": "B"}, {"thought": "after"}]


def test_llm_call_cap_defaults_to_three_times_max_steps(drive: Any) -> None:
    # L3 (max_llm_calls): a model that only calls free tools still stops
    tools, _ = greeting_tools()
    register_think_tool(tools)
    llm = MockLLMBackend([as_text("think", thought="again")] * 20)
    steps, result = drive(llm, tools=tools, max_steps=2)
    assert result.stop_reason == StopReason.MAX_LLM_CALLS
    assert len(llm.calls) == 6 and result.llm_calls == 6 and len(steps) == 6


def test_explicit_llm_call_cap(drive: Any) -> None:
    tools, _ = greeting_tools()
    register_think_tool(tools)
    llm = MockLLMBackend([as_text("think", thought="x")] * 20)
    _, result = drive(llm, tools=tools, config=LoopConfig(max_steps=10, max_llm_calls=4))
    assert len(llm.calls) == 4 and result.stop_reason == "max_llm_calls"
    assert "4 model calls" in result.detail


def test_llm_call_cap_counts_overflow_retries(drive: Any) -> None:
    from looplet import LLMError

    tools, _ = greeting_tools()
    llm = MockLLMBackend([LLMError("long", kind="context_length")] * 3)
    _, result = drive(llm, tools=tools, config=LoopConfig(max_steps=5, max_llm_calls=1))
    assert len(llm.calls) == 1
    assert result.stop_reason in (StopReason.MAX_LLM_CALLS, StopReason.CONTEXT_OVERFLOW)


def test_text_only_model_stops_within_both_caps(drive: Any) -> None:
    # A11: the nudge is given at most k times, then no_tool_call
    tools, _ = greeting_tools()
    llm = MockLLMBackend(["I refuse."] * 50)
    steps, result = drive(llm, tools=tools, config=LoopConfig(max_steps=20, max_no_tool_calls=3))
    assert len(steps) == 3 and result.stop_reason == StopReason.NO_TOOL_CALL
    assert len(llm.calls) == 4


def test_text_only_replies_do_not_spend_the_tool_step_budget(drive: Any) -> None:
    # max_steps counts tool steps; chatter is bounded by max_no_tool_calls and max_llm_calls
    tools, greeted = greeting_tools()
    llm = MockLLMBackend(["hmm", "let me think", as_text("greet", name="A"), as_text("greet", name="B")])
    steps, result = drive(llm, tools=tools, config=LoopConfig(max_steps=2, max_no_tool_calls=10))
    assert [s.free for s in steps] == [True, True, False, False]
    assert greeted == ["A", "B"] and result.stop_reason == StopReason.MAX_STEPS


def test_endless_chatter_stops_at_the_no_tool_call_cap(drive: Any) -> None:
    tools, _ = greeting_tools()
    llm = MockLLMBackend(["no"] * 50)
    steps, result = drive(llm, tools=tools, config=LoopConfig(max_steps=2, max_no_tool_calls=3))
    assert len(steps) == 3 and len(llm.calls) == 4 and result.stop_reason == StopReason.NO_TOOL_CALL


def test_unknown_tool_names_spend_the_run_wide_budget(drive: Any) -> None:
    # A3: invented names get no fresh budget
    tools, _ = greeting_tools()
    llm = MockLLMBackend([as_text(f"invented_{i}") for i in range(30)])
    steps, result = drive(llm, tools=tools, max_steps=4)
    assert len(steps) == 4 and len(llm.calls) == 4
    assert all(s.tool_result.error_kind == ErrorKind.VALIDATION for s in steps)
    assert result.stop_reason == StopReason.MAX_STEPS


def test_done_in_a_batch_runs_after_the_other_calls(drive: Any) -> None:
    tools, greeted = greeting_tools()
    reply = batch(("done", {"answer": "x"}), ("greet", {"name": "A"}), ("greet", {"name": "B"}))
    steps, result = drive(MockLLMBackend([reply]), tools=tools)
    assert [s.tool_call.tool for s in steps] == ["greet", "greet", "done"]
    assert greeted == ["A", "B"] and result.stop_reason == "done"


def test_only_the_first_done_call_of_a_batch_counts(drive: Any) -> None:
    tools, _ = greeting_tools()
    reply = batch(("done", {"answer": "first"}), ("done", {"answer": "second"}))
    steps, result = drive(MockLLMBackend([reply]), tools=tools)
    assert len(steps) == 1 and result.final_answer == {"answer": "first"}
    assert [c.args for c in result.dropped_calls] == [{"answer": "second"}]


def test_done_that_does_not_fit_the_budget_is_dropped(drive: Any) -> None:
    tools, greeted = greeting_tools()
    reply = batch(("greet", {"name": "A"}), ("greet", {"name": "B"}), ("done", {"answer": "x"}))
    steps, result = drive(MockLLMBackend([reply]), tools=tools, max_steps=2)
    assert greeted == ["A", "B"] and result.stop_reason == StopReason.MAX_STEPS
    assert [c.tool for c in result.dropped_calls] == ["done"] and result.final_answer is None


def test_calls_after_a_stop_in_a_batch_are_dropped(drive: Any) -> None:
    tools, greeted = greeting_tools()

    class StopAfterFirst:
        def should_stop(self, state: Any, step: int) -> bool:
            return True

    reply = batch(("greet", {"name": "A"}), ("greet", {"name": "B"}))
    steps, result = drive(MockLLMBackend([reply]), tools=tools, hooks=[StopAfterFirst()])
    assert greeted == ["A"] and len(steps) == 1
    assert result.stop_reason == "hook_stop:StopAfterFirst"
    assert [c.args for c in result.dropped_calls] == [{"name": "B"}]


def test_a_hundred_calls_in_one_turn_keep_their_order(drive: Any) -> None:
    tools = BaseToolRegistry()
    seen: list[int] = []

    @tools.tool
    def mark(n: int) -> int:
        """Record n."""
        seen.append(n)
        return n

    register_done_tool(tools)
    reply = [native("mark", n=i) for i in range(100)]
    steps, _ = drive(MockLLMBackend([reply, done()]), tools=tools, max_steps=200)
    assert seen == list(range(100))
    assert [s.tool_result.data for s in steps[:100]] == [{"result": i} for i in range(100)]


# -- config validation (L2) -------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1, 1.5, 2.0, True, None, "3"])
def test_bad_max_steps_is_a_config_error_which_is_a_value_error(bad: Any) -> None:
    with pytest.raises(ConfigError):
        LoopConfig(max_steps=bad)
    with pytest.raises(ValueError):
        LoopConfig(max_steps=bad)


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_bad_max_steps_shorthand_fails_when_the_loop_is_built(drive: Any, bad: Any) -> None:
    from looplet import async_composable_loop, composable_loop

    build = async_composable_loop if drive.is_async else composable_loop
    with pytest.raises(ConfigError):
        build(MockLLMBackend([]), max_steps=bad)


def test_huge_max_steps_is_allowed() -> None:
    config = LoopConfig(max_steps=10**9)
    assert config.llm_call_cap == 3 * 10**9


@pytest.mark.parametrize(
    "field, bad",
    [
        ("max_llm_calls", -1),
        ("max_llm_calls", 2.5),
        ("deadline_s", 0),
        ("deadline_s", -3),
        ("max_result_chars", 0),
        ("max_concurrency", 0),
        ("max_arg_chars", True),
        ("max_arg_depth", 1.0),
        ("max_no_tool_calls", -1),
        ("tool_timeout_s", 0),
    ],
)
def test_other_bad_settings_are_config_errors(field: str, bad: Any) -> None:
    with pytest.raises(ConfigError, match=field):
        LoopConfig(**{field: bad})


def test_a_config_mutated_into_nonsense_is_rejected_when_used() -> None:
    from looplet import composable_loop

    config = LoopConfig()
    config.max_steps = -5
    with pytest.raises(ConfigError):
        composable_loop(MockLLMBackend([]), config=config, task="t")


def test_budget_remaining_counts_down(drive: Any) -> None:
    tools, _ = greeting_tools()
    seen: list[int | None] = []

    class Watch:
        def should_stop(self, state: Any, step: int) -> None:
            seen.append(state.budget_remaining)

    drive(
        MockLLMBackend([as_text("greet", name="A")] * 3), tools=tools, max_steps=3, hooks=[Watch()]
    )
    assert seen == [2, 1, 0]


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 1e12, -1.0, 0, True, "5"], ids=repr)
def test_a_default_tool_time_limit_out_of_range_is_refused_when_the_config_is_built(value: Any) -> None:
    from looplet.errors import ConfigError

    with pytest.raises(ConfigError, match="tool_timeout_s must be a number of seconds above 0"):
        LoopConfig(tool_timeout_s=value)
