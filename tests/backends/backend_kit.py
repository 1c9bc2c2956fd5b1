"""What the backend tests share: building a backend for a server, a tool kit, and running a loop."""

from __future__ import annotations

import asyncio
from typing import Any

from looplet import BaseToolRegistry, RunResult, Step, async_composable_loop, composable_loop
from looplet.backends.anthropic import AnthropicBackend, AsyncAnthropicBackend
from looplet.backends.openai import AsyncOpenAIBackend, OpenAIBackend
from looplet.backends.retry import RetryPolicy
from looplet.tools import register_done_tool

#: Tiny, deterministic backoff so the fault tests stay fast.
FAST = RetryPolicy(max_retries=2, initial_delay=0.01, multiplier=2.0, max_delay=0.05, jitter=0.0)

PROVIDERS = ("openai", "anthropic")
MODES = ("sync", "async")
TEST_KEY = "sk-test-0000000000000000"

_CLASSES: dict[tuple[str, bool], Any] = {
    ("openai", False): OpenAIBackend,
    ("openai", True): AsyncOpenAIBackend,
    ("anthropic", False): AnthropicBackend,
    ("anthropic", True): AsyncAnthropicBackend,
}


def backend(provider: str, base_url: str, *, is_async: bool = False, **kwargs: Any) -> Any:
    """A backend of `provider` pointed at `base_url`, with the fast retry policy unless told otherwise."""
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("api_key", TEST_KEY)
    kwargs.setdefault("timeout", 10.0)
    model = kwargs.pop("model", "gpt-4o" if provider == "openai" else "claude-test")
    return _CLASSES[(provider, is_async)](model, base_url=base_url, **kwargs)


def fault_url(provider: str, root: str) -> str:
    """The base URL the SDK of `provider` needs on the fault server."""
    return f"{root}/v1" if provider == "openai" else root


class Greeter:
    """A registry with ``greet(name)`` and ``done(answer)``; `greeted` lists who was greeted."""

    def __init__(self) -> None:
        self.greeted: list[str] = []
        self.tools = BaseToolRegistry()

        @self.tools.tool
        def greet(name: str) -> dict[str, str]:
            """Greet someone by name.

            Args:
                name: who to greet.
            """
            self.greeted.append(name)
            return {"greeting": f"Hello, {name}!"}

        register_done_tool(self.tools)


def run(llm: Any, *, is_async: bool, **kwargs: Any) -> tuple[list[Step], RunResult]:
    """Run a loop to its end with the sync or the async driver."""
    if not is_async:
        loop = composable_loop(llm, **kwargs)
        steps = list(loop)
        assert loop.result is not None
        return steps, loop.result

    async def main() -> tuple[list[Step], RunResult]:
        aloop = async_composable_loop(llm, **kwargs)
        try:
            out = [step async for step in aloop]
        finally:
            await aclose(llm)
        assert aloop.result is not None
        return out, aloop.result

    return asyncio.run(main())


async def aclose(llm: Any) -> None:
    """Close an async backend inside the loop that used it (its connections belong to that loop)."""
    close = getattr(llm, "aclose", None)
    if close is not None:
        await close()


def complete(llm: Any, request: Any, *, is_async: bool) -> Any:
    """One `complete()` call, awaited when the backend is async."""
    if is_async:

        async def main() -> Any:
            try:
                return await llm.complete(request)
            finally:
                await aclose(llm)

        return asyncio.run(main())
    return llm.complete(request)


def reply(*calls: tuple[str, dict[str, Any]], text: str | None = None, **extra: Any) -> dict[str, Any]:
    """An llmock ``reply`` behaviour with these tool calls."""
    out: dict[str, Any] = {"type": "reply", **extra}
    if calls:
        out["tool_calls"] = [{"name": name, "arguments": args} for name, args in calls]
    if text is not None:
        out["text"] = text
    return out


def fail(status: int, **extra: Any) -> dict[str, Any]:
    """An llmock ``fail`` behaviour."""
    return {"type": "fail", "status": status, **extra}
