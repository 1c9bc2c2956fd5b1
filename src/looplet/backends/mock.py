"""Test doubles that ship with looplet: a scripted backend and a function-driven one.

Use them in tests and for ``--scripted`` runs: no network, no key, fully
deterministic.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..errors import ScriptExhaustedError
from ..types import ToolCall, Usage
from .protocol import LLMRequest, LLMResponse
from .text import render_prompt

__all__ = ["MockLLMBackend", "FunctionBackend", "AsyncFunctionBackend", "ScriptItem", "to_response"]

#: What a script entry may be: JSON text, a call, several calls, a call as a
#: dict, a full response, or an exception to raise.
ScriptItem = str | ToolCall | Sequence[ToolCall] | dict[str, Any] | LLMResponse | BaseException


def to_response(item: Any) -> LLMResponse:
    """Turn a script entry (or a function backend's return value) into an `LLMResponse`."""
    if isinstance(item, LLMResponse):
        return item
    if isinstance(item, str):
        return LLMResponse(text=item)
    if isinstance(item, ToolCall):
        return LLMResponse(tool_calls=[item])
    if isinstance(item, dict):
        return LLMResponse(text=json.dumps(item))
    if isinstance(item, Sequence) and all(isinstance(c, ToolCall) for c in item):
        return LLMResponse(tool_calls=list(item))
    raise TypeError(
        f"cannot use a {type(item).__name__} as a model response; give a JSON string, "
        "a ToolCall, a list of ToolCalls, a dict or an LLMResponse"
    )


class MockLLMBackend:
    """A backend that answers from a script, in order.

    Args:
        responses: one entry per model call: a JSON string such as
            ``'{"tool": "greet", "args": {"name": "Alice"}}'`` (read as
            JSON-in-text), a `ToolCall` or a list of them (native calls), a
            dict, an `LLMResponse`, or an exception instance to raise.
        usage: token usage to report on every response that has none.

    Attributes:
        calls: every `LLMRequest` received, in order.

    When the script runs out it raises `ScriptExhaustedError` rather than
    starting over, so a test cannot pass by accident.
    """

    def __init__(self, responses: Sequence[ScriptItem], *, usage: Usage | None = None) -> None:
        self.responses = list(responses)
        self.usage = usage
        self.calls: list[LLMRequest] = []

    def complete(self, request: LLMRequest) -> LLMResponse:
        self.calls.append(request)
        n = len(self.calls)
        if n > len(self.responses):
            raise ScriptExhaustedError(
                f"MockLLMBackend was given {len(self.responses)} responses and asked for "
                f"response {n}; add responses to the script or lower max_steps"
            )
        item = self.responses[n - 1]
        if isinstance(item, BaseException):
            raise item
        response = to_response(item)
        if self.usage is not None and response.usage == Usage():
            response.usage = Usage(**self.usage.to_dict())
        return response

    @property
    def last_prompt(self) -> str:
        """The last request rendered as one text prompt ("" before the first call)."""
        return render_prompt(self.calls[-1]) if self.calls else ""

    @property
    def remaining(self) -> int:
        return max(0, len(self.responses) - len(self.calls))

    def __repr__(self) -> str:
        return f"MockLLMBackend({len(self.calls)}/{len(self.responses)} responses used)"


class FunctionBackend:
    """A backend whose answers come from ``fn(request)``.

    `fn` may return anything a `MockLLMBackend` script entry may be, computed
    from the request: e.g. read the last tool result and decide the next call.
    """

    def __init__(self, fn: Callable[[LLMRequest], Any]) -> None:
        self.fn = fn
        self.calls: list[LLMRequest] = []

    def complete(self, request: LLMRequest) -> LLMResponse:
        self.calls.append(request)
        return to_response(self.fn(request))

    @property
    def last_prompt(self) -> str:
        return render_prompt(self.calls[-1]) if self.calls else ""


class AsyncFunctionBackend:
    """`FunctionBackend` for an async function."""

    def __init__(self, fn: Callable[[LLMRequest], Awaitable[Any]]) -> None:
        self.fn = fn
        self.calls: list[LLMRequest] = []

    async def complete(self, request: LLMRequest) -> LLMResponse:
        self.calls.append(request)
        return to_response(await self.fn(request))

    @property
    def last_prompt(self) -> str:
        return render_prompt(self.calls[-1]) if self.calls else ""
