"""The small frozen values a hook may return to steer the loop."""

from __future__ import annotations

from typing import Any

__all__ = ["Allow", "Deny", "Ask", "Block", "Stop", "InjectContext", "Continue"]


class _Decision:
    """Immutable value with equality, hashing and a readable repr, from its __slots__."""

    __slots__: tuple[str, ...] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self).__name__, repr(self._values())))

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({args})"


class Allow(_Decision):
    """``pre_dispatch``: let the call run, optionally with rewritten arguments.

    Rewritten arguments are validated again before the tool runs, and later
    hooks see them.
    """

    __slots__ = ("updated_args",)
    updated_args: dict[str, Any] | None

    def __init__(self, updated_args: dict[str, Any] | None = None) -> None:
        object.__setattr__(self, "updated_args", updated_args)


class Deny(_Decision):
    """``pre_dispatch``: do not run the call; the model is told `reason`.

    With ``retry=True`` the result is marked retriable and the model is told it
    may try the same call again later; otherwise it is told to take another way.
    """

    __slots__ = ("reason", "retry")
    reason: str
    retry: bool

    def __init__(self, reason: str, retry: bool = False) -> None:
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "retry", retry)


class Ask(_Decision):
    """``pre_dispatch``: pause before this call runs, until a human decides.

    The call does not run and nothing is written into the history for it; the
    turn's other allowed calls run; the run stops with ``approval_pending``
    and ``state.pending`` lists the call. Decide with ``state.approve(call_id)``
    or ``state.reject(call_id, reason)`` (in any process, on a saved state)
    and pass the state back to the loop to continue.

    A tool that takes a ``ctx`` may return ``Ask`` too, to pause its own call
    (a sub-agent whose own call waits for a person does this). Whatever the
    person decides, the continued run calls the tool again with the decision
    in ``ctx.decision``; `details` (JSON data) is shown with the pending call.
    """

    __slots__ = ("reason", "details")
    reason: str
    details: dict[str, Any] | None

    def __init__(self, reason: str, details: dict[str, Any] | None = None) -> None:
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "details", details)


class Block(_Decision):
    """``check_done``: reject the done call; the model sees `reason` and goes on."""

    __slots__ = ("reason",)
    reason: str

    def __init__(self, reason: str) -> None:
        object.__setattr__(self, "reason", reason)


class Stop(_Decision):
    """``post_dispatch`` / ``should_stop``: end the run with ``hook_stop:<reason>``."""

    __slots__ = ("reason",)
    reason: str

    def __init__(self, reason: str) -> None:
        object.__setattr__(self, "reason", reason)


class InjectContext(_Decision):
    """``pre_prompt`` / ``post_dispatch``: add `text` to what the model sees next."""

    __slots__ = ("text",)
    text: str

    def __init__(self, text: str) -> None:
        object.__setattr__(self, "text", text)


class Continue(_Decision):
    """Any slot: no decision; the same as returning None, but explicit."""

    __slots__ = ()
