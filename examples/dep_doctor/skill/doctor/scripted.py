"""The scripted model of ``--scripted`` runs: a careful auditor's calls, decided from the conversation.

The policy is fixed (find, parse each file, check each file, report card,
done) and reads only what the tools returned, so the run is deterministic and
works on any project; the final answer quotes the card's summary, which the
tools computed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from looplet import ToolCall
from looplet.backends.protocol import LLMRequest

__all__ = ["scripted_reply", "scripted_calls"]


def _results(messages: Sequence[Any]) -> dict[str, list[Any]]:
    """Each tool's successful results, in order, as JSON data where they are JSON."""
    out: dict[str, list[Any]] = {}
    for message in messages:
        if message.role != "tool" or message.error:
            continue
        try:
            data: Any = json.loads(message.content)
        except ValueError:
            data = message.content
        out.setdefault(message.name, []).append(data)
    return out


def scripted_calls(messages: Sequence[Any]) -> list[ToolCall]:
    """Every call the policy has made or will make, given the results so far (the next is the first
    not yet made)."""
    results = _results(messages)
    plan = [ToolCall("find_dependency_files", {"path": "."})]
    found = results.get("find_dependency_files", [])
    files = [f["path"] for f in found[0]["files"]] if found and isinstance(found[0], dict) else []
    plan += [ToolCall("parse_dependency_file", {"path": path}) for path in files]
    plan += [ToolCall("check_dependencies", {"path": path}) for path in files]
    if found:
        plan.append(ToolCall("report_card", {}))
    cards = results.get("report_card", [])
    summary = cards[-1].get("summary") if cards and isinstance(cards[-1], dict) else None
    plan.append(ToolCall("done", {"answer": summary or "No report card could be made."}))
    return plan


def scripted_reply(request: LLMRequest) -> ToolCall:
    """The next call: the first of the plan the conversation does not hold yet."""
    made = [(c.tool, c.args) for m in request.messages if m.role == "assistant" for c in m.tool_calls]
    turn = len(made) + 1
    for call in scripted_calls(request.messages):
        if (call.tool, call.args) not in made or call.tool == "done":
            return ToolCall(call.tool, call.args, call_id=f"call_{turn}")
    raise AssertionError("unreachable: the plan always ends with done")  # pragma: no cover
