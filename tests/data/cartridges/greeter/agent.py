"""A tiny cartridge for looplet's tests: greets people, with a helper module, a data file and a hook."""

from __future__ import annotations

import json as host_json  # the host's json: the cartridge's own json.py must not replace it

from looplet import BaseToolRegistry, LoopConfig, ToolCall, register_done_tool
from looplet.presets import AgentPreset

from . import json as local_json
from .helpers import salutation


class CountGreetings:
    """post_dispatch: counts greet calls (a cartridge hook with a public setting)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.count = 0

    def post_dispatch(self, state, log, tool_call, result, step):
        if tool_call.tool == "greet":
            self.count += 1


def build(runtime):
    words = host_json.loads((runtime.folder / "greetings.json").read_text(encoding="utf-8"))
    tools = BaseToolRegistry()

    @tools.tool
    def greet(name: str) -> dict:
        """Greet someone by name.

        Args:
            name: who to greet.
        """
        with (runtime.workspace / "greeted.txt").open("a", encoding="utf-8") as out:
            out.write(name + "\n")
        return {"greeting": f"{salutation(words)}, {name}!"}

    register_done_tool(tools)
    return AgentPreset(
        config=LoopConfig(max_steps=10),
        tools=tools,
        hooks=[CountGreetings(local_json.LABEL)],
        system_prompt="You greet people.\n\n" + runtime.card.instructions,
        name=runtime.card.name,
        description=runtime.card.description,
    )


def scripted_responses(runtime):
    return [
        ToolCall("greet", {"name": "Alice"}, call_id="call_1"),
        ToolCall("greet", {"name": "Bob"}, call_id="call_2"),
        ToolCall("done", {"answer": "Greeted Alice and Bob."}, call_id="call_3"),
    ]
