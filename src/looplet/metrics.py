"""`MetricsHook`: how a run went in numbers: steps, errors, latencies, real token counts and cost.

It counts what really happened, from the interceptors and the recorded
steps: every model call's latency and the usage the provider reported
(cached prompt tokens counted, not dropped), every tool run's latency, every
step and its error kind. ``report()`` gives it all as a dict that prints as a
short table. With ``otel=`` it also records the GenAI client histograms
``gen_ai.client.token.usage`` and ``gen_ai.client.operation.duration``.

One hook may watch many runs (sequential, concurrent or nested): its figures
are totals over all of them.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .backends.pricing import PriceTable, cost_of
from .errors import ConfigError
from .tracing import backend_identity, otel_error_type
from .types import Usage

if TYPE_CHECKING:
    from .backends.protocol import LLMRequest
    from .history import History
    from .prompt import PromptContext
    from .state import DefaultState
    from .tools.registry import PreparedCall
    from .types import Step

__all__ = ["MetricsHook", "MetricsReport", "percentile"]

#: The conventions' advised bucket boundaries for the two histograms.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)


def percentile(values: list[float], q: float) -> float:
    """The `q`-th percentile (0-100) of `values` by the nearest-rank method (0.0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _latency(values: list[float]) -> dict[str, Any]:
    return {
        "count": len(values),
        "p50_ms": round(percentile(values, 50), 3),
        "p95_ms": round(percentile(values, 95), 3),
        "max_ms": round(max(values), 3) if values else 0.0,
    }


class MetricsReport(dict[str, Any]):
    """`MetricsHook.report()`: a plain dict (JSON-safe) whose ``str()`` is a readable summary."""

    def __str__(self) -> str:
        tokens = self["tokens"]
        model = self["model"]
        lines = [
            f"runs {self['runs']} · steps {self['steps']} · model calls {model['calls']}"
            + (f" ({sum(model['failures'].values())} failed)" if model["failures"] else ""),
            f"tokens: {tokens['input']:,} in ({tokens['cached']:,} cached) · {tokens['output']:,} out"
            + (f" · cost {self['cost']:.6f}" if self["cost"] is not None else ""),
            f"model latency: p50 {model['p50_ms']:.1f}ms · p95 {model['p95_ms']:.1f}ms"
            f" · max {model['max_ms']:.1f}ms",
        ]
        if self["errors"]:
            lines.append("errors: " + ", ".join(f"{k} {v}" for k, v in sorted(self["errors"].items())))
        if self["stop_reasons"]:
            lines.append("stops: " + ", ".join(f"{k} {v}" for k, v in sorted(self["stop_reasons"].items())))
        if self["tools"]:
            width = max(len(name) for name in self["tools"])
            lines.append(f"{'tool':<{width}}  runs  errors   p50      p95      max")
            for name, row in sorted(self["tools"].items()):
                lines.append(
                    f"{name:<{width}}  {row['count']:>4}  {row['errors']:>6}"
                    f"  {row['p50_ms']:>6.1f}ms {row['p95_ms']:>6.1f}ms {row['max_ms']:>6.1f}ms"
                )
        return "\n".join(lines)


class MetricsHook:
    """Counts steps, errors by kind, tool and model latencies, real token usage and cost.

    Args:
        prices: a price table (see `looplet.backends.pricing`) to cost each
            model call by the model that answered; without one, the cost is
            what the backend put in its usage (an SDK backend built with
            ``prices=``), or None when no call carried a cost.
        otel: None (no OpenTelemetry), True (the global meter provider), or a
            ``Meter`` / ``MeterProvider``: records ``gen_ai.client.token.usage``
            and ``gen_ai.client.operation.duration``.
        llm: the backend, to name its provider and model on those histograms;
            `provider` and `model` win.
    """

    def __init__(
        self,
        prices: PriceTable | None = None,
        *,
        otel: Any = None,
        llm: Any = None,
        provider: str | None = None,
        model: str | None = None,
    ) -> None:
        self.prices = prices
        known_provider, known_model = backend_identity(llm)
        self.provider = provider or known_provider
        self.model = model or known_model
        self._lock = threading.Lock()
        self._instruments = _instruments(otel)
        self.reset()

    def reset(self) -> None:
        """Start counting from zero."""
        with self._lock:
            self.runs = 0
            self.steps = 0
            self.errors: Counter[str] = Counter()
            self.stop_reasons: Counter[str] = Counter()
            self.tool_ms: dict[str, list[float]] = {}
            self.tool_errors: Counter[str] = Counter()
            self.model_ms: list[float] = []
            self.model_failures: Counter[str] = Counter()
            self.usage = Usage()
            self._cost = 0.0
            self._costed = False
            self._last_model: dict[str, str] = {}  # per run: the model that answered last

    # -- hook methods --------------------------------------------------------------------

    def after_step(self, state: DefaultState, log: History, step: Step) -> None:
        kind = step.tool_result.error_kind if step.tool_result.error else None
        with self._lock:
            self.steps += 1
            if kind:
                self.errors[kind] += 1

    def on_loop_end(self, state: DefaultState, log: History, ctx: PromptContext, llm: Any) -> None:
        result = ctx.result
        with self._lock:
            self.runs += 1
            if result is not None:
                self.stop_reasons[result.stop_reason] += 1
        provider, model = backend_identity(getattr(llm, "backend", llm))
        self.provider = self.provider or provider
        self.model = self.model or model

    def around_llm(self, request: LLMRequest, proceed: Callable[[LLMRequest], Any]) -> Any:
        started = time.perf_counter()
        try:
            response = proceed(request)
        except BaseException as exc:
            self._model_call(time.perf_counter() - started, None, otel_error_type(exc), request.run_id)
            raise
        self._model_call(time.perf_counter() - started, response, None, request.run_id)
        return response

    def around_tool(self, call: PreparedCall, proceed: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        failed = True
        try:
            result = proceed()
            failed = bool(getattr(result, "error", None))
            return result
        finally:
            took = (time.perf_counter() - started) * 1000
            name = call.call.tool
            with self._lock:
                self.tool_ms.setdefault(name, []).append(took)
                if failed:
                    self.tool_errors[name] += 1

    # -- counting ------------------------------------------------------------------------

    def _model_call(self, seconds: float, response: Any, error: str | None, run_id: str = "") -> None:
        usage = getattr(response, "usage", None) or Usage()
        answered = getattr(response, "model", "") or ""
        with self._lock:
            if answered:
                self._last_model[run_id] = answered
            # A reply that does not name its model was answered by the one its run named last
            # (or the configured one); runs sharing this hook never lend each other theirs.
            model = answered or self._last_model.get(run_id) or self.model or ""
        cost = cost_of(usage, model, self.prices) if self.prices else usage.cost
        with self._lock:
            self.model_ms.append(seconds * 1000)
            if error is not None:
                self.model_failures[error] += 1
            else:
                self.usage.add(Usage(usage.input_tokens, usage.output_tokens, usage.cached_tokens))
                self._cost += cost
                self._costed = self._costed or bool(self.prices) or bool(usage.cost)
        if self._instruments is not None:
            counted = usage if error is None else None
            self._record_otel(*self._instruments, seconds, counted, getattr(response, "model", ""), error)

    def _record_otel(
        self,
        tokens: Any,
        duration: Any,
        seconds: float,
        usage: Usage | None,
        response_model: str,
        error: str | None,
    ) -> None:
        attrs: dict[str, Any] = {"gen_ai.operation.name": "chat"}
        if self.provider:
            attrs["gen_ai.provider.name"] = self.provider
        if self.model:
            attrs["gen_ai.request.model"] = self.model
        if response_model:
            attrs["gen_ai.response.model"] = response_model
        if error is not None:
            attrs["error.type"] = error
        duration.record(seconds, attrs)
        if usage is not None:
            tokens.record(usage.input_tokens, {**attrs, "gen_ai.token.type": "input"})
            tokens.record(usage.output_tokens, {**attrs, "gen_ai.token.type": "output"})

    # -- reading -------------------------------------------------------------------------

    @property
    def cost(self) -> float | None:
        """What the model calls cost (None when neither a price table nor the backend gave a price)."""
        return self._cost if self._costed else None

    def report(self) -> MetricsReport:
        """Every figure as a JSON-safe dict; ``print()`` it for a readable summary."""
        with self._lock:
            tools = {
                name: {**_latency(values), "errors": self.tool_errors.get(name, 0)}
                for name, values in self.tool_ms.items()
            }
            model = _latency(self.model_ms)
            model = {"calls": model.pop("count"), **model, "failures": dict(self.model_failures)}
            return MetricsReport(
                runs=self.runs,
                steps=self.steps,
                errors=dict(self.errors),
                stop_reasons=dict(self.stop_reasons),
                tools=tools,
                model=model,
                tokens={
                    "input": self.usage.input_tokens,
                    "output": self.usage.output_tokens,
                    "cached": self.usage.cached_tokens,
                    "total": self.usage.total_tokens,
                },
                cost=self.cost,
            )


def _instruments(otel: Any) -> tuple[Any, Any] | None:
    """The two GenAI client histograms on the meter `otel` names (None without OpenTelemetry)."""
    if otel is None or otel is False:
        return None
    try:
        from opentelemetry import metrics
    except ImportError as exc:
        raise ConfigError(
            'OpenTelemetry is not installed; install it with: pip install "looplet[otel]"'
        ) from exc
    from . import __version__

    if otel is True:
        meter = metrics.get_meter("looplet", __version__)
    elif callable(getattr(otel, "create_histogram", None)):
        meter = otel
    elif callable(getattr(otel, "get_meter", None)):
        meter = otel.get_meter("looplet", __version__)
    else:
        raise ConfigError(
            f"otel must be None, True, an OpenTelemetry Meter or MeterProvider, got {type(otel).__name__}"
        )
    tokens = meter.create_histogram(
        "gen_ai.client.token.usage",
        unit="{token}",
        description="Number of input and output tokens used",
        explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
    )
    duration = meter.create_histogram(
        "gen_ai.client.operation.duration",
        unit="s",
        description="GenAI operation duration",
        explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
    )
    return tokens, duration
