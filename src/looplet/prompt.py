"""`PromptContext`: what is about to be sent to the model, open to ``pre_prompt`` hooks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .history import Message

__all__ = ["PromptContext"]


@dataclass
class PromptContext:
    """The prompt of one model call.

    A ``pre_prompt`` hook may assign new `messages` or `system` (or return a
    changed copy); the model sees exactly what is here after the hooks ran.
    Changes apply to this call only; to change the record itself, edit ``log``.

    Attributes:
        system: the system prompt.
        messages: the conversation (a read-only view of the history by default).
        tools: the JSON schemas of the tools offered (``name``, ``description``,
            ``parameters``).
        context: the user's own ``context=`` value passed to the loop.
        injected: texts hooks added for this call; sent after the messages.
        step: the number the next step will get.
        overflow: the last attempt was refused as too long for the model's
            context; compaction hooks should shrink the messages now.
        result: in ``on_loop_end`` only, the run's `RunResult`.
    """

    system: str
    messages: Sequence[Message]
    tools: Sequence[dict[str, Any]] = ()
    context: Any = None
    injected: list[str] = field(default_factory=list)
    step: int = 1
    overflow: bool = False
    result: Any = None
