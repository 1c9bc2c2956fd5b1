"""No model output escapes a sub-agent's limits (RELIABILITY K2, L4): a property over scripted models.

The models write any mix of sub-agent calls (one or several per reply), with any requested
step count and with the arguments an injection would try (``max_depth``, ``workspace``,
``tree_budget``, ``depth``), probes and done calls. Each model is a function of its own depth
(carried in the task it was given), so a run behaves the same whichever thread gets there
first. Run in three dispatch modes: inline (sync loop), threaded (sync loop, concurrent-safe
batches on the worker pool) and async (async loop, async tool, batches gathered as tasks).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
from doubles import Driver
from hypothesis import event, given, settings
from hypothesis import strategies as st

from looplet import (
    BaseToolRegistry,
    DefaultState,
    FunctionBackend,
    LLMResponse,
    ToolCall,
    ToolContext,
    register_done_tool,
)
from looplet.subagents import RECORD_KEY, SELF_KEY, async_subagent_tool, current_depth, subagent_tool

INJECTED = st.fixed_dictionaries(
    {},
    optional={
        "max_depth": st.integers(-5, 10**6),
        "workspace": st.just("/tmp/evil"),
        "tree_budget": st.integers(0, 10**9),
        "depth": st.integers(-3, 3),
    },
)
ASKED_STEPS = st.fixed_dictionaries({}, optional={"max_steps": st.one_of(st.none(), st.integers(-10, 10**7))})
SUB_CALL = st.builds(lambda a, b: {**a, **b}, ASKED_STEPS, st.one_of(st.just({}), INJECTED))
SUBS = st.tuples(st.just("sub"), st.lists(SUB_CALL, min_size=1, max_size=3))
MOVE: st.SearchStrategy[tuple[str, list[dict[str, Any]]]] = st.one_of(
    SUBS,
    SUBS,  # twice as likely: a tree grows
    st.just(("probe", [])),
    st.just(("done", [])),
)
#: a script per depth (the last serves deeper ones); most begin by starting a sub-agent
SCRIPT = st.builds(
    lambda first, rest: [first, *rest], st.one_of(SUBS, SUBS, MOVE), st.lists(MOVE, max_size=5)
)
SCRIPTS = st.lists(st.one_of(SCRIPT, st.lists(MOVE, max_size=6)), min_size=1, max_size=4)


class Watch:
    """Shared by every run of a tree: what each tool call was allowed and how each child ended."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.steps_left: dict[tuple[str, str], int | None] = {}
        self.children: list[dict[str, Any]] = []
        self.depths: list[int] = []
        self.errors: list[str] = []
        self.batches: Counter[tuple[str, int]] = Counter()  # sub-agent calls per model turn

    def around_tool(self, call: Any, proceed: Any) -> Any:
        if call.ctx is not None:
            with self.lock:
                self.steps_left[(call.run_id, call.call.call_id)] = call.ctx.steps_left
        return proceed()

    def after_step(self, state: DefaultState, log: Any, step: Any) -> None:
        with self.lock:
            if step.tool_result.error:
                self.errors.append(step.tool_result.error)
            if step.tool_call.tool == "subagent":
                self.batches[(state.run_id, step.turn)] += 1

    def on_loop_end(self, state: DefaultState, log: Any, ctx: Any, llm: Any) -> None:
        me = state.metadata.get(SELF_KEY)
        if isinstance(me, dict):
            with self.lock:
                config = state.config
                assert config is not None
                self.children.append({**me, "max_steps": config.max_steps, "steps": state.steps_charged})


def scripted(scripts: list[list[tuple[str, list[dict[str, Any]]]]]) -> FunctionBackend:
    """The model at depth d (its task says d) replies with scripts[d] in order, then done."""

    def reply(request: Any) -> LLMResponse:
        depth = int(request.messages[0].content)
        n = sum(1 for m in request.messages if m.role == "assistant")
        script = scripts[min(depth, len(scripts) - 1)]
        kind, calls = script[n] if n < len(script) else ("done", [])
        if kind == "sub":
            out = [ToolCall("subagent", {"task": str(depth + 1), **args}) for args in calls]
        elif kind == "probe":
            out = [ToolCall("probe", {})]
        else:
            out = [ToolCall("done", {"answer": f"depth {depth}"})]
        return LLMResponse(tool_calls=out)

    return FunctionBackend(reply)


def kit(
    mode: str, scripts: Any, watch: Watch, cap: int, max_depth: int, tree_budget: int
) -> BaseToolRegistry:
    tools = BaseToolRegistry()
    register_done_tool(tools)

    @tools.tool(concurrent_safe=True)
    def probe(ctx: ToolContext) -> int:
        """Report the depth."""
        with watch.lock:
            watch.depths.append(current_depth(ctx))
        return current_depth(ctx)

    factory = async_subagent_tool if mode == "async" else subagent_tool
    factory(
        tools,
        scripted(scripts),
        tools,
        max_steps=cap,
        max_depth=max_depth,
        tree_budget=tree_budget,
        observers=[watch],
        concurrent_safe=mode != "inline",
    )
    return tools


def check_limits(watch: Watch, state: DefaultState, cap: int, max_depth: int, tree_budget: int) -> None:
    """The invariants, and what this example exercised (`seen`)."""
    for child in watch.children:
        assert 1 <= child["depth"] <= max_depth
        allowed = watch.steps_left[(child["parent_run_id"], child["parent_call_id"])]
        assert allowed is not None
        assert child["max_steps"] <= min(cap, allowed)
        assert child["steps"] <= child["max_steps"]
    assert all(d <= max_depth for d in watch.depths)
    spent = sum(child["steps"] for child in watch.children)
    assert spent <= tree_budget
    book = state.metadata.get(RECORD_KEY, {})
    assert book.get("tree_steps", 0) == spent


def exercised(watch: Watch, scripts: Any, cap: int, max_depth: int) -> set[str]:
    seen = set()
    if any(c["depth"] == max_depth for c in watch.children) and any("depth limit" in e for e in watch.errors):
        seen.add("depth limit refused a deeper sub-agent")
    if any("tree budget" in e for e in watch.errors):
        seen.add("tree budget refused a sub-agent")
    if any("unknown argument" in e for e in watch.errors):
        seen.add("an injected limit argument was refused")
    asked = [a.get("max_steps") for d in scripts for k, calls in d if k == "sub" for a in calls]
    if any(isinstance(n, int) and n > cap for n in asked) and watch.children:
        seen.add("a request for more steps than the cap")
    if any(n > 1 for n in watch.batches.values()) and watch.children:
        seen.add("a batch of sub-agents")
    for name in seen:
        event(name)
    return seen


@pytest.mark.parametrize("mode", ["inline", "threaded", "async"])
def test_no_tool_argument_raises_depth_steps_or_the_tree_budget(mode: str) -> None:
    seen: Counter[str] = Counter()
    examples = 0

    @settings(max_examples=min(settings().max_examples, 200))
    @given(
        scripts=SCRIPTS,
        root_steps=st.integers(1, 12),
        cap=st.integers(1, 6),
        max_depth=st.integers(1, 3),
        tree_budget=st.integers(1, 15),
    )
    def prop(scripts: Any, root_steps: int, cap: int, max_depth: int, tree_budget: int) -> None:
        nonlocal examples
        watch = Watch()
        tools = kit(mode, scripts, watch, cap, max_depth, tree_budget)
        state = DefaultState(task="0")
        driver = Driver("async" if mode == "async" else "sync")
        driver(scripted(scripts), tools=tools, hooks=[watch], state=state, max_steps=root_steps)
        check_limits(watch, state, cap, max_depth, tree_budget)
        seen.update(exercised(watch, scripts, cap, max_depth))
        examples += 1

    prop()
    # a too-narrow strategy shows here: each interesting branch is reached often
    floor = max(2, examples // 30)
    for branch in (
        "depth limit refused a deeper sub-agent",
        "tree budget refused a sub-agent",
        "an injected limit argument was refused",
        "a request for more steps than the cap",
        "a batch of sub-agents",
    ):
        assert seen[branch] >= floor, (branch, seen, examples)
