"""What the SDK backends add to a model call, against llmock on loopback.

    python benchmarks/bench_backends.py            # full table (about half a minute)
    python benchmarks/bench_backends.py --quick    # fewer repeats

llmock (``pip install llmock==0.2.2``) is started on a free 127.0.0.1 port
and stopped by its pid at the end. Every backend (OpenAI and Anthropic, sync
and async, plain and streamed) answers the same request: a mid-run prompt
of 21 messages (10 tool turns), two tools offered, and a tool call back.

Three figures per row, each the median of many calls:

- **raw SDK**: the same request sent with the SDK directly (same client
  settings, the same keyword arguments), read to the end: the HTTP round
  trip plus the SDK and server time, which looplet does not control;
- **complete()**: the backend's ``complete(request)`` against the same server;
- **library**: looplet's own work, timed directly without the network:
  turning the conversation into the provider's shape, then reading the SDK's
  response (or stream events) back into an `LLMResponse`, plus the retry
  wrapper. ``complete() - raw`` is printed as a cross-check; it is noisier,
  since it is the difference of two network timings.

Raw and backend calls alternate, so drift in the server affects both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

TURNS = 10


# -- the server ----------------------------------------------------------------------


class Server:
    """llmock in a subprocess on a free loopback port; `stop()` ends it by pid."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        exe = Path(sys.executable).with_name("llmock")
        command = [str(exe)] if exe.exists() else [sys.executable, "-c", "from llmock.cli import app; app()"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
        env["LLMOCK_RESPONSE_STYLE"] = "static"
        self.process = subprocess.Popen(
            [*command, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("llmock did not start; is it installed? pip install llmock==0.2.2")

    def always_call_echo(self) -> None:
        behavior = {
            "type": "reply",
            "tool_calls": [{"name": "echo", "arguments": {"text": "hi"}}],
            "times": None,
        }
        data = json.dumps({"behaviors": [behavior]}).encode()
        request = urllib.request.Request(
            self.url + "/_llmock/scenario", data=data, headers={"content-type": "application/json"}
        )
        urllib.request.urlopen(request, timeout=5).close()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


# -- the request ----------------------------------------------------------------------


def mid_run_request() -> Any:
    """A request as the loop builds it at step 11: the task, 10 tool turns, two tools."""
    from looplet import LLMRequest, Message, ToolCall
    from looplet.config import DEFAULT_SYSTEM_PROMPT

    messages = [Message("user", "Echo the words of the poem, one call per line.")]
    for i in range(TURNS):
        call = ToolCall("echo", {"text": f"line {i} of the poem"}, call_id=f"call_{i}")
        messages.append(Message("assistant", "", (call,)))
        messages.append(
            Message("tool", json.dumps({"text": f"line {i} of the poem"}), call_id=call.call_id, name="echo")
        )
    schema = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    tools = [
        {"name": "echo", "description": "Echo a text back.", "parameters": schema},
        {"name": "done", "description": "Finish.", "parameters": schema},
    ]
    return LLMRequest(messages=messages, system=DEFAULT_SYSTEM_PROMPT, tools=tools)


# -- timing ---------------------------------------------------------------------------


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def bench_sync(llm: Any, raw: Callable[[], Any], request: Any, repeats: int) -> tuple[float, float]:
    for _ in range(5):  # warm up connections and caches
        raw()
        llm.complete(request)
    raw_times: list[float] = []
    ours: list[float] = []
    for _ in range(repeats):
        started = time.perf_counter()
        raw()
        raw_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        llm.complete(request)
        ours.append(time.perf_counter() - started)
    return median_ms(raw_times), median_ms(ours)


def bench_async(
    llm: Any, raw: Callable[[], Any], request: Any, repeats: int, client: Any
) -> tuple[float, float]:
    async def main() -> tuple[float, float]:
        async with llm:
            try:
                return await timed()
            finally:
                await client.close()

    async def timed() -> tuple[float, float]:
        for _ in range(5):
            await raw()
            await llm.complete(request)
        raw_times: list[float] = []
        ours: list[float] = []
        for _ in range(repeats):
            started = time.perf_counter()
            await raw()
            raw_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            await llm.complete(request)
            ours.append(time.perf_counter() - started)
        return median_ms(raw_times), median_ms(ours)

    return asyncio.run(main())


def library_ms(llm: Any, request: Any, reply: Any, streamed: bool, repeats: int) -> float:
    """looplet's own time for one call, with a response captured beforehand (no network)."""
    from looplet.backends.retry import call_with_retries

    settings = llm._settings(request.options)
    assembler = type(llm).__module__ + "._StreamAssembler"
    module = sys.modules[assembler.rsplit(".", 1)[0]]

    def once() -> Any:
        kwargs = llm._kwargs(request, settings)
        assert kwargs
        if not streamed:
            return call_with_retries(lambda: llm._parse(reply), llm._classify, policy=llm.retry)
        chunks = module._StreamAssembler(llm)
        for item in reply:
            chunks.feed(item)
        return call_with_retries(lambda: chunks.result(False), llm._classify, policy=llm.retry)

    for _ in range(20):
        once()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        once()
        samples.append(time.perf_counter() - started)
    return median_ms(samples)


# -- the rows -------------------------------------------------------------------------


def run_row(server: Server, provider: str, is_async: bool, streamed: bool, repeats: int) -> dict[str, Any]:
    import anthropic
    import openai

    from looplet.backends.anthropic import AnthropicBackend, AsyncAnthropicBackend
    from looplet.backends.openai import AsyncOpenAIBackend, OpenAIBackend

    request = mid_run_request()
    key = "bench-key"
    if provider == "openai":
        base = server.url + "/v1"
        cls = AsyncOpenAIBackend if is_async else OpenAIBackend
        client: Any = (openai.AsyncOpenAI if is_async else openai.OpenAI)(
            api_key=key, base_url=base, max_retries=0
        )
        create = client.chat.completions.create
    else:
        base = server.url + "/anthropic"
        cls = AsyncAnthropicBackend if is_async else AnthropicBackend
        client = (anthropic.AsyncAnthropic if is_async else anthropic.Anthropic)(
            api_key=key, base_url=base, max_retries=0
        )
        create = client.messages.create
    llm = cls("bench-model", api_key=key, base_url=base, stream=streamed)
    kwargs = llm._kwargs(request, llm._settings(request.options))

    if is_async:

        async def raw() -> Any:
            out = await create(**kwargs)
            if streamed:
                return [item async for item in out]
            return out

        raw_ms, complete_ms = bench_async(llm, raw, request, repeats, client)
    else:

        def raw() -> Any:
            out = create(**kwargs)
            return list(out) if streamed else out

        with llm:
            raw_ms, complete_ms = bench_sync(llm, raw, request, repeats)
        client.close()
    reply = _capture(provider, base, kwargs)
    lib = library_ms(llm, request, reply, streamed, repeats * 5)
    return {
        "backend": cls.__name__,
        "mode": "streamed" if streamed else "plain",
        "raw_ms": raw_ms,
        "complete_ms": complete_ms,
        "library_ms": lib,
        "difference_ms": complete_ms - raw_ms,
    }


def _capture(provider: str, base: str, kwargs: dict[str, Any]) -> Any:
    """One reply (a response object, or the list of stream events) from a plain sync client."""
    import anthropic
    import openai

    if provider == "openai":
        out = openai.OpenAI(api_key="bench-key", base_url=base, max_retries=0).chat.completions.create(
            **kwargs
        )
    else:
        out = anthropic.Anthropic(api_key="bench-key", base_url=base, max_retries=0).messages.create(**kwargs)
    return list(out) if kwargs.get("stream") else out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args(argv)
    repeats = 40 if args.quick else 200
    server = Server()
    try:
        server.always_call_echo()
        rows = [
            run_row(server, provider, is_async, streamed, repeats)
            for provider in ("openai", "anthropic")
            for is_async in (False, True)
            for streamed in (False, True)
        ]
    finally:
        server.stop()
    print(f"Per-call overhead of the SDK backends vs the raw SDK, llmock on loopback ({repeats} calls each)")
    print(
        f"Python {sys.version.split()[0]}; request: {2 * TURNS + 1} messages, 2 tools; reply: one tool call"
    )
    print()
    print("| backend | mode | raw SDK call | complete() | library time | complete() - raw |")
    print("|---|---|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['backend']} | {row['mode']} | {row['raw_ms']:.2f} ms | {row['complete_ms']:.2f} ms "
            f"| {row['library_ms'] * 1000:.0f} µs | {row['difference_ms'] * 1000:+.0f} µs |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
