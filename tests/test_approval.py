"""Approval through ``ctx.approve()``: only an explicit yes approves, in both loops (INV-4)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from doubles import as_text, done

from looplet import (
    Allow,
    BaseToolRegistry,
    Deny,
    MockLLMBackend,
    ToolContext,
    async_composable_loop,
    composable_loop,
    register_done_tool,
)
from looplet.errors import ConfigError


def _deleting_tools() -> tuple[BaseToolRegistry, list[str]]:
    tools = BaseToolRegistry()
    deleted: list[str] = []

    @tools.tool
    def delete(path: str, ctx: ToolContext) -> dict[str, Any]:
        """Delete a file after asking."""
        if ctx.approve(f"delete {path}?"):
            deleted.append(path)
            return {"deleted": True}
        return {"deleted": False, "warnings": list(ctx.warnings)}

    register_done_tool(tools)
    return tools, deleted


NOT_APPROVALS = ["no", "yes", "", 1, 0, None, False, [], {"approved": True}, Deny("not now"), object()]


def _answer_id(answer: Any) -> str:
    """A stable id (a bare object's repr holds its address, which differs between processes)."""
    return "object()" if type(answer) is object else repr(answer)


@pytest.mark.parametrize("answer", NOT_APPROVALS, ids=_answer_id)
def test_only_true_or_allow_approves_anything_else_refuses(drive: Any, answer: Any) -> None:
    tools, deleted = _deleting_tools()
    llm = MockLLMBackend([as_text("delete", path="/data"), done()])
    steps, _ = drive(llm, tools=tools, approver=lambda question: answer)
    assert deleted == [] and steps[0].tool_result.data["deleted"] is False


@pytest.mark.parametrize("answer", [True, Allow()], ids=repr)
def test_true_or_an_allow_decision_approves(drive: Any, answer: Any) -> None:
    tools, deleted = _deleting_tools()
    llm = MockLLMBackend([as_text("delete", path="/data"), done()])
    drive(llm, tools=tools, approver=lambda question: answer)
    assert deleted == ["/data"]


def test_a_refusal_for_a_junk_answer_says_what_the_approver_returned(drive: Any) -> None:
    tools, _ = _deleting_tools()
    llm = MockLLMBackend([as_text("delete", path="/data"), done()])
    steps, _ = drive(llm, tools=tools, approver=lambda question: "no")
    warnings = steps[0].tool_result.warnings
    assert any("returned str 'no'" in w and "only True or Allow() approves" in w for w in warnings)


def test_an_async_approver_is_awaited_in_the_async_loop_for_sync_and_async_tools() -> None:
    tools = BaseToolRegistry()
    done_paths: list[str] = []
    asked: list[str] = []

    @tools.tool
    def delete_sync(path: str, ctx: ToolContext) -> bool:
        """Sync tool: runs in a worker thread; the async approver runs on the loop."""
        if ctx.approve(f"delete {path}?"):
            done_paths.append(path)
        return True

    @tools.tool
    async def delete_async(path: str, ctx: ToolContext) -> bool:
        """Async tool: awaits its approval."""
        if await ctx.aapprove(f"delete {path}?"):
            done_paths.append(path)
        return True

    register_done_tool(tools)

    async def approver(question: str) -> bool:
        await asyncio.sleep(0)
        asked.append(question)
        return "keep" not in question

    script = [
        as_text("delete_sync", path="a"),
        as_text("delete_sync", path="keep-b"),
        as_text("delete_async", path="c"),
        as_text("delete_async", path="keep-d"),
        done(),
    ]

    async def main() -> Any:
        return await async_composable_loop(
            MockLLMBackend(script), tools=tools, task="t", approver=approver
        ).run()

    result = asyncio.run(main())
    assert result.stop_reason == "done"
    assert done_paths == ["a", "c"] and len(asked) == 4


def test_an_async_approver_is_refused_by_the_sync_loop_with_a_clear_error() -> None:
    tools, _ = _deleting_tools()

    async def approver(question: str) -> bool:
        return True

    with pytest.raises(ConfigError, match="approver is async; use async_composable_loop"):
        composable_loop(MockLLMBackend([]), tools=tools, task="t", approver=approver)


def test_an_approver_object_with_an_async_call_is_recognised_as_async() -> None:
    class Approver:
        async def __call__(self, question: str) -> bool:
            return True

    tools, _ = _deleting_tools()
    with pytest.raises(ConfigError, match="approver is async"):
        composable_loop(MockLLMBackend([]), tools=tools, task="t", approver=Approver())


def test_an_approver_returning_an_awaitable_in_the_sync_loop_refuses_and_is_not_left_unawaited() -> None:
    tools, deleted = _deleting_tools()

    async def answer() -> bool:
        return True

    llm = MockLLMBackend([as_text("delete", path="/data"), done()])
    steps = list(composable_loop(llm, tools=tools, task="t", approver=lambda q: answer()))
    assert deleted == [] and any("returned an awaitable" in w for w in steps[0].tool_result.warnings)


def test_an_async_tool_calling_sync_approve_with_an_async_approver_refuses_instead_of_deadlocking() -> None:
    tools = BaseToolRegistry()
    answers: list[bool] = []

    @tools.tool
    async def risky(ctx: ToolContext) -> list[str]:
        """Calls the sync approve() from the event loop's own thread."""
        answers.append(ctx.approve("go?"))
        return list(ctx.warnings)

    register_done_tool(tools)

    async def approver(question: str) -> bool:
        return True

    async def main() -> Any:
        loop = async_composable_loop(
            MockLLMBackend([as_text("risky"), done()]), tools=tools, task="t", approver=approver
        )
        return [s async for s in loop]

    steps = asyncio.run(main())
    assert answers == [False]
    assert "aapprove" in " ".join(steps[0].tool_result.data["result"])


def test_approve_without_an_approver_or_with_a_raising_one_refuses() -> None:
    ctx = ToolContext()
    assert ctx.approve("delete?") is False and "no approver" in ctx.warnings[0]

    def broken(question: str) -> bool:
        raise RuntimeError("down")

    ctx = ToolContext(approver=broken)
    assert ctx.approve("ok?") is False and "treated as a refusal" in ctx.warnings[0]
    assert asyncio.run(ToolContext(approver=broken).aapprove("ok?")) is False
