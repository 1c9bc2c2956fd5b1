"""looplet (this checkout or any release with the same API): FunctionBackend, native tool calls."""

from __future__ import annotations

import json
from typing import Any

IMPORTS = (
    "from looplet import BaseToolRegistry, FunctionBackend, LoopConfig, ToolCall, "
    "composable_loop, register_done_tool"
)

_last: list[Any] = []


def run(n: int) -> int:
    """Make `n` tool steps on a scripted model (the budget ends the run); return the tool calls made."""
    from looplet import (
        BaseToolRegistry,
        FunctionBackend,
        LoopConfig,
        ToolCall,
        composable_loop,
        register_done_tool,
    )

    tools = BaseToolRegistry()
    made = 0

    @tools.tool
    def echo(text: str, n: int) -> dict[str, Any]:
        """Return the text."""
        nonlocal made
        made += 1
        return {"text": text, "n": n}

    register_done_tool(tools)
    calls = 0

    def model(request: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == n:
            _last[:] = [request.system, list(request.conversation())]
        return ToolCall("echo", {"text": "hello world", "n": calls})

    loop = composable_loop(
        FunctionBackend(model), task="echo things", tools=tools, config=LoopConfig(max_steps=n)
    )
    for _ in loop:
        pass
    return made


def last_bytes() -> int:
    """The system prompt and the messages (role, content, calls, call id, name) as JSON."""
    system, messages = _last
    rows = [
        {
            "role": m.role,
            "content": m.content,
            "tool_calls": [{"id": c.call_id, "name": c.tool, "args": c.args} for c in m.tool_calls],
            "call_id": m.call_id,
            "name": m.name,
        }
        for m in messages
    ]
    return len(json.dumps({"system": system, "messages": rows}).encode())
