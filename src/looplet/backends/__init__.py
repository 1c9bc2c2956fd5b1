"""Backends: the protocol, the JSON-in-text adapter, the test doubles, and the SDK backends.

The SDK backends (`OpenAIBackend`, `AnthropicBackend` and their async twins)
are loaded on first use, so importing looplet never imports an SDK.
"""

from __future__ import annotations

from typing import Any

from .mock import AsyncFunctionBackend, FunctionBackend, MockLLMBackend
from .protocol import AsyncLLMBackend, LLMBackend, LLMRequest, LLMResponse, TextLLM
from .text import AsyncTextBackend, TextBackend, parse_tool_calls

__all__ = [
    "AsyncFunctionBackend",
    "AsyncLLMBackend",
    "AsyncTextBackend",
    "FunctionBackend",
    "LLMBackend",
    "LLMRequest",
    "LLMResponse",
    "MockLLMBackend",
    "TextBackend",
    "TextLLM",
    "parse_tool_calls",
]

_LAZY = {
    "OpenAIBackend": "openai",
    "AsyncOpenAIBackend": "openai",
    "AnthropicBackend": "anthropic",
    "AsyncAnthropicBackend": "anthropic",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'looplet.backends' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)
