"""looplet: the tool-calling loop for LLM agents, as an ordinary Python iterator.

    for step in composable_loop(llm=llm, tools=tools, task=task):
        print(step.pretty())

The names a first agent needs are here; the rest live in their submodules
(`looplet.hooks`, `looplet.tools`, `looplet.backends`). The SDK backends are
imported on first use, so ``import looplet`` pulls in no third-party package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and IDEs; at run time each name loads on first use
    from .approval import ApprovalHook
    from .backends.mock import AsyncFunctionBackend, FunctionBackend, MockLLMBackend
    from .backends.protocol import AsyncLLMBackend, LLMBackend, LLMRequest, LLMResponse, TextLLM
    from .caching import CachePolicy
    from .cartridges import CartridgeRuntime, open_cartridge
    from .checkpoints import CheckpointHook, FileCheckpointStore, MemoryRunStore, RunStore, load_run
    from .config import LoopConfig
    from .context import (
        ContextBudget,
        ContextPressureHook,
        PruneToolResults,
        SummarizeCompact,
        ThresholdCompactHook,
        TruncateCompact,
        compact_chain,
    )
    from .errors import (
        CheckpointError,
        CheckpointLocked,
        ConfigError,
        DecisionError,
        HookError,
        LLMError,
        LoopError,
        ParseError,
        ScriptExhaustedError,
        ToolDefinitionError,
    )
    from .evals import EvalCase, EvalContext, EvalHook, EvalResult
    from .events import EventHook, LiveDisplay
    from .guards import BudgetWarningHook, PerToolLimitHook, StagnationHook
    from .history import History, Message
    from .hooks.decisions import Allow, Ask, Block, Continue, Deny, InjectContext, Stop
    from .hooks.protocols import LoopHook
    from .loop import AsyncLoop, Loop, arun_loop, async_composable_loop, composable_loop, run_loop
    from .mcp_tools import MCPServer, MCPTools
    from .memory import MemoryHook
    from .metrics import MetricsHook
    from .permissions import PermissionDecision, PermissionEngine, PermissionHook
    from .presets import AgentPreset
    from .prompt import PromptContext
    from .provenance import ProvenanceSink, RecordedRun, read_run
    from .redaction import register_secret
    from .replay import async_replay_loop, replay_loop
    from .skills import SkillHook, SkillStore, TrustList, UntrustedSkillError
    from .state import DefaultState
    from .subagents import run_sub_loop, subagent_tool
    from .tools.builtins import register_done_tool, register_think_tool
    from .tools.context import CancelToken, ToolContext
    from .tools.registry import BaseToolRegistry, ToolSpec, tool
    from .tracing import TracingHook
    from .types import (
        ErrorCategory,
        ErrorKind,
        PendingCall,
        RunResult,
        Step,
        StopReason,
        ToolCall,
        ToolResult,
        Usage,
    )

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
    "PendingCall",
    "register_secret",
    # durable runs
    "RunStore",
    "MemoryRunStore",
    "FileCheckpointStore",
    "CheckpointHook",
    "load_run",
    # control
    "ApprovalHook",
    "StagnationHook",
    "PerToolLimitHook",
    "BudgetWarningHook",
    "PermissionEngine",
    "PermissionHook",
    "PermissionDecision",
    "compact_chain",
    "PruneToolResults",
    "SummarizeCompact",
    "TruncateCompact",
    "ContextBudget",
    "ThresholdCompactHook",
    "ContextPressureHook",
    # observability and evals
    "ProvenanceSink",
    "RecordedRun",
    "read_run",
    "replay_loop",
    "async_replay_loop",
    "TracingHook",
    "MetricsHook",
    "EventHook",
    "LiveDisplay",
    "EvalHook",
    "EvalContext",
    "EvalResult",
    "EvalCase",
    # presets, skills and cartridges
    "AgentPreset",
    "SkillStore",
    "SkillHook",
    "TrustList",
    "UntrustedSkillError",
    "CartridgeRuntime",
    "open_cartridge",
    # integrations
    "MCPServer",
    "MCPTools",
    "subagent_tool",
    "run_sub_loop",
    "MemoryHook",
    "CachePolicy",
    # hooks
    "LoopHook",
    "Allow",
    "Deny",
    "Ask",
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
    "DecisionError",
    "CheckpointError",
    "CheckpointLocked",
]

#: where each public name lives; ``import looplet`` loads none of them until named.
_WHERE = {
    "AsyncFunctionBackend": ".backends.mock",
    "FunctionBackend": ".backends.mock",
    "MockLLMBackend": ".backends.mock",
    "AsyncLLMBackend": ".backends.protocol",
    "LLMBackend": ".backends.protocol",
    "LLMRequest": ".backends.protocol",
    "LLMResponse": ".backends.protocol",
    "TextLLM": ".backends.protocol",
    "LoopConfig": ".config",
    "ApprovalHook": ".approval",
    "StagnationHook": ".guards",
    "PerToolLimitHook": ".guards",
    "BudgetWarningHook": ".guards",
    "PermissionEngine": ".permissions",
    "compact_chain": ".context",
    "PruneToolResults": ".context",
    "SummarizeCompact": ".context",
    "TruncateCompact": ".context",
    "ContextBudget": ".context",
    "ThresholdCompactHook": ".context",
    "ContextPressureHook": ".context",
    "PermissionHook": ".permissions",
    "PermissionDecision": ".permissions",
    "CheckpointHook": ".checkpoints",
    "FileCheckpointStore": ".checkpoints",
    "MemoryRunStore": ".checkpoints",
    "RunStore": ".checkpoints",
    "load_run": ".checkpoints",
    "ProvenanceSink": ".provenance",
    "RecordedRun": ".provenance",
    "read_run": ".provenance",
    "replay_loop": ".replay",
    "async_replay_loop": ".replay",
    "TracingHook": ".tracing",
    "MetricsHook": ".metrics",
    "EventHook": ".events",
    "LiveDisplay": ".events",
    "EvalHook": ".evals",
    "EvalContext": ".evals",
    "EvalResult": ".evals",
    "EvalCase": ".evals",
    "AgentPreset": ".presets",
    "SkillStore": ".skills",
    "SkillHook": ".skills",
    "TrustList": ".skills",
    "UntrustedSkillError": ".skills",
    "CartridgeRuntime": ".cartridges",
    "open_cartridge": ".cartridges",
    "MCPServer": ".mcp_tools",
    "MCPTools": ".mcp_tools",
    "subagent_tool": ".subagents",
    "run_sub_loop": ".subagents",
    "MemoryHook": ".memory",
    "CachePolicy": ".caching",
    "CheckpointError": ".errors",
    "CheckpointLocked": ".errors",
    "DecisionError": ".errors",
    "ConfigError": ".errors",
    "HookError": ".errors",
    "LLMError": ".errors",
    "LoopError": ".errors",
    "ParseError": ".errors",
    "ScriptExhaustedError": ".errors",
    "ToolDefinitionError": ".errors",
    "History": ".history",
    "Message": ".history",
    "Allow": ".hooks.decisions",
    "Ask": ".hooks.decisions",
    "Block": ".hooks.decisions",
    "Continue": ".hooks.decisions",
    "Deny": ".hooks.decisions",
    "InjectContext": ".hooks.decisions",
    "Stop": ".hooks.decisions",
    "LoopHook": ".hooks.protocols",
    "AsyncLoop": ".loop",
    "Loop": ".loop",
    "arun_loop": ".loop",
    "async_composable_loop": ".loop",
    "composable_loop": ".loop",
    "run_loop": ".loop",
    "PromptContext": ".prompt",
    "register_secret": ".redaction",
    "DefaultState": ".state",
    "register_done_tool": ".tools.builtins",
    "register_think_tool": ".tools.builtins",
    "CancelToken": ".tools.context",
    "ToolContext": ".tools.context",
    "BaseToolRegistry": ".tools.registry",
    "ToolSpec": ".tools.registry",
    "tool": ".tools.registry",
    "ErrorCategory": ".types",
    "ErrorKind": ".types",
    "PendingCall": ".types",
    "RunResult": ".types",
    "Step": ".types",
    "StopReason": ".types",
    "ToolCall": ".types",
    "ToolResult": ".types",
    "Usage": ".types",
}

_SDK_BACKENDS = frozenset(
    {"OpenAIBackend", "AsyncOpenAIBackend", "AnthropicBackend", "AsyncAnthropicBackend"}
)


def __getattr__(name: str) -> Any:
    """Load a public name on first use (PEP 562), so ``import looplet`` stays cheap.

    The SDK backends come from `looplet.backends`, which imports an SDK only
    when one of them is constructed.
    """
    import importlib

    if name in _SDK_BACKENDS:
        value = getattr(importlib.import_module(".backends", __name__), name)
    elif name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    else:
        raise AttributeError(f"module 'looplet' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
