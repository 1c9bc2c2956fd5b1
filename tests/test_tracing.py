"""TracingHook's in-memory spans: one per run, model call and tool run, nested right in both loops."""

from __future__ import annotations

import subprocess
import sys

import pytest
from doubles import Driver, fan_out_tools

from looplet import (
    BaseToolRegistry,
    ConfigError,
    LLMError,
    LLMResponse,
    MockLLMBackend,
    ToolCall,
    Usage,
    composable_loop,
)
from looplet.tracing import SpanRecord, TracingHook

WIDTH = 3


def _tools(hook_for_sub: list[TracingHook] | None = None) -> BaseToolRegistry:
    tools = fan_out_tools(WIDTH, hook_for_sub or [])

    @tools.tool
    def fail(why: str) -> str:
        """Always fails."""
        raise RuntimeError(why)

    return tools


def _by_name(spans: list[SpanRecord], name: str) -> list[SpanRecord]:
    return [s for s in spans if s.name == name]


def test_run_model_calls_and_tools_are_children_of_the_run_span(drive: Driver) -> None:
    hook = TracingHook(agent_name="helper", provider="openai", model="gpt-test")
    script = [
        LLMResponse(
            tool_calls=[ToolCall("fetch", {"n": i}, call_id=f"c{i}") for i in range(WIDTH)],
            usage=Usage(120, 8, 100),
            model="gpt-test-2025",
            request_id="req_1",
            stop_reason="tool_calls",
        ),
        ToolCall("done", {"answer": "ok"}, call_id="d"),
    ]
    steps, result = drive(MockLLMBackend(script), tools=_tools(), hooks=[hook])
    assert result.stop_reason == "done"
    spans = hook.spans
    (run,) = _by_name(spans, "invoke_agent helper")
    chats = _by_name(spans, "chat gpt-test")
    fetches = _by_name(spans, "execute_tool fetch")
    assert len(chats) == 2 and len(fetches) == WIDTH
    assert run.parent_id is None and run.kind == "internal"
    assert all(s.parent_id == run.span_id for s in chats + fetches + _by_name(spans, "execute_tool done"))
    assert {s.attributes["gen_ai.tool.call.id"] for s in fetches} == {f"c{i}" for i in range(WIDTH)}
    assert run.attributes["gen_ai.conversation.id"] == drive.loop.state.run_id  # type: ignore[union-attr]
    assert run.attributes["looplet.stop_reason"] == "done"
    first = chats[0].attributes
    assert chats[0].kind == "client"
    assert first["gen_ai.usage.input_tokens"] == 120
    assert first["gen_ai.usage.cache_read.input_tokens"] == 100
    assert first["gen_ai.response.model"] == "gpt-test-2025"
    assert first["gen_ai.response.id"] == "req_1"
    assert first["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert all(s.end is not None and s.status != "error" for s in spans)


def test_a_sub_agent_run_is_a_child_of_the_tool_span_that_started_it(drive: Driver) -> None:
    hook = TracingHook()
    script = [ToolCall("delegate", {"task": "inner job"}, call_id="c1"), ToolCall("done", {"answer": "ok"})]
    drive(MockLLMBackend(script), tools=_tools([hook]), hooks=[hook])
    spans = hook.spans
    outer, inner = _by_name(spans, "invoke_agent")
    (delegate,) = _by_name(spans, "execute_tool delegate")
    assert outer.parent_id is None
    assert delegate.parent_id == outer.span_id
    assert inner.parent_id == delegate.span_id
    inner_children = [s for s in spans if s.parent_id == inner.span_id]
    assert [s.name for s in inner_children] == ["chat", "execute_tool done"]
    assert inner.attributes["gen_ai.conversation.id"] != outer.attributes["gen_ai.conversation.id"]
    assert hook.tree().splitlines()[3].startswith("    invoke_agent")


def test_a_sub_agent_traced_by_another_hook_still_nests_under_the_tool(drive: Driver) -> None:
    outer_hook, inner_hook = TracingHook(), TracingHook()
    script = [ToolCall("delegate", {"task": "x"}, call_id="c1"), ToolCall("done", {"answer": "ok"})]
    drive(MockLLMBackend(script), tools=_tools([inner_hook]), hooks=[outer_hook])
    (delegate,) = _by_name(outer_hook.spans, "execute_tool delegate")
    (inner_run,) = _by_name(inner_hook.spans, "invoke_agent")
    assert inner_run.parent_id == delegate.span_id


def test_a_failing_tool_span_carries_the_error_kind(drive: Driver) -> None:
    hook = TracingHook()
    script = [ToolCall("fail", {"why": "disk on fire"}, call_id="c1"), ToolCall("done", {"answer": "ok"})]
    drive(MockLLMBackend(script), tools=_tools(), hooks=[hook])
    (span,) = _by_name(hook.spans, "execute_tool fail")
    assert span.status == "error"
    assert span.attributes["error.type"] == "execution"
    assert "disk on fire" not in repr(span.to_dict())  # the message is content: not without opt-in


def test_a_call_that_never_ran_still_gets_a_span(drive: Driver) -> None:
    hook = TracingHook()
    script = [ToolCall("fetch", {"n": "not a number"}, call_id="c1"), ToolCall("done", {"answer": "ok"})]
    drive(MockLLMBackend(script), tools=_tools(), hooks=[hook])
    (span,) = _by_name(hook.spans, "execute_tool fetch")
    assert span.attributes["looplet.tool.ran"] is False
    assert span.attributes["error.type"] == "validation"


def test_a_failed_model_call_marks_the_chat_and_the_run(drive: Driver) -> None:
    hook = TracingHook()
    _, result = drive(
        MockLLMBackend([LLMError("slow down", kind="rate_limit")]), tools=_tools(), hooks=[hook]
    )
    assert result.stop_reason == "llm_error"
    (chat,) = _by_name(hook.spans, "chat")
    (run,) = _by_name(hook.spans, "invoke_agent")
    assert chat.error == "rate_limit" and chat.status == "error"
    assert run.error == "rate_limit" and run.attributes["looplet.stop_reason"] == "llm_error"


def test_content_is_recorded_only_on_request_and_then_redacted(drive: Driver) -> None:
    secret = "sk-proj-" + "Q" * 40
    script = [
        LLMResponse(text="using the key", tool_calls=[ToolCall("fail", {"why": secret}, call_id="c1")]),
        ToolCall("done", {"answer": "ok"}),
    ]
    quiet, loud = TracingHook(), TracingHook(capture_content=True)
    drive(MockLLMBackend(list(script)), tools=_tools(), hooks=[quiet], task=f"use {secret}")
    drive(MockLLMBackend(list(script)), tools=_tools(), hooks=[loud], task=f"use {secret}")
    quiet_text = repr([s.to_dict() for s in quiet.spans])
    loud_text = repr([s.to_dict() for s in loud.spans])
    assert "gen_ai.input.messages" not in quiet_text and "using the key" not in quiet_text
    (tool,) = _by_name(loud.spans, "execute_tool fail")
    assert "[REDACTED]" in tool.attributes["gen_ai.tool.call.arguments"]
    assert "RuntimeError" in tool.attributes["gen_ai.tool.call.result"]
    chat = _by_name(loud.spans, "chat")[0]
    assert "using the key" in chat.attributes["gen_ai.output.messages"]
    assert "[REDACTED]" in chat.attributes["gen_ai.input.messages"]
    assert secret not in quiet_text and secret not in loud_text


def test_long_content_is_cut_with_a_marker(drive: Driver) -> None:
    hook = TracingHook(capture_content=True)
    script = [ToolCall("fail", {"why": "x" * 50_000}, call_id="c1"), ToolCall("done", {"answer": "ok"})]
    drive(MockLLMBackend(script), tools=_tools(), hooks=[hook])
    (tool,) = _by_name(hook.spans, "execute_tool fail")
    args = tool.attributes["gen_ai.tool.call.arguments"]
    assert len(args) < 33_000 and args.endswith("chars]") and "…[cut " in args


def test_the_provider_and_model_come_from_the_backend() -> None:
    class Backend(MockLLMBackend):
        provider_name = "Anthropic"
        model = "claude-test"

    hook = TracingHook(llm=Backend([]))
    assert (hook.provider, hook.model) == ("anthropic", "claude-test")
    later = TracingHook()
    tools = _tools()
    composable_loop(Backend([ToolCall("done", {"answer": "a"})]), tools=tools, task="t", hooks=[later]).run()
    composable_loop(Backend([ToolCall("done", {"answer": "a"})]), tools=tools, task="t", hooks=[later]).run()
    chats = _by_name(later.spans, "chat claude-test")
    assert len(chats) == 1 and chats[0].attributes["gen_ai.provider.name"] == "anthropic"


def test_tree_shows_one_line_per_span_indented_by_depth() -> None:
    hook = TracingHook(agent_name="a")
    script = [LLMResponse(tool_calls=[ToolCall("done", {"answer": "x"}, call_id="d1")], usage=Usage(5, 2))]
    composable_loop(MockLLMBackend(script), tools=_tools(), task="t", hooks=[hook]).run()
    lines = hook.tree().splitlines()
    assert [line.split(" [")[0] for line in lines] == ["invoke_agent a", "  chat", "  execute_tool done"]
    assert "in=5 out=2" in lines[1] and "stop=done" in lines[0] and "id=d1" in lines[2]
    hook.clear()
    assert hook.spans == []


def test_breaking_out_of_the_loop_ends_the_run_span() -> None:
    hook = TracingHook()
    script = [
        ToolCall("fail", {"why": "a"}),
        ToolCall("fail", {"why": "b"}),
        ToolCall("done", {"answer": "x"}),
    ]
    loop = composable_loop(MockLLMBackend(script), tools=_tools(), task="t", hooks=[hook])
    for _ in loop:
        break
    loop.close()
    (run,) = _by_name(hook.spans, "invoke_agent")
    assert run.end is not None and run.attributes["looplet.stop_reason"] == "cancelled"


def test_otel_must_name_a_tracer_or_provider() -> None:
    with pytest.raises(ConfigError, match="Tracer or TracerProvider"):
        TracingHook(otel="yes please")


def test_import_looplet_does_not_import_opentelemetry_or_rich() -> None:
    code = (
        "import sys, looplet, looplet.tracing, looplet.metrics, looplet.events\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('opentelemetry', 'rich')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_without_opentelemetry_otel_true_names_the_extra_to_install() -> None:
    code = (
        "import sys\nsys.modules['opentelemetry'] = None\n"
        "from looplet.tracing import TracingHook\n"
        "try:\n    TracingHook(otel=True)\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("ConfigError") and 'pip install "looplet[otel]"' in out.stdout


def _ping_and_done(tag: str) -> MockLLMBackend:
    first = ToolCall("fail", {"why": tag}, call_id=f"{tag}1")
    return MockLLMBackend([first, ToolCall("done", {"answer": tag}, call_id=f"{tag}2")])


def _assert_each_run_owns_its_spans(hook: TracingHook, runs: dict[str, str]) -> None:
    """Every chat and tool span hangs under the run span of the run that made it."""
    spans = hook.spans
    run_span = {s.attributes["gen_ai.conversation.id"]: s.span_id for s in _by_name(spans, "invoke_agent")}
    owned = 0
    for span in spans:
        call_id = span.attributes.get("gen_ai.tool.call.id")
        if call_id is None:
            continue
        run_id = runs[call_id[0]]
        assert span.parent_id == run_span[run_id], (span.name, call_id)
        assert span.attributes["gen_ai.conversation.id"] == run_id
        owned += 1
    assert owned == 4
    chats = _by_name(spans, "chat")
    assert sorted(c.parent_id for c in chats) == sorted([run_span[r] for r in runs.values()] * 2)


def test_two_runs_stepped_in_turn_in_one_thread_keep_their_own_spans() -> None:
    hook = TracingHook()
    a = composable_loop(_ping_and_done("a"), tools=_tools(), task="A", hooks=[hook])
    b = composable_loop(_ping_and_done("b"), tools=_tools(), task="B", hooks=[hook])
    for loop in (a, b, a, b):
        next(loop)
    a.close()
    b.close()
    _assert_each_run_owns_its_spans(hook, {"a": a.state.run_id, "b": b.state.run_id})


def test_two_async_runs_stepped_in_turn_in_one_task_keep_their_own_spans() -> None:
    import asyncio

    from looplet import async_composable_loop

    hook = TracingHook()

    async def main() -> dict[str, str]:
        a = async_composable_loop(_ping_and_done("a"), tools=_tools(), task="A", hooks=[hook])
        b = async_composable_loop(_ping_and_done("b"), tools=_tools(), task="B", hooks=[hook])
        for loop in (a, b, a, b):
            await loop.__anext__()
        await a.aclose()
        await b.aclose()
        return {"a": a.state.run_id, "b": b.state.run_id}

    _assert_each_run_owns_its_spans(hook, asyncio.run(main()))
