"""Interceptors: ``around_llm`` / ``around_tool`` hook methods wrapped around every effect.

The engine never sees them: the two drivers build the chain when they carry
out a model call or a tool run, so tracing, provenance, metrics, checkpoints
and durable-engine drivers are written once, as hooks, without touching the
engine. Interceptors nest in list order: the first one given is the
outermost and sees what the later ones did.

An interceptor that raises around a model call is that call's failure (the
run stops ``llm_error``); around a tool, its call gets an ``execution``
error naming the interceptor (the run goes on, like for a tool that raised).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .errors import ConfigError, propagates
from .tools.context import is_async_callable
from .tools.registry import PreparedCall, error_result
from .types import ErrorKind, ToolResult

__all__ = ["llm_chain", "tool_chain", "allm_chain", "atool_chain", "refuse_async"]

Bound = tuple[object, Callable[..., Any]]


def refuse_async(arounds: list[Bound]) -> None:
    """The sync loop cannot await: an ``async def`` interceptor there is a setup error."""
    for hook, around in arounds:
        if is_async_callable(around):
            name = getattr(around, "__name__", "around")
            raise ConfigError(
                f"{type(hook).__name__}.{name} is async; use async_composable_loop, or a plain method"
            )


def _blame(exc: BaseException, hook: object, method: str) -> None:
    """Mark `exc` with the interceptor it first left (an outer one re-raising keeps the mark)."""
    if getattr(exc, "_looplet_interceptor", None) is None:
        try:
            exc._looplet_interceptor = f"{type(hook).__name__}.{method}"  # type: ignore[attr-defined]
        except AttributeError:  # an exception type with __slots__
            pass


def _failed(call: PreparedCall, exc: BaseException) -> ToolResult:
    where = getattr(exc, "_looplet_interceptor", None) or "an around_tool interceptor"
    text = f"{where} failed: {type(exc).__name__}: {exc}"
    return error_result(call.call, ErrorKind.EXECUTION, text, interceptor=where, exception=type(exc).__name__)


def _checked(call: PreparedCall, out: object, hook: object) -> ToolResult:
    if isinstance(out, ToolResult):
        return out
    text = f"{type(hook).__name__}.around_tool returned {type(out).__name__}; it must return a ToolResult"
    return error_result(call.call, ErrorKind.EXECUTION, text, interceptor=type(hook).__name__)


# -- sync ------------------------------------------------------------------------------


def llm_chain(arounds: list[Bound], complete: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`complete` wrapped by every ``around_llm``: call it with the request."""
    fn = complete
    for hook, around in reversed(arounds):
        fn = _llm_layer(hook, around, fn)
    return fn


def _llm_layer(hook: object, around: Callable[..., Any], inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def layer(request: Any) -> Any:
        try:
            return around(request, inner)
        except BaseException as exc:
            _blame(exc, hook, "around_llm")
            raise

    return layer


def tool_chain(arounds: list[Bound], call: PreparedCall, run: Callable[[], ToolResult]) -> ToolResult:
    """Run `call` through every ``around_tool``; what an interceptor raises becomes the call's error."""
    fn = run
    for hook, around in reversed(arounds):
        fn = _tool_layer(hook, around, call, fn)
    try:
        return fn()
    except BaseException as exc:
        if propagates(exc):
            raise
        return _failed(call, exc)


def _tool_layer(
    hook: object, around: Callable[..., Any], call: PreparedCall, inner: Callable[[], ToolResult]
) -> Callable[[], ToolResult]:
    def layer() -> ToolResult:
        try:
            return _checked(call, around(call, inner), hook)
        except BaseException as exc:
            _blame(exc, hook, "around_tool")
            raise

    return layer


# -- async -----------------------------------------------------------------------------


def allm_chain(
    arounds: list[Bound], complete: Callable[[Any], Awaitable[Any]]
) -> Callable[[Any], Awaitable[Any]]:
    """The async twin of `llm_chain`; a plain ``around_llm`` runs in a worker thread."""
    fn = complete
    for hook, around in reversed(arounds):
        fn = _allm_layer(hook, around, fn)
    return fn


def _allm_layer(
    hook: object, around: Callable[..., Any], inner: Callable[[Any], Awaitable[Any]]
) -> Callable[[Any], Awaitable[Any]]:
    async def layer(request: Any) -> Any:
        try:
            if is_async_callable(around):
                return await around(request, inner)
            return await _in_thread(around, request, inner)
        except BaseException as exc:
            _blame(exc, hook, "around_llm")
            raise

    return layer


async def atool_chain(
    arounds: list[Bound], call: PreparedCall, run: Callable[[], Awaitable[ToolResult]]
) -> ToolResult:
    """The async twin of `tool_chain`."""
    fn = run
    for hook, around in reversed(arounds):
        fn = _atool_layer(hook, around, call, fn)
    try:
        return await fn()
    except BaseException as exc:
        if propagates(exc):
            raise
        return _failed(call, exc)


def _atool_layer(
    hook: object, around: Callable[..., Any], call: PreparedCall, inner: Callable[[], Awaitable[ToolResult]]
) -> Callable[[], Awaitable[ToolResult]]:
    async def layer() -> ToolResult:
        try:
            if is_async_callable(around):
                out = await around(call, inner)
            else:
                out = await _in_thread(around, call, inner)
            return _checked(call, out, hook)
        except BaseException as exc:
            _blame(exc, hook, "around_tool")
            raise

    return layer


async def _in_thread(around: Callable[..., Any], subject: Any, inner: Callable[..., Awaitable[Any]]) -> Any:
    """Run a plain interceptor in a thread of its own; its `proceed` runs the rest of the
    chain back on the event loop and waits for it.

    Not in the loop's shared pool: the interceptor's thread waits for the tool, and
    a sync tool needs a thread from that pool, so a batch as wide as the pool would
    wait for itself forever.
    """
    import asyncio
    import contextvars
    import threading

    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def proceed(*args: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(_awaited(inner, *args), loop).result()

    def work() -> None:
        try:
            value = context.run(_no_stop_iteration, around, subject, proceed)
        except BaseException as exc:  # handed to the awaiting task, which decides
            loop.call_soon_threadsafe(_settle, outcome, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, outcome, value, None)

    threading.Thread(target=work, name="looplet-interceptor", daemon=True).start()
    return await outcome


def _settle(outcome: Any, value: Any, exc: BaseException | None) -> None:
    if outcome.done():  # the awaiting task was cancelled meanwhile
        return
    if exc is not None:
        outcome.set_exception(exc)
    else:
        outcome.set_result(value)


def _no_stop_iteration(fn: Callable[..., Any], *args: Any) -> Any:
    """A StopIteration cannot cross into an asyncio future (the await would never end)."""
    try:
        return fn(*args)
    except StopIteration as exc:
        raise RuntimeError(f"{getattr(fn, '__qualname__', fn)} raised StopIteration") from exc


async def _awaited(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    return await fn(*args)
