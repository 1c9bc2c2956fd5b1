"""Test doubles shared by the suite: a driver for both loops, a recording hook, small tool kits,
canary secrets, and a runner for the commands a user types."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import event
from hypothesis import strategies as st

from looplet import (
    AsyncLoop,
    BaseToolRegistry,
    Loop,
    MockLLMBackend,
    RunResult,
    Step,
    ToolCall,
    ToolContext,
    ToolResult,
    async_composable_loop,
    composable_loop,
    register_done_tool,
)

#: This checkout's package source, put first on the path of the processes the tests start.
SRC = Path(__file__).resolve().parents[1] / "src"


class Driver:
    """Runs a loop to its end (or for `k` steps) with the sync or the async driver.

    `loop` is the last `Loop` / `AsyncLoop` built, for reading its history and state.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.loop: Loop | AsyncLoop | None = None

    @property
    def is_async(self) -> bool:
        return self.mode == "async"

    def __call__(self, llm: Any, **kwargs: Any) -> tuple[list[Step], RunResult]:
        return self.take(llm, None, **kwargs)

    def take(self, llm: Any, k: int | None, **kwargs: Any) -> tuple[list[Step], RunResult]:
        """Iterate at most `k` steps (all when None), then close the loop; returns (steps, result)."""
        if kwargs.get("task") is None and kwargs.get("state") is None and kwargs.get("history") is None:
            kwargs["task"] = "the task"
        if self.mode == "sync":
            loop = composable_loop(llm, **kwargs)
            self.loop = loop
            steps: list[Step] = []
            for step in loop:
                steps.append(step)
                if k is not None and len(steps) >= k:
                    break
            loop.close()
            assert loop.result is not None
            return steps, loop.result

        async def main() -> tuple[list[Step], RunResult]:
            aloop = async_composable_loop(llm, **kwargs)
            self.loop = aloop
            out: list[Step] = []
            async for step in aloop:
                out.append(step)
                if k is not None and len(out) >= k:
                    break
            await aloop.aclose()
            assert aloop.result is not None
            return out, aloop.result

        return asyncio.run(main())


def as_text(tool: str, **args: Any) -> str:
    """A tool call as the JSON text a model writes."""
    return json.dumps({"tool": tool, "args": args})


def batch(*calls: tuple[str, dict[str, Any]]) -> str:
    """Several calls in one reply, in the documented batch format."""
    return json.dumps({"tools": [{"tool": name, "args": args} for name, args in calls]})


def native(tool: str, call_id: str = "", **args: Any) -> ToolCall:
    return ToolCall(tool=tool, args=args, call_id=call_id)


def done(answer: str = "finished") -> str:
    return as_text("done", answer=answer)


class Recorder:
    """A hook with every method; records (method, detail) and returns what `answers` says."""

    def __init__(self, answers: dict[str, Any] | None = None) -> None:
        self.events: list[tuple[str, Any]] = []
        self.answers = answers or {}

    def _answer(self, method: str) -> Any:
        value = self.answers.get(method)
        return value() if callable(value) else value

    def pre_loop(self, state: Any, log: Any, ctx: Any) -> Any:
        self.events.append(("pre_loop", None))

    def pre_prompt(self, state: Any, log: Any, ctx: Any, step: int) -> Any:
        self.events.append(("pre_prompt", step))
        return self._answer("pre_prompt")

    def pre_dispatch(self, state: Any, log: Any, tool_call: ToolCall, step: int) -> Any:
        self.events.append(("pre_dispatch", tool_call.tool))
        return self._answer("pre_dispatch")

    def post_dispatch(self, state: Any, log: Any, tool_call: ToolCall, tool_result: Any, step: int) -> Any:
        self.events.append(("post_dispatch", tool_call.tool))
        return self._answer("post_dispatch")

    def check_done(self, state: Any, log: Any, ctx: Any, step: int) -> Any:
        self.events.append(("check_done", step))
        return self._answer("check_done")

    def after_step(self, state: Any, log: Any, step: Any) -> Any:
        self.events.append(("after_step", step.number))
        return self._answer("after_step")

    def should_stop(self, state: Any, step: int) -> Any:
        self.events.append(("should_stop", step))
        return self._answer("should_stop")

    def on_loop_end(self, state: Any, log: Any, ctx: Any, llm: Any) -> Any:
        self.events.append(("on_loop_end", state.stop_reason))

    def count(self, method: str) -> int:
        return sum(1 for name, _ in self.events if name == method)


def greeting_tools(
    *, with_done: bool = True, concurrent_safe: bool = False
) -> tuple[BaseToolRegistry, list[str]]:
    """A registry with `greet` (records who it greeted) and, by default, `done`."""
    tools = BaseToolRegistry()
    greeted: list[str] = []

    @tools.tool(concurrent_safe=concurrent_safe)
    def greet(name: str) -> dict[str, str]:
        """Greet someone by name."""
        greeted.append(name)
        return {"greeting": f"Hello, {name}!"}

    if with_done:
        register_done_tool(tools)
    return tools, greeted


def fan_out_tools(width: int, sub_hooks: Sequence[Any] = ()) -> BaseToolRegistry:
    """A registry with `fetch`, `delegate` and `done`, for watching runs nest and fan out.

    `fetch` is concurrent-safe and waits until `width` calls run at once, so a batch of `width`
    really runs together; `delegate` runs a sub-agent (with `sub_hooks`) in the calling thread.
    """
    tools = BaseToolRegistry()
    barrier = threading.Barrier(width, timeout=10)

    @tools.tool(concurrent_safe=True)
    def fetch(n: int) -> dict[str, int]:
        """Fetch item n (waits until the whole batch is running, so the batch really runs at once)."""
        barrier.wait()
        return {"n": n}

    @tools.tool
    def delegate(task: str) -> Any:
        """Runs a sub-agent in the calling thread."""
        sub_tools = BaseToolRegistry()
        register_done_tool(sub_tools)
        inner = MockLLMBackend([ToolCall("done", {"answer": f"sub: {task}"}, call_id="s1")])
        return composable_loop(inner, tools=sub_tools, task=task, hooks=list(sub_hooks)).run().final_answer

    register_done_tool(tools)
    return tools


def call(tools: Any, name: str, **args: Any) -> ToolResult:
    """One call dispatched straight to a registry, without a loop."""
    result: ToolResult = tools.dispatch(ToolCall(name, args, call_id="c1"))
    return result


# -- canary secrets: planted in a run, then looked for at every place it could leak ----------------

#: How a planted secret is written where it is put.
SECRET_ENCODINGS = ("raw", "json_escaped", "url_encoded", "basic_auth", "bearer")

# Characters real passwords hold, the escape-prone ones among them.
_SECRET_CHARS = st.sampled_from(
    list("abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789") + list("\\\"'%/+=&?:@#!$")
)


@st.composite
def canaries(draw: st.DrawFn) -> str:
    """A secret of 10-24 password characters behind a fixed prefix (unlike anything else in a run)."""
    return "Qz7" + draw(st.text(_SECRET_CHARS, min_size=10, max_size=24))


def key_shaped(secret: str) -> str:
    """`secret` as an OpenAI-style key: redaction finds it by its pattern, not by the environment."""
    return "sk-proj-" + "".join(c for c in secret if c.isalnum()).ljust(20, "x")


@dataclass(frozen=True)
class Canary:
    """A secret to plant in one place of a run, written one way, and how it is known to be secret."""

    secret: str
    place: str
    how: str
    depth: int
    as_env: bool

    @property
    def planted(self) -> str:
        """The text put in the run: the secret in its encoding."""
        return encode_secret(self.secret, self.how)

    @property
    def env_value(self) -> str:
        """What the secret-named environment variable holds during the run."""
        return self.secret if self.as_env else "unrelated-value-123"

    def tally(self) -> None:
        """Count this example by place, encoding and kind in hypothesis' statistics (a too-narrow
        strategy shows there)."""
        event(f"place={self.place}")
        event(f"encoding={self.how}")
        event("env secret" if self.as_env else "key-shaped secret")


@st.composite
def placed_canaries(draw: st.DrawFn, places: Sequence[str], max_depth: int) -> Canary:
    """Canaries in one of `places`, in any of `SECRET_ENCODINGS`, nested up to `max_depth` deep; each
    either the value of a secret-named environment variable or a known key shape (found by its
    pattern rather than by the environment)."""
    secret = draw(canaries())
    place = draw(st.sampled_from(places))
    how = draw(st.sampled_from(SECRET_ENCODINGS))
    depth = draw(st.integers(0, max_depth))
    as_env = draw(st.booleans())
    return Canary(secret if as_env else key_shaped(secret), place, how, depth, as_env)


def encode_secret(secret: str, how: str) -> str:
    """`secret` written as one of `SECRET_ENCODINGS` (in a URL, an auth header, JSON text)."""
    if how == "json_escaped":
        return json.dumps(secret)[1:-1]
    if how == "url_encoded":
        return f"https://api.example.com/v1?user=bob&token={urllib.parse.quote(secret, safe='')}"
    if how == "basic_auth":
        return "Authorization: Basic " + base64.b64encode(f"bob:{secret}".encode()).decode()
    if how == "bearer":
        return f"Authorization: Bearer {secret}"
    return secret


def leak_forms(secret: str) -> set[str]:
    """What would count as a leak of `secret` in any text a run writes, prints or logs."""
    return {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(json.dumps(secret)[1:-1])[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
        urllib.parse.quote(secret, safe=""),
        base64.b64encode(f"bob:{secret}".encode()).decode(),
    }


def nested(value: Any, depth: int) -> Any:
    """`value` buried `depth` levels deep in alternating lists and dicts."""
    for i in range(depth):
        value = {"level": i, "items": [value, {"other": "x"}]} if i % 2 else [{"v": value}]
    return value


@contextlib.contextmanager
def env_var(name: str, value: str) -> Iterator[None]:
    """The environment variable `name` set to `value` for the block, then as it was."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


#: The places `canary_tools`' `work` carries a canary: its argument (the reply that calls it
#: plants it there), an exception, a warning, its result, its result nested.
WORK_PLACES = ("args", "result", "nested_result", "exception", "warning")


def canary_tools(place: str, planted: str, depth: int) -> BaseToolRegistry:
    """A registry with `done` and `work`, a tool that carries `planted` where `place` says: in an
    exception, a warning, its result, or its result `depth` levels deep."""
    tools = BaseToolRegistry()

    @tools.tool
    def work(text: str, ctx: ToolContext) -> Any:
        """A tool that carries the canary where the example puts it."""
        if place == "exception":
            raise ConnectionError(f"login refused: {planted}")
        if place == "warning":
            ctx.warn(f"careful with {planted}")
        if place == "result":
            return {"token_hint": planted}
        if place == "nested_result":
            return nested(planted, depth)
        return {"ok": True}

    register_done_tool(tools)
    return tools


# -- commands as a user runs them ----------------------------------------------------------------


def run_as_user(
    module: str, cwd: Path, *args: str, stdin: Any = subprocess.DEVNULL, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`python -m module args` in a fresh process in `cwd`, as a user without a model runs it.

    No OPENAI_* variables (so the scripted model answers), stdin not a terminal unless one is
    given, and this checkout's `src` first on PYTHONPATH.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
