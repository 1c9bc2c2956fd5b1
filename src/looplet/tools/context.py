"""`ToolContext`, handed to tools that take a ``ctx`` parameter, and `CancelToken`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ToolContext", "CancelToken"]


class CancelToken:
    """A thread-safe flag a caller sets to stop a run (and tools can poll or wait on)."""

    __slots__ = ("_event", "reason")

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str = "cancelled") -> None:
        self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until cancelled or `timeout` passes; True if cancelled."""
        return self._event.wait(timeout)

    def __repr__(self) -> str:
        return f"CancelToken(cancelled={self.cancelled})"


@dataclass
class ToolContext:
    """What a tool may use besides its arguments.

    Attributes:
        llm: the run's backend (for tools that ask the model something).
        call_id: the id of this call; use it as an idempotency key.
        tool: the tool's name.
        step: the number of the step this call belongs to.
        cancel_token: set when the run is being cancelled; long tools should poll it.
        metadata: the run's state metadata (shared, mutable).
        warnings: what `warn()` recorded; it reaches the model with the result.
        progress: what `report_progress()` recorded.
    """

    llm: Any = None
    call_id: str = ""
    tool: str = ""
    step: int = 0
    cancel_token: CancelToken = field(default_factory=CancelToken)
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    progress: list[tuple[str, float | None]] = field(default_factory=list)
    approver: Callable[[str], bool] | None = None
    on_progress: Callable[[str, float | None], None] | None = None

    def warn(self, message: str) -> None:
        """Attach a warning to this call's result; the model sees it."""
        self.warnings.append(message)

    def approve(self, question: str) -> bool:
        """Ask a human (through the run's approver) whether to go on.

        Fails closed: without an approver, or when it raises, the answer is False.
        """
        if self.approver is None:
            self.warn(f"approval needed but no approver is configured: {question}")
            return False
        try:
            return bool(self.approver(question))
        except Exception as exc:
            self.warn(f"approver failed ({type(exc).__name__}); treated as a refusal")
            return False

    def report_progress(self, message: str, fraction: float | None = None) -> None:
        """Record progress (and pass it to the run's ``on_progress`` callback, if any)."""
        self.progress.append((message, fraction))
        if self.on_progress is not None:
            self.on_progress(message, fraction)
