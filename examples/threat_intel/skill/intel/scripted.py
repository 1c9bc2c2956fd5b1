"""The scripted analyst of ``--scripted`` runs: a fixed order of calls, decided from the conversation.

list_feeds, then extract_iocs for each advisory, lookup_cve and rate_risk for
each CVE found that the feed holds, map_attack for each advisory,
make_briefing, and done with the briefing's summary. Only the tools' results
are read, so the run is deterministic and the answer is the tools' own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from looplet import ToolCall
from looplet.backends.protocol import LLMRequest

__all__ = ["scripted_calls", "scripted_reply"]


def _results(messages: Sequence[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for message in messages:
        if message.role == "tool" and not message.error:
            try:
                data: Any = json.loads(message.content)
            except ValueError:
                data = message.content
            out.setdefault(message.name, []).append(data)
    return out


def scripted_calls(messages: Sequence[Any]) -> list[ToolCall]:
    """The whole plan as far as the results so far let it be known."""
    results = _results(messages)
    plan = [ToolCall("list_feeds", {})]
    listed = results.get("list_feeds", [])
    feeds = listed[0].get("feeds", []) if listed and isinstance(listed[0], dict) else []
    advisories = [f["name"] for f in feeds if f.get("kind") == "advisory"]
    plan += [ToolCall("extract_iocs", {"name": name}) for name in advisories]
    cves = [c for found in results.get("extract_iocs", []) for c in found.get("cves", [])]
    for cve in dict.fromkeys(cves):
        plan.append(ToolCall("lookup_cve", {"cve_id": cve}))
    known = [found["id"] for found in results.get("lookup_cve", []) if isinstance(found, dict)]
    plan += [ToolCall("rate_risk", {"cve_id": cve}) for cve in known]
    plan += [ToolCall("map_attack", {"source": name}) for name in advisories]
    if listed:
        plan.append(ToolCall("make_briefing", {}))
    made = results.get("make_briefing", [])
    summary = made[-1].get("summary") if made and isinstance(made[-1], dict) else None
    plan.append(ToolCall("done", {"answer": summary or "No briefing could be made."}))
    return plan


def scripted_reply(request: LLMRequest) -> ToolCall:
    """The next call: the first of the plan the conversation does not hold yet."""
    made = [(c.tool, c.args) for m in request.messages if m.role == "assistant" for c in m.tool_calls]
    for call in scripted_calls(request.messages):
        if (call.tool, call.args) not in made or call.tool == "done":
            return ToolCall(call.tool, call.args, call_id=f"call_{len(made) + 1}")
    raise AssertionError("unreachable: the plan always ends with done")  # pragma: no cover
