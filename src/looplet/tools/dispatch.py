"""Running validated calls: timing, time limits, exceptions, and normalising results.

The pure parts (`finish_ok`, `finish_error`, `timeout_result`) are shared by
the sync and async runners, which only differ in how they wait.

Policy for what a tool raises (the rule of `looplet.errors`):

- ``KeyboardInterrupt`` and ``asyncio.CancelledError`` propagate.
- Everything else (``Exception``, ``SystemExit``, ``GeneratorExit``, custom
  ``BaseException`` subclasses) becomes an ``execution`` error result (a tool
  must not end the host program); the model sees the exception type and its
  message with secrets masked; the traceback goes to the ``looplet.tools`` logger.

Nothing after the tool body returns may raise: a value that cannot be
recorded becomes a ``bad_result`` error that says why (the tool did run).

Time limits: an async tool is cancelled at its limit. A sync tool with a
limit runs in a worker thread; Python cannot stop a thread, so at the limit
the result says the tool may still be running and `ToolResult.metadata` has
``orphaned: True``; ``ToolSpec.orphans`` counts such threads until they end
(the loop decides what a later call to that tool gets).
"""

from __future__ import annotations

import contextvars
import threading
import time
from typing import Any

from ..errors import propagates
from ..hooks.decisions import Ask
from ..redaction import redact_text
from ..types import ErrorKind, ToolResult, text_of
from .registry import PreparedCall, error_result
from .results import normalize_result

__all__ = ["run_sync", "run_async", "busy_result"]

_MAX_ERROR_CHARS = 4000


BAD_RESULT = "bad_result"


def finish_ok(prepared: PreparedCall, value: Any, started: float) -> ToolResult:
    call = prepared.call
    duration = (time.perf_counter() - started) * 1000
    if isinstance(value, Ask):
        return _paused(prepared, value, duration)
    try:
        data = normalize_result(value)
    except Exception as exc:  # the tool ran; its value cannot be recorded
        result = error_result(
            call,
            BAD_RESULT,
            f"{call.tool} ran, but its result could not be recorded "
            f"({type(exc).__name__}: {_text_of(exc)}); do not assume it failed",
        )
        result.duration_ms = duration
    else:
        result = ToolResult(
            tool=call.tool, data=data, duration_ms=duration, call_id=call.call_id
        ).summary_of(prepared.args)
    _keep_context(prepared, result)
    return result


def _paused(prepared: PreparedCall, ask: Ask, duration: float) -> ToolResult:
    """The result of a tool that returned ``Ask``: its call waits for a person (the engine
    turns it into a pending call). A tool without a ``ctx`` could never hear the decision,
    so for it this is an error instead."""
    call = prepared.call
    if prepared.ctx is None:
        text = f"{call.tool} returned Ask, but takes no ctx parameter to hear the decision in"
        result = error_result(call, ErrorKind.EXECUTION, text)
    else:
        reason = redact_text(text_of(ask.reason))
        details = ask.details if isinstance(ask.details, dict) else None
        result = error_result(call, ErrorKind.PAUSED, f"paused: {reason}", ask=reason, details=details)
    result.duration_ms = duration
    return result


def _text_of(exc: BaseException) -> str:
    return redact_text(text_of(exc))


def _keep_context(prepared: PreparedCall, result: ToolResult) -> None:
    """Carry what the tool said through its ToolContext (warnings, progress) into its result."""
    ctx = prepared.ctx
    if ctx is None:
        return
    result.warnings = [w if isinstance(w, str) else repr(w) for w in ctx.warnings]
    if ctx.progress:
        result.metadata["progress"] = [[message, fraction] for message, fraction in ctx.progress]


def finish_error(prepared: PreparedCall, exc: BaseException, started: float) -> ToolResult:
    name = type(exc).__name__
    detail = _text_of(exc)
    if isinstance(exc, SystemExit):
        detail = f"the tool called exit({exc.code!r}); it was stopped and the run goes on"
    message = f"{name}: {detail}" if detail else name
    if len(message) > _MAX_ERROR_CHARS:
        message = message[: _MAX_ERROR_CHARS - 1] + "…"
    import logging
    import traceback

    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    logging.getLogger("looplet.tools").info(
        "tool %s raised %s\n%s", prepared.call.tool, name, redact_text(tb)
    )
    result = error_result(prepared.call, ErrorKind.EXECUTION, message, exception=name)
    result.duration_ms = (time.perf_counter() - started) * 1000
    _keep_context(prepared, result)
    return result


def timeout_result(prepared: PreparedCall, limit: float, started: float, *, orphaned: bool) -> ToolResult:
    if orphaned:
        text = (
            f"{prepared.call.tool} did not finish within {limit:g}s. Its thread could not be stopped "
            "and may still be running; the tool refuses new calls until it ends"
        )
    else:
        text = f"{prepared.call.tool} did not finish within {limit:g}s and was cancelled"
    result = error_result(prepared.call, ErrorKind.TIMEOUT, text, retriable=True, orphaned=orphaned)
    result.duration_ms = (time.perf_counter() - started) * 1000
    return result


def busy_result(prepared: PreparedCall) -> ToolResult:
    """The answer to a call whose tool is still running from a call of this run that timed out."""
    return error_result(
        prepared.call,
        ErrorKind.BUSY,
        f"{prepared.call.tool} is still running from an earlier call that timed out; "
        "try again later or use another tool",
        retriable=True,
    )


#: (value, what the tool raised, whether our time limit cut it off)
Outcome = tuple[Any, BaseException | None, bool]


def run_sync(prepared: PreparedCall, timeout: float | None) -> ToolResult:
    """Run one call in the calling thread (or a worker thread when it has a time limit)."""
    spec = prepared.spec
    started = time.perf_counter()
    if spec.is_async:
        outcome = _run_coroutine_blocking(prepared, timeout)
    elif timeout is not None:
        return _run_in_thread(prepared, timeout, started)
    else:  # in a copy of the caller's context, as every other path: a tool's ContextVars stay its own
        outcome = (*contextvars.copy_context().run(_call, prepared), False)
    return _finish(prepared, outcome, timeout, started)


def _call(prepared: PreparedCall) -> tuple[Any, BaseException | None]:
    """Call a sync tool, catching what it raises here, before it can cross a thread or a future.

    (A ``GeneratorExit`` that reached an ``await`` would close the awaiting
    coroutines instead of being caught, so it must not travel as an exception.)
    """
    try:
        return prepared.spec.fn(**prepared.kwargs()), None
    except BaseException as exc:
        if propagates(exc):
            raise
        return None, exc


async def _await_tool(prepared: PreparedCall, timeout: float | None) -> Outcome:
    """Await an async tool within `timeout`; its own exceptions are caught where they are raised."""
    import asyncio

    async def guarded() -> tuple[Any, BaseException | None]:
        try:
            return await prepared.spec.fn(**prepared.kwargs()), None
        except BaseException as exc:
            if propagates(exc):
                raise
            return None, exc

    if timeout is None:
        return (*(await guarded()), False)
    scope = asyncio.timeout(timeout)
    try:
        async with scope:
            return (*(await guarded()), False)
    except TimeoutError:
        if scope.expired():
            return None, None, True
        raise


def _finish(prepared: PreparedCall, outcome: Outcome, timeout: float | None, started: float) -> ToolResult:
    value, error, timed_out = outcome
    if timed_out:
        return timeout_result(prepared, timeout or 0.0, started, orphaned=False)
    if error is not None:
        return finish_error(prepared, error, started)
    return finish_ok(prepared, value, started)


def _run_coroutine_blocking(prepared: PreparedCall, timeout: float | None) -> Outcome:
    """Run an async tool from sync code: on a fresh event loop (in a thread if one is running)."""

    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await_tool(prepared, timeout))
    ctx = contextvars.copy_context()
    with ThreadPoolExecutor(1, thread_name_prefix="looplet-async-tool") as pool:
        return pool.submit(ctx.run, asyncio.run, _await_tool(prepared, timeout)).result()


_ORPHAN_LOCK = threading.Lock()


def _run_in_thread(prepared: PreparedCall, timeout: float, started: float) -> ToolResult:
    spec = prepared.spec
    box: dict[str, Any] = {"orphaned": False}
    finished = prepared.finished = threading.Event()
    ctx = contextvars.copy_context()

    def target() -> None:
        try:
            box["value"], box["error"] = ctx.run(_call, prepared)
        except BaseException as exc:  # KeyboardInterrupt; reported to the caller below
            box["error"] = exc
        finally:
            with _ORPHAN_LOCK:
                finished.set()
                if box["orphaned"]:
                    spec.orphans -= 1

    worker = threading.Thread(target=target, name=f"looplet-tool-{spec.name}", daemon=True)
    worker.start()
    if not finished.wait(timeout):
        with _ORPHAN_LOCK:
            if not finished.is_set():
                box["orphaned"] = True
                spec.orphans += 1
        if box["orphaned"]:
            return timeout_result(prepared, timeout, started, orphaned=True)
    error = box.get("error")
    if error is not None and propagates(error):
        raise error
    return _finish(prepared, (box.get("value"), error, False), None, started)


async def run_async(prepared: PreparedCall, timeout: float | None) -> ToolResult:
    """Run one call from the async loop: coroutines awaited, sync functions in a thread."""
    import asyncio

    spec = prepared.spec
    started = time.perf_counter()
    if spec.is_async:
        outcome = await _await_tool(prepared, timeout)
    elif timeout is None:
        outcome = (*(await asyncio.to_thread(_call, prepared)), False)
    else:
        return await asyncio.to_thread(_run_in_thread, prepared, timeout, started)
    return _finish(prepared, outcome, timeout, started)
