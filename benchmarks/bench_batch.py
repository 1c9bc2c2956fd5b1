"""Batch runs: tasks per second by concurrency, and peak memory as tasks finish.

    python benchmarks/bench_batch.py            # the full table (about a minute)
    python benchmarks/bench_batch.py --quick    # 200 tasks per row

Each task is a two-turn scripted agent (one tool call, then done) run by
`looplet.batch.run_batch` with its checkpoints (synced to disk) and its
results line, in a fresh output directory under the system's temp folder.
Two models: an instant one (``FunctionBackend``: the figure is looplet's own
cost per task, checkpoint writes included) and one that sleeps 50 ms per
call in an async backend (``asyncio.sleep``: a stand-in for a network
model; the target is near-linear speed-up with concurrency). At
concurrency 1 the sleeping model runs a tenth of the tasks (the row would
take 100 s otherwise); tasks per second does not depend on the count.

Peak RSS (``ru_maxrss``) is read when the 100th and the 1,000th task's
result is written, in its own process, so earlier rows do not set the peak.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

from looplet import BaseToolRegistry, LoopConfig, ToolCall, register_done_tool
from looplet.backends.mock import AsyncFunctionBackend, FunctionBackend
from looplet.batch import BatchTask, run_batch
from looplet.presets import AgentPreset


def agent(task: BatchTask) -> AgentPreset:
    tools = BaseToolRegistry()

    @tools.tool
    def work(item: str) -> dict[str, str]:
        """Work on an item."""
        return {"worked": item}

    register_done_tool(tools)
    return AgentPreset(config=LoopConfig(max_steps=5), tools=tools)


def replies(task: BatchTask) -> list[ToolCall]:
    return [
        ToolCall("work", {"item": task.id}, call_id="w1"),
        ToolCall("done", {"answer": f"worked on {task.id}"}, call_id="d1"),
    ]


def instant(task: BatchTask) -> Any:
    script = replies(task)
    return FunctionBackend(lambda request: script[sum(m.role == "assistant" for m in request.messages)])


def sleepy(task: BatchTask) -> Any:
    script = replies(task)

    async def reply(request: Any) -> ToolCall:
        await asyncio.sleep(0.05)
        return script[sum(m.role == "assistant" for m in request.messages)]

    return AsyncFunctionBackend(reply)


def tasks(count: int) -> list[dict[str, Any]]:
    return [{"id": f"t{i}", "task": f"task {i}"} for i in range(count)]


def rate(model: Any, count: int, concurrency: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        summary = run_batch(agent, tasks(count), concurrency=concurrency, out_dir=out, llm=model)
        seconds = time.perf_counter() - started
    assert summary.done == count, summary
    return count / seconds


def peak_rss() -> None:
    """Child mode: run 1,000 instant tasks at concurrency 8; print the peak RSS at 100 and 1,000."""
    marks: dict[int, int] = {}
    finished = 0

    def note(_: dict[str, Any]) -> None:
        nonlocal finished
        finished += 1
        if finished in (100, 1000):
            marks[finished] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    with tempfile.TemporaryDirectory() as out:
        run_batch(agent, tasks(1000), concurrency=8, out_dir=out, llm=instant, on_result=note)
    print(json.dumps(marks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--peak-rss", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_rss:
        peak_rss()
        return
    count = 200 if args.quick else 1000
    print("| model | concurrency | tasks | tasks/s |\n|---|---:|---:|---:|")
    for concurrency in (1, 8, 64):
        print(f"| instant | {concurrency} | {count} | {rate(instant, count, concurrency):.0f} |", flush=True)
    for concurrency in (1, 8, 64):
        n = count // 10 if concurrency == 1 else count
        print(f"| 50 ms per call | {concurrency} | {n} | {rate(sleepy, n, concurrency):.1f} |", flush=True)
    found = subprocess.run(
        [sys.executable, __file__, "--peak-rss"], capture_output=True, text=True, check=True
    )
    marks = {int(k): v for k, v in json.loads(found.stdout).items()}
    print(
        f"\npeak RSS after 100 tasks: {marks[100] / 1024:.1f} MiB; after 1,000: {marks[1000] / 1024:.1f} MiB"
    )


if __name__ == "__main__":
    main()
