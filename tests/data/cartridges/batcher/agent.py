"""A cartridge for the batch tests: one work call, then done; the task's text picks a behaviour.

Every work call appends a line to ``ran.txt`` in the task's workspace when its
body starts, so a test can count how often each task's tool ran.
"""

from __future__ import annotations

import asyncio

from looplet import BaseToolRegistry, LoopConfig, ToolCall, register_done_tool
from looplet.presets import AgentPreset


def build(runtime):
    task = runtime.options.get("task", "")
    if "build-fails" in task:
        raise RuntimeError("this task's agent cannot be built")
    delay = 3600.0 if "hang" in task else 0.05 if "slow" in task else 0.0
    tools = BaseToolRegistry()

    @tools.tool
    async def work(item: str) -> dict:
        """Do the task's work.

        Args:
            item: what to work on.
        """
        with (runtime.workspace / "ran.txt").open("a", encoding="utf-8") as out:
            out.write(item + "\n")
        if delay:
            await asyncio.sleep(delay)
        return {"worked": item}

    register_done_tool(tools)
    return AgentPreset(config=LoopConfig(max_steps=5), tools=tools, name=runtime.card.name)


def scripted_responses(runtime):
    task_id = runtime.options.get("task_id", "?")
    if "model-fails" in runtime.options.get("task", ""):

        def broken(request):
            raise ConnectionError("the model is down")

        return broken
    replies = [
        ToolCall("work", {"item": task_id}, call_id="w1"),
        ToolCall("done", {"answer": f"worked on {task_id}"}, call_id="d1"),
    ]

    def reply(request):
        # picked by the replies already in the history, so a continued run goes on where it stopped
        return replies[min(sum(m.role == "assistant" for m in request.messages), 1)]

    return reply
