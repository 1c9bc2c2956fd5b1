"""Prompt caching: keep the start of every prompt byte-for-byte the same, and mark it where a provider asks.

Both providers bill a prompt's repeated start (its *prefix*) at a fraction of
the input price when it was sent before, but only when it is identical:
one changed byte in the system prompt, or tools sent in another order, and
everything after it is paid in full again. A `CachePolicy` given to a
backend (``AnthropicBackend(..., cache=CachePolicy())``, the same for
`OpenAIBackend` and the async twins) does two things:

- it keeps the prefix stable: tools are sent sorted by name, so the order
  they were registered in (or an MCP server that connected later) does not
  change the bytes; the system prompt (with any memory, see
  `looplet.memory`) stays first;
- on Anthropic, which caches only where the request says so, it places
  ``cache_control`` breakpoints: on the last tool (the tool definitions),
  on the system prompt, and on the last stable message (and the end of the
  turn before it, so a long batch of results cannot hide the previous
  cache entry from the API's lookback). The texts hooks inject for one call
  come after the last breakpoint: they change every call and are never
  part of a cached prefix.

OpenAI caches every long prefix on its own; the policy there keeps the
prefix stable and can send a ``prompt_cache_key``. Either provider's count
of cached tokens reaches ``Step.usage``, the run's totals and the cost (see
`looplet.backends.pricing`).

The Messages API's rules, as the policy applies them: at most four
breakpoints per request (`MAX_BREAKPOINTS`; a policy asking for more is
refused when built); the order is tools, then system, then messages; a
prefix shorter than the model's minimum (1,024 tokens for most Sonnet and
Opus models, 2,048 or 4,096 for some Haiku and newer models) is simply not
cached: no error, ``cache_creation_input_tokens`` stays 0. A breakpoint on a
short prefix therefore costs nothing, and the policy places them anyway:
the last-message breakpoint covers the whole prefix once it is long enough.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .history import Message

__all__ = ["CachePolicy", "MAX_BREAKPOINTS"]

#: The most ``cache_control`` breakpoints the Messages API accepts in one request.
MAX_BREAKPOINTS = 4

_TTLS = (None, "5m", "1h")


@dataclass(frozen=True)
class CachePolicy:
    """How a backend keeps the prompt prefix cacheable, and where Anthropic's breakpoints go.

    Args:
        tools: mark the last tool, so the tool definitions are cached on their own.
        system: mark the system prompt (the tools come before it, so this
            caches both).
        messages: how many message breakpoints: 0; 1 (the last message of the
            history, before the texts hooks add for one call); 2 (also the end
            of the previous turn, where the last request wrote its entry).
        ttl: ``None`` or ``"5m"`` (the provider's default, five minutes) or
            ``"1h"`` (written at a higher price, kept longer).
        sort_tools: send tools sorted by name, so their order cannot change the prefix.
        key: OpenAI only: a ``prompt_cache_key``, which sends requests that
            share a prefix to the same cache (e.g. one per agent).
    """

    tools: bool = True
    system: bool = True
    messages: int = 2
    ttl: str | None = None
    sort_tools: bool = True
    key: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.messages, bool) or self.messages not in (0, 1, 2):
            raise ConfigError(f"CachePolicy.messages must be 0, 1 or 2, not {self.messages!r}")
        if self.ttl not in _TTLS:
            raise ConfigError(f"CachePolicy.ttl must be None, '5m' or '1h', not {self.ttl!r}")
        if self.key is not None and (not isinstance(self.key, str) or not self.key):
            raise ConfigError(f"CachePolicy.key must be a non-empty str or None, not {self.key!r}")

    @property
    def breakpoints(self) -> int:
        """The most breakpoints one request gets under this policy (never above `MAX_BREAKPOINTS`)."""
        return int(self.tools) + int(self.system) + self.messages

    def control(self) -> dict[str, str]:
        """The ``cache_control`` value put on each marked block."""
        out = {"type": "ephemeral"}
        if self.ttl is not None:
            out["ttl"] = self.ttl
        return out

    def ordered_tools(self, tools: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """`tools` in the order they are sent: by name when `sort_tools` (ties keep their order)."""
        if not self.sort_tools:
            return list(tools)
        return sorted(tools, key=lambda spec: str(spec.get("name", "")))

    def message_marks(self, messages: Sequence[Message]) -> list[int]:
        """Indices of the messages whose last block gets a breakpoint, oldest first.

        `messages` is the history as sent (calls paired with their results),
        without the texts hooks add for one call.
        """
        if not self.messages or not messages:
            return []
        last = len(messages) - 1
        marks = [last]
        if self.messages > 1:
            turn = next((i for i in range(last, -1, -1) if messages[i].role == "assistant"), -1)
            if turn > 0:
                marks.insert(0, turn - 1)
        return marks
