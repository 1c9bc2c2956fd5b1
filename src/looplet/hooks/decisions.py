"""The small frozen values a hook may return to steer the loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Allow", "Deny", "Block", "Stop", "InjectContext", "Continue"]


@dataclass(frozen=True, slots=True)
class Allow:
    """``pre_dispatch``: let the call run, optionally with rewritten arguments.

    Rewritten arguments are validated again before the tool runs, and later
    hooks see them.
    """

    updated_args: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Deny:
    """``pre_dispatch``: do not run the call; the model is told `reason`.

    With ``retry=True`` the result is marked retriable and the model is told it
    may try the same call again later; otherwise it is told to take another way.
    """

    reason: str
    retry: bool = False


@dataclass(frozen=True, slots=True)
class Block:
    """``check_done``: reject the done call; the model sees `reason` and goes on."""

    reason: str


@dataclass(frozen=True, slots=True)
class Stop:
    """``post_dispatch`` / ``should_stop``: end the run with ``hook_stop:<reason>``."""

    reason: str


@dataclass(frozen=True, slots=True)
class InjectContext:
    """``pre_prompt`` / ``post_dispatch``: add `text` to what the model sees next."""

    text: str


@dataclass(frozen=True, slots=True)
class Continue:
    """Any slot: no decision; the same as returning None, but explicit."""
