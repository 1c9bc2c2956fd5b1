"""The records a run produces: tool calls, their results, steps, usage and the run result.

Secrets in records (INV-6) follow one rule:

- **The record keeps what happened.** A record's fields hold the raw values
  (the tool got them; a resumed run needs them), and ``to_dict()`` /
  ``from_dict()`` of `ToolCall`, `ToolResult` and `Step` round-trip them
  losslessly. Such a dict is sensitive data: whoever writes it to a file or a
  log (provenance, checkpoints) passes it through
  `looplet.redaction.redact_value` first, or keeps the file private.
- **Every rendering for people masks.** ``repr()`` of every record,
  `Step.pretty()`, `ToolResult.args_summary` (built by `format_args`), and the
  text fields of `RunResult` (``detail``, ``error_text``, and ``error`` /
  ``detail`` in `RunResult.to_dict`) go through `looplet.redaction`: secret
  env values, registered secrets and known key shapes become ``[REDACTED]``,
  in raw and escaped forms. Values are masked *before* they are cut to width,
  so a cut never leaves a secret's prefix readable.
- `RunResult.error` stays the exception object (code may re-raise it or read
  its ``kind``); print `RunResult.error_text` instead of ``str(error)``.
"""

from __future__ import annotations

import json
import re
import reprlib
from dataclasses import dataclass, field, fields
from itertools import islice
from typing import Any

from .redaction import redact_text, redact_value

__all__ = [
    "ErrorKind",
    "ErrorCategory",
    "StopReason",
    "ToolCall",
    "ToolResult",
    "Usage",
    "Step",
    "RunResult",
    "PendingCall",
    "Intent",
    "args_hash",
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
    INTERRUPTED = "interrupted"  #: the run stopped while the tool ran; it may or may not have completed
    CANCELLED = "cancelled"  #: the run was cancelled before the call ran
    PAUSED = "paused"  #: the tool returned ``Ask``: its call waits for a person (never a step)


class ErrorCategory:
    """The original looplet's error categories, read from our error kinds (`ToolResult.error_category`).

    Code written against the original's contract branches on these; ours are
    derived, never stored, so `ErrorKind` stays the one source. How each kind
    maps:

    - ``parse``, ``validation``, ``no_tool_call`` → VALIDATION (the model's call
      was unusable; it can fix its next one)
    - ``timeout`` → TIMEOUT; ``cancelled`` → CANCELLED
    - ``denied`` (a gate said no) and ``blocked`` (a done call was rejected) →
      PERMISSION_DENIED
    - ``busy`` (the tool still runs from an earlier timed-out call) → RATE_LIMIT:
      like a throttled request, it may succeed when tried again later
    - ``execution`` → TIMEOUT for a ``TimeoutError``, PERMISSION_DENIED for a
      ``PermissionError``, else UNKNOWN; ``hook_error``, ``bad_result`` and any
      kind added later → UNKNOWN

    CONTEXT_OVERFLOW and RATE_LIMIT from the provider are run-level; see
    `RunResult.error_category`.
    """

    TIMEOUT = "timeout"
    VALIDATION = "validation"
    PERMISSION_DENIED = "permission_denied"
    RATE_LIMIT = "rate_limit"
    CONTEXT_OVERFLOW = "context_overflow"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


_CATEGORY_OF_KIND = {
    ErrorKind.PARSE: ErrorCategory.VALIDATION,
    ErrorKind.VALIDATION: ErrorCategory.VALIDATION,
    ErrorKind.NO_TOOL_CALL: ErrorCategory.VALIDATION,
    ErrorKind.TIMEOUT: ErrorCategory.TIMEOUT,
    ErrorKind.DENIED: ErrorCategory.PERMISSION_DENIED,
    ErrorKind.BLOCKED: ErrorCategory.PERMISSION_DENIED,
    ErrorKind.BUSY: ErrorCategory.RATE_LIMIT,
    ErrorKind.CANCELLED: ErrorCategory.CANCELLED,
}
_CATEGORY_OF_EXCEPTION = {
    "TimeoutError": ErrorCategory.TIMEOUT,
    "PermissionError": ErrorCategory.PERMISSION_DENIED,
}
# Run-level: the stop reasons that are failures, and the LLMError kinds behind ``llm_error``.
_CATEGORY_OF_STOP = {
    "deadline": ErrorCategory.TIMEOUT,
    "cancelled": ErrorCategory.CANCELLED,
    "context_overflow": ErrorCategory.CONTEXT_OVERFLOW,
    "refused": ErrorCategory.PERMISSION_DENIED,
    "hook_error": ErrorCategory.UNKNOWN,
}
_CATEGORY_OF_LLM_ERROR = {
    "rate_limit": ErrorCategory.RATE_LIMIT,
    "quota": ErrorCategory.RATE_LIMIT,
    "overloaded": ErrorCategory.RATE_LIMIT,
    "timeout": ErrorCategory.TIMEOUT,
    "context_length": ErrorCategory.CONTEXT_OVERFLOW,
    "auth": ErrorCategory.PERMISSION_DENIED,
    "refused": ErrorCategory.PERMISSION_DENIED,
    "bad_request": ErrorCategory.VALIDATION,
    "cancelled": ErrorCategory.CANCELLED,
}


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

    def __repr__(self) -> str:
        return masked_repr(self)

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
    # `args_summary` is built on first read (see `summary_of`): masking and cutting the
    # arguments is a fifth of a step's cost, and most results are never shown. These two
    # come first so that __init__ sets them before it sets `args_summary`.
    _summary: str = field(default="", init=False, repr=False, compare=False)
    _summary_args: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)
    args_summary: str = ""
    data: Any = None
    error: str | None = None
    error_kind: str | None = None
    retriable: bool = False
    duration_ms: float = 0.0
    warnings: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    call_id: str = ""

    def summary_of(self, args: dict[str, Any]) -> ToolResult:
        """Let `args_summary` be ``format_args(args)`` (cut to 200), built when first read."""
        self._summary_args = args
        return self

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def error_category(self) -> str | None:
        """One of `ErrorCategory` (the original looplet's names); None when the call succeeded."""
        if self.ok:
            return None
        kind = self.error_kind or ""
        if kind == ErrorKind.EXECUTION and isinstance(self.metadata, dict):
            exception = self.metadata.get("exception")
            if isinstance(exception, str):
                return _CATEGORY_OF_EXCEPTION.get(exception, ErrorCategory.UNKNOWN)
        return _CATEGORY_OF_KIND.get(kind, ErrorCategory.UNKNOWN)

    def __repr__(self) -> str:
        return masked_repr(self)

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


def args_hash(args: dict[str, Any]) -> str:
    """A stable fingerprint of a call's arguments (sha256 of canonical JSON).

    An approval or an intent names the arguments by this hash, so a decision
    taken for one set of arguments is never applied to another.
    """
    text = json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr)
    import hashlib  # here, not at the top: it maps OpenSSL (+4 MB), which most runs never need

    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(slots=True)
class PendingCall:
    """A call a ``pre_dispatch`` hook paused with ``Ask(reason)``: it waits for a human.

    `state.approve` / `state.reject` record the decision here (`decision` is
    ``"approved"`` or ``"rejected"``); passing the state back to the loop
    carries it out.

    Attributes:
        call_id: the call's id, unique in the run.
        tool: the tool it calls.
        args: the arguments it would run with (validated).
        args_hash: `args_hash(args)`; a decision is bound to it.
        reason: why the hook asked.
        decision: None until decided, then ``"approved"`` or ``"rejected"``.
        approved_args: the arguments approved (edited ones, if the human edited).
        note: the reason given with a rejection.
        original_args: the model's arguments, when a hook rewrote them before the pause.
        gate: the position of the ``pre_dispatch`` hook that asked; once approved,
            the hooks after it still decide the call (a later ``Deny`` wins).
        asked_by: ``"tool"`` when the tool itself returned ``Ask`` (its call is
            run again with the decision, approved or rejected, in ``ctx.decision``,
            and `approved_args` is handed to it rather than replacing the call's);
            empty when a gate asked.
        details: what the asker attached for the person deciding (JSON data).
    """

    call_id: str
    tool: str
    args: dict[str, Any]
    args_hash: str
    reason: str = ""
    decision: str | None = None
    approved_args: dict[str, Any] | None = None
    note: str = ""
    original_args: dict[str, Any] | None = None
    gate: int = field(default=-1, compare=False)
    asked_by: str = ""
    details: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return masked_repr(self)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "call_id": self.call_id,
            "tool": self.tool,
            "args": self.args,
            "args_hash": self.args_hash,
            "reason": self.reason,
            "gate": self.gate,
        }
        if self.original_args is not None:
            out["original_args"] = self.original_args
        if self.asked_by:
            out["asked_by"] = self.asked_by
        if self.details is not None:
            out["details"] = self.details
        if self.decision is not None:
            out["decision"] = self.decision
            out["approved_args"] = self.approved_args
            out["note"] = self.note
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PendingCall:
        approved = data.get("approved_args")
        original = data.get("original_args")
        return cls(
            call_id=str(data["call_id"]),
            tool=str(data["tool"]),
            args=dict(data["args"]),
            args_hash=str(data["args_hash"]),
            reason=str(data.get("reason", "")),
            decision=data.get("decision"),
            approved_args=None if approved is None else dict(approved),
            note=str(data.get("note", "")),
            original_args=None if original is None else dict(original),
            gate=int(data.get("gate", -1)),
            asked_by=str(data.get("asked_by", "")),
            details=None if data.get("details") is None else dict(data["details"]),
        )


@dataclass(slots=True)
class Intent:
    """A call whose tool started running and that has no step yet.

    The engine writes it into the run record before the tool body starts and
    adds the `result` when it returns; the step that concludes the call
    removes it. A run continued with an intent and no result cannot know
    whether the tool finished: see `docs/durability.md`.
    """

    call_id: str
    tool: str
    args: dict[str, Any]
    #: `args_hash(args)`; "" until first read (`hashed()`), so a step pays for it only if saved.
    args_hash: str = ""
    result: ToolResult | None = None

    def __repr__(self) -> str:
        return masked_repr(self)

    def hashed(self) -> str:
        """`args_hash`, computed on first use."""
        if not self.args_hash:
            self.args_hash = args_hash(self.args)
        return self.args_hash

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "call_id": self.call_id,
            "tool": self.tool,
            "args": self.args,
            "args_hash": self.hashed(),
        }
        if self.result is not None:
            out["result"] = self.result.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Intent:
        result = data.get("result")
        return cls(
            call_id=str(data["call_id"]),
            tool=str(data["tool"]),
            args=dict(data["args"]),
            args_hash=str(data["args_hash"]),
            result=None if result is None else ToolResult.from_dict(result),
        )


def _read_summary(self: ToolResult) -> str:
    args = self._summary_args
    if args is not None:
        self._summary = format_args(args)[:200]
        self._summary_args = None
    return self._summary


def _write_summary(self: ToolResult, value: str) -> None:
    self._summary = value
    self._summary_args = None


# Set after the class is made: the dataclass keeps `args_summary` as a field (constructor,
# equality, repr, fields()), and reading or writing it goes through the lazy property.
setattr(ToolResult, "args_summary", property(_read_summary, _write_summary))  # noqa: B010


@dataclass(slots=True)
class Usage:
    """Token counts reported by the provider (zero when it reported none).

    `input_tokens` counts every prompt token; `cached_tokens` those read from the
    provider's cache and `cache_write_tokens` those written to it (Anthropic), both
    part of `input_tokens`, each priced at its own rate (`looplet.backends.pricing`).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost: float = 0.0
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_tokens + other.cached_tokens,
            self.cost + other.cost,
            self.cache_write_tokens + other.cache_write_tokens,
        )

    def add(self, other: Usage) -> None:
        """Add `other` in place (used for running totals)."""
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cached_tokens += other.cached_tokens
        self.cost += other.cost
        self.cache_write_tokens += other.cache_write_tokens

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "cost": self.cost,
        }
        if self.cache_write_tokens:
            out["cache_write_tokens"] = self.cache_write_tokens
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Usage:
        return cls(
            int(data.get("input_tokens", 0)),
            int(data.get("output_tokens", 0)),
            int(data.get("cached_tokens", 0)),
            float(data.get("cost", 0.0)),
            int(data.get("cache_write_tokens", 0)),
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

    @property
    def elapsed_ms(self) -> float:
        """How long this step's tool ran, in milliseconds (the original looplet's name).

        It is `ToolResult.duration_ms`: the model call that proposed the step
        (`llm_ms`, shared by every step of its turn) and the hooks are not in it,
        so summing ``elapsed_ms`` over a run gives the time spent in tools.
        """
        return self.tool_result.duration_ms

    def pretty(self) -> str:
        """One human-readable line, e.g. ``#1 ✓ greet(name='Alice') → greeting: 'Hi' [0.1ms]``.

        A reply without a tool call shows its text: ``#2 ✗ (text) "Hello…" → ...``;
        a tool's warnings follow the time: ``... [3ms] ⚠ 1 warning: cut to 100 rows``.
        Secrets are masked before anything is cut to width, and control
        characters are neutralised, so the line is safe to print or log.
        """
        res = self.tool_result
        mark = "✗" if res.error else "✓"
        try:
            line = f"#{self.number} {mark} {self._call_text()} → {self._outcome_text()}"
            line += f" [{format_ms(res.duration_ms)}]{_warnings_text(res.warnings)}"
        except Exception as exc:  # a record a hook filled with values that refuse to render
            line = f"#{self.number} {mark} <step that cannot be shown: {type(exc).__name__}>"
        return _neutralize(line)

    def _call_text(self) -> str:
        call = self.tool_call
        if call.tool:
            return f"{redact_text(str(call.tool))}({format_args(call.args)})"
        text = call.reasoning if isinstance(call.reasoning, str) else ""
        if not text.strip():
            return "(empty reply)"
        return f'(text) "{_cut(redact_text(text[:_CLIP_CHARS]).strip(), _WIDTH_TEXT)}"'

    def _outcome_text(self) -> str:
        res = self.tool_result
        if res.error:
            return _cut(redact_text(str(res.error)[:_CLIP_CHARS]), _WIDTH_ERROR)
        return summarize(res.data)

    def __repr__(self) -> str:
        return masked_repr(self)

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
        dropped_calls: calls the model asked for that did not run: answered as
            never to run (a second done call), or left open by the stop (a
            continued run runs those first).
        pending: calls paused for approval (``approval_pending``), with their decisions.
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
    pending: list[PendingCall] = field(default_factory=list)

    def __post_init__(self) -> None:
        # `detail` is a sentence for people, often quoting an exception: masked once, here.
        if isinstance(self.detail, str) and self.detail:
            self.detail = redact_text(self.detail)

    @property
    def ok(self) -> bool:
        """True when the run ended with an accepted done call."""
        return self.stop_reason == StopReason.DONE

    @property
    def error_text(self) -> str | None:
        """``"<ExceptionType>: <message>"`` of `error` with secrets masked; None without an error."""
        if self.error is None:
            return None
        try:
            message = str(self.error)
        except Exception:  # an exception whose __str__ fails
            message = "<unprintable message>"
        return redact_text(f"{type(self.error).__name__}: {message}")

    @property
    def error_category(self) -> str | None:
        """One of `ErrorCategory` when the run ended by a failure; None when it ended normally.

        Failures: ``llm_error`` (categorised by the `LLMError` kind: ``rate_limit``,
        ``quota`` and ``overloaded`` → RATE_LIMIT, ``context_length`` →
        CONTEXT_OVERFLOW, ``timeout`` → TIMEOUT, ``auth`` and ``refused`` →
        PERMISSION_DENIED, ``bad_request`` → VALIDATION), ``context_overflow``,
        ``deadline`` (TIMEOUT), ``cancelled``, ``refused`` and ``hook_error``
        (UNKNOWN). ``done``, the budgets, ``no_tool_call``, ``approval_pending``
        and a hook's ``Stop`` are normal endings.
        """
        if self.stop_reason == StopReason.LLM_ERROR:
            kind = str(getattr(self.error, "kind", ""))
            return _CATEGORY_OF_LLM_ERROR.get(kind, ErrorCategory.UNKNOWN)
        return _CATEGORY_OF_STOP.get(self.stop_reason)

    def __repr__(self) -> str:
        return masked_repr(self)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict; ``error`` and ``detail`` are masked text, steps stay lossless."""
        return {
            "stop_reason": self.stop_reason,
            "final_answer": self.final_answer,
            "steps": [s.to_dict() for s in self.steps],
            "usage": self.usage.to_dict(),
            "llm_calls": self.llm_calls,
            "elapsed_s": self.elapsed_s,
            "error": self.error_text,
            "detail": redact_text(self.detail) if self.detail else self.detail,
            "dropped_calls": [c.to_dict() for c in self.dropped_calls],
            "pending": [p.to_dict() for p in self.pending],
        }


# -- masked repr ---------------------------------------------------------------------


def masked_repr(record: Any) -> str:
    """A dataclass-style repr of `record` with every field's secrets masked (INV-6)."""
    parts = ", ".join(f"{f.name}={_masked_field(getattr(record, f.name))}" for f in fields(record) if f.repr)
    return f"{type(record).__name__}({parts})"


#: How much of a field a record's repr shows: everything a person reads, bounded so a
#: 10 MB argument costs a repr no more than a few hundred KB of work.
_REPR_CHARS = 65_536
_REPR_ITEMS = 1_000
_REPR_DEPTH = 20
_REPR_MARGIN = 256  # cut off after masking, so no half secret at a cut is shown


def _repr_bounded(value: Any, depth: int = 0) -> Any:
    """`value` as is when small; past the bounds, a copy cut to them (masked before each cut)."""
    kind = type(value)
    if kind is str:
        if len(value) <= _REPR_CHARS:
            return value
        return redact_text(value[:_REPR_CHARS])[: _REPR_CHARS - _REPR_MARGIN] + "…"
    if depth >= _REPR_DEPTH:
        return _Shown("…") if isinstance(value, dict | list | tuple) else value
    if kind is dict:
        items = list(islice(value.items(), _REPR_ITEMS))
        out = {k: _repr_bounded(v, depth + 1) for k, v in items}
        if len(value) > _REPR_ITEMS:
            out[_Shown("…")] = _Shown(f"{len(value) - _REPR_ITEMS} more")
        return out
    if kind is list or kind is tuple:
        kept = [_repr_bounded(v, depth + 1) for v in islice(value, _REPR_ITEMS)]
        if len(value) > _REPR_ITEMS:
            kept.append(_Shown(f"… {len(value) - _REPR_ITEMS} more"))
        return kept if kind is list else tuple(kept)
    return value


def _masked_field(value: Any) -> str:
    try:
        text = repr(redact_value(_repr_bounded(value)))
    except Exception:  # a user object whose __repr__ fails
        text = f"<{type(value).__name__}>"
    return redact_text(text)  # objects redact_value leaves alone (exceptions, nested records)


# -- one-line rendering -------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

# Widths of the parts of a pretty() line.
_WIDTH_ARG = 40
_WIDTH_VALUE = 60
_WIDTH_DATA = 80
_WIDTH_TEXT = 40
_WIDTH_ERROR = 200
_WIDTH_WARNINGS = 80

# What a rendering keeps of a value before masking it: far more than any width
# above, so a cut here is never visible, and bounded, so a huge value costs little.
_CLIP_CHARS = 4096
_CLIP_ITEMS = 8
_CLIP_DEPTH = 6


def _neutralize(text: str) -> str:
    """Replace control characters (terminal escapes among them) and newlines."""
    return _CONTROL.sub("�", text.replace("\n", "⏎").replace("\t", " "))


def _bounded_repr() -> reprlib.Repr:
    # Bounded in depth and item count; strings arrive clipped to _CLIP_CHARS and
    # are never cut in the middle (that would show a tail no mask had seen).
    r = reprlib.Repr()
    r.maxlevel = 4
    r.maxstring = _CLIP_CHARS + 2
    r.maxother = 200
    r.maxlong = 200
    return r


_REPR = _bounded_repr()


class _Shown:
    """An object that is not plain data, kept in a rendering as its (masked, bounded) repr."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _clipped(value: Any, depth: int = 0) -> Any:
    """A small copy of `value` holding everything a one-line rendering can show."""
    kind = type(value)
    if kind is str:
        return value[:_CLIP_CHARS]
    if value is None or kind is bool or kind is int or kind is float:
        return value
    if depth >= _CLIP_DEPTH:
        return _Shown("…")
    if isinstance(value, dict):
        return {_clipped(k, depth + 1): _clipped(v, depth + 1) for k, v in islice(value.items(), _CLIP_ITEMS)}
    if isinstance(value, (list, tuple)):
        items = [_clipped(v, depth + 1) for v in islice(value, _CLIP_ITEMS)]
        return items if isinstance(value, list) else tuple(items)
    return _Shown(redact_text(_full_repr(value)[:_CLIP_CHARS]))


def _full_repr(value: Any) -> str:
    """``repr(value)`` uncut (a cut before masking could leave half a secret), or a placeholder."""
    try:
        return repr(value)
    except Exception:  # a user object whose __repr__ fails, an int too long to print
        return f"<{type(value).__name__}>"


def _shown(value: Any) -> Any:
    """`value` as a rendering may show it: clipped, then masked."""
    return redact_value(_clipped(value))


def _short(value: Any, limit: int = _WIDTH_ARG) -> str:
    """A masked value's repr, cut to `limit` characters."""
    kind = type(value)
    if (kind is str and len(value) <= 200) or kind is bool or value is None or kind is float:
        text = repr(value)  # the common cases, without reprlib's overhead
    elif kind is int and -(10**18) < value < 10**18:
        text = repr(value)
    else:
        text = _bounded(value)
    return _cut(text, limit)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _bounded(value: Any) -> str:
    try:
        return _REPR.repr(value)
    except Exception:  # a user object whose __repr__ fails
        return f"<{type(value).__name__}>"


def format_args(args: dict[str, Any]) -> str:
    """Render call arguments as ``name='Alice', n=3``: secrets masked, then long values cut."""
    shown = _shown(args)
    if not isinstance(shown, dict):  # a malformed call; shown as it came
        return _short(shown)
    return ", ".join(f"{k}={_short(v)}" for k, v in shown.items())


def summarize(data: Any) -> str:
    """A few words on a tool's data: ``12 items``, ``greeting: 'Hello'``, ``a: 1, b: 'x'``.

    A dict is always shown as ``key: value`` pairs (cut to width, ``…`` when
    cut); a list, or a dict holding only a list, as its length.
    """
    if isinstance(data, dict):
        if len(data) == 1:
            value = next(iter(data.values()))
            if isinstance(value, list):
                return _count(value)
        if not data:
            return "{}"
        shown = _shown(data)
        width = _WIDTH_VALUE if len(data) == 1 else _WIDTH_ARG
        pairs = ", ".join(f"{_key_text(k)}: {_short(v, width)}" for k, v in shown.items())
        if len(data) > len(shown):
            pairs += ", …"
        return _cut(pairs, _WIDTH_DATA)
    if isinstance(data, list):
        return _count(data)
    return _short(_shown(data), _WIDTH_VALUE)


def _count(items: list[Any]) -> str:
    return "1 item" if len(items) == 1 else f"{len(items)} items"


def _key_text(key: Any) -> str:
    return _cut(key if isinstance(key, str) else repr(key), 30)


def _warnings_text(warnings: Any) -> str:
    """`` ⚠ 2 warnings: a; b`` (masked, cut to width), or nothing."""
    if not warnings or not isinstance(warnings, list):
        return ""
    texts = "; ".join(redact_text(text_of(w, brief=True)[:_CLIP_CHARS]) for w in warnings[:_CLIP_ITEMS])
    label = "1 warning" if len(warnings) == 1 else f"{len(warnings)} warnings"
    return f" ⚠ {label}: {_cut(texts, _WIDTH_WARNINGS)}"


def text_of(value: Any, *, brief: bool = False) -> str:
    """`value` as text for a message, whatever its ``__str__`` does (it may raise).

    An object that cannot be printed shows as its type: ``<Name>`` when `brief`
    (a one-line `Step.pretty`), else ``<Name with an unprintable message>``.
    """
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except Exception:  # an object whose __str__ fails
        name = type(value).__name__
        return f"<{name}>" if brief else f"<{name} with an unprintable message>"


def format_ms(ms: float) -> str:
    if ms < 10:
        return f"{ms:.1f}ms"
    if ms < 1000:
        return f"{ms:.0f}ms"
    return f"{ms / 1000:.1f}s"
