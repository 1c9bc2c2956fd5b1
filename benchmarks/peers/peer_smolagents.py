"""smolagents: a ToolCallingAgent on a tiny custom Model (its ``generate`` interface), logging off."""

from __future__ import annotations

import json
from typing import Any

IMPORTS = "from smolagents import ChatMessage, Model, ToolCallingAgent, tool"

_last: list[Any] = []


def _scripted_model(n: int) -> Any:
    """A Model answering at once: a call of `echo` for calls 1..n, then `final_answer`."""
    from smolagents import ChatMessage, Model
    from smolagents.models import ChatMessageToolCall, ChatMessageToolCallFunction, MessageRole

    class InstantModel(Model):
        calls = 0

        def generate(self, messages: list[Any], *args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls == n:
                _last[:] = [list(messages)]
            if self.calls > n:
                name, args_ = "final_answer", {"answer": "done"}
            else:
                name, args_ = "echo", {"text": "hello world", "n": self.calls}
            function = ChatMessageToolCallFunction(arguments=args_, name=name)
            call = ChatMessageToolCall(function=function, id=f"c{self.calls}", type="function")
            return ChatMessage(role=MessageRole.ASSISTANT, content="", tool_calls=[call])

    return InstantModel(model_id="instant-scripted")


def run(n: int) -> int:
    """Make `n` tool steps, then give the final answer; return the tool calls made."""
    from smolagents import ToolCallingAgent, tool
    from smolagents.monitoring import LogLevel

    made = 0

    @tool
    def echo(text: str, n: int) -> dict:  # smolagents reads the bare `dict` annotation only
        """Return the text.

        Args:
            text: the text to return.
            n: a number to return with it.
        """
        nonlocal made
        made += 1
        return {"text": text, "n": n}

    agent = ToolCallingAgent(
        tools=[echo], model=_scripted_model(n), max_steps=n + 5, verbosity_level=LogLevel.OFF
    )
    agent.run("echo things")
    return made


def last_bytes() -> int:
    """The chat messages (system prompt, task, every step) as their own dicts, as JSON."""
    return len(json.dumps([m.dict() if hasattr(m, "dict") else m for m in _last[0]], default=str).encode())
