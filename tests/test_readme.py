"""The README's snippets, run as written (a scripted model in place of the real one)."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from typing import Any

from looplet import BaseToolRegistry, Deny, ErrorKind, MockLLMBackend, composable_loop
from looplet.tools import register_done_tool


def test_your_first_agent(capsys: Any) -> None:
    llm = MockLLMBackend(
        responses=[
            '{"tool": "greet", "args": {"name": "Alice"}}',
            '{"tool": "greet", "args": {"name": "Bob"}}',
            '{"tool": "done", "args": {"answer": "Greeted Alice and Bob."}}',
        ]
    )  # in the README: OpenAIBackend.from_env(model="gpt-4o-mini")
    tools = BaseToolRegistry()

    @tools.tool
    def greet(name: str) -> dict:
        """Greet someone by name."""
        return {"greeting": f"Hello, {name}!"}

    register_done_tool(tools)

    for step in composable_loop(
        llm=llm,
        tools=tools,
        task={"goal": "Greet Alice and Bob, then finish."},
        max_steps=5,
    ):
        print(step.pretty())

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert re.fullmatch(
        r"#1 ✓ greet\(name='Alice'\) → greeting: 'Hello, Alice!' \[\d+\.\dms\]", lines[0]
    )
    assert lines[1].startswith("#2 ✓ greet(name='Bob') → greeting: 'Hello, Bob!'")
    assert lines[2].startswith("#3 ✓ done(answer='Greeted Alice and Bob.')")
    assert "goal: Greet Alice and Bob, then finish." in llm.calls[0].messages[0].content


EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


def _scrub_emails(ctx: Any) -> Any:
    """A copy of the prompt context with every email address masked."""
    messages = [
        dataclasses.replace(m, content=EMAIL.sub("[email]", m.content)) for m in ctx.messages
    ]
    return dataclasses.replace(ctx, messages=messages)


class RedactPII:
    def pre_prompt(self, state: Any, log: Any, ctx: Any, step: int) -> Any:
        return _scrub_emails(ctx)  # mutates the next LLM prompt


def test_redact_pii_hook_scrubs_what_the_model_sees_but_not_the_history() -> None:
    tools = BaseToolRegistry()
    register_done_tool(tools)
    llm = MockLLMBackend(responses=['{"tool": "done", "args": {"answer": "ok"}}'])
    loop = composable_loop(
        llm=llm,
        tools=tools,
        task="Write to alice@example.com about the invoice.",
        hooks=[RedactPII()],
    )
    steps = list(loop)

    assert [s.tool_call.tool for s in steps] == ["done"]
    sent = llm.calls[0]
    assert all("alice@example.com" not in m.content for m in sent.messages)
    assert "[email]" in sent.messages[0].content
    assert "alice@example.com" not in llm.last_prompt
    assert "alice@example.com" in loop.history[0].content


class RetryFlakyTool:
    def pre_dispatch(self, state: Any, log: Any, tc: Any, step: int) -> Any:
        if tc.tool == "web_search" and state.last_error:
            return Deny("retry with backoff", retry=True)


def test_retry_flaky_tool_denies_a_repeat_after_an_error_as_retriable() -> None:
    tools = BaseToolRegistry()
    attempts: list[str] = []

    @tools.tool
    def web_search(query: str) -> dict:
        """Search the web (fails on its first call)."""
        attempts.append(query)
        if len(attempts) == 1:
            raise ConnectionError("upstream reset the connection")
        return {"hits": [query]}

    register_done_tool(tools)
    search = '{"tool": "web_search", "args": {"query": "looplet"}}'
    llm = MockLLMBackend(responses=[search, search, '{"tool": "done", "args": {"answer": "x"}}'])
    steps = list(composable_loop(llm=llm, tools=tools, task="search", hooks=[RetryFlakyTool()]))

    first, second, last = steps
    assert first.tool_result.error_kind == ErrorKind.EXECUTION
    assert second.tool_result.error_kind == ErrorKind.DENIED
    assert second.tool_result.retriable is True
    assert "may retry this call later" in second.tool_result.error
    assert "retry with backoff" in second.tool_result.error
    assert attempts == ["looplet"], "the denied call must not run"
    assert "may retry this call later" in llm.calls[2].messages[-1].content
    assert last.tool_call.tool == "done"


def test_the_for_loop_you_own_stops_at_the_first_error(capsys: Any) -> None:
    tools = BaseToolRegistry()

    @tools.tool
    def search(query: str) -> list[str]:
        """Search."""
        return [f"{query} {i}" for i in range(12)]

    register_done_tool(tools)
    llm = MockLLMBackend(
        responses=[
            '{"tool": "search", "args": {"query": "cats"}}',
            '{"tool": "serch", "args": {"query": "dogs"}}',
            '{"tool": "done", "args": {"answer": "never reached"}}',
        ]
    )
    loop = composable_loop(llm=llm, tools=tools, task="find things")
    for step in loop:
        print(step.pretty())  # → "#1 ✓ search(query='…') → 12 items [182ms]"
        if step.tool_result.error:
            break  # your loop, your control flow
    loop.close()

    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("#1 ✓ search(query='cats') → 12 items [")
    assert out[1].startswith(
        "#2 ✗ serch(query='dogs') → unknown tool 'serch'. Did you mean 'search'?"
    )
    assert len(out) == 2
    assert loop.result is not None and loop.result.stop_reason == "cancelled"
    assert len(llm.calls) == 2


def test_hello_world_example_runs_scripted() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "looplet.examples.hello_world", "--scripted"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("#1 ✓ greet(name='Alice') → greeting: 'Hello, Alice!'")
    assert lines[1].startswith("#2 ✓ greet(name='Bob') → greeting: 'Hello, Bob!'")
    assert lines[2].startswith("#3 ✓ done(answer='Greeted Alice and Bob.')")
    assert "stopped: done" in proc.stdout
