"""The records a run produces: tool calls, their results, steps, usage and the run result."""

from __future__ import annotations

import json
import re
import reprlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .redaction import redact_text

__all__ = [
    "ErrorKind",
    "StopReason",
    "ToolCall",
    "ToolResult",
    "Usage",
    "Step",
    "RunResult",
]


class ErrorKind:
    """The values of `ToolResult.error_kind`: why a step did not produce data."""

    PARSE = "parse"  #: the model's output was not a readable tool call
    VALIDATION = "validation"  #: unknown tool, wrong or missing arguments
    EXECUTION = "execution"  #: the tool raised
    TIMEOUT = "timeout"  #: the tool ran past its time limit
    DENIED = "denied"  #: a pre_dispatch hook denied the call
    BLOCKED = "blocked"  #: a check_done hook rejected the done call
    NO_TOOL_CALL = "no_tool_call"  #: the model answered without calling a tool
    HOOK_ERROR = "hook_error"  #: a hook raised while handling this call
    BUSY = "busy"  #: the tool is still running from an earlier timed-out call
    CANCELLED = "cancelled"  #: the run was cancelled before the call ran


class StopReason:
    """The documented reasons a run stops (`RunResult.stop_reason`).

    A hook's `Stop(reason)` gives ``"hook_stop:<reason>"``.
    """

    DONE = "done"  #: the done tool was called and accepted
    MAX_STEPS = "max_steps"  #: the step budget is spent
    MAX_LLM_CALLS = "max_llm_calls"  #: the cap on model calls is reached
    DEADLINE = "deadline"  #: `deadline_s` has passed
    NO_TOOL_CALL = "no_tool_call"  #: the model kept answering without a tool call
    CANCELLED = "cancelled"  #: the caller closed the loop, or a cancel token fired
    LLM_ERROR = "llm_error"  #: the model call failed (details in `RunResult.error`)
    CONTEXT_OVERFLOW = "context_overflow"  #: the prompt stayed too long after compaction
    REFUSED = "refused"  #: the model refused (content filter); ``RunResult.error`` has its words
    HOOK_ERROR = "hook_error"  #: a hook raised (details in `RunResult.error`)
    APPROVAL_PENDING = "approval_pending"  #: the run waits for a human decision
    HOOK_STOP = "hook_stop"  #: prefix of ``hook_stop:<reason>``


@dataclass(slots=True)
class ToolCall:
    """One call the model asked for.

    `parse_error` is set (and `args` is empty) when the model's arguments could
    not be read; such a call is never run.
    """

    tool: str
    args: dict[str, Any] = field(default_factory=dict)
    reasoning: str = ""
    call_id: str = ""
    parse_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tool": self.tool,
            "args": self.args,
            "reasoning": self.reasoning,
            "call_id": self.call_id,
        }
        if self.parse_error is not None:
            out["parse_error"] = self.parse_error
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolCall:
        return cls(
            tool=data["tool"],
            args=dict(data.get("args") or {}),
            reasoning=data.get("reasoning", ""),
            call_id=data.get("call_id", ""),
            parse_error=data.get("parse_error"),
        )


@dataclass(slots=True)
class ToolResult:
    """What one call produced: JSON-safe `data`, or an `error` (a non-empty string)."""

    tool: str
    args_summary: str = ""
    data: Any = None
    error: str | None = None
    error_kind: str | None = None
    retriable: bool = False
    duration_ms: float = 0.0
    warnings: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    call_id: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "args_summary": self.args_summary,
            "data": self.data,
            "error": self.error,
            "error_kind": self.error_kind,
            "retriable": self.retriable,
            "duration_ms": self.duration_ms,
            "warnings": list(self.warnings),
            "metadata": self.metadata,
            "call_id": self.call_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolResult:
        return cls(
            tool=data["tool"],
            args_summary=data.get("args_summary", ""),
            data=data.get("data"),
            error=data.get("error"),
            error_kind=data.get("error_kind"),
            retriable=bool(data.get("retriable", False)),
            duration_ms=float(data.get("duration_ms", 0.0)),
            warnings=list(data.get("warnings") or []),
            metadata=dict(data.get("metadata") or {}),
            call_id=data.get("call_id", ""),
        )


@dataclass(slots=True)
class Usage:
    """Token counts reported by the provider (zero when it reported none)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_tokens + other.cached_tokens,
            self.cost + other.cost,
        )

    def add(self, other: Usage) -> None:
        """Add `other` in place (used for running totals)."""
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cached_tokens += other.cached_tokens
        self.cost += other.cost

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "cost": self.cost,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Usage:
        return cls(
            int(data.get("input_tokens", 0)),
            int(data.get("output_tokens", 0)),
            int(data.get("cached_tokens", 0)),
            float(data.get("cost", 0.0)),
        )


@dataclass(slots=True)
class Step:
    """One tool call and its result, as yielded by the loop.

    Attributes:
        number: 1-based position in the run.
        turn: which model call (1-based) proposed this call; the steps of one
            batch share a turn and its `usage`.
        usage: token usage of that model call.
        llm_ms: how long that model call took.
        started_at: wall-clock time (epoch seconds) when the step began.
        free: the tool is marked free, so this step did not spend budget.
    """

    number: int
    tool_call: ToolCall
    tool_result: ToolResult
    turn: int = 0
    usage: Usage = field(default_factory=Usage)
    llm_ms: float = 0.0
    started_at: float = 0.0
    free: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)

    def pretty(self) -> str:
        """One human-readable line, e.g. ``#1 ✓ greet(name='Alice') → greeting: 'Hi' [0.1ms]``.

        Secrets (known key shapes, secret env values) are masked and control
        characters neutralised, so the line is safe to print or log.
        """
        res = self.tool_result
        mark = "✗" if res.error else "✓"
        call = f"{self.tool_call.tool}({format_args(self.tool_call.args, redact_text)})"
        outcome = res.error if res.error else summarize(res.data, redact_text)
        line = f"#{self.number} {mark} {call} → {outcome} [{format_ms(res.duration_ms)}]"
        return _neutralize(redact_text(line))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict; `Step.from_dict` reads it back into an equal Step."""
        return {
            "number": self.number,
            "tool_call": self.tool_call.to_dict(),
            "tool_result": self.tool_result.to_dict(),
            "turn": self.turn,
            "usage": self.usage.to_dict(),
            "llm_ms": self.llm_ms,
            "started_at": self.started_at,
            "free": self.free,
            "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Step:
        return cls(
            number=int(data["number"]),
            tool_call=ToolCall.from_dict(data["tool_call"]),
            tool_result=ToolResult.from_dict(data["tool_result"]),
            turn=int(data.get("turn", 0)),
            usage=Usage.from_dict(data.get("usage") or {}),
            llm_ms=float(data.get("llm_ms", 0.0)),
            started_at=float(data.get("started_at", 0.0)),
            free=bool(data.get("free", False)),
            metadata=dict(data.get("metadata") or {}),
        )


@dataclass(slots=True)
class RunResult:
    """The outcome of a run, readable after the ``for`` loop as ``loop.result``.

    Attributes:
        stop_reason: one of `StopReason` (or ``hook_stop:<reason>``).
        final_answer: the done tool's arguments, when the run finished with done.
        error: the exception behind ``llm_error`` / ``hook_error`` stops.
        detail: a sentence saying why the run stopped.
        dropped_calls: calls the model asked for that were not run because the
            budget was spent or the run had finished.
    """

    stop_reason: str
    steps: list[Step]
    final_answer: dict[str, Any] | None = None
    usage: Usage = field(default_factory=Usage)
    llm_calls: int = 0
    elapsed_s: float = 0.0
    error: BaseException | None = None
    detail: str = ""
    dropped_calls: list[ToolCall] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the run ended with an accepted done call."""
        return self.stop_reason == StopReason.DONE

    def to_dict(self) -> dict[str, Any]:
        return {
            "stop_reason": self.stop_reason,
            "final_answer": self.final_answer,
            "steps": [s.to_dict() for s in self.steps],
            "usage": self.usage.to_dict(),
            "llm_calls": self.llm_calls,
            "elapsed_s": self.elapsed_s,
            "error": f"{type(self.error).__name__}: {self.error}" if self.error else None,
            "detail": self.detail,
            "dropped_calls": [c.to_dict() for c in self.dropped_calls],
        }


# -- one-line rendering -------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _neutralize(text: str) -> str:
    """Replace control characters (terminal escapes among them) and newlines."""
    return _CONTROL.sub("�", text.replace("\n", "⏎").replace("\t", " "))


def _bounded_repr() -> reprlib.Repr:
    # Bounded in depth and length, so a huge or deeply nested value costs little
    # and cannot recurse without end; the result is cut to the caller's limit anyway.
    r = reprlib.Repr()
    r.maxlevel = 4
    r.maxstring = r.maxother = 200
    r.maxlong = 200
    return r


_REPR = _bounded_repr()


Clean = Callable[[str], str]


def _short(value: Any, limit: int = 40, clean: Clean | None = None) -> str:
    kind = type(value)
    if (kind is str and len(value) <= 200) or kind is bool or value is None or kind is float:
        text = repr(value)  # the common cases, without reprlib's overhead
    elif kind is int and -(10**18) < value < 10**18:
        text = repr(value)
    else:
        text = _bounded(value)
    if clean is not None and len(text) > limit:
        text = clean(text)  # before cutting, so no secret is left half-shown
    return _cut(text, limit)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _bounded(value: Any) -> str:
    try:
        return _REPR.repr(value)
    except Exception:  # a user object whose __repr__ fails
        return f"<{type(value).__name__}>"


def format_args(args: dict[str, Any], clean: Clean | None = None) -> str:
    """Render call arguments as ``name='Alice', n=3`` with long values cut.

    `clean` (e.g. `redact_text`) is applied to each value's text before it is cut.
    """
    if not isinstance(args, dict):  # a malformed call; shown as it came
        return _short(args, clean=clean)
    return ", ".join(f"{k}={_short(v, clean=clean)}" for k, v in args.items())


def summarize(data: Any, clean: Clean | None = None) -> str:
    """A few words on a tool's data: ``12 items``, ``greeting: 'Hello'``, ..."""
    if isinstance(data, dict):
        if len(data) == 1:
            ((key, value),) = data.items()
            if isinstance(value, list):
                return f"{len(value)} items"
            return f"{key}: {_short(value, 60, clean)}"
        if not data:
            return "{}"
        text = json.dumps(data, ensure_ascii=False, default=str)
        if clean is not None and len(text) > 80:
            text = clean(text)
        return _cut(text, 80)
    if isinstance(data, list):
        return f"{len(data)} items"
    return _short(data, 60, clean)


def format_ms(ms: float) -> str:
    if ms < 10:
        return f"{ms:.1f}ms"
    if ms < 1000:
        return f"{ms:.0f}ms"
    return f"{ms / 1000:.1f}s"
