"""The one conversation record of a run, and how a task becomes its first message.

Everything the model sees is in `History`: the task, each assistant turn with
its tool calls, and each tool result. Steps, traces, checkpoints and
compaction read or rewrite this same record, so what is compacted is what the
model stops seeing.

The record never holds the values of secret environment variables (names
with KEY, TOKEN, SECRET, PASSWORD): they are masked as messages enter it, so
neither the provider nor a saved copy sees them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, overload

from .redaction import redact_env_values
from .types import ToolCall

__all__ = ["Message", "History", "MessagesView", "render_task", "screened"]


@dataclass(frozen=True, slots=True, init=False)
class Message:
    """One entry of the conversation.

    Attributes:
        role: ``user``, ``assistant`` or ``tool``.
        content: the text (for ``tool`` messages, the rendered result).
        tool_calls: the calls an assistant turn made.
        call_id: for ``tool`` messages, the id of the call this answers.
        name: for ``tool`` messages, the tool's name.
        error: for ``tool`` messages, whether the result was an error.
    """

    role: str
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    call_id: str = ""
    name: str = ""
    error: bool = False

    def __init__(
        self,
        role: str,
        content: str = "",
        tool_calls: tuple[ToolCall, ...] = (),
        call_id: str = "",
        name: str = "",
        error: bool = False,
    ) -> None:
        # Written out (not generated) so that one of the most made records sets its
        # frozen fields through one local name: about a third faster.
        set_ = object.__setattr__
        set_(self, "role", role)
        set_(self, "content", content)
        set_(self, "tool_calls", tool_calls)
        set_(self, "call_id", call_id)
        set_(self, "name", name)
        set_(self, "error", error)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [c.to_dict() for c in self.tool_calls]
        if self.call_id:
            out["call_id"] = self.call_id
        if self.name:
            out["name"] = self.name
        if self.error:
            out["error"] = True
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        return cls(
            role=data["role"],
            content=data.get("content", ""),
            tool_calls=tuple(ToolCall.from_dict(c) for c in data.get("tool_calls", ())),
            call_id=data.get("call_id", ""),
            name=data.get("name", ""),
            error=bool(data.get("error", False)),
        )


def screened(message: Message) -> Message:
    """`message` with secret env values masked in its text (the same object when there are none)."""
    content = message.content
    if not content or not isinstance(content, str):
        return message
    clean = redact_env_values(content)
    return message if clean == content else replace(message, content=clean)


class MessagesView(Sequence[Message]):
    """A read-only, O(1) snapshot of the first `n` messages of a history.

    Handing this to hooks and backends costs nothing per step however long the
    history is; a hook that wants to change what the model sees assigns a new
    list to ``ctx.messages`` instead of mutating it.
    """

    __slots__ = ("_items", "_n")

    def __init__(self, items: list[Message], n: int | None = None) -> None:
        self._items = items
        self._n = len(items) if n is None else n

    def __len__(self) -> int:
        return self._n

    @property
    def source(self) -> object:
        """The list this view is over: the same object while the history is only appended to."""
        return self._items

    @overload
    def __getitem__(self, index: int) -> Message: ...
    @overload
    def __getitem__(self, index: slice) -> list[Message]: ...
    def __getitem__(self, index: int | slice) -> Message | list[Message]:
        if isinstance(index, slice):
            return self._items[: self._n][index]
        if index < 0:
            index += self._n
        if not 0 <= index < self._n:
            raise IndexError("message index out of range")
        return self._items[index]

    def __iter__(self) -> Iterator[Message]:
        items = self._items
        for i in range(self._n):
            yield items[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=False))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"MessagesView({self._n} messages)"


class History:
    """The run's conversation: an append-only list that compaction may replace."""

    __slots__ = ("_messages", "revision")

    def __init__(self, messages: Sequence[Message] = ()) -> None:
        self._messages: list[Message] = [screened(m) for m in messages]
        #: bumped on every replace(), so caches keyed on the list can notice.
        self.revision = 0

    @property
    def messages(self) -> MessagesView:
        """A read-only snapshot of the messages as they are now."""
        return MessagesView(self._messages)

    def append(self, message: Message) -> None:
        self._messages.append(screened(message))

    def replace(self, messages: Sequence[Message]) -> None:
        """Swap the whole record (compaction): the model sees only these from now on."""
        self._messages = [screened(m) for m in messages]
        self.revision += 1

    def __len__(self) -> int:
        return len(self._messages)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, History):
            return NotImplemented
        return self._messages == other._messages

    __hash__ = None  # type: ignore[assignment]

    def __iter__(self) -> Iterator[Message]:
        return iter(self._messages)

    def __getitem__(self, index: int) -> Message:
        return self._messages[index]

    def chars(self) -> int:
        """Total characters of content: a cheap size measure (walks the history)."""
        return sum(len(m.content) for m in self._messages)

    def to_list(self) -> list[dict[str, Any]]:
        return [m.to_dict() for m in self._messages]

    @classmethod
    def from_list(cls, data: Sequence[dict[str, Any]]) -> History:
        return cls([Message.from_dict(d) for d in data])

    def __repr__(self) -> str:
        return f"History({len(self._messages)} messages)"


def render_task(task: object) -> str:
    """Render a task for the model: strings as they are, dicts as indented ``key: value`` lines."""
    if task is None:
        return ""
    if isinstance(task, str):
        return task
    lines: list[str] = []
    _render_value(task, 0, lines, None)
    return "\n".join(lines)


def _render_value(value: object, indent: int, lines: list[str], key: str | None) -> None:
    pad = "  " * indent
    head = f"{pad}{key}:" if key is not None else None
    if isinstance(value, dict):
        if head is not None:
            lines.append(head)
            indent += 1
        for k, v in value.items():
            _render_value(v, indent, lines, str(k))
    elif isinstance(value, list | tuple | set | frozenset):
        if head is not None:
            lines.append(head)
        item_pad = "  " * (indent + (1 if head is not None else 0))
        for item in value:
            if isinstance(item, dict | list | tuple):
                lines.append(f"{item_pad}-")
                _render_value(item, indent + 2, lines, None)
            else:
                lines.append(f"{item_pad}- {item}")
    else:
        text = str(value)
        if head is None:
            lines.append(f"{pad}{text}")
        elif "\n" in text:
            lines.append(head)
            lines.extend(f"{pad}  {line}" for line in text.splitlines())
        else:
            lines.append(f"{head} {text}")
