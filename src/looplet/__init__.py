"""looplet: the tool-calling loop for LLM agents, as an ordinary Python iterator.

    for step in composable_loop(llm=llm, tools=tools, task=task):
        print(step.pretty())

The names a first agent needs are here; the rest live in their submodules
(`looplet.hooks`, `looplet.tools`, `looplet.backends`). The SDK backends are
imported on first use, so ``import looplet`` pulls in no third-party package.
"""

from __future__ import annotations

from typing import Any

from .backends.mock import AsyncFunctionBackend, FunctionBackend, MockLLMBackend
from .backends.protocol import AsyncLLMBackend, LLMBackend, LLMRequest, LLMResponse, TextLLM
from .config import LoopConfig
from .errors import (
    ConfigError,
    HookError,
    LLMError,
    LoopError,
    ParseError,
    ScriptExhaustedError,
    ToolDefinitionError,
)
from .history import History, Message
from .hooks.decisions import Allow, Block, Continue, Deny, InjectContext, Stop
from .hooks.protocols import LoopHook
from .loop import AsyncLoop, Loop, arun_loop, async_composable_loop, composable_loop, run_loop
from .prompt import PromptContext
from .redaction import register_secret
from .state import DefaultState
from .tools.builtins import register_done_tool, register_think_tool
from .tools.context import CancelToken, ToolContext
from .tools.registry import BaseToolRegistry, ToolSpec, tool
from .types import ErrorCategory, ErrorKind, RunResult, Step, StopReason, ToolCall, ToolResult, Usage

__version__ = "0.1.0"

__all__ = [
    "__version__",
    # the loop
    "composable_loop",
    "async_composable_loop",
    "run_loop",
    "arun_loop",
    "Loop",
    "AsyncLoop",
    "LoopConfig",
    "DefaultState",
    "History",
    "Message",
    "PromptContext",
    "CancelToken",
    # records
    "ToolCall",
    "ToolResult",
    "Step",
    "RunResult",
    "Usage",
    "ErrorKind",
    "ErrorCategory",
    "StopReason",
    "register_secret",
    # hooks
    "LoopHook",
    "Allow",
    "Deny",
    "Block",
    "Stop",
    "InjectContext",
    "Continue",
    # tools
    "BaseToolRegistry",
    "ToolSpec",
    "ToolContext",
    "tool",
    "register_done_tool",
    "register_think_tool",
    # backends
    "LLMBackend",
    "AsyncLLMBackend",
    "TextLLM",
    "LLMRequest",
    "LLMResponse",
    "MockLLMBackend",
    "FunctionBackend",
    "AsyncFunctionBackend",
    "OpenAIBackend",
    "AsyncOpenAIBackend",
    "AnthropicBackend",
    "AsyncAnthropicBackend",
    # errors
    "LoopError",
    "ConfigError",
    "ParseError",
    "LLMError",
    "ScriptExhaustedError",
    "HookError",
    "ToolDefinitionError",
]

_SDK_BACKENDS = frozenset(
    {"OpenAIBackend", "AsyncOpenAIBackend", "AnthropicBackend", "AsyncAnthropicBackend"}
)


def __getattr__(name: str) -> Any:
    """Load the SDK backends only when they are first named (see `looplet.backends`)."""
    if name not in _SDK_BACKENDS:
        raise AttributeError(f"module 'looplet' has no attribute {name!r}")
    from . import backends

    value = getattr(backends, name)
    globals()[name] = value
    return value
