"""A minimal hand-written agent loop in plain Python: the floor every framework is compared with.

Per step it does what any agent loop must: call the (instant, scripted) model
with the conversation, look the tool up, call it, encode the result as JSON
and append both messages.
"""

from __future__ import annotations

import json
from typing import Any

IMPORTS = "import json"

_last: list[Any] = []


def echo(text: str, n: int) -> dict[str, Any]:
    """Return the text (the trivial tool)."""
    return {"text": text, "n": n}


def run(n: int) -> int:
    """Make `n` tool steps on a scripted model; return the number of tool calls made."""
    calls = 0

    def model(messages: list[dict[str, Any]]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == n:
            _last[:] = [list(messages)]
        if calls > n:
            return {"role": "assistant", "content": "done"}
        args = {"text": "hello world", "n": calls}
        return {"role": "assistant", "tool_calls": [{"id": f"c{calls}", "name": "echo", "args": args}]}

    table = {"echo": echo}
    messages: list[dict[str, Any]] = [{"role": "user", "content": "echo things"}]
    made = 0
    while True:
        reply = model(messages)
        messages.append(reply)
        if not reply.get("tool_calls"):
            return made
        for call in reply["tool_calls"]:
            result = table[call["name"]](**call["args"])
            made += 1
            messages.append({"role": "tool", "id": call["id"], "content": json.dumps(result)})


def last_bytes() -> int:
    """The JSON size of the messages at the model call that asked for the last step."""
    return len(json.dumps(_last[0]).encode())
