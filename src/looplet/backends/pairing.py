"""Making a conversation acceptable to native tool-calling APIs: every call answered, no stray results.

Both providers reject a history where an assistant's tool call has no
result right after it, or where a tool result answers no call. The loop's
own history is always well formed, but a compaction hook, a resumed run or a
hand-built history may not be, and a run should not die of it.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..history import Message

__all__ = ["pair_tool_results", "MISSING_RESULT"]

MISSING_RESULT = "(no result was recorded for this call)"


def pair_tool_results(messages: Sequence[Message]) -> list[Message]:
    """`messages` with a placeholder result for each unanswered call, and stray results turned into text.

    The results of a turn's calls are the ``tool`` messages right after it;
    a result further away, or for an id no call of that turn has, becomes a
    user message quoting it.
    """
    out: list[Message] = []
    i = 0
    n = len(messages)
    while i < n:
        message = messages[i]
        i += 1
        if message.role == "tool":
            out.append(_as_text(message))
            continue
        out.append(message)
        if message.role != "assistant" or not message.tool_calls:
            continue
        pending = [c.call_id for c in message.tool_calls]
        strays: list[Message] = []
        while i < n and messages[i].role == "tool":
            result = messages[i]
            i += 1
            if result.call_id in pending:
                pending.remove(result.call_id)
                out.append(result)
            else:
                strays.append(_as_text(result))
        for call in message.tool_calls:
            if call.call_id in pending:
                pending.remove(call.call_id)
                out.append(Message("tool", MISSING_RESULT, call_id=call.call_id, name=call.tool, error=True))
        out.extend(strays)
    return out


def _as_text(result: Message) -> Message:
    label = f"[result of {result.name or 'a tool'} ({result.call_id or 'no id'})]"
    return Message("user", f"{label}\n{result.content}")
