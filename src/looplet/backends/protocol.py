"""What a backend is: a conversation goes in, a response (text, tool calls, usage) comes out.

Three shapes are accepted by the loops:

- `LLMBackend`: ``complete(request) -> LLMResponse`` (native tool calling);
- `AsyncLLMBackend`: the same with ``async def complete``;
- `TextLLM`: only ``generate(prompt: str, **kw) -> str`` (sync or async);
  it is wrapped by `looplet.backends.text.TextBackend`, and tool calls travel
  as JSON in the text.

A native backend may also answer with text only; the loop then reads tool
calls from that text the same way. A backend whose model calls tools natively
sets ``native_tool_calls = True`` (the SDK backends do), so a reply without a
call is answered with "use your tool-calling interface", never with the
JSON-in-text format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..history import Message
from ..tools.context import CancelToken
from ..types import ToolCall, Usage

__all__ = [
    "LLMRequest",
    "LLMResponse",
    "LLMBackend",
    "AsyncLLMBackend",
    "TextLLM",
]


@dataclass(frozen=True, slots=True, init=False)
class LLMRequest:
    """One model call.

    Attributes:
        messages: the conversation so far (the task first).
        system: the system prompt.
        tools: the tools offered, as ``{"name", "description", "parameters"}`` dicts.
        extra: texts hooks added for this call only; send them after `messages`
            as one user turn (`conversation()` does that for you).
        max_tokens / temperature / options: generation settings from `LoopConfig`.
        step: the number the next step will get.
        cancel_token: the run's `CancelToken`; a backend waiting to retry
            should stop waiting when it fires.
        deadline: the run's deadline as a `time.monotonic()` value (None: no
            deadline). A backend never waits or retries past it, and bounds
            each attempt's timeout by the time left.
        run_id: the id of the run making the call, so an interceptor shared by
            several runs knows which one a call belongs to.
    """

    messages: Sequence[Message]
    system: str = ""
    tools: Sequence[Mapping[str, Any]] = ()
    extra: tuple[str, ...] = ()
    max_tokens: int | None = None
    temperature: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    step: int = 1
    cancel_token: CancelToken | None = None
    deadline: float | None = None
    run_id: str = ""

    def __init__(
        self,
        messages: Sequence[Message],
        system: str = "",
        tools: Sequence[Mapping[str, Any]] = (),
        extra: tuple[str, ...] = (),
        max_tokens: int | None = None,
        temperature: float | None = None,
        options: Mapping[str, Any] | None = None,
        step: int = 1,
        cancel_token: CancelToken | None = None,
        deadline: float | None = None,
        run_id: str = "",
    ) -> None:
        # Written out (not generated): one request per model call, and setting frozen
        # fields through one local name is about a third faster.
        set_ = object.__setattr__
        set_(self, "messages", messages)
        set_(self, "system", system)
        set_(self, "tools", tools)
        set_(self, "extra", extra)
        set_(self, "max_tokens", max_tokens)
        set_(self, "temperature", temperature)
        set_(self, "options", {} if options is None else options)
        set_(self, "step", step)
        set_(self, "cancel_token", cancel_token)
        set_(self, "deadline", deadline)
        set_(self, "run_id", run_id)

    def conversation(self) -> list[Message]:
        """The messages to send, with the `extra` texts appended as a final user turn."""
        out = list(self.messages)
        if self.extra:
            out.append(Message("user", "\n\n".join(self.extra)))
        return out


@dataclass(slots=True)
class LLMResponse:
    """What the model answered.

    Attributes:
        text: any text the model wrote.
        tool_calls: native tool calls (empty when it answered in text).
        usage: token counts the provider reported.
        stop_reason: the provider's own finish reason (``tool_calls``, ``end_turn``, ...).
        model: the model that answered, when the provider says.
        request_id: the provider's request id (an HTTP header), when it sends one.
        response_id: the id of this completion (``chatcmpl-...``, ``msg_...``), when
            the provider gives one.
        retries: the attempts that failed before this answer, oldest first: dicts
            with ``attempt``, ``cause`` (the error kind and HTTP status), ``error``
            (masked) and ``wait_s`` (the wait before the next attempt).
        raw: the provider's reply body as JSON data, when the backend has one
            (the SDK backends, not streamed); None otherwise. Provenance records it.
    """

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    stop_reason: str = ""
    model: str = ""
    request_id: str = ""
    response_id: str = ""
    retries: list[dict[str, Any]] = field(default_factory=list)
    raw: Any = field(default=None, repr=False, compare=False)


@runtime_checkable
class LLMBackend(Protocol):
    """A backend with native messages: ``complete(request) -> LLMResponse``."""

    def complete(self, request: LLMRequest) -> LLMResponse: ...


@runtime_checkable
class AsyncLLMBackend(Protocol):
    """The async twin of `LLMBackend`."""

    async def complete(self, request: LLMRequest) -> LLMResponse: ...


@runtime_checkable
class TextLLM(Protocol):
    """The simplest backend: a prompt string in, a reply string out."""

    def generate(self, prompt: str, **kwargs: Any) -> str: ...
