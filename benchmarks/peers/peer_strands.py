"""strands-agents: an Agent on a tiny custom Model (its streaming ``stream`` interface).

Strands runs each model-and-tools cycle one level deeper in recursive async
generators, so a run of 1000 steps needs a higher Python recursion limit (and
a bigger thread stack for the thread it runs the agent in).
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

IMPORTS = "from strands import Agent, tool; from strands.models import Model"

_last: list[Any] = []


def _scripted_model(n: int) -> Any:
    """A Model streaming at once: a call of `echo` for calls 1..n, then a text answer."""
    from strands.models import Model

    class InstantModel(Model):
        calls = 0

        def update_config(self, **model_config: Any) -> None:
            pass

        def get_config(self) -> Any:
            return {}

        def structured_output(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError("no structured output here")

        async def stream(
            self, messages: Any, tool_specs: Any = None, system_prompt: Any = None, **kw: Any
        ) -> Any:
            self.calls += 1
            if self.calls == n:
                _last[:] = [system_prompt, list(messages)]
            yield {"messageStart": {"role": "assistant"}}
            if self.calls > n:
                yield {"contentBlockDelta": {"delta": {"text": "done"}}}
                yield {"contentBlockStop": {}}
                yield {"messageStop": {"stopReason": "end_turn"}}
                return
            start = {"toolUse": {"name": "echo", "toolUseId": f"c{self.calls}"}}
            yield {"contentBlockStart": {"start": start}}
            args = json.dumps({"text": "hello world", "n": self.calls})
            yield {"contentBlockDelta": {"delta": {"toolUse": {"input": args}}}}
            yield {"contentBlockStop": {}}
            yield {"messageStop": {"stopReason": "tool_use"}}

    return InstantModel()


def run(n: int) -> int:
    """Make `n` tool steps, then answer in text; return the tool calls made."""
    from strands import Agent, tool

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 40 * n + 2000))
    threading.stack_size(512 * 1024 * 1024)
    made = 0

    @tool
    def echo(text: str, n: int) -> dict[str, Any]:
        """Return the text."""
        nonlocal made
        made += 1
        return {"text": text, "n": n}

    agent = Agent(model=_scripted_model(n), tools=[echo], callback_handler=None)
    agent("echo things")
    return made


def last_bytes() -> int:
    """The system prompt and the messages (Bedrock-style content blocks, plain dicts) as JSON."""
    return len(json.dumps(_last, default=str).encode())
