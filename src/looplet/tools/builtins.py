"""The tools every agent may want: ``done`` (finish the run) and ``think`` (free notes)."""

from __future__ import annotations

from typing import Any

from .registry import BaseToolRegistry, ToolSpec

__all__ = ["register_done_tool", "register_think_tool", "DONE_PARAMETERS"]

#: The done tool's default arguments: the answer as ``answer``, or as ``summary``
#: (the name looplet 1.x's done tool used, so its scripts and prompts still work).
#: At least one is needed; `result.final_answer` holds what was sent, validated.
#: (``minProperties`` rather than a top-level ``anyOf``: providers refuse the latter.)
DONE_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "answer": {
            "type": "string",
            "description": "The final answer, or a summary of what was done.",
        },
        "summary": {
            "type": "string",
            "description": "The same as answer (the name looplet 1.x's done tool used).",
        },
    },
    "minProperties": 1,
    "additionalProperties": False,
}

_DONE_DESCRIPTION = (
    "Call this when the task is complete, with the final answer as `answer` "
    "(`summary` is accepted too)."
)


def _done(**kwargs: Any) -> dict[str, Any]:
    return dict(kwargs)


def register_done_tool(
    tools: BaseToolRegistry,
    *,
    name: str = "done",
    description: str = _DONE_DESCRIPTION,
    parameters: dict[str, Any] | None = None,
) -> ToolSpec:
    """Add the tool the model calls to finish; its arguments become ``result.final_answer``.

    Args:
        tools: the registry to add it to.
        name: the tool's name.
        description: what the model is told about it.
        parameters: a JSON Schema for its arguments (default: `DONE_PARAMETERS`, an
            ``answer`` or a ``summary`` string).
    """
    return tools.register(
        _done,
        name=name,
        description=description,
        parameters=parameters if parameters is not None else DONE_PARAMETERS,
        done=True,
    )


def _think(thought: str) -> dict[str, Any]:
    """Write down your reasoning before acting; costs no step.

    Args:
        thought: what you are thinking.
    """
    return {"noted": True}


def register_think_tool(tools: BaseToolRegistry, *, name: str = "think") -> ToolSpec:
    """Add a free ``think`` tool where the model can reason without spending a step."""
    return tools.register(_think, name=name, free=True)
