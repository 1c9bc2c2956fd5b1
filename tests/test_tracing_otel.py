"""TracingHook through OpenTelemetry: GenAI span names, kinds, attributes and parents, read back from
the SDK's in-memory exporter (the SDK is a test dependency only)."""

from __future__ import annotations

import pytest
from doubles import Driver, fan_out_tools

from looplet import (
    BaseToolRegistry,
    LLMError,
    LLMResponse,
    MockLLMBackend,
    ToolCall,
    Usage,
    composable_loop,
)
from looplet.tracing import TracingHook

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

WIDTH = 4
SECRET = "sk-ant-" + "Z" * 40


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def _tools(sub_hook: TracingHook | None = None) -> BaseToolRegistry:
    tools = fan_out_tools(WIDTH, [sub_hook] if sub_hook else [])

    @tools.tool
    def explode(token: str) -> str:
        """Fails, quoting its argument."""
        raise ValueError(f"bad token {token}")

    return tools


def _named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def _parent(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def _id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def test_spans_follow_the_genai_conventions(
    drive: Driver, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    hook = TracingHook(otel=provider, agent_name="shop", provider="openai", model="gpt-4o")
    script = [
        LLMResponse(
            tool_calls=[ToolCall("fetch", {"n": i}, call_id=f"call_{i}") for i in range(WIDTH)],
            usage=Usage(200, 20, 150),
            model="gpt-4o-2024-08-06",
            request_id="req_abc",
            stop_reason="tool_calls",
        ),
        ToolCall("done", {"answer": "ok"}, call_id="call_d"),
    ]
    drive(MockLLMBackend(script), tools=_tools(), hooks=[hook])
    spans = exporter.get_finished_spans()
    (run,) = _named(spans, "invoke_agent shop")
    chats = _named(spans, "chat gpt-4o")
    tools = _named(spans, "execute_tool fetch")
    assert run.kind == SpanKind.INTERNAL and _parent(run) is None
    assert [c.kind for c in chats] == [SpanKind.CLIENT, SpanKind.CLIENT]
    assert all(t.kind == SpanKind.INTERNAL for t in tools) and len(tools) == WIDTH
    run_id = drive.loop.state.run_id  # type: ignore[union-attr]
    assert run.attributes is not None
    assert run.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert run.attributes["gen_ai.agent.name"] == "shop"
    assert run.attributes["gen_ai.conversation.id"] == run_id
    chat = dict(chats[0].attributes or {})
    assert chat == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.conversation.id": run_id,
        "looplet.step": 1,
        "gen_ai.usage.input_tokens": 200,
        "gen_ai.usage.output_tokens": 20,
        "gen_ai.usage.cache_read.input_tokens": 150,
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.response.id": "req_abc",
        "gen_ai.response.finish_reasons": ("tool_calls",),
    }
    tool = dict(tools[0].attributes or {})
    assert tool["gen_ai.operation.name"] == "execute_tool"
    assert tool["gen_ai.tool.name"] == "fetch"
    assert {dict(t.attributes or {})["gen_ai.tool.call.id"] for t in tools} == {
        f"call_{i}" for i in range(WIDTH)
    }
    assert all(s.status.status_code == StatusCode.UNSET for s in spans)


def test_concurrent_tools_are_all_children_of_their_run(
    drive: Driver, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    hook = TracingHook(otel=provider)
    batch = [ToolCall("fetch", {"n": i}, call_id=f"c{i}") for i in range(WIDTH)]
    drive(
        MockLLMBackend([batch, list(batch), ToolCall("done", {"answer": "ok"})]), tools=_tools(), hooks=[hook]
    )
    spans = exporter.get_finished_spans()
    (run,) = _named(spans, "invoke_agent")
    fetches = _named(spans, "execute_tool fetch")
    assert len(fetches) == 2 * WIDTH
    assert {_parent(s) for s in fetches} == {_id(run)}
    assert len({s.context.trace_id for s in spans if s.context}) == 1


def test_sub_agent_spans_are_children_of_the_tool_that_ran_it(
    drive: Driver, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    hook = TracingHook(otel=provider, agent_name="boss")
    sub = TracingHook(otel=provider, agent_name="worker")
    script = [ToolCall("delegate", {"task": "dig"}, call_id="c1"), ToolCall("done", {"answer": "ok"})]
    drive(MockLLMBackend(script), tools=_tools(sub), hooks=[hook])
    spans = exporter.get_finished_spans()
    (boss,) = _named(spans, "invoke_agent boss")
    (worker,) = _named(spans, "invoke_agent worker")
    (delegate,) = _named(spans, "execute_tool delegate")
    assert _parent(delegate) == _id(boss)
    assert _parent(worker) == _id(delegate)
    worker_children = [s for s in spans if _parent(s) == _id(worker)]
    assert sorted(s.name for s in worker_children) == ["chat", "execute_tool done"]


def test_errors_set_error_type_and_status(
    drive: Driver, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    hook = TracingHook(otel=provider)
    script = [ToolCall("explode", {"token": "t"}, call_id="c1"), LLMError("quota gone", kind="quota")]
    _, result = drive(MockLLMBackend(script), tools=_tools(), hooks=[hook])
    assert result.stop_reason == "llm_error"
    spans = exporter.get_finished_spans()
    (tool,) = _named(spans, "execute_tool explode")
    chats = _named(spans, "chat")
    (run,) = _named(spans, "invoke_agent")
    assert tool.status.status_code == StatusCode.ERROR
    assert dict(tool.attributes or {})["error.type"] == "execution"
    assert chats[-1].status.status_code == StatusCode.ERROR
    assert dict(chats[-1].attributes or {})["error.type"] == "quota"
    assert run.status.status_code == StatusCode.ERROR
    assert dict(run.attributes or {})["error.type"] == "quota"


def test_secrets_never_reach_span_attributes_or_events(
    drive: Driver, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    hook = TracingHook(otel=provider, capture_content=True)
    script = [
        LLMResponse(text=f"key {SECRET}", tool_calls=[ToolCall("explode", {"token": SECRET}, call_id="c1")]),
        ToolCall("done", {"answer": f"done with {SECRET}"}),
    ]
    drive(MockLLMBackend(script), tools=_tools(), hooks=[hook], task=f"use {SECRET}")
    spans = exporter.get_finished_spans()
    dumped = "".join(s.to_json() for s in spans)
    assert SECRET not in dumped
    assert "[REDACTED]" in dumped
    (tool,) = _named(spans, "execute_tool explode")
    assert "gen_ai.tool.call.arguments" in (tool.attributes or {})
    assert any("gen_ai.input.messages" in (s.attributes or {}) for s in spans)


def test_without_capture_content_no_content_attributes(
    drive: Driver, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    hook = TracingHook(otel=provider)
    script = [LLMResponse(text="thinking aloud", tool_calls=[ToolCall("explode", {"token": "tok"})])]
    drive(MockLLMBackend([*script, ToolCall("done", {"answer": "x"})]), tools=_tools(), hooks=[hook])
    dumped = "".join(s.to_json() for s in exporter.get_finished_spans())
    for word in ("thinking aloud", "bad token", "gen_ai.input.messages", "gen_ai.tool.call.arguments"):
        assert word not in dumped


def test_the_run_span_nests_under_the_callers_current_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracer = provider.get_tracer("app")
    hook = TracingHook(otel=tracer)
    with tracer.start_as_current_span("request") as outer:
        composable_loop(
            MockLLMBackend([ToolCall("done", {"answer": "x"})]), tools=_tools(), task="t", hooks=[hook]
        ).run()
    (run,) = _named(exporter.get_finished_spans(), "invoke_agent")
    assert _parent(run) == outer.get_span_context().span_id
