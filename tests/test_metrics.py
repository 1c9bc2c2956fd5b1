"""MetricsHook: steps, errors by kind, latencies, real token usage (cached counted) and cost."""

from __future__ import annotations

from typing import Any

import pytest
from doubles import Driver

from looplet import (
    BaseToolRegistry,
    LLMError,
    LLMResponse,
    MockLLMBackend,
    ToolCall,
    Usage,
    composable_loop,
    register_done_tool,
)
from looplet.backends.pricing import ModelPrice
from looplet.metrics import MetricsHook, MetricsReport, percentile


def _tools() -> BaseToolRegistry:
    tools = BaseToolRegistry()

    @tools.tool
    def search(q: str) -> list[str]:
        """Search."""
        return [q]

    @tools.tool
    def broken() -> None:
        """Fails."""
        raise OSError("gone")

    register_done_tool(tools)
    return tools


def _reply(*calls: ToolCall, usage: Usage, model: str = "m-large") -> LLMResponse:
    return LLMResponse(tool_calls=list(calls), usage=usage, model=model)


SCRIPT = [
    _reply(ToolCall("search", {"q": "a"}), ToolCall("broken", {}), usage=Usage(1000, 100, 600)),
    _reply(ToolCall("search", {"q": 5}), ToolCall("search", {"q": "b"}), usage=Usage(2000, 50, 1500)),
    _reply(ToolCall("done", {"answer": "ok"}), usage=Usage(3000, 10, 2500)),
]


def test_report_counts_steps_errors_tools_and_real_tokens(drive: Driver) -> None:
    hook = MetricsHook()
    _, result = drive(MockLLMBackend(list(SCRIPT)), tools=_tools(), hooks=[hook])
    report = hook.report()
    assert result.stop_reason == "done"
    assert report["runs"] == 1 and report["steps"] == 5
    assert report["errors"] == {"execution": 1, "validation": 1}
    assert report["stop_reasons"] == {"done": 1}
    assert report["tools"]["search"]["count"] == 2  # the invalid call never ran
    assert report["tools"]["broken"]["errors"] == 1
    assert report["model"]["calls"] == 3 and report["model"]["failures"] == {}
    assert report["tokens"] == {"input": 6000, "output": 160, "cached": 4600, "total": 6160}
    assert report["cost"] is None
    assert isinstance(report, dict) and isinstance(report, MetricsReport)


def test_cost_uses_the_price_table_with_cached_tokens_at_their_price(drive: Driver) -> None:
    prices = {"m-large": ModelPrice(input=2.0, output=8.0, cached_input=0.5)}
    hook = MetricsHook(prices)
    drive(MockLLMBackend(list(SCRIPT)), tools=_tools(), hooks=[hook])
    expected = ((6000 - 4600) * 2.0 + 4600 * 0.5 + 160 * 8.0) / 1_000_000
    assert hook.report()["cost"] == pytest.approx(expected)


def test_without_a_table_the_cost_is_what_the_backend_priced(drive: Driver) -> None:
    priced = [_reply(ToolCall("done", {"answer": "x"}), usage=Usage(10, 1, 0, cost=0.25))]
    hook = MetricsHook()
    drive(MockLLMBackend(priced), tools=_tools(), hooks=[hook])
    assert hook.cost == pytest.approx(0.25)


def test_a_reply_without_a_model_name_is_priced_as_the_model_named_last(drive: Driver) -> None:
    script = [
        _reply(ToolCall("search", {"q": "a"}), usage=Usage(1_000_000, 0), model="m-large-2025"),
        _reply(ToolCall("done", {"answer": "x"}), usage=Usage(1_000_000, 0), model=""),
    ]
    hook = MetricsHook({"m-large": (3.0, 0.0), "m": (100.0, 0.0)})
    drive(MockLLMBackend(script), tools=_tools(), hooks=[hook])
    assert hook.cost == pytest.approx(6.0)


def test_a_failed_model_call_is_counted_by_kind(drive: Driver) -> None:
    hook = MetricsHook()
    _, result = drive(MockLLMBackend([LLMError("too many", kind="rate_limit")]), tools=_tools(), hooks=[hook])
    report = hook.report()
    assert result.stop_reason == "llm_error"
    assert report["model"]["calls"] == 1 and report["model"]["failures"] == {"rate_limit": 1}
    assert report["stop_reasons"] == {"llm_error": 1}
    assert report["tokens"]["total"] == 0


def test_one_hook_totals_several_runs() -> None:
    hook = MetricsHook()
    for _ in range(3):
        composable_loop(MockLLMBackend(list(SCRIPT)), tools=_tools(), task="t", hooks=[hook]).run()
    report = hook.report()
    assert report["runs"] == 3 and report["steps"] == 15 and report["tokens"]["cached"] == 3 * 4600
    hook.reset()
    assert hook.report()["runs"] == 0 and hook.report()["tools"] == {}


def test_the_report_prints_as_a_readable_summary() -> None:
    hook = MetricsHook({"m-large": (1.0, 2.0)})
    composable_loop(MockLLMBackend(list(SCRIPT)), tools=_tools(), task="t", hooks=[hook]).run()
    text = str(hook.report())
    assert "steps 5" in text and "model calls 3" in text
    assert "6,000 in (4,600 cached) · 160 out · cost" in text
    assert "errors: execution 1, validation 1" in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("tool "))
    assert [line.split()[0] for line in lines[header + 1 :]] == ["broken", "done", "search"]


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 50, 0.0),
        ([7.0], 95, 7.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([float(i) for i in range(1, 101)], 95, 95.0),
    ],
)
def test_percentiles_are_nearest_rank(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == expected


def test_latency_percentiles_order(drive: Driver) -> None:
    hook = MetricsHook()
    drive(MockLLMBackend(list(SCRIPT)), tools=_tools(), hooks=[hook])
    row = hook.report()["tools"]["search"]
    assert 0 <= row["p50_ms"] <= row["p95_ms"] <= row["max_ms"]


# -- OpenTelemetry ----------------------------------------------------------------------


def _points(reader: Any, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    out = []
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    out.extend((metric.unit, p) for p in metric.data.data_points)
    return out


def test_otel_histograms_record_tokens_and_durations(drive: Driver) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    hook = MetricsHook(otel=MeterProvider(metric_readers=[reader]), provider="openai", model="m")
    script = [*SCRIPT[:2], LLMError("down", kind="overloaded")]
    drive(MockLLMBackend(script), tools=_tools(), hooks=[hook])
    tokens = {
        p.attributes["gen_ai.token.type"]: (unit, p)
        for unit, p in _points(reader, "gen_ai.client.token.usage")
    }
    assert set(tokens) == {"input", "output"}
    unit, inputs = tokens["input"]
    assert unit == "{token}" and inputs.count == 2 and inputs.sum == 3000
    assert tokens["output"][1].sum == 150
    assert inputs.attributes["gen_ai.operation.name"] == "chat"
    assert inputs.attributes["gen_ai.provider.name"] == "openai"
    assert inputs.attributes["gen_ai.request.model"] == "m"
    assert inputs.attributes["gen_ai.response.model"] == "m-large"
    durations = _points(reader, "gen_ai.client.operation.duration")
    assert {unit for unit, _ in durations} == {"s"}
    by_error = {p.attributes.get("error.type"): p.count for _, p in durations}
    assert by_error == {None: 2, "overloaded": 1}


def test_runs_sharing_the_hook_never_price_a_nameless_reply_by_each_others_model() -> None:
    hook = MetricsHook({"m-large": (3.0, 0.0), "m-small": (1.0, 0.0)})
    large = MockLLMBackend(
        [
            _reply(ToolCall("search", {"q": "a"}), usage=Usage(1_000_000, 0), model="m-large-2025"),
            _reply(ToolCall("done", {"answer": "x"}), usage=Usage(1_000_000, 0), model=""),
        ]
    )
    small = MockLLMBackend(
        [_reply(ToolCall("search", {"q": "b"}), usage=Usage(1_000_000, 0), model="m-small-1")]
    )
    first = composable_loop(large, tools=_tools(), task="t", hooks=[hook])
    second = composable_loop(small, tools=_tools(), task="t", hooks=[hook], max_steps=1)
    next(first)  # run 1 names m-large
    second.run()  # run 2 names m-small in between
    first.run()  # run 1's nameless reply is still m-large's: 3 + 1 + 3
    assert hook.cost == pytest.approx(7.0)
