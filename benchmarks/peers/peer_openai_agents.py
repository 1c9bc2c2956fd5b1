"""openai-agents: an Agent on a tiny custom Model (the SDK's Model interface), tracing off."""

from __future__ import annotations

import json
from typing import Any

IMPORTS = "from agents import Agent, Model, ModelResponse, Runner, function_tool"

_last: list[Any] = []


def _scripted_model(n: int) -> Any:
    """A Model answering at once: a call of `echo` for calls 1..n, then a text answer."""
    from agents import Model, ModelResponse, Usage
    from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

    class InstantModel(Model):
        calls = 0

        async def get_response(self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls == n:
                _last[:] = [system_instructions, list(input)]
            if self.calls > n:
                text = ResponseOutputText(text="done", type="output_text", annotations=[])
                item: Any = ResponseOutputMessage(
                    id="m", content=[text], role="assistant", status="completed", type="message"
                )
            else:
                args = json.dumps({"text": "hello world", "n": self.calls})
                item = ResponseFunctionToolCall(
                    arguments=args, call_id=f"c{self.calls}", name="echo", type="function_call"
                )
            return ModelResponse(output=[item], usage=Usage(), response_id=None)

        def stream_response(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError("not streamed here")

    return InstantModel()


def run(n: int) -> int:
    """Make `n` tool steps, then answer in text; return the tool calls made."""
    from agents import Agent, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)  # no key, no network: the default exporter would post traces
    made = 0

    @function_tool
    def echo(text: str, n: int) -> dict[str, Any]:
        """Return the text."""
        nonlocal made
        made += 1
        return {"text": text, "n": n}

    agent = Agent(name="echo", instructions="Echo things.", model=_scripted_model(n), tools=[echo])
    Runner.run_sync(agent, "echo things", max_turns=n + 5)  # default: 10 turns
    return made


def last_bytes() -> int:
    """The instructions and the input items (Responses-API dicts) as JSON."""
    return len(json.dumps(_last, default=str).encode())
