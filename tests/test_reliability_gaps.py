"""Rows of RELIABILITY.md that had no test of their own: A7's memory bound and L7's compaction.

L7 (compaction that does not shrink, or grows): whatever a compaction hook does with an
overflowing prompt, the loop rebuilds it at most once per model call and never resends an
unchanged prompt, so the run still ends with a documented stop reason.

A7 (huge arguments): a call carrying a 10 MB string is refused before it runs without the
loop copying the payload over and over (peak traced memory under 3x the payload).
"""

from __future__ import annotations

import asyncio
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from doubles import native
from hypothesis import event, given, settings
from hypothesis import strategies as st

from looplet import (
    BaseToolRegistry,
    FunctionBackend,
    LLMError,
    LLMRequest,
    LoopConfig,
    Message,
    MockLLMBackend,
    Step,
    StopReason,
    ToolCall,
    async_composable_loop,
    composable_loop,
    register_done_tool,
)

# -- L7: compaction that does not shrink, or grows ---------------------------------------------


def prompt_size(request: LLMRequest) -> int:
    """Characters the model would read: system prompt, messages and injected texts."""
    return (
        len(request.system)
        + sum(len(m.content) for m in request.messages)
        + sum(len(text) for text in request.extra)
    )


class ContextWindow:
    """A model whose context holds `limit` characters; a longer prompt is refused as too long."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sizes: list[int] = []
        self.refused = 0

    def __call__(self, request: LLMRequest) -> ToolCall:
        size = prompt_size(request)
        self.sizes.append(size)
        if size > self.limit:
            self.refused += 1
            raise LLMError(f"prompt is too long: {size} > {self.limit}", kind="context_length")
        return ToolCall("done", {"answer": "fits"})


class Compactor:
    """A compaction hook that, when told of an overflow, does what `how` says.

    keep: nothing; grow: adds text; pad: swaps the messages for equal-sized copies
    (a change that saves nothing); trim: drops a little; fit: keeps only the task.
    """

    def __init__(self, how: str) -> None:
        self.how = how
        self.asked = 0

    def pre_prompt(self, state: Any, log: Any, ctx: Any, step: int) -> None:
        if not ctx.overflow:
            return
        self.asked += 1
        if self.how == "grow":
            ctx.injected.append("more context " * 50)
        elif self.how == "pad":
            ctx.messages = [Message(m.role, m.content.swapcase()) for m in ctx.messages]
        elif self.how == "trim":
            ctx.messages = [Message(m.role, m.content[:-5]) for m in ctx.messages]
        elif self.how == "fit":
            ctx.messages = [Message(ctx.messages[0].role, "short task")]


def tools_with_done() -> BaseToolRegistry:
    tools = BaseToolRegistry()
    register_done_tool(tools)
    return tools


COMPACTIONS = ["keep", "grow", "pad", "trim", "fit"]


@pytest.mark.parametrize("how", ["keep", "grow", "pad", "trim"])
def test_a_compaction_that_never_shrinks_the_prompt_still_ends_the_run(drive: Any, how: str) -> None:
    window = ContextWindow(limit=100)
    llm = FunctionBackend(window)
    hook = Compactor(how)
    _, result = drive(
        llm, tools=tools_with_done(), task="x" * 500, hooks=[hook], max_steps=5, system_prompt="Be brief."
    )
    assert result.stop_reason == StopReason.CONTEXT_OVERFLOW
    assert hook.asked == 1, "the prompt is rebuilt once per overflow, not again and again"
    expected_calls = 1 if how == "keep" else 2  # an unchanged prompt is never sent again
    assert len(llm.calls) == result.llm_calls == window.refused == expected_calls


def test_a_compaction_that_fits_lets_the_run_go_on(drive: Any) -> None:
    # the control case: the same harness, with a compactor that really shrinks
    window = ContextWindow(limit=100)
    llm = FunctionBackend(window)
    _, result = drive(
        llm, tools=tools_with_done(), task="x" * 500, hooks=[Compactor("fit")], system_prompt="Be brief."
    )
    assert result.stop_reason == StopReason.DONE
    assert window.refused == 1 and len(llm.calls) == 2 and window.sizes[1] <= window.limit


def test_no_compaction_behaviour_makes_the_loop_resend_or_call_past_its_caps() -> None:
    reached: Counter[tuple[str, str]] = Counter()

    @given(
        task_chars=st.integers(1, 400),
        limit=st.integers(50, 300),
        how=st.sampled_from(COMPACTIONS),
        max_llm_calls=st.integers(1, 6),
    )
    def check(task_chars: int, limit: int, how: str, max_llm_calls: int) -> None:
        window = ContextWindow(limit)
        llm = FunctionBackend(window)
        hook = Compactor(how)
        config = LoopConfig(max_steps=3, max_llm_calls=max_llm_calls, system_prompt="Be brief.")
        loop = composable_loop(
            llm, tools=tools_with_done(), task="t" * task_chars, hooks=[hook], config=config
        )
        for _ in loop:
            pass
        result = loop.result
        assert result is not None
        event(f"compactor {how}: {result.stop_reason}")
        reached[how, str(result.stop_reason)] += 1
        assert len(llm.calls) <= max_llm_calls
        assert result.stop_reason in {StopReason.DONE, StopReason.CONTEXT_OVERFLOW, StopReason.MAX_LLM_CALLS}
        assert window.refused <= 1 + hook.asked, "each overflow is followed by at most one rebuilt prompt"
        assert hook.asked <= window.refused
        for before, after in zip(llm.calls, llm.calls[1:], strict=False):
            assert prompt_size(before) != prompt_size(after) or before.messages != after.messages
        if result.stop_reason == StopReason.DONE:
            assert window.sizes[-1] <= limit

    check()
    # every compaction behaviour met prompts that fit and prompts that overflow ("fit" can end
    # overflowing only when the call cap leaves no room to retry, so it is not required there)
    enough = max(1, settings().max_examples // 50)
    for how in COMPACTIONS:
        assert reached[how, StopReason.DONE] >= enough, reached
        if how != "fit":
            assert reached[how, StopReason.CONTEXT_OVERFLOW] >= enough, reached


# -- A7: a huge argument is refused without being copied over and over --------------------------


@contextmanager
def tracing() -> Iterator[None]:
    """Trace allocations inside the block (leaving tracing on if someone else started it)."""
    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start()
    try:
        yield
    finally:
        if started_here:
            tracemalloc.stop()


class PeakAtEnd:
    """Reads the traced peak as the loop ends, before anything the caller does afterwards."""

    def __init__(self) -> None:
        self.peak = 0

    def on_loop_end(self, state: Any, log: Any, ctx: Any, llm: Any) -> None:
        self.peak = tracemalloc.get_traced_memory()[1]


def run_to_end(mode: str, llm: Any, **kwargs: Any) -> list[Step]:
    """Run a loop in either driver, keeping its steps out of the coroutine's return value
    (asyncio.run formats its main task, result included, which would copy a huge argument)."""
    steps: list[Step] = []
    if mode == "sync":
        steps.extend(composable_loop(llm, **kwargs))
        return steps

    async def main() -> None:
        async for step in async_composable_loop(llm, **kwargs):
            steps.append(step)

    asyncio.run(main())
    return steps


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_huge_argument_is_refused_without_copying_it_over_and_over(mode: str) -> None:
    payload = "x" * 10_000_000
    tools = BaseToolRegistry()
    ran: list[int] = []

    @tools.tool
    def echo(text: str) -> str:
        """Echo the text."""
        ran.append(len(text))
        return text

    register_done_tool(tools)
    llm = MockLLMBackend([[native("echo", "c1", text=payload)], [native("done", "c2", answer="x")]])
    end = PeakAtEnd()
    with tracing():
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        steps = run_to_end(mode, llm, tools=tools, task="echo this", hooks=[end])
    assert ran == [] and len(steps) == 2 and steps[1].tool_call.tool == "done"
    assert "over the limit of 1,000,000" in (steps[0].tool_result.error or "")
    assert end.peak - base < 3 * len(payload), f"peak {end.peak - base:,} bytes for a 10 MB payload"
