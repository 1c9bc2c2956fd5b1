"""Termination under any scripted model behaviour (rows L1, A3, A10, A11; INV-4, INV-7).

A script of model behaviours is drawn (valid calls, batches, free calls,
garbage, text only, unknown tools, invalid arguments, timeouts, exceptions,
done) along with hook behaviours (deny everything, block done forever,
inject text every turn). The backend repeats the script forever, so only the
loop's own limits can end the run. At every yielded step, and at the end, the
step budget and the LLM-call cap hold; the stop reason is a documented one.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from looplet import (
    BaseToolRegistry,
    Block,
    Deny,
    FunctionBackend,
    LLMError,
    LLMRequest,
    LoopConfig,
    StopReason,
    ToolCall,
    async_composable_loop,
    composable_loop,
    register_done_tool,
    register_think_tool,
)

DOCUMENTED = {
    StopReason.DONE,
    StopReason.MAX_STEPS,
    StopReason.MAX_LLM_CALLS,
    StopReason.NO_TOOL_CALL,
    StopReason.LLM_ERROR,
    StopReason.CONTEXT_OVERFLOW,
}

single = st.sampled_from(
    [
        ("work", {"n": 1}),
        ("think", {"thought": "hmm"}),
        ("invented_tool", {}),
        ("work", {"n": "one"}),
        ("work", {"m": 1}),
        ("fail", {}),
        ("done", {"answer": "x"}),
    ]
)
behaviours = st.one_of(
    single.map(lambda c: ("call", [c])),
    st.lists(single, min_size=2, max_size=6).map(lambda cs: ("batch", cs)),
    st.sampled_from(
        [
            ("text", "I would rather chat."),
            ("text", ""),
            ("text", '{"tool": "work", "args": {"n": 1'),
            ("text", "{{{ not json"),
            ("error", "llm"),
            ("error", "overflow"),
            ("native_ids", "dup"),
        ]
    ),
)


def build(script: list[Any], counts: dict[str, int]) -> Any:
    turn = {"i": 0}

    def answer(request: LLMRequest) -> Any:
        kind, payload = script[turn["i"] % len(script)]
        turn["i"] += 1
        if kind == "call":
            name, args = payload[0]
            return json.dumps({"tool": name, "args": args})
        if kind == "batch":
            return [ToolCall(name, dict(args)) for name, args in payload]
        if kind == "native_ids":
            return [
                ToolCall("work", {"n": 1}, call_id="same"),
                ToolCall("work", {"n": 2}, call_id="same"),
            ]
        if kind == "error":
            if payload == "overflow":
                raise LLMError("too long", kind="context_length")
            raise LLMError("flaky", kind="server", retriable=True)
        return payload

    return FunctionBackend(answer)


def tools_for(counts: dict[str, int]) -> BaseToolRegistry:
    tools = BaseToolRegistry()

    @tools.tool
    def work(n: int) -> int:
        """Do some work."""
        counts["work"] += 1
        return n

    @tools.tool
    def fail() -> None:
        """Always fails."""
        counts["fail"] += 1
        raise RuntimeError("always")

    register_think_tool(tools)
    register_done_tool(tools)
    return tools


class Gates:
    def __init__(self, deny_all: bool, block_done: bool, inject: bool) -> None:
        self.deny_all, self.block_done, self.inject = deny_all, block_done, inject

    def pre_prompt(self, *args: Any) -> Any:
        return "keep going" if self.inject else None

    def pre_dispatch(self, *args: Any) -> Any:
        return Deny("policy") if self.deny_all else None

    def check_done(self, *args: Any) -> Any:
        return Block("not yet") if self.block_done else None


def run(mode: str, llm: Any, **kwargs: Any) -> tuple[list[Any], Any, Any]:
    def check(loop: Any, step: Any) -> None:
        state, cfg = loop.state, loop.state.config
        assert state.steps_charged <= cfg.max_steps
        assert state.llm_calls <= cfg.llm_call_cap

    kwargs.setdefault("task", "the task")
    if mode == "sync":
        loop = composable_loop(llm, **kwargs)
        steps = []
        for step in loop:
            check(loop, step)
            steps.append(step)
        return steps, loop.result, loop

    async def main() -> Any:
        aloop = async_composable_loop(llm, **kwargs)
        out = []
        async for step in aloop:
            check(aloop, step)
            out.append(step)
        return out, aloop.result, aloop

    return asyncio.run(main())  # type: ignore[no-any-return]


@given(
    script=st.lists(behaviours, min_size=1, max_size=8),
    max_steps=st.integers(0, 6),
    max_llm_calls=st.none() | st.integers(0, 10),
    max_no_tool_calls=st.integers(0, 3),
    gates=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    mode=st.sampled_from(["sync", "async"]),
)
def test_no_model_behaviour_runs_past_the_step_budget_or_the_llm_call_cap(
    script: list[Any],
    max_steps: int,
    max_llm_calls: int | None,
    max_no_tool_calls: int,
    gates: tuple[bool, bool, bool],
    mode: str,
) -> None:
    counts = {"work": 0, "fail": 0}
    llm = build(script, counts)
    config = LoopConfig(
        max_steps=max_steps, max_llm_calls=max_llm_calls, max_no_tool_calls=max_no_tool_calls
    )
    steps, result, loop = run(
        mode, llm, tools=tools_for(counts), config=config, hooks=[Gates(*gates)]
    )

    cap = config.llm_call_cap
    assert len(llm.calls) <= cap and result.llm_calls == len(llm.calls)
    charged = [s for s in steps if not s.free]
    assert len(charged) <= max_steps
    assert result.stop_reason in DOCUMENTED, result.stop_reason
    if max_steps == 0:
        assert llm.calls == []
    # the steps yielded are the steps recorded, numbered in order, with unique call ids
    assert loop.state.steps == steps == result.steps
    assert [s.number for s in steps] == list(range(1, len(steps) + 1))
    ids = [s.tool_call.call_id for s in steps if s.tool_call.tool]
    assert len(ids) == len(set(ids))
    # INV-4: denied, invalid or dropped calls never ran; every run is a recorded step
    ran_ok = sum(1 for s in steps if s.tool_call.tool == "work" and s.tool_result.ok)
    ran_failed = sum(
        1 for s in steps if s.tool_call.tool == "fail" and s.tool_result.error_kind == "execution"
    )
    assert counts == {"work": ran_ok, "fail": ran_failed}
    if gates[0]:
        assert counts == {"work": 0, "fail": 0}
    if result.stop_reason == StopReason.DONE:
        assert result.final_answer is not None and not gates[1]
    for call in result.dropped_calls:
        assert call.call_id not in ids
