"""looplet 0.4.1, the last release on PyPI (the original code base): a backend with
``generate_with_tools`` returning native tool-use blocks, as its own MockLLMBackend does."""

from __future__ import annotations

from typing import Any

IMPORTS = "from looplet import BaseToolRegistry, LoopConfig, composable_loop, register_done_tool"

_last: list[str] = []


class InstantModel:
    """Answers every call at once with one call of `echo`; keeps the prompt of call `keep_at`."""

    def __init__(self, keep_at: int) -> None:
        self.calls = 0
        self.keep_at = keep_at

    def generate(
        self, prompt: str, *, max_tokens: int = 2000, system_prompt: str = "", temperature: float = 0.2
    ) -> str:
        raise AssertionError("the loop should use native tool calls")

    def generate_with_tools(
        self,
        prompt: str,
        *,
        tools: list[dict[str, Any]],
        max_tokens: int = 2000,
        system_prompt: str = "",
        temperature: float = 0.2,
    ) -> list[dict[str, Any]]:
        self.calls += 1
        if self.calls == self.keep_at:
            _last[:] = [system_prompt, prompt]
        args = {"text": "hello world", "n": self.calls}
        return [{"type": "tool_use", "name": "echo", "input": args, "id": f"c{self.calls}"}]


def run(n: int) -> int:
    """Make `n` tool steps (the budget ends the run); return the tool calls made."""
    from looplet import BaseToolRegistry, LoopConfig, composable_loop, register_done_tool

    tools = BaseToolRegistry()
    made = 0

    @tools.tool
    def echo(text: str, n: int) -> dict[str, Any]:
        """Return the text."""
        nonlocal made
        made += 1
        return {"text": text, "n": n}

    register_done_tool(tools)
    task = {"description": "echo things"}
    for _ in composable_loop(InstantModel(n), task=task, tools=tools, config=LoopConfig(max_steps=n)):
        pass
    return made


def last_bytes() -> int:
    """0.4.1 hands the model one rendered prompt (plus the system prompt): its UTF-8 size."""
    return sum(len(text.encode()) for text in _last)
