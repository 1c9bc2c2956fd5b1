"""A tool may pause its own call by returning ``Ask``; the continued run calls it again with the decision.

This is what lets a sub-agent whose own call waits for a person pause its parent: the
parent's call waits in ``state.pending`` (``asked_by="tool"``, with the tool's details),
and whatever the person decides reaches the tool as ``ctx.decision``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from doubles import Driver, as_text, done

from looplet import (
    Allow,
    Ask,
    BaseToolRegistry,
    DefaultState,
    MockLLMBackend,
    ToolContext,
    register_done_tool,
)


class Asker:
    """A tool that asks before it acts, and records every decision it was called with."""

    def __init__(self, asks: int = 1) -> None:
        self.asks = asks
        self.seen: list[dict[str, Any] | None] = []

    def tools(self) -> BaseToolRegistry:
        tools = BaseToolRegistry()
        register_done_tool(tools)

        @tools.tool
        def transfer(amount: int, ctx: ToolContext) -> Any:
            """Move money."""
            self.seen.append(ctx.decision)
            if ctx.decision is None or (
                ctx.decision["decision"] == "approved" and len(self.seen) <= self.asks
            ):
                return Ask(f"move {amount}?", details={"amount": amount, "ask": len(self.seen)})
            if ctx.decision["decision"] == "rejected":
                return {"moved": 0, "why": ctx.decision["note"]}
            return {"moved": (ctx.decision["args"] or {}).get("amount", amount)}

        return tools


def _script() -> MockLLMBackend:
    return MockLLMBackend([as_text("transfer", amount=5), done("ok")])


def _then_done() -> MockLLMBackend:
    """The model of a continued run: the paused call is settled first, then it finishes."""
    return MockLLMBackend([done("ok")])


def _paused(drive: Driver, asker: Asker) -> DefaultState:
    state = DefaultState(task="pay")
    steps, result = drive(_script(), tools=asker.tools(), state=state)
    assert steps == [] and result.stop_reason == "approval_pending"
    return DefaultState.from_dict(json.loads(json.dumps(state.to_dict())))  # saved, read back


def test_a_tool_that_returns_ask_pauses_its_call_with_its_details(drive: Driver) -> None:
    asker = Asker()
    state = _paused(drive, asker)
    (pending,) = state.pending
    assert (pending.tool, pending.args, pending.reason) == ("transfer", {"amount": 5}, "move 5?")
    assert pending.asked_by == "tool" and pending.details == {"amount": 5, "ask": 1}
    assert [c.call_id for c in state.open_calls] == [pending.call_id]  # unanswered, not a step
    assert state.in_flight == {} and asker.seen == [None]


def test_an_approval_calls_the_tool_again_with_the_decision(drive: Driver) -> None:
    asker = Asker()
    state = _paused(drive, asker)
    state.approve(state.pending[0].call_id, args={"amount": 3})  # the tool's question, the tool's answer
    steps, result = drive(_then_done(), tools=asker.tools(), state=state)
    assert asker.seen[1] == {"decision": "approved", "args": {"amount": 3}, "note": ""}
    assert steps[0].tool_call.args == {"amount": 5}  # the call itself is unchanged
    assert steps[0].tool_result.data == {"moved": 3}
    assert steps[0].metadata["approval"]["decision"] == "approved"
    assert result.stop_reason == "done" and state.pending == []


def test_a_rejection_reaches_the_tool_too(drive: Driver) -> None:
    asker = Asker()
    state = _paused(drive, asker)
    state.reject(state.pending[0].call_id, "not today")
    steps, result = drive(_then_done(), tools=asker.tools(), state=state)
    assert asker.seen[1] == {"decision": "rejected", "args": None, "note": "not today"}
    assert steps[0].tool_result.data == {"moved": 0, "why": "not today"}
    assert result.stop_reason == "done"


def test_a_tool_may_ask_again_after_an_approval(drive: Driver) -> None:
    asker = Asker(asks=2)
    state = _paused(drive, asker)
    state.approve(state.pending[0].call_id)
    steps, result = drive(_then_done(), tools=asker.tools(), state=state)
    assert steps == [] and result.stop_reason == "approval_pending"
    assert state.pending[0].details == {"amount": 5, "ask": 2} and state.pending[0].decision is None
    state.approve(state.pending[0].call_id)
    steps, result = drive(_then_done(), tools=asker.tools(), state=state)
    assert steps[0].tool_result.data == {"moved": 5} and result.stop_reason == "done"


def test_an_undecided_tool_question_stays_paused(drive: Driver) -> None:
    asker = Asker()
    state = _paused(drive, asker)
    steps, result = drive(_then_done(), tools=asker.tools(), state=state)
    assert steps == [] and result.stop_reason == "approval_pending" and asker.seen == [None]


def test_a_tool_without_ctx_cannot_ask(drive: Driver) -> None:
    tools = BaseToolRegistry()
    register_done_tool(tools)

    @tools.tool
    def transfer(amount: int) -> Any:
        """Move money."""
        return Ask("move?")

    steps, result = drive(_script(), tools=tools)
    assert steps[0].tool_result.error_kind == "execution"
    assert "takes no ctx parameter" in (steps[0].tool_result.error or "")
    assert result.stop_reason == "done"


def test_an_async_tool_may_ask(drive: Driver) -> None:
    tools = BaseToolRegistry()
    register_done_tool(tools)

    @tools.tool
    async def transfer(amount: int, ctx: ToolContext) -> Any:
        """Move money."""
        return Ask("move?") if ctx.decision is None else {"moved": amount}

    state = DefaultState(task="pay")
    _, result = drive(_script(), tools=tools, state=state)
    assert result.stop_reason == "approval_pending" and state.pending[0].asked_by == "tool"
    state.approve(state.pending[0].call_id)
    steps, result = drive(_then_done(), tools=tools, state=state)
    assert steps[0].tool_result.data == {"moved": 5}


def test_the_context_names_the_run_its_budget_left_and_its_gates(drive: Driver) -> None:
    class Gate:
        def pre_dispatch(self, state: Any, log: Any, call: Any, step: int) -> Any:
            return Allow()

    gate = Gate()
    seen: list[tuple[str, int | None, tuple[Any, ...]]] = []
    tools = BaseToolRegistry()
    register_done_tool(tools)

    @tools.tool
    def look(ctx: ToolContext) -> str:
        """Look."""
        seen.append((ctx.run_id, ctx.steps_left, ctx.gates))
        return "ok"

    state = DefaultState(task="t")
    llm = MockLLMBackend([as_text("look"), as_text("look"), done()])
    drive(llm, tools=tools, hooks=[gate], state=state, max_steps=5)
    assert seen == [(state.run_id, 4, (gate,)), (state.run_id, 3, (gate,))]


@pytest.mark.parametrize("asked_by", ["", "tool"])
def test_the_pending_call_round_trips_with_who_asked(asked_by: str) -> None:
    from looplet import PendingCall

    pending = PendingCall("c1", "t", {"a": 1}, "h", "why", asked_by=asked_by, details={"k": [1]})
    assert PendingCall.from_dict(json.loads(json.dumps(pending.to_dict()))) == pending


def test_in_a_batch_each_call_sees_the_budget_left_after_the_calls_ahead_of_it(drive: Driver) -> None:
    from doubles import batch

    seen: list[int | None] = []
    tools = BaseToolRegistry()
    register_done_tool(tools)

    @tools.tool(concurrent_safe=True)
    def look(n: int, ctx: ToolContext) -> int:
        """Look."""
        seen.append(ctx.steps_left)
        return n

    llm = MockLLMBackend([batch(("look", {"n": 1}), ("look", {"n": 2}), ("look", {"n": 3})), done()])
    drive(llm, tools=tools, max_steps=5)
    assert sorted(seen, reverse=True) == [4, 3, 2]


def test_usage_a_tool_spends_joins_the_runs_totals_with_its_step(drive: Driver) -> None:
    from looplet import Usage

    tools = BaseToolRegistry()
    register_done_tool(tools)

    @tools.tool
    def ask_a_model(ctx: ToolContext) -> str:
        """Ask another model."""
        ctx.add_usage(Usage(100, 10, cost=0.5))
        return "answered"

    steps, result = drive(MockLLMBackend([as_text("ask_a_model"), done()]), tools=tools)
    assert steps[0].metadata["tool_usage"] == Usage(100, 10, cost=0.5).to_dict()
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.cost) == (100, 10, 0.5)
