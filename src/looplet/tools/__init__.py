"""Tools: the registry, the ``@tool`` decorator, schemas, validation and the built-in tools."""

from .builtins import register_done_tool, register_think_tool
from .context import CancelToken, ToolContext
from .registry import BaseToolRegistry, PreparedCall, ToolSpec, tool
from .results import normalize_result, to_jsonable
from .validation import validate_args, validate_value

__all__ = [
    "BaseToolRegistry",
    "CancelToken",
    "PreparedCall",
    "ToolContext",
    "ToolSpec",
    "normalize_result",
    "register_done_tool",
    "register_think_tool",
    "to_jsonable",
    "tool",
    "validate_args",
    "validate_value",
]
