"""`TracingHook`: a span for the run, each model call and each tool run; OpenTelemetry on request.

The spans are always kept in memory (`TracingHook.spans`, `TracingHook.tree()`),
which is what tests and a quick look need. With ``otel=True`` (the global
tracer provider), a tracer or a tracer provider, the same spans are also
emitted through the OpenTelemetry API, named and attributed by the GenAI
semantic conventions:

- ``invoke_agent {agent name}`` (INTERNAL): the run; ``gen_ai.conversation.id``
  is the run id.
- ``chat {model}`` (CLIENT): one model call (retries inside the backend are
  one call); usage, response model and id, finish reasons.
- ``execute_tool {tool name}`` (INTERNAL): one tool run, with ``gen_ai.tool.name``
  and ``gen_ai.tool.call.id``; ``error.type`` is the result's `ErrorKind`.

Nothing is sent anywhere unless you configured an exporter yourself; looplet
ships none. Message content, tool arguments and results are recorded only with
``capture_content=True``, and even then through `looplet.redaction`.

Nesting: model calls and tool runs are children of their run's span, also
for a concurrent batch (each call's span is opened in its own thread or task).
While a tool runs, its span is the current one (in OpenTelemetry's context
too), so a tool that runs an agent of its own (a sub-agent) gets its
``invoke_agent`` span as a child of that tool's span, and anything your
tool traces itself nests there as well.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .redaction import redact_text, redact_value

if TYPE_CHECKING:
    from .backends.protocol import LLMRequest, LLMResponse
    from .history import History
    from .prompt import PromptContext
    from .state import DefaultState
    from .tools.registry import PreparedCall
    from .types import ToolCall, ToolResult

__all__ = ["TracingHook", "SpanRecord", "backend_identity", "otel_error_type", "iter_tree"]

log = logging.getLogger(__name__)

#: The span of the tool running in this context (any `TracingHook`'s): a run started
#: inside a tool takes it as its parent.
_tool_span: ContextVar[SpanRecord | None] = ContextVar("looplet_tool_span", default=None)
_ids = itertools.count(1)

#: Longest content attribute kept (``capture_content=True``); longer text is cut with a marker.
CONTENT_LIMIT = 32_000


@dataclass
class SpanRecord:
    """One span as kept in memory.

    Attributes:
        name: e.g. ``chat gpt-4o`` or ``execute_tool search``.
        kind: ``internal`` or ``client``.
        span_id / parent_id: ids within this process (``parent_id`` None for a root).
        start / end: wall-clock seconds (``time.time()``); `end` is None while open.
        attributes: the span's attributes, by their semantic-convention names.
        status: ``unset``, ``ok`` or ``error``; `error` holds the ``error.type``.
    """

    name: str
    kind: str
    span_id: str
    parent_id: str | None
    start: float
    end: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    status: str = "unset"
    error: str | None = None

    @property
    def duration_ms(self) -> float:
        """Milliseconds from start to end (0.0 while the span is still open)."""
        return 0.0 if self.end is None else max(0.0, (self.end - self.start) * 1000)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of the span."""
        return {
            "name": self.name,
            "kind": self.kind,
            "span_id": self.span_id,
            "parent_id": self.parent_id,
            "start": self.start,
            "end": self.end,
            "attributes": dict(self.attributes),
            "status": self.status,
            "error": self.error,
        }


@dataclass
class _Open:
    """A span in flight: the record and, with OpenTelemetry, its live span."""

    record: SpanRecord
    otel: Any = None


@dataclass
class _Run:
    """One run this hook is tracing."""

    span: _Open
    previous: _Run | None
    otel_context: Any = None  # the OpenTelemetry context whose current span is the run's
    ran: set[str] = field(default_factory=set)  # call ids a tool span was opened for


def backend_identity(llm: Any) -> tuple[str | None, str | None]:
    """The provider name (``openai``, ``anthropic``) and model of a backend, where it says."""
    if llm is None:
        return None, None
    provider = getattr(llm, "provider_name", None) or getattr(llm, "provider", None)
    model = getattr(llm, "model", None)
    name = provider.lower() if isinstance(provider, str) and provider else None
    return name, model if isinstance(model, str) and model else None


def otel_error_type(exc: BaseException) -> str:
    """``error.type`` for a failure: an `LLMError`'s kind (``rate_limit``), else the exception's class."""
    kind = getattr(exc, "kind", None)
    return kind if isinstance(kind, str) and kind else type(exc).__qualname__


def _import_trace() -> Any:
    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise ConfigError(
            'OpenTelemetry is not installed; install it with: pip install "looplet[otel]"'
        ) from exc
    return trace


def _version() -> str:
    from . import __version__

    return __version__


def _tracer_of(otel: Any) -> Any:
    """None (memory only), or the OpenTelemetry tracer `otel` names."""
    if otel is None or otel is False:
        return None
    trace = _import_trace()
    if otel is True:
        return trace.get_tracer("looplet", _version())
    if callable(getattr(otel, "start_span", None)):
        return otel
    if callable(getattr(otel, "get_tracer", None)):
        return otel.get_tracer("looplet", _version())
    raise ConfigError(
        f"otel must be None, True, an OpenTelemetry Tracer or TracerProvider, got {type(otel).__name__}"
    )


class TracingHook:
    """Spans for every run, model call and tool run, in memory and (opt-in) through OpenTelemetry.

    Works in `composable_loop` and `async_composable_loop`; one hook may trace
    several runs, one after another, at once, or nested (a sub-agent).

    Args:
        otel: None (memory only), True (the global OpenTelemetry tracer
            provider), or a ``Tracer`` / ``TracerProvider`` to emit through.
        capture_content: also record the messages sent, the reply, tool
            arguments and results (redacted). Off by default: spans then hold
            names, ids, counts and error types only.
        agent_name: the agent's name, in ``invoke_agent {agent_name}``.
        llm: the backend, to read its provider and model from (the hook sees
            requests, which do not name them); `provider` and `model` win.
        provider: ``gen_ai.provider.name`` (``openai``, ``anthropic``, ...).
        model: ``gen_ai.request.model``.
    """

    def __init__(
        self,
        *,
        otel: Any = None,
        capture_content: bool = False,
        agent_name: str | None = None,
        llm: Any = None,
        provider: str | None = None,
        model: str | None = None,
    ) -> None:
        self._tracer = _tracer_of(otel)
        self.capture_content = capture_content
        self.agent_name = agent_name
        known_provider, known_model = backend_identity(llm)
        self.provider = provider or known_provider
        self.model = model or known_model
        self._lock = threading.Lock()
        self._spans: list[SpanRecord] = []
        self._open_runs: list[_Run] = []
        self._current: ContextVar[_Run | None] = ContextVar(f"looplet_tracing_{id(self):x}", default=None)

    # -- reading -------------------------------------------------------------------------

    @property
    def spans(self) -> list[SpanRecord]:
        """Every span so far, in the order they started (a copy)."""
        with self._lock:
            return list(self._spans)

    def children(self, span: SpanRecord) -> list[SpanRecord]:
        """The spans whose parent is `span`, in start order."""
        return [s for s in self.spans if s.parent_id == span.span_id]

    def clear(self) -> None:
        """Forget the finished spans (open ones are kept, so their children still find them)."""
        with self._lock:
            self._spans = [s for s in self._spans if s.end is None]

    def tree(self) -> str:
        """The spans as an indented tree, one line each: name, time, and what matters of it."""
        return "\n".join("  " * depth + _line(span) for depth, span in iter_tree(self.spans))

    # -- the run -------------------------------------------------------------------------

    def pre_loop(self, state: DefaultState, log: History, ctx: PromptContext) -> None:
        self._open_run(state)

    def on_loop_end(self, state: DefaultState, log: History, ctx: PromptContext, llm: Any) -> None:
        run = self._run_now(state.run_id)
        if run is None:  # an earlier hook's pre_loop failed before ours ran
            run = self._open_run(state)
        self._learn(llm)
        attrs: dict[str, Any] = {}
        if self.provider:
            attrs["gen_ai.provider.name"] = self.provider
        result = ctx.result
        error = None
        if result is not None:
            attrs["looplet.stop_reason"] = result.stop_reason
            attrs["looplet.steps"] = len(result.steps)
            attrs.update(_usage_attributes(result.usage))
            if result.error_category is not None:
                failure = result.error
                error = otel_error_type(failure) if failure is not None else result.stop_reason
        self._end(run.span, attrs, error)
        with self._lock:
            if run in self._open_runs:
                self._open_runs.remove(run)
        if self._current.get() is run:
            self._current.set(run.previous)

    def _open_run(self, state: DefaultState) -> _Run:
        name = f"invoke_agent {self.agent_name}" if self.agent_name else "invoke_agent"
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.conversation.id": state.run_id,
        }
        if self.agent_name:
            attrs["gen_ai.agent.name"] = self.agent_name
        if self.provider:
            attrs["gen_ai.provider.name"] = self.provider
        if self.model:
            attrs["gen_ai.request.model"] = self.model
        if state.parent_run_id:
            attrs["looplet.parent_run_id"] = state.parent_run_id
        parent = _tool_span.get()
        span = self._start(name, "internal", parent.span_id if parent else None, attrs, None)
        run = _Run(span, previous=self._current.get())
        if span.otel is not None:
            run.otel_context = _import_trace().set_span_in_context(span.otel)
        with self._lock:
            self._open_runs.append(run)
        self._current.set(run)
        return run

    def _run_now(self, run_id: str = "") -> _Run | None:
        """The open run with id `run_id` (requests, calls and states name theirs, so runs stepped in
        turn in one thread or task are told apart); else the run of the calling context; else the
        latest open one (the loop driven from elsewhere)."""
        run = self._current.get()
        with self._lock:
            named = [r for r in self._open_runs if _run_id_of(r) == run_id]
            if run_id and named:
                return run if run in named else named[-1]
            if run is not None and run in self._open_runs:
                return run
            return self._open_runs[-1] if self._open_runs else None

    def _learn(self, llm: Any) -> None:
        """Take the provider and model from the backend, for later runs' spans, where not given."""
        provider, model = backend_identity(getattr(llm, "backend", llm))
        self.provider = self.provider or provider
        self.model = self.model or model

    # -- model calls ---------------------------------------------------------------------

    def around_llm(self, request: LLMRequest, proceed: Callable[[LLMRequest], Any]) -> Any:
        run = self._run_now(request.run_id)
        span = self._start(*self._chat_start(request, run))
        with _Attached(span.otel):
            try:
                response = proceed(request)
            except BaseException as exc:
                self._end(span, {}, otel_error_type(exc))
                raise
        self._end(span, self._chat_end(response), None)
        return response

    def _chat_start(self, request: LLMRequest, run: _Run | None) -> tuple[Any, ...]:
        name = f"chat {self.model}" if self.model else "chat"
        attrs: dict[str, Any] = {"gen_ai.operation.name": "chat", "looplet.step": request.step}
        if self.provider:
            attrs["gen_ai.provider.name"] = self.provider
        if self.model:
            attrs["gen_ai.request.model"] = self.model
        if run is not None:
            attrs["gen_ai.conversation.id"] = run.span.record.attributes["gen_ai.conversation.id"]
        if request.max_tokens is not None:
            attrs["gen_ai.request.max_tokens"] = request.max_tokens
        if request.temperature is not None:
            attrs["gen_ai.request.temperature"] = request.temperature
        if self.capture_content:
            if request.system:
                attrs["gen_ai.system_instructions"] = _content([{"type": "text", "content": request.system}])
            attrs["gen_ai.input.messages"] = _content(_messages(request))
        return name, "client", _parent_id(run), attrs, run

    def _chat_end(self, response: LLMResponse) -> dict[str, Any]:
        attrs: dict[str, Any] = _usage_attributes(response.usage)
        if response.model:
            attrs["gen_ai.response.model"] = response.model
        if response.request_id:
            attrs["gen_ai.response.id"] = response.request_id
        if response.stop_reason:
            attrs["gen_ai.response.finish_reasons"] = [response.stop_reason]
        if self.capture_content:
            attrs["gen_ai.output.messages"] = _content([_reply(response)])
        return attrs

    # -- tool runs -----------------------------------------------------------------------

    def around_tool(self, call: PreparedCall, proceed: Callable[[], Any]) -> Any:
        run = self._run_now(call.run_id)
        tool_call = call.call
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool_call.tool,
            "gen_ai.tool.type": "function",
        }
        if tool_call.call_id:
            attrs["gen_ai.tool.call.id"] = tool_call.call_id
        if run is not None:
            attrs["gen_ai.conversation.id"] = run.span.record.attributes["gen_ai.conversation.id"]
            with self._lock:
                run.ran.add(tool_call.call_id)
        if self.capture_content:
            attrs["gen_ai.tool.call.arguments"] = _content(call.args)
        span = self._start(f"execute_tool {tool_call.tool}", "internal", _parent_id(run), attrs, run)
        marker = _tool_span.set(span.record)
        try:
            with _Attached(span.otel):
                result = proceed()
        except BaseException as exc:
            self._end(span, {}, otel_error_type(exc))
            raise
        finally:
            _tool_span.reset(marker)
        self._end(span, self._tool_end(result), getattr(result, "error_kind", None) or None)
        return result

    def _tool_end(self, result: ToolResult) -> dict[str, Any]:
        if not self.capture_content:
            return {}
        shown = {"error": result.error} if result.error else result.data
        return {"gen_ai.tool.call.result": _content(shown)}

    def post_dispatch(
        self, state: DefaultState, log: History, tool_call: ToolCall, tool_result: ToolResult, step: int
    ) -> None:
        """A call that never ran (invalid, denied, answered by a hook) still gets a span, of no length."""
        run = self._run_now(state.run_id)
        if run is not None:
            with self._lock:
                if tool_call.call_id in run.ran:
                    run.ran.discard(tool_call.call_id)
                    return
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool_call.tool,
            "looplet.tool.ran": False,
        }
        if tool_call.call_id:
            attrs["gen_ai.tool.call.id"] = tool_call.call_id
        if run is not None:
            attrs["gen_ai.conversation.id"] = run.span.record.attributes["gen_ai.conversation.id"]
        if self.capture_content:
            attrs["gen_ai.tool.call.arguments"] = _content(tool_call.args)
        span = self._start(f"execute_tool {tool_call.tool}", "internal", _parent_id(run), attrs, run)
        self._end(span, self._tool_end(tool_result), tool_result.error_kind or None)

    # -- spans ---------------------------------------------------------------------------

    def _start(
        self, name: str, kind: str, parent_id: str | None, attrs: dict[str, Any], run: _Run | None
    ) -> _Open:
        record = SpanRecord(name, kind, f"{next(_ids):x}", parent_id, time.time(), attributes=attrs)
        live = None
        if self._tracer is not None:
            live = self._otel_start(name, kind, attrs, run)
        with self._lock:
            self._spans.append(record)
        return _Open(record, live)

    def _otel_start(self, name: str, kind: str, attrs: dict[str, Any], run: _Run | None) -> Any:
        from opentelemetry.trace import SpanKind

        otel_kind = SpanKind.CLIENT if kind == "client" else SpanKind.INTERNAL
        context = run.otel_context if run is not None else None  # None: the current context
        return self._tracer.start_span(name, context=context, kind=otel_kind, attributes=attrs)

    def _end(self, span: _Open, attrs: dict[str, Any], error: str | None) -> None:
        record = span.record
        record.attributes.update(attrs)
        if error:
            record.attributes["error.type"] = error
            record.status, record.error = "error", error
        record.end = time.time()
        if span.otel is not None:
            self._otel_end(span.otel, attrs, error)

    @staticmethod
    def _otel_end(live: Any, attrs: dict[str, Any], error: str | None) -> None:
        from opentelemetry.trace import Status, StatusCode

        if attrs:
            live.set_attributes(attrs)
        if error:
            live.set_attribute("error.type", error)
            live.set_status(Status(StatusCode.ERROR, error))
        live.end()


class _Attached:
    """Makes an OpenTelemetry span the current one for a block (nothing without OpenTelemetry)."""

    __slots__ = ("span", "token")

    def __init__(self, span: Any) -> None:
        self.span = span
        self.token: Any = None

    def __enter__(self) -> None:
        if self.span is not None:
            from opentelemetry import context, trace

            self.token = context.attach(trace.set_span_in_context(self.span))

    def __exit__(self, *exc: object) -> None:
        if self.token is not None:
            from opentelemetry import context

            context.detach(self.token)


def _run_id_of(run: _Run) -> Any:
    return run.span.record.attributes["gen_ai.conversation.id"]


def _parent_id(run: _Run | None) -> str | None:
    return run.span.record.span_id if run is not None else None


def _usage_attributes(usage: Any) -> dict[str, Any]:
    attrs = {
        "gen_ai.usage.input_tokens": usage.input_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
    }
    if usage.cached_tokens:
        attrs["gen_ai.usage.cache_read.input_tokens"] = usage.cached_tokens
    return attrs


def _messages(request: LLMRequest) -> list[dict[str, Any]]:
    """The conversation in the conventions' message shape: a role and its parts."""
    out: list[dict[str, Any]] = []
    for message in request.conversation():
        if message.role == "tool":
            parts: list[dict[str, Any]] = [
                {"type": "tool_call_response", "id": message.call_id, "response": message.content}
            ]
        else:
            parts = [{"type": "text", "content": message.content}] if message.content else []
            parts += [_call_part(c) for c in message.tool_calls]
        out.append({"role": message.role, "parts": parts})
    return out


def _reply(response: LLMResponse) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "content": response.text}] if response.text else []
    parts += [_call_part(c) for c in response.tool_calls]
    reply: dict[str, Any] = {"role": "assistant", "parts": parts}
    if response.stop_reason:
        reply["finish_reason"] = response.stop_reason
    return reply


def _call_part(call: ToolCall) -> dict[str, Any]:
    return {"type": "tool_call", "id": call.call_id, "name": call.tool, "arguments": call.args}


def _content(value: Any, limit: int = CONTENT_LIMIT) -> str:
    """`value` as redacted JSON text, cut to `limit` characters with a marker saying how much was cut."""
    text = json.dumps(redact_value(value), ensure_ascii=False, default=_fallback)
    text = redact_text(text)
    if len(text) > limit:
        text = f"{text[:limit]}…[cut {len(text) - limit} chars]"
    return text


def _fallback(value: Any) -> str:
    from .types import text_of

    return text_of(value, brief=True)


def _line(span: SpanRecord) -> str:
    """One line of `TracingHook.tree`: the name, the time, and the few attributes worth a glance."""
    attrs = span.attributes
    bits = [span.name, f"[{span.duration_ms:.1f}ms]" if span.end is not None else "[open]"]
    for key, label in _GLANCE:
        if key in attrs:
            bits.append(f"{label}={_short(attrs[key])}")
    if span.error:
        bits.append(f"error={span.error}")
    return " ".join(bits)


_GLANCE: tuple[tuple[str, str], ...] = (
    ("gen_ai.tool.call.id", "id"),
    ("gen_ai.usage.input_tokens", "in"),
    ("gen_ai.usage.output_tokens", "out"),
    ("gen_ai.usage.cache_read.input_tokens", "cached"),
    ("looplet.stop_reason", "stop"),
)


def _short(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def iter_tree(spans: list[SpanRecord]) -> Iterator[tuple[int, SpanRecord]]:
    """(depth, span) for `spans` in tree order: each span after its parent, siblings by start."""
    ids = {s.span_id for s in spans}
    kids: dict[str | None, list[SpanRecord]] = {}
    for span in spans:
        kids.setdefault(span.parent_id if span.parent_id in ids else None, []).append(span)
    stack = [(0, s) for s in reversed(kids.get(None, []))]
    while stack:
        depth, span = stack.pop()
        yield depth, span
        stack.extend((depth + 1, c) for c in reversed(kids.get(span.span_id, [])))
