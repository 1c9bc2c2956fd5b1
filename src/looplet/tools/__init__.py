"""Tools: the registry, the ``@tool`` decorator, schemas, validation and the built-in tools."""

from .builtins import register_done_tool, register_think_tool
from .context import CancelToken, ToolContext
from .registry import BaseToolRegistry, PreparedCall, ToolSpec, tool
from .results import normalize_result, to_jsonable
from .schema import describe_function, schema_for_type
from .validation import validate_args, validate_value

__all__ = [
    "BaseToolRegistry",
    "CancelToken",
    "PreparedCall",
    "ToolContext",
    "ToolSpec",
    "describe_function",
    "normalize_result",
    "register_done_tool",
    "register_think_tool",
    "schema_for_type",
    "to_jsonable",
    "tool",
    "validate_args",
    "validate_value",
]
