"""The top-level surface: `looplet.__all__` is pinned, and `import looplet` stays light."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import looplet

EXPECTED = {
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
    # durable runs (issue 7's public contract: Ask, PendingCall, state.approve/reject/pending,
    # state.to_dict, DefaultState.from_dict; and the stores)
    "RunStore",
    "MemoryRunStore",
    "FileCheckpointStore",
    "CheckpointHook",
    "load_run",
    # control (issue 8)
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
    # observability and evals (issue 9)
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
    # presets, skills and cartridges (issue 10)
    "AgentPreset",
    "SkillStore",
    "SkillHook",
    "TrustList",
    "UntrustedSkillError",
    "CartridgeRuntime",
    "open_cartridge",
    # integrations (issue 11)
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
}


def test_the_durable_run_contract_is_reachable_from_looplet() -> None:
    state = looplet.DefaultState(task="t")
    for method in ("approve", "reject", "to_dict", "fork"):
        assert callable(getattr(state, method))
    assert state.pending == [] and callable(looplet.DefaultState.from_dict)
    assert looplet.Ask("why").reason == "why"

#: SDK backends, loaded lazily from these modules (which another change adds).
SDK_BACKENDS = {
    "OpenAIBackend": "looplet.backends.openai",
    "AsyncOpenAIBackend": "looplet.backends.openai",
    "AnthropicBackend": "looplet.backends.anthropic",
    "AsyncAnthropicBackend": "looplet.backends.anthropic",
}


def test_all_is_pinned() -> None:
    assert set(looplet.__all__) == EXPECTED
    assert len(looplet.__all__) == len(set(looplet.__all__)), "duplicates in __all__"


def test_every_exported_name_resolves() -> None:
    for name in looplet.__all__:
        module = SDK_BACKENDS.get(name)
        if module is not None and importlib.util.find_spec(module) is None:
            continue  # that backend's module is not written yet
        assert getattr(looplet, name) is not None, name


def test_unknown_attribute_raises_attribute_error() -> None:
    try:
        looplet.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_register_done_tool_is_importable_from_both_places() -> None:
    from looplet.tools import register_done_tool

    assert register_done_tool is looplet.register_done_tool


def test_version_is_a_string() -> None:
    assert isinstance(looplet.__version__, str) and looplet.__version__


def test_import_looplet_pulls_in_no_sdk_and_no_asyncio() -> None:
    code = (
        "import sys, looplet\n"
        "bad = [m for m in ('openai', 'anthropic', 'asyncio') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported at startup: {out.stdout.strip()}"
