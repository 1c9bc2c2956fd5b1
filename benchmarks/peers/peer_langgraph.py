"""LangGraph: the prebuilt ReAct agent (``create_react_agent``) on a tiny custom chat model."""

from __future__ import annotations

import json
import warnings
from typing import Any

IMPORTS = "from langgraph.prebuilt import create_react_agent; from langchain_core.tools import tool"

_last: list[Any] = []


def _scripted_model(n: int) -> Any:
    """A BaseChatModel answering at once: a call of `echo` for calls 1..n, then a text answer."""
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, ChatResult

    class InstantChatModel(BaseChatModel):
        calls: int = 0

        @property
        def _llm_type(self) -> str:
            return "instant-scripted"

        def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
            return self

        def _generate(
            self, messages: list[Any], stop: Any = None, run_manager: Any = None, **kwargs: Any
        ) -> Any:
            self.calls += 1
            if self.calls == n:
                _last[:] = [list(messages)]
            if self.calls > n:
                reply = AIMessage(content="done")
            else:
                call = {
                    "name": "echo",
                    "args": {"text": "hello world", "n": self.calls},
                    "id": f"c{self.calls}",
                }
                reply = AIMessage(content="", tool_calls=[call])
            return ChatResult(generations=[ChatGeneration(message=reply)])

    return InstantChatModel()


def run(n: int) -> int:
    """Make `n` tool steps, then answer in text; return the tool calls made."""
    from langchain_core.tools import tool
    from langgraph.prebuilt import create_react_agent

    made = 0

    @tool
    def echo(text: str, n: int) -> dict[str, Any]:
        """Return the text."""
        nonlocal made
        made += 1
        return {"text": text, "n": n}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # moved to langchain.agents in LangGraph 1.0; still shipped here
        agent = create_react_agent(_scripted_model(n), [echo])
    # two graph steps per tool step (model, tools); the default limit is 25
    agent.invoke({"messages": [("user", "echo things")]}, config={"recursion_limit": 2 * n + 10})
    return made


def last_bytes() -> int:
    """The chat messages, as langchain-core's own messages_to_dict gives them, as JSON."""
    from langchain_core.messages import messages_to_dict

    return len(json.dumps(messages_to_dict(_last[0]), default=str).encode())
