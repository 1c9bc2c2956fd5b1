"""pydantic-ai-slim: an Agent on its own offline FunctionModel, one plain function tool."""

from __future__ import annotations

from typing import Any

IMPORTS = "from pydantic_ai import Agent; from pydantic_ai.models.function import FunctionModel"

_last: list[Any] = []


def run(n: int) -> int:
    """Make `n` tool steps, then answer in text; return the tool calls made."""
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart
    from pydantic_ai.models.function import FunctionModel
    from pydantic_ai.usage import UsageLimits

    made = 0
    calls = 0

    def echo(text: str, n: int) -> dict[str, Any]:
        """Return the text."""
        nonlocal made
        made += 1
        return {"text": text, "n": n}

    def model(messages: list[Any], info: Any) -> ModelResponse:
        nonlocal calls
        calls += 1
        if calls == n:
            _last[:] = [list(messages)]
        if calls > n:
            return ModelResponse(parts=[TextPart("done")])
        args = {"text": "hello world", "n": calls}
        return ModelResponse(parts=[ToolCallPart("echo", args, tool_call_id=f"c{calls}")])

    agent = Agent(FunctionModel(model), tools=[echo])
    agent.run_sync("echo things", usage_limits=UsageLimits(request_limit=None))  # default: 50 requests
    return made


def last_bytes() -> int:
    """The model messages, dumped by pydantic-ai's own ModelMessagesTypeAdapter."""
    from pydantic_ai.messages import ModelMessagesTypeAdapter

    return len(ModelMessagesTypeAdapter.dump_json(_last[0]))
