"""`ToolContext`, handed to tools that take a ``ctx`` parameter, and `CancelToken`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..types import Usage

__all__ = ["ToolContext", "CancelToken", "approval_verdict", "is_async_callable"]


class CancelToken:
    """A thread-safe flag a caller sets to stop a run (and tools can poll or wait on).

    A run links its own token to the one you pass (`child()`), so cancelling
    yours stops the run, while the run ending does not cancel yours.
    """

    __slots__ = ("_event", "reason", "_children", "_lock", "_parent")

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""
        self._children: list[CancelToken] = []
        self._lock = threading.Lock()
        self._parent: CancelToken | None = None

    def cancel(self, reason: str = "cancelled") -> None:
        """Fire the token (and every token linked below it); the first reason is kept."""
        with self._lock:
            if self._event.is_set():
                return
            self.reason = reason
            self._event.set()
            children = list(self._children)
        for child in children:
            child.cancel(reason)

    def child(self) -> CancelToken:
        """A new token that fires when this one does (but not the other way round)."""
        token = CancelToken()
        self.link(token)
        return token

    def link(self, token: CancelToken) -> None:
        """Make `token` fire when this one does (at once if this one already has)."""
        with self._lock:
            if not self._event.is_set():
                self._children.append(token)
                token._parent = self
                return
        token.cancel(self.reason)

    def detach(self) -> None:
        """Unlink this token from the one it was made from (`child()`); a no-op otherwise."""
        parent, self._parent = self._parent, None
        if parent is not None:
            with parent._lock:
                if self in parent._children:
                    parent._children.remove(self)

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until cancelled or `timeout` passes; True if cancelled."""
        return self._event.wait(timeout)

    def __repr__(self) -> str:
        return f"CancelToken(cancelled={self.cancelled})"


def is_async_callable(fn: object) -> bool:
    """Whether calling `fn` gives a coroutine (an ``async def`` or an object with one as ``__call__``)."""
    import inspect

    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004


def approval_verdict(answer: object) -> tuple[bool, str | None]:
    """Read an approver's answer, failing closed: (approved, why not).

    Only ``True`` or an `Allow` decision approves. ``False``, ``None`` and a
    `Deny` refuse; anything else (a string such as ``"no"`` or ``"yes"``, a
    number, an un-awaited coroutine) refuses too, with a reason naming it.
    """
    from ..hooks.decisions import Allow, Deny

    if answer is True or isinstance(answer, Allow):
        return True, None
    if answer is False or answer is None:
        return False, None
    if isinstance(answer, Deny):
        return False, answer.reason
    return False, (
        f"the approver returned {type(answer).__name__} {answer!r:.80}; only True or Allow() approves"
    )


@dataclass
class ToolContext:
    """What a tool may use besides its arguments.

    Attributes:
        llm: the run's backend (for tools that ask the model something).
        call_id: the id of this call; use it as an idempotency key.
        tool: the tool's name.
        step: the number of the step this call belongs to.
        cancel_token: set when the run is being cancelled or has ended; long tools should poll it.
        metadata: the run's state metadata (shared, mutable).
        warnings: what `warn()` recorded; it reaches the model with the result.
        progress: what `report_progress()` recorded.
        approver: answers `approve()`; a plain function, or an ``async def`` in
            the async loop.
        event_loop: set by the async loop, so a sync tool running in a worker
            thread can have an async approver answered on it.
        run_id: the id of the run making the call.
        steps_left: the run's step budget left after this call (None outside a loop);
            a tool that starts work of its own (a sub-agent) keeps within it.
        gates: the run's ``pre_dispatch`` hooks, in order, for a tool that runs
            calls of its own (a sub-agent) under the same rules.
        decision: for a tool that returned ``Ask`` and is called again: what the
            person decided, ``{"decision": "approved" | "rejected", "args": ...,
            "note": ...}``; None otherwise.
        tool_usage: model usage the tool spent on the run's behalf (a sub-agent's),
            added with `add_usage`; the run adds it to its totals with the step.
    """

    llm: Any = None
    call_id: str = ""
    tool: str = ""
    step: int = 0
    cancel_token: CancelToken = field(default_factory=CancelToken)
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    progress: list[tuple[str, float | None]] = field(default_factory=list)
    approver: Callable[[str], Any] | None = None
    on_progress: Callable[[str, float | None], None] | None = None
    event_loop: Any = field(default=None, repr=False)
    run_id: str = ""
    steps_left: int | None = None
    gates: tuple[Any, ...] = field(default=(), repr=False)
    decision: dict[str, Any] | None = None
    tool_usage: Usage = field(default_factory=Usage)
    _usage_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add_usage(self, usage: Usage) -> None:
        """Count `usage` (tokens and cost a tool spent calling a model) in the run's totals,
        once, when this call's step is recorded; a call that pauses is not counted yet."""
        with self._usage_lock:
            self.tool_usage.add(usage)

    def warn(self, message: object) -> None:
        """Attach a warning to this call's result; the model sees it (any value is kept as text)."""
        self.warnings.append(message if isinstance(message, str) else _as_text(message))

    def approve(self, question: str) -> bool:
        """Ask a human (through the run's approver) whether to go on; True only on an explicit yes.

        Fails closed: without an approver, when it raises, or when it answers
        anything but ``True``/``Allow()``, the answer is False and a warning
        says why. An async approver is run on the loop's event loop (async
        tools should ``await ctx.aapprove(...)`` instead).
        """
        if self.approver is None:
            return self._refused(f"approval needed but no approver is configured: {question}")
        is_async = is_async_callable(self.approver)
        problem = self._loop_problem() if is_async else None
        if problem:
            return self._refused(f"approval refused: {problem}")
        try:
            if is_async:
                import asyncio

                answer = asyncio.run_coroutine_threadsafe(self.approver(question), self.event_loop).result()
            else:
                answer = self.approver(question)
                if _awaitable(answer):
                    _discard(answer)
                    return self._refused(
                        "the approver returned an awaitable; an async approver needs async_composable_loop"
                    )
        except Exception as exc:
            return self._refused(f"approver failed ({type(exc).__name__}); treated as a refusal")
        return self._settle(answer)

    async def aapprove(self, question: str) -> bool:
        """`approve()` for async tools: an async approver is awaited, a sync one called."""
        if self.approver is None:
            return self._refused(f"approval needed but no approver is configured: {question}")
        try:
            answer = self.approver(question)
            if _awaitable(answer):
                answer = await answer
        except Exception as exc:
            return self._refused(f"approver failed ({type(exc).__name__}); treated as a refusal")
        return self._settle(answer)

    def _loop_problem(self) -> str | None:
        """Why an async approver cannot be asked from here, or None."""
        import asyncio

        if self.event_loop is None:
            return "an async approver needs async_composable_loop"
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return None
        if running is self.event_loop:  # blocking here would deadlock the loop
            return "an async tool must call `await ctx.aapprove(...)`, not ctx.approve()"
        return None

    def _settle(self, answer: object) -> bool:
        approved, why = approval_verdict(answer)
        if why:
            self.warn(f"approval refused: {why}")
        return approved

    def _refused(self, why: str) -> bool:
        self.warn(why)
        return False

    def report_progress(self, message: str, fraction: float | None = None) -> None:
        """Record progress (and pass it to the run's ``on_progress`` callback, if any)."""
        self.progress.append((message, fraction))
        if self.on_progress is not None:
            self.on_progress(message, fraction)


def _awaitable(value: object) -> bool:
    import inspect

    return inspect.isawaitable(value)


def _discard(awaitable: object) -> None:
    close = getattr(awaitable, "close", None)
    if callable(close):
        close()


def _as_text(value: object) -> str:
    try:
        if isinstance(value, BaseException):
            return f"{type(value).__name__}: {value}"
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"
