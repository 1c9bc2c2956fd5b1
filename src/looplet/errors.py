"""The library's typed exceptions: everything looplet raises is a `LoopError`.

What propagates out of a run, and what is contained (one rule for every hook
slot, every tool and both drivers):

- ``KeyboardInterrupt`` and ``asyncio.CancelledError`` propagate: they are the
  caller's and the event loop's signals. The run still ends cleanly first
  (``on_loop_end`` hooks run once, stop reason ``cancelled``).
- Everything else user code raises (``Exception``, ``StopIteration``,
  ``SystemExit``, a stray ``GeneratorExit``, custom ``BaseException``
  subclasses) is contained: from a
  tool it becomes an ``execution`` error result the model sees; from a hook it
  ends the run with ``hook_error``; from a backend, with ``llm_error``. A tool
  or a hook must not end the host program.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = [
    "LoopError",
    "ConfigError",
    "ParseError",
    "LLMError",
    "ScriptExhaustedError",
    "DeadlineReached",
    "HookError",
    "ToolDefinitionError",
    "DecisionError",
    "CheckpointError",
    "CheckpointLocked",
    "propagates",
]


def propagates(exc: BaseException) -> bool:
    """Whether `exc` must leave the run (Ctrl-C, task cancellation) rather than be contained."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    aio = sys.modules.get("asyncio")  # without asyncio loaded, no CancelledError can exist
    return aio is not None and isinstance(exc, aio.CancelledError)


class LoopError(Exception):
    """Base class of every error looplet raises on purpose."""


class ConfigError(LoopError, ValueError):
    """A setting, argument or environment variable is missing or wrong."""


class ParseError(LoopError, ValueError):
    """Model output could not be read as a tool call.

    Attributes:
        raw: the text that failed to parse (possibly long; cut it before showing).
        attempted: whether the reply looks like an attempt at a tool call that
            went wrong (JSON cut off or broken around a ``"tool"``, ``"tools"``,
            ``"tool_name"`` or ``"function"`` key, or a ``"name"`` beside an
            arguments key; a call shape with an empty or non-string name; a batch
            with an item that is not a call). False for a plain answer that merely
            holds brackets: prose, markdown links, ``[1]`` citations, code
            samples, JSON data that is not a call. The loop uses it to tell an
            answer given in text (which ends a run that has no done tool) from a
            broken call (which the model is told about and may retry).
    """

    def __init__(self, message: str, raw: str = "", *, attempted: bool = False) -> None:
        super().__init__(message)
        self.raw = raw
        self.attempted = attempted


class DecisionError(LoopError, ValueError):
    """An approval decision that cannot be applied: an unknown call id, changed
    arguments, or edited arguments that do not validate."""


class CheckpointError(LoopError):
    """A saved run cannot be read or written: corrupt, truncated, foreign, or from a newer looplet.

    Attributes:
        path: the file (or the store's name for the run) that was refused.
        reason: what was wrong with it, in words.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class CheckpointLocked(CheckpointError):
    """Another process is continuing this run (it holds the run's lock)."""


class ToolDefinitionError(LoopError, TypeError):
    """A function cannot be turned into a tool (bad signature or type hints)."""


class LLMError(LoopError):
    """A call to the model failed.

    Attributes:
        kind: what went wrong, one of ``auth``, ``quota``, ``rate_limit``,
            ``server``, ``overloaded``, ``timeout``, ``connection``,
            ``context_length``, ``bad_request``, ``bad_response``, ``refused``,
            ``cancelled`` (a retry wait was cut short by the cancel token),
            ``script_exhausted`` or ``unknown``.
        status: the HTTP status, when there was one.
        request_id: the provider's request id, when it sent one.
        retriable: whether trying again later could succeed.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str = "unknown",
        status: int | None = None,
        request_id: str | None = None,
        retriable: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        #: the attempts that failed before this error, as `LLMResponse.retries` lists them
        self.retries: list[dict[str, Any]] = []
        self.request_id = request_id
        self.retriable = retriable

    def __str__(self) -> str:
        text = super().__str__()
        extra = [f"kind={self.kind}"]
        if self.status is not None:
            extra.append(f"status={self.status}")
        if self.request_id:
            extra.append(f"request_id={self.request_id}")
        return f"{text} ({', '.join(extra)})"


class ScriptExhaustedError(LLMError):
    """A scripted backend was asked for more responses than it was given."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="script_exhausted")


class DeadlineReached(LLMError):
    """A model call given up because the run's deadline came first: kind ``timeout``.

    Raised instead of waiting for an attempt that could not start in time, or
    of making a call after the deadline. Its own class lets the loop report
    "the run is out of time" (stop reason ``deadline``) rather than a
    provider's timeout; `status` and `request_id` are the last failure's.
    """

    def __init__(self, message: str, *, status: int | None = None, request_id: str | None = None) -> None:
        super().__init__(message, kind="timeout", status=status, request_id=request_id, retriable=True)


class HookError(LoopError):
    """A hook method raised; names the hook and the method."""

    def __init__(self, hook: object, method: str, error: BaseException) -> None:
        self.hook_name = type(hook).__name__
        self.method = method
        self.error = error
        from .redaction import redact_text

        try:
            text = str(error)
        except Exception:
            text = "<unprintable message>"
        super().__init__(f"{self.hook_name}.{method} raised {type(error).__name__}: {redact_text(text)}")
