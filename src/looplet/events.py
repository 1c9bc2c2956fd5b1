"""Live events for UIs: `EventHook` hands each thing that happens in a run to a callback or a queue.

Event types (`Event.type`), in the order a run produces them; ``data`` holds:

- ``run_start``: ``task`` (text, secrets masked).
- ``model_start``: ``step``, the number the next step will get.
- ``text``: ``text``, a piece of the model's reply, and ``streamed``. When the
  backend streams (the SDK backends with ``LoopConfig(llm_options={"stream":
  True})``) each piece comes as it arrives; otherwise (the scripted, function
  and text backends never stream) the whole text comes as one event after the
  call, with ``streamed`` False.
- ``model_end``: ``step``, ``ms``, token counts (``input_tokens``,
  ``output_tokens``, ``cached_tokens``), ``model``; ``error`` (its type) when
  the call failed.
- ``tool_start``: ``tool``, ``call_id``, ``args`` (secrets masked), when the tool
  really starts (after every gate).
- ``tool_end``: ``tool``, ``call_id``, ``ok``, ``error_kind``, ``ms``.
- ``step``: ``number``, ``tool``, ``ok``, ``error_kind``, ``pretty`` (the
  `Step.pretty()` line), for every step, including calls that never ran
  (denied, invalid).
- ``stop``: ``stop_reason``, ``ok``, ``steps``, ``usage``, ``elapsed_s``.

Events of concurrent tools come from the threads or tasks that run them, in
the order things happen. An observer must not break the run it watches: a
callback that raises (or a full queue) is logged as a warning, counted in
`EventHook.failures`, and the run goes on.
"""

from __future__ import annotations

import inspect
import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import IO, TYPE_CHECKING, Any

from .redaction import redact_text, redact_value
from .tracing import otel_error_type

#: control characters but newline and tab: terminal escapes in a model's text are not obeyed
_ESCAPES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

if TYPE_CHECKING:
    from .backends.protocol import LLMRequest, LLMResponse
    from .history import History
    from .prompt import PromptContext
    from .state import DefaultState
    from .tools.registry import PreparedCall
    from .types import Step

__all__ = ["Event", "EventHook", "LiveDisplay", "EVENT_TYPES"]

log = logging.getLogger(__name__)

#: Every `Event.type`, in the order a run produces them.
EVENT_TYPES = ("run_start", "model_start", "text", "model_end", "tool_start", "tool_end", "step", "stop")


@dataclass(frozen=True)
class Event:
    """One thing that happened in a run: its type, the run's id, the details and when (epoch seconds)."""

    type: str
    run_id: str
    data: dict[str, Any] = field(default_factory=dict)
    at: float = 0.0


class EventHook:
    """Sends a run's events to `sink` as they happen.

    Args:
        sink: a function called with each `Event`, a `queue.Queue`, or an
            `asyncio.Queue` (events from worker threads are handed to its event
            loop thread-safely).
        loop: the event loop of an `asyncio.Queue` sink; by default the loop
            running when the run starts (`async_composable_loop`).

    Attributes:
        failures: events that could not be delivered (the callback raised or
            the queue was full).
        delivered: events delivered.
    """

    def __init__(self, sink: Callable[[Event], Any] | Any, *, loop: Any = None) -> None:
        self._put = _putter(sink)
        self._async_queue = _is_async_queue(sink)
        self._loop = loop
        self._lock = threading.Lock()
        self.failures = 0
        self.delivered = 0
        self._run: ContextVar[str | None] = ContextVar(f"looplet_events_{id(self):x}", default=None)
        self._latest = ""

    # -- the run -------------------------------------------------------------------------

    def pre_loop(self, state: DefaultState, log: History, ctx: PromptContext) -> None:
        self._run.set(state.run_id)
        self._latest = state.run_id
        if self._async_queue and self._loop is None:
            self._loop = _running_loop()
        task = state.task if isinstance(state.task, str) else redact_value(state.task)
        self._emit("run_start", {"task": redact_text(str(task))}, state.run_id)

    def after_step(self, state: DefaultState, log: History, step: Step) -> None:
        result = step.tool_result
        data = {
            "number": step.number,
            "tool": step.tool_call.tool,
            "ok": not result.error,
            "error_kind": result.error_kind if result.error else None,
            "pretty": step.pretty(),
        }
        self._emit("step", data, state.run_id)

    def on_loop_end(self, state: DefaultState, log: History, ctx: PromptContext, llm: Any) -> None:
        result = ctx.result
        data: dict[str, Any] = {"stop_reason": state.stop_reason, "steps": len(state.steps)}
        if result is not None:
            data.update(ok=result.ok, usage=result.usage.to_dict(), elapsed_s=result.elapsed_s)
        self._emit("stop", data, state.run_id)
        if self.failures:
            log_ = logging.getLogger(__name__)
            log_.warning("EventHook: %d event(s) could not be delivered in this hook's runs", self.failures)

    # -- model calls ---------------------------------------------------------------------

    def around_llm(self, request: LLMRequest, proceed: Callable[[LLMRequest], Any]) -> Any:
        run_id = self._run_id(request.run_id)
        self._emit("model_start", {"step": request.step}, run_id)
        streamed: list[bool] = []
        if request.options.get("stream"):
            request = self._streaming(request, run_id, streamed)
        started = time.perf_counter()
        try:
            response = proceed(request)
        except BaseException as exc:
            ms = (time.perf_counter() - started) * 1000
            self._emit("model_end", {"step": request.step, "ms": ms, "error": otel_error_type(exc)}, run_id)
            raise
        ms = (time.perf_counter() - started) * 1000
        if response.text and not streamed:
            self._emit("text", {"text": response.text, "streamed": False}, run_id)
        self._emit("model_end", _model_end(request.step, ms, response), run_id)
        return response

    def _streaming(self, request: LLMRequest, run_id: str, streamed: list[bool]) -> LLMRequest:
        """The request with a text callback that also emits ``text`` events (the caller's still runs)."""
        theirs = request.options.get("on_text_delta")

        def on_text_delta(delta: str) -> Any:
            streamed.append(True)
            self._emit("text", {"text": delta, "streamed": True}, run_id)
            return theirs(delta) if theirs is not None else None

        return replace(request, options={**request.options, "on_text_delta": on_text_delta})

    # -- tools ---------------------------------------------------------------------------

    def around_tool(self, call: PreparedCall, proceed: Callable[[], Any]) -> Any:
        run_id = self._run_id(call.run_id)
        tool, call_id = call.call.tool, call.call.call_id
        self._emit("tool_start", {"tool": tool, "call_id": call_id, "args": redact_value(call.args)}, run_id)
        started = time.perf_counter()
        ok: bool = False
        kind: str | None = "execution"  # proceed() raising: the call gets an execution error
        try:
            result = proceed()
            ok = not result.error
            kind = (result.error_kind or "execution") if result.error else None
            return result
        finally:
            ms = (time.perf_counter() - started) * 1000
            data = {"tool": tool, "call_id": call_id, "ok": ok, "error_kind": kind, "ms": ms}
            self._emit("tool_end", data, run_id)

    # -- delivery ------------------------------------------------------------------------

    def _run_id(self, named: str) -> str:
        """The run a request or call names (runs stepped in turn in one thread share a context);
        else the run of this context, else the latest run started."""
        return named or self._run.get() or self._latest

    def _emit(self, type_: str, data: dict[str, Any], run_id: str) -> None:
        event = Event(type_, run_id, data, time.time())
        try:
            if self._async_queue:
                self._to_loop(event)
            else:
                out = self._put(event)
                if inspect.isawaitable(out):
                    _close(out)
                    raise TypeError("the callback is async; pass an asyncio.Queue and read it from a task")
        except Exception as exc:  # an observer never breaks the run it watches
            self._failed(event, exc)
        else:
            with self._lock:
                self.delivered += 1

    def _to_loop(self, event: Event) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            raise RuntimeError("an asyncio.Queue sink needs its event loop: pass loop= to EventHook")
        if _running_loop() is loop:
            self._put(event)
        else:
            loop.call_soon_threadsafe(self._put_later, event)

    def _put_later(self, event: Event) -> None:
        try:
            self._put(event)
        except Exception as exc:
            self._failed(event, exc)

    def _failed(self, event: Event, exc: Exception) -> None:
        with self._lock:
            self.failures += 1
            first = self.failures == 1
        if first:
            log.warning(
                "EventHook could not deliver a %s event (%s: %s); the run goes on, later failures are "
                "logged at DEBUG",
                event.type,
                type(exc).__name__,
                redact_text(str(exc)),
            )
        else:
            log.debug("EventHook could not deliver a %s event: %s", event.type, type(exc).__name__)


def _model_end(step: int, ms: float, response: LLMResponse) -> dict[str, Any]:
    usage = response.usage
    return {
        "step": step,
        "ms": ms,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cached_tokens": usage.cached_tokens,
        "model": response.model,
    }


def _putter(sink: Any) -> Callable[[Event], Any]:
    put = getattr(sink, "put_nowait", None)
    if callable(put):
        return put  # type: ignore[no-any-return]
    if callable(sink):
        return sink  # type: ignore[no-any-return]
    kind = type(sink).__name__
    raise TypeError(f"EventHook needs a callable, a queue.Queue or an asyncio.Queue, got {kind}")


def _is_async_queue(sink: Any) -> bool:
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and isinstance(sink, asyncio.Queue)


def _running_loop() -> Any:
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return None
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _close(awaitable: Any) -> None:
    close = getattr(awaitable, "close", None)
    if callable(close):
        close()


# -- the terminal display ------------------------------------------------------------------


class LiveDisplay:
    """A live view of a run in the terminal: pass it as the sink, ``EventHook(LiveDisplay())``.

    It prints the task, the model's text as it comes, each tool as it starts
    and each step's `Step.pretty()` line, and the ending. With `rich` installed
    (``pip install "looplet[rich]"``) the lines are styled; without it, or with
    ``rich=False``, they are plain text.

    Args:
        file: where to write (standard output by default).
        rich: None to use rich when it is installed; True to require it; False for plain lines.
        show_text: print the model's text (off: only tools, steps and the end).
        console: a ``rich.console.Console`` of your own to print to (implies rich).
    """

    def __init__(
        self,
        file: IO[str] | None = None,
        *,
        rich: bool | None = None,
        show_text: bool = True,
        console: Any = None,
    ) -> None:
        self.file = file
        self.show_text = show_text
        self._console = console if console is not None else _rich_console(file) if rich is not False else None
        if rich is True and self._console is None:
            from .errors import ConfigError

            raise ConfigError('rich is not installed; install it with: pip install "looplet[rich]"')
        self._lock = threading.Lock()
        self._mid_text = False

    def __call__(self, event: Event) -> None:
        line = self._line(event)
        if line is None:
            return
        text, style, newline = line
        with self._lock:
            if self._mid_text and newline:
                self._write("\n", None, False)
                self._mid_text = False
            self._write(text, style, newline)
            if not newline:
                self._mid_text = True

    def _line(self, event: Event) -> tuple[str, str | None, bool] | None:
        """What to print for `event`: (text, rich style, ends the line), or None for nothing."""
        from .types import format_args

        d = event.data
        if event.type == "run_start":
            return f"▶ {d['task']}", "bold", True
        if event.type == "text" and self.show_text:
            # masked piece by piece (a secret split across two pieces is beyond this), and
            # with terminal escapes neutralised, like every other line here
            return _ESCAPES.sub("�", redact_text(str(d["text"]))), "italic", False
        if event.type == "tool_start":
            return f"  → {d['tool']}({format_args(d['args'])})", "cyan", True
        if event.type == "step":
            return f"  {d['pretty']}", "green" if d["ok"] else "red", True
        if event.type == "stop":
            usage = d.get("usage") or {}
            tokens = usage.get("input_tokens", 0) + usage.get("output_tokens", 0)
            cached = usage.get("cached_tokens", 0)
            extra = f" ({cached:,} cached)" if cached else ""
            return f"■ {d['stop_reason']} · {d['steps']} steps · {tokens:,} tokens{extra}", "bold", True
        return None

    def _write(self, text: str, style: str | None, newline: bool) -> None:
        end = "\n" if newline else ""
        if self._console is not None:
            self._console.print(text, style=style, end=end, markup=False, highlight=False, soft_wrap=True)
            return
        out = self.file if self.file is not None else sys.stdout
        out.write(text + end)
        out.flush()


def _rich_console(file: IO[str] | None) -> Any:
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(file=file)
